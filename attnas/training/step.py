"""The executor of a search step: runs the phases a strategy declares.

:class:`StepExecutor` is the one place where a search computes gradients and steps
optimizers (the retraining task has its own, simpler loop): for each
:class:`~attnas.strategies.base.Phase` it zeroes the gradients of the phase's optimizers,
freezes every parameter the phase does not update, runs the forward pass(es) under
autocast (one per sampled path, gradients accumulated), backward, averages the gradients
over torchrun processes, clips and steps.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn

from attnas.strategies.base import Phase, Strategy, SuperNet, frozen
from attnas import distributed
from attnas.training.accel import Accelerator


class StepExecutor:
    """Runs one search step of ``strategy`` on ``model`` with the optimizers ``opt``."""

    def __init__(self, strategy: Strategy, model: SuperNet, opt: Mapping[str, Any],
                 accel: Accelerator | None = None) -> None:
        self.strategy, self.model, self.opt = strategy, model, opt
        self.accel = accel if accel is not None else Accelerator(model, next(model.parameters()).device)

    def __call__(self, batches: Mapping[str, tuple[torch.Tensor, torch.Tensor]], epoch: int,
                 step: int) -> dict[str, float]:
        """One step; ``batches`` maps a split name ("weights", "arch") to its ``(x, y)``."""
        model, strategy = self.model, self.strategy
        model.train()
        distributed.begin_step()
        strategy.begin_step(model, epoch, step)
        out: dict[str, float] = {}
        for phase in strategy.phases(epoch):
            out.update(self.run_phase(phase, batches))
        out.update(strategy.end_step(model, epoch, step))
        return out

    def run_phase(self, phase: Phase, batches: Mapping[str, Any]) -> dict[str, float]:
        """Execute one phase; its metrics (averaged over the sampled paths)."""
        model, strategy = self.model, self.strategy
        params = [p for p in phase.params(model) if p.requires_grad]
        ids = {id(p) for p in params}
        opts = [self.opt[k] for k in phase.optimizers]
        for o in opts:
            o.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        n = 1
        if phase.gradient is not None:  # sets the .grad of params itself (torch.autograd.grad)
            sums[f"{phase.prefix}loss"] = float(phase.gradient(model, batches, self.opt))
        else:
            x, y = batches[phase.split]
            with frozen(p for p in model.parameters() if id(p) not in ids):
                paths = strategy.sample_paths(model) if phase.sampled else [None]
                for path in paths:
                    if path is not None:
                        strategy.activate(model, path)
                    with self.accel.autocast():
                        loss, logits, parts = strategy.loss(model, x, y)
                    self.accel.backward(loss)
                    rec = {"loss": float(loss.detach()), **parts}
                    if not phase.prefix:
                        rec["acc"] = float((logits.argmax(1) == y).float().mean())
                    for k, v in rec.items():
                        sums[phase.prefix + k] = sums.get(phase.prefix + k, 0.0) + float(v)
                n = len(paths)
                distributed.sync_grads(params)  # torchrun: average over processes
                self.accel.unscale(opts)
                # on the true gradients, so that what a strategy adds (a decay) is not divided by the scale
                strategy.after_backward(model, phase, paths)
        if phase.gradient is not None:
            distributed.sync_grads(params)
        if phase.clip > 0:
            nn.utils.clip_grad_norm_(params, phase.clip)
        # a gradient the phase set itself was never loss-scaled: not stepped through the scaler
        self.accel.step(opts, scaled=phase.gradient is None)
        return {k: v / n for k, v in sums.items()}


def search_step(strategy: Strategy, model: SuperNet, opt: Mapping[str, Any], batch_w,
                batch_a=None, epoch: int = 0, step: int = 0) -> dict[str, float]:
    """One search step outside a task (tests, step-time benchmarks): ``batch_w``/``batch_a``
    are the ``(x, y)`` of the weight and architecture splits (``batch_a`` only for methods
    whose phases read it)."""
    batches = {"weights": batch_w} if batch_a is None else {"weights": batch_w, "arch": batch_a}
    return StepExecutor(strategy, model, opt)(batches, epoch, step)
