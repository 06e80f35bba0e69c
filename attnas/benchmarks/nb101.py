"""The 500-architecture NAS-Bench-101 sample (NASLib ``zc_nasbench101.json``, 108 epochs, CIFAR-10).

Each key is a 56-tuple: the 7x7 adjacency matrix row by row (``A[i, j] = 1``:
edge i -> j, upper triangular), then 7 op codes indexing
``[input, output, maxpool3x3, conv1x1-bn-relu, conv3x3-bn-relu]``.

What the data look like (checked on the file): every key has exactly 7 node
slots, node 0 is the input and node 6 the output, but the matrices are the
*unpruned* random specs NASLib samples -- 460 of the 500 have vertices that
lie on no input->output path (a sink that is not the output, a source that is
not the input, or an isolated vertex).  NAS-Bench-101 prunes those vertices
before building the network (``ModelSpec`` pruning), so they are padding, not
nodes: :func:`prune_nb101` removes them, leaving 2..7 real nodes (and at most
9 edges, as NAS-Bench-101 requires).  After pruning, the 500 keys are 301
distinct cells; duplicates carry the accuracy of different training runs of
the same cell.
"""
from __future__ import annotations

import ast
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from attnas.benchmarks import BenchmarkFileError
from attnas.data.paths import require_file
from attnas.errors import ArchitectureError

NB101_FILE = "nasbench101/zc_nasbench101_500.json"
NB101_OPS = ("input", "output", "maxpool3x3", "conv1x1-bn-relu", "conv3x3-bn-relu")
NB101_MAX_NODES = 7
NB101_MAX_EDGES = 9


def prune_nb101(adjacency: np.ndarray, ops: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Keep the vertices on some input->output path (NAS-Bench-101 ``ModelSpec`` pruning).

    Returns the pruned adjacency and ops (node order kept, so still upper
    triangular with the input first and the output last).  Raises
    :class:`ArchitectureError` when the output is not reachable from the input.
    """
    a = np.asarray(adjacency, dtype=np.int64)
    n = a.shape[0]
    if a.ndim != 2 or a.shape != (n, n) or len(ops) != n or n < 2:
        raise ArchitectureError(f"NAS-Bench-101 cell needs an n x n adjacency and n ops, got {a.shape} and {len(ops)}")
    if np.any(np.tril(a) != 0) or not np.isin(a, (0, 1)).all():
        raise ArchitectureError("NAS-Bench-101 adjacency must be 0/1 and strictly upper triangular (a DAG in node order)")
    if ops[0] != "input" or ops[-1] != "output":
        raise ArchitectureError(f"NAS-Bench-101 cell must start with 'input' and end with 'output', got {list(ops)}")
    bad = [o for o in ops[1:-1] if o not in NB101_OPS[2:]]
    if bad:
        raise ArchitectureError(f"unknown NAS-Bench-101 operation(s) {bad}; expected one of {list(NB101_OPS[2:])}")
    fwd = {0}
    for i in range(n):
        if i in fwd:
            fwd |= {int(j) for j in np.nonzero(a[i])[0]}
    bwd = {n - 1}
    for i in range(n - 1, -1, -1):
        if i in bwd:
            bwd |= {int(j) for j in np.nonzero(a[:, i])[0]}
    live = [i for i in range(n) if i in fwd and i in bwd]
    if 0 not in live or n - 1 not in live:
        raise ArchitectureError("NAS-Bench-101 cell has no path from the input to the output")
    return a[np.ix_(live, live)].copy(), tuple(ops[i] for i in live)


@dataclass(frozen=True)
class NB101Record:
    """One row of the sample; ``adjacency``/``ops`` are the pruned cell, ``raw_*`` the key as stored."""

    key: str
    raw_adjacency: np.ndarray
    raw_ops: tuple[str, ...]
    adjacency: np.ndarray
    ops: tuple[str, ...]
    val_accuracy: float
    params: float
    flops: float

    @property
    def num_nodes(self) -> int:
        return len(self.ops)

    def to_dict(self) -> dict[str, Any]:
        return {"adjacency": self.adjacency.tolist(), "ops": list(self.ops), "val_accuracy": self.val_accuracy,
                "params": self.params, "flops": self.flops}


def decode_nb101_key(key: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """The raw (7x7 adjacency, 7 op names) of a 56-tuple key string."""
    try:
        t = ast.literal_eval(key)
        if not (isinstance(t, tuple) and len(t) == NB101_MAX_NODES ** 2 + NB101_MAX_NODES
                and all(isinstance(v, int) for v in t)):
            raise ValueError
        adj = np.array(t[:49], dtype=np.int64).reshape(7, 7)
        ops = tuple(NB101_OPS[c] for c in t[49:])
    except (ValueError, SyntaxError, IndexError, TypeError):
        raise ArchitectureError(
            f"NAS-Bench-101 key {key[:60]!r} is not a 56-tuple of ints (49 adjacency bits, 7 op codes 0..4)") from None
    return adj, ops


@functools.lru_cache(maxsize=None)
def _load(path: str, mtime: float) -> tuple[NB101Record, ...]:
    try:
        data = json.loads(Path(path).read_text())
        table = data["nasbench101"]["cifar10"]
    except json.JSONDecodeError as e:
        raise BenchmarkFileError(f"NAS-Bench-101 sample '{path}' is not valid JSON: {e}") from None
    except (KeyError, TypeError):
        raise BenchmarkFileError(f"NAS-Bench-101 sample '{path}' must hold d['nasbench101']['cifar10'][key]") from None
    out = []
    for key, rec in table.items():
        try:
            raw_a, raw_ops = decode_nb101_key(key)
            a, ops = prune_nb101(raw_a, raw_ops)
        except ArchitectureError as e:
            raise BenchmarkFileError(f"NAS-Bench-101 sample '{path}' does not match the NB101 space: {e}") from None
        if int(a.sum()) > NB101_MAX_EDGES:
            raise BenchmarkFileError(
                f"NAS-Bench-101 sample '{path}': key {key[:60]!r} has {int(a.sum())} edges after pruning "
                f"(NAS-Bench-101 allows {NB101_MAX_EDGES})")
        try:
            out.append(NB101Record(key, raw_a, raw_ops, a, ops, float(rec["val_accuracy"]),
                                   float(rec["params"]), float(rec["flops"])))
        except (KeyError, TypeError, ValueError):
            raise BenchmarkFileError(
                f"NAS-Bench-101 sample '{path}': record of {key[:60]!r} needs val_accuracy, params, flops") from None
    return tuple(out)


class NB101Sample:
    """The 500 (pruned adjacency, ops, val_accuracy, params, flops) rows, file order."""

    def __init__(self, data_dir: str | os.PathLike | None = None) -> None:
        path = require_file(NB101_FILE, data_dir, what="NAS-Bench-101 500-architecture sample")
        self.records: tuple[NB101Record, ...] = _load(str(path.resolve()), path.stat().st_mtime)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> NB101Record:
        return self.records[i]

    def accuracies(self) -> np.ndarray:
        return np.array([r.val_accuracy for r in self.records])

    def as_tuples(self) -> list[tuple[np.ndarray, tuple[str, ...], float, float, float]]:
        """``(adjacency, ops, val_accuracy, params, flops)`` per row (pruned cell)."""
        return [(r.adjacency, r.ops, r.val_accuracy, r.params, r.flops) for r in self.records]
