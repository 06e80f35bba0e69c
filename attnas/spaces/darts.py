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
* ImageNet evaluation network (DARTS Sec. 3.3, the "mobile setting"; NOS Sec. 4.3 and
  EnTranNAS evaluate the same way): 14 cells, C=48, DARTS's ``NetworkImageNet`` stem --
  ``stem0`` = conv3x3/2 (C/2), BN, ReLU, conv3x3/2 (C), BN at 1/4 of the resolution and
  ``stem1`` = ReLU, conv3x3/2, BN at 1/8; the first cell reads both (its ``c_{k-2}`` through
  a FactorizedReduce) -- auxiliary head at 2/3 of the depth, global average pooling.
  :func:`build_evaluation_network` builds both networks, for every DARTS-style cell space
  (DARTS, S1-S4 and their EnTranNAS results, NOS).  It is chosen by the network option
  ``imagenet`` (true / false) and, when that is not given, by the image size (at least
  :data:`IMAGENET_STEM_FROM` pixels).

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
    """DARTS auxiliary classifier: CIFAR's (input 8x8 at 32x32 images, 5x5 average pool with
    stride 3) or, with ``imagenet``, ImageNet's (input 7x7 at 224x224, stride 2, and no batch
    norm after the 768-channel convolution, as in DARTS's published ``AuxiliaryHeadImageNet``,
    which left it out "for consistency with the experiments in the paper").  Inputs too small
    for that pooling to leave 2x2 (below 7x7, resp. 8x8) are pooled adaptively to 2x2."""

    def __init__(self, C: int, num_classes: int, spatial: int, imagenet: bool = False) -> None:
        super().__init__()
        stride = 2 if imagenet else 3
        pool = (nn.AvgPool2d(5, stride=stride, padding=0, count_include_pad=False)
                if spatial >= 5 + stride else nn.AdaptiveAvgPool2d(2))
        bn768 = [] if imagenet else [nn.BatchNorm2d(768)]
        self.features = nn.Sequential(
            nn.ReLU(inplace=True), pool,
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), *bn768, nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class ImageNetStem(nn.Module):
    """DARTS's ImageNet stem (``NetworkImageNet``): ``stem0`` = conv3x3/2 (C/2), BN, ReLU,
    conv3x3/2 (C), BN; ``stem1`` = ReLU, conv3x3/2 (C), BN.  Returns both outputs (1/4 and
    1/8 of the resolution): the first cell's two inputs."""

    def __init__(self, in_channels: int, C: int) -> None:
        super().__init__()
        if C < 2 or C % 2:
            raise ConfigError(f"the ImageNet stem needs an even C >= 2 (C/2 channels, then a "
                              f"FactorizedReduce to C), got C={C}")
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C))
        # DARTS's ReLU here is in place, which also rectifies s0; the first cell's
        # FactorizedReduce starts with a ReLU, so keeping s0 intact computes the same values
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


#: stems of :class:`DartsNetwork`
STEMS = ("cifar", "imagenet")


class DartsNetwork(nn.Module):
    """Stack of cells; ``make_dag(cell_type, C, reduction)`` returns a CellDAG.

    ``stem``: ``"cifar"`` -- one conv3x3 (``stem_multiplier * C`` channels) at full
    resolution, read as both inputs of the first cell; ``"imagenet"`` -- :class:`ImageNetStem`
    (stride 8, ``C`` channels; the first cell reduces its ``c_{k-2}`` input, as after a
    reduction cell).  In training mode with an auxiliary head the forward returns
    ``(logits, aux_logits)``; otherwise the logits.  Weights and activations are
    channels-last where safe (:mod:`attnas.ops.layout`; ``channels_last=False`` keeps NCHW).
    """

    def __init__(self, make_dag, C: int, layers: int, num_classes: int, in_channels: int,
                 image_size: int, affine: bool, stem_multiplier: int = 3,
                 auxiliary: bool = False, channels_last: bool = True, stem: str = "cifar") -> None:
        super().__init__()
        if stem not in STEMS:
            raise ConfigError(f"unknown stem '{stem}'; expected one of {list(STEMS)}")
        self.imagenet_stem = stem == "imagenet"
        if self.imagenet_stem:
            self.stem = ImageNetStem(in_channels, C)
            C_pp = C_p = C
            reduction_prev, size = True, image_size
            for _ in range(3):
                size = (size + 1) // 2
        else:
            C_stem = stem_multiplier * C
            self.stem = nn.Sequential(nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(C_stem))
            C_pp = C_p = C_stem
            reduction_prev, size = False, image_size
        C_curr = C
        self.cells = nn.ModuleList()
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
                self.auxiliary_head = AuxiliaryHead(C_p, num_classes, size, imagenet=self.imagenet_stem)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)
        self.channels_last = use_channels_last(self, channels_last)

    def set_drop_path(self, prob: float) -> None:
        for cell in self.cells:
            cell.dag.drop_prob = prob

    def forward(self, x: torch.Tensor):
        x = as_layout(x, self.channels_last)
        if self.imagenet_stem:
            s0, s1 = self.stem(x)
        else:
            s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(self.pool(s1).flatten(1))
        return (logits, aux) if aux is not None else logits


#: the evaluation networks: (C, layers) of the CIFAR one (DARTS Sec. 3.3, NOS Sec. 4.3) and of
#: the ImageNet mobile-setting one (DARTS Sec. 3.3, NOS Sec. 4.3: 14 cells, 48 channels)
EVAL_NETWORKS = {"cifar": (36, 20), "imagenet": (48, 14)}
#: image side from which the evaluation network uses the ImageNet stem unless ``imagenet`` is
#: given: the CIFAR stem keeps the full resolution through the first third of the network, which
#: at 224x224 costs 49x its CIFAR multiply-adds (the papers always use the stride-8 stem there),
#: while 32-96 pixel data sets (CIFAR, ImageNet16/32/64, STL-10) are CIFAR-sized
IMAGENET_STEM_FROM = 128
#: smallest image side of the ImageNet network (1x1 after its stride-8 stem and two reductions)
IMAGENET_MIN_SIZE = 32


def uses_imagenet_stem(image_size: int, imagenet: bool | None = None) -> bool:
    """Whether the evaluation network of ``image_size`` images is the ImageNet one: ``imagenet``
    when given, else ``image_size >= IMAGENET_STEM_FROM``."""
    if imagenet is None:
        return image_size >= IMAGENET_STEM_FROM
    if not isinstance(imagenet, bool):
        raise ConfigError(f"network option 'imagenet' must be true or false, got {imagenet!r}")
    return imagenet


def build_evaluation_network(make_dag, num_classes: int, in_channels: int, image_size: int,
                             C: int | None = None, layers: int | None = None, auxiliary: bool = True,
                             imagenet: bool | None = None) -> DartsNetwork:
    """The evaluation network of a DARTS-style cell space (DARTS, S1-S4, NOS): the CIFAR one
    (20 cells, C=36) or the ImageNet one (14 cells, C=48, :class:`ImageNetStem`), auxiliary
    head at 2/3 of the depth.  ``C`` / ``layers`` override the defaults of the chosen one."""
    inet = uses_imagenet_stem(image_size, imagenet)
    C_def, layers_def = EVAL_NETWORKS["imagenet" if inet else "cifar"]
    if inet and image_size < IMAGENET_MIN_SIZE:
        raise ConfigError(f"the ImageNet network (stride-8 stem) needs images of at least "
                          f"{IMAGENET_MIN_SIZE}x{IMAGENET_MIN_SIZE}, got {image_size}")
    return DartsNetwork(make_dag, C_def if C is None else int(C), layers_def if layers is None else int(layers),
                        num_classes, in_channels, image_size, affine=True, auxiliary=auxiliary,
                        stem="imagenet" if inet else "cifar")


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
                      image_size: int, C: int | None = None, layers: int | None = None,
                      auxiliary: bool = True, imagenet: bool | None = None, **options: Any) -> nn.Module:
        """The evaluation network (:func:`build_evaluation_network`): CIFAR 20 cells, C=36, or
        ImageNet 14 cells, C=48 (``imagenet``, default: images of at least 128 pixels);
        auxiliary head."""
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

        return build_evaluation_network(make_dag, num_classes, in_channels, image_size, C, layers,
                                        auxiliary, imagenet)

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
