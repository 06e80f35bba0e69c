"""The fit/predict loop shared by every predictor, and the Kendall-tau protocol of the slides.

:class:`NeuralPredictor` wraps an encoder and a network ``net(EncodedBatch) ->
(B,)``: ``fit`` standardizes the targets with the mean and standard deviation
of the *training* architectures (never constants), trains with MSE on the
standardized targets (AdamW, cosine learning-rate decay, seeded), and
``predict`` maps back to accuracy units.

:func:`run_kendall` is the protocol of the slides' Tables 1-2: sample N
training architectures plus a disjoint 200-architecture validation set (used
by self-evolution only), train, predict every architecture of the benchmark
and report Kendall's tau against the ground truth (``scipy.stats.kendalltau``).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from scipy.stats import kendalltau

from attnas.errors import ConfigError, ShapeError
from attnas.predictors.encoders import ArchEncoder, EncodedBatch

PREDICTORS = ("tnasp", "mlp", "gcn")
#: seconds between two progress lines of a predictor's training
PROGRESS_EVERY_S = 5.0
BENCHES = ("nb201", "nb101", "macro", "darts")


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


# --------------------------------------------------------------------------- factory
def make_predictor(name: str, encoder: ArchEncoder, seed: int = 0,
                   overrides: dict[str, Any] | None = None) -> NeuralPredictor:
    """``tnasp``, ``mlp`` or ``gcn`` with its preset (``overrides`` change preset fields)."""
    key = str(name).lower()
    if key == "tnasp":
        from attnas.predictors.tnasp import TNASP, TNASPConfig

        return TNASP(encoder, override(TNASPConfig(), overrides), seed)
    if key == "mlp":
        from attnas.predictors.baselines import MLPConfig, MLPPredictor

        return MLPPredictor(encoder, override(MLPConfig(), overrides), seed)
    if key == "gcn":
        from attnas.predictors.baselines import GCNConfig, GCNPredictor

        return GCNPredictor(encoder, override(GCNConfig(), overrides), seed)
    raise ConfigError(f"unknown predictor '{name}'; expected one of {list(PREDICTORS)}")


# --------------------------------------------------------------------------- benchmark data
@dataclass
class BenchData:
    """Everything the protocol needs from one benchmark.

    ``items``: encodable architectures; ``make_encoder(pe)``: their encoder;
    ``train_target``: what predictors learn (e.g. NAS-Bench-201 validation
    accuracy); ``test_target``: the ground truth of the tau (e.g. test
    accuracy); ``evaluate_on``: ``"all"`` (every architecture, as the slides)
    or ``"rest"`` (those not used for training).
    """

    bench: str
    dataset: str
    items: list[Any]
    make_encoder: Callable[[str], ArchEncoder]
    train_target: np.ndarray
    test_target: np.ndarray
    evaluate_on: str
    default_val_size: int
    encoded: dict[str, EncodedBatch] = field(default_factory=dict)  # cache: pe -> all items encoded


def _space_encoder(space: str) -> Callable[[str], ArchEncoder]:
    from attnas.predictors.encoders import encoder_for

    return lambda pe: encoder_for(space, pe=pe)


def load_bench_data(bench: str, dataset: str = "cifar10", data_dir: str | None = None) -> BenchData:
    """Architectures and targets of ``nb201`` (+dataset), ``nb101``, ``macro`` or ``darts``."""
    key = str(bench).lower()
    if key == "nb201":
        from attnas.benchmarks.nb201 import NB201Bench, canonical_dataset

        b = NB201Bench(data_dir)
        ds = canonical_dataset(dataset)
        return BenchData("nb201", ds, b.architectures(), _space_encoder("nb201"),
                         np.array(b.accuracies(ds, "val")), np.array(b.accuracies(ds, "test")), "all", 200)
    if key == "nb101":
        from attnas.benchmarks.nb101 import NB101Sample
        from attnas.predictors.encoders import NB101Encoder

        s = NB101Sample(data_dir)
        acc = s.accuracies()
        return BenchData("nb101", "cifar10", list(s.records), lambda pe: NB101Encoder(pe), acc, acc, "rest", 100)
    if key == "darts":
        from attnas.benchmarks.darts214 import Darts214

        d = Darts214(data_dir)
        acc = np.array(d.accuracies())
        return BenchData("darts", "cifar10", d.architectures(), _space_encoder("darts"), acc, acc, "rest", 50)
    if key == "macro":
        from attnas.benchmarks.macro import MacroBench

        m = MacroBench(data_dir)
        acc = m.array("mean_acc")
        items, make_encoder = macro_items(m.keys())
        return BenchData("macro", "cifar10", items, make_encoder, acc, acc, "all", 200)
    raise ConfigError(f"unknown benchmark '{bench}'; expected one of {list(BENCHES)}")


def macro_items(keys: Sequence[str]) -> tuple[list[Any], Callable[[str], ArchEncoder]]:
    """NAS-Bench-Macro strings as Architectures of the registered ``macro`` chain space (its
    ``parse_native``), or -- when no such space is registered -- of a built-in 8-layer chain
    over the digits 0/1/2; with the matching encoder factory."""
    from attnas.arch import Architecture, layer_key
    from attnas.predictors.encoders import ChainEncoder
    from attnas.spaces.base import ChoicePoint
    from attnas.spaces.registry import get_space_class

    try:
        cls = get_space_class("macro")
    except ConfigError:
        points = [ChoicePoint(layer_key(i), ("0", "1", "2"), layer_key(i)) for i in range(len(keys[0]))]
        items = [Architecture("macro", {layer_key(i): c for i, c in enumerate(k)}) for k in keys]
        return items, lambda pe: ChainEncoder("macro", points, pe)
    return [cls.parse_native(k) for k in keys], _space_encoder("macro")


def split_indices(n_total: int, train_size: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint random training and validation index sets (seeded)."""
    if train_size < 2:
        raise ConfigError(f"train size must be at least 2, got {train_size}")
    if train_size + val_size > n_total:
        raise ConfigError(f"train size {train_size} + validation size {val_size} exceeds the "
                          f"{n_total} architectures of the benchmark")
    perm = np.random.default_rng(seed).permutation(n_total)
    return perm[:train_size], perm[train_size:train_size + val_size]


def run_kendall(bench: str = "nb201", train_size: int = 100, seed: int = 0, predictor: str = "tnasp",
                self_evolution: bool = False, dataset: str = "cifar10", val_size: int | None = None,
                data_dir: str | None = None, pe: str | None = None, overrides: dict[str, Any] | None = None,
                se_overrides: dict[str, Any] | None = None, data: BenchData | None = None,
                log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train on ``train_size`` benchmark architectures and report Kendall's tau (see module doc).

    With ``self_evolution`` the result holds both the tau after normal
    training (``kendall_tau_base``) and after self-evolution (``kendall_tau``).
    ``log``: progress lines (loading, encoding, training steps, self-evolution rounds).
    """
    from attnas.predictors.self_evolution import SelfEvolution, SelfEvolutionConfig

    if data is None and log is not None:
        log(f"predict: loading the {bench} benchmark")
    data = data or load_bench_data(bench, dataset, data_dir)
    val_size = data.default_val_size if val_size is None else int(val_size)
    overrides = dict(overrides or {})
    if predictor == "tnasp" and pe is not None:
        overrides["pe"] = pe
    # MLP and GCN do not read the positional encoding: skip computing it
    model = make_predictor(predictor, data.make_encoder("none"), seed, overrides)
    if predictor == "tnasp":
        model.encoder = data.make_encoder(model.config.pe)
    pe_used = model.encoder.pe
    model.log = log
    if pe_used not in data.encoded:
        if log is not None:
            log(f"predict: encoding {len(data.items)} architectures")
        data.encoded[pe_used] = model.encoder.encode(data.items)
    allb = data.encoded[pe_used]
    # the validation set is drawn for every predictor, so that all of them see the same training set
    tr, va = split_indices(len(data.items), int(train_size), val_size, seed)
    t0 = time.time()
    model.fit(allb.index(tr), data.train_target[tr])
    fit_s = time.time() - t0
    if data.evaluate_on == "all":
        ev = np.arange(len(data.items))
    else:
        ev = np.setdiff1d(np.arange(len(data.items)), tr)
    base_pred = model.predict(allb.index(ev))
    tau_base = float(kendalltau(base_pred, data.test_target[ev])[0])
    result: dict[str, Any] = {
        "bench": data.bench, "dataset": data.dataset, "predictor": predictor, "train_size": int(train_size),
        "val_size": val_size, "seed": int(seed), "self_evolution": bool(self_evolution),
        "pe": pe_used if predictor == "tnasp" else None,
        "evaluated_on": int(len(ev)), "kendall_tau": tau_base, "fit_time_s": round(fit_s, 2),
        "y_mean": model.y_mean, "y_std": model.y_std}
    if self_evolution:
        cfg = override(SelfEvolutionConfig(), se_overrides)
        se = SelfEvolution(model, cfg)
        se.log = log
        t1 = time.time()
        se.evolve(allb.index(tr), data.train_target[tr], allb.index(va), data.train_target[va])
        pred = model.predict(allb.index(ev))
        result.update({"kendall_tau_base": tau_base, "kendall_tau": float(kendalltau(pred, data.test_target[ev])[0]),
                       "se_time_s": round(time.time() - t1, 2), "se_rounds": cfg.rounds,
                       "se_errors": [round(e, 5) for e in se.errors]})
    result["config"] = asdict(model.config)
    return result
