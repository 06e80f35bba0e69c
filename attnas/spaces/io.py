"""Architectures in and out of files: JSON (``architecture.json``), native strings, run folders.

:func:`resolve_architecture` is the one resolver the commands and the Python API use: an
architecture from a JSON file, a text file holding a native string, a native string
(NAS-Bench-201 cell string, DARTS ``Genotype(...)``, NAS-Bench-Macro digits), or a run folder
(its ``architecture.json``), validated against its space when that can be built here.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from attnas.arch import Architecture, legacy_cost_units
from attnas.errors import ArchitectureError, AttnasError, ConfigError
from attnas.jsonio import dumps
from attnas.spaces.registry import get_space, get_space_class, guess_space_of_native

#: the file a finished search writes its architecture to, in its run folder
ARCHITECTURE_FILE = "architecture.json"


def architecture_from_dict(d: Mapping[str, Any]) -> Architecture:
    """Build an Architecture from its JSON form, through the space's parser."""
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


def save_architecture(arch: Architecture, path: str | os.PathLike) -> None:
    """Write ``arch`` as JSON (with the space's native notation when it has one)."""
    native = get_space_class(arch.space).to_native(arch)
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(dumps(arch.to_dict(native), indent=2) + "\n")  # strict JSON
    os.replace(tmp, path)


def load_architecture(spec: str | os.PathLike, space: str | None = None) -> Architecture:
    """Read an architecture from a JSON file, or parse a native string.

    ``spec`` is a path to a JSON file (as written by :func:`save_architecture`)
    or, when ``space`` is given or can be guessed, the space's native string
    (e.g. a NAS-Bench-201 cell string).
    """
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


def is_file(p: Path) -> bool:
    """``p.is_file()``, False for a name the OS refuses (a long native string is no file name)."""
    try:
        return p.is_file()
    except OSError:  # e.g. a native string longer than a file name may be
        return False


def is_dir(p: Path) -> bool:
    """``p.is_dir()``, False for a name the OS refuses."""
    try:
        return p.is_dir()
    except OSError:
        return False


def looks_like_path(spec: str) -> bool:
    """Whether ``spec`` was meant as a file name rather than a native string."""
    return (os.sep in spec or spec.startswith(".")
            or Path(spec).suffix.lower() in (".json", ".txt", ".yaml", ".yml"))


def resolve_architecture(spec: str | os.PathLike, space: str | None = None, validate: bool = True) -> Architecture:
    """The :class:`Architecture` named by ``spec``: a JSON file, a text file with a native
    string, a native string (``space`` names its space when it cannot be guessed), or a run
    folder (its ``architecture.json``); validated against its space when that can be built."""
    spec = str(spec)
    path = Path(spec)
    if is_dir(path):
        if not is_file(path / ARCHITECTURE_FILE):
            raise ConfigError(f"run folder '{path}' has no {ARCHITECTURE_FILE} (the search has not finished)")
        path, spec = path / ARCHITECTURE_FILE, str(path / ARCHITECTURE_FILE)
    if is_file(path):
        text = path.read_text()
        try:
            json.loads(text)
            arch = load_architecture(path, space=space)
        except json.JSONDecodeError:
            if path.suffix.lower() == ".json":
                arch = load_architecture(path, space=space)  # its clear "not valid JSON" error
            else:
                native = text.strip()
                arch = get_space_class(space or guess_space_of_native(native)).parse_native(native)
    elif looks_like_path(spec):
        raise ArchitectureError(f"architecture file '{spec}' does not exist")
    else:
        if space is None:
            try:
                space = guess_space_of_native(spec)
            except ArchitectureError:
                raise ArchitectureError(
                    f"'{spec[:60]}' is neither a file nor a run folder, nor an architecture string of a "
                    "known space (name its space with --space)") from None
        arch = get_space_class(space).parse_native(spec)
    if validate:
        validate_architecture(arch)
    return arch


def validate_architecture(arch: Architecture) -> None:
    """Check ``arch`` against its space (built with the run's options when recorded);
    skipped when the space cannot be built here (e.g. S1 without its data file)."""
    opts = arch.meta.get("space_options") if isinstance(arch.meta, dict) else None
    try:
        space = get_space(arch.space, **(opts if isinstance(opts, dict) else {}))
    except AttnasError:
        try:
            space = get_space(arch.space)
        except AttnasError:
            return
    space.validate(arch)
