"""The fit/predict loop shared by every predictor.

:class:`NeuralPredictor` wraps an encoder and a network ``net(EncodedBatch) ->
(B,)``: ``fit`` standardizes the targets with the mean and standard deviation
of the *training* architectures (never constants), trains with MSE on the
standardized targets (AdamW, cosine learning-rate decay, seeded), and
``predict`` maps back to accuracy units.

"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from attnas.errors import ConfigError, ShapeError
from attnas.predictors.encoders import ArchEncoder, EncodedBatch

#: seconds between two progress lines of a predictor's training
PROGRESS_EVERY_S = 5.0


@dataclass
class FitConfig:
    """Optimisation settings of the normal (first-stage) training.

    The number of optimizer steps is ``max(min_steps, epochs * ceil(n / batch_size))``
    so that tiny training sets (78 architectures) still get enough updates.
    """

    epochs: int = 40
    min_steps: int = 600
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 5.0


def override(cfg: Any, overrides: dict[str, Any] | None) -> Any:
    """A copy of dataclass ``cfg`` with ``overrides`` (unknown names are a ConfigError)."""
    if not overrides:
        return cfg
    known = {f.name for f in fields(cfg)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ConfigError(f"unknown option(s) {bad} for {type(cfg).__name__}; expected some of {sorted(known)}")
    from attnas.presets import _checked, _type_hints  # the presets' type and range check

    hints = _type_hints(type(cfg))
    return replace(cfg, **{k: _checked(v, hints.get(k, Any), k, type(cfg).__name__) for k, v in overrides.items()})


class NeuralPredictor:
    """Encoder + network + the shared training loop (see module doc)."""

    def __init__(self, encoder: ArchEncoder, build_net: Callable[[ArchEncoder], nn.Module],
                 fit_config: FitConfig, seed: int = 0, name: str = "predictor") -> None:
        self.encoder = encoder
        self.build_net = build_net
        self.fit_config = fit_config
        self.seed = int(seed)
        self.name = name
        self.net: nn.Module | None = None
        self.y_mean: float | None = None
        self.y_std: float | None = None
        self.history: dict[str, Any] = {}
        #: progress of :meth:`fit` (a line every few seconds): a callable taking one line, or None
        self.log: Callable[[str], None] | None = None

    # ----- data ----------------------------------------------------------
    def encode(self, X: Any) -> EncodedBatch:
        """``X`` unchanged when it is already an EncodedBatch, else ``encoder.encode(X)``."""
        return X if isinstance(X, EncodedBatch) else self.encoder.encode(X)

    def standardize(self, y: Sequence[float] | np.ndarray) -> torch.Tensor:
        """``(y - mean) / std`` with the training statistics."""
        if self.y_mean is None:
            raise ConfigError(f"{self.name}: fit the predictor before using it")
        return torch.as_tensor((np.asarray(y, dtype=np.float64) - self.y_mean) / self.y_std, dtype=torch.float32)

    @staticmethod
    def _targets(y: Any, n: int, what: str) -> np.ndarray:
        arr = np.asarray(y, dtype=np.float64).reshape(-1)
        if arr.shape[0] != n:
            raise ShapeError(f"{what}: {n} architectures but {arr.shape[0]} targets")
        if not np.isfinite(arr).all():
            raise ShapeError(f"{what}: targets must be finite numbers")
        return arr

    # ----- training ------------------------------------------------------
    def fit(self, X: Any, y: Sequence[float] | np.ndarray) -> "NeuralPredictor":
        """Train from scratch on ``(X, y)``; returns self."""
        batch = self.encode(X)
        n = len(batch)
        yy = self._targets(y, n, f"{self.name}.fit")
        if n < 2:
            raise ShapeError(f"{self.name}.fit needs at least 2 training architectures, got {n}")
        self.y_mean = float(yy.mean())
        self.y_std = float(yy.std()) or 1.0
        target = self.standardize(yy)
        cfg = self.fit_config
        bs = max(1, min(cfg.batch_size, n))
        per_epoch = math.ceil(n / bs)
        steps = max(cfg.min_steps, cfg.epochs * per_epoch)
        t0 = shown = time.time()
        if self.log is not None:
            self.log(f"{self.name}: training on {n} architectures, {steps} steps")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = self.build_net(self.encoder)
            opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / steps)))
            gen = torch.Generator().manual_seed(self.seed + 7919)
            self.net.train()
            step, losses = 0, []
            while step < steps:
                perm = torch.randperm(n, generator=gen)
                for start in range(0, n, bs):
                    idx = perm[start:start + bs]
                    if len(idx) < 2 and n >= 2:
                        continue
                    loss = nn.functional.mse_loss(self.net(batch.index(idx)), target[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip:
                        nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
                    opt.step()
                    sched.step()
                    losses.append(float(loss.detach()))
                    step += 1
                    if self.log is not None and (time.time() - shown >= PROGRESS_EVERY_S or step == steps):
                        shown = time.time()
                        self.log(f"{self.name}: step {step}/{steps}, loss {np.mean(losses[-per_epoch:]):.4f}, "
                                 f"{shown - t0:.0f}s elapsed")
                    if step >= steps:
                        break
        self.net.eval()
        self.history = {"steps": steps, "final_loss": float(np.mean(losses[-per_epoch:])),
                        "fit_time_s": time.time() - t0, "n_train": n}
        return self

    # ----- prediction ----------------------------------------------------
    def forward_standardized(self, X: Any) -> torch.Tensor:
        """Network output (standardized units) with gradients, in the current train/eval mode."""
        if self.net is None:
            raise ConfigError(f"{self.name}: fit the predictor before predicting")
        return self.net(self.encode(X))

    @torch.no_grad()
    def predict_standardized(self, X: Any, chunk: int = 4096) -> torch.Tensor:
        """Predictions in standardized units (eval mode, no gradients)."""
        if self.net is None:
            raise ConfigError(f"{self.name}: fit the predictor before predicting")
        batch = self.encode(X)
        was = self.net.training
        self.net.eval()
        out = torch.cat([self.net(batch.index(slice(s, s + chunk))) for s in range(0, len(batch), chunk)])
        self.net.train(was)
        return out

    def predict(self, X: Any) -> np.ndarray:
        """Predicted accuracy (training units) of every architecture in ``X``."""
        z = self.predict_standardized(X).double().numpy()
        return z * self.y_std + self.y_mean
