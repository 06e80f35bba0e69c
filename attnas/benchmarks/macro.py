"""NAS-Bench-Macro look-ups (Su et al., 2021): 6,561 chains of 8 layers on CIFAR-10.

File: ``nasbench_macro/nas-bench-macro_cifar10.json``; key = 8 characters over
``{0,1,2}`` (one per layer: 0 identity, 1 MB3_K3, 2 MB6_K5), value =
``{"test_acc": [3 runs], "mean_acc", "std", "params", "flops"}``.  The table's ``flops`` are
multiply-accumulates (equal to :mod:`attnas.profile`'s MAC count, tested): look-ups report them
as ``macs`` and ``flops`` = 2 x MACs, attnas's unit; :meth:`MacroBench.array` gives the
table's columns, ``"macs"`` being the table's ``flops`` column.

``rank`` is the competition rank by mean accuracy among all 6,561 keys
(1 = best; tied keys share the smallest rank -- architectures that differ only
by where identities sit inside a stage carry the same result).
"""
from __future__ import annotations

import functools
import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from attnas.arch import Architecture
from attnas.benchmarks import BenchmarkFileError
from attnas.data.paths import require_file
from attnas.errors import ArchitectureError, ConfigError

MACRO_FILE = "nasbench_macro/nas-bench-macro_cifar10.json"
MACRO_LAYERS = 8
MACRO_DIGITS = "012"
MACRO_SIZE = len(MACRO_DIGITS) ** MACRO_LAYERS  # 6,561


def check_macro_string(text: str) -> str:
    """Return ``text`` stripped if it is 8 characters over {0,1,2}, else raise ArchitectureError."""
    s = str(text).strip()
    if len(s) != MACRO_LAYERS or any(c not in MACRO_DIGITS for c in s):
        raise ArchitectureError(
            f"'{text}' is not a NAS-Bench-Macro architecture: expected {MACRO_LAYERS} characters over "
            f"{{0,1,2}} (0 identity, 1 MB3_K3, 2 MB6_K5), e.g. '11111221'")
    return s


def macro_string(arch: Architecture | str) -> str:
    """The 8-digit string of a macro architecture (string, or Architecture of a chain space)."""
    if isinstance(arch, str):
        return check_macro_string(arch)
    if not isinstance(arch, Architecture):
        raise ArchitectureError(f"expected an 8-digit string or an Architecture, got {type(arch).__name__}")
    from attnas.spaces.registry import get_space_class

    native = get_space_class(arch.space).to_native(arch)
    if not isinstance(native, str):
        raise ArchitectureError(
            f"an architecture of space '{arch.space}' has no NAS-Bench-Macro string; "
            "give the 8-digit string or an architecture of the macro chain space")
    return check_macro_string(native)


@functools.lru_cache(maxsize=1)
def _all_keys() -> tuple[str, ...]:
    return tuple("".join(t) for t in itertools.product(MACRO_DIGITS, repeat=MACRO_LAYERS))


@functools.lru_cache(maxsize=None)
def _load(path: str, mtime: float) -> dict[str, np.ndarray]:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise BenchmarkFileError(f"NAS-Bench-Macro table '{path}' is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BenchmarkFileError(f"NAS-Bench-Macro table '{path}' must be a JSON object key -> record")
    keys = _all_keys()
    pos = {k: n for n, k in enumerate(keys)}
    cols = {c: np.full(MACRO_SIZE, np.nan) for c in ("mean_acc", "std", "params", "flops")}
    runs = np.full((MACRO_SIZE, 3), np.nan)
    for key, rec in data.items():
        if key not in pos:
            raise BenchmarkFileError(
                f"NAS-Bench-Macro table '{path}' does not match the macro space: key {key[:40]!r} "
                f"is not {MACRO_LAYERS} characters over {{0,1,2}}")
        n = pos[key]
        try:
            for c in cols:
                cols[c][n] = float(rec[c])
            r = [float(v) for v in rec["test_acc"]]
            runs[n, :len(r)] = r[:3]
        except (KeyError, TypeError, ValueError):
            raise BenchmarkFileError(
                f"NAS-Bench-Macro table '{path}': record of {key!r} needs test_acc (list), mean_acc, std, "
                f"params and flops, got {str(rec)[:120]}") from None
    missing = int(np.isnan(cols["mean_acc"]).sum())
    if missing:
        raise BenchmarkFileError(
            f"NAS-Bench-Macro table '{path}' covers {MACRO_SIZE - missing} of the {MACRO_SIZE} architectures")
    cols["rank"] = rankdata(-cols["mean_acc"], method="min").astype(np.int64)
    cols["test_acc"] = runs
    return cols


class MacroBench:
    """Look-ups in the NAS-Bench-Macro table (parsed once per process)."""

    def __init__(self, data_dir: str | os.PathLike | None = None) -> None:
        self.data_dir = data_dir

    def _cols(self) -> dict[str, np.ndarray]:
        path = require_file(MACRO_FILE, self.data_dir, what="NAS-Bench-Macro table")
        return _load(str(path.resolve()), path.stat().st_mtime)

    @staticmethod
    def keys() -> list[str]:
        """All 6,561 strings in lexicographic (canonical) order."""
        return list(_all_keys())

    def query(self, arch: Architecture | str) -> dict[str, Any]:
        """``{"arch", "mean_acc", "std", "test_acc" (3 runs), "params", "flops" (2 x MACs), "macs", "rank",
        "of"}``."""
        s = macro_string(arch)
        cols = self._cols()
        n = int(s, 3)  # lexicographic order == base-3 value
        runs = [float(v) for v in cols["test_acc"][n] if not np.isnan(v)]
        return {"arch": s, "mean_acc": float(cols["mean_acc"][n]), "std": float(cols["std"][n]),
                "test_acc": runs, "params": int(cols["params"][n]), "flops": 2 * int(cols["flops"][n]),
                "macs": int(cols["flops"][n]),
                "rank": int(cols["rank"][n]), "of": MACRO_SIZE}

    def array(self, column: str = "mean_acc") -> np.ndarray:
        """One column (mean_acc, std, params, macs, flops = 2 x macs, rank) for all keys in canonical order."""
        cols = self._cols()
        if column == "macs":
            return cols["flops"].copy()
        if column == "flops":
            return 2 * cols["flops"]
        if column not in cols or column == "test_acc":
            raise ConfigError(f"unknown column '{column}'; expected mean_acc, std, params, macs, flops or rank")
        return cols[column].copy()

    def best(self) -> dict[str, Any]:
        """The architecture with the highest mean accuracy."""
        return self.query(_all_keys()[int(np.argmax(self._cols()["mean_acc"]))])
