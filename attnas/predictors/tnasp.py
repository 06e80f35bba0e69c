"""TNASP: a Transformer-based NAS performance predictor (Lu et al., NeurIPS 2021; slides Sec. 3.1).

Encoder: operation embedding + graph-Laplacian positional encoding (the
slides' contribution; see :mod:`attnas.predictors.encoders` for which
Laplacian and how it becomes a per-token vector) + segment embedding (cell
type, DARTS) -> **3-layer transformer encoder** (multi-head self-attention,
padding masked) -> readout (masked mean over the real tokens, or the
flattened token states) -> **2-layer MLP regressor**.  Trained with MSE on
standardized accuracy (:class:`attnas.predictors.train.NeuralPredictor`).

:class:`TNASPConfig` is the TNASP preset (it lives here, not in
``attnas/presets.py``).  From the slides: 3 encoder layers, a 2-layer MLP
regressor, MSE, Laplacian positional encoding.  Everything else is ours,
chosen so that the full Kendall table (4 predictors x 5 training sizes x 5
seeds x 3 datasets) runs on a shared 2-core CPU, and tuned on NAS-Bench-201
CIFAR-10 with seeds 100-102 only (the benchmark uses seeds 0-4): width 64,
4 heads, feed-forward 128, post-layer-norm, dropout 0.1; readout "auto"
(mean pooling below 300 training architectures, flattened token states from
300 on: flattening overfits 78 architectures but learns 1,563 in a quarter
of the steps; chain spaces, whose token i is layer i in every architecture,
always flatten: on NAS-Bench-Macro at 66 architectures mean pooling gave
0.752 tau and flattening 0.864 on development seeds 10-14, because a chain's
accuracy depends on which layer holds which operation and the mean blurs the
layers together); AdamW (lr 1e-3, weight decay 1e-4), batch 64,
``max(600, 40 epochs)`` steps with cosine decay (the :class:`FitConfig`
schedule that all predictors share).

``none_tokens``: the tokens of unused (``none``) edges are ordinary tokens
(``"keep"``, the default) or are masked like padding, out of attention and
readout (``"mask"``).  On the 214 DARTS genotypes (20 of the 42 tokens are
unused edges) masking helped on development seeds 10-14 (+0.038 tau) but not on
the benchmark seeds 0-4 (-0.014), and it costs 0.03 tau on NAS-Bench-201 at 78
architectures, where the number of ``none`` edges varies and is informative;
it stays an option (docs/benchmarks.md, "TNASP predictor").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from attnas.errors import ConfigError
from attnas.predictors.encoders import ArchEncoder, EncodedBatch
from attnas.predictors.registry import register_predictor
from attnas.predictors.train import FitConfig, NeuralPredictor

#: values of ``TNASPConfig.none_tokens``
NONE_TOKENS = ("keep", "mask")


@dataclass
class TNASPConfig(FitConfig):
    """TNASP preset: network shape, positional encoding and (inherited) optimisation settings."""

    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 3          # slides: 3-layer transformer encoder
    d_ff: int = 128
    dropout: float = 0.1
    mlp_hidden: int = 128      # slides: 2-layer MLP regressor (d_model -> mlp_hidden -> 1)
    pe: str = "laplacian"      # "laplacian" (rows of L), "laplacian_eig", or "none" (ablation)
    readout: str = "auto"      # "mean" over real tokens, "flatten" (all token slots, padding zeroed), or
    flatten_min_train: int = 300  # "auto": mean below this many training architectures, flatten from it
    #                               (always flatten for encoders with positional slots: chains)
    norm_first: bool = False   # pre-layer-norm transformer layers
    none_tokens: str = "keep"  # unused ('none') edge tokens: "keep" (real tokens) or "mask" (masked like padding)


class EncoderLayer(nn.Module):
    """One transformer encoder layer (Vaswani et al.): multi-head self-attention and a ReLU
    feed-forward block, each with a residual connection and post-layer-norm, as
    ``nn.TransformerEncoderLayer`` -- written with one fused QKV projection and
    explicit attention matrices because the sequences are tiny and per-op
    overhead dominates on a CPU."""

    def __init__(self, d: int, n_heads: int, d_ff: int, dropout: float, norm_first: bool = False) -> None:
        super().__init__()
        self.norm_first = norm_first
        if d % n_heads:
            raise ConfigError(f"d_model={d} must be divisible by n_heads={n_heads}")
        self.h = n_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d))
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)
        self.scale = (d // n_heads) ** -0.5

    def _attend(self, x: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) * self.scale + attn_bias, dim=-1)
        return self.drop(self.out((self.drop(att) @ v).transpose(1, 2).reshape(b, n, d)))

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self._attend(self.norm1(x), attn_bias)
            return x + self.drop(self.ff(self.norm2(x)))
        x = self.norm1(x + self._attend(x, attn_bias))
        return self.norm2(x + self.drop(self.ff(x)))


class TNASPNet(nn.Module):
    """Embedding + Laplacian positional encoding -> transformer encoder -> mean pool -> MLP."""

    def __init__(self, encoder: ArchEncoder, cfg: TNASPConfig, readout: str | None = None) -> None:
        super().__init__()
        d = cfg.d_model
        self.pe = encoder.pe
        self.op_embed = nn.Embedding(encoder.vocab_size, d, padding_idx=0)
        self.seg_embed = nn.Embedding(encoder.num_segments, d) if encoder.num_segments > 1 else None
        self.pos_proj = nn.Linear(encoder.max_tokens, d, bias=False) if self.pe != "none" else None
        self.layers = nn.ModuleList(EncoderLayer(d, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.norm_first)
                                    for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(d) if cfg.norm_first else nn.Identity()
        readout = readout or (cfg.readout if cfg.readout != "auto" else "mean")
        if readout not in ("mean", "flatten"):
            raise ConfigError(f"readout must be 'auto', 'mean' or 'flatten', got '{readout}'")
        self.readout = readout
        if cfg.none_tokens not in NONE_TOKENS:
            raise ConfigError(f"none_tokens must be one of {list(NONE_TOKENS)}, got '{cfg.none_tokens}'")
        #: token id masked out of attention and readout (unused edges), or -1
        self.masked_token_id = encoder.unused_token_id if cfg.none_tokens == "mask" else -1
        width = d * (encoder.max_tokens if readout == "flatten" else 1)
        self.regressor = nn.Sequential(nn.Linear(width, cfg.mlp_hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
                                       nn.Linear(cfg.mlp_hidden, 1))

    def embed(self, b: EncodedBatch) -> torch.Tensor:
        """Token inputs of the encoder: op embedding (+ segment) (+ positional encoding)."""
        h = self.op_embed(b.ops)
        if self.seg_embed is not None:
            h = h + self.seg_embed(b.seg)
        if self.pos_proj is not None:
            pos = b.pos
            if self.pe == "laplacian_eig" and self.training:  # eigenvector signs are arbitrary
                flip = torch.randint(0, 2, (pos.shape[0], 1, pos.shape[2]), device=pos.device) * 2 - 1
                pos = pos * flip
            h = h + self.pos_proj(pos)
        return h

    def token_mask(self, b: EncodedBatch) -> torch.Tensor:
        """(B, N) bool: the tokens that attend, are attended to and are read out (real tokens,
        less the unused-edge tokens with ``none_tokens="mask"``)."""
        if self.masked_token_id < 0:
            return b.mask
        return b.mask & (b.ops != self.masked_token_id)

    def forward(self, b: EncodedBatch) -> torch.Tensor:
        mask = self.token_mask(b)
        h = self.embed(b)
        # padding is never attended to: -inf bias on padded keys, (B, 1, 1, N)
        bias = torch.zeros(mask.shape, dtype=h.dtype).masked_fill(~mask, float("-inf"))[:, None, None, :]
        for layer in self.layers:
            h = layer(h, bias)
        m = mask.unsqueeze(-1).to(h.dtype)
        h = self.final_norm(h) * m
        if self.readout == "flatten":
            pooled = h.flatten(1)
        else:
            pooled = h.sum(1) / m.sum(1).clamp_min(1.0)
        return self.regressor(pooled).squeeze(-1)


@register_predictor("tnasp", preset=TNASPConfig())
class TNASP(NeuralPredictor):
    """The TNASP predictor: ``TNASP(encoder, TNASPConfig(), seed).fit(archs, acc).predict(archs)``.

    The encoder's positional encoding must match ``config.pe``; pass an
    encoder built with ``encoder_for(space, pe=config.pe)``.
    """

    def __init__(self, encoder: ArchEncoder, config: TNASPConfig | None = None, seed: int = 0) -> None:
        self.config = config or TNASPConfig()
        if self.config.readout not in ("auto", "mean", "flatten"):
            raise ConfigError(f"readout must be 'auto', 'mean' or 'flatten', got '{self.config.readout}'")
        if self.config.none_tokens not in NONE_TOKENS:
            raise ConfigError(f"none_tokens must be one of {list(NONE_TOKENS)}, got '{self.config.none_tokens}'")
        if encoder.pe != self.config.pe:
            encoder = _with_pe(encoder, self.config.pe)
        self.readout = "mean" if self.config.readout == "auto" else self.config.readout
        super().__init__(encoder, lambda enc: TNASPNet(enc, self.config, self.readout), self.config, seed, "tnasp")

    def fit(self, X: Any, y: Any) -> "TNASP":
        """Train (``readout="auto"`` picks mean pooling for small training sets of graph encodings,
        flattening for larger ones and for chains, whose token slots are layers)."""
        batch = self.encode(X)
        if self.config.readout == "auto":
            flat = self.encoder.positional_slots or len(batch) >= self.config.flatten_min_train
            self.readout = "flatten" if flat else "mean"
        super().fit(batch, y)
        return self


def _with_pe(encoder: ArchEncoder, pe: str) -> ArchEncoder:
    import copy

    from attnas.predictors.encoders import PE_KINDS

    if pe not in PE_KINDS:
        raise ConfigError(f"unknown positional encoding '{pe}'; expected one of {list(PE_KINDS)}")
    enc = copy.copy(encoder)
    enc.pe = pe
    return enc
