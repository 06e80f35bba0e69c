"""A leaderboard of the finished search runs under a folder (a sweep's, or any tree of runs).

:func:`build_leaderboard` finds every search run folder below ``root`` (``config.json`` of a search
and ``result.json``; a run still going or stopped is listed as unfinished) and groups the runs by
space, then by method (and by the settings that differ between runs of the space other than the
seed: the *variant*, e.g. ``epochs=2``).  Per group: the number of runs, the found accuracy's mean
and sample standard deviation, what that accuracy is (the *measure*), where the mean would rank in
the space's benchmark table, and the mean search time.

The found accuracy of a run, in %, is the first of:

1. ``benchmark`` -- the tabular benchmark's test accuracy of the derived architecture, recorded
   by the search (NAS-Bench-201: on the run's dataset if it is one of the benchmark's, else
   CIFAR-10);
2. ``retrained`` -- the test accuracy of its retraining (``RUN/train``, ``attnas sweep`` with
   ``train:``);
3. ``supernet`` -- the supernet's validation accuracy at the end of the search.

Rows never mix measures.  The rank of the mean is 1 + the number of the benchmark's architectures
with a higher test accuracy -- NAS-Bench-201 (15,625 cells) and NAS-Bench-Macro (6,561 chains, their
mean of three trainings) -- (needs the benchmark table: ``data_dir``, the runs' ``data_dir``, or
``$ATTNAS_DATA_DIR``; left out when it is not found).
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnas.config import SearchConfig, config_defaults
from attnas.run_dir import CONFIG, RESULT
from attnas.errors import AttnasError, ConfigError

MEASURES = {"benchmark": "benchmark test accuracy", "retrained": "retrained test accuracy",
            "supernet": "supernet validation accuracy"}
#: config fields that never make a variant (run identity, paths, resolved presets, how often a run
#: checkpoints -- which does not change its results)
NOT_VARIANT = ("seed", "out", "data_dir", "device", "method", "space", "resolved_method_options", "checkpoint_every")


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    result: dict[str, Any]
    train_test_acc: float | None = None


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def collect_runs(root: str | Path) -> tuple[list[Run], list[str]]:
    """``(finished search runs, folders of unfinished search runs)`` below ``root``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise ConfigError(f"'{root}' {what}: give the folder of a sweep or of search runs")
    runs, unfinished = [], []
    for cfg_path in sorted(root.rglob(CONFIG)):
        folder = cfg_path.parent
        cfg = _read(cfg_path)
        if not isinstance(cfg, dict) or "space" not in cfg or "method" not in cfg:
            continue  # not a search run (a retraining, a teacher, another file)
        res = _read(folder / RESULT)
        if not isinstance(res, dict) or res.get("status") != "done":
            unfinished.append(str(folder))
            continue
        tres = _read(folder / "train" / RESULT)
        tacc = tres.get("test_acc") if isinstance(tres, dict) and tres.get("status") == "done" else None
        runs.append(Run(folder, cfg, res, float(tacc) if _number(tacc) else None))
    return runs, unfinished


def _bench_dataset(dataset: Any, benchmark: dict[str, Any]) -> str | None:
    """The benchmark dataset of ``bench_DS_test_acc`` matching the run's dataset, else CIFAR-10,
    else the first one recorded."""
    name = str(dataset or "").lower()
    names = [k[len("bench_"):-len("_test_acc")] for k in benchmark
             if k.startswith("bench_") and k.endswith("_test_acc")]
    for ds in names:
        if name == ds.lower() or (name.startswith("imagenet") and ds.lower().startswith("imagenet")):
            return ds
    return "cifar10" if "cifar10" in names else (names[0] if names else None)


def found_accuracy(run: Run) -> tuple[float, str, str | None] | None:
    """``(accuracy %, measure, benchmark dataset)`` of a run, or None when it recorded none."""
    bench = run.result.get("benchmark")
    if isinstance(bench, dict):
        ds = _bench_dataset(run.config.get("dataset"), bench)
        v = bench.get(f"bench_{ds}_test_acc") if ds else None
        if _number(v):
            return float(v), "benchmark", ds
    if run.train_test_acc is not None:
        return 100.0 * run.train_test_acc, "retrained", None
    v = run.result.get("valid_acc")
    return (100.0 * float(v), "supernet", None) if _number(v) else None


def _variants(runs: list[Run]) -> dict[Path, str]:
    """The label of each run's variant: the config fields that differ between runs of the *same*
    method (method options that only one method has, e.g. SPOS's evolution settings, do not make
    a variant when every run of that method shares them)."""
    # a field a run did not record (added to attnas after it ran) has its default
    defaults = config_defaults(SearchConfig)

    def value(r: Run, k: str) -> str:
        return json.dumps(r.config[k] if k in r.config else defaults.get(k), sort_keys=True, default=str)

    by_method: dict[str, list[Run]] = {}
    for r in runs:
        by_method.setdefault(str(r.config.get("method")), []).append(r)
    out = {}
    for mruns in by_method.values():
        keys = sorted({k for r in mruns for k in r.config} - set(NOT_VARIANT))
        varying = [k for k in keys if len({value(r, k) for r in mruns}) > 1]
        out.update({r.path: ", ".join(f"{k}={value(r, k)}" for k in varying) for r in mruns})
    return out


class _RankTables:
    """Benchmark test accuracies of every architecture of a space, loaded once per dataset."""

    def __init__(self, data_dir: str | None) -> None:
        self.data_dir = data_dir
        self.cache: dict[tuple[str, str, str | None], Any] = {}

    def rank(self, space: str, ds: str | None, mean: float, run_data_dirs: list[str | None]) -> tuple[int, int] | None:
        if space not in ("nb201", "macro") or ds is None or not _number(mean):
            return None
        for d in [self.data_dir, *run_data_dirs, None]:
            key = (space, ds, d)
            if key not in self.cache:
                self.cache[key] = self._load(space, ds, d)
            acc = self.cache[key]
            if acc is not None:
                return 1 + (acc > mean).sum().item(), len(acc)
        return None

    @staticmethod
    def _load(space: str, ds: str, data_dir: str | None):
        try:
            if space == "macro":   # one table: CIFAR-10, the mean of its three trainings
                from attnas.benchmarks.macro import MacroBench
                return MacroBench(data_dir).array("mean_acc") if ds == "cifar10" else None
            from attnas.benchmarks.nb201 import NB201Bench
            return NB201Bench(data_dir).accuracies(ds, "test")
        except (AttnasError, OSError):
            return None


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def build_leaderboard(root: str | Path, data_dir: str | None = None) -> dict[str, Any]:
    """The leaderboard of ``root`` as plain data (strict-JSON-ready; accuracies in %)."""
    from attnas.data.paths import check_data_dir

    check_data_dir(data_dir)
    runs, unfinished = collect_runs(root)
    if not runs:
        extra = f" ({len(unfinished)} unfinished)" if unfinished else ""
        raise ConfigError(f"no finished search run under '{root}'{extra}: a run folder has config.json and "
                          "result.json ('attnas search' or 'attnas sweep' writes them)")
    tables = _RankTables(data_dir)
    spaces: dict[str, list[Run]] = {}
    for r in runs:
        spaces.setdefault(str(r.config.get("space")), []).append(r)
    out_spaces, no_accuracy = [], []
    for space, sruns in sorted(spaces.items()):
        variant = _variants(sruns)
        groups: dict[tuple[str, str, str, str | None], list[tuple[Run, float]]] = {}
        for r in sruns:
            found = found_accuracy(r)
            if found is None:
                no_accuracy.append(str(r.path))
                continue
            acc, measure, ds = found
            key = (str(r.config.get("method")), variant[r.path], measure, ds)
            groups.setdefault(key, []).append((r, acc))
        rows = []
        for (method, var, measure, ds), members in groups.items():
            accs = [a for _, a in members]
            times = [float(r.result["search_time_s"]) for r, _ in members if _number(r.result.get("search_time_s"))]
            mean, std = _mean_std(accs)
            tmean, tstd = _mean_std(times)
            ranked = tables.rank(space, ds, mean, sorted({r.config.get("data_dir") for r, _ in members},
                                                         key=str)) if measure == "benchmark" else None
            label = MEASURES[measure] + (f" ({ds})" if ds else "")
            rows.append({"method": method, "variant": var, "runs": len(members), "acc_mean": mean, "acc_std": std,
                         "measure": measure, "measure_label": label, "benchmark_dataset": ds,
                         "rank_of_mean": ranked[0] if ranked else None, "space_size": ranked[1] if ranked else None,
                         "search_time_s_mean": tmean, "search_time_s_std": tstd,
                         "points": [{"run_dir": str(r.path), "seed": r.config.get("seed"), "acc": a,
                                     "search_time_s": r.result.get("search_time_s"),
                                     "architecture": r.result.get("architecture")} for r, a in members]})
        rows.sort(key=lambda row: (-(row["acc_mean"] if row["acc_mean"] is not None else -math.inf),
                                   row["method"], row["variant"]))
        out_spaces.append({"space": space, "runs": len(sruns), "rows": rows,
                           "varying": sorted({v.split("=", 1)[0] for v in variant.values() if v})})
    return {"dir": str(root), "acc_unit": "%", "runs": len(runs), "spaces": out_spaces,
            "unfinished": unfinished, "without_accuracy": no_accuracy}


def format_acc(row: dict[str, Any]) -> str:
    if row["acc_mean"] is None:
        return "-"
    std = "n/a" if row["acc_std"] is None else f"{row['acc_std']:.2f}"
    return f"{row['acc_mean']:.2f} ± {std}"


def format_rank(row: dict[str, Any]) -> str:
    return f"{row['rank_of_mean']}/{row['space_size']}" if row.get("rank_of_mean") else "-"


def table_rows(space: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows of one space's table (terminal and HTML); the variant column only when
    runs of the space differ in more than method and seed, the rank column only when known."""
    with_variant = any(r["variant"] for r in space["rows"])
    with_rank = any(r["rank_of_mean"] for r in space["rows"])
    headers = ["method", *(["variant"] if with_variant else []), "runs", "found acc (%) mean ± std", "measure",
               *(["rank of mean"] if with_rank else []), "search time (s) mean"]
    rows = []
    for r in space["rows"]:
        t = "-" if r["search_time_s_mean"] is None else f"{r['search_time_s_mean']:.1f}"
        rows.append([r["method"], *([r["variant"] or "-"] if with_variant else []), r["runs"], format_acc(r),
                     r["measure_label"], *([format_rank(r)] if with_rank else []), t])
    return headers, rows
