"""Axial attention's CPU kernel: the maps' lines in the vector lanes (:func:`attnas.ops.trio.axial_attention_1d`).

Axial attention along one axis of length L is, for every line of the map (a column for the
height axis, a row for the width axis) and every head, a small attention problem: L queries, L
keys, d channels per head.  Its products are tiny matrix products (L x d times d x L, then
L x L times L x d_v), many thousands of them per call; batched over the lines by BLAS they ran
at a few GMAC/s, and loops over one line at a time are bound by loads and stores.

This kernel puts the *lines* in the vector lanes: each (head, block of LB lines) task copies its
queries, keys and values into ``[channel][position][lane]`` order (LB = 4 vectors of lanes: 32
float32 / 16 float64 lines), and every product of the operator becomes a matrix product whose
every element is a vector of lanes -- computed by register-blocked micro-kernels (4 x 4 tiles of
lane vectors: 8 vector loads per 16 multiply-adds).  The same code serves both axes: only the
copy differs (the height axis's lines are the image's columns, the width axis's its rows), so
the width axis needs no transposed maps and no special case.  The relative term ``q_i . r_{j-i}``
is a product with broadcast scalars of the table (a lane-vector x broadcast tile), and its
gradient a sum over the lanes, accumulated as vectors per task and summed across lanes once.
The kernel takes the relative table as it is, ``(d_q, 2 span - 1)``: each task builds its
head's clipped ``d x L x L`` table and adds the gradient back to the clipped columns.  With
AVX-512 the products load two lane vectors (a cache line) at a time.

Forward per task: copy q, k, v; logits ``S[i][j] = q_i . (k_j + r_ij)``; softmax over j (glibc's
vector ``exp``); ``out_i = sum_j A[i][j] v_j``; copy back.  Backward: ``G = go . v``,
``g_v``, the softmax backward, ``g_q``, ``g_k`` and ``g_r``, all on the task's lines while they
are in cache.  The attention weights are kept for the backward pass (as the other
implementations do), in the kernel's own ``[head][block][i][j][lane]`` order.  Lines past the
last one (padding of the last block) are zeros and never written back.

Built like the local-attention kernel (:mod:`attnas.ops.ckernel`: system C compiler,
``-O3 -march=native``, OpenMP, cached); without it :func:`available` is False and
:func:`attnas.ops.trio.axial_attention_1d` uses the batched products.  Measurements and how
this design was chosen: ``docs/benchmarks.md``, "Attention operators".
"""
from __future__ import annotations

import ctypes

import torch

from attnas.ops.ckernel import DTYPES as _DTYPES
from attnas.ops.ckernel import CLibrary, instantiate
from attnas.ops.local_kernel import SOFTMAX_MACROS

#: lane vectors per block of lines (NV in the C source; a vector is 32 bytes, VB: AVX2's width,
#: and Zen 4's multiply-add width)
VECTORS_PER_BLOCK = 4

_PRELUDE = SOFTMAX_MACROS + f"""
#define NV {VECTORS_PER_BLOCK}
""" + r"""
#if defined(__AVX512F__) && defined(__AVX512VL__)
#include <immintrin.h>
#endif
#define VB 32
#define NL ((long)(VB / sizeof(T)))
#define LB (NV * NL)
#define VEC T __attribute__((vector_size(VB)))
#define LD(p) ({ VEC ld_; __builtin_memcpy(&ld_, (p), VB); ld_; })
#define ST(p, x) do { VEC st_ = (x); __builtin_memcpy((p), &st_, VB); } while (0)
/* the products' vectors: GV lane vectors (two with AVX-512: a whole cache line per load) */
#if defined(__AVX512F__) && NV % 2 == 0
#define GV 2
#else
#define GV 1
#endif
#define GVEC T __attribute__((vector_size(GV * VB)))
#define GLD(p) ({ GVEC ld_; __builtin_memcpy(&ld_, (p), GV * VB); ld_; })
#define GST(p, x) do { GVEC st_ = (x); __builtin_memcpy((p), &st_, GV * VB); } while (0)
/* keep a loaded vector in a register: GCC otherwise reloads each operand once per use (a memory
   operand of every multiply-add: twice the loads per multiply-add, the loop bound by loads) */
#if defined(__GNUC__) && defined(__AVX__)   /* a 32-byte vector fits one register */
#define IN_REGISTER(x) __asm__("" : "+v"(x))
#else
#define IN_REGISTER(x) ((void)0)
#endif
/* copy m (<= LB) contiguous elements: whole lane vectors, then the rest (inline: memcpy calls
   for these short runs cost more than the copy; hence no loop distribution in pack/unpack) */
#define COPY(dst, src, m, a) { long t_ = 0; \
    for (; t_ + NL <= (m); t_ += NL) ST((dst) + t_, LD((src) + t_) * (a)); \
    if (t_ < (m)) TAIL((dst) + t_, (src) + t_, (m) - t_, a); }
/* a block's runs of consecutive lines (at most LB of them: one per line with 1-wide maps), and
   each lane's line: image limg, offset lpos inside a channel's map */
typedef struct { long n, t0[32], len[32], img[32], pos[32], limg[32], lpos[32], lanes, lstride; } runs_t;
_Static_assert(NV * (VB / sizeof(float)) <= 32, "runs_t holds at most 32 runs: one per line of a block");
/* GCC turns the copies' short loops into memcpy calls, which cost more than these copies */
#if defined(__GNUC__) && !defined(__clang__)
#define NO_MEMCPY_CALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define NO_MEMCPY_CALLS
#endif
/* the relative table's column of query i and key j: j - i clipped to [1 - span, span - 1] */
static inline long rel_column(long i, long j, long span) {
    const long o = j - i < 1 - span ? 1 - span : j - i > span - 1 ? span - 1 : j - i;
    return o + span - 1;
}
#define CASES4(CALL) switch (mr * 8 + nr) { \
    case 33: CALL(4, 1); break; case 34: CALL(4, 2); break; case 35: CALL(4, 3); break; case 36: CALL(4, 4); break; \
    case 25: CALL(3, 1); break; case 26: CALL(3, 2); break; case 27: CALL(3, 3); break; case 28: CALL(3, 4); break; \
    case 17: CALL(2, 1); break; case 18: CALL(2, 2); break; case 19: CALL(2, 3); break; case 20: CALL(2, 4); break; \
    default: CALL(1, 1); break; case 10: CALL(1, 2); break; case 11: CALL(1, 3); break; case 12: CALL(1, 4); break; }
"""

_TEMPLATE = r"""
/* C[m][n] = sum_k A[m][k] B[k][n], every element a vector of NL lanes; strides in elements (T).
   A tile of mr x nr (<= 4 x 4) accumulators per call. */
static inline __attribute__((always_inline)) void lg_tile_S(const int mr, const int nr, long K,
        const T *restrict A, long sam, long sak, const T *restrict B, long sbk, long sbn,
        T *restrict C, long scm, long scn) {
    GVEC c[4][4], a[4];
    _Pragma("GCC unroll 4") for (int m = 0; m < mr; m++)
        _Pragma("GCC unroll 4") for (int n = 0; n < nr; n++) c[m][n] = (GVEC){0};
    for (long k = 0; k < K; k++) {
        _Pragma("GCC unroll 4") for (int m = 0; m < mr; m++) { a[m] = GLD(A + m * sam + k * sak); IN_REGISTER(a[m]); }
        _Pragma("GCC unroll 4") for (int n = 0; n < nr; n++) {
            GVEC bn = GLD(B + k * sbk + n * sbn);
            IN_REGISTER(bn);
            _Pragma("GCC unroll 4") for (int m = 0; m < mr; m++) c[m][n] += a[m] * bn;
        }
    }
    _Pragma("GCC unroll 4") for (int m = 0; m < mr; m++)
        _Pragma("GCC unroll 4") for (int n = 0; n < nr; n++) GST(C + m * scm + n * scn, c[m][n]);
}

/* The lane-batched matrix product on a task's block: every element holds LB lanes (NV vectors);
   strides in elements of a block (multiples of LB). */
static void lgemm_S(long M, long N, long K, const T *A, long sam, long sak, const T *B, long sbk, long sbn,
                    T *C, long scm, long scn) {
    for (long m0 = 0; m0 < M; m0 += 4) {
        const int mr = M - m0 < 4 ? (int)(M - m0) : 4;
        for (long n0 = 0; n0 < N; n0 += 4) {
            const int nr = N - n0 < 4 ? (int)(N - n0) : 4;
            for (long u = 0; u < NV; u += GV) {
                const T *a = A + m0 * sam + u * NL, *b = B + n0 * sbn + u * NL;
                T *c = C + m0 * scm + n0 * scn + u * NL;
                #define CALL(MR, NR) lg_tile_S(MR, NR, K, a, sam, sak, b, sbk, sbn, c, scm, scn)
                CASES4(CALL)
                #undef CALL
            }
        }
    }
}

/* C[n][lanes] += sum_k A[k][lanes] * s[k][n]: lane vectors times broadcast scalars s (the
   relative table); a tile of the block's NV vectors x nr (<= 4) scalars' columns. */
static inline __attribute__((always_inline)) void bc_tile_S(const int nr, long K, const T *restrict A, long sak,
        const T *restrict s, long ssk, long ssn, T *restrict C, long scn) {
    VEC c[4][NV], a[NV];
    _Pragma("GCC unroll 4") for (int n = 0; n < nr; n++)
        _Pragma("GCC unroll 4") for (int u = 0; u < NV; u++) c[n][u] = LD(C + n * scn + u * NL);
    for (long k = 0; k < K; k++) {
        _Pragma("GCC unroll 4") for (int u = 0; u < NV; u++) { a[u] = LD(A + k * sak + u * NL); IN_REGISTER(a[u]); }
        _Pragma("GCC unroll 4") for (int n = 0; n < nr; n++) {
            VEC sv = (VEC){0} + s[k * ssk + n * ssn];
            IN_REGISTER(sv);
            _Pragma("GCC unroll 4") for (int u = 0; u < NV; u++) c[n][u] += a[u] * sv;
        }
    }
    _Pragma("GCC unroll 4") for (int n = 0; n < nr; n++)
        _Pragma("GCC unroll 4") for (int u = 0; u < NV; u++) ST(C + n * scn + u * NL, c[n][u]);
}

static void bcast_S(long N, long K, const T *A, long sak, const T *s, long ssk, long ssn, T *C, long scn) {
    for (long n0 = 0; n0 < N; n0 += 4) {
        const int nr = N - n0 < 4 ? (int)(N - n0) : 4;
        const T *sn = s + n0 * ssn;
        T *c = C + n0 * scn;
        switch (nr) {
            case 4: bc_tile_S(4, K, A, sak, sn, ssk, ssn, c, scn); break;
            case 3: bc_tile_S(3, K, A, sak, sn, ssk, ssn, c, scn); break;
            case 2: bc_tile_S(2, K, A, sak, sn, ssk, ssn, c, scn); break;
            default: bc_tile_S(1, K, A, sak, sn, ssk, ssn, c, scn); break;
        }
    }
}

/* acc[m][n] (one vector each, lanes summed later) += sum over the block's NV vectors of
   A[m][lanes] * B[n][lanes]: the relative table's gradient. */
static inline __attribute__((always_inline)) void vr_tile_S(const int mr, const int nr, const T *restrict A, long sam,
        const T *restrict B, long sbn, T *restrict acc, long sm, long sn) {
    VEC c[4][4], a[4];
    _Pragma("GCC unroll 4") for (int m = 0; m < mr; m++)
        _Pragma("GCC unroll 4") for (int n = 0; n < nr; n++) c[m][n] = LD(acc + m * sm + n * sn);
    _Pragma("GCC unroll 4") for (int u = 0; u < NV; u++) {
        _Pragma("GCC unroll 4") for (int m = 0; m < mr; m++) { a[m] = LD(A + m * sam + u * NL); IN_REGISTER(a[m]); }
        _Pragma("GCC unroll 4") for (int n = 0; n < nr; n++) {
            VEC bn = LD(B + n * sbn + u * NL);
            IN_REGISTER(bn);
            _Pragma("GCC unroll 4") for (int m = 0; m < mr; m++) c[m][n] += a[m] * bn;
        }
    }
    _Pragma("GCC unroll 4") for (int m = 0; m < mr; m++)
        _Pragma("GCC unroll 4") for (int n = 0; n < nr; n++) ST(acc + m * sm + n * sn, c[m][n]);
}

static void vreduce_S(long M, long N, const T *A, long sam, const T *B, long sbn, T *acc, long sm, long sn) {
    for (long m0 = 0; m0 < M; m0 += 4) {
        const int mr = M - m0 < 4 ? (int)(M - m0) : 4;
        for (long n0 = 0; n0 < N; n0 += 4) {
            const int nr = N - n0 < 4 ? (int)(N - n0) : 4;
            const T *a = A + m0 * sam, *b = B + n0 * sbn;
            T *c = acc + m0 * sm + n0 * sn;
            #define CALL(MR, NR) vr_tile_S(MR, NR, a, sam, b, sbn, c, sm, sn)
            CASES4(CALL)
            #undef CALL
        }
    }
}

/* The lines of block blk as runs of consecutive lines inside one image: run u covers lanes
   [t0[u], t0[u] + len[u]) at offset img * (channels per image) * HW + pos inside a channel's
   map, one line to the next lstride apart (height axis, aw = 0: lines are columns, n = b W + x,
   lstride 1; width axis: rows, n = b H + i, lstride W).  Returns the runs; lanes past the last
   line are padding. */
static long runs_S(long blk, long N, long H, long W, long aw, long *t0, long *len, long *img, long *pos) {
    const long per = aw ? H : W;
    long nr = 0;
    for (long t = 0; t < LB && blk * LB + t < N; ) {
        /* to the end of the image's lines or of the block (N is whole images: never past N) */
        const long n = blk * LB + t, b = n / per, r = n % per, m = per - r < LB - t ? per - r : LB - t;
        t0[nr] = t; len[nr] = m; img[nr] = b; pos[nr] = aw ? r * W : r;
        nr++; t += m;
    }
    return nr;
}

/* the last m < NL elements of a copy: one masked load and store where AVX-512 (float32) has them */
#undef TAIL
#if TSIZE == 4 && defined(__AVX512F__) && defined(__AVX512VL__)
#define TAIL(dst, src, m, a) { const __mmask8 k_ = (__mmask8)((1u << (m)) - 1); \
    _mm256_mask_storeu_ps((dst), k_, _mm256_mul_ps(_mm256_maskz_loadu_ps(k_, (src)), _mm256_set1_ps(a))); }
#else
#define TAIL(dst, src, m, a) for (long u_ = 0; u_ < (m); u_++) (dst)[u_] = (src)[u_] * (a);
#endif

/* Along the width, packing is a transpose (a line's positions are contiguous in the maps, a
   position's lines in the block): in float32 with GCC, 8 lines x 8 positions at a time through
   registers (tr8, three rounds of shuffles), the last positions with masked loads and stores
   where AVX-512 has them; elsewhere element by element. */
#undef TR8
#if TSIZE == 4 && defined(__GNUC__) && !defined(__clang__)
#define TR8 1
typedef int v8i_S __attribute__((vector_size(32)));
static inline __attribute__((always_inline)) void tr8_S(VEC *r) {
    const v8i_S lo2 = {0, 8, 1, 9, 4, 12, 5, 13}, hi2 = {2, 10, 3, 11, 6, 14, 7, 15};
    const v8i_S lo4 = {0, 1, 8, 9, 4, 5, 12, 13}, hi4 = {2, 3, 10, 11, 6, 7, 14, 15};
    const v8i_S lo8 = {0, 1, 2, 3, 8, 9, 10, 11}, hi8 = {4, 5, 6, 7, 12, 13, 14, 15};
    VEC t[8], u[8];
    for (int j = 0; j < 8; j += 2) { t[j] = __builtin_shuffle(r[j], r[j + 1], lo2); t[j + 1] = __builtin_shuffle(r[j], r[j + 1], hi2); }
    for (int j = 0; j < 8; j += 4) {
        u[j] = __builtin_shuffle(t[j], t[j + 2], lo4); u[j + 1] = __builtin_shuffle(t[j], t[j + 2], hi4);
        u[j + 2] = __builtin_shuffle(t[j + 1], t[j + 3], lo4); u[j + 3] = __builtin_shuffle(t[j + 1], t[j + 3], hi4);
    }
    for (int j = 0; j < 4; j++) { r[j] = __builtin_shuffle(u[j], u[j + 4], lo8); r[j + 4] = __builtin_shuffle(u[j], u[j + 4], hi8); }
}
#if defined(__AVX512F__) && defined(__AVX512VL__)
#define MLOAD(p, n) ((VEC)_mm256_maskz_loadu_ps((__mmask8)((1u << (n)) - 1), (p)))
#define MSTORE(p, n, x) _mm256_mask_storeu_ps((p), (__mmask8)((1u << (n)) - 1), (__m256)(x))
#endif
#else
#define TR8 0
#endif

/* dst[c][p][t] = channel c, axis position p of line t (0 for padding) of one head's C channels,
   times a (the query's scale).  Height: runs of lines are contiguous in the maps (vector copies);
   width: transposes of 8 lines at a time, wherever in the maps each line is (a block's lines
   span images: 7 rows of a 7 x 7 map, then the next image's).  Channel by channel (running
   through the channels in the innermost loop, to read small maps in memory order, was 5-20 %
   slower). */
NO_MEMCPY_CALLS
static void pack_S(const T *restrict src, T *restrict dst, long C, long Ctot, long L, long HW, long sp,
                   const runs_t *rs, T a) {
    const long lanes = rs->lanes;
    for (long c = 0; c < C; c++) {
        T *dc = dst + c * L * LB;
        long t = 0;
        if (rs->lstride == 1) {
            for (long u = 0; u < rs->n; u++) {
                const T *s = src + rs->img[u] * Ctot * HW + rs->pos[u] + c * HW;
                T *du = dc + rs->t0[u];
                const long m = rs->len[u];
                for (long p = 0; p < L; p++) COPY(du + p * LB, s + p * sp, m, a)
            }
            t = lanes;
        }
#if TR8
        for (; t < lanes; t += 8) {   /* lanes past the last line repeat it (finite), zeroed below */
            const T *row[8];
            VEC r[8];
            for (int j = 0; j < 8; j++) {
                const long l = t + j < lanes ? t + j : lanes - 1;
                row[j] = src + rs->limg[l] * Ctot * HW + rs->lpos[l] + c * HW;
            }
            long p = 0;
            for (; p + 8 <= L; p += 8) {
                for (int j = 0; j < 8; j++) r[j] = LD(row[j] + p) * a;
                tr8_S(r);
                for (int j = 0; j < 8; j++) ST(dc + (p + j) * LB + t, r[j]);
            }
#ifdef MLOAD
            if (p < L) {
                for (int j = 0; j < 8; j++) r[j] = MLOAD(row[j] + p, L - p) * a;
                tr8_S(r);
                for (int j = 0; j < L - p; j++) ST(dc + (p + j) * LB + t, r[j]);
            }
#else
            for (; p < L; p++) for (int j = 0; j < 8; j++) dc[p * LB + t + j] = row[j][p] * a;
#endif
        }
#endif
        for (; t < lanes; t++) {
            const T *line = src + rs->limg[t] * Ctot * HW + rs->lpos[t] + c * HW;
            for (long p = 0; p < L; p++) dc[p * LB + t] = line[p] * a;
        }
        for (long p = 0; p < L; p++) for (long t = lanes; t < LB; t++) dc[p * LB + t] = 0;
    }
}

NO_MEMCPY_CALLS
static void unpack_S(const T *restrict src, T *restrict dst, long C, long Ctot, long L, long HW, long sp,
                     const runs_t *rs, T a) {
    const long lanes = rs->lanes;
    for (long c = 0; c < C; c++) {
        const T *sc = src + c * L * LB;
        long t = 0;
        if (rs->lstride == 1) {
            for (long u = 0; u < rs->n; u++) {
                T *d = dst + rs->img[u] * Ctot * HW + rs->pos[u] + c * HW;
                const T *su = sc + rs->t0[u];
                const long m = rs->len[u];
                for (long p = 0; p < L; p++) COPY(d + p * sp, su + p * LB, m, a)
            }
            t = lanes;
        }
#if TR8
        for (; t < lanes; t += 8) {
            const long nj = lanes - t < 8 ? lanes - t : 8;
            T *row[8];
            VEC r[8];
            for (int j = 0; j < nj; j++) row[j] = dst + rs->limg[t + j] * Ctot * HW + rs->lpos[t + j] + c * HW;
            long p = 0;
            for (; p + 8 <= L; p += 8) {
                for (int j = 0; j < 8; j++) r[j] = LD(sc + (p + j) * LB + t) * a;
                tr8_S(r);
                for (int j = 0; j < nj; j++) ST(row[j] + p, r[j]);
            }
#ifdef MSTORE
            if (p < L) {
                for (int j = 0; j < 8; j++) r[j] = j < L - p ? LD(sc + (p + j) * LB + t) * a : (VEC){0};
                tr8_S(r);
                for (int j = 0; j < nj; j++) MSTORE(row[j] + p, L - p, r[j]);
            }
#else
            for (; p < L; p++) for (int j = 0; j < nj; j++) row[j][p] = sc[p * LB + t + j] * a;
#endif
        }
#endif
        for (; t < lanes; t++) {
            T *line = dst + rs->limg[t] * Ctot * HW + rs->lpos[t] + c * HW;
            for (long p = 0; p < L; p++) line[p] = sc[p * LB + t] * a;
        }
    }
}
#undef MLOAD
#undef MSTORE

static void block_runs_S(runs_t *rs, long blk, long N, long H, long W, long aw) {
    rs->n = runs_S(blk, N, H, W, aw, rs->t0, rs->len, rs->img, rs->pos);
    rs->lanes = rs->n ? rs->t0[rs->n - 1] + rs->len[rs->n - 1] : 0;
    rs->lstride = aw ? W : 1;
    for (long u = 0; u < rs->n; u++)
        for (long t = 0; t < rs->len[u]; t++) {
            rs->limg[rs->t0[u] + t] = rs->img[u];
            rs->lpos[rs->t0[u] + t] = rs->pos[u] + t * rs->lstride;
        }
}

long axial_lanes_block_S(void) { return LB; }

/* scratch elements per thread of the forward and backward passes (the Python side allocates
   threads x this; the passes below carve it up in the same order) */
long axial_lanes_forward_scratch_S(long d, long dv, long L) { return dv * L * LB + 2 * LB + d * L * L; }
long axial_lanes_backward_scratch_S(long d, long dv, long L) {
    return 2 * (d + dv) * L * LB + L * L * LB + LB + d * (2 * L - 1) * NL + d * L * L;
}

/* one head's d x L x L table of relative terms, R[e][i][j] = rel[e][rel_column(i, j, span)],
   from rel (heads d, 2 span - 1) */
static void rtable_S(const T *restrict rel, T *restrict R, long d, long L, long span) {
    for (long e = 0; e < d; e++)
        for (long i = 0; i < L; i++)
            for (long j = 0; j < L; j++) R[(e * L + i) * L + j] = rel[e * (2 * span - 1) + rel_column(i, j, span)];
}

/* q, k (B, heads d, H, W) (q scaled by scale while packed); v, out (B, heads dv, H, W); rel (heads d, 2 span - 1);
   keep: attn (heads, nb, L, L, LB) and packed (heads, nb, 2 d + dv, L, LB), each block's
   attention weights and q, k, v in the lanes' order, kept for the backward pass; else (no
   backward pass) one block of each per thread.  Tasks = (head, group of blocks); scratch per
   thread axial_lanes_forward_scratch_S. */
void axial_lanes_forward_S(const T *restrict q, const T *restrict k, const T *restrict rel, const T *restrict v,
                           T *restrict attn, T *restrict packed, T *restrict out, T *restrict scratch,
                           long B, long heads, long d, long dv, long H, long W, long aw, long span, long groups,
                           long keep, T scale, int nt) {
    const long HW = H * W, L = aw ? W : H, N = B * (aw ? H : W), nb = (N + LB - 1) / LB, sp = aw ? 1 : W;
    #pragma omp parallel for num_threads(nt) schedule(dynamic)
    for (long task = 0; task < heads * groups; task++) {
        const long hd = task / groups, g = task % groups;
        T *Op = scratch + THREAD * axial_lanes_forward_scratch_S(d, dv, L), *mx = Op + dv * L * LB, *sum = mx + LB;
        T *Rh = sum + LB;
        runs_t rs;
        rtable_S(rel + hd * d * (2 * span - 1), Rh, d, L, span);
        for (long blk = g * nb / groups; blk < (g + 1) * nb / groups; blk++) {
            const long slot = keep ? hd * nb + blk : THREAD;
            T *A = attn + slot * L * L * LB;   /* [i][j][t] */
            T *Qp = packed + slot * (2 * d + dv) * L * LB, *Kp = Qp + d * L * LB, *Vp = Kp + d * L * LB;
            block_runs_S(&rs, blk, N, H, W, aw);
            pack_S(q + hd * d * HW, Qp, d, heads * d, L, HW, sp, &rs, scale);
            pack_S(k + hd * d * HW, Kp, d, heads * d, L, HW, sp, &rs, 1);
            pack_S(v + hd * dv * HW, Vp, dv, heads * dv, L, HW, sp, &rs, 1);
            /* S[i][j] = q_i . k_j, then += q_i . r_ij */
            lgemm_S(L, L, d, Qp, LB, L * LB, Kp, L * LB, LB, A, L * LB, LB);
            for (long i = 0; i < L; i++)
                bcast_S(L, d, Qp + i * LB, L * LB, Rh + i * L, L * L, 1, A + i * L * LB, LB);
            for (long i = 0; i < L; i++) SOFTMAX(A + i * L * LB, L, LB, mx, sum)
            /* out[c][i] = sum_j v[c][j] A[i][j] */
            lgemm_S(dv, L, L, Vp, L * LB, LB, A, LB, L * LB, Op, L * LB, LB);
            unpack_S(Op, out + hd * dv * HW, dv, heads * dv, L, HW, sp, &rs, 1);
        }
    }
}

/* packed, attn: the forward's; g_q is scaled by scale when written; g_rel (groups, heads d, 2 span - 1):
   per group of blocks, summed by the caller.  Scratch per thread axial_lanes_backward_scratch_S. */
void axial_lanes_backward_S(const T *restrict go, const T *restrict attn, const T *restrict packed,
                            const T *restrict rel, T *restrict g_q, T *restrict g_k,
                            T *restrict g_v, T *restrict g_rel, T *restrict scratch,
                            long B, long heads, long d, long dv, long H, long W, long aw, long span, long groups,
                            T scale, int nt) {
    const long HW = H * W, L = aw ? W : H, N = B * (aw ? H : W), nb = (N + LB - 1) / LB, sp = aw ? 1 : W;
    const long no = 2 * L - 1, nr = 2 * span - 1;   /* offsets j - i along the axis; the table's columns */
    const long per = axial_lanes_backward_scratch_S(d, dv, L);
    #pragma omp parallel for num_threads(nt) schedule(dynamic)
    for (long task = 0; task < heads * groups; task++) {
        const long hd = task / groups, g = task % groups;
        T *GQp = scratch + THREAD * per, *GKp = GQp + d * L * LB;
        T *GOp = GKp + d * L * LB, *GVp = GOp + dv * L * LB, *G = GVp + dv * L * LB;
        T *dot = G + L * L * LB, *gRo = dot + LB;           /* gRo: [e][offset + L - 1] vectors */
        T *Rh = gRo + d * no * NL, *gr = g_rel + (g * heads + hd) * d * nr;
        runs_t rs;
        rtable_S(rel + hd * d * nr, Rh, d, L, span);
        for (long x = 0; x < d * no * NL; x++) gRo[x] = 0;
        for (long blk = g * nb / groups; blk < (g + 1) * nb / groups; blk++) {
            const T *A = attn + (hd * nb + blk) * L * L * LB;
            const T *Qp = packed + (hd * nb + blk) * (2 * d + dv) * L * LB, *Kp = Qp + d * L * LB, *Vp = Kp + d * L * LB;
            block_runs_S(&rs, blk, N, H, W, aw);
            pack_S(go + hd * dv * HW, GOp, dv, heads * dv, L, HW, sp, &rs, 1);
            /* G[i][j] = go_i . v_j;  g_v[c][j] = sum_i go[c][i] A[i][j] */
            lgemm_S(L, L, dv, GOp, LB, L * LB, Vp, L * LB, LB, G, L * LB, LB);
            lgemm_S(dv, L, L, GOp, L * LB, LB, A, L * LB, LB, GVp, L * LB, LB);
            for (long i = 0; i < L; i++) SOFTMAX_BACK(A + i * L * LB, G + i * L * LB, L, LB, dot)
            /* g_q[e][i] = sum_j k[e][j] GS[i][j] + sum_j GS[i][j] r_ij;  g_k[e][j] = sum_i q[e][i] GS[i][j] */
            lgemm_S(d, L, L, Kp, L * LB, LB, G, LB, L * LB, GQp, L * LB, LB);
            for (long i = 0; i < L; i++)
                bcast_S(d, L, G + i * L * LB, LB, Rh + i * L, 1, L * L, GQp + i * LB, L * LB);
            lgemm_S(d, L, L, Qp, L * LB, LB, G, L * LB, LB, GKp, L * LB, LB);
            /* g_r[e][j - i] += sum over lines q[e][i] GS[i][j]: row i's keys land on offsets 0 - i ... L - 1 - i */
            for (long i = 0; i < L; i++)
                vreduce_S(d, L, Qp + i * LB, L * LB, G + i * L * LB, LB, gRo + (L - 1 - i) * NL, no * NL, NL);
            unpack_S(GQp, g_q + hd * d * HW, d, heads * d, L, HW, sp, &rs, scale);
            unpack_S(GKp, g_k + hd * d * HW, d, heads * d, L, HW, sp, &rs, 1);
            unpack_S(GVp, g_v + hd * dv * HW, dv, heads * dv, L, HW, sp, &rs, 1);
        }
        /* the lanes' sums, each offset added to its clipped column */
        for (long x = 0; x < d * nr; x++) gr[x] = 0;
        for (long e = 0; e < d; e++)
            for (long o = 0; o < no; o++) {
                const T *v = gRo + (e * no + o) * NL;
                T s = 0;
                for (long t = 0; t < NL; t++) s += v[t];
                gr[e * nr + rel_column(L - 1, o, span)] += s;
            }
    }
}
"""


def _declare(lib: ctypes.CDLL) -> None:
    P, L, I = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    for (_, suffix), scale in zip(_DTYPES.values(), (ctypes.c_float, ctypes.c_double)):
        getattr(lib, f"axial_lanes_block_{suffix}").restype = L
        for which in ("forward", "backward"):
            fn = getattr(lib, f"axial_lanes_{which}_scratch_{suffix}")
            fn.argtypes, fn.restype = [L] * 3, L
        getattr(lib, f"axial_lanes_forward_{suffix}").argtypes = [P] * 8 + [L] * 10 + [scale, I]
        getattr(lib, f"axial_lanes_backward_{suffix}").argtypes = [P] * 9 + [L] * 9 + [scale, I]


LIBRARY = CLibrary("trio_axial", lambda: instantiate(_TEMPLATE, _PRELUDE), _declare,
                   "ATTNAS_LOCAL_KERNEL", "axial-attention C kernel")


def available() -> bool:
    """True when the kernel is enabled (``ATTNAS_LOCAL_KERNEL`` unset or not ``0``) and built."""
    return LIBRARY.available()


def _geometry(shape: torch.Size, heads: int, axis: str, lib: ctypes.CDLL, sfx: str) -> tuple[int, int, int, int]:
    """(axis length L, lines per block LB, blocks per head, groups of blocks per head)."""
    B, _, H, W = shape
    L, lines = (W, B * H) if axis == "w" else (H, B * W)
    lb = getattr(lib, f"axial_lanes_block_{sfx}")()
    nb = -(-lines // lb)
    return L, lb, nb, _groups(heads, nb, torch.get_num_threads())


class AxialLanesFunction(torch.autograd.Function):
    """Forward and backward of axial attention along ``axis`` (q scaled by ``d ** -0.5`` inside,
    d = channels per head).

    q, k: ``(B, d_q, H, W)``; v: ``(B, d_v, H, W)``; rel: ``(d_q, 2 span - 1)``, the relative
    term of query i and key j along the axis is ``rel[:, clip(j - i, 1 - span, span - 1) + span -
    1]`` (both axes; the kernel builds each head's table and folds its gradient back).  With
    ``keep`` (a backward pass will follow) it saves the attention weights, ``(heads, blocks, L * L
    * LB)``, and the copies of q, k, v in the lanes' order (as large as q, k, v, padded to whole
    blocks); without, one block of each per thread.  Differentiable once (``once_differentiable``),
    like the local-attention kernel: a second-order gradient needs ``ATTNAS_AXIAL=products``."""

    @staticmethod
    def forward(ctx, q, k, v, rel, heads, axis, keep=True):
        lib, (_, sfx) = LIBRARY.get(), _DTYPES[q.dtype]
        B, dq, H, W = q.shape
        dv = v.shape[1]
        d, dvh = dq // heads, dv // heads
        span = (rel.shape[1] + 1) // 2
        q, k, v, rel = (t.contiguous() for t in (q, k, v, rel))
        L, lb, nb, groups = _geometry(q.shape, heads, axis, lib, sfx)
        nt = torch.get_num_threads()
        slots = (heads, nb) if keep else (nt, 1)
        attn = torch.empty(*slots, L * L * lb, dtype=q.dtype)
        packed = torch.empty(*slots, (2 * d + dvh) * L * lb, dtype=q.dtype)
        out = torch.empty(B, dv, H, W, dtype=q.dtype)
        scratch = torch.empty(nt, getattr(lib, f"axial_lanes_forward_scratch_{sfx}")(d, dvh, L), dtype=q.dtype)
        getattr(lib, f"axial_lanes_forward_{sfx}")(q.data_ptr(), k.data_ptr(), rel.data_ptr(), v.data_ptr(),
                                                   attn.data_ptr(), packed.data_ptr(), out.data_ptr(),
                                                   scratch.data_ptr(), B, heads, d, dvh, H, W, int(axis == "w"),
                                                   span, groups, int(keep), d ** -0.5, nt)
        if keep:
            ctx.save_for_backward(packed, rel, attn)
        ctx.heads, ctx.axis, ctx.shape, ctx.dv = heads, axis, q.shape, dv
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        packed, rel, attn = ctx.saved_tensors
        dtype = packed.dtype
        lib, (_, sfx) = LIBRARY.get(), _DTYPES[dtype]
        heads, axis, (B, dq, H, W), dv = ctx.heads, ctx.axis, ctx.shape, ctx.dv
        d, dvh = dq // heads, dv // heads
        span = (rel.shape[1] + 1) // 2
        L, lb, nb, groups = _geometry(ctx.shape, heads, axis, lib, sfx)
        nt = torch.get_num_threads()
        go = grad_out.contiguous()
        g_q, g_k = (torch.empty(B, dq, H, W, dtype=dtype) for _ in range(2))
        g_v = torch.empty(B, dv, H, W, dtype=dtype)
        g_rel = torch.empty(groups, *rel.shape, dtype=dtype)
        scratch = torch.empty(nt, getattr(lib, f"axial_lanes_backward_scratch_{sfx}")(d, dvh, L), dtype=dtype)
        getattr(lib, f"axial_lanes_backward_{sfx}")(go.data_ptr(), attn.data_ptr(), packed.data_ptr(),
                                                    rel.data_ptr(), g_q.data_ptr(), g_k.data_ptr(), g_v.data_ptr(),
                                                    g_rel.data_ptr(), scratch.data_ptr(), B, heads, d, dvh, H, W,
                                                    int(axis == "w"), span, groups, d ** -0.5, nt)
        return g_q, g_k, g_v, g_rel[0] if groups == 1 else g_rel.sum(0), None, None, None


def _groups(heads: int, blocks: int, threads: int) -> int:
    """Groups of blocks per head: at least two tasks per thread, at most one group per block
    (each group accumulates the relative table's gradient once)."""
    return max(1, min(blocks, -(-2 * threads // heads)))


__all__ = ["AxialLanesFunction", "available"]
