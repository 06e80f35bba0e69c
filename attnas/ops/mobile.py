"""Candidate operations of the chain spaces (ProxylessNAS, NAS-Bench-Macro).

* :class:`InvertedResidual` -- the MobileNetV2 block (Sandler et al., 2018):
  1x1 expansion to ``round(C_in * expansion)`` channels, BN, activation,
  depthwise k x k (carrying the stride), BN, activation, optional
  squeeze-and-excitation, 1x1 linear projection, BN; the input is added when
  the shapes match (stride 1, C_in == C_out).  The hidden width
  ``round(C_in * t)`` and the expansion-at-input-resolution order are those of
  ProxylessNAS (``MBInvertedConvLayer``) and of NAS-Bench-Macro's
  ``InvertedResidual``.
* :class:`SqueezeExcite` -- SE as in MobileNetV3 / Once-for-All, which IT-NAS
  Table 6 adds to the ProxylessNAS space: global average pool, 1x1 conv to
  ``make_divisible(C / 4, 8)`` channels (bias), ReLU, 1x1 conv back (bias),
  hard sigmoid gate.
* :class:`Shortcut` -- NAS-Bench-Macro's ``identity`` candidate: the identity
  where the shape is kept, a 1x1 strided convolution + BN where it changes.
* ``skip`` -- ProxylessNAS' zero block on a residual layer, i.e. the layer is
  left out (depth search); only legal where the shape is kept.

Names: ``mb{e}_k{k}`` (expansion e, kernel k, e.g. ``mb6_k5``), ``skip``,
``identity``; :func:`build_mobile_op` builds any of them.

Memory.  In training mode an inverted residual runs its two
"BN -> activation -> convolution" segments (after the expansion and after the
depthwise convolution) through :class:`BNActConv`, an autograd function that
keeps only the BN input for the backward pass and recomputes the activation
output from it there (one element-wise pass), instead of keeping both; the
values and gradients are those of the plain module sequence (up to float
rounding; tested), and the modules, parameters and state dict are unchanged.
This cuts the activations kept by a ProxylessNAS single path at 224x224 by about
a third (``bench/spos_step_cost.py``).
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn

from attnas.errors import ArchitectureError
from attnas.ops.depthwise import DepthwiseConv2d, conv_backward
from attnas.ops.fused import bn_factor

_MB_RE = re.compile(r"^mb(?P<e>\d+)_k(?P<k>\d+)$")

#: activations by name: ReLU6 (MobileNetV2 / ProxylessNAS), ReLU (NAS-Bench-Macro)
ACTIVATIONS = {"relu6": nn.ReLU6, "relu": nn.ReLU}

#: SE reduction ratio and channel rounding (MobileNetV3 Sec. 5.3; Once-for-All ``SEModule``)
SE_REDUCTION = 4
SE_DIVISOR = 8


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never more than 10 % down
    (the MobileNet/ProxylessNAS channel rounding)."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name](inplace=True)
    except KeyError:
        raise ArchitectureError(f"unknown activation '{name}'; expected one of {sorted(ACTIVATIONS)}") from None


#: BNActConv's backward computes its input gradient in this many blocks of images
GRAD_BLOCKS = 4


class BNActConv(torch.autograd.Function):
    """``conv(clamp(bn_train(z), 0, cap))`` keeping only ``z`` (and BN's batch statistics)
    for backward; the activation output is recomputed there.  ``cap`` is 6 for ReLU6,
    ``inf`` for ReLU.  Batch norm in training mode, running statistics updated as
    ``nn.BatchNorm2d`` does."""

    @staticmethod
    def forward(ctx, z, gamma, beta, running_mean, running_var, factor, eps, cap, weight,
                stride, padding, groups):
        y, mean, invstd = torch.ops.aten.native_batch_norm(
            z, gamma, beta, running_mean, running_var, True, factor, eps)
        a = y.clamp_(0.0, cap) if cap != float("inf") else y.clamp_(min=0.0)
        out = torch.nn.functional.conv2d(a, weight, None, stride, padding, 1, groups)
        ctx.save_for_backward(z, gamma, beta, mean, invstd, weight)
        ctx.conf = (cap, stride, padding, groups)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable  # a hand-written backward: first derivatives only
    def backward(ctx, grad_out):
        z, gamma, beta, mean, invstd, weight = ctx.saved_tensors
        cap, stride, padding, groups = ctx.conf
        shape = (1, -1, 1, 1)
        scale = gamma * invstd
        a = torch.addcmul((beta - mean * scale).view(shape), z, scale.view(shape))
        a = a.clamp_(0.0, cap) if cap != float("inf") else a.clamp_(min=0.0)
        grad_w = conv_backward(grad_out, a, weight, stride, padding, 1, groups, need_x=False)[1]
        # the input gradient image block by image block, each masked by the activation (from its
        # output, as autograd's in-place ReLU6/ReLU do) straight into a's block, which it no
        # longer needs: z, a and a block instead of z, a and a full-size gradient (the peak of
        # a recomputed SPOS step, docs/benchmarks.md)
        for g, a_b in zip(grad_out.chunk(GRAD_BLOCKS), a.chunk(GRAD_BLOCKS)):
            grad_a = conv_backward(g, a_b, weight, stride, padding, 1, groups, need_w=False)[0]
            if cap != float("inf"):
                torch.ops.aten.hardtanh_backward.grad_input(grad_a, a_b, 0.0, cap, grad_input=a_b)
            else:
                torch.ops.aten.threshold_backward.grad_input(grad_a, a_b, 0.0, grad_input=a_b)
            del grad_a
        grad_y = a
        grad_gamma, grad_beta = bn_backward_(grad_y, z, gamma, mean, invstd)
        return (grad_y, grad_gamma, grad_beta, None, None, None, None, None, grad_w, None, None, None)


def bn_backward_(grad_y: torch.Tensor, z: torch.Tensor, gamma: torch.Tensor, mean: torch.Tensor,
                 invstd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-mode batch norm's backward with the input gradient written over ``grad_y``;
    returns the gradients of ``gamma`` and ``beta``.  PyTorch's kernel needs two more maps the
    size of ``z`` (its result and a temporary; its ``out=`` form copies from a temporary too),
    which at a 64 x 96 x 112 x 112 expansion is the peak of a recomputed SPOS step
    (``docs/benchmarks.md``).  Here its reduction-only form gives ``sum(dy * xhat)`` and
    ``sum(dy)``, and ``dz = scale * dy + c0 + c1 * z`` per channel is three in-place passes."""
    grad_gamma, grad_beta = torch.ops.aten.native_batch_norm_backward(
        grad_y, z, gamma, None, None, mean, invstd, True, 0.0, [False, True, True])[1:]
    m = grad_y.numel() // grad_y.shape[1]
    scale = gamma * invstd
    c1 = -scale * invstd * grad_gamma / m
    c0 = -scale * grad_beta / m - c1 * mean
    shape = (1, -1, 1, 1)
    grad_y.mul_(scale.view(shape)).add_(c0.view(shape)).addcmul_(z, c1.view(shape))
    return grad_gamma, grad_beta


def bn_act_conv(bn: nn.BatchNorm2d, cap: float, conv: nn.Conv2d, z: torch.Tensor) -> torch.Tensor:
    """``conv(act(bn(z)))`` through :class:`BNActConv` (training mode, affine BN, bias-free conv)."""
    factor = bn_factor(bn)
    return BNActConv.apply(z, bn.weight, bn.bias, bn.running_mean, bn.running_var, factor, bn.eps, cap,
                           conv.weight, conv.stride, conv.padding, conv.groups)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation with a hard-sigmoid gate (MobileNetV3 / OFA)."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION, divisor: int = SE_DIVISOR) -> None:
        super().__init__()
        mid = make_divisible(channels / reduction, divisor)
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted-residual block (see the module docstring)."""

    def __init__(self, C_in: int, C_out: int, stride: int, expansion: int, kernel: int,
                 se: bool = False, activation: str = "relu6") -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ArchitectureError(f"inverted residual stride must be 1 or 2, got {stride}")
        if kernel % 2 == 0 or kernel < 1:
            raise ArchitectureError(f"inverted residual kernel must be odd, got {kernel}")
        if expansion < 1:
            raise ArchitectureError(f"inverted residual expansion must be >= 1, got {expansion}")
        hidden = round(C_in * expansion)
        self.C_in, self.C_out, self.stride = C_in, C_out, stride
        self.expansion, self.kernel = expansion, kernel
        self.expand = None if expansion == 1 else nn.Sequential(
            nn.Conv2d(C_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), _activation(activation))
        self.depthwise = nn.Sequential(
            DepthwiseConv2d(hidden, kernel, stride, kernel // 2),
            nn.BatchNorm2d(hidden), _activation(activation))
        self.se = SqueezeExcite(hidden) if se else None
        self.project = nn.Sequential(nn.Conv2d(hidden, C_out, 1, bias=False), nn.BatchNorm2d(C_out))
        self.use_residual = stride == 1 and C_in == C_out
        self.cap = 6.0 if activation == "relu6" else float("inf")
        #: training-mode forward through :class:`BNActConv` (set False for the plain module sequence)
        self.memory_efficient = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.memory_efficient and torch.is_grad_enabled():
            return self._forward_memory_efficient(x)
        h = x if self.expand is None else self.expand(x)
        h = self.depthwise(h)
        if self.se is not None:
            h = self.se(h)
        h = self.project(h)
        return h + x if self.use_residual else h

    def _forward_memory_efficient(self, x: torch.Tensor) -> torch.Tensor:
        """The same computation with the BN-activation-conv segments fused (module docstring)."""
        dw_conv, dw_bn = self.depthwise[0], self.depthwise[1]
        if self.expand is None:
            z = dw_conv(x)
        else:
            z = bn_act_conv(self.expand[1], self.cap, dw_conv, self.expand[0](x))
        if self.se is None:
            h = bn_act_conv(dw_bn, self.cap, self.project[0], z)
        else:
            h = self.project[0](self.se(self.depthwise[2](dw_bn(z))))
        h = self.project[1](h)
        return h + x if self.use_residual else h

    def extra_repr(self) -> str:
        return (f"{self.C_in}->{self.C_out}, stride={self.stride}, expansion={self.expansion}, "
                f"kernel={self.kernel}, se={self.se is not None}")


class Shortcut(nn.Module):
    """Identity, or a 1x1 strided conv + BN where the shape changes (NAS-Bench-Macro ``identity``)."""

    def __init__(self, C_in: int, C_out: int, stride: int) -> None:
        super().__init__()
        self.proj = None if (stride == 1 and C_in == C_out) else nn.Sequential(
            nn.Conv2d(C_in, C_out, 1, stride, bias=False), nn.BatchNorm2d(C_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.proj is None else self.proj(x)


def parse_mb(name: str) -> tuple[int, int] | None:
    """``"mb6_k5" -> (6, 5)``; None for other names."""
    m = _MB_RE.match(name)
    return (int(m["e"]), int(m["k"])) if m else None


def build_mobile_op(name: str, C_in: int, C_out: int, stride: int, se: bool = False,
                    activation: str = "relu6") -> nn.Module:
    """Instantiate chain candidate ``name`` (``mb{e}_k{k}``, ``skip``, ``identity``)."""
    mb = parse_mb(name)
    if mb is not None:
        return InvertedResidual(C_in, C_out, stride, mb[0], mb[1], se=se, activation=activation)
    if name == "identity":
        return Shortcut(C_in, C_out, stride)
    if name == "skip":
        if stride != 1 or C_in != C_out:
            raise ArchitectureError(
                f"'skip' cannot replace a layer that changes the shape ({C_in}->{C_out}, stride {stride})")
        return nn.Identity()
    raise ArchitectureError(f"unknown chain operation '{name}'; expected 'mb<e>_k<k>', 'skip' or 'identity'")
