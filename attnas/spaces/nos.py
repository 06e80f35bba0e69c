"""The NOS heterogeneous operator cell space (Neural Operator Search, Sec. 3.2-3.3).

A cell has 2 input nodes, 4 inner nodes and outputs the concatenation of the inner
nodes.  Each inner node k is a *heterogeneous residual block* (Fig. 2):

* first tier (Eq. 2): every earlier node i sends ``o^{i->k'}(F_i)`` to a surrogate node k';
  features are summed, attentions summed, dynamic kernels collected, and the surrogate is
  ``F_k' = F ⊕ (F ⊙ A) ⊕ sum_D F ⊛ D`` (Eq. 3);
* second tier (Eq. 4): one operation ``o^{k'->k}`` on the surrogate node, combined the same
  way (Eq. 5).  A second-tier attention / dynamic operation calibrates the surrogate itself
  (see :class:`attnas.ops.attention_ops.CalibrationOp`).

18 edges per cell type (14 first-tier + 4 second-tier), 11 candidate operations on each
(:data:`attnas.ops.attention_ops.NOS_OPS`): the 18 x 11 architecture matrix A of Sec. 3.3.

**Edge keys.**  Keys follow :mod:`attnas.arch` (``"<cell>:<src>-><dst>"``, digits only) with
the surrogate nodes numbered as nodes of their own, so every key is parseable and every
edge goes forward (the drawing in :mod:`attnas.viz.draw` needs both):

==========  ======  =====  =====  =====  =====
paper node  0, 1    2'/2   3'/3   4'/4   5'/5
key node    0, 1    2/3    4/5    6/7    8/9
==========  ======  =====  =====  =====  =====

i.e. the block of inner node m (m = 0..3) has surrogate node ``2 + 2m`` and inner node
``3 + 2m``; first-tier edges go from ``{0, 1, 3, 5, 7}`` into the surrogates, second-tier
edges are ``2->3``, ``4->5``, ``6->7``, ``8->9``; the cell output concatenates 3, 5, 7, 9.
An unused first-tier edge of a derived cell is ``"none"`` (not a candidate of the search).

**Mixture (Eq. 7).**  Each edge is a :class:`~attnas.spaces.base.ChoiceBlock`; every candidate
returns a :class:`~attnas.ops.attention_ops.HeteroTerms` and the strategy's mixer combines them
as usual (DARTS: ``sum_o w_o * o(x)``), which scales feature maps, attention maps and kernels by
their operation's weight; the space then applies Eq. 2-5 to the mixed terms.  So
``F = sum_{o in O_f} w_o o(x)``, ``A = sum_{o in O_a} w_o o(x)``, ``D = {w_o o(x)}_{o in O_d}``,
and since ``⊛`` is linear in the kernel, ``F ⊛ (w D) = w (F ⊛ D)``.

Networks reuse :class:`attnas.spaces.darts.DartsNetwork`: search proxy 8 cells, C=16, affine-free
BN (``size`` "paper"; the default ``size`` "small" has 3 cells, :class:`NOSSpace`); CIFAR evaluation network 20 cells, C=36, auxiliary head 0.4; ImageNet mobile network
(``imagenet=True``, the default from 128-pixel images) 14 cells, C=48, DARTS's stride-8 ImageNet
stem -- both built by :func:`attnas.spaces.darts.build_evaluation_network`.
"""
from __future__ import annotations

import itertools
import random
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from attnas.arch import Architecture, edge_key
from attnas.errors import ArchitectureError, ConfigError
from attnas.ops.attention_ops import (FEATURE_OPS, NOS_OPS, HeteroTerms, build_nos_op, combine,
                                      op_kind)
from attnas.spaces.base import ChoiceBlock, ChoicePoint, MixerFactory, SearchSpace
from attnas.spaces.cells import drop_path
from attnas.spaces.darts import DartsNetwork, build_evaluation_network
from attnas.spaces.registry import register_space
from attnas.arch import CellInfo

CELL_TYPES = ("normal", "reduce")
#: ``size`` presets of the search proxy (:class:`NOSSpace`): the paper's (Sec. 4.1) and attnas's small default
SIZES = {"paper": {"C": 16, "layers": 8}, "small": {"C": 16, "layers": 3}}
N_INPUTS, N_BLOCKS = 2, 4


def surrogate_node(m: int) -> int:
    """Key node of the surrogate k' of block m (0-based)."""
    return N_INPUTS + 2 * m


def inner_node(m: int) -> int:
    """Key node of inner node k of block m (0-based)."""
    return N_INPUTS + 2 * m + 1


def block_sources(m: int) -> list[int]:
    """Key nodes feeding block m's first tier: the inputs and the earlier inner nodes."""
    return list(range(N_INPUTS)) + [inner_node(b) for b in range(m)]


#: (src, surrogate) of the 14 first-tier edges, block by block
FIRST_TIER = [(i, surrogate_node(m)) for m in range(N_BLOCKS) for i in block_sources(m)]
#: (surrogate, inner) of the 4 second-tier edges
SECOND_TIER = [(surrogate_node(m), inner_node(m)) for m in range(N_BLOCKS)]
OUTPUT_NODES = [inner_node(m) for m in range(N_BLOCKS)]


class HeteroCellDAG(nn.Module):
    """The heterogeneous operator cell (Eq. 2-5) over modules that return HeteroTerms.

    ``first[(src, sur)]`` and ``second[(sur, inner)]`` are ChoiceBlocks (supernet) or fixed
    operations (derived cell; absent first-tier edges are simply missing).  ``drop_prob``:
    drop-path (evaluation network, as DARTS per edge) on the output of every non-identity
    first-tier feature edge; attention and dynamic edges are not dropped."""

    def __init__(self, cell: str, first: Mapping[tuple[int, int], nn.Module],
                 second: Mapping[tuple[int, int], nn.Module]) -> None:
        super().__init__()
        self.first_edges = [e for e in FIRST_TIER if e in first]
        self.first = nn.ModuleDict({f"e{s}_{d}": first[(s, d)] for s, d in self.first_edges})
        self.second = nn.ModuleDict({f"e{s}_{d}": second[(s, d)] for s, d in SECOND_TIER})
        self.drop_prob = 0.0

    def _drop(self, terms: HeteroTerms, op: nn.Module) -> HeteroTerms:
        inner = getattr(op, "op", None)
        if (self.training and self.drop_prob > 0 and terms.feature is not None
                and not isinstance(inner, nn.Identity) and terms.attention is None and not terms.kernels):
            return HeteroTerms(feature=drop_path(terms.feature, self.drop_prob))
        return terms

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = {0: s0, 1: s1}
        for m in range(N_BLOCKS):
            sur, inner = surrogate_node(m), inner_node(m)
            terms = None
            for s, d in self.first_edges:
                if d == sur:
                    op = self.first[f"e{s}_{d}"]
                    t = self._drop(op(states[s]), op)
                    terms = t if terms is None else terms + t
            if terms is None:
                raise ArchitectureError(f"block {m} of the cell has no first-tier input")
            f_sur = combine(terms)                              # Eq. 2-3
            out = combine(self.second[f"e{sur}_{inner}"](f_sur))  # Eq. 4-5
            states[inner] = out
        return torch.cat([states[n] for n in OUTPUT_NODES], dim=1)


@register_space("nos")
class NOSSpace(SearchSpace):
    """NOS heterogeneous operator cells (normal + reduction) in a DARTS-style macro network.

    Options: ``size`` -- ``"paper"``: the search proxy of Sec. 4.1 (``C`` 16, ``layers`` 8:
    8 cells, reductions at 1/3 and 2/3); ``"small"`` (attnas's default, issue 19): ``C`` 16,
    ``layers`` 3 (one normal cell, then the two reduction cells; 2.3 s per search step at
    batch 64 on 8x8 digits on 2 CPU threads against ~8 s for the 8-cell proxy, so a 1-epoch
    search on digits ends in well under a minute).  Explicit ``C`` / ``layers`` override the
    size; ``att_reduction`` (16) and ``dyn_reduction`` (8): the channel reductions r of the
    attention and dynamic-convolution operations (Appendix A.1).
    """

    min_image_size = 4
    viz_cell = CellInfo(2, "concat", ("$c_{k-2}$", "$c_{k-1}$"), "$c_{k}$", concat_nodes=(3, 5, 7, 9))

    def __init__(self, C: int | None = None, layers: int | None = None, att_reduction: int = 16,
                 dyn_reduction: int = 8, data_dir: str | None = None, size: str = "small") -> None:
        if size not in SIZES:
            raise ConfigError(f"unknown nos size '{size}'; expected one of {sorted(SIZES)}")
        self.size = size
        C = SIZES[size]["C"] if C is None else C
        layers = SIZES[size]["layers"] if layers is None else layers
        self.C, self.layers = int(C), int(layers)
        self.att_reduction, self.dyn_reduction = int(att_reduction), int(dyn_reduction)
        if self.layers < 3:
            raise ConfigError(f"a NOS network needs at least 3 cells, got layers={layers}")
        if self.C < 1 or self.att_reduction < 1 or self.dyn_reduction < 1:
            raise ConfigError("C, att_reduction and dyn_reduction must be positive")

    # ----- choice points -------------------------------------------------
    def choice_points(self) -> list[ChoicePoint]:
        pts = []
        for c in CELL_TYPES:
            pts += [ChoicePoint(edge_key(c, s, d), NOS_OPS, f"{c}:{d}") for s, d in FIRST_TIER]
            pts += [ChoicePoint(edge_key(c, s, d), NOS_OPS, edge_key(c, s, d)) for s, d in SECOND_TIER]
        return pts

    def stage_cells(self) -> list[int]:
        """Indices of the cells whose outputs end the three stages (before each reduction and
        the last cell): the proxy's S_0, S_1, S_2 of Fig. 3."""
        return stage_cells(self.layers)

    def _op(self, name: str, C: int, stride: int, affine: bool, search: bool, second: bool) -> nn.Module:
        return build_nos_op(name, C, stride, affine, search, second, self.att_reduction,
                            self.dyn_reduction)

    def build_supernet(self, mixer_factory: MixerFactory, num_classes: int, in_channels: int,
                       image_size: int) -> nn.Module:
        self.check_input(in_channels, image_size)
        points = {p.key: p for p in self.choice_points()}

        def make_dag(cell: str, C: int, reduction: bool) -> HeteroCellDAG:
            first, second = {}, {}
            for s, d in FIRST_TIER:
                p = points[edge_key(cell, s, d)]
                stride = 2 if reduction and s < N_INPUTS else 1
                first[(s, d)] = ChoiceBlock(p, [self._op(o, C, stride, False, True, False)
                                                for o in p.candidates], mixer_factory(p),
                                            absent=lambda x: HeteroTerms())  # unused edge: no term
            for s, d in SECOND_TIER:
                p = points[edge_key(cell, s, d)]
                second[(s, d)] = ChoiceBlock(p, [self._op(o, C, 1, False, True, True)
                                                 for o in p.candidates], mixer_factory(p))
            return HeteroCellDAG(cell, first, second)

        return DartsNetwork(make_dag, self.C, self.layers, num_classes, in_channels, image_size,
                            affine=False)

    def build_network(self, arch: Architecture, num_classes: int, in_channels: int, image_size: int,
                      C: int | None = None, layers: int | None = None, auxiliary: bool = True,
                      imagenet: bool | None = None, **options: Any) -> nn.Module:
        """Evaluation network (:func:`attnas.spaces.darts.build_evaluation_network`, shared with
        the DARTS-like spaces): CIFAR 20 cells, C=36, auxiliary head 0.4 (Sec. 4.3); ImageNet
        mobile setting (Sec. 4.3, ``imagenet``, default: images of at least 128 pixels):
        14 cells, C=48, DARTS's stride-8 ImageNet stem."""
        if options:
            raise ConfigError(f"unknown network options for 'nos': {sorted(options)}")
        self.validate(arch)
        self.check_input(in_channels, image_size)

        def make_dag(cell: str, C_: int, reduction: bool) -> HeteroCellDAG:
            first, second = {}, {}
            for s, d in FIRST_TIER:
                op = arch.choices[edge_key(cell, s, d)]
                if op != "none":
                    stride = 2 if reduction and s < N_INPUTS else 1
                    first[(s, d)] = self._op(op, C_, stride, True, False, False)
            for s, d in SECOND_TIER:
                second[(s, d)] = self._op(arch.choices[edge_key(cell, s, d)], C_, 1, True, False, True)
            return HeteroCellDAG(cell, first, second)

        return build_evaluation_network(make_dag, num_classes, in_channels, image_size, C, layers,
                                        auxiliary, imagenet)

    # ----- architectures -------------------------------------------------
    def validate(self, arch: Architecture) -> None:
        """As the base check, but first-tier edges of a derived cell may be ``none``."""
        if arch.space != self.name:
            raise ArchitectureError(f"architecture is for space '{arch.space}', not '{self.name}'")
        keys = {p.key for p in self.choice_points()}
        missing = sorted(keys - set(arch.choices))
        extra = sorted(set(arch.choices) - keys)
        if missing or extra:
            raise ArchitectureError(f"architecture does not match space 'nos': missing {missing[:4]}, "
                                    f"unknown {extra[:4]}")
        second = {edge_key(c, s, d) for c in CELL_TYPES for s, d in SECOND_TIER}
        for k, op in arch.choices.items():
            allowed = NOS_OPS if k in second else NOS_OPS + ("none",)
            if op not in allowed:
                raise ArchitectureError(f"operation '{op}' is not allowed on '{k}' in space 'nos'; "
                                        f"expected one of {list(allowed)}")
        self.validate_topology(arch)

    def validate_topology(self, arch: Architecture) -> None:
        """Every block needs a first-tier feature operation (Eq. 3 calibrates features)."""
        for c in CELL_TYPES:
            for m in range(N_BLOCKS):
                ops = [arch.choices[edge_key(c, s, surrogate_node(m))] for s in block_sources(m)]
                if not any(o in FEATURE_OPS for o in ops):
                    raise ArchitectureError(
                        f"block {m} (node {inner_node(m)}) of the {c} cell has no first-tier feature "
                        f"operation; Eq. 3 needs one (first-tier ops: {ops})")

    def derive(self, scores: Mapping[str, Sequence[float]], k: int = 2) -> Architecture:
        """Sec. 3.3: per block, the ``k`` strongest first-tier incoming operations (distinct
        edges) with at least one feature operation, and the strongest second-tier operation.

        Among all pairs of distinct edges with, on each, its strongest operation or its strongest
        feature operation, the feasible pair (>= 1 feature op) of largest total weight is kept;
        when the plain top-k already holds a feature op this is the DARTS rule."""
        choices: dict[str, str] = {}
        for c in CELL_TYPES:
            for m in range(N_BLOCKS):
                sur = surrogate_node(m)
                options = []  # (key, op, score, is_feature)
                for s in block_sources(m):
                    key = edge_key(c, s, sur)
                    sc = list(scores[key])
                    best = max(range(len(NOS_OPS)), key=sc.__getitem__)
                    best_f = max((i for i, o in enumerate(NOS_OPS) if o in FEATURE_OPS), key=sc.__getitem__)
                    for i in {best, best_f}:
                        options.append((key, NOS_OPS[i], sc[i], NOS_OPS[i] in FEATURE_OPS))
                    choices[key] = "none"
                n_keep = min(k, len(block_sources(m)))
                feasible = [combo for combo in itertools.combinations(options, n_keep)
                            if len({o[0] for o in combo}) == n_keep and any(o[3] for o in combo)]
                best_combo = max(feasible, key=lambda cb: sum(o[2] for o in cb))
                for key, op, _, _ in best_combo:
                    choices[key] = op
                key2 = edge_key(c, sur, inner_node(m))
                sc2 = list(scores[key2])
                choices[key2] = NOS_OPS[max(range(len(NOS_OPS)), key=sc2.__getitem__)]
        return Architecture(self.name, choices)

    def sample(self, rng: random.Random) -> Architecture:
        """A uniformly random derived-rule cell: 2 distinct first-tier edges per block (>= 1
        feature op), one second-tier op."""
        choices = {p.key: "none" for p in self.choice_points()}
        for c in CELL_TYPES:
            for m in range(N_BLOCKS):
                sur = surrogate_node(m)
                while True:
                    srcs = rng.sample(block_sources(m), 2)
                    ops = [rng.choice(NOS_OPS) for _ in srcs]
                    if any(o in FEATURE_OPS for o in ops):
                        break
                for s, o in zip(srcs, ops):
                    choices[edge_key(c, s, sur)] = o
                choices[edge_key(c, sur, inner_node(m))] = rng.choice(NOS_OPS)
        return Architecture(self.name, choices)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"edges_per_cell": len(FIRST_TIER) + len(SECOND_TIER), "operations": len(NOS_OPS),
                  "operation_kinds": {o: op_kind(o) for o in NOS_OPS}})
        return d


def stage_cells(layers: int) -> list[int]:
    """Last cell of each stage of a DARTS-style network of ``layers`` cells (reductions at
    ``layers // 3`` and ``2 * layers // 3``)."""
    return [layers // 3 - 1, 2 * layers // 3 - 1, layers - 1]
