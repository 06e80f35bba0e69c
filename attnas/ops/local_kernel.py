"""Fused CPU kernel of TrioNet's local self-attention (:func:`attnas.ops.trio.local_attention`).

Local attention over an m x m window is a *correlation* of two data tensors (every query with
m^2 shifted keys, every attention weight with m^2 shifted values): no PyTorch operator computes
it without either materialising the m^2-times larger unfolded keys and values (``F.unfold``)
or making ~7 m^2 full passes over memory (one tensor operation per offset, the PyTorch
implementation :class:`attnas.ops.trio._LocalAttention`).  Batched matrix products over halo
blocks (HaloNet) waste (b + m - 1)^2 / m^2 of their work and ran no faster than that at 56x56
(8 channels per head), and ``torch.compile`` took 31-93 s to compile and ran 1.3-2.4x slower
(``docs/benchmarks.md``, "Attention operators").  So the whole operator is written as C loops
here, per (image, head) slice: the logits offset by offset and channel by channel, the softmax
over the window and the weighted values in the forward pass; the value gradients, the softmax
backward and the query/key/table gradients in the backward pass -- all on one slice while it
is in cache, with one (m^2, H, W) buffer per thread instead of full-size temporaries.  The
loops run over contiguous flat ranges of each shifted map (vectorised; ``exp`` from glibc's
libmvec when it links).  Only the attention weights are kept for the backward pass, as before.

Axial attention has a kernel of its own, :mod:`attnas.ops.axial_kernel` (it shares the softmax
macros, :data:`SOFTMAX_MACROS`).  The local kernel below takes a general odd ``mh x mw`` window.

The C source is compiled on first use and cached (:mod:`attnas.ops.ckernel`; 0.6-2 s once).
Without a compiler, on a failed build, or with ``ATTNAS_LOCAL_KERNEL=0`` :func:`available` is
False and the operators use their PyTorch implementations (same values up to float rounding;
both are tested against the loop references, values and gradients).  CPU tensors of dtype
float32 / float64 only.
"""
from __future__ import annotations

import ctypes

import torch

from attnas.ops.ckernel import DTYPES as _DTYPES
from attnas.ops.ckernel import CLibrary, instantiate, supports

# One copy per dtype (T, S = suffix, EXP).  Per (image, head) slice "bh": q, k, g_q, g_k (d, H, W);
# v, go, out, g_v (dv, H, W); r (d, m*m) of the head; attn (m*m, H, W).  Offset n of the window
# is (a, c) = (n / mw - mh/2, n % mw - mw/2) (an mh x mw window); RANGE(n) gives the rows [i0, i1) x columns [j0, j1)
# of the queries whose key (i + a, j + c) is inside the image, and the flat range x0 <= x < x1
# (x = i W + j, key at x + s) from the first to the last of them.  The loops run over the flat
# range (long vectorisable loops also on 7x7 maps); it also visits the columns outside [j0, j1)
# of the rows in between, which MASK then sets (logits to -inf, so their attention is exactly
# 0 and the values and gradients they add in the other loops are 0).
#: the includes, the thread number, glibc's vector ``exp`` and the softmax over a window (and its
#: backward) per lane of contiguous columns; shared with :mod:`attnas.ops.axial_kernel`
SOFTMAX_MACROS = r"""
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#define THREAD omp_get_thread_num()
#else
#define THREAD 0
#endif
#ifdef ATTNAS_MVEC  /* glibc's vector exp (libmvec), declared without -ffast-math */
__attribute__((simd("notinbranch"))) float expf(float);
__attribute__((simd("notinbranch"))) double exp(double);
#endif
#define SOFTMAX(ai_, L_, n_, mx_, sum_) { \
    T *sa_ = (ai_), *sm_ = (mx_), *ss_ = (sum_); const long sL_ = (L_), sn_ = (n_); \
    for (long x = 0; x < sn_; x++) { sm_[x] = -(T)INFINITY; ss_[x] = 0; } \
    for (long j = 0; j < sL_; j++) { const T *lj = sa_ + j * sn_; \
        _Pragma("omp simd") for (long x = 0; x < sn_; x++) sm_[x] = lj[x] > sm_[x] ? lj[x] : sm_[x]; } \
    for (long j = 0; j < sL_; j++) { T *lj = sa_ + j * sn_; \
        _Pragma("omp simd") for (long x = 0; x < sn_; x++) { lj[x] = EXP(lj[x] - sm_[x]); ss_[x] += lj[x]; } } \
    for (long x = 0; x < sn_; x++) ss_[x] = 1 / ss_[x]; \
    for (long j = 0; j < sL_; j++) { T *lj = sa_ + j * sn_; \
        _Pragma("omp simd") for (long x = 0; x < sn_; x++) lj[x] *= ss_[x]; } }
#define SOFTMAX_BACK(ai_, gi_, L_, n_, dot_) { \
    const T *sa_ = (ai_); T *sg_ = (gi_), *sd_ = (dot_); const long sL_ = (L_), sn_ = (n_); \
    for (long x = 0; x < sn_; x++) sd_[x] = 0; \
    for (long j = 0; j < sL_; j++) { const T *aj = sa_ + j * sn_, *gj = sg_ + j * sn_; \
        _Pragma("omp simd") for (long x = 0; x < sn_; x++) sd_[x] += aj[x] * gj[x]; } \
    for (long j = 0; j < sL_; j++) { const T *aj = sa_ + j * sn_; T *gj = sg_ + j * sn_; \
        _Pragma("omp simd") for (long x = 0; x < sn_; x++) gj[x] = aj[x] * (gj[x] - sd_[x]); } }
"""

_PRELUDE = SOFTMAX_MACROS + r"""
#define RANGE(n) long a = (n) / mw - mh / 2, c = (n) % mw - mw / 2, s = a * W + c; \
    long i0 = a < 0 ? -a : 0, i1 = a > 0 ? H - a : H, j0 = c < 0 ? -c : 0, j1 = c > 0 ? W - c : W; \
    long x0 = i0 * W + j0, x1 = (i1 - 1) * W + j1; \
    if (i1 <= i0 || j1 <= j0) x1 = x0;
#define MASK(p, val) for (long i = 0; i < H; i++) { \
    T *row_ = (p) + i * W; long jl = j0 < W ? j0 : W, jr = j1 > jl ? j1 : jl; \
    if (i < i0 || i >= i1) jl = W; \
    for (long j = 0; j < jl; j++) row_[j] = val; \
    for (long j = jr; j < W; j++) row_[j] = val; }
"""

_TEMPLATE = r"""
void forward_S(const T *restrict q, const T *restrict k, const T *restrict r, const T *restrict v,
               T *restrict attn, T *restrict out, T *restrict scratch,
               long BH, long heads, long d, long dv, long H, long W, long mh, long mw, int nt) {
    long HW = H * W, mm = mh * mw;
    #pragma omp parallel for num_threads(nt) schedule(dynamic)
    for (long bh = 0; bh < BH; bh++) {
        const T *qb = q + bh * d * HW, *kb = k + bh * d * HW, *rb = r + (bh % heads) * d * mm;
        T *ab = attn + bh * mm * HW, *mx = scratch + THREAD * 2 * HW, *sum = mx + HW;
        for (long n = 0; n < mm; n++) {          /* logits q_o . (k_{o+n} + r_n), -inf outside */
            RANGE(n)
            T *ln = ab + n * HW;
            for (long x = x0; x < x1; x++) ln[x] = 0;
            for (long e = 0; e < d; e++) {
                const T rv = rb[e * mm + n], *qe = qb + e * HW, *ke = kb + e * HW + s;
                #pragma omp simd
                for (long x = x0; x < x1; x++) ln[x] += qe[x] * (ke[x] + rv);
            }
            MASK(ln, -(T)INFINITY)
        }
        for (long x = 0; x < HW; x++) { mx[x] = -(T)INFINITY; sum[x] = 0; }   /* softmax over n */
        for (long n = 0; n < mm; n++) {
            const T *ln = ab + n * HW;
            #pragma omp simd
            for (long x = 0; x < HW; x++) mx[x] = ln[x] > mx[x] ? ln[x] : mx[x];
        }
        for (long n = 0; n < mm; n++) {
            T *ln = ab + n * HW;
            #pragma omp simd
            for (long x = 0; x < HW; x++) { ln[x] = EXP(ln[x] - mx[x]); sum[x] += ln[x]; }
        }
        for (long x = 0; x < HW; x++) sum[x] = 1 / sum[x];
        for (long n = 0; n < mm; n++) {
            T *ln = ab + n * HW;
            #pragma omp simd
            for (long x = 0; x < HW; x++) ln[x] *= sum[x];
        }
        for (long e = 0; e < dv; e++) {          /* out_o = sum_n attn[n, o] v_{o+n} */
            T *oe = out + (bh * dv + e) * HW;
            const T *ve = v + (bh * dv + e) * HW;
            for (long x = 0; x < HW; x++) oe[x] = 0;
            for (long n = 0; n < mm; n++) {
                RANGE(n)
                const T *an = ab + n * HW, *vn = ve + s;
                #pragma omp simd
                for (long x = x0; x < x1; x++) oe[x] += an[x] * vn[x];
            }
        }
    }
}

void backward_S(const T *restrict go, const T *restrict attn, const T *restrict q, const T *restrict k,
                const T *restrict r, const T *restrict v, T *restrict g_q, T *restrict g_k,
                T *restrict g_v, T *restrict g_r, T *restrict scratch,
                long BH, long heads, long d, long dv, long H, long W, long mh, long mw, int nt) {
    long HW = H * W, mm = mh * mw;
    #pragma omp parallel for num_threads(nt) schedule(dynamic)
    for (long bh = 0; bh < BH; bh++) {
        const T *ab = attn + bh * mm * HW, *gob = go + bh * dv * HW, *vb = v + bh * dv * HW;
        const T *qb = q + bh * d * HW, *kb = k + bh * d * HW, *rb = r + (bh % heads) * d * mm;
        T *gqb = g_q + bh * d * HW, *gkb = g_k + bh * d * HW, *gvb = g_v + bh * dv * HW;
        T *grb = g_r + bh * d * mm, *gl = scratch + THREAD * (mm + 1) * HW, *dot = gl + mm * HW;
        for (long x = 0; x < dv * HW; x++) gvb[x] = 0;
        for (long n = 0; n < mm; n++) {          /* g_attn[n, o] = go_o . v_{o+n}; g_v[o+n] += attn[n, o] go_o */
            RANGE(n)
            const T *an = ab + n * HW;
            T *gn = gl + n * HW;
            for (long x = x0; x < x1; x++) gn[x] = 0;
            for (long e = 0; e < dv; e++) {
                const T *ge = gob + e * HW, *ve = vb + e * HW + s;
                T *gve = gvb + e * HW + s;
                #pragma omp simd
                for (long x = x0; x < x1; x++) {
                    gn[x] += ge[x] * ve[x];
                    gve[x] += an[x] * ge[x];
                }
            }
            MASK(gn, 0)
        }
        for (long x = 0; x < HW; x++) dot[x] = 0;  /* softmax backward: gl = attn (g_attn - attn . g_attn) */
        for (long n = 0; n < mm; n++) {
            const T *an = ab + n * HW, *gn = gl + n * HW;
            #pragma omp simd
            for (long x = 0; x < HW; x++) dot[x] += an[x] * gn[x];
        }
        for (long n = 0; n < mm; n++) {
            const T *an = ab + n * HW;
            T *gn = gl + n * HW;
            #pragma omp simd
            for (long x = 0; x < HW; x++) gn[x] = an[x] * (gn[x] - dot[x]);
        }
        for (long x = 0; x < d * HW; x++) { gqb[x] = 0; gkb[x] = 0; }
        for (long n = 0; n < mm; n++) {          /* g_q_o += gl (k_{o+n} + r_n); g_k[o+n] += gl q_o; g_r_n += gl q_o */
            RANGE(n)
            const T *gn = gl + n * HW;
            for (long e = 0; e < d; e++) {
                const T rv = rb[e * mm + n], *qe = qb + e * HW, *ke = kb + e * HW + s;
                T *gqe = gqb + e * HW, *gke = gkb + e * HW + s;
                T acc = 0;
                #pragma omp simd reduction(+:acc)
                for (long x = x0; x < x1; x++) {
                    T g = gn[x];
                    gqe[x] += g * (ke[x] + rv);
                    gke[x] += g * qe[x];
                    acc += g * qe[x];
                }
                grb[e * mm + n] = acc;
            }
        }
    }
}
"""


def _declare(lib: ctypes.CDLL) -> None:
    P, L, I = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    for _, suffix in _DTYPES.values():
        getattr(lib, f"forward_{suffix}").argtypes = [P] * 7 + [L] * 8 + [I]
        getattr(lib, f"backward_{suffix}").argtypes = [P] * 11 + [L] * 8 + [I]


LIBRARY = CLibrary("trio_local", lambda: instantiate(_TEMPLATE, _PRELUDE), _declare,
                   "ATTNAS_LOCAL_KERNEL", "local-attention C kernel")
_library = LIBRARY.get


def available() -> bool:
    """True when the kernel is enabled (``ATTNAS_LOCAL_KERNEL`` unset or not ``0``) and built."""
    return LIBRARY.available()


class LocalAttentionFunction(torch.autograd.Function):
    """Forward and backward of local attention on the C kernel (q already scaled).

    q, k: ``(B, d_q, H, W)``; v: ``(B, d_v, H, W)``; rel: ``(d_q, mh, mw)``, an odd mh x mw window
    (m x m; any odd mh x mw).  Saves the
    attention weights (``(B * heads, mh * mw, H, W)``) for the backward pass."""

    @staticmethod
    def forward(ctx, q, k, v, rel, heads):
        lib, (_, sfx) = _library(), _DTYPES[q.dtype]
        B, dq, H, W = q.shape
        dv, (mh, mw) = v.shape[1], rel.shape[-2:]
        q, k, v, rel = (t.contiguous() for t in (q, k, v, rel))
        nt = torch.get_num_threads()
        attn = torch.empty(B * heads, mh * mw, H, W, dtype=q.dtype)
        out = torch.empty(B, dv, H, W, dtype=q.dtype)
        scratch = torch.empty(nt, 2, H, W, dtype=q.dtype)
        getattr(lib, f"forward_{sfx}")(q.data_ptr(), k.data_ptr(), rel.data_ptr(), v.data_ptr(), attn.data_ptr(),
                                       out.data_ptr(), scratch.data_ptr(), B * heads, heads, dq // heads,
                                       dv // heads, H, W, mh, mw, nt)
        ctx.save_for_backward(q, k, v, rel, attn)
        ctx.heads = heads
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, rel, attn = ctx.saved_tensors
        lib, (_, sfx) = _library(), _DTYPES[q.dtype]
        heads = ctx.heads
        B, dq, H, W = q.shape
        dv, (mh, mw) = v.shape[1], rel.shape[-2:]
        nt = torch.get_num_threads()
        go = grad_out.contiguous()
        g_q, g_k, g_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        g_r = torch.empty(B, dq, mh * mw, dtype=q.dtype)   # per image, summed below
        scratch = torch.empty(nt, mh * mw + 1, H, W, dtype=q.dtype)
        getattr(lib, f"backward_{sfx}")(go.data_ptr(), attn.data_ptr(), q.data_ptr(), k.data_ptr(), rel.data_ptr(),
                                        v.data_ptr(), g_q.data_ptr(), g_k.data_ptr(), g_v.data_ptr(), g_r.data_ptr(),
                                        scratch.data_ptr(), B * heads, heads, dq // heads, dv // heads, H, W, mh, mw, nt)
        return g_q, g_k, g_v, g_r.sum(0).view(dq, mh, mw), None


__all__ = ["LocalAttentionFunction", "SOFTMAX_MACROS", "available", "supports"]
