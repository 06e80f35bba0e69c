"""The DARTS cell space (Liu et al., ICLR 2019) and the reduced spaces S1-S4 of
RobustDARTS (Zela et al., ICLR 2020).

Cells: two input nodes (0 = c_{k-2}, 1 = c_{k-1}), four intermediate nodes
2..5, every intermediate node connected to all earlier nodes (14 edges),
output = concatenation of nodes 2..5.  A normal and a reduction cell type;
all cells of a type share their choice points.

* Search network: 8 cells, C=16, reductions at 1/3 and 2/3 of the depth,
  affine-free batch norm, global pooling, linear classifier.
* Evaluation network: 20 cells, C=36, auxiliary head (weight 0.4) after the
  second reduction, drop-path; cutout lives in the data augmentation.

S1 takes its per-edge operation pairs from
``DATA_DIR/reduced_spaces/robust_darts_s1_s4.json``; S2 (skip, sep_conv_3x3),
S3 (none, skip, sep_conv_3x3) and S4 (noise, sep_conv_3x3) use the same pair
on every edge.
"""
from __future__ import annotations

import ast
import json
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from attnas.arch import Architecture, edge_key
from attnas.data.paths import require_file
from attnas.errors import ArchitectureError, ConfigError
from attnas.ops.layout import as_layout, use_channels_last
from attnas.ops.primitives import FactorizedReduce, ReLUConvBN, build_op, darts_ops
from attnas.spaces.base import ChoiceBlock, ChoicePoint, MixerFactory, SearchSpace
from attnas.spaces.cells import CellDAG
from attnas.spaces.registry import register_space

DARTS_CANDIDATES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
CELL_TYPES = ("normal", "reduce")
N_INPUTS, N_NODES = 2, 4
DARTS_EDGES = [(i, j) for j in range(N_INPUTS, N_INPUTS + N_NODES) for i in range(j)]  # DARTS edge order
CONCAT = list(range(N_INPUTS, N_INPUTS + N_NODES))


def _looks_like_genotype(text: str) -> bool:
    return text.strip().startswith("Genotype(")


class DartsCell(nn.Module):
    """Preprocess the two inputs to width C, then run the cell DAG."""

    def __init__(self, dag: CellDAG, C_pp: int, C_p: int, C: int, reduction_prev: bool,
                 affine: bool) -> None:
        super().__init__()
        self.preprocess0 = (FactorizedReduce(C_pp, C, affine) if reduction_prev
                            else ReLUConvBN(C_pp, C, 1, 1, 0, affine))
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine)
        self.dag = dag

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        return self.dag(self.preprocess0(s0), self.preprocess1(s1))


class AuxiliaryHead(nn.Module):
    """DARTS CIFAR auxiliary classifier (input 8x8 at 32x32 images; adaptive below 5x5)."""

    def __init__(self, C: int, num_classes: int, spatial: int) -> None:
        super().__init__()
        pool = (nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False) if spatial >= 5
                else nn.AdaptiveAvgPool2d(2))
        self.features = nn.Sequential(
            nn.ReLU(inplace=True), pool,
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class DartsNetwork(nn.Module):
    """Stack of cells; ``make_dag(cell_type, C, reduction)`` returns a CellDAG.

    In training mode with an auxiliary head the forward returns
    ``(logits, aux_logits)``; otherwise the logits.  Weights and activations are
    channels-last where safe (:mod:`attnas.ops.layout`; ``channels_last=False`` keeps NCHW).
    """

    def __init__(self, make_dag, C: int, layers: int, num_classes: int, in_channels: int,
                 image_size: int, affine: bool, stem_multiplier: int = 3,
                 auxiliary: bool = False, channels_last: bool = True) -> None:
        super().__init__()
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(C_curr))
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev, size = False, image_size
        self.aux_index = 2 * layers // 3
        self.auxiliary_head = None
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
                size = (size + 1) // 2
            cell_type = "reduce" if reduction else "normal"
            self.cells.append(DartsCell(make_dag(cell_type, C_curr, reduction), C_pp, C_p, C_curr,
                                        reduction_prev, affine))
            reduction_prev = reduction
            C_pp, C_p = C_p, len(CONCAT) * C_curr
            if auxiliary and i == self.aux_index:
                self.auxiliary_head = AuxiliaryHead(C_p, num_classes, size)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)
        self.channels_last = use_channels_last(self, channels_last)

    def set_drop_path(self, prob: float) -> None:
        for cell in self.cells:
            cell.dag.drop_prob = prob

    def forward(self, x: torch.Tensor):
        s0 = s1 = self.stem(as_layout(x, self.channels_last))
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(self.pool(s1).flatten(1))
        return (logits, aux) if aux is not None else logits


class _DartsLikeSpace(SearchSpace):
    """Shared machinery of DARTS and S1-S4; subclasses give the per-edge candidates."""

    min_image_size = 4

    def __init__(self, C: int = 16, layers: int = 8, data_dir: str | None = None) -> None:
        self.C, self.layers, self.data_dir = int(C), int(layers), data_dir
        if self.layers < 3:
            raise ConfigError(f"a DARTS network needs at least 3 cells, got layers={layers}")

    def edge_candidates(self, cell: str, edge_index: int) -> tuple[str, ...]:
        raise NotImplementedError

    def choice_points(self) -> list[ChoicePoint]:
        return [ChoicePoint(edge_key(c, i, j), self.edge_candidates(c, n), f"{c}:{j}")
                for c in CELL_TYPES for n, (i, j) in enumerate(DARTS_EDGES)]

    def build_supernet(self, mixer_factory: MixerFactory, num_classes: int, in_channels: int,
                       image_size: int) -> nn.Module:
        self.check_input(in_channels, image_size)
        points = {p.key: p for p in self.choice_points()}
        family = darts_ops(search=True)

        def make_dag(cell: str, C: int, reduction: bool) -> CellDAG:
            edges = {}
            for i, j in DARTS_EDGES:
                p = points[edge_key(cell, i, j)]
                stride = 2 if reduction and i < N_INPUTS else 1
                ops = [build_op(family, o, C, C, stride, False) for o in p.candidates]
                edges[(i, j)] = ChoiceBlock(p, ops, mixer_factory(p))
            return CellDAG(cell, N_INPUTS, N_NODES, edges, CONCAT)

        return DartsNetwork(make_dag, self.C, self.layers, num_classes, in_channels, image_size,
                            affine=False)

    def build_network(self, arch: Architecture, num_classes: int, in_channels: int,
                      image_size: int, C: int = 36, layers: int = 20, auxiliary: bool = True,
                      **options: Any) -> nn.Module:
        """The evaluation network (DARTS: 20 cells, C=36, auxiliary head)."""
        if options:
            raise ConfigError(f"unknown network options for '{self.name}': {sorted(options)}")
        self.validate(arch)
        self.check_input(in_channels, image_size)
        family = darts_ops(search=False)

        def make_dag(cell: str, C_: int, reduction: bool) -> CellDAG:
            edges = {}
            for (c, i, j, op) in arch.edges(cell):
                if op != "none":
                    stride = 2 if reduction and i < N_INPUTS else 1
                    edges[(i, j)] = build_op(family, op, C_, C_, stride, True)
            return CellDAG(cell, N_INPUTS, N_NODES, edges, CONCAT)

        return DartsNetwork(make_dag, C, layers, num_classes, in_channels, image_size,
                            affine=True, auxiliary=auxiliary)

    # ----- architectures -------------------------------------------------
    def validate(self, arch: Architecture) -> None:
        """As :meth:`SearchSpace.validate`, but an edge the cell does not use is ``none``
        even where ``none`` is no candidate (S1, S2, S4: what :meth:`derive` and
        :meth:`sample` write for the edges the DARTS rule leaves out)."""
        points = {p.key: p for p in self.choice_points()}
        unused = {k for k, op in arch.choices.items()
                  if op == "none" and k in points and "none" not in points[k].candidates}
        if not unused:
            return super().validate(arch)
        stand_in = {k: (points[k].candidates[0] if k in unused else op) for k, op in arch.choices.items()}
        super().validate(Architecture(arch.space, stand_in, arch.meta))
        self.validate_topology(arch)

    def validate_topology(self, arch: Architecture) -> None:
        for c in CELL_TYPES:
            for j in CONCAT:
                if all(arch.choices[edge_key(c, i, j)] == "none" for i in range(j)):
                    raise ArchitectureError(f"node {j} of the {c} cell has no input (every incoming edge is 'none')")

    def derive(self, scores: Mapping[str, Sequence[float]], k: int = 2) -> Architecture:
        """DARTS rule: per node, the ``k`` incoming edges whose strongest non-``none``
        candidate is strongest; on each kept edge that candidate (Liu et al., Sec. 2.4)."""
        choices: dict[str, str] = {}
        points = self.choice_points()
        by_group: dict[str, list[ChoicePoint]] = {}
        for p in points:
            by_group.setdefault(p.group, []).append(p)
        for group, pts in by_group.items():
            ranked = []
            for p in pts:
                s = list(scores[p.key])
                best = max((n for n, o in enumerate(p.candidates) if o != "none"), key=s.__getitem__)
                ranked.append((s[best], p.key, p.candidates[best]))
            ranked.sort(key=lambda t: -t[0])
            keep = {key: op for _, key, op in ranked[:k]}
            for p in pts:
                choices[p.key] = keep.get(p.key, "none")
        return Architecture(self.name, choices)

    def sample(self, rng) -> Architecture:
        """Uniform random DARTS-rule architecture: two distinct inputs per node, a random non-none op each."""
        choices = {}
        for p in self.choice_points():
            choices[p.key] = "none"
        for c in CELL_TYPES:
            for j in CONCAT:
                for i in rng.sample(range(j), 2):
                    p = next(q for q in self.choice_points() if q.key == edge_key(c, i, j))
                    choices[p.key] = rng.choice([o for o in p.candidates if o != "none"])
        return Architecture(self.name, choices)

    @classmethod
    def parse_native(cls, text: str) -> Architecture:
        """Parse ``Genotype(normal=[(op, input), ...], normal_concat=..., reduce=[...], reduce_concat=...)``:
        entries in node order, two per node (as the DARTS code writes them)."""
        try:
            call = ast.parse(text.strip(), mode="eval").body
            if not isinstance(call, ast.Call):
                raise ValueError
            kw = {k.arg: k.value for k in call.keywords}
            lists = {c: ast.literal_eval(kw[c]) for c in CELL_TYPES}
        except (SyntaxError, ValueError, KeyError):
            raise ArchitectureError(
                f"cannot parse DARTS genotype '{text[:80]}': expected "
                "Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), reduce=[...], reduce_concat=...)"
            ) from None
        choices = {edge_key(c, i, j): "none" for c in CELL_TYPES for i, j in DARTS_EDGES}
        for c in CELL_TYPES:
            entries = lists[c]
            if len(entries) != 2 * N_NODES:
                raise ArchitectureError(f"genotype {c} cell has {len(entries)} entries, expected {2 * N_NODES}")
            for n, entry in enumerate(entries):
                if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
                    raise ArchitectureError(f"genotype entry {entry!r} is not (op, input)")
                op, src = entry
                j = N_INPUTS + n // 2
                if not isinstance(src, int) or not 0 <= src < j:
                    raise ArchitectureError(f"genotype {c} node {j}: input {src!r} must be in 0..{j - 1}")
                choices[edge_key(c, src, j)] = op
        arch = Architecture(cls.name, choices)
        return arch

    @classmethod
    def to_native(cls, arch: Architecture) -> str | None:
        """The DARTS ``Genotype`` string, or None for a flexible topology (not 2 inputs per node)."""
        parts = {}
        for c in CELL_TYPES:
            entries = []
            for j in CONCAT:
                ins = [(arch.choices[edge_key(c, i, j)], i) for i in range(j)
                       if arch.choices.get(edge_key(c, i, j), "none") != "none"]
                if len(ins) != 2:
                    return None
                entries.extend(ins)
            parts[c] = entries
        return (f"Genotype(normal={parts['normal']!r}, normal_concat=range(2, 6), "
                f"reduce={parts['reduce']!r}, reduce_concat=range(2, 6))")


@register_space("darts", native_guess=_looks_like_genotype)
class DartsSpace(_DartsLikeSpace):
    """The DARTS space: 8 candidate operations on every edge."""

    def edge_candidates(self, cell: str, edge_index: int) -> tuple[str, ...]:
        return DARTS_CANDIDATES


class _ReducedSpace(_DartsLikeSpace):
    all_edges: tuple[str, ...] = ()

    def edge_candidates(self, cell: str, edge_index: int) -> tuple[str, ...]:
        return self.all_edges


@register_space("s1")
class S1Space(_DartsLikeSpace):
    """RobustDARTS S1: two operations per edge, read from the data folder."""

    def __init__(self, C: int = 16, layers: int = 8, data_dir: str | None = None) -> None:
        super().__init__(C, layers, data_dir)
        path = require_file("reduced_spaces/robust_darts_s1_s4.json", self.data_dir,
                            what="RobustDARTS S1 edge list")
        table = json.loads(path.read_text())["S1"]
        self._ops = {c: [tuple(ops) for ops in table[c]] for c in CELL_TYPES}
        if any(len(self._ops[c]) != len(DARTS_EDGES) for c in CELL_TYPES):
            raise ConfigError(f"{path}: S1 must list {len(DARTS_EDGES)} edges per cell type")

    def edge_candidates(self, cell: str, edge_index: int) -> tuple[str, ...]:
        return self._ops[cell][edge_index]


@register_space("s2")
class S2Space(_ReducedSpace):
    """RobustDARTS S2: {skip_connect, sep_conv_3x3} on every edge."""
    all_edges = ("skip_connect", "sep_conv_3x3")


@register_space("s3")
class S3Space(_ReducedSpace):
    """RobustDARTS S3: {none, skip_connect, sep_conv_3x3} on every edge."""
    all_edges = ("none", "skip_connect", "sep_conv_3x3")


@register_space("s4")
class S4Space(_ReducedSpace):
    """RobustDARTS S4: {noise, sep_conv_3x3} on every edge (noise = N(0,1), independent of the input)."""
    all_edges = ("noise", "sep_conv_3x3")
