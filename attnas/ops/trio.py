"""TrioNet's spatial operators (Pi et al., "TrioNet", BMVC 2021, Sec. 3.1): local self-attention,
axial self-attention and the k x k convolution of a ResNet bottleneck.

Each operator exists twice with one implementation of the arithmetic:

* a *functional kernel* (:func:`local_attention`, :func:`axial_attention_1d`) that takes the
  projected queries, keys, values and the relative-position table -- the supernet
  (:mod:`attnas.ops.trio_supernet`) calls it on weight slices;
* a stand-alone module (:class:`LocalSelfAttention2d`, :class:`AxialAttention2d`,
  :class:`ConvOp`) with weights of exactly its size, used by the derived networks and usable
  on its own (``LocalSelfAttention2d(64, 32, 64, heads=8, kernel_size=7)``).

Local self-attention (Eq. 1)::

    y_o = sum_{p in N_mxm(o)} softmax_p(q_o^T k_p + q_o^T r_{p-o}) v_p

multi-head: the d_q query/key channels and the d_v value channels are split into N equal
groups, head n attends with its own d_q/N-dimensional **dot product** q_o^n . k_p^n (not the
element-wise product of some re-implementations), and the heads' outputs are concatenated.
``r`` is a learned table of one d_q vector per offset p - o of the m x m window (Eq. 1 as
written; SASA factorises it into row and column halves -- we keep the full table); head n
uses its d_q/N channels of ``r``.  Choices the paper leaves open (documented here):

* window positions outside the image are *masked out* of the softmax (zero padding would
  let every border pixel attend to zero keys/values);
* queries are scaled by ``1/sqrt(d_q/N)`` (Vaswani et al.); since q = W_Q x this is only a
  reparametrisation of W_Q, so Eq. 1 is unchanged;
* stride 2 (first block of a stage) is attention at the input resolution followed by 2x2
  average pooling, as in SASA and Axial-DeepLab.

Axial attention (Sec. 3.1, Axial-DeepLab without position-sensitive keys/values and without
BN, as the paper states): a height-axis multi-head attention layer followed by a width-axis
one, each global along its axis, each with its own W_Q, W_K, W_V and a learned relative
table ``r`` of shape ``(d_q, 2*span-1)``.  It works at any input size: offsets beyond
``+-(span-1)`` share the outermost entry (clipping, Shaw et al. 2018), so a table sized for
the layout's nominal feature side (e.g. 56 at 224x224 input) also serves 32x32 or larger
inputs; within the nominal side every offset has its own vector.

Costs (:mod:`attnas.profile`: MACs = multiply-accumulates per image, FLOPs = 2 x MACs): the 1x1
projections are ``nn.Conv2d`` and counted by the profiler; the attention itself adds, per
output position of the attended neighbourhood of size n (m^2 or the axis length),
``n * (2 d_q + d_v)`` MACs -- ``q.k``, ``q.r`` and the weighted sum of values -- reported by
the modules' ``extra_macs`` hook (softmax, masking and pooling are not counted, like BN).
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnas.errors import ConfigError, ShapeError
from attnas.ops import axial_kernel, local_kernel
from attnas.ops.primitives import capturing_graph

#: axial attention's implementations: the C kernel with the lines in the vector lanes
#: (:mod:`attnas.ops.axial_kernel`; faster than the batched products at every TrioNet shape and
#: than the column and channel loops it replaced: docs/benchmarks.md, "Attention operators") and
#: the batched matrix products (any device, graph capture).  ``ATTNAS_AXIAL=products`` forces
#: the products (tests, benchmarks).
AXIAL_IMPLS = ("lanes", "products")


def axial_impl() -> str:
    """The implementation :func:`axial_attention_1d` uses on CPU float tensors when the kernel
    is built (``$ATTNAS_AXIAL`` overrides)."""
    forced = os.environ.get("ATTNAS_AXIAL", "auto")
    return forced if forced in AXIAL_IMPLS else "lanes"


def _check_heads(channels: int, heads: int, what: str) -> None:
    if heads < 1 or channels < heads or channels % heads:
        raise ConfigError(f"{what}: {channels} channels cannot be split into {heads} equal heads")


# --------------------------------------------------------------------------- functional kernels


def local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel: torch.Tensor,
                    heads: int) -> torch.Tensor:
    """Multi-head local self-attention of Eq. 1 over an m x m window (m = ``rel.shape[-1]``).

    q, k: ``(B, d_q, H, W)``; v: ``(B, d_v, H, W)``; rel: ``(d_q, m, m)``, entry ``[:, a, b]`` the
    vector of offset ``(a - m//2, b - m//2)``.  Returns ``(B, d_v, H, W)``.

    On CPU float32/float64 tensors this runs the fused C kernel of
    :mod:`attnas.ops.local_kernel` (5.5-11x faster forward + backward at TrioNet's shapes,
    ``bench/attention_ops.py``); elsewhere, or when that kernel cannot be built, the PyTorch
    implementation :class:`_LocalAttention`: offset by offset on shifted views of the
    zero-padded keys and values (m^2 per-head dot products ``q_o . k_{o+delta}``, the softmax
    over the m^2 offsets, the weighted sum of shifted values) with a hand-written backward
    pass -- the arithmetic of an ``unfold`` of the window without materialising the m^2-times
    larger unfolded keys and values.  Both keep only the (B, heads, m^2, H, W) attention
    weights for the backward pass and are tested against a loop reference of Eq. 1.
    """
    B, dq, H, W = q.shape
    m = rel.shape[-1]
    if m % 2 == 0:
        raise ShapeError(f"local attention needs an odd window, got {m}")
    if dq % heads or v.shape[1] % heads:
        raise ShapeError(f"local attention: {dq} query and {v.shape[1]} value channels in {heads} heads")
    q = q * (dq // heads) ** -0.5
    if capturing_graph():
        return _local_attention_graph(q, k, v, rel, heads)  # exported graphs: plain tensor ops
    if local_kernel.supports(q, k, v, rel) and local_kernel.available():
        return local_kernel.LocalAttentionFunction.apply(q, k, v, rel, heads)
    return _LocalAttention.apply(q, k, v, rel, heads)


def _local_attention_graph(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel: torch.Tensor,
                           heads: int) -> torch.Tensor:
    """:class:`_LocalAttention`'s forward without in-place writes or a Python autograd function,
    so TorchScript tracing, ONNX export and ``torch.compile`` can record it (q already scaled)."""
    qh, kp, vp, r, offsets, mask = _windows(q, k, v, rel, heads)
    H, W = q.shape[-2:]
    logits = torch.einsum("bhdxy,hdn->bhnxy", qh, r) + torch.stack(
        [(qh * kp[..., a:a + H, c:c + W]).sum(2) for a, c in offsets], dim=2)
    attn = logits.masked_fill(~mask, float("-inf")).softmax(2)
    out = attn[:, :, 0, None] * vp[..., 0:H, 0:W]
    for n, (a, c) in enumerate(offsets[1:], start=1):
        out = out + attn[:, :, n, None] * vp[..., a:a + H, c:c + W]
    return out.reshape(q.shape[0], v.shape[1], H, W)


def _windows(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel: torch.Tensor, heads: int):
    """Per-head views of the local-attention inputs: ``qh`` (B, h, d_q/h, H, W), the zero-padded
    ``kp`` / ``vp`` (B, h, d/h, H+2p, W+2p), ``r`` (h, d_q/h, m*m), the m*m window offsets and
    the (m*m, H, W) mask of offsets that fall inside the image."""
    B, dq, H, W = q.shape
    dv, m = v.shape[1], rel.shape[-1]
    dqh, dvh, pad = dq // heads, dv // heads, m // 2
    qh = q.reshape(B, heads, dqh, H, W)
    kp = F.pad(k, (pad, pad, pad, pad)).reshape(B, heads, dqh, H + 2 * pad, W + 2 * pad)
    vp = F.pad(v, (pad, pad, pad, pad)).reshape(B, heads, dvh, H + 2 * pad, W + 2 * pad)
    offsets = _offsets(m)
    inside = F.pad(torch.ones(H, W, dtype=torch.bool, device=q.device), (pad, pad, pad, pad))
    mask = torch.stack([inside[a:a + H, c:c + W] for a, c in offsets])      # p inside the image
    return qh, kp, vp, rel.reshape(heads, dqh, m * m), offsets, mask


def _offsets(m: int) -> list[tuple[int, int]]:
    return [(a, c) for a in range(m) for c in range(m)]


class _LocalAttention(torch.autograd.Function):
    """Forward and backward of :func:`local_attention` in PyTorch operations (q already scaled):
    the implementation where the C kernel is not available."""

    @staticmethod
    def forward(ctx, q, k, v, rel, heads):
        B, dq, H, W = q.shape
        dv, m = v.shape[1], rel.shape[-1]
        qh, kp, vp, r, offsets, mask = _windows(q, k, v, rel, heads)
        logits = torch.einsum("bhdxy,hdn->bhnxy", qh, r).contiguous()          # q_o . r_{p-o}
        for n, (a, c) in enumerate(offsets):                                     # + q_o . k_p per head
            logits[:, :, n] += (qh * kp[..., a:a + H, c:c + W]).sum(2)
        attn = logits.masked_fill_(~mask, float("-inf")).softmax(2)
        out = torch.zeros(B, heads, dv // heads, H, W, dtype=v.dtype, device=v.device)
        for n, (a, c) in enumerate(offsets):
            out.addcmul_(attn[:, :, n, None], vp[..., a:a + H, c:c + W])
        ctx.save_for_backward(qh, kp, vp, r, attn)
        ctx.shape = (B, heads, dq, dv, H, W, m, m // 2)
        return out.reshape(B, dv, H, W)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        qh, kp, vp, r, attn = ctx.saved_tensors
        B, heads, dq, dv, H, W, m, pad = ctx.shape
        go = grad_out.reshape(B, heads, dv // heads, H, W)
        offsets = _offsets(m)
        g_attn = torch.empty_like(attn)
        g_vp = torch.zeros_like(vp)
        for n, (a, c) in enumerate(offsets):
            g_attn[:, :, n] = (go * vp[..., a:a + H, c:c + W]).sum(2)
            g_vp[..., a:a + H, c:c + W].addcmul_(attn[:, :, n, None], go)
        g_logits = attn * (g_attn - (attn * g_attn).sum(2, keepdim=True))     # softmax backward
        g_q = torch.einsum("bhnxy,hdn->bhdxy", g_logits, r).contiguous()
        g_kp = torch.zeros_like(kp)
        for n, (a, c) in enumerate(offsets):
            gl = g_logits[:, :, n, None]
            g_q.addcmul_(gl, kp[..., a:a + H, c:c + W])
            g_kp[..., a:a + H, c:c + W].addcmul_(gl, qh)
        g_r = torch.einsum("bhnxy,bhdxy->hdn", g_logits, qh)
        g_k = g_kp[..., pad:pad + H, pad:pad + W].reshape(B, dq, H, W)
        g_v = g_vp[..., pad:pad + H, pad:pad + W].reshape(B, dv, H, W)
        return g_q.reshape(B, dq, H, W), g_k, g_v, g_r.reshape(dq, m, m), None


def relative_index(length: int, span: int, device=None) -> torch.Tensor:
    """``idx[i, j]`` = table column of offset ``j - i`` on an axis of ``length``, offsets clipped
    to ``+-(span-1)``; column ``span - 1`` is offset 0."""
    pos = torch.arange(length, device=device)
    return (pos[None, :] - pos[:, None]).clamp(-(span - 1), span - 1) + (span - 1)


def axial_attention_1d(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel: torch.Tensor,
                       heads: int, axis: str) -> torch.Tensor:
    """Multi-head self-attention along one axis (``"h"`` or ``"w"``), global along it, with the
    relative term ``q_o . r_{p-o}``; ``rel``: ``(d_q, 2*span-1)``.  Shapes as :func:`local_attention`.

    On CPU float32/float64 tensors computed by the C kernel of :mod:`attnas.ops.axial_kernel`
    (which reads the relative term of every (query, key) pair from ``rel``'s clipped columns
    and adds its gradient back to them), elsewhere by the batched matrix products below; both
    tested against a loop reference.  Speed: ``docs/benchmarks.md``, "Attention operators"."""
    B, dq, H, W = q.shape
    dv = v.shape[1]
    if k.shape != q.shape or v.dim() != 4 or v.shape[0] != B or v.shape[2:] != q.shape[2:]:
        raise ShapeError(f"axial attention: q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} "
                         "must share batch and map size (q and k also channels)")
    if heads < 1 or dq % heads or dv % heads or rel.dim() != 2 or rel.shape[0] != dq or rel.shape[1] % 2 == 0:
        raise ShapeError(f"axial attention: {dq} query and {dv} value channels in {heads} heads, "
                         f"relative table {tuple(rel.shape)} (needs ({dq}, 2 span - 1))")
    dqh, dvh = dq // heads, dv // heads
    span = (rel.shape[-1] + 1) // 2
    if axis in ("h", "w") and axial_impl() == "lanes" and not capturing_graph() \
            and local_kernel.supports(q, k, v, rel) and axial_kernel.available():
        keep = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, rel))   # a backward will follow
        return axial_kernel.AxialLanesFunction.apply(q, k, v, rel, heads, axis, keep)
    if axis == "h":   # attend along H, batch over W: (B, W, heads, d, H)
        perm = lambda t, d: t.reshape(B, heads, d, H, W).permute(0, 4, 1, 2, 3)
        length = H
    elif axis == "w":
        perm = lambda t, d: t.reshape(B, heads, d, H, W).permute(0, 3, 1, 2, 4)
        length = W
    else:
        raise ConfigError(f"axial attention axis must be 'h' or 'w', got {axis!r}")
    qa, ka, va = perm(q, dqh) * (dqh ** -0.5), perm(k, dqh), perm(v, dvh)
    idx = relative_index(length, span, q.device)
    r = rel[:, idx].reshape(heads, dqh, length, length)                  # r_{j-i}
    logits = torch.einsum("bshdi,bshdj->bshij", qa, ka) + torch.einsum("bshdi,hdij->bshij", qa, r)
    out = torch.einsum("bshij,bshdj->bshdi", logits.softmax(dim=-1), va)  # (B, S, heads, dvh, L)
    if axis == "h":
        return out.permute(0, 2, 3, 4, 1).reshape(B, dv, H, W)
    return out.permute(0, 2, 3, 1, 4).reshape(B, dv, H, W)


# --------------------------------------------------------------------------- stand-alone modules


def _pool(x: torch.Tensor, stride: int) -> torch.Tensor:
    return F.avg_pool2d(x, stride, stride, ceil_mode=True) if stride > 1 else x


class LocalSelfAttention2d(nn.Module):
    """Stand-alone multi-head local self-attention (Eq. 1): ``in_channels -> v_channels``.

    ``qk_channels`` = d_q, ``v_channels`` = d_out of Eq. 1, ``heads`` = N, ``kernel_size`` = m.
    """

    def __init__(self, in_channels: int, qk_channels: int, v_channels: int, heads: int,
                 kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"local attention window must be odd, got {kernel_size}")
        _check_heads(qk_channels, heads, "local attention query/key")
        _check_heads(v_channels, heads, "local attention value")
        self.heads, self.kernel_size, self.stride = heads, kernel_size, stride
        self.q = nn.Conv2d(in_channels, qk_channels, 1, bias=False)
        self.k = nn.Conv2d(in_channels, qk_channels, 1, bias=False)
        self.v = nn.Conv2d(in_channels, v_channels, 1, bias=False)
        self.rel = nn.Parameter(torch.randn(qk_channels, kernel_size, kernel_size) * qk_channels ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = local_attention(self.q(x), self.k(x), self.v(x), self.rel, self.heads)
        self._hw = (x.shape[-2], x.shape[-1])
        return _pool(y, self.stride)

    def extra_macs(self) -> int:
        """Attention MACs of the last forward, per image (module docstring)."""
        H, W = self._hw
        return H * W * self.kernel_size ** 2 * (2 * self.q.out_channels + self.v.out_channels)


class AxialAttention1d(nn.Module):
    """One axial layer: multi-head attention along ``axis`` (``"h"``/``"w"``) with relative positions."""

    def __init__(self, in_channels: int, qk_channels: int, v_channels: int, heads: int, span: int,
                 axis: str) -> None:
        super().__init__()
        _check_heads(qk_channels, heads, "axial attention query/key")
        _check_heads(v_channels, heads, "axial attention value")
        if span < 1:
            raise ConfigError(f"axial attention span must be >= 1, got {span}")
        if axis not in ("h", "w"):
            raise ConfigError(f"axial attention axis must be 'h' or 'w', got {axis!r}")
        self.heads, self.span, self.axis = heads, span, axis
        self.q = nn.Conv2d(in_channels, qk_channels, 1, bias=False)
        self.k = nn.Conv2d(in_channels, qk_channels, 1, bias=False)
        self.v = nn.Conv2d(in_channels, v_channels, 1, bias=False)
        self.rel = nn.Parameter(torch.randn(qk_channels, 2 * span - 1) * qk_channels ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._hw = (x.shape[-2], x.shape[-1])
        return axial_attention_1d(self.q(x), self.k(x), self.v(x), self.rel, self.heads, self.axis)

    def extra_macs(self) -> int:
        H, W = self._hw
        return H * W * (H if self.axis == "h" else W) * (2 * self.q.out_channels + self.v.out_channels)


class AxialAttention2d(nn.Module):
    """Stand-alone axial attention: height-axis layer then width-axis layer (global along each),
    ``in_channels -> v_channels``; stride by 2x2 average pooling after both."""

    def __init__(self, in_channels: int, qk_channels: int, v_channels: int, heads: int, span: int,
                 stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.height = AxialAttention1d(in_channels, qk_channels, v_channels, heads, span, "h")
        self.width = AxialAttention1d(v_channels, qk_channels, v_channels, heads, span, "w")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _pool(self.width(self.height(x)), self.stride)


class ConvOp(nn.Conv2d):
    """The bottleneck's spatial k x k convolution (stride on the convolution, ResNet v1.5)."""

    def __init__(self, channels: int, kernel_size: int, stride: int = 1) -> None:
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"convolution kernel must be odd, got {kernel_size}")
        super().__init__(channels, channels, kernel_size, stride, kernel_size // 2, bias=False)


def attention_macs(hw: int, neighbours: int, qk: int, v: int) -> int:
    """Attention MACs (module docstring): positions x neighbours x (2 d_q + d_v)."""
    return hw * neighbours * (2 * qk + v)


#: former name of :func:`attention_macs` (it always counted MACs)
attention_flops = attention_macs


__all__ = ["local_attention", "axial_attention_1d", "relative_index", "LocalSelfAttention2d",
           "AxialAttention1d", "AxialAttention2d", "ConvOp", "attention_macs", "attention_flops"]
