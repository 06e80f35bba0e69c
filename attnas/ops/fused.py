"""Memory-lean training-mode kernels of the cell operations, scaled by a mixture weight.

A DARTS mixture computes ``w_o * o(x)`` for every candidate ``o`` of an edge.
Run as plain modules, autograd keeps, per ReLU-Conv-BN candidate, the ReLU
output, the convolution output, the BN output (for the gradient of ``w_o``)
and, per average pool, the pooled map: seven maps of the edge's size where two
are needed.  On NAS-Bench-201 that made the mixtures' activations the step's
memory, and the only way to the 0.3x-of-NNI memory target was recomputing
every mixture in the backward pass (``recompute="all"``: +65 % step time).

The functions here compute the same values in one autograd node each and keep
only what cannot be recomputed in one cheap pass:

* :class:`ReLUConvBNScaled` -- ``w * BN(conv(relu(x)))``: keeps ``x`` (which the
  edge's other candidates keep anyway), the convolution output and BN's batch
  statistics; a 1x1 convolution's output is not kept but recomputed in the
  backward pass (a ninth of a 3x3 convolution's work, for one map less per edge).
  ``w`` is folded into BN's affine parameters (one pass, not two); the backward
  recomputes ``relu(x)`` and takes ``grad w`` from BN's fused backward
  (``sum_c dgamma'_c gamma_c + dbeta'_c beta_c``).
* :class:`AvgPoolScaled` -- ``w * avgpool3x3(x)`` (padding excluded), keeping
  only ``x``; the backward recomputes the pooled map for ``grad w``.

The operations take these paths through their ``scaled(x, w)`` methods, which
:func:`attnas.ops.primitives.scaled_forward` calls (the DARTS mixture does).

Values and gradients are those of the plain modules up to float rounding
(``tests/test_fused_ops.py``); BN's running statistics are updated as
``nn.BatchNorm2d`` does.  The modules, parameters and state dicts are unchanged;
the fused path is taken only in training mode with gradients enabled, outside
graph capture (tracing, export, ``torch.compile``) and outside autocast (``--amp``).
Second derivatives (``create_graph=True``) are exact too: the backward pass then
differentiates the plain formula.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def bn_factor(bn: nn.modules.batchnorm._BatchNorm) -> float:
    """The running-average factor ``nn.BatchNorm2d.forward`` uses (and its step counter update)."""
    if not bn.track_running_stats:
        return 0.0
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            return 1.0 / float(bn.num_batches_tracked)
    return 0.0 if bn.momentum is None else float(bn.momentum)


def _ones3x3(x: torch.Tensor) -> torch.Tensor:
    return x.new_ones(x.shape[1], 1, 3, 3)


def box_sum3x3(x: torch.Tensor, stride: int) -> torch.Tensor:
    """The sum over each 3x3 window (zero padding 1) of every channel: a depthwise convolution
    with an all-ones kernel."""
    return F.conv2d(x, _ones3x3(x), None, stride, 1, 1, x.shape[1])


def _folded_affine(scale, gamma, beta, C, like):
    """BN's affine parameters times the mixture weight: (scale * gamma, scale * beta)."""
    g = scale.expand(C).contiguous() if gamma is None else scale * gamma
    b = None if beta is None else scale * beta
    return g.to(like.dtype), b


class ReLUConvBNScaled(torch.autograd.Function):
    """``scale * BN_train(conv(relu(x)))`` keeping ``x``, the convolution output (unless
    ``keep_conv`` is False: then it is recomputed in the backward pass) and BN's batch
    statistics (module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, gamma, beta, running_mean, running_var, factor, eps, scale,
                stride, padding, dilation, keep_conv):
        a = torch.relu(x)
        z = F.conv2d(a, weight, None, stride, padding, dilation)
        del a
        g, b = _folded_affine(scale, gamma, beta, z.shape[1], z)
        y, mean, invstd = torch.ops.aten.native_batch_norm(
            z, g, b, running_mean, running_var, True, factor, eps)
        ctx.save_for_backward(x, weight, z if keep_conv else None, gamma, beta, mean, invstd, scale)
        ctx.conf = (eps, stride, padding, dilation)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, z, gamma, beta, mean, invstd, scale = ctx.saved_tensors
        eps, stride, padding, dilation = ctx.conf
        if torch.is_grad_enabled():  # create_graph: differentiate the plain formula (z is not an input)
            return ReLUConvBNScaled._graph_backward(ctx, grad_y, x, weight, gamma, beta, scale)
        a = torch.relu(x)
        if z is None:  # a cheap (1x1) convolution: recomputed rather than kept
            z = F.conv2d(a, weight, None, stride, padding, dilation)
        g, b = _folded_affine(scale, gamma, beta, z.shape[1], z)
        need_scale = ctx.needs_input_grad[8]
        grad_z, grad_g, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad_y, z, g, None, None, mean, invstd, True, eps,
            [True, need_scale or ctx.needs_input_grad[2], b is not None])
        grad_gamma = grad_beta = grad_scale = None
        if need_scale:
            grad_scale = grad_g.sum() if gamma is None else (grad_g * gamma).sum()
            if beta is not None:
                grad_scale = grad_scale + (grad_b * beta).sum()
            grad_scale = grad_scale.reshape(scale.shape)
        if gamma is not None and ctx.needs_input_grad[2]:
            grad_gamma = grad_g * scale
        if beta is not None and ctx.needs_input_grad[3]:
            grad_beta = grad_b * scale
        del z
        grad_a, grad_w, _ = torch.ops.aten.convolution_backward(
            grad_z, a, weight, None, list(stride), list(padding), list(dilation), False, [0, 0], 1,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False])
        # ReLU's gradient mask from its output, as autograd's ReLU does
        grad_x = None if grad_a is None else \
            torch.ops.aten.threshold_backward.grad_input(grad_a, a, 0.0, grad_input=grad_a)  # in place
        return (grad_x, grad_w, grad_gamma, grad_beta, None, None, None, None, grad_scale,
                None, None, None, None)

    @staticmethod
    def _graph_backward(ctx, grad_y, x, weight, gamma, beta, scale):
        eps, stride, padding, dilation = ctx.conf
        inputs = (x, weight, gamma, beta, scale)
        wanted = [i for i, t in zip((0, 1, 2, 3, 8), inputs) if t is not None and ctx.needs_input_grad[i]]
        z = F.conv2d(torch.relu(x), weight, None, stride, padding, dilation)
        g, b = _folded_affine(scale, gamma, beta, z.shape[1], z)
        y = F.batch_norm(z, None, None, g, b, True, 0.0, eps)
        grads = torch.autograd.grad(y, [inputs[(0, 1, 2, 3, 8).index(i)] for i in wanted], grad_y,
                                    create_graph=True, allow_unused=True)
        out = [None] * 13
        for i, gr in zip(wanted, grads):
            out[i] = gr
        return tuple(out)


class AvgPoolScaled(torch.autograd.Function):
    """``scale * avgpool3x3(x)`` (padding excluded) keeping only ``x``: the pool is
    :func:`box_sum3x3` times ``recip``, the reciprocal of the number of real inputs under
    each window (:class:`attnas.ops.primitives.AvgPool3x3`)."""

    @staticmethod
    def forward(ctx, x, scale, recip, stride):
        y = box_sum3x3(x, stride) * (recip * scale)
        ctx.save_for_backward(x, recip, scale)
        ctx.stride = stride
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, recip, scale = ctx.saved_tensors
        stride = ctx.stride
        t = grad_y * recip
        grad_x = grad_scale = None
        if ctx.needs_input_grad[1]:
            grad_scale = (t * box_sum3x3(x, stride)).sum().reshape(scale.shape)
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                t * scale, x, _ones3x3(x), None, [stride, stride], [1, 1], [1, 1], False, [0, 0], x.shape[1],
                [True, False, False])[0]
        return grad_x, grad_scale, None, None
