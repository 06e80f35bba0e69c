"""Name -> search-space class registry."""
from __future__ import annotations

from typing import Any, Callable

from attnas.errors import ArchitectureError, ConfigError

_SPACES: dict[str, type] = {}
_NATIVE_GUESSERS: list[tuple[Callable[[str], bool], str]] = []


def register_space(name: str, native_guess: Callable[[str], bool] | None = None):
    """Class decorator: make a space available under ``name``."""

    def deco(cls):
        cls.name = name
        _SPACES[name] = cls
        if native_guess is not None:
            _NATIVE_GUESSERS.append((native_guess, name))
        return cls

    return deco


#: modules whose import registers the built-in spaces (one line per space module)
BUILTIN_SPACE_MODULES = [
    "attnas.spaces.darts",
    "attnas.spaces.nb201",
    "attnas.spaces.chain",
    "attnas.spaces.macro",
    "attnas.spaces.nos",
    "attnas.spaces.trionet",
]


def _load_builtin() -> None:
    import importlib

    for mod in BUILTIN_SPACE_MODULES:
        importlib.import_module(mod)


def space_names() -> list[str]:
    _load_builtin()
    return sorted(_SPACES)


def get_space_class(name: str) -> type:
    _load_builtin()
    try:
        return _SPACES[name]
    except KeyError:
        raise ConfigError(f"unknown space '{name}'; expected one of {sorted(_SPACES)}") from None


def get_space(name: str, data_dir: str | None = None, **options: Any):
    """Instantiate space ``name`` with ``options`` (an unknown option is a ConfigError).

    ``data_dir`` is passed to spaces that read a file (e.g. S1's edge list)."""
    import inspect

    cls = get_space_class(name)
    if data_dir is not None and "data_dir" in inspect.signature(cls.__init__).parameters:
        options = {**options, "data_dir": data_dir}
    try:
        return cls(**options)
    except TypeError as e:
        raise ConfigError(f"bad option for space '{name}': {e}") from None


def guess_space_of_native(text: str) -> str:
    _load_builtin()
    for guess, name in _NATIVE_GUESSERS:
        if guess(text):
            return name
    raise ArchitectureError(
        f"cannot tell the space of '{text[:60]}': give a JSON architecture file or name the space")
