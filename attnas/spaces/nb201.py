"""NAS-Bench-201 space (Dong & Yang, ICLR 2020), exactly as the benchmark defines it.

Cell: 4 nodes, node 0 the input; node j sums op_{i,j}(node_i) over i < j;
6 edges, 5 operations (none, skip_connect, nor_conv_1x1, nor_conv_3x3,
avg_pool_3x3).  Network: 3x3 conv stem (C) + BN, N cells at C, a residual
reduction block to 2C, N cells, reduction to 4C, N cells, BN-ReLU, global
pooling, linear classifier.  C=16, N=5 by default, so a derived cell's
accuracy can be looked up in the benchmark.
"""
from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn as nn

from attnas.arch import Architecture, edge_key
from attnas.errors import ArchitectureError
from attnas.ops.layout import as_layout, use_channels_last
from attnas.ops.primitives import NB201_OPS, ReLUConvBN, build_op
from attnas.spaces.base import ChoiceBlock, ChoicePoint, MixerFactory, SearchSpace
from attnas.spaces.cells import CellDAG
from attnas.spaces.registry import register_space

NB201_CANDIDATES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_EDGES = [(i, j) for j in range(1, 4) for i in range(j)]  # benchmark string order
_NB201_RE = re.compile(r"^\|.+\|$")


class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201's reduction block: two ReLU-Conv-BN 3x3 (first strided) + avgpool-1x1 shortcut."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool = True) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, stride, 1, affine)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1, affine)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2, 0), nn.Conv2d(C_in, C_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """Macro skeleton; ``make_cell(C)`` returns one cell of width C.  Channels-last where
    safe (:mod:`attnas.ops.layout`)."""

    def __init__(self, make_cell, C: int, N: int, num_classes: int, in_channels: int,
                 channels_last: bool = True) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        for stage, width in enumerate((C, 2 * C, 4 * C)):
            if stage:
                layers.append(ResNetBasicBlock(width // 2, width, 2))
            layers.extend(make_cell(width) for _ in range(N))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * C, num_classes)
        self.channels_last = use_channels_last(self, channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(as_layout(x, self.channels_last))))
        return self.classifier(self.pool(x).flatten(1))


@register_space("nb201", native_guess=lambda t: bool(_NB201_RE.match(t.strip())) and "~" in t)
class NB201Space(SearchSpace):
    """NAS-Bench-201: options ``C`` (stem width, 16) and ``N`` (cells per stage, 5)."""

    min_image_size = 4
    #: the candidates' fused, memory-lean training kernels (:mod:`attnas.ops.fused`) keep a
    #: DARTS mixture at two maps per edge, so recomputing it costs time (+55 %) for little
    #: memory (0.94 -> 0.86 GiB; C=16 N=5, batch 64, ``bench/search_step.py``)
    mixture_recompute = "none"

    def __init__(self, C: int = 16, N: int = 5) -> None:
        self.C, self.N = int(C), int(N)

    def choice_points(self) -> list[ChoicePoint]:
        return [ChoicePoint(edge_key("cell", i, j), NB201_CANDIDATES, edge_key("cell", i, j))
                for i, j in NB201_EDGES]

    def _cell(self, C: int, edge_module) -> CellDAG:
        return CellDAG("cell", 1, 3, {(i, j): edge_module(i, j, C) for i, j in NB201_EDGES}, None)

    def build_supernet(self, mixer_factory: MixerFactory, num_classes: int, in_channels: int,
                       image_size: int) -> nn.Module:
        self.check_input(in_channels, image_size)
        points = {p.key: p for p in self.choice_points()}

        def edge(i: int, j: int, C: int) -> nn.Module:
            p = points[edge_key("cell", i, j)]
            ops = [build_op(NB201_OPS, o, C, C, 1, False) for o in p.candidates]
            return ChoiceBlock(p, ops, mixer_factory(p))

        return NB201Network(lambda C: self._cell(C, edge), self.C, self.N, num_classes, in_channels)

    def build_network(self, arch: Architecture, num_classes: int, in_channels: int,
                      image_size: int, **options: Any) -> nn.Module:
        self.validate(arch)
        self.check_input(in_channels, image_size)
        if options:
            raise ArchitectureError(f"nb201 networks take no options, got {sorted(options)}")

        def edge(i: int, j: int, C: int) -> nn.Module:
            return build_op(NB201_OPS, arch.choices[edge_key("cell", i, j)], C, C, 1, True)

        return NB201Network(lambda C: self._cell(C, edge), self.C, self.N, num_classes, in_channels)

    # NAS-Bench-201 cells may contain 'none' anywhere (even a disconnected output):
    # every one of the 15,625 strings is a valid benchmark entry, so no topology check.

    @classmethod
    def parse_native(cls, text: str) -> Architecture:
        """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
        s = text.strip()
        nodes = s.split("+")
        if len(nodes) != 3:
            raise ArchitectureError(
                f"'{text}' is not a NAS-Bench-201 cell string: expected 3 '+'-separated nodes "
                "like '|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...~0|...~1|...~2|'")
        choices: dict[str, str] = {}
        for j, node in enumerate(nodes, start=1):
            items = [t for t in node.strip("|").split("|") if t]
            if len(items) != j:
                raise ArchitectureError(f"node {j} of '{text}' has {len(items)} inputs, expected {j}")
            for item in items:
                op, _, src = item.partition("~")
                if not src.isdigit() or int(src) >= j:
                    raise ArchitectureError(f"bad edge '{item}' in node {j} of '{text}'")
                if op not in NB201_CANDIDATES:
                    raise ArchitectureError(
                        f"unknown operation '{op}' in '{text}'; expected one of {list(NB201_CANDIDATES)}")
                choices[edge_key("cell", int(src), j)] = op
        if len(choices) != 6:
            raise ArchitectureError(f"'{text}' repeats an edge; expected each of the 6 edges once")
        return Architecture("nb201", choices)

    @classmethod
    def to_native(cls, arch: Architecture) -> str:
        return "+".join("|" + "|".join(f"{arch.choices[edge_key('cell', i, j)]}~{i}" for i in range(j)) + "|"
                        for j in range(1, 4))
