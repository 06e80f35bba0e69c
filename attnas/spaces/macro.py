"""NAS-Bench-Macro space (Su et al., 2021): 8-layer chains on CIFAR-10, built as the benchmark built them.

Layout (the benchmark's ``train/model.py``; data README "How NAS-Bench-Macro
networks are built"):

* stem: 3x3 conv, 3 -> 32 channels, stride 1, BN, ReLU;
* 8 searchable layers in 3 stages of 2, 3 and 3 layers; the first layer of a
  stage has stride 2 and doubles the width (32 -> 64 -> 128 -> 256), the others
  keep stride and width;
* candidates (digit = index): ``0`` ``identity`` (on a stage's first layer a
  1x1 stride-2 conv + BN, since the shape changes), ``1`` ``mb3_k3``, ``2``
  ``mb6_k5``: inverted residuals with ReLU, hidden width ``round(C_in * t)``,
  residual where the shapes match;
* head: 1x1 conv to 1280, BN, ReLU, global average pooling, linear.

With the defaults the parameter count of every architecture equals the
table's ``params`` and the multiply-accumulate count of :mod:`attnas.profile` equals its
``flops`` column, which counts MACs (tested; attnas's FLOPs are 2 x MACs).  Architectures are written as the benchmark's 8-digit
strings (``parse_native`` / ``to_native``), e.g. ``"11111221"``.
"""
from __future__ import annotations

import torch.nn as nn

from attnas.arch import Architecture, layer_key
from attnas.errors import ArchitectureError, ConfigError
from attnas.spaces.chain import ChainLayer, ChainSpace
from attnas.spaces.registry import register_space

MACRO_CANDIDATES = ("identity", "mb3_k3", "mb6_k5")
MACRO_STAGES = (2, 3, 3)
MACRO_STEM = 32
MACRO_HEAD = 1280
MACRO_LAYERS = sum(MACRO_STAGES)


def _is_macro_string(text: str) -> bool:
    s = text.strip()
    return len(s) == MACRO_LAYERS and all(c in "012" for c in s)


@register_space("macro", native_guess=_is_macro_string)
class MacroSpace(ChainSpace):
    """NAS-Bench-Macro; options ``C`` (stem width, 32) and ``head`` (head width, 1280).

    Only the defaults reproduce the benchmark's networks."""

    activation = "relu"

    def __init__(self, C: int = MACRO_STEM, head: int = MACRO_HEAD) -> None:
        for label, v in (("C", C), ("head", head)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"macro option '{label}' must be a positive integer, got {v!r}")
        self.C, self.head = C, head

    def stem_stride(self) -> int:
        return 1

    def layer_specs(self) -> list[ChainLayer]:
        specs, C, i = [], self.C, 0
        for stage, n in enumerate(MACRO_STAGES):
            for j in range(n):
                C_out = 2 * C if j == 0 else C
                specs.append(ChainLayer(i, C, C_out, 2 if j == 0 else 1, MACRO_CANDIDATES, stage))
                C, i = C_out, i + 1
        return specs

    def make_stem(self, in_channels: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(in_channels, self.C, 3, 1, 1, bias=False), nn.BatchNorm2d(self.C),
                             nn.ReLU(inplace=True))

    def make_head(self) -> tuple[nn.Module, int]:
        C_in = self.C * 2 ** len(MACRO_STAGES)
        return nn.Sequential(nn.Conv2d(C_in, self.head, 1, bias=False), nn.BatchNorm2d(self.head),
                             nn.ReLU(inplace=True)), self.head

    @classmethod
    def parse_native(cls, text: str) -> Architecture:
        """Parse the benchmark's 8-digit string (0 identity, 1 mb3_k3, 2 mb6_k5)."""
        s = str(text).strip()
        if not _is_macro_string(s):
            raise ArchitectureError(
                f"'{text}' is not a NAS-Bench-Macro architecture: expected {MACRO_LAYERS} characters over "
                "{0,1,2} (0 identity, 1 mb3_k3, 2 mb6_k5), e.g. '11111221'")
        return Architecture("macro", {layer_key(i): MACRO_CANDIDATES[int(c)] for i, c in enumerate(s)})

    @classmethod
    def to_native(cls, arch: Architecture) -> str:
        try:
            return "".join(str(MACRO_CANDIDATES.index(arch.choices[layer_key(i)])) for i in range(MACRO_LAYERS))
        except (KeyError, ValueError):
            raise ArchitectureError(f"not a NAS-Bench-Macro architecture: {arch.choices}") from None
