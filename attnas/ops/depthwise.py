"""Depthwise convolution on CPU: a backward pass that does not fall off oneDNN's slow paths.

The cell and chain spaces are built of depthwise convolutions (DARTS' separable and dilated
convolutions, the MobileNetV2 blocks of ProxylessNAS and NAS-Bench-Macro).  oneDNN, which
PyTorch runs them on, is fast for every forward pass and for both gradients of an undilated
3x3 depthwise convolution -- and slow for the other gradients, where it falls back to generic
code.  Measured on the 2-core CPU of ``bench/search_step.py`` (PyTorch 2.13, batch 64,
channels-last; ``bench/depthwise_ops.py``): a 5x5 weight gradient at 16 channels x 32x32 took
6.1 ms against 0.26 for the 3x3 one; a dilated 3x3's input gradient 3.7 ms against a 0.3 ms
forward; a 7x7 weight gradient at 144 channels x 56x56 0.22 s.

So :class:`DepthwiseConv2dFunction` keeps oneDNN's forward and computes the backward pass as:

* input gradient, stride 1: the forward correlation of the output gradient with the flipped
  kernel (``F.conv2d`` again -- oneDNN's fast forward path; exact, a change of summation index);
* input gradient, stride > 1, and the weight gradient: C loops over channels-last maps
  (out[b, oh, ow, c] = sum_{i,j} w[i, j, c] x[b, oh s - p + i d, ow s - p + j d, c] and its
  adjoints), with the channel -- contiguous in that layout -- as the vectorised inner loop, so
  every kernel size, stride and dilation costs about the same per tap.  Parallel over images
  (each thread owns its images' input gradient); weight-gradient partial sums per thread, in
  register blocks of 16 channels with two accumulators, added at the end.

:func:`depthwise_conv2d` is the entry point (and :class:`DepthwiseConv2d`, an ``nn.Conv2d``
whose forward calls it): this function for CPU float32/float64 inputs with square kernel,
stride, padding and dilation, except the undilated 3x3 that oneDNN does well; ``F.conv2d``
otherwise -- also under graph capture (tracing, export, ``torch.compile``), under autocast, without a C
compiler, or with ``ATTNAS_DEPTHWISE_KERNEL=0``.  Values and gradients agree with ``F.conv2d``
up to float summation order (``tests/test_depthwise.py``).  The backward pass is once
differentiable: a second derivative through it (``create_graph=True``; attnas itself never
takes one) raises, and ``ATTNAS_DEPTHWISE_KERNEL=0`` gives PyTorch's twice-differentiable
convolution.  The C source is built on first use and cached (:mod:`attnas.ops.ckernel`).
"""
from __future__ import annotations

import ctypes

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnas.ops.ckernel import DTYPES, CLibrary, capturing_graph, instantiate, supports

_PRELUDE = r"""
#ifdef _OPENMP
#include <omp.h>
#define THREAD omp_get_thread_num()
#else
#define THREAD 0
#endif
#define CB 16  /* channels per register block */
static inline long floor_div(long a, long b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
/* output columns [lo, hi] whose tap j reads an input column inside [0, W) */
#define OW_RANGE(j) long lo = -floor_div(-(p - (j) * d), s), hi = floor_div(W - 1 + p - (j) * d, s); \
    if (lo < 0) lo = 0; if (hi > Wo - 1) hi = Wo - 1;
"""

# x (B, H, W, C), w (kh, kw, C), out (B, Ho, Wo, C): channels-last maps, tap-major weights.
_TEMPLATE = r"""
void dw_backward_S(const T *restrict g, const T *restrict x, const T *restrict w, T *restrict gx,
                   T *restrict gw, T *restrict scratch, long B, long H, long W, long C, long Ho,
                   long Wo, long kh, long kw, long s, long p, long d, int need_x, int need_w, int nt) {
    long K = kh * kw * C;
    #pragma omp parallel num_threads(nt)
    {
        T *acc = need_w ? scratch + THREAD * K : 0;  /* zeroed by the caller */
        #pragma omp for schedule(static)
        for (long b = 0; b < B; b++) {
            T *gxb = need_x ? gx + b * H * W * C : 0;
            if (need_x) for (long t = 0; t < H * W * C; t++) gxb[t] = 0;
            for (long oh = 0; oh < Ho; oh++) {
                const T *gr = g + (b * Ho + oh) * Wo * C;
                for (long i = 0; i < kh; i++) {
                    long ih = oh * s - p + i * d;
                    if (ih < 0 || ih >= H) continue;
                    const T *xr = x + (b * H + ih) * W * C;
                    T *gxr = need_x ? gxb + ih * W * C : 0;
                    for (long j = 0; j < kw; j++) {
                        const T *wij = w + (i * kw + j) * C;
                        T *aij = need_w ? acc + (i * kw + j) * C : 0;
                        long off = -p + j * d;
                        OW_RANGE(j)
                        if (need_x)
                            for (long ow = lo; ow <= hi; ow++) {
                                const T *gp = gr + ow * C;
                                T *xq = gxr + (ow * s + off) * C;
                                #pragma omp simd
                                for (long c = 0; c < C; c++) xq[c] += wij[c] * gp[c];
                            }
                        if (!need_w) continue;
                        long c0 = 0;
                        for (; c0 + CB <= C; c0 += CB) {  /* two register accumulators per block */
                            T a0[CB], a1[CB];
                            for (long c = 0; c < CB; c++) { a0[c] = 0; a1[c] = 0; }
                            long ow = lo;
                            for (; ow + 1 <= hi; ow += 2) {
                                const T *g0 = gr + ow * C + c0, *x0 = xr + (ow * s + off) * C + c0;
                                const T *g1 = g0 + C, *x1 = xr + ((ow + 1) * s + off) * C + c0;
                                #pragma omp simd
                                for (long c = 0; c < CB; c++) { a0[c] += g0[c] * x0[c]; a1[c] += g1[c] * x1[c]; }
                            }
                            if (ow <= hi) {
                                const T *g0 = gr + ow * C + c0, *x0 = xr + (ow * s + off) * C + c0;
                                #pragma omp simd
                                for (long c = 0; c < CB; c++) a0[c] += g0[c] * x0[c];
                            }
                            for (long c = 0; c < CB; c++) aij[c0 + c] += a0[c] + a1[c];
                        }
                        for (long ow = lo; c0 < C && ow <= hi; ow++) {  /* the last channels */
                            const T *gp = gr + ow * C, *xp = xr + (ow * s + off) * C;
                            for (long c = c0; c < C; c++) aij[c] += gp[c] * xp[c];
                        }
                    }
                }
            }
        }
    }
    if (need_w)
        for (long t = 0; t < K; t++) {
            T sum = 0;
            for (int th = 0; th < nt; th++) sum += scratch[th * K + t];
            gw[t] = sum;
        }
}
"""


def _declare(lib: ctypes.CDLL) -> None:
    P, L, I = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    for _, suffix in DTYPES.values():
        getattr(lib, f"dw_backward_{suffix}").argtypes = [P] * 6 + [L] * 11 + [I] * 3


LIBRARY = CLibrary("depthwise", lambda: instantiate(_TEMPLATE, _PRELUDE), _declare,
                   "ATTNAS_DEPTHWISE_KERNEL", "depthwise-convolution C kernel")


def _taps(weight: torch.Tensor) -> torch.Tensor:
    """(C, 1, kh, kw) -> (kh, kw, C) contiguous."""
    return weight.detach().permute(2, 3, 0, 1).reshape(weight.shape[2], weight.shape[3], -1).contiguous()


def kernel_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride: int,
                    padding: int, dilation: int, need_x: bool = True, need_w: bool = True):
    """(grad_x, grad_weight) of a depthwise convolution on the C kernel (either None when not
    asked for): ``x`` (B, C, H, W), ``weight`` (C, 1, k, k), ``grad`` the output's gradient."""
    if not (need_x or need_w):
        return None, None
    lib, sfx = LIBRARY.get(), DTYPES[x.dtype][1]
    B, C, H, W = x.shape
    kh, kw = weight.shape[-2:]
    Ho, Wo = grad.shape[-2:]
    nt = torch.get_num_threads()
    xl = x.detach().contiguous(memory_format=torch.channels_last)
    gl = grad.contiguous(memory_format=torch.channels_last)
    gx = torch.empty(B, C, H, W, dtype=x.dtype, memory_format=torch.channels_last) if need_x else None
    gw = torch.empty(kh, kw, C, dtype=x.dtype) if need_w else None
    # zeroed here: a thread team smaller than nt (OMP_THREAD_LIMIT, a build without OpenMP)
    # leaves rows that no thread clears, and the final sum adds every row
    scratch = torch.zeros(nt, kh * kw * C, dtype=x.dtype) if need_w else None
    taps = _taps(weight)
    ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
    getattr(lib, f"dw_backward_{sfx}")(gl.data_ptr(), xl.data_ptr(), taps.data_ptr(), ptr(gx),
                                       ptr(gw), ptr(scratch), B, H, W, C, Ho, Wo, kh, kw, stride, padding,
                                       dilation, int(need_x), int(need_w), nt)
    if gw is not None:  # (kh, kw, C) -> the weight's shape and layout
        layout = torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last) \
            else torch.contiguous_format
        gw = gw.permute(2, 0, 1).unsqueeze(1).contiguous(memory_format=layout)
    return gx, gw


class DepthwiseConv2dFunction(torch.autograd.Function):
    """Depthwise convolution (``groups == C``, bias-free): forward on oneDNN, backward as in the
    module docstring."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation)
        return F.conv2d(x, weight, None, stride, padding, dilation, x.shape[1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        gx, gw = _backward(grad, x, weight, *ctx.conf, *ctx.needs_input_grad[:2])
        return gx, gw, None, None, None


def _backward(grad, x, weight, s: int, p: int, d: int, need_x: bool, need_w: bool):
    k = weight.shape[-1]
    flip = need_x and s == 1 and p <= d * (k - 1)
    gx, gw = kernel_backward(grad, x, weight, s, p, d, need_x=need_x and not flip, need_w=need_w)
    if flip:  # stride 1: the input gradient is the correlation with the flipped kernel
        gx = F.conv2d(grad, weight.flip(-1, -2), None, 1, d * (k - 1) - p, d, x.shape[1])
    return gx, gw


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _square(v) -> int | None:
    if isinstance(v, int):
        return v
    return v[0] if len(set(v)) == 1 else None


def use_kernel(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation, groups: int) -> tuple | None:
    """``(stride, padding, dilation)`` as ints when the C kernel should run this convolution, else None:
    a depthwise, bias-free convolution (one input channel per group, as many outputs as inputs) of a
    CPU float32/float64 map with square stride/padding/dilation, outside graph capture and autocast, with the
    kernel built and enabled -- and not the undilated 3x3, whose oneDNN kernels are as fast."""
    C = x.shape[1] if x.dim() == 4 else -1
    if weight.dim() != 4 or weight.shape[1] != 1 or groups != C or weight.shape[0] != C:
        return None
    s, p, d = _square(stride), _square(padding), _square(dilation)
    kh, kw = weight.shape[-2:]
    if s is None or p is None or d is None or isinstance(padding, str) or kh != kw:
        return None
    if kh == 3 and d == 1:
        return None
    if not supports(x, weight) or capturing_graph() or torch.is_autocast_enabled(x.device.type) \
            or not LIBRARY.available():
        return None
    return s, p, d


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, stride=1, padding=0, dilation=1,
                     groups: int = 1) -> torch.Tensor:
    """``F.conv2d(x, weight, None, stride, padding, dilation, groups)``, on the C kernel where
    :func:`use_kernel` says so."""
    conf = use_kernel(x, weight, stride, padding, dilation, groups)
    if conf is None:
        return F.conv2d(x, weight, None, stride, padding, dilation, groups)
    return DepthwiseConv2dFunction.apply(x, weight, *conf)


def conv_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation,
                  groups: int, need_x: bool = True, need_w: bool = True):
    """(grad_x, grad_weight) of ``F.conv2d(x, weight, None, stride, padding, dilation, groups)``
    (bias-free) for hand-written backward passes: the depthwise backward of this module where
    :func:`use_kernel` says so, ``aten.convolution_backward`` otherwise."""
    conf = use_kernel(x, weight, stride, padding, dilation, groups)
    if conf is None:
        gx, gw, _ = torch.ops.aten.convolution_backward(
            grad, x, weight, None, list(_pair(stride)), list(_pair(padding)), list(_pair(dilation)),
            False, [0, 0], groups, [need_x, need_w, False])
        return gx, gw
    return _backward(grad, x, weight, *conf, need_x, need_w)


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(C, C, k, stride, padding, dilation, groups=C, bias=False)`` whose forward
    takes the C kernel where it is faster (same parameters and state dict)."""

    def __init__(self, channels: int, kernel: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1) -> None:
        super().__init__(channels, channels, kernel, stride, padding, dilation=dilation,
                         groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv2d(x, self.weight, self.stride, self.padding, self.dilation, self.groups)
