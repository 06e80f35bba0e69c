"""IT-NAS: architecture selection with an Indicator Token in a Lite-Transformer
(Sec. 3.2-3.3 of the IT-NAS paper).

At every choice point the outputs ``O_1..O_n`` of the n candidate operations
are tokens; an Indicator Token (IT) is prepended, a learned position encoding
is added, and a one-layer post-LN Lite-Transformer encoder -- single-head
self-attention (Eq. 3) and a feed-forward network, each followed by a
residual connection and layer norm -- runs over the n+1 tokens.  The output
of the choice point is the IT's output token, a feature map of the
candidates' shape, so the next node/layer consumes it like any mixture.

Token embedding and projections (the paper's ``d = c*h*w``, Sec. 3.2)
--------------------------------------------------------------------
A token is a whole feature map, ``T_0 = it + p_0`` (the IT) and
``T_i = O_i + p_i``; ``it`` and the position codes ``p_j`` are per-channel
vectors broadcast over the h x w positions.  Dense d x d projections are
impossible at d = c*h*w (Complexity Analysis, Sec. 3.4), so every linear map of
the layer is a *structured* linear map of the flattened token, chosen so the
layer costs O(n*d + n^2*c + c^2):

* query/key (Eq. 3): ``q = W_q phi(T_0)``, ``k_j = W_k phi(T_j)`` with the
  token descriptor ``phi(T) = [P(T), R(T)]`` -- ``P`` the per-channel spatial
  average (linear, R^d -> R^c) and ``R`` the per-channel spatial RMS -- and
  dense 2c x d_k matrices ``W_q, W_k``.  ``R`` is there because the paper's
  full projection ``W_k vec(T)`` responds to the energy of a map
  (E||W vec(T)||^2 is proportional to ||T||^2 for a random W), while the
  average of a batch-normalised output is ~0 whatever the operation: with
  ``P`` alone a convolution's token is nearly the ``none`` token (observed in
  a first version, docs/benchmarks.md).  Only the IT's query row is computed
  (in a one-layer encoder the other rows never reach the output).
  ``a = softmax(q K^T / sqrt(d_k))``
  runs over all n+1 tokens, the IT's own key included: ``a_0`` is the IT's
  attention to itself, as in Eq. 6 (the paper's Fig. 9-14 weights sum to
  about 5/6 for n=5, the rest being ``a_0``).
* value: channel-diagonal, ``v_j = g_v * T_j + b_v`` (the value keeps the
  spatial layout, so ``Z_it = sum_j a_j v_j`` (Eq. 4) is a feature map);
  a single head needs no separate output projection (it would fold into g_v).
* residual + LN: ``X_1 = T_0 + Z_it``, ``Y = LN(X_1)`` over all d = c*h*w
  features of a sample (exact LayerNorm statistics) with a per-channel affine.
* FFN: ``F(Y) = B(W_2 GELU(W_1 P(Y) + b_1) + b_2)``: a two-layer MLP whose
  input map is the spatial average and whose output map ``B`` is the
  broadcast back over h x w (hidden width ``ffn_ratio * c``).
* residual + LN: ``out = LN(Y + F(Y))``, per-channel affine.

Because every step after the attention is per-(sample, channel) affine in
``X_1``, the output is computed exactly (not approximated) as
``out = A * X_1 + B`` with ``A, B`` of shape (N, C, 1, 1) obtained from the
per-channel mean (from the descriptors) and variance of ``X_1``
(:class:`_ITLayerFunction`; tested against the literal token-by-token
computation, values and gradients).  Cost per choice point: the candidates'
maps are read for their descriptors, combined once into one buffer, which
becomes the output; the backward pass keeps only the candidates' maps -- which
the attention gradient ``dL/da_i = <dL/dZ, v_i>`` needs, as DARTS' architecture
step needs them for ``dL/dalpha`` -- and rebuilds ``X_1`` from them.  Measured
cost against the DARTS mixture: ``bench/itnas_step_cost.py`` and
``docs/benchmarks.md``.

``none`` candidates output exact zeros: their token is the position code
alone (``phi = [p_i, |p_i|]``), they take part in the attention like any
token, and the mixture skips the zero map.

Where the transformer weights live
----------------------------------
One Lite-Transformer per ChoiceBlock *instance* (``IndicatorMixer``), as the
paper inserts "the Lite-Transformer module on each edge" of the supernet and
the token width differs between cells of one type.  The decision for a
choice point shared by several cells (DARTS normal/reduce cells, the N cells of
a NAS-Bench-201 stage) uses the attention averaged over its instances.  The
transformer weights are parameters of ``model.net`` and are trained with the
supernet weights by the same SGD optimizer on the training split only (Eq. 5,
mono-level: no architecture parameters, no bi-level step; the architecture
half of the split is used only for selection).

Chain spaces (one-shot sampled paths)
-------------------------------------
The paper trains chain spaces (ProxylessNAS) SPOS-style, sampling one path per
step.  With ``sampling="uniform"`` (the default for spaces whose keys are
``layer:<i>``) each step samples ``sample_k`` distinct candidates per choice
point, uniformly, and runs only those; the transformer sees the IT and the
sampled tokens, each with its own position code.  **Default k = 2, not the
paper's single path**: with one sampled candidate the row is
``[a_0, a_i] = softmax(s_0, s_i)`` and the only comparison the IT can learn is
"candidate vs. the IT's own constant value"; on a toy chain with
skip/noise/conv candidates it learns to attend to whichever candidate is
sampled (a_0 -> 0, noise ~ skip ~ conv), so a single path gives the tokens no
ranking signal.  With two sampled candidates both outputs enter the mixture,
the loss gradient moves the weight of the better one up against the worse one,
and over the steps every pair is compared through the same key projection and
position codes, so the scores of all candidates become comparable (pairwise
comparisons, as in a Bradley-Terry model); on the toy chain the IT ranks
conv > skip > noise (``tests/test_itnas.py``).  The cost is two candidate paths
per step instead of one; ``sample_k=1`` gives the literal single path.

Selection (Eq. 6)
-----------------
``derive(model, context=validation batches)`` forwards the whole validation
split once (eval mode, all candidates), averages the IT attention row
``[a_0, a_1..a_n]`` over all images and over the instances of each choice
point, and takes ``argmax a[1:]`` per choice point; for DARTS-like cells the
space's two-inputs-per-node rule ranks an edge by its largest non-``none``
weight ``a_i`` (the raw weight, so the IT's self-attention ``a_0``, like
``none``, counts as attention to nothing).  The per-epoch derivation (no
context; search-trajectory tracking, Fig. 2) uses the running average of the
attention rows of that epoch's training steps: it is free and reflects the
epoch's supernet.  All statistics are buffers of the mixers, so they are
checkpointed with the model and a resumed run derives the same architecture.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnas.arch import Architecture
from attnas.errors import ConfigError, ShapeError
from attnas.spaces.base import ChoiceBlock, ChoicePoint, Mixer
from attnas.strategies.base import ArchRef, Strategy, SuperNet, register_strategy, weight_optimizer
from attnas.training.distributed import sync_grads

IT_TOKEN = "IT"
SAMPLING_MODES = ("auto", "all", "uniform")


class LiteTransformer(nn.Module):
    """One post-LN encoder layer over [IT, candidate tokens] whose output is the IT token.

    ``n`` candidates, token width ``channels`` (the candidates' output
    channels); see the module docstring for the structured projections.
    :meth:`forward` runs the layer through :class:`_ITLayerFunction`, which
    stores only the candidates' maps for the backward pass;
    :meth:`small_graph` is the part that acts on (N, c) vectors.
    """

    def __init__(self, n: int, channels: int, qk_dim: int = 0, ffn_ratio: int = 4,
                 eps: float = 1e-5, it_init_std: float = 1.0, pos_init_std: float = 0.02) -> None:
        super().__init__()
        c = int(channels)
        dk = int(qk_dim) or c
        hidden = max(1, int(ffn_ratio)) * c
        self.n, self.channels, self.qk_dim, self.eps = n, c, dk, eps
        self.it = nn.Parameter(torch.randn(c) * it_init_std)                 # indicator token
        self.pos = nn.Parameter(torch.randn(n + 1, c) * pos_init_std)        # position codes, 0 = IT
        self.query = nn.Linear(2 * c, dk)                                    # on [P(T), R(T)]
        self.key = nn.Linear(2 * c, dk)
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

    def attention(self, desc: torch.Tensor, sq: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The IT's attention row (Eq. 4), shape (N, m+1): column 0 is the IT itself.

        ``desc`` / ``sq`` (N, m, c): spatial mean and mean square of the m candidate maps;
        ``positions`` (m,): their candidate indices + 1 (position 0 is the IT).  A token
        T = O + p is described by ``[P(T), R(T)]``, its per-channel spatial mean and RMS.
        """
        p = self.pos[positions]                                                # (m, c)
        t0 = self.it + self.pos[0]                                             # (c,)
        phi0 = torch.cat([t0, torch.sqrt(t0.square() + self.eps)])             # the IT: a constant map
        mean = desc + p
        rms = torch.sqrt((sq + 2 * p * desc + p.square()).clamp_min(0.0) + self.eps)   # E[(O + p)^2]
        phi = torch.cat([mean, rms], dim=-1)                                   # (N, m, 2c)
        q = self.query(phi0)                                                   # (dk,)
        k = self.key(torch.cat([phi0.expand(desc.shape[0], 1, -1), phi], dim=1))   # (N, m+1, dk)
        return torch.softmax(k.matmul(q) / math.sqrt(self.qk_dim), dim=-1)

    def mixing(self, desc: torch.Tensor, sq: torch.Tensor, positions: torch.Tensor):
        """Attention ``a``, the per-candidate value coefficients ``coef`` (N, m, c), the
        constant part ``const`` (N, c) of ``X_1 = T_0 + sum_j a_j v_j`` (Eq. 4 + residual)
        and its per-channel mean ``mean_c`` (N, c).  ``X_1 = const + sum_i coef_i * O_i``."""
        a = self.attention(desc, sq, positions)
        a0, ai = a[:, :1], a[:, 1:]
        t0 = self.it + self.pos[0]
        coef = ai.unsqueeze(-1) * self.v_scale                                 # a_i * g_v
        const = t0 + self.v_scale * (a0 * t0 + ai.matmul(self.pos[positions])) + self.v_bias
        mean_c = const + (coef * desc).sum(1)
        return a, coef, const, mean_c

    def head(self, mean_c: torch.Tensor, var_c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``LN(Y + FFN(Y))`` with ``Y = LN(X_1)`` as ``A * X_1 + B`` per (sample, channel),
        from the per-channel mean and variance of ``X_1`` (exact: every step is per-channel
        affine in ``X_1`` and the FFN reads ``Y`` through its spatial average)."""
        alpha1, beta1 = self._ln_affine(mean_c, var_c, self.ln1_weight, self.ln1_bias)
        gap_y = alpha1 * mean_c + beta1                                        # P(Y)
        f = self.ffn2(F.gelu(self.ffn1(gap_y)))                                # FFN, broadcast back
        alpha2, beta2 = self._ln_affine(gap_y + f, alpha1.square() * var_c, self.ln2_weight, self.ln2_bias)
        return alpha2 * alpha1, alpha2 * (beta1 + f) + beta2

    def _ln_affine(self, mean_c: torch.Tensor, var_c: torch.Tensor, weight: torch.Tensor,
                   bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """LN over c*h*w as ``alpha * X + beta`` per (sample, channel), from X's per-channel moments."""
        mu = mean_c.mean(1, keepdim=True)
        var = var_c.mean(1, keepdim=True) + (mean_c - mu).square().mean(1, keepdim=True)
        alpha = weight * torch.rsqrt(var + self.eps)
        return alpha, bias - mu * alpha

    def forward(self, maps: list[torch.Tensor | None], positions: torch.Tensor,
                shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """``(output, attention)``; ``maps[i]`` is the i-th token's candidate output
        (None: exact zeros, a ``none`` candidate); ``positions`` their position indices."""
        if shape[1] != self.channels:
            raise ShapeError(f"Lite-Transformer built for {self.channels} channels got {shape[1]}")
        slots = tuple(i for i, m in enumerate(maps) if m is not None)
        present = [maps[i] for i in slots]
        params = tuple(self.parameters())
        out, a = _ITLayerFunction.apply(self, positions, slots, tuple(shape), len(present), *present, *params)
        return out, a


def _vecdot_hw(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """sum over h, w of x * y, shape (N, C)."""
    return torch.linalg.vecdot(x.flatten(2), y.flatten(2))


class _ITLayerFunction(torch.autograd.Function):
    """The Lite-Transformer layer with a memory-lean backward.

    Forward: descriptors ``P(O_i)``; the (N, c) graph of :meth:`LiteTransformer.mixing`
    and :meth:`~LiteTransformer.head` under autograd; ``D = X_1 - mean_c`` assembled
    in one buffer from the maps; ``out = A * D + (A * mean_c + B)`` written into it.
    Saved: the candidate maps (needed anyway for the attention gradient) and the
    small graph -- not ``X_1`` nor any other map; ``D`` is rebuilt in the backward.
    """

    @staticmethod
    def forward(ctx, layer: LiteTransformer, positions: torch.Tensor, slots: tuple[int, ...],
                shape: tuple[int, ...], n_maps: int, *inputs: torch.Tensor):
        maps = inputs[:n_maps]
        N, c = shape[0], shape[1]
        desc = maps[0].new_zeros(N, len(positions), c) if maps else torch.zeros(
            N, len(positions), c, device=positions.device, dtype=layer.it.dtype)
        sq = torch.zeros_like(desc)
        HW = shape[2] * shape[3]
        for s, m in zip(slots, maps):  # (torch.var_mean over h, w is 10x slower on CPU, torch 2.13)
            desc[:, s] = m.mean((2, 3))
            sq[:, s] = _vecdot_hw(m, m) / HW
        with torch.enable_grad():
            desc_leaf = desc.requires_grad_(True)
            sq_leaf = sq.requires_grad_(True)
            a, coef, const, mean_c = layer.mixing(desc_leaf, sq_leaf, positions)
            k0 = const - mean_c                                                # constant part of D
        cf, k0d = coef.detach(), k0.detach()
        D = _assemble(maps, slots, cf, k0d, shape)
        e = D.mean((2, 3))                                                     # ~0 up to rounding
        var_c = (_vecdot_hw(D, D) / HW - e.square()).clamp_min(0.0)
        with torch.enable_grad():
            var_leaf = var_c.requires_grad_(True)
            A, B = layer.head(mean_c, var_leaf)
            B1 = A * mean_c + B                                                # out = A * D + B1
        out = D.mul_(A.detach().view(N, c, 1, 1)).add_(B1.detach().view(N, c, 1, 1))
        ctx.save_for_backward(*maps)
        ctx.graph = (desc_leaf, sq_leaf, var_leaf, coef, k0, A, B1, e)
        ctx.meta = (slots, shape, inputs[n_maps:])
        a_out = a.detach()
        ctx.mark_non_differentiable(a_out)
        return out, a_out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor, _ga: torch.Tensor):
        maps = ctx.saved_tensors
        desc_leaf, sq_leaf, var_leaf, coef, k0, A, B1, e = ctx.graph
        slots, shape, params = ctx.meta
        N, c, H, W = shape
        trained = [i for i, p in enumerate(params) if p.requires_grad]
        cf = coef.detach()
        D = _assemble(maps, slots, cf, k0.detach(), shape)
        # the incoming gradient in D's layout (channels-last networks): no mixed-layout passes
        nhwc = D.dim() == 4 and D.is_contiguous(memory_format=torch.channels_last) and not D.is_contiguous()
        g = g.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)
        g_A = _vecdot_hw(g, D)
        g_B1 = g.sum((2, 3))
        (g_var,) = torch.autograd.grad((A, B1), (var_leaf,), (g_A, g_B1), retain_graph=True)
        # G = dL/dD: through out = A*D + B1 and through var_c = Var_hw(D)
        s = (2.0 / (H * W)) * g_var
        G = D.sub_(e.view(N, c, 1, 1)).mul_(s.view(N, c, 1, 1)).addcmul_(g, A.detach().view(N, c, 1, 1))
        g_coef = torch.zeros_like(cf)
        for s_i, m in zip(slots, maps):
            g_coef[:, s_i] = _vecdot_hw(G, m)
        g_k0 = G.sum((2, 3))
        grads = torch.autograd.grad((A, B1, coef, k0), (desc_leaf, sq_leaf, *(params[i] for i in trained)),
                                    (g_A, g_B1, g_coef, g_k0), allow_unused=True)
        g_desc, g_sq = grads[0], grads[1]
        g_params: list[torch.Tensor | None] = [None] * len(params)
        for i, gp in zip(trained, grads[2:]):
            g_params[i] = gp
        g_maps = [(G * cf[:, s_i].view(N, c, 1, 1))
                  .addcmul_(m, (2.0 / (H * W)) * g_sq[:, s_i].view(N, c, 1, 1))
                  .add_((g_desc[:, s_i] / (H * W)).view(N, c, 1, 1))
                  for s_i, m in zip(slots, maps)]
        ctx.graph = None
        return (None, None, None, None, None, *g_maps, *g_params)


def _assemble(maps, slots, coef: torch.Tensor, k0: torch.Tensor, shape) -> torch.Tensor:
    """``k0 + sum_i coef_i * O_i`` in one new (N, c, h, w) buffer."""
    N, c = shape[0], shape[1]
    if not maps:
        return k0.view(N, c, 1, 1).expand(shape).clone()
    out = None
    for s, m in zip(slots, maps):
        w = coef[:, s].view(N, c, 1, 1)
        out = (m * w).add_(k0.view(N, c, 1, 1)) if out is None else out.addcmul_(m, w)
    return out


class IndicatorState(nn.Module):
    """Strategy state shared by the mixers: which candidates run and what is recorded."""

    def __init__(self) -> None:
        super().__init__()
        #: key -> candidate indices to run while training (empty: all candidates)
        self.active: dict[str, list[int]] = {}
        #: "train": record training rows; "select": record the selection pass; "off"
        self.mode = "train"
        #: id of the forward pass the strategy is running; a mixer records one attention
        #: row per id, so a block recomputed in the backward pass (activation
        #: checkpointing) is not counted twice
        self.forward_id = 0
        self.register_buffer("selected", torch.tensor(False))


class IndicatorMixer(Mixer):
    """A choice point instance combined by a Lite-Transformer and its Indicator Token.

    Buffers ``train_sum/train_count`` (attention rows of the current epoch's
    training steps) and ``select_sum/select_count`` (the selection pass) hold
    per-token sums, so candidates that were not sampled keep a count of 0.
    """

    def __init__(self, point: ChoicePoint, arch: ArchRef, cfg: Any) -> None:
        super().__init__()
        self.key = point.key
        self.candidates = tuple(point.candidates)
        self.arch = arch
        self.cfg = cfg
        self.transformer: LiteTransformer | None = None
        n1 = len(self.candidates) + 1
        for name in ("train_sum", "train_count", "select_sum", "select_count"):
            self.register_buffer(name, torch.zeros(n1, dtype=torch.float64))
        self._recorded_id = -1

    def _active(self) -> list[int]:
        state = self.arch.module
        if self.training and state.active:
            return state.active.get(self.key) or list(range(len(self.candidates)))
        return list(range(len(self.candidates)))

    def build_transformer(self, channels: int, device=None, dtype=None) -> LiteTransformer:
        cfg = self.cfg
        self.transformer = LiteTransformer(len(self.candidates), channels, cfg.qk_dim, cfg.ffn_ratio,
                                           cfg.ln_eps, cfg.it_init_std, cfg.pos_init_std).to(device=device, dtype=dtype)
        return self.transformer

    def forward(self, x: torch.Tensor, block: ChoiceBlock) -> torch.Tensor:
        idx = self._active()
        maps: list[torch.Tensor | None] = []
        shape_src = None
        for i in idx:
            if self.candidates[i] == "none":
                maps.append(None)
            else:
                m = block.ops[i](x)
                maps.append(m)
                shape_src = m
        if shape_src is None:  # only 'none' tokens: ask one for the output shape
            shape_src = block.ops[idx[0]](x)
        shape = shape_src.shape
        if self.transformer is None:
            self.build_transformer(shape[1], shape_src.device, shape_src.dtype)
        positions = torch.tensor([i + 1 for i in idx], device=shape_src.device)
        out, a = self.transformer(maps, positions, shape)
        self._record(a.detach(), idx)
        return out

    def _record(self, a: torch.Tensor, idx: list[int]) -> None:
        state = self.arch.module
        if self._recorded_id == state.forward_id:
            return
        self._recorded_id = state.forward_id
        if state.mode == "select":
            s, c = self.select_sum, self.select_count
        elif state.mode == "train" and self.training:
            s, c = self.train_sum, self.train_count
        else:
            return
        pos = torch.tensor([0] + [i + 1 for i in idx], device=s.device)
        s.index_add_(0, pos, a.sum(0).to(s.dtype))
        c.index_add_(0, pos, torch.full((len(pos),), float(a.shape[0]), dtype=c.dtype, device=c.device))

    def reset(self, which: str) -> None:
        getattr(self, f"{which}_sum").zero_()
        getattr(self, f"{which}_count").zero_()

    def mean_row(self, which: str) -> list[float]:
        """Average attention row ``[a_0, a_1..a_n]``; NaN where a token was never seen."""
        s, c = getattr(self, f"{which}_sum"), getattr(self, f"{which}_count")
        return torch.where(c > 0, s / c.clamp_min(1), torch.full_like(s, float("nan"))).tolist()

    def extra_repr(self) -> str:
        return f"key={self.key!r}, tokens={len(self.candidates) + 1}"


def indicator_mixers(model: nn.Module) -> list[IndicatorMixer]:
    """Every IndicatorMixer of ``model`` in module order."""
    return [m for m in model.modules() if isinstance(m, IndicatorMixer)]


@register_strategy("itnas")
class ITNASStrategy(Strategy):
    """IT-NAS (module docstring): Lite-Transformer mixers, mono-level training, attention selection."""

    preset_name = "itnas"

    def __init__(self, space, options=None) -> None:
        super().__init__(space, options)
        cfg = self.cfg
        if cfg.sampling not in SAMPLING_MODES:
            raise ConfigError(f"itnas option 'sampling' must be one of {list(SAMPLING_MODES)}, got {cfg.sampling!r}")
        if int(cfg.sample_k) < 1:
            raise ConfigError(f"itnas option 'sample_k' must be at least 1, got {cfg.sample_k}")
        if int(cfg.ffn_ratio) < 1 or int(cfg.qk_dim) < 0:
            raise ConfigError("itnas options 'ffn_ratio' must be >= 1 and 'qk_dim' >= 0 (0 = token width)")

    # ----- construction ----------------------------------------------------
    @property
    def sampling(self) -> str:
        """"all" (every candidate every step) or "uniform" (SPOS-style sampled paths)."""
        if self.cfg.sampling != "auto":
            return self.cfg.sampling
        chain = all(p.key.startswith("layer:") for p in self.points)
        return "uniform" if chain else "all"

    def build_arch(self) -> nn.Module:
        return IndicatorState()

    def make_mixer(self, point: ChoicePoint, arch: ArchRef) -> Mixer:
        return IndicatorMixer(point, arch, self.cfg)

    def build(self, num_classes: int, in_channels: int, image_size: int) -> SuperNet:
        """The supernet with every Lite-Transformer sized by one dummy forward pass
        (a token's width is the candidates' output width, known only from the space's
        wiring), so the optimizer and checkpoints see all transformer weights."""
        model = super().build(num_classes, in_channels, image_size)
        was = model.training
        model.arch.mode = "off"
        model.eval()
        with torch.no_grad():
            model(torch.zeros(2, in_channels, image_size, image_size))
        model.train(was)
        model.arch.mode = "train"
        return model

    def optimizers(self, model: SuperNet, steps_per_epoch: int, epochs: int) -> dict[str, Any]:
        """One SGD for supernet and transformer weights (Eq. 5)."""
        opt, sched = weight_optimizer(model.net.parameters(), self.cfg.weights, steps_per_epoch, epochs)
        return {"weights": opt, "schedulers": [sched]}

    # ----- training (Eq. 5) --------------------------------------------------
    def sample_paths(self, model: SuperNet) -> None:
        """Choose the candidates each choice point runs in this step."""
        if self.sampling == "all":
            model.arch.active = {}
            return
        k = int(self.cfg.sample_k)
        model.arch.active = {p.key: sorted(self.rng.sample(range(len(p.candidates)), min(k, len(p.candidates))))
                             for p in self.points}

    def train_step(self, model: SuperNet, opt: dict[str, Any], batch_w, batch_a,
                   epoch: int, step: int) -> dict[str, float]:
        """One mono-level step on a training batch; ``batch_a`` (the selection half) is not used."""
        if step == 0:
            for m in indicator_mixers(model):
                m.reset("train")
        model.arch.mode = "train"
        model.arch.forward_id += 1
        model.arch.selected.fill_(False)
        self.sample_paths(model)
        w_opt = opt["weights"]
        w_opt.zero_grad(set_to_none=True)
        x, y = batch_w
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        sync_grads(model.net.parameters())  # torchrun: average over processes
        nn.utils.clip_grad_norm_(model.net.parameters(), self.cfg.weights.grad_clip)
        w_opt.step()
        model.arch.active = {}
        return {"loss": float(loss.detach()), "acc": float((logits.argmax(1) == y).float().mean())}

    # ----- selection (Eq. 6) -------------------------------------------------
    def _source(self, model: SuperNet) -> str:
        return "select" if bool(model.arch.selected) else "train"

    def attention(self, model: SuperNet, which: str | None = None) -> dict[str, dict[str, Any]]:
        """Raw IT attention per choice point: tokens, the mean row ``[a_0..a_n]`` over
        instances and images, and each instance's row (module order)."""
        which = which or self._source(model)
        rows: dict[str, list[list[float]]] = {}
        for m in indicator_mixers(model):
            rows.setdefault(m.key, []).append(m.mean_row(which))
        out = {}
        for p in self.points:
            inst = rows.get(p.key, [])
            mean = []
            for j in range(len(p.candidates) + 1):
                vals = [r[j] for r in inst if not math.isnan(r[j])]
                mean.append(sum(vals) / len(vals) if vals else float("nan"))
            out[p.key] = {"tokens": [IT_TOKEN, *p.candidates], "mean": mean, "instances": inst}
        return out

    def scores(self, model: SuperNet) -> dict[str, list[float]]:
        """``a[1:]`` per choice point (Eq. 6), averaged over instances and images: from the
        selection pass after :meth:`derive` with validation data, else from the current
        epoch's training steps.  A candidate never run (sampled training) scores 0."""
        att = self.attention(model)
        return {k: [0.0 if math.isnan(v) else v for v in rec["mean"][1:]] for k, rec in att.items()}

    @torch.no_grad()
    def select(self, model: SuperNet, batches) -> int:
        """One pass over ``batches`` (eval mode, all candidates) recording the IT attention."""
        for m in indicator_mixers(model):
            m.reset("select")
        was = model.training
        model.eval()
        model.arch.active = {}
        model.arch.mode = "select"
        n = 0
        try:
            for x, _ in batches:
                model.arch.forward_id += 1
                model(x)
                n += len(x)
        finally:
            model.arch.mode = "train"
            model.train(was)
        model.arch.selected.fill_(n > 0)
        return n

    def derive(self, model: SuperNet, context: Any = None) -> Architecture:
        """Eq. 6 after a validation pass over ``context``; without context, the running
        average of the current epoch's training attention (trajectory tracking)."""
        images = self.select(model, context) if context is not None else 0
        arch = self.space.derive(self.scores(model))
        att = self.attention(model)
        arch.meta.update({
            "method": self.name,
            "selection": "validation pass (Eq. 6)" if images else "training running average",
            "selection_images": images,
            "attention": {k: {"tokens": v["tokens"], "mean": [round(a, 6) for a in v["mean"]],
                              "instances": [[round(a, 6) for a in r] for r in v["instances"]]}
                          for k, v in att.items()},
        })
        return arch
