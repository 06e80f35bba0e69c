"""The Kendall-tau protocol of the TNASP slides' Tables 1-2 (:func:`run_kendall`): sample N
training architectures of a benchmark plus a disjoint validation set (used by self-evolution
only), train a predictor, predict every architecture of the benchmark and report Kendall's tau
against the ground truth (``scipy.stats.kendalltau``).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from scipy.stats import kendalltau

from attnas.errors import ConfigError
from attnas.predictors.encoders import ArchEncoder, EncodedBatch
from attnas.predictors.registry import get_predictor, predictor_preset
from attnas.predictors.self_evolution import SelfEvolution, SelfEvolutionConfig
from attnas.predictors.train import override

BENCHES = ("nb201", "nb101", "macro", "darts")


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
        # the slides' NB-101 protocol: 200 validation architectures (Table 1); the 500-entry sample allows it
        return BenchData("nb101", "cifar10", list(s.records), lambda pe: NB101Encoder(pe), acc, acc, "rest", 200)
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
    if data is None and log is not None:
        log(f"predict: loading the {bench} benchmark")
    data = data or load_bench_data(bench, dataset, data_dir)
    val_size = data.default_val_size if val_size is None else int(val_size)
    overrides = dict(overrides or {})
    reads_pe = hasattr(predictor_preset(predictor), "pe")  # TNASP; MLP and GCN do not read it
    if reads_pe and pe is not None:
        overrides["pe"] = pe
    # a predictor that does not read the positional encoding skips computing it
    model = get_predictor(predictor, data.make_encoder("none"), seed, **overrides)
    if reads_pe:
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
        "pe": pe_used if reads_pe else None,
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
