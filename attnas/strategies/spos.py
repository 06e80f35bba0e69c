"""Single-path one-shot NAS: SPOS (Guo et al., ECCV 2020) and FairNAS strict fairness (Chu et al., ICCV 2021).

Training.  The supernet runs one candidate per choice point
(:class:`~attnas.strategies.random_search.SinglePathMixer`).  Each step draws
an architecture ``a ~ U(A)`` -- every choice point's candidate uniformly and
independently (IT-NAS Eq. 2, SPOS Eq. 5; ``space.sample``, so cell spaces keep
their topology rule by rejection) -- and updates only the weights of that path:
``W <- W - lr * grad_W L_train(N(a, W))``.  Parameters off the path receive no
gradient, so neither momentum nor weight decay touches them (SGD skips
parameters whose ``grad`` is None).

FairNAS (``fair=True``, FairNAS Alg. 1).  Each step draws, for every choice
point, a random permutation of its candidates; path k (k = 1..m, m the largest
number of candidates) takes the k-th entry of every permutation; the m paths
run on the same batch, their gradients are accumulated, and ONE optimiser step
follows.  Every candidate of every choice point is therefore trained exactly
once per step.  Where a choice point has n < m candidates (e.g. the first layer
of a ProxylessNAS stage, which has no ``skip``) its remaining m - n slots are
filled from a second random permutation of its candidates, so its candidates
are trained once or twice per step (FairNAS's own spaces have equal counts; this
is our generalisation).  Spaces with a topology rule (DARTS: every node needs an
input) redraw the permutations until every path is valid.

Selection.  :meth:`SPOSStrategy.derive` runs the evolutionary search of
:mod:`attnas.search.evolution` on the trained supernet with the preset's
population, top-k, mutation, crossover and FLOPs/parameter budget; every
candidate is scored by validation accuracy after BN recalibration.  ``context``
is a :class:`~attnas.search.evolution.SelectionContext` (validation batches for
scoring, training batches for BN recalibration) or a plain iterable of
validation batches -- then, lacking training batches, BN statistics are
recomputed on the validation images themselves (labels unused; recorded in the
architecture's ``meta``).  The supernet's own BN statistics are restored after
the search.

``scores`` reports how often each candidate has been trained (fraction of
steps): SPOS learns no per-candidate strength; under uniform sampling these are
~1/n, under strict fairness exactly equal.
"""
from __future__ import annotations

import random
from typing import Any, Callable

import torch
import torch.nn as nn

from attnas.arch import Architecture
from attnas.errors import ArchitectureError, ConfigError
from attnas.search.evolution import (Constraint, EvolutionResult, EvolutionSearch, SelectionContext,
                                     SupernetEvaluator, bn_state, load_bn_state, take_images)
from attnas.spaces.base import ChoicePoint, Mixer
from attnas.strategies.base import ArchRef, Strategy, SuperNet, register_strategy, register_variant
from attnas.strategies.random_search import PathState, SinglePathMixer, activate

LR_SCHEDULES = ("linear", "cosine")
#: redraws of the FairNAS permutations before giving up on a topology-constrained space
FAIR_MAX_REDRAWS = 100
#: ``recompute: "auto"`` checkpoints the single path from this input side on (ImageNet-scale
#: inputs, where a batch's maps reach hundreds of MB; SPOSPreset.recompute)
RECOMPUTE_MIN_IMAGE = 128


@register_strategy("spos")
class SPOSStrategy(Strategy):
    """SPOS uniform single-path training + evolutionary selection (module docstring)."""

    single_path = True

    preset_name = "spos"
    #: the evolutionary search is the selection step, too costly to run every epoch
    derive_each_epoch = False
    #: the evolution (a subclass may draw its random candidates differently, e.g. TrioNet)
    evolution_class = EvolutionSearch
    scores_label = "sampling frequencies: share of training steps on each candidate"

    def __init__(self, space, options=None) -> None:
        super().__init__(space, options)
        if self.cfg.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"unknown lr_schedule '{self.cfg.lr_schedule}'; expected one of {list(LR_SCHEDULES)}")
        if not isinstance(self.cfg.fair, bool):
            raise ConfigError(f"option 'fair' must be true or false, got {self.cfg.fair!r}")
        for name in ("population", "top_k", "max_tries_factor"):  # the evolution's, checked before training
            if getattr(self.cfg, name) < 1:
                raise ConfigError(f"evolution option '{name}' must be >= 1, got {getattr(self.cfg, name)}")
        if not 0.0 <= float(self.cfg.mutation_prob) <= 1.0:
            raise ConfigError(f"evolution option 'mutation_prob' must be in [0, 1], got {self.cfg.mutation_prob}")
        for name in ("bn_images", "eval_images"):
            v = getattr(self.cfg, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"option '{name}' must be a non-negative integer, got {v!r}")
        # a bad budget is a ConfigError before any training
        for label in ("flops_budget", "macs_budget", "params_budget"):
            v = getattr(self.cfg, label)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
                raise ConfigError(f"{label} must be a positive number (absolute count, e.g. 6e7), got {v!r}")
        self.counts: dict[str, list[int]] = {p.key: [0] * len(p.candidates) for p in self.points}
        self.steps = 0

    # ----- construction ----------------------------------------------------------

    def recompute_policy(self, image_size: int) -> str:
        policy = super().recompute_policy(image_size)
        if policy == "auto":  # one path: worth its time at ImageNet scale only (SPOSPreset)
            return "all" if image_size >= RECOMPUTE_MIN_IMAGE else "none"
        return policy

    def build_arch(self) -> nn.Module:
        return PathState()

    def make_mixer(self, point: ChoicePoint, arch: ArchRef) -> Mixer:
        return SinglePathMixer(point, arch)

    def optimizers(self, model: SuperNet, steps_per_epoch: int, epochs: int) -> dict[str, Any]:
        w = self.cfg.weights
        opt = torch.optim.SGD(model.net.parameters(), lr=w.lr, momentum=w.momentum, weight_decay=w.weight_decay)
        total = max(1, epochs)
        if self.cfg.lr_schedule == "linear":  # SPOS: linear decay to lr_min over the run (stepped per epoch)
            span = w.lr - w.lr_min
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda e: (w.lr_min + span * max(0.0, 1.0 - e / total)) / w.lr if w.lr > 0 else 1.0)
        else:
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=w.lr_min)
        return {"weights": opt, "schedulers": [sched]}

    # ----- sampling ----------------------------------------------------------------
    def _count(self, arch: Architecture) -> None:
        for p in self.points:
            op = arch.choices[p.key]
            if op in p.candidates:  # an edge left out ("none", NOS) trains nothing
                self.counts[p.key][p.candidates.index(op)] += 1

    def sample_paths(self, model: SuperNet | None = None) -> list[Architecture]:
        """The paths trained in one step: one uniform sample, or the m FairNAS paths."""
        if not self.cfg.fair:
            return [self.space.sample(self.rng)]
        m = max(len(p.candidates) for p in self.points)
        for _ in range(FAIR_MAX_REDRAWS):
            columns = {}
            for p in self.points:
                order = self.rng.sample(p.candidates, len(p.candidates))
                while len(order) < m:
                    extra = self.rng.sample(p.candidates, len(p.candidates))
                    order += extra[: m - len(order)]
                columns[p.key] = order
            paths = [Architecture(self.space.name, {k: v[i] for k, v in columns.items()}) for i in range(m)]
            try:
                for a in paths:
                    self.space.validate_topology(a)
                return paths
            except ArchitectureError:
                continue
        raise ConfigError(f"strict fairness: no valid set of {m} paths in {FAIR_MAX_REDRAWS} draws for space "
                          f"'{self.space.name}' (its topology rule rejects them); use fair=false")

    # ----- training ----------------------------------------------------------------
    def activate(self, model: SuperNet, path: Architecture) -> None:
        """Train ``path`` next (and count it for the sampling frequencies)."""
        activate(model, path, self.points)
        self._count(path)

    def end_step(self, model: SuperNet, epoch: int, step: int) -> dict[str, float]:
        self.steps += 1
        return {}

    # ----- selection ---------------------------------------------------------------
    def scores(self, model: SuperNet) -> dict[str, list[float]]:
        """Fraction of training passes in which each candidate was active."""
        out = {}
        for p in self.points:
            c = self.counts[p.key]
            total = sum(c)
            out[p.key] = [v / total if total else 1.0 / len(c) for v in c]
        return out

    def selection(self, model: SuperNet, context: Any) -> tuple[SupernetEvaluator, Constraint, dict[str, Any]]:
        """The fitness function and the constraint of the evolutionary search for ``context``
        (a :class:`SelectionContext` or an iterable of validation batches)."""
        if context is None:
            raise ConfigError("SPOS selects by evolutionary search on validation batches: "
                              "call derive(model, context=validation batches or a SelectionContext)")
        valid_src = context.validation if isinstance(context, SelectionContext) else context
        train_src = getattr(context, "train", None)
        valid = take_images(valid_src, self.cfg.eval_images)
        if not valid:
            raise ConfigError("SPOS evolution got no validation batches to score architectures on")
        if train_src is not None:
            bn, bn_source = take_images(train_src, self.cfg.bn_images), "train"
        else:
            bn, bn_source = take_images(valid, self.cfg.bn_images), "validation"
        x0 = valid[0][0]
        was_training, active = model.training, dict(model.arch.active)
        with torch.no_grad():  # the number of classes, from one forward (any path; self.rng untouched)
            activate(model, self.space.sample(random.Random(0)), self.points)
            model.eval()
            num_classes = int(model(x0[:1]).shape[1])
        model.arch.active = active
        model.train(was_training)
        constraint = Constraint(self.space, num_classes, int(x0.shape[1]), int(x0.shape[-1]),
                                self.cfg.flops_budget, self.cfg.params_budget, self.cfg.macs_budget)
        evaluator = SupernetEvaluator(model, lambda a: activate(model, a, self.points), valid, bn)
        meta = {"bn_recalibration": bn_source, "bn_images": sum(len(b[1]) for b in bn),
                "eval_images": sum(len(b[1]) for b in valid)}
        return evaluator, constraint, meta

    def evolve(self, model: SuperNet, context: Any, evaluated: dict[Architecture, float] | None = None,
               on_evaluate: Callable[[Architecture, float], None] | None = None,
               log: Callable[[str], None] | None = None) -> tuple[Architecture, EvolutionResult]:
        """Run the evolutionary search (RNG: ``self.rng``); the supernet's BN statistics,
        train/eval mode and active path are restored afterwards."""
        saved, was_training, active = bn_state(model), model.training, dict(model.arch.active)
        evaluator, constraint, meta = self.selection(model, context)
        try:
            result = self.evolution_class(self.space, self.cfg, self.rng, evaluator, constraint,
                                          evaluated=evaluated, on_evaluate=on_evaluate, log=log).run()
        finally:
            load_bn_state(model, saved)
            model.arch.active = active
            model.train(was_training)
        best = Architecture(result.best.space, dict(result.best.choices))
        cost = constraint.cost(best)
        best.meta.update({"method": self.name, "supernet_val_acc": result.best_score,
                          "flops": cost.flops, "macs": cost.macs, "params": cost.params, **constraint.describe(),
                          "evaluated": len(result.evaluated), **meta})
        if len(result.evaluated_per_process) > 1:  # torchrun: candidates split over the processes
            best.meta["evaluated_per_process"] = result.evaluated_per_process
        return best, result

    def derive(self, model: SuperNet, context: Any = None) -> Architecture:
        """The best architecture of the evolutionary search (module docstring)."""
        best, result = self.evolve(model, context, log=self.log)
        best.meta["evolution"] = result.history
        return best

    # ----- state -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "counts": {k: list(v) for k, v in self.counts.items()},
                "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "counts" in state:
            self.counts = {k: list(v) for k, v in state["counts"].items()}
        self.steps = int(state.get("steps", 0))


register_variant("fairnas", SPOSStrategy, fair=True)  # FairNAS strict fairness (Chu et al., ICCV 2021)
