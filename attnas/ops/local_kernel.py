"""Fused CPU kernel of TrioNet's local and axial self-attention (:func:`attnas.ops.trio.local_attention`,
:func:`attnas.ops.trio.axial_attention_1d`).

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

Axial attention has loops of its own (:class:`AxialAttentionFunction`, L keys per query, no
masked offsets, no transposes): over the maps' contiguous columns (register-blocked 16-column
chunks on maps at least 16 wide), or over the channels of channels-last copies of each slice;
:func:`attnas.ops.trio.axial_impl` picks by channels per head.  The local kernel below still
takes a general odd ``mh x mw`` window.

The C source is compiled on first use and cached (:mod:`attnas.ops.ckernel`; 0.6-2 s once).
Without a compiler, on a failed build, or with ``ATTNAS_LOCAL_KERNEL=0`` :func:`available` is
False and the operators use their PyTorch implementations (same values up to float rounding;
both are tested against the loop references, values and gradients).  CPU tensors of dtype
float32 / float64 only.
"""
from __future__ import annotations

import ctypes
import os

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
_PRELUDE = r"""
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
#define RANGE(n) long a = (n) / mw - mh / 2, c = (n) % mw - mw / 2, s = a * W + c; \
    long i0 = a < 0 ? -a : 0, i1 = a > 0 ? H - a : H, j0 = c < 0 ? -c : 0, j1 = c > 0 ? W - c : W; \
    long x0 = i0 * W + j0, x1 = (i1 - 1) * W + j1; \
    if (i1 <= i0 || j1 <= j0) x1 = x0;
#define MASK(p, val) for (long i = 0; i < H; i++) { \
    T *row_ = (p) + i * W; long jl = j0 < W ? j0 : W, jr = j1 > jl ? j1 : jl; \
    if (i < i0 || i >= i1) jl = W; \
    for (long j = 0; j < jl; j++) row_[j] = val; \
    for (long j = jr; j < W; j++) row_[j] = val; }
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

/* Axial attention (global along one axis), per (image, head) slice "bh": q, k, g_q, g_k (d, H, W);
   v, go, out, g_v (dv, H, W); R (d, L, L) of the head: the relative term of every (query, key)
   pair, already gathered from the clipped table.  Along the height (axial_h): R[e][i][j] for
   query row i, key row j; attn (H, H, W) = [i][j][w]; the loops run over the contiguous w.  Along
   the width (axial_w): R[e][y][x] for key y, query x; attn (H, W, W) = [i][y][x]; the loops run
   over the contiguous queries x.  No transposes, no masked offsets: L keys per query. */
void axial_h_forward_S(const T *restrict q, const T *restrict k, const T *restrict R, const T *restrict v,
                       T *restrict attn, T *restrict out, T *restrict scratch,
                       long BH, long heads, long d, long dv, long H, long W, int nt) {
    long HW = H * W;
    #pragma omp parallel for num_threads(nt) schedule(dynamic)
    for (long bh = 0; bh < BH; bh++) {
        const T *qb = q + bh * d * HW, *kb = k + bh * d * HW, *vb = v + bh * dv * HW, *Rb = R + (bh % heads) * d * H * H;
        T *ob = out + bh * dv * HW, *mx = scratch + THREAD * 2 * W, *sum = mx + W;
        for (long i = 0; i < H; i++) {
            T *ai = attn + (bh * H + i) * HW;
            for (long j = 0; j < H; j++) {       /* logits q_i . (k_j + r_{j-i}) */
                T *l = ai + j * W;
                for (long x = 0; x < W; x++) l[x] = 0;
                for (long e = 0; e < d; e++) {
                    const T rv = Rb[(e * H + i) * H + j], *qe = qb + (e * H + i) * W, *ke = kb + (e * H + j) * W;
                    #pragma omp simd
                    for (long x = 0; x < W; x++) l[x] += qe[x] * (ke[x] + rv);
                }
            }
            SOFTMAX(ai, H, W, mx, sum)
            for (long e = 0; e < dv; e++) {      /* out_i = sum_j attn[i, j] v_j */
                T *oe = ob + (e * H + i) * W;
                for (long x = 0; x < W; x++) oe[x] = 0;
                for (long j = 0; j < H; j++) {
                    const T *aj = ai + j * W, *ve = vb + (e * H + j) * W;
                    #pragma omp simd
                    for (long x = 0; x < W; x++) oe[x] += aj[x] * ve[x];
                }
            }
        }
    }
}

void axial_h_backward_S(const T *restrict go, const T *restrict attn, const T *restrict q, const T *restrict k,
                        const T *restrict R, const T *restrict v, T *restrict g_q, T *restrict g_k,
                        T *restrict g_v, T *restrict g_R, T *restrict scratch,
                        long BH, long heads, long d, long dv, long H, long W, int nt) {
    long HW = H * W;
    #pragma omp parallel for num_threads(nt) schedule(dynamic)
    for (long bh = 0; bh < BH; bh++) {
        const T *gob = go + bh * dv * HW, *vb = v + bh * dv * HW, *qb = q + bh * d * HW, *kb = k + bh * d * HW;
        const T *Rb = R + (bh % heads) * d * H * H;
        T *gqb = g_q + bh * d * HW, *gkb = g_k + bh * d * HW, *gvb = g_v + bh * dv * HW, *gRb = g_R + bh * d * H * H;
        T *gl = scratch + THREAD * (HW + W), *dot = gl + HW;
        for (long x = 0; x < dv * HW; x++) gvb[x] = 0;
        for (long x = 0; x < d * HW; x++) { gqb[x] = 0; gkb[x] = 0; }
        for (long i = 0; i < H; i++) {
            const T *ai = attn + (bh * H + i) * HW;
            for (long j = 0; j < H; j++) {       /* g_attn[i, j] = go_i . v_j; g_v_j += attn[i, j] go_i */
                const T *aj = ai + j * W;
                T *gj = gl + j * W;
                for (long x = 0; x < W; x++) gj[x] = 0;
                for (long e = 0; e < dv; e++) {
                    const T *ge = gob + (e * H + i) * W, *ve = vb + (e * H + j) * W;
                    T *gve = gvb + (e * H + j) * W;
                    #pragma omp simd
                    for (long x = 0; x < W; x++) { gj[x] += ge[x] * ve[x]; gve[x] += aj[x] * ge[x]; }
                }
            }
            SOFTMAX_BACK(ai, gl, H, W, dot)
            for (long j = 0; j < H; j++) {       /* g_q_i += gl (k_j + r); g_k_j += gl q_i; g_r += gl q_i */
                const T *gj = gl + j * W;
                for (long e = 0; e < d; e++) {
                    const T rv = Rb[(e * H + i) * H + j], *qe = qb + (e * H + i) * W, *ke = kb + (e * H + j) * W;
                    T *gqe = gqb + (e * H + i) * W, *gke = gkb + (e * H + j) * W;
                    T acc = 0;
                    #pragma omp simd reduction(+:acc)
                    for (long x = 0; x < W; x++) {
                        T g = gj[x];
                        gqe[x] += g * (ke[x] + rv);
                        gke[x] += g * qe[x];
                        acc += g * qe[x];
                    }
                    gRb[(e * H + i) * H + j] = acc;
                }
            }
        }
    }
}

void axial_w_forward_S(const T *restrict q, const T *restrict k, const T *restrict R, const T *restrict v,
                       T *restrict attn, T *restrict out, T *restrict scratch,
                       long BH, long heads, long d, long dv, long H, long W, int nt) {
    long HW = H * W;
    #pragma omp parallel for num_threads(nt) schedule(dynamic)
    for (long bh = 0; bh < BH; bh++) {
        const T *qb = q + bh * d * HW, *kb = k + bh * d * HW, *vb = v + bh * dv * HW, *Rb = R + (bh % heads) * d * W * W;
        T *ob = out + bh * dv * HW, *mx = scratch + THREAD * 2 * W, *sum = mx + W;
        for (long i = 0; i < H; i++) {
            T *ai = attn + (bh * H + i) * W * W;
            for (long y = 0; y < W; y++) {       /* logits[y][x] = q_x . (k_y + r_{y-x}) */
                T *l = ai + y * W;
                for (long x = 0; x < W; x++) l[x] = 0;
                for (long e = 0; e < d; e++) {
                    const T kv = kb[(e * H + i) * W + y], *qe = qb + (e * H + i) * W, *Re = Rb + (e * W + y) * W;
                    #pragma omp simd
                    for (long x = 0; x < W; x++) l[x] += qe[x] * (kv + Re[x]);
                }
            }
            SOFTMAX(ai, W, W, mx, sum)
            for (long e = 0; e < dv; e++) {      /* out_x = sum_y attn[y][x] v_y */
                T *oe = ob + (e * H + i) * W;
                const T *ve = vb + (e * H + i) * W;
                for (long x = 0; x < W; x++) oe[x] = 0;
                for (long y = 0; y < W; y++) {
                    const T *ay = ai + y * W, vv = ve[y];
                    #pragma omp simd
                    for (long x = 0; x < W; x++) oe[x] += ay[x] * vv;
                }
            }
        }
    }
}

void axial_w_backward_S(const T *restrict go, const T *restrict attn, const T *restrict q, const T *restrict k,
                        const T *restrict R, const T *restrict v, T *restrict g_q, T *restrict g_k,
                        T *restrict g_v, T *restrict g_R, T *restrict scratch,
                        long BH, long heads, long d, long dv, long H, long W, int nt) {
    long HW = H * W;
    #pragma omp parallel for num_threads(nt) schedule(dynamic)
    for (long bh = 0; bh < BH; bh++) {
        const T *gob = go + bh * dv * HW, *vb = v + bh * dv * HW, *qb = q + bh * d * HW, *kb = k + bh * d * HW;
        const T *Rb = R + (bh % heads) * d * W * W;
        T *gqb = g_q + bh * d * HW, *gkb = g_k + bh * d * HW, *gvb = g_v + bh * dv * HW, *gRb = g_R + bh * d * W * W;
        T *gl = scratch + THREAD * (W * W + W), *dot = gl + W * W;
        for (long x = 0; x < d * HW; x++) gqb[x] = 0;
        for (long x = 0; x < d * W * W; x++) gRb[x] = 0;
        for (long i = 0; i < H; i++) {
            const T *ai = attn + (bh * H + i) * W * W;
            for (long y = 0; y < W; y++) {       /* g_attn[y][x] = go_x . v_y; g_v_y = sum_x attn[y][x] go_x */
                const T *ay = ai + y * W;
                T *gy = gl + y * W;
                for (long x = 0; x < W; x++) gy[x] = 0;
                for (long e = 0; e < dv; e++) {
                    const T *ge = gob + (e * H + i) * W, vv = vb[(e * H + i) * W + y];
                    T acc = 0;
                    #pragma omp simd reduction(+:acc)
                    for (long x = 0; x < W; x++) { gy[x] += ge[x] * vv; acc += ay[x] * ge[x]; }
                    gvb[(e * H + i) * W + y] = acc;
                }
            }
            SOFTMAX_BACK(ai, gl, W, W, dot)
            for (long y = 0; y < W; y++) {       /* g_q_x += gl (k_y + r); g_k_y = sum_x gl q_x; g_r += gl q_x */
                const T *gy = gl + y * W;
                for (long e = 0; e < d; e++) {
                    const T kv = kb[(e * H + i) * W + y], *qe = qb + (e * H + i) * W, *Re = Rb + (e * W + y) * W;
                    T *gqe = gqb + (e * H + i) * W, *gRe = gRb + (e * W + y) * W;
                    T acc = 0;
                    #pragma omp simd reduction(+:acc)
                    for (long x = 0; x < W; x++) {
                        T g = gy[x], gq = g * qe[x];
                        gqe[x] += g * (kv + Re[x]);
                        gRe[x] += gq;
                        acc += gq;
                    }
                    gkb[(e * H + i) * W + y] = acc;
                }
            }
        }
    }
}

/* Axial attention on channels-last copies of each slice (for many channels per head and short
   axes, where the loops above would run over a few columns only): per (image, head) slice the
   maps are transposed into the thread's scratch as (H W, d) rows, and every loop runs over the
   channels.  Query p = (i, x); along the height (aw = 0) its keys are (n, x), along the width
   (aw = 1) (i, n), n < L.  R (heads, L, L, d) = [query's axis position][key's][e]; attn (H W, L)
   per slice; g_R (BH, L, L, d). */
#define KEYPOS(n) (aw ? i * W + (n) : (n) * W + x)
static void to_rows_S(const T *restrict src, T *restrict dst, long c, long HW) {
    for (long e = 0; e < c; e++) for (long p = 0; p < HW; p++) dst[p * c + e] = src[e * HW + p];
}
static void from_rows_S(const T *restrict src, T *restrict dst, long c, long HW) {
    for (long e = 0; e < c; e++) for (long p = 0; p < HW; p++) dst[e * HW + p] = src[p * c + e];
}

void axial_cl_forward_S(const T *restrict q, const T *restrict k, const T *restrict R, const T *restrict v,
                        T *restrict attn, T *restrict out, T *restrict scratch,
                        long BH, long heads, long d, long dv, long H, long W, long aw, int nt) {
    long HW = H * W, L = aw ? W : H;
    #pragma omp parallel for num_threads(nt) schedule(dynamic)
    for (long bh = 0; bh < BH; bh++) {
        T *qT = scratch + THREAD * HW * (2 * d + 2 * dv), *kT = qT + HW * d, *vT = kT + HW * d, *oT = vT + HW * dv;
        const T *Rh = R + (bh % heads) * L * L * d;
        to_rows_S(q + bh * d * HW, qT, d, HW);
        to_rows_S(k + bh * d * HW, kT, d, HW);
        to_rows_S(v + bh * dv * HW, vT, dv, HW);
        for (long i = 0; i < H; i++) for (long x = 0; x < W; x++) {
            long p = i * W + x;
            const T *qp = qT + p * d, *Rq = Rh + (aw ? x : i) * L * d;
            T *l = attn + (bh * HW + p) * L, *op = oT + p * dv, mx = -(T)INFINITY, sum = 0;
            for (long n = 0; n < L; n++) {       /* logits q_p . (k_n + r_n) */
                const T *kn = kT + KEYPOS(n) * d, *rn = Rq + n * d;
                T acc = 0;
                #pragma omp simd reduction(+:acc)
                for (long e = 0; e < d; e++) acc += qp[e] * (kn[e] + rn[e]);
                l[n] = acc;
                mx = acc > mx ? acc : mx;
            }
            for (long n = 0; n < L; n++) { l[n] = EXP(l[n] - mx); sum += l[n]; }
            sum = 1 / sum;
            for (long e = 0; e < dv; e++) op[e] = 0;
            for (long n = 0; n < L; n++) {       /* out_p = sum_n attn[p, n] v_n */
                const T a = (l[n] *= sum), *vn = vT + KEYPOS(n) * dv;
                #pragma omp simd
                for (long e = 0; e < dv; e++) op[e] += a * vn[e];
            }
        }
        from_rows_S(oT, out + bh * dv * HW, dv, HW);
    }
}

void axial_cl_backward_S(const T *restrict go, const T *restrict attn, const T *restrict q, const T *restrict k,
                         const T *restrict R, const T *restrict v, T *restrict g_q, T *restrict g_k,
                         T *restrict g_v, T *restrict g_R, T *restrict scratch,
                         long BH, long heads, long d, long dv, long H, long W, long aw, int nt) {
    long HW = H * W, L = aw ? W : H;
    #pragma omp parallel for num_threads(nt) schedule(dynamic)
    for (long bh = 0; bh < BH; bh++) {
        T *qT = scratch + THREAD * (HW * (4 * d + 3 * dv) + L), *kT = qT + HW * d, *vT = kT + HW * d;
        T *goT = vT + HW * dv, *gqT = goT + HW * dv, *gkT = gqT + HW * d, *gvT = gkT + HW * d, *gl = gvT + HW * dv;
        const T *Rh = R + (bh % heads) * L * L * d;
        T *gR = g_R + bh * L * L * d;
        to_rows_S(q + bh * d * HW, qT, d, HW);
        to_rows_S(k + bh * d * HW, kT, d, HW);
        to_rows_S(v + bh * dv * HW, vT, dv, HW);
        to_rows_S(go + bh * dv * HW, goT, dv, HW);
        for (long y = 0; y < HW * d; y++) { gqT[y] = 0; gkT[y] = 0; }
        for (long y = 0; y < HW * dv; y++) gvT[y] = 0;
        for (long y = 0; y < L * L * d; y++) gR[y] = 0;
        for (long i = 0; i < H; i++) for (long x = 0; x < W; x++) {
            long p = i * W + x;
            const T *qp = qT + p * d, *gop = goT + p * dv, *Rq = Rh + (aw ? x : i) * L * d, *a = attn + (bh * HW + p) * L;
            T *gqp = gqT + p * d, *gRq = gR + (aw ? x : i) * L * d, dot = 0;
            for (long n = 0; n < L; n++) {       /* g_attn = go_p . v_n; g_v_n += attn go_p */
                const T *vn = vT + KEYPOS(n) * dv, an = a[n];
                T *gvn = gvT + KEYPOS(n) * dv, acc = 0;
                #pragma omp simd reduction(+:acc)
                for (long e = 0; e < dv; e++) { acc += gop[e] * vn[e]; gvn[e] += an * gop[e]; }
                gl[n] = acc;
                dot += an * acc;
            }
            for (long n = 0; n < L; n++) {       /* softmax backward; g_q_p, g_k_n, g_r */
                const T g = a[n] * (gl[n] - dot), *kn = kT + KEYPOS(n) * d, *rn = Rq + n * d;
                T *gkn = gkT + KEYPOS(n) * d, *grn = gRq + n * d;
                #pragma omp simd
                for (long e = 0; e < d; e++) {
                    gqp[e] += g * (kn[e] + rn[e]);
                    gkn[e] += g * qp[e];
                    grn[e] += g * qp[e];
                }
            }
        }
        from_rows_S(gqT, g_q + bh * d * HW, d, HW);
        from_rows_S(gkT, g_k + bh * d * HW, d, HW);
        from_rows_S(gvT, g_v + bh * dv * HW, dv, HW);
    }
}
#undef KEYPOS

/* The column loops of axial attention for maps at least CH columns wide, register-blocked:
   every output chunk of CH columns is accumulated in registers over the contracted index
   (channels, keys or queries) -- four partial sums, so that consecutive multiply-adds do not
   wait for each other -- and stored once, instead of one load-add-store pass over the output per
   term.  The last chunk of a row overlaps the one before it (x0 = W - CH), so there is no
   remainder loop; that is why every chunked output here is a pure store. */
#define CH 16
#define CHUNKS for (long c_ = 0; c_ < W; c_ += CH) { const long x0 = c_ + CH > W ? W - CH : c_;
#define END_CHUNKS }
#define CONTRACT(n, TERM) \
    T c0[CH], c1[CH], c2[CH], c3[CH], acc[CH]; \
    _Pragma("omp simd") for (int t = 0; t < CH; t++) { c0[t] = 0; c1[t] = 0; c2[t] = 0; c3[t] = 0; } \
    long u_ = 0; \
    for (; u_ + 4 <= (n); u_ += 4) { \
        _Pragma("omp simd") for (int t = 0; t < CH; t++) { \
            c0[t] += TERM(u_, t); c1[t] += TERM(u_ + 1, t); c2[t] += TERM(u_ + 2, t); c3[t] += TERM(u_ + 3, t); } } \
    for (; u_ < (n); u_++) { _Pragma("omp simd") for (int t = 0; t < CH; t++) c0[t] += TERM(u_, t); } \
    _Pragma("omp simd") for (int t = 0; t < CH; t++) acc[t] = (c0[t] + c1[t]) + (c2[t] + c3[t]);
#define ACC_STORE(dst) _Pragma("omp simd") for (int t = 0; t < CH; t++) (dst)[t] = acc[t];

void axial_hv_forward_S(const T *restrict q, const T *restrict k, const T *restrict R, const T *restrict v,
                        T *restrict attn, T *restrict out, T *restrict scratch,
                        long BH, long heads, long d, long dv, long H, long W, int nt) {
    long HW = H * W;
    #pragma omp parallel for num_threads(nt) schedule(dynamic)
    for (long bh = 0; bh < BH; bh++) {
        const T *qb = q + bh * d * HW, *kb = k + bh * d * HW, *vb = v + bh * dv * HW, *Rb = R + (bh % heads) * d * H * H;
        T *ob = out + bh * dv * HW, *mx = scratch + THREAD * 2 * W, *sum = mx + W;
        for (long i = 0; i < H; i++) {
            T *ai = attn + (bh * H + i) * HW;
            for (long j = 0; j < H; j++) CHUNKS   /* logits q_i . (k_j + r_{j-i}) */
                #define TERM(e, t) qb[((e) * H + i) * W + x0 + t] * (kb[((e) * H + j) * W + x0 + t] + Rb[((e) * H + i) * H + j])
                CONTRACT(d, TERM)
                #undef TERM
                ACC_STORE(ai + j * W + x0)
            END_CHUNKS
            SOFTMAX(ai, H, W, mx, sum)
            for (long e = 0; e < dv; e++) CHUNKS  /* out_i = sum_j attn[i, j] v_j */
                #define TERM(j, t) ai[(j) * W + x0 + t] * vb[(e * H + (j)) * W + x0 + t]
                CONTRACT(H, TERM)
                #undef TERM
                ACC_STORE(ob + (e * H + i) * W + x0)
            END_CHUNKS
        }
    }
}

void axial_hv_backward_S(const T *restrict go, const T *restrict attn, const T *restrict q, const T *restrict k,
                         const T *restrict R, const T *restrict v, T *restrict g_q, T *restrict g_k,
                         T *restrict g_v, T *restrict g_R, T *restrict scratch,
                         long BH, long heads, long d, long dv, long H, long W, int nt) {
    long HW = H * W;
    #pragma omp parallel for num_threads(nt) schedule(dynamic)
    for (long bh = 0; bh < BH; bh++) {
        const T *gob = go + bh * dv * HW, *vb = v + bh * dv * HW, *qb = q + bh * d * HW, *kb = k + bh * d * HW;
        const T *Rb = R + (bh % heads) * d * H * H, *ab = attn + bh * H * HW;
        T *gqb = g_q + bh * d * HW, *gkb = g_k + bh * d * HW, *gvb = g_v + bh * dv * HW, *gRb = g_R + bh * d * H * H;
        T *gl = scratch + THREAD * (H * HW + W), *dot = gl + H * HW;   /* gl: (H, H, W) = [i][j][x] */
        for (long i = 0; i < H; i++) {
            for (long j = 0; j < H; j++) CHUNKS   /* g_attn[i, j] = go_i . v_j */
                #define TERM(e, t) gob[((e) * H + i) * W + x0 + t] * vb[((e) * H + j) * W + x0 + t]
                CONTRACT(dv, TERM)
                #undef TERM
                ACC_STORE(gl + (i * H + j) * W + x0)
            END_CHUNKS
            SOFTMAX_BACK(ab + i * HW, gl + i * HW, H, W, dot)
        }
        for (long e = 0; e < dv; e++) for (long j = 0; j < H; j++) CHUNKS   /* g_v_j = sum_i attn[i, j] go_i */
            #define TERM(i, t) ab[((i) * H + j) * W + x0 + t] * gob[(e * H + (i)) * W + x0 + t]
            CONTRACT(H, TERM)
            #undef TERM
            ACC_STORE(gvb + (e * H + j) * W + x0)
        END_CHUNKS
        for (long e = 0; e < d; e++) {
            for (long i = 0; i < H; i++) CHUNKS   /* g_q_i = sum_j gl[i, j] (k_j + r_{j-i}) */
                #define TERM(j, t) gl[(i * H + (j)) * W + x0 + t] * (kb[(e * H + (j)) * W + x0 + t] + Rb[(e * H + i) * H + (j)])
                CONTRACT(H, TERM)
                #undef TERM
                ACC_STORE(gqb + (e * H + i) * W + x0)
            END_CHUNKS
            for (long j = 0; j < H; j++) CHUNKS   /* g_k_j = sum_i gl[i, j] q_i */
                #define TERM(i, t) gl[((i) * H + j) * W + x0 + t] * qb[(e * H + (i)) * W + x0 + t]
                CONTRACT(H, TERM)
                #undef TERM
                ACC_STORE(gkb + (e * H + j) * W + x0)
            END_CHUNKS
            for (long i = 0; i < H; i++) {        /* g_r[i, j] = sum_x gl[i, j] q_i */
                const T *qe = qb + (e * H + i) * W;
                for (long j = 0; j < H; j++) {
                    const T *g = gl + (i * H + j) * W;
                    T s = 0;
                    _Pragma("omp simd reduction(+:s)") for (long x = 0; x < W; x++) s += g[x] * qe[x];
                    gRb[(e * H + i) * H + j] = s;
                }
            }
        }
    }
}

void axial_wv_forward_S(const T *restrict q, const T *restrict k, const T *restrict R, const T *restrict v,
                        T *restrict attn, T *restrict out, T *restrict scratch,
                        long BH, long heads, long d, long dv, long H, long W, int nt) {
    long HW = H * W;
    #pragma omp parallel for num_threads(nt) schedule(dynamic)
    for (long bh = 0; bh < BH; bh++) {
        const T *qb = q + bh * d * HW, *kb = k + bh * d * HW, *vb = v + bh * dv * HW, *Rb = R + (bh % heads) * d * W * W;
        T *ob = out + bh * dv * HW, *mx = scratch + THREAD * 2 * W, *sum = mx + W;
        for (long i = 0; i < H; i++) {
            T *ai = attn + (bh * H + i) * W * W;
            for (long y = 0; y < W; y++) CHUNKS   /* logits[y][x] = q_x . (k_y + r_{y-x}) */
                #define TERM(e, t) qb[((e) * H + i) * W + x0 + t] * (kb[((e) * H + i) * W + y] + Rb[((e) * W + y) * W + x0 + t])
                CONTRACT(d, TERM)
                #undef TERM
                ACC_STORE(ai + y * W + x0)
            END_CHUNKS
            SOFTMAX(ai, W, W, mx, sum)
            for (long e = 0; e < dv; e++) CHUNKS  /* out_x = sum_y attn[y][x] v_y */
                #define TERM(y, t) ai[(y) * W + x0 + t] * vb[(e * H + i) * W + (y)]
                CONTRACT(W, TERM)
                #undef TERM
                ACC_STORE(ob + (e * H + i) * W + x0)
            END_CHUNKS
        }
    }
}

void axial_wv_backward_S(const T *restrict go, const T *restrict attn, const T *restrict q, const T *restrict k,
                         const T *restrict R, const T *restrict v, T *restrict g_q, T *restrict g_k,
                         T *restrict g_v, T *restrict g_R, T *restrict scratch,
                         long BH, long heads, long d, long dv, long H, long W, int nt) {
    long HW = H * W, WW = W * W;
    #pragma omp parallel for num_threads(nt) schedule(dynamic)
    for (long bh = 0; bh < BH; bh++) {
        const T *gob = go + bh * dv * HW, *vb = v + bh * dv * HW, *qb = q + bh * d * HW, *kb = k + bh * d * HW;
        const T *Rb = R + (bh % heads) * d * WW, *ab = attn + bh * H * WW;
        T *gqb = g_q + bh * d * HW, *gkb = g_k + bh * d * HW, *gvb = g_v + bh * dv * HW, *gRb = g_R + bh * d * WW;
        T *gl = scratch + THREAD * (H * WW + W), *dot = gl + H * WW;   /* gl: (H, W, W) = [i][y][x] */
        for (long i = 0; i < H; i++) {
            const T *ai = ab + i * WW;
            for (long y = 0; y < W; y++) {
                CHUNKS                            /* g_attn[y][x] = go_x . v_y */
                    #define TERM(e, t) gob[((e) * H + i) * W + x0 + t] * vb[((e) * H + i) * W + y]
                    CONTRACT(dv, TERM)
                    #undef TERM
                    ACC_STORE(gl + (i * W + y) * W + x0)
                END_CHUNKS
                for (long e = 0; e < dv; e++) {   /* g_v_y = sum_x attn[y][x] go_x */
                    const T *ay = ai + y * W, *ge = gob + (e * H + i) * W;
                    T s = 0;
                    _Pragma("omp simd reduction(+:s)") for (long x = 0; x < W; x++) s += ay[x] * ge[x];
                    gvb[(e * H + i) * W + y] = s;
                }
            }
            SOFTMAX_BACK(ai, gl + i * WW, W, W, dot)
        }
        for (long e = 0; e < d; e++) {
            for (long i = 0; i < H; i++) {
                const T *qe = qb + (e * H + i) * W;
                CHUNKS                            /* g_q_x = sum_y gl[y][x] (k_y + r_{y-x}) */
                    #define TERM(y, t) gl[(i * W + (y)) * W + x0 + t] * (kb[(e * H + i) * W + (y)] + Rb[(e * W + (y)) * W + x0 + t])
                    CONTRACT(W, TERM)
                    #undef TERM
                    ACC_STORE(gqb + (e * H + i) * W + x0)
                END_CHUNKS
                for (long y = 0; y < W; y++) {    /* g_k_y = sum_x gl[y][x] q_x */
                    const T *g = gl + (i * W + y) * W;
                    T s = 0;
                    _Pragma("omp simd reduction(+:s)") for (long x = 0; x < W; x++) s += g[x] * qe[x];
                    gkb[(e * H + i) * W + y] = s;
                }
            }
            for (long y = 0; y < W; y++) CHUNKS   /* g_r[y][x] = sum_i gl[i][y][x] q_x(i) */
                #define TERM(i, t) gl[((i) * W + y) * W + x0 + t] * qb[(e * H + (i)) * W + x0 + t]
                CONTRACT(H, TERM)
                #undef TERM
                ACC_STORE(gRb + (e * W + y) * W + x0)
            END_CHUNKS
        }
    }
}
#undef CH
#undef CHUNKS
#undef END_CHUNKS
#undef CONTRACT
#undef ACC_STORE
"""


def _declare(lib: ctypes.CDLL) -> None:
    P, L, I = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    for _, suffix in _DTYPES.values():
        getattr(lib, f"forward_{suffix}").argtypes = [P] * 7 + [L] * 8 + [I]
        getattr(lib, f"backward_{suffix}").argtypes = [P] * 11 + [L] * 8 + [I]
        for name in ("h", "w", "hv", "wv"):
            getattr(lib, f"axial_{name}_forward_{suffix}").argtypes = [P] * 7 + [L] * 6 + [I]
            getattr(lib, f"axial_{name}_backward_{suffix}").argtypes = [P] * 11 + [L] * 6 + [I]
        getattr(lib, f"axial_cl_forward_{suffix}").argtypes = [P] * 7 + [L] * 7 + [I]
        getattr(lib, f"axial_cl_backward_{suffix}").argtypes = [P] * 11 + [L] * 7 + [I]


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


#: the register-blocked column loops need rows of at least this many columns (their chunk)
AXIAL_CHUNK = 16


def _columns(axis: str, W: int) -> str:
    """The column-loop kernel for this axis and map width: register-blocked ("hv"/"wv") from
    :data:`AXIAL_CHUNK` columns on, else the plain loops ("h"/"w");
    ``ATTNAS_AXIAL_CHUNKED=0`` forces the plain ones."""
    chunked = W >= AXIAL_CHUNK and os.environ.get("ATTNAS_AXIAL_CHUNKED", "1") != "0"
    return axis + "v" if chunked else axis


class AxialAttentionFunction(torch.autograd.Function):
    """Forward and backward of axial attention along ``axis`` on the C kernel (q already scaled).

    q, k: ``(B, d_q, H, W)``; v: ``(B, d_v, H, W)``; R: the relative term of every (query, key)
    pair of the axis (length L), in the layout of the loops chosen by ``rows``:

    * ``rows=False`` (loops over the maps' contiguous columns): ``(d_q, L, L)``, ``R[e, i, j]``
      for query i and key j along the height, ``R[e, y, x]`` for key y and query x along the width;
    * ``rows=True`` (each slice copied channels-last, loops over the channels): ``(heads, L, L,
      d_q / heads)``, ``R[h, query, key, e]`` on both axes.

    Saves the attention weights (``(B * heads, H * W * L)``) for the backward pass."""

    @staticmethod
    def forward(ctx, q, k, v, R, heads, axis, rows):
        lib, (_, sfx) = _library(), _DTYPES[q.dtype]
        B, dq, H, W = q.shape
        dv = v.shape[1]
        d, dvh = dq // heads, dv // heads
        q, k, v, R = (t.contiguous() for t in (q, k, v, R))
        nt = torch.get_num_threads()
        attn = torch.empty(B * heads, H * W * (H if axis == "h" else W), dtype=q.dtype)
        out = torch.empty(B, dv, H, W, dtype=q.dtype)
        ptrs = (q.data_ptr(), k.data_ptr(), R.data_ptr(), v.data_ptr(), attn.data_ptr(), out.data_ptr())
        kernel = "cl" if rows else _columns(axis, W)   # the backward runs the same one
        if rows:
            scratch = torch.empty(nt, H * W * (2 * d + 2 * dvh), dtype=q.dtype)
            getattr(lib, f"axial_cl_forward_{sfx}")(*ptrs, scratch.data_ptr(), B * heads, heads, d, dvh, H, W,
                                                    int(axis == "w"), nt)
        else:
            scratch = torch.empty(nt, 2, W, dtype=q.dtype)
            getattr(lib, f"axial_{kernel}_forward_{sfx}")(*ptrs, scratch.data_ptr(), B * heads, heads, d, dvh, H, W,
                                                          nt)
        ctx.save_for_backward(q, k, v, R, attn)
        ctx.heads, ctx.axis, ctx.kernel = heads, axis, kernel
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, R, attn = ctx.saved_tensors
        lib, (_, sfx) = _library(), _DTYPES[q.dtype]
        heads, axis, kernel = ctx.heads, ctx.axis, ctx.kernel
        B, dq, H, W = q.shape
        dv, L = v.shape[1], (H if axis == "h" else W)
        d, dvh = dq // heads, dv // heads
        nt = torch.get_num_threads()
        go = grad_out.contiguous()
        g_q, g_k, g_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        g_R = torch.empty(B, *R.shape, dtype=q.dtype)   # per image, summed below
        ptrs = (go.data_ptr(), attn.data_ptr(), q.data_ptr(), k.data_ptr(), R.data_ptr(), v.data_ptr(),
                g_q.data_ptr(), g_k.data_ptr(), g_v.data_ptr(), g_R.data_ptr())
        if kernel == "cl":
            scratch = torch.empty(nt, H * W * (4 * d + 3 * dvh) + L, dtype=q.dtype)
            getattr(lib, f"axial_cl_backward_{sfx}")(*ptrs, scratch.data_ptr(), B * heads, heads, d, dvh, H, W,
                                                     int(axis == "w"), nt)
        else:
            scratch = torch.empty(nt, (H * L * W if kernel.endswith("v") else L * W) + W, dtype=q.dtype)
            getattr(lib, f"axial_{kernel}_backward_{sfx}")(*ptrs, scratch.data_ptr(), B * heads, heads, d, dvh, H, W,
                                                         nt)
        return g_q, g_k, g_v, g_R.sum(0), None, None, None


__all__ = ["AxialAttentionFunction", "LocalAttentionFunction", "available", "supports"]
