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

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from attnas.errors import ArchitectureError

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


def architecture_from_dict(d: Mapping[str, Any]) -> Architecture:
    """Build an Architecture from its JSON form, through the space's parser."""
    from attnas.spaces.registry import get_space_class  # lazy: spaces import this module

    if not isinstance(d, Mapping) or "space" not in d:
        raise ArchitectureError(
            "architecture JSON must be an object with a 'space' field and 'choices' or 'native'")
    if not isinstance(d["space"], str):
        raise ArchitectureError(f"architecture JSON: 'space' must be a space name, got {d['space']!r}")
    if not isinstance(d.get("meta", {}), Mapping):
        raise ArchitectureError(f"architecture JSON: 'meta' must be an object, got {d['meta']!r}")
    if "native" in d and "choices" not in d and not isinstance(d["native"], str):
        raise ArchitectureError(f"architecture JSON: 'native' must be a string, got {d['native']!r}")
    space_cls = get_space_class(str(d["space"]))
    if "choices" in d:
        choices = d["choices"]
        if not isinstance(choices, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in choices.items()):
            raise ArchitectureError("'choices' must map choice-point keys to operation names")
        arch = Architecture(str(d["space"]), dict(choices), dict(d.get("meta", {})))
    elif "native" in d:
        arch = space_cls.parse_native(str(d["native"]))
        arch.meta = dict(d.get("meta", {}))
    else:
        raise ArchitectureError("architecture JSON needs 'choices' or 'native'")
    arch.meta = legacy_cost_units(arch.meta)
    return arch


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


def save_architecture(arch: Architecture, path: str | os.PathLike) -> None:
    """Write ``arch`` as JSON (with the space's native notation when it has one)."""
    from attnas.spaces.registry import get_space_class

    native = get_space_class(arch.space).to_native(arch)
    tmp = Path(str(path) + ".tmp")
    from attnas.jsonio import dumps

    tmp.write_text(dumps(arch.to_dict(native), indent=2) + "\n")  # strict JSON
    os.replace(tmp, path)


def load_architecture(spec: str | os.PathLike, space: str | None = None) -> Architecture:
    """Read an architecture from a JSON file, or parse a native string.

    ``spec`` is a path to a JSON file (as written by :func:`save_architecture`)
    or, when ``space`` is given or can be guessed, the space's native string
    (e.g. a NAS-Bench-201 cell string).
    """
    from attnas.spaces.registry import get_space_class, guess_space_of_native

    text = str(spec)
    path = Path(text)
    try:
        is_file = path.is_file()
    except OSError:  # e.g. a long native string is no file name
        is_file = False
    if path.suffix == ".json" or is_file:
        if not path.is_file():
            raise ArchitectureError(f"architecture file '{path}' does not exist")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ArchitectureError(f"architecture file '{path}' is not valid JSON: {e}") from None
        if isinstance(d, str):
            text = d
        else:
            if space is not None and isinstance(d, dict) and "space" not in d:
                d = {**d, "space": space}
            return architecture_from_dict(d)
    name = space or guess_space_of_native(text)
    return get_space_class(name).parse_native(text)
