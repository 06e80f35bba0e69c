"""Baseline predictors in the TNASP interface (same encoders, same fit/predict loop).

* :class:`MLPPredictor` -- an MLP on the one-hot encoding of the tokens'
  operations plus the flattened token adjacency (for NAS-Bench-201 this is the
  usual one-hot of the 6 edges; for NAS-Bench-101 it adds the cell's wiring).
* :class:`GCNPredictor` -- the "Neural Predictor" of Wen et al. (ECCV 2020):
  one-hot operations, graph convolutions that propagate along the edges and
  against them (the two directions averaged), global mean pooling and a
  fully connected regressor.  Wen et al. use 3 GCN layers of 144 units.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from attnas.predictors.encoders import ArchEncoder, EncodedBatch
from attnas.predictors.registry import register_predictor
from attnas.predictors.train import FitConfig, NeuralPredictor


@dataclass
class MLPConfig(FitConfig):
    """MLP preset: two hidden layers of 128 units with dropout."""

    hidden: int = 128
    n_hidden_layers: int = 2
    dropout: float = 0.1


class MLPNet(nn.Module):
    """one-hot(ops) ++ flattened adjacency -> [Linear-ReLU-Dropout] x k -> Linear."""

    def __init__(self, encoder: ArchEncoder, cfg: MLPConfig) -> None:
        super().__init__()
        self.vocab = encoder.vocab_size
        n = encoder.max_tokens
        layers: list[nn.Module] = []
        width = n * self.vocab + n * n
        for _ in range(cfg.n_hidden_layers):
            layers += [nn.Linear(width, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
            width = cfg.hidden
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def features(self, b: EncodedBatch) -> torch.Tensor:
        onehot = nn.functional.one_hot(b.ops, self.vocab).float()
        onehot[..., 0] = 0.0  # padding carries no feature
        return torch.cat([onehot.flatten(1), b.adj.flatten(1)], dim=1)

    def forward(self, b: EncodedBatch) -> torch.Tensor:
        return self.mlp(self.features(b)).squeeze(-1)


@register_predictor("mlp", preset=MLPConfig())
class MLPPredictor(NeuralPredictor):
    def __init__(self, encoder: ArchEncoder, config: MLPConfig | None = None, seed: int = 0) -> None:
        self.config = config or MLPConfig()
        super().__init__(encoder, lambda enc: MLPNet(enc, self.config), self.config, seed, "mlp")


@dataclass
class GCNConfig(FitConfig):
    """Neural Predictor preset: 3 bidirectional GCN layers of 144 units, FC 128."""

    hidden: int = 144
    n_layers: int = 3
    fc_hidden: int = 128
    dropout: float = 0.1


def _row_normalize(a: torch.Tensor) -> torch.Tensor:
    return a / a.sum(-1, keepdim=True).clamp_min(1.0)


class GCNNet(nn.Module):
    """Bidirectional GCN (Wen et al.): ``h' = ReLU((Â_f h W_f + Â_b h W_b) / 2)``,
    ``Â_f = rownorm(A^T + I)`` (aggregate from predecessors), ``Â_b = rownorm(A + I)``."""

    def __init__(self, encoder: ArchEncoder, cfg: GCNConfig) -> None:
        super().__init__()
        self.vocab = encoder.vocab_size
        self.seg = nn.Embedding(encoder.num_segments, cfg.hidden) if encoder.num_segments > 1 else None
        self.inp = nn.Linear(self.vocab, cfg.hidden)
        self.fwd = nn.ModuleList(nn.Linear(cfg.hidden, cfg.hidden) for _ in range(cfg.n_layers))
        self.bwd = nn.ModuleList(nn.Linear(cfg.hidden, cfg.hidden) for _ in range(cfg.n_layers))
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Sequential(nn.Linear(cfg.hidden, cfg.fc_hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
                                  nn.Linear(cfg.fc_hidden, 1))

    def forward(self, b: EncodedBatch) -> torch.Tensor:
        m = b.mask.to(b.adj.dtype)
        eye = torch.diag_embed(m)  # self-loops on real tokens only
        a_f = _row_normalize(b.adj.transpose(1, 2) + eye)
        a_b = _row_normalize(b.adj + eye)
        onehot = nn.functional.one_hot(b.ops, self.vocab).float()
        h = self.inp(onehot)
        if self.seg is not None:
            h = h + self.seg(b.seg)
        h = h * m.unsqueeze(-1)
        for wf, wb in zip(self.fwd, self.bwd):
            h = torch.relu(0.5 * (a_f @ wf(h) + a_b @ wb(h))) * m.unsqueeze(-1)
            h = self.drop(h)
        pooled = h.sum(1) / m.sum(1, keepdim=True).clamp_min(1.0)
        return self.head(pooled).squeeze(-1)


@register_predictor("gcn", preset=GCNConfig())
class GCNPredictor(NeuralPredictor):
    def __init__(self, encoder: ArchEncoder, config: GCNConfig | None = None, seed: int = 0) -> None:
        self.config = config or GCNConfig()
        super().__init__(encoder, lambda enc: GCNNet(enc, self.config), self.config, seed, "gcn")
