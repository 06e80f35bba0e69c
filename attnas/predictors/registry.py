"""Name -> performance predictor registry, as spaces (:mod:`attnas.spaces.registry`) and
strategies (:mod:`attnas.strategies.base`) register.

A predictor is a :class:`attnas.predictors.train.NeuralPredictor` subclass taking
``(encoder, config, seed)``; ``@register_predictor(name, preset=Config())`` makes it available
under ``name`` with ``preset`` (a dataclass instance) as its default configuration, and
:func:`get_predictor` builds it with some preset fields overridden.
"""
from __future__ import annotations

from typing import Any

from attnas.errors import ConfigError
from attnas.predictors.train import override

_PREDICTORS: dict[str, tuple[type, Any]] = {}

#: modules whose import registers the built-in predictors (one line per module)
BUILTIN_PREDICTOR_MODULES = [
    "attnas.predictors.tnasp",
    "attnas.predictors.baselines",
]


def register_predictor(name: str, preset: Any):
    """Class decorator: make a predictor available as ``name`` with default configuration ``preset``."""

    def deco(cls):
        if name in _PREDICTORS and _PREDICTORS[name][0] is not cls:
            raise ConfigError(f"a different predictor is already registered as '{name}'")
        _PREDICTORS[name] = (cls, preset)
        return cls

    return deco


def _load_builtin() -> None:
    import importlib

    for mod in BUILTIN_PREDICTOR_MODULES:
        importlib.import_module(mod)


def predictor_names() -> list[str]:
    """Every registered predictor."""
    _load_builtin()
    return sorted(_PREDICTORS)


def predictor_preset(name: str) -> Any:
    """The default configuration of predictor ``name``."""
    names = predictor_names()
    key = str(name).lower()
    if key not in _PREDICTORS:
        raise ConfigError(f"unknown predictor '{name}'; expected one of {names}")
    return _PREDICTORS[key][1]


def get_predictor(name: str, encoder, seed: int = 0, /, **options: Any):
    """Predictor ``name`` (case-insensitive) on ``encoder`` with its preset, ``options`` changing
    preset fields (an unknown or ill-typed one is a ConfigError)."""
    preset = predictor_preset(name)
    cls = _PREDICTORS[str(name).lower()][0]
    return cls(encoder, override(preset, options), seed)
