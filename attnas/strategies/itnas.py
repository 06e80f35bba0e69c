"""IT-NAS: architecture selection with an Indicator Token in a Lite-Transformer
(Sec. 3.2-3.3 of the IT-NAS paper).

At every choice point the outputs ``O_1..O_n`` of the n candidate operations are tokens;
an Indicator Token (IT) is prepended, a learned position code is added, and a one-layer
post-LN Lite-Transformer (single-head self-attention and an FFN, each followed by a
residual connection and LayerNorm) runs over the n+1 tokens.  The choice point outputs the
IT's output token, a feature map of the candidates' shape.  The layer's arithmetic is in
:mod:`attnas.ops.lite_transformer`; this module is the method around it.

What the key sees (the paper's ``k = W_k vec(T)``, ``d = c*h*w``)
------------------------------------------------------------------
Because the IT is a constant map, ``q . W_k vec(T_i)`` is one learned linear functional of the
candidate's token: ``<u, O_i> + <u, p_i>``, a template ``u`` matched against the map plus a
per-operation term from the position code.  A dense ``W_k`` over ``c*h*w`` is infeasible at
32x32 (Sec. 3.4), so attnas factorises it (channel x space): the key is a dense map of the
per-channel projections of the token onto the constant pattern (the spatial mean) and
``patterns`` learned spatial patterns (initialised to the lowest 2-D cosine modes).  It is
still linear in ``vec(T)`` and it sees spatial content: two maps with equal per-channel
moments but different layouts get different keys (tested).  Two choices keep the key on
operation quality, both measured on the NAS-Bench-201 proxy of ``docs/benchmarks.md``
(10 epochs, development seeds 10-11, not the reported seeds):

* **No energy term** (``rms=False``).  An earlier attnas version added the per-channel RMS
  to the key; batch-normalised convolutions all have unit RMS, so the key told the
  parametric operations apart only by noise (18 edge instances: attention differences
  <= 0.010) and keyed parameter-free ones on their input's energy.
* **Batch-centred content** (``center=True``).  The content part of every key is computed
  from the token minus its mean over the batch.  The supernet's convolutions end in
  affine-free BatchNorm, so for them this changes little; skip and pooling carry their
  input's non-zero channel means, which gave parameter-free candidates a systematic key
  offset that the attention latched onto in the first epoch (uncentred linear keys: all
  ``avg_pool_3x3``, 49.9 % on the table).  Centred, what is systematic about an
  operation reaches its key only through its position code -- learnt from the training
  loss, like DARTS's alpha in a mono-level step -- and the content term ranks samples.
* **Position codes on the scale of the maps** (``pos_init_std=1``, ViT's codes are on
  the scale of its patch embeddings; the maps here are unit-variance): with 0.02 the
  per-operation term is ~50x smaller and the selection reads differences of +-0.002.
* **The key projection starts at zero** (``zero_key``): with unit-scale position codes a
  random ``W_k`` gives the candidates random initial attention (up to ~0.5 on one of them),
  the favoured one then gets most of the gradient and the choice locks in during the first
  epoch (the first 5-seed run of this design, seed 0: all ``avg_pool_3x3`` from epoch 1,
  49.9 %).  Zero-initialised, every candidate starts at the same attention and the
  per-operation term grows from the training loss only, as DARTS's alpha does from ~0.
* **One SGD for the supernet and the transformer weights** (``transformer_optim="sgd"``,
  Appendix A.3 read literally: "the SGD optimizer ... to train the super-network together
  with Lite-Transformer module"), in one mono-level step (Eq. 5).  ``"adam"`` gives the
  transformer weights DARTS's architecture optimizer (Sec. 3.3's "settings same as DARTS"
  read the other way): on the development seeds it was worse on seed 0 (the attention locked
  onto ``avg_pool_3x3`` in the first epochs), see ``docs/methods/itnas.md``.
* ``update="bi"`` is a named departure: the transformer weights step on the architecture
  split with the supernet frozen, then the supernet weights on the training split (DARTS's
  alternation); reported beside the mono-level preset in ``docs/benchmarks.md``.

Options the paper is silent on (each measured on the NAS-Bench-201 proxy, every run listed in
``docs/methods/itnas.md``)
-----------------------------------------------------------------------------------------
* ``warmup`` (fraction of the epochs): the first ``round(warmup * epochs)`` epochs train only
  the supernet, under the initial uniform attention; the transformer weights get no gradient.
  Early in training the convolutions are random and the loss favours the parameter-free
  candidates, whose outputs carry the input: without a warm-up the attention leans towards
  ``avg_pool_3x3`` in the first epoch on some seeds and keeps it (seed 3: all pooling, 70.9 %).
  PC-DARTS warms up 15 of 50 epochs (0.3).  During a warm-up no per-epoch architecture is
  derived (:meth:`ITNASStrategy.derives_after_epoch`).
* ``pos_init="orthogonal"``: the position codes start orthogonal, each of the norm an i.i.d.
  code has on average.  In the paper's ``d = c*h*w`` dimensions random codes are nearly
  orthogonal; in the factorised key they live in ``c`` (8-64) dimensions, where i.i.d. codes
  couple the candidates: a gradient step that favours one candidate moves the others' logits
  by up to its own amount (tested: orthogonal codes move only its own).
* ``output_norm="none"``: no LayerNorm on the layer's output (``X_1 + FFN(P(X_1))``), the
  mixture's scale kept as in DARTS.  Measured worse (69.9 % on seed 1); kept as an option for
  the record.

``none`` candidates
-------------------
A ``none`` candidate is "no operation": its map is exact zeros, its key is the key of its
position code alone, and its value is 0 (not its position code), so attention given to it is
attention withdrawn from every operation (the output LayerNorm then weighs the remaining
content against the IT's own constant token).  Tested: the output does not depend on the
``none`` token's position code except through the attention, and a choice point whose only
operation is useless noise learns to prefer ``none``.

Where the transformer weights live
----------------------------------
One Lite-Transformer per ChoiceBlock *instance* (``IndicatorMixer``): the paper inserts "the
Lite-Transformer module on each edge", and the token size differs between cells of one type.
The decision for a choice point shared by several cells uses the attention averaged over its
instances.

Chain spaces (one-shot sampled paths)
-------------------------------------
The paper trains chain spaces (ProxylessNAS) SPOS-style, one uniformly sampled path per step
(Appendix A.3).  With ``sampling="uniform"`` (the default for ``layer:<i>`` keys) each step
samples ``sample_k`` distinct candidates per layer and runs only those; the row is then
``[a_0, a_i ...]`` over the IT and the sampled tokens, each with its own position code, so
with ``sample_k=1`` ``a_i = sigmoid(s_i - s_0)`` compares the candidate with the IT's own
score, a reference shared by all candidates.  The preset samples k = 2 (with k = 1 the
NAS-Bench-Macro supernet did not learn; ``docs/benchmarks.md`` has the comparison).

Selection (Eq. 6) and its noise
-------------------------------
The task's evaluation pass over the validation split at the end of every epoch is that
epoch's Eq. 6 pass (armed by :meth:`ITNASStrategy.end_epoch`): eval mode, all candidates, the
IT attention row ``[a_0, a_1..a_n]`` averaged over images and instances, ``argmax a[1:]`` per
choice point (DARTS-like cells: the space's two-inputs-per-node rule on the same scores).  So
the per-epoch trajectory (Fig. 2) uses the same selection as the final result, which is one
more pass over the same split after the last epoch.  :meth:`ITNASStrategy.margins` gives,
per choice point, the winner's margin over the runner-up with a bootstrap over validation
batches (``margin_std``, ``win_rate``); a choice whose winner does not win 95 % of the
resamples is reported as not separated.  All statistics are buffers of the mixers, so they
are checkpointed with the model and a resumed run derives the same architecture.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Sequence

import torch
import torch.nn as nn

from attnas.arch import Architecture
from attnas.errors import ConfigError
from attnas.ops.lite_transformer import LiteTransformer
from attnas.spaces.base import ChoiceBlock, ChoicePoint, Mixer
from attnas.strategies.base import (ArchRef, Phase, Strategy, SuperNet, net_params, register_strategy,
                                   weight_optimizer)
from attnas import distributed

IT_TOKEN = "IT"
#: epochs whose Eq. 6 winners the margins compare with the final choice
HISTORY = 5
SAMPLING_MODES = ("auto", "all", "uniform")


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
        #: per validation batch: (attention row summed over its images, image count)
        self.select_batches: list[tuple[torch.Tensor, float]] = []

    def _active(self) -> list[int]:
        state = self.arch.module
        if self.training and state.active:
            return state.active.get(self.key) or list(range(len(self.candidates)))
        return list(range(len(self.candidates)))

    def build_transformer(self, shape, device=None, dtype=None) -> LiteTransformer:
        cfg = self.cfg
        self.transformer = LiteTransformer(len(self.candidates), shape[1], tuple(shape[2:]), cfg.patterns,
                                           cfg.qk_dim, cfg.ffn_ratio, cfg.ln_eps, cfg.it_init_std,
                                           cfg.pos_init_std, cfg.rms, cfg.center,
                                           cfg.zero_key, cfg.value_codes,
                                           cfg.output_norm, cfg.pos_init).to(device=device, dtype=dtype)
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
            self.build_transformer(shape, shape_src.device, shape_src.dtype)
        positions = torch.tensor([i + 1 for i in idx], device=shape_src.device)
        out, a = self.transformer(maps, positions, shape)
        self._record(a.detach(), idx)
        return out

    def _record(self, a: torch.Tensor, idx: list[int]) -> None:
        state = self.arch.module
        pos = torch.tensor([0] + [i + 1 for i in idx], device=self.select_sum.device)
        row = torch.zeros_like(self.select_sum).index_add_(0, pos, a.sum(0).to(self.select_sum.dtype))
        if state.mode == "select" and not self.training:
            # every forward of a selection pass is one validation batch (no recomputation
            # happens without a backward pass); per-batch rows feed the bootstrap of the margins
            self.select_sum += row
            self.select_count.index_add_(0, pos, torch.full((len(pos),), float(a.shape[0]),
                                                            dtype=torch.float64, device=pos.device))
            self.select_batches.append((row, float(a.shape[0])))
            return
        if state.mode != "train" or not self.training or self._recorded_id == state.forward_id:
            return
        self._recorded_id = state.forward_id
        self.train_sum += row
        self.train_count.index_add_(0, pos, torch.full((len(pos),), float(a.shape[0]),
                                                       dtype=torch.float64, device=pos.device))

    def reset(self, which: str) -> None:
        getattr(self, f"{which}_sum").zero_()
        getattr(self, f"{which}_count").zero_()
        if which == "select":
            self.select_batches = []

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
        self.history: list[dict[str, int]] = []
        if int(cfg.ffn_ratio) < 1 or int(cfg.qk_dim) < 0:
            raise ConfigError("itnas options 'ffn_ratio' must be >= 1 and 'qk_dim' >= 0 (0 = token width)")
        if self.sampling == "uniform":   # chain spaces: the paper's one-shot protocol (preset.chain)
            ch = cfg.chain
            self.cfg = cfg = replace(cfg, weights=ch.weights, train_portion=ch.train_portion, sample_k=ch.sample_k,
                                     transformer_ramp=ch.transformer_ramp)
            if int(cfg.sample_k) < 1:
                raise ConfigError(f"itnas option 'chain.sample_k' must be at least 1, got {cfg.sample_k}")
        if cfg.update not in ("mono", "bi"):
            raise ConfigError(f"itnas option 'update' must be 'mono' or 'bi', got {cfg.update!r}")
        if cfg.update == "bi" and cfg.transformer_optim != "adam":
            raise ConfigError("itnas option update='bi' needs transformer_optim='adam' (a separate optimizer)")
        if cfg.transformer_optim not in ("adam", "sgd"):
            raise ConfigError(f"itnas option 'transformer_optim' must be 'adam' or 'sgd', got {cfg.transformer_optim!r}")
        if not 0.0 <= float(cfg.warmup) < 1.0:
            raise ConfigError(f"itnas option 'warmup' (a fraction of the epochs) must be in [0, 1), got {cfg.warmup}")
        self.warmup_epochs = 0  # set from the run's epochs by optimizers()
        if not 0.0 <= float(cfg.transformer_ramp) < 1.0:
            raise ConfigError(f"itnas option 'transformer_ramp' (a fraction of the epochs) must be in [0, 1), "
                              f"got {cfg.transformer_ramp}")
        self.ramp_steps, self.steps_per_epoch, self._ramp = 0, 1, 1.0  # set by optimizers() / begin_step()
        if int(cfg.patterns) < 0 or int(cfg.bootstrap) < 1:
            raise ConfigError("itnas options 'patterns' must be >= 0 and 'bootstrap' >= 1")
        if not (float(cfg.transformer_lr) > 0):
            raise ConfigError(f"itnas option 'transformer_lr' must be positive, got {cfg.transformer_lr}")

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

    def transformer_parameters(self, model: SuperNet) -> list[nn.Parameter]:
        return [p for m in indicator_mixers(model) for p in m.transformer.parameters()]

    def optimizers(self, model: SuperNet, steps_per_epoch: int, epochs: int) -> dict[str, Any]:
        """Mono-level (Eq. 5): supernet and transformer weights are updated from the same
        training batch and the same backward pass.  ``transformer_optim="sgd"``: one SGD for
        both (Appendix A.3 read literally); ``"adam"`` (preset): the Lite-Transformer weights
        -- the selection parameters -- get DARTS's architecture optimizer (Sec. 3.3, "the
        settings same as DARTS"), see the module docstring for the evidence."""
        cfg = self.cfg
        self.warmup_epochs = int(round(float(cfg.warmup) * epochs))
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        # the ramp scales the one SGD's transformer updates (Adam's steps do not scale with the
        # gradient; update="bi" has its own optimizer): it applies to transformer_optim "sgd", mono only
        sgd_mono = cfg.transformer_optim == "sgd" and cfg.update == "mono"
        self.ramp_steps = int(round(float(cfg.transformer_ramp) * epochs)) * self.steps_per_epoch if sgd_mono else 0
        if cfg.transformer_optim == "sgd":
            opt, sched = weight_optimizer(model.net.parameters(), cfg.weights, steps_per_epoch, epochs)
            return {"weights": opt, "schedulers": [sched]}
        opt, sched = weight_optimizer(self.supernet_parameters(model), cfg.weights, steps_per_epoch, epochs)
        t_opt = torch.optim.Adam(self.transformer_parameters(model), lr=cfg.transformer_lr, betas=tuple(cfg.transformer_betas),
                                 weight_decay=cfg.transformer_weight_decay)
        return {"weights": opt, "transformer": t_opt, "schedulers": [sched]}

    # ----- training (Eq. 5) --------------------------------------------------
    def phases(self, epoch: int) -> Sequence[Phase]:
        """``update="mono"`` (the paper, Eq. 5): one training batch, one backward, supernet and
        transformer weights both updated.  During a warm-up epoch the transformer weights are
        frozen (uniform attention).  ``update="bi"`` (a departure, DARTS-style): the
        transformer weights first take a step on the architecture batch with the supernet
        weights frozen, then the supernet weights on the training batch."""
        clip = self.cfg.weights.grad_clip
        supernet = Phase("weights", ("weights",), self.supernet_parameters, clip=clip, sampled=True)
        if self.cfg.update == "bi":
            return (Phase("arch", ("transformer",), self.transformer_parameters, prefix="arch_", sampled=True),
                    supernet)
        if epoch < self.warmup_epochs:
            return (supernet,)
        optims = ("weights",) if self.cfg.transformer_optim == "sgd" else ("weights", "transformer")
        return (Phase("weights", optims, net_params, clip=clip, sampled=True),)

    def begin_step(self, model: SuperNet, epoch: int, step: int) -> None:
        """Training-mode recording, and the candidates each choice point runs in this step
        (all of them, or ``sample_k`` uniformly sampled ones on chain spaces)."""
        if step == 0:
            for m in indicator_mixers(model):
                m.reset("train")
        model.arch.mode = "train"
        model.arch.forward_id += 1
        model.arch.selected.fill_(False)
        t = (epoch - self.warmup_epochs) * self.steps_per_epoch + step  # steps since the warm-up
        self._ramp = min(1.0, (t + 1) / self.ramp_steps) if self.ramp_steps and t >= 0 else 1.0
        if self.sampling == "all":
            self._step_active: dict[str, list[int]] = {}
        else:
            k = int(self.cfg.sample_k)
            self._step_active = {p.key: sorted(self.rng.sample(range(len(p.candidates)), min(k, len(p.candidates))))
                                 for p in self.points}
        model.arch.active = self._step_active

    def after_backward(self, model: SuperNet, phase: Phase, paths) -> None:
        """``transformer_ramp``: the transformer weights' gradients scaled by the ramp (with
        one SGD, the same as a ramp of their learning rate; weight decay is not scaled)."""
        if self._ramp < 1.0:
            for p in self.transformer_parameters(model):
                if p.grad is not None:
                    p.grad.mul_(self._ramp)

    def sample_paths(self, model: SuperNet | None = None) -> list[dict[str, list[int]]]:
        """The step's active candidates (one path, shared by the phases of the step)."""
        return [self._step_active]

    def activate(self, model: SuperNet, path: dict[str, list[int]]) -> None:
        model.arch.active = path

    def end_step(self, model: SuperNet, epoch: int, step: int) -> dict[str, float]:
        model.arch.active = {}
        return {}

    def supernet_parameters(self, model: SuperNet) -> list[nn.Parameter]:
        """The supernet's operation weights (every parameter but the Lite-Transformers')."""
        ids = {id(p) for p in self.transformer_parameters(model)}
        return [p for p in model.net.parameters() if id(p) not in ids]

    # ----- selection (Eq. 6) -------------------------------------------------
    def end_epoch(self, model: SuperNet, opt: dict[str, Any], epoch: int) -> None:
        """Schedulers, then arm the selection recording: the task's evaluation pass over the
        validation split that follows is the epoch's Eq. 6 pass (the per-epoch trajectory
        uses the same selection as the final result, at no extra forward pass)."""
        super().end_epoch(model, opt, epoch)
        self._armed_epoch = epoch
        for m in indicator_mixers(model):
            m.reset("select")
        model.arch.selected.fill_(False)
        model.arch.mode = "select"

    def _finish_selection(self, model: SuperNet) -> None:
        """Close an armed evaluation-pass selection: add up the processes' rows (the task's
        evaluation splits batches over torchrun processes) and go back to training mode."""
        if model.arch.mode != "select":
            return
        model.arch.mode = "train"
        mixers = indicator_mixers(model)
        if distributed.is_distributed() and mixers:
            flat = torch.cat([torch.cat([m.select_sum, m.select_count]) for m in mixers])
            total = torch.tensor(distributed.sum_values(flat.tolist()), dtype=torch.float64)
            off = 0
            for m in mixers:
                n1 = m.select_sum.numel()
                m.select_sum.copy_(total[off:off + n1])
                m.select_count.copy_(total[off + n1:off + 2 * n1])
                off += 2 * n1
        model.arch.selected.fill_(any(bool(m.select_count.sum() > 0) for m in mixers))
        if bool(model.arch.selected) and self.derives_after_epoch(getattr(self, "_armed_epoch", self.warmup_epochs)):
            # the epoch's Eq. 6 winners, for the margins' epoch agreement (not during a warm-up)
            winners = {k: max(range(len(v)), key=v.__getitem__) for k, v in self.scores(model).items()}
            self.history = (self.history + [winners])[-HISTORY:]

    def derives_after_epoch(self, epoch: int) -> bool:
        """No architecture after a warm-up epoch: the attention is still the uniform initial one."""
        return epoch >= self.warmup_epochs

    def _source(self, model: SuperNet) -> str:
        self._finish_selection(model)
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
        last validation pass (each epoch's evaluation, or :meth:`derive` with validation data),
        else from the current epoch's training steps.  A candidate never run scores 0."""
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
                model(x)
                n += len(x)
        finally:
            model.arch.mode = "train"
            model.train(was)
        model.arch.selected.fill_(n > 0)
        return n

    def margins(self, model: SuperNet, resamples: int | None = None) -> dict[str, dict[str, Any]]:
        """Per choice point, the Eq. 6 winner against the runner-up: the margin of their mean
        attention, and its noise from a bootstrap over the validation batches of the last
        selection pass (batches resampled with replacement, ``resamples`` times; the same
        resample for every instance of a shared choice point): ``margin_std`` and ``win_rate``
        (the share of resamples in which the winner still has the larger attention).  The batch
        bootstrap sees validation noise only; training noise shows in ``epoch_agreement``, the
        share of the last :data:`HISTORY` epochs' Eq. 6 passes that picked the same winner.
        ``separated`` is ``win_rate >= 0.95`` and ``epoch_agreement >= 0.8``.  Empty when no
        per-batch rows exist."""
        resamples = int(resamples or self.cfg.bootstrap)
        by_key: dict[str, list[IndicatorMixer]] = {}
        for m in indicator_mixers(model):
            by_key.setdefault(m.key, []).append(m)
        out: dict[str, dict[str, Any]] = {}
        gen = torch.Generator().manual_seed(0)
        for p in self.points:
            ms = [m for m in by_key.get(p.key, []) if m.select_batches]
            if not ms or len(p.candidates) < 2:
                continue
            nb = min(len(m.select_batches) for m in ms)
            rows = torch.stack([torch.stack([r for r, _ in m.select_batches[:nb]]) for m in ms])   # (I, B, n+1)
            counts = torch.tensor([[c for _, c in m.select_batches[:nb]] for m in ms], dtype=torch.float64)
            full = (rows.sum(1) / counts.sum(1, keepdim=True).clamp_min(1)).mean(0)[1:]          # (n,)
            order = torch.argsort(full, descending=True)
            top1, top2 = int(order[0]), int(order[1])
            idx = torch.randint(0, nb, (resamples, nb), generator=gen)
            boot = (rows[:, idx].sum(2) / counts[:, idx].sum(2, keepdim=True).clamp_min(1)).mean(0)[:, 1:]
            diff = boot[:, top1] - boot[:, top2]
            wins = (boot.argmax(1) == top1).double().mean()
            agree = [h[p.key] == top1 for h in self.history if p.key in h]
            agreement = sum(agree) / len(agree) if agree else 1.0
            out[p.key] = {"top1": p.candidates[top1], "top2": p.candidates[top2],
                          "margin": float(full[top1] - full[top2]), "margin_std": float(diff.std()),
                          "win_rate": float(wins), "epoch_agreement": agreement, "epochs_compared": len(agree),
                          "separated": bool(wins >= 0.95 and agreement >= 0.8), "batches": nb}
        return out

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "history": [dict(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.history = [dict(h) for h in state.get("history", [])]

    def derive(self, model: SuperNet, context: Any = None) -> Architecture:
        """Eq. 6 after a validation pass over ``context``; without context, from the epoch's
        evaluation pass over the validation split (armed by :meth:`end_epoch`), or the
        running average of the epoch's training attention when there was none."""
        images = self.select(model, context) if context is not None else 0
        arch = self.space.derive(self.scores(model))
        att = self.attention(model)
        source = self._source(model)
        arch.meta.update({
            "method": self.name,
            "selection": "validation pass (Eq. 6)" if source == "select" else "training running average",
            "selection_images": images if images else int(max((float(m.select_count[0]) for m in
                                                                 indicator_mixers(model)), default=0)),
            "attention": {k: {"tokens": v["tokens"], "mean": [round(a, 6) for a in v["mean"]],
                              "instances": [[round(a, 6) for a in r] for r in v["instances"]]}
                          for k, v in att.items()},
        })
        if images:
            arch.meta["margins"] = self.margins(model)
        return arch
