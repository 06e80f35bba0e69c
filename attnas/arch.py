"""Architectures as plain, validated data.

An :class:`Architecture` assigns one candidate operation to every choice point
of a search space, keyed by the choice point's ``key``:

* cell spaces (DARTS, S1-S4, NAS-Bench-201, NOS): one key per edge,
  ``"<cell>:<src>-><dst>"`` (e.g. ``"normal:0->2"``); an edge that the derived
  cell does not use is assigned ``"none"``.  This covers the DARTS rule (two
  inputs per node), NAS-Bench-201 (every edge) and flexible topologies
  (EnTranNAS-DST: any number of inputs per node) with one format.
* chain spaces (ProxylessNAS, NAS-Bench-Macro, TrioNet): one key per layer,
  ``"layer:<i>"``.

JSON form (what ``architecture.json`` holds)::

    {"space": "nb201", "choices": {"cell:0->1": "nor_conv_3x3", ...},
     "native": "|nor_conv_3x3~0|+|...|", "meta": {...}}

``native`` is the space's own notation (NAS-Bench-201 string, DARTS
``Genotype(...)``, NAS-Bench-Macro digits); when reading, either ``choices``
or ``native`` is enough.  Validation against the space is done by
:meth:`attnas.spaces.base.SearchSpace.validate`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from attnas.errors import ArchitectureError, ConfigError

_EDGE_RE = re.compile(r"^(?P<cell>[A-Za-z0-9_]+):(?P<src>\d+)->(?P<dst>\d+)$")


def edge_key(cell: str, src: int, dst: int) -> str:
    """Key of the edge ``src -> dst`` in cell type ``cell``."""
    return f"{cell}:{src}->{dst}"


def parse_edge_key(key: str) -> tuple[str, int, int]:
    """Inverse of :func:`edge_key`: ``"normal:0->2" -> ("normal", 0, 2)``."""
    m = _EDGE_RE.match(key)
    if not m:
        raise ArchitectureError(f"'{key}' is not an edge key; expected '<cell>:<src>-><dst>'")
    return m["cell"], int(m["src"]), int(m["dst"])


def layer_key(index: int) -> str:
    """Key of layer ``index`` of a chain space."""
    return f"layer:{index}"


@dataclass
class Architecture:
    """One point of a search space: an operation per choice point."""

    space: str
    choices: dict[str, str]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, native: str | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"space": self.space, "choices": dict(self.choices)}
        if native is not None:
            d["native"] = native
        if self.meta:
            d["meta"] = self.meta
        return d

    def active(self) -> dict[str, str]:
        """The choices whose operation is not ``none``."""
        return {k: v for k, v in self.choices.items() if v != "none"}

    def edges(self, cell: str | None = None) -> list[tuple[str, int, int, str]]:
        """``(cell, src, dst, op)`` of every edge key, ``none`` included, sorted."""
        out = []
        for k, op in self.choices.items():
            if ":" in k and "->" in k:
                c, s, d = parse_edge_key(k)
                if cell is None or c == cell:
                    out.append((c, s, d, op))
        return sorted(out, key=lambda e: (e[0], e[2], e[1]))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Architecture) and self.space == other.space
                and self.choices == other.choices)

    def __hash__(self) -> int:
        return hash((self.space, tuple(sorted(self.choices.items()))))


def legacy_cost_units(meta: dict[str, Any]) -> dict[str, Any]:
    """Meta of an ``architecture.json`` written before costs had units: its ``flops`` (and
    ``flops_budget``) counted multiply-accumulates; they are read as ``macs`` (``macs_budget``)
    and ``flops`` becomes 2 x MACs (:mod:`attnas.profile`).  New files hold both keys."""
    if not isinstance(meta, dict) or "flops" not in meta or "macs" in meta:
        return meta
    out = dict(meta)
    macs = out.pop("flops")
    out["macs"] = macs
    if isinstance(macs, (int, float)) and not isinstance(macs, bool):
        out["flops"] = 2 * macs
    if "flops_budget" in out and "macs_budget" not in out:
        out["macs_budget"] = out.pop("flops_budget")
        out["flops_budget"] = None
    return out


@dataclass(frozen=True)
class CellInfo:
    """How the nodes of a cell type are read.

    n_inputs:     nodes ``0 .. n_inputs-1`` are the cell's inputs.
    output:       ``"concat"`` (an extra output node fed by every non-input
                  node, DARTS) or ``"last"`` (the last node is the output,
                  NAS-Bench-201).
    input_labels: labels of the input nodes (matplotlib mathtext allowed);
                  default ``in`` / ``in0, in1, ...``.
    output_label: label of the output node.
    concat_nodes: the nodes the ``"concat"`` output reads (default: every
                  non-input node; NOS concatenates only its inner nodes 3, 5, 7, 9).
    """

    n_inputs: int
    output: str = "concat"
    input_labels: tuple[str, ...] = ()
    output_label: str = "out"
    concat_nodes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.n_inputs < 1:
            raise ConfigError(f"a cell needs at least one input node, got n_inputs={self.n_inputs}")
        if self.output not in ("concat", "last"):
            raise ConfigError(f"CellInfo.output must be 'concat' or 'last', got '{self.output}'")

    def input_label(self, i: int) -> str:
        if i < len(self.input_labels):
            return self.input_labels[i]
        return "in" if self.n_inputs == 1 else f"in{i}"
