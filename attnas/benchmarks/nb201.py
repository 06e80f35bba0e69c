"""NAS-Bench-201 look-ups (Dong & Yang, ICLR 2020): all 15,625 cells, 200-epoch results.

Files (under the data folder)::

    nasbench201/nasbench201_cifar10.json    arch_str -> {"val_acc_200", "test_acc_200", "rank"}
    nasbench201/nasbench201_cifar100.json   same
    nasbench201/nasbench201_imagenet.json   same (ImageNet16-120)

For CIFAR-10, ``val_acc_200`` is the cifar10-valid split and ``test_acc_200``
the ori-test accuracy of the train+valid model; for the two others they are the
x-valid / x-test halves.  ``rank`` orders cells by test accuracy (1 = best).

Cells are kept in one *canonical order*: index = the base-5 number whose
digits are the candidate indices (``none, skip_connect, nor_conv_1x1,
nor_conv_3x3, avg_pool_3x3``) of the six edges in benchmark-string order
(:func:`nb201_index`).  Bulk arrays follow that order.
"""
from __future__ import annotations

import functools
import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from attnas.arch import Architecture, edge_key
from attnas.benchmarks import BenchmarkFileError
from attnas.data.paths import require_file
from attnas.errors import ArchitectureError, ConfigError
from attnas.spaces.nb201 import NB201_CANDIDATES, NB201_EDGES, NB201Space

NB201_DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
NB201_FILES = {
    "cifar10": "nasbench201/nasbench201_cifar10.json",
    "cifar100": "nasbench201/nasbench201_cifar100.json",
    "ImageNet16-120": "nasbench201/nasbench201_imagenet.json",
}
NB201_SIZE = len(NB201_CANDIDATES) ** len(NB201_EDGES)  # 15,625
_DATASET_ALIASES = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet16-120": "ImageNet16-120",
                    "imagenet16": "ImageNet16-120", "imagenet": "ImageNet16-120"}


def canonical_dataset(name: str) -> str:
    """``cifar10``, ``cifar100`` or ``ImageNet16-120`` (case-insensitive aliases accepted)."""
    try:
        return _DATASET_ALIASES[str(name).lower()]
    except KeyError:
        raise ConfigError(f"unknown NAS-Bench-201 dataset '{name}'; expected one of {list(NB201_DATASETS)}") from None


def nb201_index(arch: Architecture | str) -> int:
    """Canonical index (0..15624) of a NAS-Bench-201 cell (Architecture or cell string)."""
    a = _as_arch(arch)
    idx = 0
    for i, j in NB201_EDGES:
        idx = idx * len(NB201_CANDIDATES) + NB201_CANDIDATES.index(a.choices[edge_key("cell", i, j)])
    return idx


@functools.lru_cache(maxsize=1)
def _canonical_natives() -> tuple[str, ...]:
    out = []
    for ops in itertools.product(NB201_CANDIDATES, repeat=len(NB201_EDGES)):
        choices = {edge_key("cell", i, j): op for (i, j), op in zip(NB201_EDGES, ops)}
        out.append(NB201Space.to_native(Architecture("nb201", choices)))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def _native_to_index() -> dict[str, int]:
    return {s: n for n, s in enumerate(_canonical_natives())}


def nb201_all_architectures() -> list[Architecture]:
    """All 15,625 cells as Architectures, in canonical order."""
    return [NB201Space.parse_native(s) for s in _canonical_natives()]


def _as_arch(arch: Architecture | str) -> Architecture:
    if isinstance(arch, str):
        return NB201Space.parse_native(arch)
    if not isinstance(arch, Architecture):
        raise ArchitectureError(f"expected a NAS-Bench-201 Architecture or cell string, got {type(arch).__name__}")
    NB201Space().validate(arch)
    return arch


@functools.lru_cache(maxsize=None)
def _load_table(path: str, mtime: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(val, test, rank) arrays in canonical order; parsed once per process and file version."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise BenchmarkFileError(f"NAS-Bench-201 table '{path}' is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BenchmarkFileError(f"NAS-Bench-201 table '{path}' must be a JSON object arch_str -> record")
    index = _native_to_index()
    val = np.full(NB201_SIZE, np.nan)
    test = np.full(NB201_SIZE, np.nan)
    rank = np.zeros(NB201_SIZE, dtype=np.int64)
    for key, rec in data.items():
        n = index.get(key)
        if n is None:
            try:  # a valid cell written differently, or not a cell at all: say which
                n = index[NB201Space.to_native(NB201Space.parse_native(key))]
            except ArchitectureError as e:
                raise BenchmarkFileError(
                    f"NAS-Bench-201 table '{path}' does not match the nb201 space: key {key[:80]!r}: {e}") from None
        try:
            val[n], test[n], rank[n] = float(rec["val_acc_200"]), float(rec["test_acc_200"]), int(rec["rank"])
        except (KeyError, TypeError, ValueError):
            raise BenchmarkFileError(
                f"NAS-Bench-201 table '{path}': record of {key[:80]!r} needs numeric "
                f"'val_acc_200', 'test_acc_200' and 'rank', got {str(rec)[:120]}") from None
    missing = int(np.isnan(val).sum())
    if missing:
        raise BenchmarkFileError(
            f"NAS-Bench-201 table '{path}' covers {NB201_SIZE - missing} of the {NB201_SIZE} cells of the "
            f"nb201 space; a complete table is needed")
    return val, test, rank


class NB201Bench:
    """Look-ups in the three NAS-Bench-201 tables (files parsed lazily, cached per process)."""

    def __init__(self, data_dir: str | os.PathLike | None = None) -> None:
        self.data_dir = data_dir

    def _table(self, dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ds = canonical_dataset(dataset)
        path = require_file(NB201_FILES[ds], self.data_dir, what=f"NAS-Bench-201 {ds} table")
        return _load_table(str(path.resolve()), path.stat().st_mtime)

    # ----- single architectures ----------------------------------------
    def query(self, arch: Architecture | str, datasets: tuple[str, ...] = NB201_DATASETS) -> dict[str, Any]:
        """Validation/test accuracy (%) and rank of one cell on each dataset.

        Returns ``{"arch": cell string, "index": canonical index,
        "cifar10": {"val_acc", "test_acc", "rank"}, "cifar100": {...}, "ImageNet16-120": {...}}``.
        """
        a = _as_arch(arch)
        n = nb201_index(a)
        out: dict[str, Any] = {"arch": NB201Space.to_native(a), "index": n}
        for ds in datasets:
            val, test, rank = self._table(ds)
            out[canonical_dataset(ds)] = {"val_acc": float(val[n]), "test_acc": float(test[n]),
                                          "rank": int(rank[n])}
        return out

    def lookup(self, arch: Architecture | str | int, dataset: str = "cifar10", split: str = "test") -> float:
        """One accuracy: ``split`` is ``val`` or ``test``; ``arch`` may be a canonical index."""
        n = arch if isinstance(arch, (int, np.integer)) else nb201_index(arch)
        if not 0 <= int(n) < NB201_SIZE:
            raise ArchitectureError(f"NAS-Bench-201 index {n} is outside 0..{NB201_SIZE - 1}")
        return float(self.accuracies(dataset, split)[int(n)])

    # ----- bulk ----------------------------------------------------------
    def accuracies(self, dataset: str = "cifar10", split: str = "test") -> np.ndarray:
        """Accuracy of all 15,625 cells in canonical order (a read-only view)."""
        val, test, _ = self._table(dataset)
        if split not in ("val", "test"):
            raise ConfigError(f"split must be 'val' or 'test', got '{split}'")
        arr = (val if split == "val" else test).view()
        arr.flags.writeable = False
        return arr

    def ranks(self, dataset: str = "cifar10") -> np.ndarray:
        """The table's test-accuracy rank (1 = best) of all cells, canonical order."""
        return self._table(dataset)[2].copy()

    @staticmethod
    def natives() -> list[str]:
        """All cell strings in canonical order."""
        return list(_canonical_natives())

    @staticmethod
    def architectures() -> list[Architecture]:
        """All cells as Architectures in canonical order."""
        return nb201_all_architectures()

    def best(self, dataset: str = "cifar10", split: str = "test") -> dict[str, Any]:
        """The optimum of ``split`` accuracy on ``dataset`` (first in canonical order on ties)."""
        acc = self.accuracies(dataset, split)
        n = int(np.argmax(acc))
        return {"arch": _canonical_natives()[n], "index": n, "dataset": canonical_dataset(dataset),
                "split": split, "accuracy": float(acc[n])}
