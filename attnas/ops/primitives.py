"""Candidate operations of the cell spaces.

Two families, named as their papers name them:

* ``DARTS_OPS`` -- DARTS (Liu et al., 2019, Sec. 3.1 / code): separable and
  dilated convolutions (ReLU-Conv-BN order), 3x3 pools, skip (factorized
  reduce when strided), ``none`` and the RobustDARTS S4 ``noise`` operation.
* ``NB201_OPS`` -- NAS-Bench-201 (Dong & Yang, 2020): ReLU-Conv-BN 1x1/3x3,
  3x3 average pool, skip, none.

A builder has the signature ``(C_in, C_out, stride, affine) -> nn.Module``.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnas.errors import ArchitectureError
from attnas.ops.ckernel import capturing_graph
from attnas.ops.depthwise import DepthwiseConv2d
from attnas.ops.fused import AvgPoolScaled, ReLUConvBNScaled, bn_factor, box_sum3x3

OpBuilder = Callable[[int, int, int, bool], nn.Module]


class Zero(nn.Module):
    """The ``none`` operation: a zero tensor of the (possibly strided) output shape."""

    def __init__(self, C_out: int, stride: int) -> None:
        super().__init__()
        self.C_out, self.stride = C_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        s = self.stride
        return x.new_zeros(n, self.C_out, (h + s - 1) // s, (w + s - 1) // s)


class Noise(nn.Module):
    """RobustDARTS S4 ``noise``: standard Gaussian noise of the output shape, independent of x."""

    def __init__(self, C_out: int, stride: int) -> None:
        super().__init__()
        self.C_out, self.stride = C_out, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        s = self.stride
        return torch.randn(n, self.C_out, (h + s - 1) // s, (w + s - 1) // s,
                           device=x.device, dtype=x.dtype)


class ReLUConvBN(nn.Sequential):
    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = True, dilation: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel, stride, padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(C_out, affine=affine))

    def scaled(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``self(x) * scale`` in one memory-lean autograd node (:mod:`attnas.ops.fused`)."""
        act, conv, bn = self
        if type(act) is not nn.ReLU or conv.groups != 1 or conv.bias is not None or not bn.training:
            return self(x) * scale
        return ReLUConvBNScaled.apply(x, conv.weight, bn.weight, bn.bias, bn.running_mean,
                                      bn.running_var, bn_factor(bn), bn.eps, scale, conv.stride,
                                      conv.padding, conv.dilation, conv.kernel_size != (1, 1))


class DilConv(nn.Sequential):
    """ReLU, depthwise dilated conv, pointwise conv, BN (DARTS ``dil_conv_kxk``)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int,
                 dilation: int, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            DepthwiseConv2d(C_in, kernel, stride, padding, dilation),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine))


class SepConv(nn.Sequential):
    """Two stacked DilConv with dilation 1 (DARTS ``sep_conv_kxk``)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__(
            DilConv(C_in, C_in, kernel, stride, padding, 1, affine),
            DilConv(C_in, C_out, kernel, 1, padding, 1, affine))


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convs (DARTS skip on reduction edges)."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True) -> None:
        super().__init__()
        if C_out % 2:
            raise ArchitectureError(f"FactorizedReduce needs an even C_out, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # pad so odd sizes work too: both branches then give ceil(h/2)
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def scaled_forward(op: nn.Module, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``op(x) * scale`` -- a mixture's weighted candidate -- through the operation's fused,
    memory-lean ``scaled`` method where it has one and the pass is a training pass with
    gradients outside graph capture and autocast; the plain modules otherwise."""
    fn = getattr(op, "scaled", None)
    if fn is not None and op.training and torch.is_grad_enabled() and not capturing_graph() \
            and not torch.is_autocast_enabled(x.device.type):
        return fn(x, scale)
    return op(x) * scale


class AvgPool3x3(nn.Module):
    """``nn.AvgPool2d(3, stride, 1, count_include_pad=False)``, computed as a depthwise
    convolution with a fixed all-ones kernel times the reciprocal of the number of real
    (non-padding) inputs under each window.  Same values up to float rounding; on CPU
    it is 3-7x faster forward + backward than PyTorch's avg_pool2d kernel, which was
    38 % of a NAS-Bench-201 DARTS step (``bench/search_step.py``, torch 2.13).  Traced,
    exported or compiled graphs use ``F.avg_pool2d`` itself (a portable operator)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self._inv_count: dict[tuple, torch.Tensor] = {}

    def _reciprocal_count(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.shape[-2], x.shape[-1], x.device, x.dtype)
        inv = self._inv_count.get(key)
        if inv is None:
            count = box_sum3x3(torch.ones(1, 1, *x.shape[-2:], device=x.device, dtype=x.dtype), self.stride)
            inv = self._inv_count[key] = 1.0 / count
        return inv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if capturing_graph():  # exported / compiled graphs get the standard operator
            return F.avg_pool2d(x, 3, self.stride, 1, count_include_pad=False)
        return box_sum3x3(x, self.stride) * self._reciprocal_count(x)

    def scaled(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``self(x) * scale`` keeping only ``x`` for the backward pass (:mod:`attnas.ops.fused`)."""
        return AvgPoolScaled.apply(x, scale, self._reciprocal_count(x), self.stride)

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


class Pool(nn.Module):
    """3x3 pool (avg excludes padding), projected by ReLU-Conv-BN when the width changes."""

    def __init__(self, kind: str, C_in: int, C_out: int, stride: int, affine: bool,
                 bn_after: bool) -> None:
        super().__init__()
        self.pre = None if C_in == C_out else ReLUConvBN(C_in, C_out, 1, 1, 0, affine)
        self.pool = AvgPool3x3(stride) if kind == "avg" else nn.MaxPool2d(3, stride, 1)
        self.bn = nn.BatchNorm2d(C_out, affine=False) if bn_after else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre is not None:
            x = self.pre(x)
        x = self.pool(x)
        return self.bn(x) if self.bn is not None else x

    def scaled(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``self(x) * scale``; fused for a plain average pool (:mod:`attnas.ops.fused`)."""
        if self.pre is None and self.bn is None and isinstance(self.pool, AvgPool3x3):
            return self.pool.scaled(x, scale)
        return self(x) * scale


def _skip(C_in: int, C_out: int, stride: int, affine: bool) -> nn.Module:
    if stride == 1 and C_in == C_out:
        return nn.Identity()
    if stride == 1:
        return ReLUConvBN(C_in, C_out, 1, 1, 0, affine)
    return FactorizedReduce(C_in, C_out, affine)


def darts_ops(search: bool) -> dict[str, OpBuilder]:
    """DARTS candidate operations; ``search=True`` adds the BN after pools that DARTS search uses."""
    return {
        "none": lambda Ci, Co, s, a: Zero(Co, s),
        "noise": lambda Ci, Co, s, a: Noise(Co, s),
        "avg_pool_3x3": lambda Ci, Co, s, a: Pool("avg", Ci, Co, s, a, bn_after=search),
        "max_pool_3x3": lambda Ci, Co, s, a: Pool("max", Ci, Co, s, a, bn_after=search),
        "skip_connect": _skip,
        "sep_conv_3x3": lambda Ci, Co, s, a: SepConv(Ci, Co, 3, s, 1, a),
        "sep_conv_5x5": lambda Ci, Co, s, a: SepConv(Ci, Co, 5, s, 2, a),
        "sep_conv_7x7": lambda Ci, Co, s, a: SepConv(Ci, Co, 7, s, 3, a),
        "dil_conv_3x3": lambda Ci, Co, s, a: DilConv(Ci, Co, 3, s, 2, 2, a),
        "dil_conv_5x5": lambda Ci, Co, s, a: DilConv(Ci, Co, 5, s, 4, 2, a),
    }


NB201_OPS: dict[str, OpBuilder] = {
    "none": lambda Ci, Co, s, a: Zero(Co, s),
    "skip_connect": _skip,
    "nor_conv_1x1": lambda Ci, Co, s, a: ReLUConvBN(Ci, Co, 1, s, 0, a),
    "nor_conv_3x3": lambda Ci, Co, s, a: ReLUConvBN(Ci, Co, 3, s, 1, a),
    "avg_pool_3x3": lambda Ci, Co, s, a: Pool("avg", Ci, Co, s, a, bn_after=False),
}


def build_op(family: dict[str, OpBuilder], name: str, C_in: int, C_out: int, stride: int,
             affine: bool) -> nn.Module:
    """Instantiate operation ``name`` of ``family`` or raise a clear error."""
    try:
        builder = family[name]
    except KeyError:
        raise ArchitectureError(
            f"unknown operation '{name}'; expected one of {sorted(family)}") from None
    return builder(C_in, C_out, stride, affine)
