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
    params = inspect.signature(cls.__init__).parameters
    check_space_options(name, options)
    if data_dir is not None and "data_dir" in params:
        options = {**options, "data_dir": data_dir}
    try:
        return cls(**options)
    except (TypeError, ValueError, ArithmeticError) as e:  # a value the space cannot take
        raise ConfigError(f"bad option for space '{name}': {' '.join(str(e).split())}") from None


def check_space_options(name: str, options: Any) -> None:
    """The option names of space ``name`` and, where its constructor declares them, their types
    (an ``int`` option must be a positive integer, a ``float`` a finite number, a ``bool`` true or
    false, a ``str`` a string): a one-line :class:`ConfigError` naming the option and the space,
    never the space's Python class."""
    import inspect
    import math
    import typing

    if not isinstance(options, dict):
        raise ConfigError(f"options of space '{name}' must be a JSON object, got {options!r}")
    cls = get_space_class(name)
    params = {k: v for k, v in inspect.signature(cls.__init__).parameters.items()
              if k not in ("self", "data_dir") and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)}
    unknown = sorted(set(options) - set(params))
    if unknown:
        expected = f"expected some of {sorted(params)}" if params else "it takes no options"
        raise ConfigError(f"bad option for space '{name}': unknown option(s) {unknown}; {expected}")
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - unresolvable annotations are not checked
        hints = {}
    for key, value in options.items():
        hint = hints.get(key)
        ok = True
        if hint is bool:
            ok, what = isinstance(value, bool), "true or false"
        elif hint is int:
            ok = not isinstance(value, bool) and isinstance(value, int) and value >= 1
            what = "a positive integer"
        elif hint is float:
            ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
                  and value > 0)
            what = "a positive number"
        elif hint is str:
            ok, what = isinstance(value, str), "a string"
        if not ok:
            raise ConfigError(f"bad option for space '{name}': '{key}' must be {what}, got {value!r}")


def guess_space_of_native(text: str) -> str:
    _load_builtin()
    for guess, name in _NATIVE_GUESSERS:
        if guess(text):
            return name
    raise ArchitectureError(
        f"cannot tell the space of '{text[:60]}': give a JSON architecture file or name the space")
