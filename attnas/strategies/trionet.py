"""TrioNet search strategy (Pi et al., TrioNet, BMVC 2021, Sec. 3.3-3.5).

Supernet training (Eq. 2): ``min_W E_{a ~ Gamma(A)} L_train(C(W, a))`` on the weight-sliced
supernet of :mod:`attnas.spaces.trionet` (single path, :class:`SinglePathMixer` routing).

Sampling distribution Gamma (``sampling``):

* ``"hierarchical"`` (Hierarchical Sampling, Sec. 3.4, Eq. 4; default): for every block the
  operator beta ~ U{conv, local, axial} first, then its configuration theta uniformly among
  that operator's Table 1 options -- each operator is trained 1/3 of the time;
* ``"uniform"``: every block's candidate uniformly among all 70 (SPOS), so operators are
  drawn 6/70, 48/70, 16/70 of the time.

Elastic depth (Appendix A; the space's ``depth:<s>`` choice points): under either sampling
each stage's depth is drawn uniformly among its choices (the paper's 1-2, 2-3, 3-6, 1-3
blocks) at the top of the hierarchy -- depth, then each block's operator, then its
configuration; the draws are independent, so the operator of a block that the depth skips
is drawn and unused.  A stage of depth d runs its first d blocks; the others are "none"
(the identity, :meth:`TrioNetSpace.conform`).

Sandwich rule (Sec. 3.4, ``sandwich``): every step trains the smallest, the biggest and
``sandwich_random`` (2) random sub-networks on the same batch, gradients accumulated, ONE
optimizer step.  The paper adopts it "after the operator for each block is selected": under
hierarchical sampling one operator per block is drawn per step and shared by the 4 paths;
"smallest"/"biggest" are then the least / most costly configuration of that operator (every
elastic dimension at its minimum / maximum).  Under uniform sampling (no operator is drawn)
they are the least / most costly of all the block's candidates.  Cost = the block's FLOPs at
the layout's nominal resolution (:meth:`TrioNetSpace.candidate_size`); ties -- the number
of heads changes neither FLOPs nor parameters -- go to fewer heads for the smallest and more
heads for the biggest.  (attnas's interpretation; the paper does not define them across
operators.)  With elastic depth the smallest sub-network has every stage at its smallest
depth and the biggest at its greatest (all blocks); the random ones draw their depths.

Weight sharing (``sharing``): ``"multihead"`` (Multi-Head Sharing, Sec. 3.5, Alg. 1) or
``"prefix"`` (the default sharing the paper ablates); applied to the supernet blocks in
:meth:`TrioNetStrategy.build` (:mod:`attnas.ops.trio_supernet`).

Optimisation (Appendix A): SGD with Nesterov momentum 0.9, label smoothing, linear warm-up
then cosine decay (per epoch), weight decay "only added to the largest model"
(``decay_biggest_only``): with the sandwich rule, the L2 gradient ``wd * W`` is added to
exactly the weight entries the biggest sub-network of the step computes with -- in every
supernet block the slices of its option (:meth:`TrioSuperBlock.usage_masks`: the first ``mid``
rows of ``conv1``, the Multi-Head-Sharing channels of the attention projections, the centred
kernel of the convolution, ...), the stem and classifier whole -- and to no other entry: not to
the unused channels of a shared tensor, nor to the operators the biggest path does not run.
The biggest path runs every block (greatest depths), so with elastic depth the decay reaches
the blocks the smaller paths skip too; a block a path skips has no slices in its targets.
Without the sandwich (or with ``decay_biggest_only=false``) the optimizer decays every trained
weight, as SPOS.

Selection (Eq. 3): SPOS's evolutionary search (:mod:`attnas.search.evolution`) with the
preset's population / generations / FLOPs budget, candidates scored by validation accuracy
after BN recalibration.  The paper does not describe its evolution's sampling; here its
random initial population and its mutations draw a block's candidate with the training
sampler (:class:`HierarchicalEvolution`: operator first under ``sampling="hierarchical"``,
uniform over the 70 candidates under ``"uniform"``; a depth uniformly among its choices),
crossover as SPOS -- depths included: a child takes each stage's depth and each block from
either parent, and a block its depth runs that the parent it came from skipped is the other
parent's (:class:`~attnas.search.evolution.EvolutionSearch`).  The winner is
exported with inherited weights (``attnas evolve RUN --export``) or retrained from scratch
(``attnas train --arch``).
"""
from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnas.arch import Architecture
from attnas.errors import ConfigError
from attnas.ops.trio_supernet import SHARING_MODES, TrioSuperBlock
from attnas.search.evolution import EvolutionSearch
from attnas.strategies.base import SuperNet, register_strategy
from attnas.strategies.spos import SPOSStrategy

SAMPLING_MODES = ("hierarchical", "uniform")


class HierarchicalEvolution(EvolutionSearch):
    """SPOS evolution whose random candidates and mutations draw a block's candidate
    hierarchically (operator uniformly, then its configuration, Eq. 4) when
    ``cfg.sampling`` is "hierarchical"; depths uniformly; crossover, selection and budget as SPOS."""

    def __init__(self, *args, groups: dict[str, dict[str, list[str]]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._groups = groups

    def _draw(self, key: str) -> str:
        groups = self._groups.get(key)
        if self.cfg.sampling != "hierarchical" or groups is None:  # uniform; a stage's depth
            return super()._draw(key)
        return self.rng.choice(groups[self.rng.choice(sorted(groups))])


@register_strategy("trionet")
class TrioNetStrategy(SPOSStrategy):
    """Hierarchical sampling + sandwich rule + multi-head sharing + evolution (module docstring)."""

    preset_name = "trionet"

    def __init__(self, space, options=None) -> None:
        from attnas.spaces.trionet import TrioNetSpace, operator_of

        if not isinstance(space, TrioNetSpace):
            raise ConfigError(f"method 'trionet' searches the 'trionet' space, not '{space.name}'")
        super().__init__(space, options)
        c = self.cfg
        if c.sampling not in SAMPLING_MODES:
            raise ConfigError(f"unknown sampling '{c.sampling}'; expected one of {list(SAMPLING_MODES)}")
        if c.sharing not in SHARING_MODES:
            raise ConfigError(f"unknown sharing '{c.sharing}'; expected one of {list(SHARING_MODES)}")
        if not isinstance(c.sandwich, bool):
            raise ConfigError(f"option 'sandwich' must be true or false, got {c.sandwich!r}")
        if isinstance(c.sandwich_random, bool) or not isinstance(c.sandwich_random, int) or c.sandwich_random < 0:
            raise ConfigError(f"option 'sandwich_random' must be a non-negative integer, got {c.sandwich_random!r}")
        if not isinstance(c.decay_biggest_only, bool):
            raise ConfigError(f"option 'decay_biggest_only' must be true or false, got {c.decay_biggest_only!r}")
        if c.fair:
            raise ConfigError("method 'trionet' does not use FairNAS strict fairness (fair must be false)")
        if not 0.0 <= float(c.label_smoothing) < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {c.label_smoothing}")
        if isinstance(c.warmup_epochs, bool) or not isinstance(c.warmup_epochs, int) or c.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be a non-negative integer, got {c.warmup_epochs!r}")
        specs = space.layer_specs()
        #: the blocks' choice points, and the stages' depths (elastic depth; else none)
        self.layer_points, self.depth_points = space.layer_points(), space.depth_points()
        #: per layer: operator -> its candidates (Eq. 4's second stage)
        self.by_op: dict[str, dict[str, list[str]]] = {}
        #: per layer and operator ("*" = all): (smallest, biggest) candidate
        self.extremes: dict[str, dict[str, tuple[str, str]]] = {}
        for p, L in zip(self.layer_points, specs):
            groups: dict[str, list[str]] = {}
            for cand in p.candidates:
                groups.setdefault(operator_of(cand), []).append(cand)
            self.by_op[p.key] = groups
            ext = {}
            for op, cands in [*groups.items(), ("*", list(p.candidates))]:
                keys = {c_: space.candidate_size(L, c_) for c_ in cands}
                small = min(cands, key=lambda c_: keys[c_])
                big = max(cands, key=lambda c_: keys[c_])
                ext[op] = (small, big)
            self.extremes[p.key] = ext
        self.op_counts: dict[str, int] = {op: 0 for op in ("conv", "local", "axial")}
        #: the evolution draws its random candidates / mutations with the same sampling
        self.evolution_class = functools.partial(HierarchicalEvolution, groups=self.by_op)

    # ----- construction ----------------------------------------------------------
    def build(self, num_classes: int, in_channels: int, image_size: int) -> SuperNet:
        model = super().build(num_classes, in_channels, image_size)
        for m in model.net.modules():
            if isinstance(m, TrioSuperBlock):
                m.sharing = self.cfg.sharing
        return model

    def _decay_biggest_only(self) -> bool:
        return bool(self.cfg.decay_biggest_only) and self.cfg.sandwich and self.cfg.weights.weight_decay > 0

    def optimizers(self, model: SuperNet, steps_per_epoch: int, epochs: int) -> dict[str, Any]:
        """SGD (Nesterov) with ``warmup_epochs`` of linear warm-up then cosine decay to ``lr_min``."""
        w, c = self.cfg.weights, self.cfg
        decay = 0.0 if self._decay_biggest_only() else w.weight_decay  # else added in train_step
        opt = torch.optim.SGD(model.net.parameters(), lr=w.lr, momentum=w.momentum, weight_decay=decay,
                              nesterov=bool(c.nesterov) and w.momentum > 0)
        total, warm = max(1, epochs), min(int(c.warmup_epochs), max(0, epochs - 1))
        floor = w.lr_min / w.lr if w.lr > 0 else 1.0

        def factor(e: int) -> float:
            if e < warm:
                return (e + 1) / (warm + 1)
            t = (e - warm) / max(1, total - warm)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

        return {"weights": opt, "schedulers": [torch.optim.lr_scheduler.LambdaLR(opt, factor)]}

    # ----- sampling ----------------------------------------------------------------
    def sample_operators(self) -> dict[str, str]:
        """Eq. 4, first stage: one operator per block, uniformly among those the block offers."""
        return {p.key: self.rng.choice(sorted(self.by_op[p.key])) for p in self.layer_points}

    def sample_depths(self) -> dict[str, str]:
        """Elastic depth: every stage's depth uniformly among its choices (none at fixed depth)."""
        return {p.key: self.rng.choice(p.candidates) for p in self.depth_points}

    def sample_arch(self, ops: dict[str, str] | None = None) -> Architecture:
        """One sub-network: hierarchical (depths, operators, then configurations; ``ops`` fixes
        the operators) or uniform over all candidates (and depths); the blocks past a stage's
        depth are "none"."""
        if self.cfg.sampling == "uniform" and ops is None:
            choices = {p.key: self.rng.choice(p.candidates) for p in self.points}
        else:
            ops = ops or self.sample_operators()
            choices = {**self.sample_depths(), **{p.key: self.rng.choice(self.by_op[p.key][ops[p.key]])
                                                  for p in self.layer_points}}
        return self.space.conform(Architecture(self.space.name, choices))

    def sample_paths(self, model: SuperNet | None = None) -> list[Architecture]:
        """The paths of one step: one sample, or the sandwich (smallest: every stage at its
        smallest depth, biggest: at its greatest, then the random ones)."""
        if not self.cfg.sandwich:
            return [self.sample_arch()]
        if self.cfg.sampling == "hierarchical":
            ops = self.sample_operators()
            which = {p.key: ops[p.key] for p in self.layer_points}
        else:
            ops, which = None, {p.key: "*" for p in self.layer_points}
        small = {**{p.key: p.candidates[0] for p in self.depth_points},
                 **{k: self.extremes[k][w][0] for k, w in which.items()}}
        big = {**{p.key: p.candidates[-1] for p in self.depth_points},
               **{k: self.extremes[k][w][1] for k, w in which.items()}}
        return ([self.space.conform(Architecture(self.space.name, small)), Architecture(self.space.name, big)]
                + [self.sample_arch(ops) for _ in range(self.cfg.sandwich_random)])

    def _count(self, arch: Architecture) -> None:
        super()._count(arch)
        from attnas.spaces.trionet import SKIP, operator_of
        for p in self.layer_points:
            if arch.choices[p.key] != SKIP:
                self.op_counts[operator_of(arch.choices[p.key])] += 1

    # ----- training ----------------------------------------------------------------
    def decay_targets(self, model: SuperNet, arch: Architecture) -> list[tuple[nn.Parameter, torch.Tensor | None]]:
        """``(parameter, mask)`` of every weight path ``arch`` uses: a supernet block's parameters
        with the 0/1 mask of the slices its option takes, every other parameter (stem,
        classifier) whole (mask None)."""
        from attnas.spaces.trionet import SKIP, parse_trio_op

        out: list[tuple[nn.Parameter, torch.Tensor | None]] = []
        in_blocks: set[int] = set()
        for m in model.net.modules():
            if not isinstance(m, TrioSuperBlock):
                continue
            in_blocks.update(id(p) for p in m.parameters())
            name = arch.choices[m.key]
            if name == SKIP:  # skipped by elastic depth: no weight of the block is used
                continue
            cache = m.__dict__.setdefault("_usage_cache", {})  # per block: candidate -> masks
            masks = cache.get(name)
            if masks is None or any(mk is not None and mk.device != p.device for p, mk in masks.items()):
                # boolean, and None where the whole tensor is used (most of them): little memory
                masks = cache[name] = {p: (None if bool(mk.all()) else mk.bool())
                                       for p, mk in m.usage_masks(parse_trio_op(name)).items()}
            out += list(masks.items())
        out += [(p, None) for p in model.net.parameters() if id(p) not in in_blocks and p.requires_grad]
        return out

    def loss(self, model: SuperNet, x: torch.Tensor, y: torch.Tensor):
        """Cross-entropy with the preset's label smoothing."""
        logits = model(x)
        return F.cross_entropy(logits, y, label_smoothing=float(self.cfg.label_smoothing)), logits, {}

    def after_backward(self, model: SuperNet, phase, paths) -> None:
        """L2 weight decay on the biggest sub-network's slices only (Appendix A; the sandwich's
        second path), added to the accumulated gradients."""
        if not self._decay_biggest_only():
            return
        wd = self.cfg.weights.weight_decay
        with torch.no_grad():
            for p, mask in self.decay_targets(model, paths[1]):
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                p.grad.add_(p if mask is None else p * mask, alpha=wd)

    # ----- state -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "op_counts": dict(self.op_counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "op_counts" in state:
            self.op_counts = {k: int(v) for k, v in state["op_counts"].items()}
