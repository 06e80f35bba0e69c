"""Ranking consistency of selection indicators on NAS-Bench-201 (IT-NAS Sec. 4.3, App. A.7-A.8).

For every edge of the NAS-Bench-201 cell, the candidates are ranked twice:

* by the search's *indicator* -- IT-NAS attention weights ``a[1:]`` (Eq. 6),
  DARTS ``softmax(alpha)``, ... -- read from a run's ``scores.json``;
* by ``best_acc`` (Eq. 9, the definition of Zero-Cost-PT that App. A.7 uses):
  the best benchmark accuracy reachable with that operation on that edge, i.e.
  the maximum over every cell of the table that has operation ``o`` on edge
  ``e`` (the other five edges free).

The consistency of the two rankings is Kendall's tau-b (ties, which
``best_acc`` has, are handled as SciPy's :func:`scipy.stats.kendalltau`
handles them).  A constant indicator (random search's uniform scores) has no
ranking: its tau is NaN.  The paper reads CIFAR-10 test accuracies (Fig. 9-14
show 94.37, the CIFAR-10 test optimum); ``split="val"`` reads the validation
column instead, which is Eq. 9's ``V*`` literally.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from attnas.run_dir import CONFIG, SCORES
from attnas.arch import edge_key
from attnas.errors import ConfigError

NB201_SPACE = "nb201"


def best_acc_table(bench: Any, dataset: str = "cifar10", split: str = "test") -> dict[str, dict[str, float]]:
    """Eq. 9 for every edge and operation: ``{edge key: {op: best accuracy (%)}}``.

    ``bench`` is an :class:`attnas.benchmarks.nb201.NB201Bench`; its bulk arrays are in
    canonical order (index = base-5 digits of the edges' candidate indices, first edge
    most significant), so the operation on edge ``p`` of cell ``n`` is digit ``p`` of ``n``.
    """
    from attnas.benchmarks.nb201 import NB201_SIZE
    from attnas.spaces.nb201 import NB201_CANDIDATES, NB201_EDGES

    acc = np.asarray(bench.accuracies(dataset, split))
    if acc.shape != (NB201_SIZE,):
        raise ConfigError(f"expected {NB201_SIZE} NAS-Bench-201 accuracies, got shape {acc.shape}")
    n_ops, n_edges = len(NB201_CANDIDATES), len(NB201_EDGES)
    index = np.arange(NB201_SIZE)
    out: dict[str, dict[str, float]] = {}
    for pos, (i, j) in enumerate(NB201_EDGES):
        digit = (index // n_ops ** (n_edges - 1 - pos)) % n_ops
        out[edge_key("cell", i, j)] = {op: float(acc[digit == k].max()) for k, op in enumerate(NB201_CANDIDATES)}
    return out


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two equally long sequences (NaN when either is constant)."""
    from scipy.stats import kendalltau

    if len(x) != len(y):
        raise ConfigError(f"cannot rank {len(x)} indicator values against {len(y)} accuracies")
    if len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")
    return float(kendalltau(list(x), list(y)).statistic)


@dataclass
class RunScores:
    """The indicator of one search run: method, seed and per-edge candidate strengths."""

    path: str
    method: str
    seed: Any
    candidates: dict[str, list[str]]
    scores: dict[str, list[float]]


def load_run_scores(run_dir: str | Path) -> RunScores:
    """Read ``scores.json`` and ``config.json`` of a finished NAS-Bench-201 search."""
    run = Path(run_dir)
    sc_path, cfg_path = run / SCORES, run / CONFIG
    if not sc_path.is_file():
        raise ConfigError(f"'{run}' has no scores.json: give the folder of a finished search")
    try:
        sc = json.loads(sc_path.read_text())
        cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    except json.JSONDecodeError as e:
        raise ConfigError(f"cannot read the run files of '{run}': {e}") from None
    if not isinstance(sc, dict) or "scores" not in sc or "candidates" not in sc:
        raise ConfigError(f"'{sc_path}' must hold 'candidates' and 'scores'")
    space = cfg.get("space", NB201_SPACE)
    if space != NB201_SPACE:
        raise ConfigError(f"'{run}' searched space '{space}'; ranking consistency needs a NAS-Bench-201 run")
    return RunScores(str(run), str(cfg.get("method", "unknown")), cfg.get("seed"),
                     dict(sc["candidates"]), {k: [float(v) for v in s] for k, s in sc["scores"].items()})


@dataclass
class EdgeRanking:
    """One edge of one run: the indicator and best_acc per operation, and their tau."""

    edge: str
    ops: list[str]
    indicator: list[float]
    best_acc: list[float]
    tau: float


def run_consistency(run: RunScores, best: Mapping[str, Mapping[str, float]]) -> list[EdgeRanking]:
    """Kendall tau between the run's indicator and ``best_acc`` on every edge (table order)."""
    out = []
    for edge, table in best.items():
        if edge not in run.scores or edge not in run.candidates:
            raise ConfigError(f"run '{run.path}' has no scores for edge '{edge}'")
        ops = list(run.candidates[edge])
        if sorted(ops) != sorted(table):
            raise ConfigError(f"run '{run.path}': candidates {ops} of '{edge}' are not the NAS-Bench-201 operations")
        ind = list(run.scores[edge])
        acc = [table[o] for o in ops]
        out.append(EdgeRanking(edge, ops, ind, acc, kendall_tau(ind, acc)))
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


@dataclass
class ConsistencyReport:
    """Per method: the runs, the per-edge tau of each run and their mean/std."""

    dataset: str
    split: str
    edges: list[str]
    best: dict[str, dict[str, float]]
    runs: dict[str, list[RunScores]] = field(default_factory=dict)
    per_run: dict[str, list[list[EdgeRanking]]] = field(default_factory=dict)

    def tau(self, method: str) -> dict[str, tuple[float, float]]:
        """Edge -> (mean, std) of tau over the method's runs."""
        out = {}
        for n, edge in enumerate(self.edges):
            out[edge] = _mean_std([r[n].tau for r in self.per_run[method]])
        return out

    def mean_indicator(self, method: str) -> dict[str, list[float]]:
        """Edge -> the method's indicator averaged over its runs, in NAS-Bench-201 op order."""
        out = {}
        for n, edge in enumerate(self.edges):
            ops = list(self.best[edge])
            rows = [[r[n].indicator[r[n].ops.index(o)] for o in ops] for r in self.per_run[method]]
            out[edge] = [statistics.fmean(col) for col in zip(*rows)]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "split": self.split, "best_acc": self.best,
            "methods": {
                m: {"runs": [r.path for r in self.runs[m]],
                    "tau": {e: {"mean": mu, "std": sd} for e, (mu, sd) in self.tau(m).items()},
                    "tau_per_run": [[er.tau for er in run] for run in self.per_run[m]],
                    "mean_indicator": self.mean_indicator(m)}
                for m in self.runs},
        }


def ranking_consistency(run_dirs: Sequence[str | Path], bench: Any, dataset: str = "cifar10",
                        split: str = "test") -> ConsistencyReport:
    """The ranking-consistency report of NAS-Bench-201 search runs, grouped by method."""
    if not run_dirs:
        raise ConfigError("give at least one NAS-Bench-201 search run folder")
    if split not in ("test", "val"):
        raise ConfigError(f"split must be 'test' or 'val', got '{split}'")
    best = best_acc_table(bench, dataset, split)
    report = ConsistencyReport(dataset, split, list(best), best)
    for d in run_dirs:
        run = load_run_scores(d)
        report.runs.setdefault(run.method, []).append(run)
        report.per_run.setdefault(run.method, []).append(run_consistency(run, best))
    return report
