"""The Lite-Transformer layer of IT-NAS (Sec. 3.2-3.3): one post-LN encoder layer over
``[IT, O_1 .. O_n]`` whose output is the Indicator Token's output token, a feature map.

The design, its departures from the paper's literal ``d = c*h*w`` dense projections and the
evidence for them are in :mod:`attnas.strategies.itnas` and ``docs/methods/itnas.md``.  This
module is the arithmetic only:

* token descriptor ``phi(T) = [P(T), S_1(T) .. S_s(T), R(T)]`` (each per channel): the spatial
  mean ``P``, the projections ``S_r(T) = <T_c, B_r> / hw`` of every channel onto ``s`` learned
  spatial patterns ``B_r`` (h x w, initialised to the lowest non-constant 2-D cosine modes)
  and the spatial RMS ``R``.  ``P`` and ``S_r`` are linear in ``vec(T)``: together with the dense
  ``W_k`` on top they are a separable (channel x space) factorisation of the paper's
  ``W_k vec(T)``, so two maps with equal per-channel moments but different spatial content get
  different keys;
* ``q = W_q phi(T_0)`` (the IT, a constant map ``it + p_0``), ``k_j = W_k phi(T_j)``,
  ``a = softmax(q K^T / sqrt(d_k))`` over all n+1 tokens (Eq. 3-4);
* value ``v_j = g_v * T_j + b_v`` (channel-diagonal) for operations and the IT, and ``v_j = 0``
  for a ``none`` candidate: "no operation" contributes nothing, so attention given to it is
  withdrawn from every operation (see ``value_mask``);
* ``X_1 = T_0 + sum_j a_j v_j``; ``Y = LN(X_1)`` over all c*h*w features; FFN on the spatial
  average of ``Y`` broadcast back; ``out = LN(Y + FFN(Y))``.

Every step after the attention is per-(sample, channel) affine in ``X_1``, so the output is
computed exactly as ``A * X_1 + B`` (:class:`_ITLayerFunction`), storing only the candidate
maps for a hand-written backward pass.  Tested against the literal token-by-token
computation, values and gradients (``tests/test_itnas.py``).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnas.errors import ShapeError


def cosine_patterns(count: int, h: int, w: int) -> torch.Tensor:
    """The ``count`` lowest non-constant 2-D DCT-II modes on an h x w grid, each scaled to unit
    mean square (a mode that vanishes on this grid, e.g. any mode of a 1x1 map, stays zero)."""
    modes = sorted(((u, v) for u in range(4) for v in range(4) if (u, v) != (0, 0)),
                   key=lambda uv: (uv[0] + uv[1], uv))[:count]
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    out = []
    for u, v in modes:
        b = torch.cos(math.pi * u * ys)[:, None] * torch.cos(math.pi * v * xs)[None, :]
        ms = b.square().mean()
        out.append(b / ms.sqrt() if ms > 1e-12 else torch.zeros_like(b))
    return torch.stack(out).float() if out else torch.zeros(0, h, w)


class LiteTransformer(nn.Module):
    """One post-LN encoder layer over [IT, candidate tokens] whose output is the IT token.

    ``n`` candidates, token width ``channels``, spatial size ``spatial`` = (h, w) of the maps,
    ``patterns`` learned spatial patterns in the descriptor (module docstring).
    """

    def __init__(self, n: int, channels: int, spatial: tuple[int, int] = (1, 1), patterns: int = 3,
                 qk_dim: int = 0, ffn_ratio: int = 4, eps: float = 1e-5, it_init_std: float = 1.0,
                 pos_init_std: float = 1.0, rms: bool = False, center: bool = True,
                 zero_key: bool = True, value_codes: bool = True, output_norm: str = "post",
                 pos_init: str = "normal") -> None:
        super().__init__()
        if output_norm not in ("post", "none"):
            raise ValueError(f"output_norm must be 'post' or 'none', got {output_norm!r}")
        self.output_norm = output_norm
        c = int(channels)
        dk = int(qk_dim) or c
        hidden = max(1, int(ffn_ratio)) * c
        self.n, self.channels, self.qk_dim, self.eps = n, c, dk, eps
        self.spatial = (int(spatial[0]), int(spatial[1]))
        self.n_patterns = int(patterns)
        self.use_rms = bool(rms)
        self.center = bool(center)
        self.value_codes = bool(value_codes)
        desc_width = c * (self.n_patterns + 1 + int(self.use_rms))
        self.it = nn.Parameter(torch.randn(c) * it_init_std)                 # indicator token
        self.pos = nn.Parameter(torch.randn(n + 1, c) * pos_init_std)        # position codes, 0 = IT
        if pos_init == "orthogonal":
            # rows orthogonal (as far as n+1 <= c allows), each of the norm a normal draw has on
            # average (pos_init_std * sqrt(c)): a code's key term starts uncoupled from the others'
            with torch.no_grad():
                nn.init.orthogonal_(self.pos)
                self.pos.mul_(pos_init_std * math.sqrt(c))
        elif pos_init != "normal":
            raise ValueError(f"pos_init must be 'normal' or 'orthogonal', got {pos_init!r}")
        self.patterns = nn.Parameter(cosine_patterns(self.n_patterns, *self.spatial))  # B_r (s, h, w)
        self.query = nn.Linear(desc_width, dk)                               # on phi(T)
        self.key = nn.Linear(desc_width, dk)
        self.v_scale = nn.Parameter(torch.ones(c))
        self.v_bias = nn.Parameter(torch.zeros(c))
        self.ln1_weight = nn.Parameter(torch.ones(c))
        self.ln1_bias = nn.Parameter(torch.zeros(c))
        self.ffn1 = nn.Linear(c, hidden)
        self.ffn2 = nn.Linear(hidden, c)
        self.ln2_weight = nn.Parameter(torch.ones(c))
        self.ln2_bias = nn.Parameter(torch.zeros(c))
        for lin in (self.query, self.key):
            nn.init.zeros_(lin.bias)
        if zero_key:
            # every candidate starts at the same attention, whatever its (unit-scale) position
            # code: the per-operation term grows from the training loss only
            nn.init.zeros_(self.key.weight)

    # ----- the small (N, c) graph ----------------------------------------------------------
    def descriptors(self, desc, proj, sq, positions):
        """``phi`` of the IT (a constant map) and of the m candidate tokens ``O_i + p_i``
        from the maps' spatial means ``desc`` (N, m, c), pattern projections ``proj``
        (N, m, c, s) and mean squares ``sq`` (N, m, c)."""
        p = self.pos[positions]                                                # (m, c)
        pm = self.patterns.mean((1, 2))                                        # (s,): <1, B_r> / hw
        t0 = self.it + self.pos[0]
        raw = desc
        if self.center:
            # batch-centred content: what is systematic about an operation reaches its key
            # through its position code only; the content term ranks samples
            desc, proj = desc - desc.mean(0, keepdim=True), proj - proj.mean(0, keepdim=True)
        mean = desc + p
        projt = (proj + p[:, :, None] * pm).flatten(-2)                        # (N, m, c*s)
        if not self.use_rms:
            return torch.cat([t0, (t0[:, None] * pm).flatten()]), torch.cat([mean, projt], dim=-1)
        phi0 = torch.cat([t0, (t0[:, None] * pm).flatten(), torch.sqrt(t0.square() + self.eps)])
        rms = torch.sqrt((sq + 2 * p * raw + p.square()).clamp_min(0.0) + self.eps)   # E[(O + p)^2]
        if self.center:
            rms = rms - rms.mean(0, keepdim=True) + torch.sqrt(p.square() + self.eps)
        return phi0, torch.cat([mean, projt, rms], dim=-1)

    def attention(self, desc, proj, sq, positions) -> torch.Tensor:
        """The IT's attention row (Eq. 4), shape (N, m+1): column 0 is the IT itself."""
        phi0, phi = self.descriptors(desc, proj, sq, positions)
        q = self.query(phi0)                                                   # (dk,)
        k = self.key(torch.cat([phi0.expand(desc.shape[0], 1, -1), phi], dim=1))   # (N, m+1, dk)
        return torch.softmax(k.matmul(q) / math.sqrt(self.qk_dim), dim=-1)

    def mixing(self, desc, proj, sq, positions, value_mask):
        """Attention ``a``, the per-candidate value coefficients ``coef`` (N, m, c), the
        constant part ``const`` (N, c) of ``X_1 = T_0 + sum_j a_j v_j`` and its per-channel
        mean ``mean_c`` (N, c): ``X_1 = const + sum_i coef_i * O_i``.  ``value_mask`` (m,) is 0
        for ``none`` candidates (value 0) and 1 for operations."""
        a = self.attention(desc, proj, sq, positions)
        a0, ai = a[:, :1], a[:, 1:] * value_mask
        t0 = self.it + self.pos[0]
        coef = ai.unsqueeze(-1) * self.v_scale                                 # a_i * g_v
        codes = ai.matmul(self.pos[positions]) if self.value_codes else 0.0
        const = t0 + self.v_scale * (a0 * t0 + codes) + self.v_bias * (a0 + ai.sum(1, keepdim=True))
        mean_c = const + (coef * desc).sum(1)
        return a, coef, const, mean_c

    def head(self, mean_c: torch.Tensor, var_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``LN(Y + FFN(Y))`` with ``Y = LN(X_1)`` as ``A * X_1 + B`` per (sample, channel),
        from the per-channel mean and variance of ``X_1``.  ``output_norm="none"`` (a departure,
        see :mod:`attnas.strategies.itnas`): ``X_1 + FFN(P(X_1))``, the mixture's scale kept."""
        if self.output_norm == "none":
            f = self.ffn2(F.gelu(self.ffn1(mean_c)))
            return torch.ones_like(mean_c), f
        alpha1, beta1 = self._ln_affine(mean_c, var_c, self.ln1_weight, self.ln1_bias)
        gap_y = alpha1 * mean_c + beta1                                        # P(Y)
        f = self.ffn2(F.gelu(self.ffn1(gap_y)))                                # FFN, broadcast back
        alpha2, beta2 = self._ln_affine(gap_y + f, alpha1.square() * var_c, self.ln2_weight, self.ln2_bias)
        return alpha2 * alpha1, alpha2 * (beta1 + f) + beta2

    def _ln_affine(self, mean_c, var_c, weight, bias):
        """LN over c*h*w as ``alpha * X + beta`` per (sample, channel), from X's per-channel moments."""
        mu = mean_c.mean(1, keepdim=True)
        var = var_c.mean(1, keepdim=True) + (mean_c - mu).square().mean(1, keepdim=True)
        alpha = weight * torch.rsqrt(var + self.eps)
        return alpha, bias - mu * alpha

    # ----- the layer ----------------------------------------------------------------------
    def forward(self, maps: list[torch.Tensor | None], positions: torch.Tensor,
                shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, attention)``; ``maps[i]`` is the i-th token's candidate output
        (None: a ``none`` candidate, exact zeros and value 0); ``positions`` their indices."""
        if shape[1] != self.channels or tuple(shape[2:]) != self.spatial:
            raise ShapeError(f"Lite-Transformer built for {self.channels} x {self.spatial[0]} x "
                             f"{self.spatial[1]} maps got {tuple(shape[1:])}")
        slots = tuple(i for i, m in enumerate(maps) if m is not None)
        present = [maps[i] for i in slots]
        mask = torch.tensor([1.0 if m is not None else 0.0 for m in maps], device=positions.device,
                            dtype=self.it.dtype)
        params = tuple(self.parameters())
        out, a = _ITLayerFunction.apply(self, positions, mask, slots, tuple(shape), len(present),
                                        *present, *params)
        return out, a


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _kept_in_memory():
    """Saved-tensor hooks that store the layer's small (N, c) graph as it is.  Under activation
    checkpointing the checkpoint's own hooks would pack those tensors too, and each of the two
    ``autograd.grad`` calls of the backward pass would then recompute the whole block again
    (three recomputations of every checkpointed block instead of one; measured: 120 forward
    calls of the 30 full-resolution IT layers of NB201 per step instead of 60).  The graph is
    a few (N, c) tensors, so keeping it costs no memory worth the name."""
    return torch.autograd.graph.saved_tensors_hooks(_same, _same)


def _flat(m: torch.Tensor) -> torch.Tensor:
    """(N, c, h*w) view of a map (either memory layout)."""
    return m.flatten(2)


def _project(m: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``m`` (N, c, h, w) projected on the columns of ``basis`` (h*w, k): (N, c, k), as one
    well-shaped matrix product for either memory layout (a batched product over the strided
    (N, c, h*w) view is ~6x slower on CPU)."""
    N, c, H, W = m.shape
    if m.is_contiguous():
        return m.reshape(N * c, H * W).mm(basis).view(N, c, -1)
    if m.is_contiguous(memory_format=torch.channels_last):
        return torch.matmul(basis.t(), m.permute(0, 2, 3, 1).reshape(N, H * W, c)).transpose(1, 2)
    return _flat(m).matmul(basis)


def _vecdot_hw(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sum over h, w of x * y, shape (N, C)."""
    return torch.linalg.vecdot(x.flatten(2), y.flatten(2))


class _ITLayerFunction(torch.autograd.Function):
    """The Lite-Transformer layer with a memory-lean backward.

    Forward: per map, one small matrix product gives its spatial mean and pattern projections
    and one pass its mean square; the (N, c) graph of :meth:`LiteTransformer.mixing` and
    :meth:`~LiteTransformer.head` runs under autograd; ``D = X_1 - mean_c`` is assembled in one
    buffer and ``out = A * D + (A * mean_c + B)`` written into it.  Saved: the candidate maps
    (needed anyway for the attention gradient) and the small graph -- ``D`` is rebuilt in the
    backward pass.
    """

    @staticmethod
    def forward(ctx, layer: LiteTransformer, positions, value_mask, slots, shape, n_maps, *inputs):
        maps = inputs[:n_maps]
        N, c = shape[0], shape[1]
        HW = shape[2] * shape[3]
        s = layer.n_patterns
        dev, dt = positions.device, layer.it.dtype
        desc = torch.zeros(N, len(positions), c, device=dev, dtype=dt)
        sq = torch.zeros_like(desc)
        proj = torch.zeros(N, len(positions), c, s, device=dev, dtype=dt)
        basis = torch.cat([torch.ones(1, HW, device=dev, dtype=dt),
                           layer.patterns.detach().reshape(s, HW)]).t() / HW     # (hw, s+1)
        for k, m in zip(slots, maps):  # (torch.var_mean over h, w is 10x slower on CPU, torch 2.13)
            r = _project(m, basis)                                             # (N, c, s+1)
            desc[:, k] = r[..., 0]
            proj[:, k] = r[..., 1:]
            if layer.use_rms:
                sq[:, k] = _vecdot_hw(m, m) / HW
        with torch.enable_grad(), _kept_in_memory():
            leaves = [t.requires_grad_(True) for t in (desc, proj, sq)]
            a, coef, const, mean_c = layer.mixing(*leaves, positions, value_mask)
            k0 = const - mean_c                                                # constant part of D
        cf, k0d = coef.detach(), k0.detach()
        D = _assemble(maps, slots, cf, k0d, shape)
        # D = X_1 - mean_c has zero spatial mean by construction (k0 = const - mean_c), so its
        # variance is its mean square; no pass for the mean
        var_c = (_vecdot_hw(D, D) / HW).clamp_min(0.0)
        with torch.enable_grad(), _kept_in_memory():
            var_leaf = var_c.requires_grad_(True)
            A, B = layer.head(mean_c, var_leaf)
            B1 = A * mean_c + B                                                # out = A * D + B1
        out = D.mul_(A.detach().view(N, c, 1, 1)).add_(B1.detach().view(N, c, 1, 1))
        ctx.save_for_backward(*maps)
        ctx.graph = (leaves, var_leaf, coef, k0, A, B1)
        ctx.meta = (layer, slots, shape, inputs[n_maps:])
        a_out = a.detach()
        ctx.mark_non_differentiable(a_out)
        return out, a_out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor, _ga: torch.Tensor):
        maps = ctx.saved_tensors
        (desc_leaf, proj_leaf, sq_leaf), var_leaf, coef, k0, A, B1 = ctx.graph
        layer, slots, shape, params = ctx.meta
        N, c, H, W = shape
        HW = H * W
        trained = [i for i, p in enumerate(params) if p.requires_grad]
        cf = coef.detach()
        D = _assemble(maps, slots, cf, k0.detach(), shape)
        # the incoming gradient in D's layout (channels-last networks): no mixed-layout passes
        nhwc = D.dim() == 4 and D.is_contiguous(memory_format=torch.channels_last) and not D.is_contiguous()
        g = g.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)
        g_A = _vecdot_hw(g, D)
        g_B1 = g.sum((2, 3))
        if layer.output_norm == "none":  # the output does not depend on the variance; A = 1
            g_var = torch.zeros_like(var_leaf)
        else:
            (g_var,) = torch.autograd.grad((A, B1), (var_leaf,), (g_A, g_B1), retain_graph=True)
        # G = dL/dD: through out = A*D + B1 and through var_c = Var_hw(D)
        sc = (2.0 / HW) * g_var
        G = D.mul_(sc.view(N, c, 1, 1)).addcmul_(g, A.detach().view(N, c, 1, 1))
        g_coef = torch.zeros_like(cf)
        for k, m in zip(slots, maps):
            g_coef[:, k] = _vecdot_hw(G, m)
        g_k0 = G.sum((2, 3))
        outs = [(t, gt) for t, gt in ((A, g_A), (B1, g_B1), (coef, g_coef), (k0, g_k0)) if t.requires_grad]
        grads = torch.autograd.grad([t for t, _ in outs], (desc_leaf, proj_leaf, sq_leaf, *(params[i] for i in trained)),
                                    [gt for _, gt in outs], allow_unused=True)
        g_desc, g_proj, g_sq = (torch.zeros_like(t) if gr is None else gr
                                for gr, t in zip(grads[:3], (desc_leaf, proj_leaf, sq_leaf)))
        g_params: list[torch.Tensor | None] = [None] * len(params)
        for i, gp in zip(trained, grads[3:]):  # unused ones (LN weights with output_norm "none"): zeros,
            g_params[i] = torch.zeros_like(params[i]) if gp is None else gp   # so every process syncs alike
        s = layer.n_patterns
        ip = next(i for i, p in enumerate(params) if p is layer.patterns)
        pat = params[ip]
        basis = torch.cat([torch.ones(1, HW, device=g.device, dtype=g.dtype),
                           pat.detach().reshape(s, HW)]) / HW                   # (s+1, hw)
        g_pat = torch.zeros(s, HW, device=g.device, dtype=g.dtype) if s and pat.requires_grad else None
        g_maps = []
        for k, m in zip(slots, maps):
            # through the mean and the pattern projections: sum_r g_r * B_r / hw (+ g_P / hw),
            # one matrix product that writes the map, then the value path added in place
            coeffs = torch.cat([g_desc[:, k, :, None], g_proj[:, k]], -1)          # (N, c, s+1)
            if nhwc:
                gm = basis.t().matmul(coeffs.transpose(1, 2)).view(N, H, W, c).permute(0, 3, 1, 2)
            else:
                gm = coeffs.matmul(basis).view(N, c, H, W)
            gm.addcmul_(G, cf[:, k].view(N, c, 1, 1))
            if layer.use_rms:
                gm.addcmul_(m, (2.0 / HW) * g_sq[:, k].view(N, c, 1, 1))
            g_maps.append(gm)
            if g_pat is not None:
                g_pat += g_proj[:, k].transpose(1, 2).matmul(_flat(m)).sum(0) / HW     # (s, hw)
        if g_pat is not None:
            g_pat = g_pat.view_as(pat)
            g_params[ip] = g_pat if g_params[ip] is None else g_params[ip] + g_pat
        ctx.graph = None
        return (None, None, None, None, None, None, *g_maps, *g_params)


def _assemble(maps, slots, coef: torch.Tensor, k0: torch.Tensor, shape) -> torch.Tensor:
    """``k0 + sum_i coef_i * O_i`` in one new (N, c, h, w) buffer."""
    N, c = shape[0], shape[1]
    if not maps:
        return k0.view(N, c, 1, 1).expand(shape).clone()
    out = None
    for k, m in zip(slots, maps):
        w = coef[:, k].view(N, c, 1, 1)
        out = (m * w).add_(k0.view(N, c, 1, 1)) if out is None else out.addcmul_(m, w)
    return out
