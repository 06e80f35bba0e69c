"""Tabular benchmarks keyed by search space.

A space with a table (NAS-Bench-201, NAS-Bench-Macro) registers a look-up factory here; the
search (per-epoch trajectory and final result), ``attnas evolve`` and the reports all get their
look-ups from :func:`benchmark_for`, so a new table is one ``@register_benchmark("space")``.

A look-up returns flat ``bench_<dataset>_<metric>`` numbers (e.g. ``bench_cifar10_test_acc``),
the keys the reports, curves and the leaderboard read for every space.
"""
from __future__ import annotations

from typing import Any, Callable

from attnas.arch import Architecture
from attnas.errors import AttnasError

Lookup = Callable[[Architecture], dict[str, Any]]

_FACTORIES: dict[str, Callable[[str | None], Lookup]] = {}


def register_benchmark(space: str):
    """Decorator: ``factory(data_dir) -> lookup(arch) -> {bench_<dataset>_<metric>: value}``
    for the architectures of ``space``; the factory loads its table (raising when absent)."""
    def deco(factory: Callable[[str | None], Lookup]) -> Callable[[str | None], Lookup]:
        _FACTORIES[space] = factory
        return factory
    return deco


def benchmark_spaces() -> list[str]:
    """The spaces whose architectures have a benchmark table."""
    return sorted(_FACTORIES)


def benchmark_for(space: str, data_dir: str | None) -> Lookup | None:
    """The look-up of ``space``'s table, or None when the space has none or its table is not in
    the data folder (tracking is optional, never an error)."""
    factory = _FACTORIES.get(space)
    if factory is None:
        return None
    try:
        return factory(data_dir)
    except AttnasError:
        return None


@register_benchmark("nb201")
def _nb201(data_dir: str | None) -> Lookup:
    from attnas.benchmarks.nb201 import NB201Bench

    bench = NB201Bench(data_dir)
    bench.query("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")  # loads the tables now

    def lookup(arch: Architecture) -> dict[str, Any]:
        r = bench.query(arch)
        return {f"bench_{ds}_{k}": v for ds, rec in r.items() if isinstance(rec, dict) for k, v in rec.items()}
    return lookup


@register_benchmark("macro")
def _macro(data_dir: str | None) -> Lookup:
    from attnas.benchmarks.macro import MacroBench

    bench = MacroBench(data_dir)
    bench.query("00000000")  # loads the table now

    def lookup(arch: Architecture) -> dict[str, Any]:
        r = bench.query(arch)  # mean_acc: the mean CIFAR-10 test accuracy of the table's runs
        return {"bench_cifar10_test_acc": r["mean_acc"], "bench_cifar10_test_std": r["std"],
                "bench_cifar10_rank": r["rank"], "bench_cifar10_params": r["params"],
                "bench_cifar10_flops": r["flops"], "bench_cifar10_macs": r["macs"]}
    return lookup
