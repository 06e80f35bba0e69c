"""Random search with weight sharing (Li & Talwalkar, UAI 2019) -- the random baseline.

Training: each step samples one architecture uniformly from the space
(``space.sample``, so cell spaces keep their topology rule) and trains only
its path (:class:`SinglePathMixer`).  Selection: ``num_samples`` random
architectures are scored on ``eval_batches`` batches of the validation split
with the inherited weights; the best is returned.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from attnas.arch import Architecture
from attnas.errors import ArchitectureError
from attnas.spaces.base import ChoiceBlock, ChoicePoint, Mixer
from attnas.strategies.base import ArchRef, Strategy, SuperNet, register_strategy, weight_optimizer


class PathState(nn.Module):
    """The architecture currently active in a single-path supernet (no parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.active: dict[str, int] = {}


class SinglePathMixer(Mixer):
    """Runs only the candidate the strategy activated for this choice point."""

    def __init__(self, point: ChoicePoint, arch: ArchRef) -> None:
        super().__init__()
        self.key = point.key
        self.arch = arch

    def forward(self, x: torch.Tensor, block: ChoiceBlock) -> torch.Tensor:
        i = self.arch.module.active[self.key]
        if i == ABSENT:
            if block.absent is None:
                raise ArchitectureError(f"choice point '{self.key}' cannot be left out ('none')")
            return block.absent(x)
        return block.ops[i](x)


#: index of an edge that the active architecture leaves out ("none" where "none" is not a candidate)
ABSENT = -1


def activate(model: SuperNet, arch: Architecture, points: list[ChoicePoint]) -> None:
    """Route the single-path supernet through ``arch``.  An edge set to ``"none"`` that does not
    have ``"none"`` among its candidates (NOS's unused first-tier edges) is left out (:data:`ABSENT`)."""
    active = {}
    for p in points:
        op = arch.choices[p.key]
        if op in p.candidates:
            active[p.key] = p.candidates.index(op)
        elif op == "none":
            active[p.key] = ABSENT
        else:
            raise ArchitectureError(f"'{op}' is not a candidate of choice point '{p.key}'; "
                                    f"expected one of {list(p.candidates)}")
    model.arch.active = active


@torch.no_grad()
def score_on_batches(model: SuperNet, batches) -> float:
    """Accuracy of the active path over ``batches`` (batch statistics in BN)."""
    model.eval()
    correct = total = 0
    for x, y in batches:
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    model.train()
    return correct / max(1, total)


@register_strategy("random")
class RandomSearchStrategy(Strategy):
    single_path = True
    preset_name = "random"

    def build_arch(self) -> nn.Module:
        return PathState()

    def make_mixer(self, point: ChoicePoint, arch: ArchRef) -> Mixer:
        return SinglePathMixer(point, arch)

    def optimizers(self, model: SuperNet, steps_per_epoch: int, epochs: int) -> dict[str, Any]:
        opt, sched = weight_optimizer(model.net.parameters(), self.cfg.weights, steps_per_epoch, epochs)
        return {"weights": opt, "schedulers": [sched]}

    def sample_paths(self, model: SuperNet) -> list[Architecture]:
        """One uniformly sampled architecture per step (random search with weight sharing)."""
        return [self.space.sample(self.rng)]

    def activate(self, model: SuperNet, path: Architecture) -> None:
        activate(model, path, self.points)

    scores_label = "uniform sampling probabilities (random search learns no preference)"

    def scores(self, model: SuperNet) -> dict[str, list[float]]:
        """Uniform: random search has no per-candidate preference."""
        return {p.key: [1.0 / len(p.candidates)] * len(p.candidates) for p in self.points}

    def derive(self, model: SuperNet, context: Any = None) -> Architecture:
        """Best of ``num_samples`` random architectures on the validation batches in ``context``."""
        if context is None:
            return self.space.sample(self.rng)
        import time

        batches = list(context)[: self.cfg.eval_batches]
        best, best_acc = None, -1.0
        n, t0, shown = int(self.cfg.num_samples), time.time(), time.time()
        if self.log is not None:
            self.log(f"random search: scoring {n} random architectures on {len(batches)} validation batches")
        for i in range(n):
            arch = self.space.sample(self.rng)
            activate(model, arch, self.points)
            acc = score_on_batches(model, batches)
            if acc > best_acc:
                best, best_acc = arch, acc
            if self.log is not None and (time.time() - shown >= 5 or i + 1 == n):
                shown = time.time()
                self.log(f"random search: {i + 1}/{n} scored, best so far {best_acc:.4f}, "
                         f"{shown - t0:.0f}s elapsed")
        best.meta.update({"method": self.name, "supernet_val_acc": best_acc})
        return best
