"""Heterogeneous operations of NOS (Neural Operator Search, Sec. 3.1 and Appendix A.1).

Three disjoint operation sets, distinguished by what they produce:

* feature transformations O_f -- the 7 DARTS operations (no ``none``), output a feature tensor;
* attention learning O_a -- ``att_channel`` (:class:`ChannelAttention`, a ``[N, C, 1, 1]``
  vector of scales) and ``att_spatial`` (:class:`SpatialAttention`, a ``[N, 1, H, W]`` map),
  applied to features by element-wise multiplication (``⊙``);
* dynamic convolutions O_d -- ``dyn_conv_3x3`` / ``dyn_conv_5x5`` (:class:`DynamicKernel`, the
  bottleneck / kernel-transform / kernel-decode structure of Fig. 1): a per-sample depth-wise
  kernel ``[N, C, k, k]``, applied to features by per-sample depth-wise convolution (``⊛``,
  :func:`apply_dynamic`).  Dilated dynamic convolutions are left out, as the paper does
  after its Table 1 study.

Every operation of a NOS edge returns a :class:`HeteroTerms` -- the three typed terms of Eq. 2
(feature, attention, dynamic kernels).  ``HeteroTerms`` supports ``+`` (Eq. 2: features summed,
attentions summed, kernels collected) and multiplication by a scalar (scales each term), so the
generic DARTS mixture ``sum_o w_o * o(x)`` (Eq. 7, :func:`attnas.strategies.darts.weighted_sum`)
and single-path mixers run unchanged on NOS edges, and each operation's weight scales its
contribution to the right term of Eq. 3 / 5 (:func:`combine`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnas.errors import ArchitectureError, ShapeError
from attnas.ops.primitives import build_op, darts_ops

#: O_f: the DARTS feature transformations (Liu et al. 2019), 7 operations
FEATURE_OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
               "dil_conv_3x3", "dil_conv_5x5")
#: O_a: channel-wise and spatial-wise attention
ATTENTION_OPS = ("att_channel", "att_spatial")
#: O_d: dynamic (per-sample) depth-wise convolutions, 3x3 and 5x5
DYNAMIC_OPS = ("dyn_conv_3x3", "dyn_conv_5x5")
#: the heterogeneous operation set O = O_f ∪ O_a ∪ O_d (11 operations)
NOS_OPS = FEATURE_OPS + ATTENTION_OPS + DYNAMIC_OPS


def op_kind(name: str) -> str:
    """``"feature"``, ``"attention"`` or ``"dynamic"``."""
    if name in FEATURE_OPS:
        return "feature"
    if name in ATTENTION_OPS:
        return "attention"
    if name in DYNAMIC_OPS:
        return "dynamic"
    raise KeyError(name)


Scalar = Union[float, torch.Tensor]


@dataclass
class HeteroTerms:
    """What the edges into a node produce (Eq. 2 / 4): summed features, summed attentions,
    and the collected dynamic kernels.  ``None`` / ``[]`` = no such term."""

    feature: torch.Tensor | None = None
    attention: torch.Tensor | None = None
    kernels: list[torch.Tensor] = field(default_factory=list)

    def __add__(self, other: "HeteroTerms") -> "HeteroTerms":
        if not isinstance(other, HeteroTerms):
            return NotImplemented
        return HeteroTerms(_add(self.feature, other.feature), _add(self.attention, other.attention),
                           self.kernels + other.kernels)

    __radd__ = __add__

    def __mul__(self, w: Scalar) -> "HeteroTerms":
        return HeteroTerms(None if self.feature is None else self.feature * w,
                           None if self.attention is None else self.attention * w,
                           [k * w for k in self.kernels])

    __rmul__ = __mul__


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def apply_dynamic(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``x ⊛ D``: depth-wise convolution of sample n with its own kernel ``kernel[n]``
    (``x``: ``[N, C, H, W]``, ``kernel``: ``[N, C, k, k]``, odd k, 'same' padding)."""
    n, c, h, w = x.shape
    if kernel.dim() != 4 or kernel.shape[:2] != (n, c) or kernel.shape[2] != kernel.shape[3] \
            or kernel.shape[2] % 2 == 0:
        raise ShapeError(f"dynamic kernel of shape {tuple(kernel.shape)} does not fit features "
                         f"{tuple(x.shape)}; expected [{n}, {c}, k, k] with odd k")
    k = kernel.shape[-1]
    out = F.conv2d(x.reshape(1, n * c, h, w), kernel.reshape(n * c, 1, k, k),
                   padding=k // 2, groups=n * c)
    return out.view(n, c, h, w)


def sum_kernels(kernels: list[torch.Tensor]) -> torch.Tensor:
    """One kernel equivalent to a list: ``sum_i x ⊛ D_i == x ⊛ sum_i pad(D_i)``, since a
    convolution is linear in its kernel and a k x k kernel zero-padded to K x K (same centre,
    'same' padding) gives the same output."""
    size = max(k.shape[-1] for k in kernels)
    total = None
    for k in kernels:
        p = (size - k.shape[-1]) // 2
        k = F.pad(k, (p, p, p, p)) if p else k
        total = k if total is None else total + k
    return total


def combine(terms: HeteroTerms) -> torch.Tensor:
    """Eq. 3 / 5: ``F ⊕ (F ⊙ A) ⊕ sum_{D} F ⊛ D`` (missing terms are left out).

    The kernels are summed first (:func:`sum_kernels`) so all dynamic kernels cost one
    per-sample convolution; the value equals the sum of the separate convolutions.
    """
    f = terms.feature
    if f is None:
        raise ShapeError("a heterogeneous block has no feature transformation to calibrate "
                         "(Eq. 3 needs at least one feature operation)")
    out = f
    if terms.attention is not None:
        out = out + f * terms.attention
    if terms.kernels:
        out = out + apply_dynamic(f, sum_kernels(terms.kernels))
    return out


# ----- self-calibration operations (Appendix A.1) ---------------------------------------------
class ChannelAttention(nn.Module):
    """Channel-wise attention (Appendix A.1.1 ``AttentionC``): global average pool,
    1x1 conv to C/r, ReLU, 1x1 conv to C, sigmoid -> ``[N, C, 1, 1]``.
    ``C/r`` is at least 1 (the paper's r=16 would give 0 channels at the small widths of a
    search proxy)."""

    def __init__(self, C_in: int, C_out: int, reduction: int = 16) -> None:
        super().__init__()
        mid = max(1, C_in // reduction)
        self.conv_1 = nn.Conv2d(C_in, mid, 1, bias=False)
        self.conv_2 = nn.Conv2d(mid, C_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.adaptive_avg_pool2d(x, 1)
        return torch.sigmoid(self.conv_2(F.relu(self.conv_1(y))))


class SpatialAttention(nn.Module):
    """Spatial-wise attention (Appendix A.1.1 ``AttentionS``): 1x1 conv to C/r with the edge's
    stride, BN, ReLU, 3x3 conv to one channel, sigmoid -> ``[N, 1, H/s, W/s]``."""

    def __init__(self, C_in: int, stride: int, reduction: int = 16, affine: bool = True) -> None:
        super().__init__()
        mid = max(1, C_in // reduction)
        self.conv_1 = nn.Conv2d(C_in, mid, 1, stride=stride, bias=False)
        self.bn_1 = nn.BatchNorm2d(mid, affine=affine)
        self.conv_2 = nn.Conv2d(mid, 1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn_1(self.conv_1(x)))
        return torch.sigmoid(self.conv_2(y))


class DynamicKernel(nn.Module):
    """Dynamic convolution kernel generator (Fig. 1, Appendix A.1.2 ``DynamicF``).

    (a) bottleneck: 1x1 conv C -> C/r, BN, ReLU -> ``B: [N, C/r, HW]``;
    (b) kernel transform: 1x1 conv C -> k*k on the input, softmax over the positions
        -> ``M: [N, HW, k*k]``; ``B @ M`` -> ``[N, C/r, k, k]`` (a k x k latent kernel per
        bottleneck channel, each a softmax-weighted pooling of the bottleneck features);
    (c) kernel decode: 1x1 conv C/r -> C_out on the latent kernel, softmax over the k*k taps
        -> the per-sample depth-wise kernel ``[N, C_out, k, k]``.
    The kernel does not depend on the feature map size, so it also serves reduction edges.
    """

    def __init__(self, C_in: int, C_out: int, kernel_size: int, reduction: int = 8,
                 affine: bool = True) -> None:
        super().__init__()
        mid = max(1, C_in // reduction)
        self.k = kernel_size
        self.c_out = C_out
        self.conv_1 = nn.Conv2d(C_in, mid, 1, bias=False)
        self.bn_1 = nn.BatchNorm2d(mid, affine=affine)
        self.conv_2 = nn.Conv2d(C_in, kernel_size * kernel_size, 1, bias=False)
        self.conv_3 = nn.Conv2d(mid, C_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = F.relu(self.bn_1(self.conv_1(x)))                      # (a) [N, C/r, H, W]
        n, c, h, w = b.shape
        mask = F.softmax(self.conv_2(x).view(n, -1, h * w), dim=2)  # (b) [N, k*k, HW]
        latent = torch.bmm(b.view(n, c, h * w), mask.transpose(1, 2))  # [N, C/r, k*k]
        latent = latent.view(n, c, self.k, self.k)
        kernel = self.conv_3(latent).view(n, self.c_out, -1)        # (c) [N, C_out, k*k]
        return F.softmax(kernel, dim=2).view(n, self.c_out, self.k, self.k)


# ----- typed edge operations ------------------------------------------------------------------
class FeatureOp(nn.Module):
    """An O_f operation: ``HeteroTerms(feature=op(x))``."""

    def __init__(self, op: nn.Module) -> None:
        super().__init__()
        self.op = op

    def forward(self, x: torch.Tensor) -> HeteroTerms:
        return HeteroTerms(feature=self.op(x))


class CalibrationOp(nn.Module):
    """An O_a or O_d operation: its attention map or dynamic kernel as a HeteroTerms term.

    ``carry_input`` (second-tier edges, Eq. 4-5): the edge also passes its input on as the
    feature term, i.e. a second tier whose operation is a self-calibration op calibrates the
    surrogate node itself (``F_k = F_k' ⊕ F_k' ⊙ A_k``), in the residual spirit of the block.
    Without it a single attention / kernel operation would have nothing to act on.  In the
    supernet mixture this puts the weight of the calibration ops on an identity feature term,
    so the one-hot limit of the relaxation is exactly the derived block.
    """

    def __init__(self, kind: str, op: nn.Module, carry_input: bool) -> None:
        super().__init__()
        self.kind, self.op, self.carry_input = kind, op, carry_input

    def forward(self, x: torch.Tensor) -> HeteroTerms:
        y = self.op(x)
        feature = x if self.carry_input else None
        if self.kind == "attention":
            return HeteroTerms(feature=feature, attention=y)
        return HeteroTerms(feature=feature, kernels=[y])


def build_nos_op(name: str, C: int, stride: int, affine: bool, search: bool, second_tier: bool,
                 att_reduction: int = 16, dyn_reduction: int = 8) -> nn.Module:
    """One heterogeneous operation of an edge (width C in and out, ``stride`` 1 or 2)."""
    if name not in NOS_OPS:
        raise ArchitectureError(f"unknown NOS operation '{name}'; expected one of {list(NOS_OPS)}")
    kind = op_kind(name)
    if kind == "feature":
        return FeatureOp(build_op(darts_ops(search), name, C, C, stride, affine))
    if name == "att_channel":
        return CalibrationOp(kind, ChannelAttention(C, C, att_reduction), second_tier)
    if name == "att_spatial":
        return CalibrationOp(kind, SpatialAttention(C, stride, att_reduction, affine), second_tier)
    k = int(name[-1])
    return CalibrationOp(kind, DynamicKernel(C, C, k, dyn_reduction, affine), second_tier)
