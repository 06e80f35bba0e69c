"""214 DARTS-space genotypes with their CIFAR-10 test accuracy (Yang et al., ICLR 2020).

File: ``darts_space/214genotypes.json`` = ``[{"genotype": "Genotype(...)", "test_acc": 97.06}, ...]``.
The genotype lists are grouped per node (``normal=[[(op, in), (op, in)], ...]``);
the flat DARTS form (``normal=[(op, in), ...]``, two entries per node) is
accepted too.  :func:`parse_genotype` reads the string without ``eval``.
"""
from __future__ import annotations

import ast
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnas.arch import Architecture, edge_key
from attnas.benchmarks import BenchmarkFileError
from attnas.data.paths import require_file
from attnas.errors import ArchitectureError, ConfigError

DARTS214_FILE = "darts_space/214genotypes.json"
DARTS_CELLS = ("normal", "reduce")
DARTS_N_INPUTS, DARTS_N_NODES = 2, 4
DARTS_EDGE_LIST = [(i, j) for j in range(DARTS_N_INPUTS, DARTS_N_INPUTS + DARTS_N_NODES) for i in range(j)]

Pair = tuple[str, int]


@dataclass(frozen=True)
class Genotype:
    """A DARTS genotype: per cell type, ``(op, input)`` pairs in node order (two per node)."""

    normal: tuple[Pair, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Pair, ...]
    reduce_concat: tuple[int, ...]

    def cell(self, name: str) -> tuple[Pair, ...]:
        return self.normal if name == "normal" else self.reduce


def _flatten_pairs(value: Any, where: str) -> tuple[Pair, ...]:
    if not isinstance(value, (list, tuple)):
        raise ArchitectureError(f"genotype field '{where}' must be a list of (op, input) pairs")
    flat: list[Any] = []
    for item in value:
        if isinstance(item, (list, tuple)) and item and all(isinstance(x, (list, tuple)) for x in item):
            flat.extend(item)  # grouped per node
        else:
            flat.append(item)
    out = []
    for p in flat:
        if not (isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], int)):
            raise ArchitectureError(f"genotype field '{where}': entry {p!r} is not an (op, input) pair")
        out.append((p[0], int(p[1])))
    if len(out) != 2 * DARTS_N_NODES:
        raise ArchitectureError(
            f"genotype field '{where}' has {len(out)} (op, input) pairs, expected {2 * DARTS_N_NODES} "
            f"(two per intermediate node)")
    return tuple(out)


def _concat(node: ast.AST | None, where: str) -> tuple[int, ...]:
    if node is None:
        return tuple(range(DARTS_N_INPUTS, DARTS_N_INPUTS + DARTS_N_NODES))
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"
            and not node.keywords):
        args = [ast.literal_eval(a) for a in node.args]
        return tuple(range(*args))
    value = ast.literal_eval(node)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
        raise ArchitectureError(f"genotype field '{where}' must be range(a, b) or a list of node indices")
    return tuple(value)


def parse_genotype(text: str) -> Genotype:
    """Parse ``Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)`` safely."""
    try:
        call = ast.parse(str(text).strip(), mode="eval").body
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Genotype"):
            raise ValueError("not a Genotype(...) call")
        kw = {k.arg: k.value for k in call.keywords}
        if "normal" not in kw or "reduce" not in kw:
            raise ValueError("missing normal= or reduce=")
        normal = _flatten_pairs(ast.literal_eval(kw["normal"]), "normal")
        reduce = _flatten_pairs(ast.literal_eval(kw["reduce"]), "reduce")
        nc = _concat(kw.get("normal_concat"), "normal_concat")
        rc = _concat(kw.get("reduce_concat"), "reduce_concat")
    except (SyntaxError, ValueError, TypeError) as e:
        raise ArchitectureError(
            f"cannot parse DARTS genotype {str(text)[:80]!r} ({e}); expected "
            "Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), reduce=[...], "
            "reduce_concat=range(2, 6))") from None
    return Genotype(normal, nc, reduce, rc)


def genotype_to_architecture(genotype: Genotype | str, space: str = "darts") -> Architecture:
    """Edge-keyed Architecture: the listed edges get their op, every other edge ``none``."""
    g = parse_genotype(genotype) if isinstance(genotype, str) else genotype
    choices = {edge_key(c, i, j): "none" for c in DARTS_CELLS for i, j in DARTS_EDGE_LIST}
    for c in DARTS_CELLS:
        for n, (op, src) in enumerate(g.cell(c)):
            j = DARTS_N_INPUTS + n // 2
            if not 0 <= src < j:
                raise ArchitectureError(f"genotype {c} node {j}: input {src} must be in 0..{j - 1}")
            if op == "none":
                raise ArchitectureError(f"genotype {c} node {j}: 'none' is not an operation of a derived cell")
            key = edge_key(c, src, j)
            if choices[key] != "none":
                raise ArchitectureError(f"genotype {c} node {j} takes input {src} twice; an edge holds one operation")
            choices[key] = op
        concat = g.normal_concat if c == "normal" else g.reduce_concat
        if tuple(concat) != tuple(range(DARTS_N_INPUTS, DARTS_N_INPUTS + DARTS_N_NODES)):
            raise ArchitectureError(f"genotype {c}_concat={list(concat)}: the DARTS space concatenates nodes 2..5")
    arch = Architecture(space, choices)
    from attnas.spaces.registry import get_space

    try:
        sp = get_space(space)
    except ConfigError:  # space not registered: the structural checks above stand
        return arch
    sp.validate(arch)
    return arch


@dataclass(frozen=True)
class DartsRecord:
    genotype: str
    architecture: Architecture
    test_acc: float


@functools.lru_cache(maxsize=None)
def _load(path: str, mtime: float) -> tuple[DartsRecord, ...]:
    try:
        rows = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise BenchmarkFileError(f"DARTS-214 file '{path}' is not valid JSON: {e}") from None
    if not isinstance(rows, list):
        raise BenchmarkFileError(f"DARTS-214 file '{path}' must be a list of {{genotype, test_acc}}")
    out = []
    for n, row in enumerate(rows):
        try:
            text, acc = row["genotype"], float(row["test_acc"])
        except (KeyError, TypeError, ValueError):
            raise BenchmarkFileError(f"DARTS-214 file '{path}': row {n} needs 'genotype' and numeric 'test_acc'") from None
        try:
            arch = genotype_to_architecture(text)
        except ArchitectureError as e:
            raise BenchmarkFileError(f"DARTS-214 file '{path}' row {n} does not match the DARTS space: {e}") from None
        out.append(DartsRecord(text, arch, acc))
    return tuple(out)


class Darts214:
    """The 214 (genotype, Architecture, test_acc) rows, file order."""

    def __init__(self, data_dir: str | os.PathLike | None = None) -> None:
        path = require_file(DARTS214_FILE, data_dir, what="DARTS-214 genotype table")
        self.records: tuple[DartsRecord, ...] = _load(str(path.resolve()), path.stat().st_mtime)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> DartsRecord:
        return self.records[i]

    def architectures(self) -> list[Architecture]:
        return [r.architecture for r in self.records]

    def accuracies(self) -> list[float]:
        return [r.test_acc for r in self.records]

    def cells(self, i: int) -> tuple[list[Pair], list[Pair]]:
        """``(normal, reduce)`` lists of (op, input) pairs of row ``i``."""
        g = parse_genotype(self.records[i].genotype)
        return list(g.normal), list(g.reduce)
