"""Run configurations: dataclasses, loaded from flags and an optional JSON/YAML file.

Precedence: command-line flag > ``--config FILE`` > dataclass default >
the method's preset (for epochs, batch size and hyper-parameters).  The fully
resolved config is written to ``RUN_DIR/config.json``.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from attnas.errors import ConfigError


@dataclass
class SearchConfig:
    """An architecture search.  ``method_options`` override fields of the method's
    preset (see :mod:`attnas.presets`); ``space_options`` are the space's
    constructor options (e.g. ``{"C": 16, "N": 5}`` for nb201)."""

    space: str = "nb201"
    method: str = "itnas"
    dataset: str = "digits"
    data_dir: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    seed: int = 0
    out: str | None = None
    space_options: dict[str, Any] = field(default_factory=dict)
    method_options: dict[str, Any] = field(default_factory=dict)
    train_subset: int | None = None
    test_subset: int | None = None
    image_size: int | None = None
    device: str = "auto"
    #: mixed precision (float16 + loss scaling on CUDA, bfloat16 on CPU): attnas.training.accel
    amp: bool = False
    #: also checkpoint after every this many training steps of an epoch (0: at epoch ends only)
    checkpoint_every: int = 0


#: What ``attnas search`` with no arguments runs (``make search``): IT-NAS on the NAS-Bench-201
#: space over scikit-learn's digits, with a cell stack small enough (C=8, one cell per stage) to
#: finish in about two minutes on a 2-core CPU (``docs/benchmarks.md``).  Applied only to the
#: fields the user left unset; giving ``--space``, ``--dataset``, ``--epochs`` or
#: ``--space-options`` turns it off (then the method's preset decides, e.g. 50 epochs).
EMBEDDED_DEFAULT: dict[str, Any] = {"space": "nb201", "method": "itnas", "dataset": "digits",
                                    "epochs": 10, "space_options": {"C": 8, "N": 1}}


def embedded_default_applies(**given: Any) -> bool:
    """True when none of the options that define a search's scale were given."""
    return all(given.get(k) in (None, {}) for k in ("space", "dataset", "epochs", "space_options", "config"))


@dataclass
class TrainConfig:
    """Retraining a derived architecture (``options`` override the retraining recipe;
    ``network_options`` go to ``space.build_network``, e.g. ``{"C": 36, "layers": 20}`` for
    DARTS).  ``recipe``: a name of :data:`attnas.presets.RETRAIN_RECIPES`; None picks the recipe
    of the method that found the architecture (its ``meta["method"]``), and the resolved name is
    what ``config.json`` records.  ``init_from``: a search run (the architecture's weights
    inherited from its supernet), a training run or a weights file to start from instead of
    fresh weights."""

    arch: str = ""
    dataset: str = "digits"
    data_dir: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    seed: int = 0
    out: str | None = None
    space_options: dict[str, Any] = field(default_factory=dict)
    network_options: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    train_subset: int | None = None
    test_subset: int | None = None
    image_size: int | None = None
    device: str = "auto"
    #: mixed precision (float16 + loss scaling on CUDA, bfloat16 on CPU): attnas.training.accel
    amp: bool = False
    #: also checkpoint after every this many training steps of an epoch (0: at epoch ends only)
    checkpoint_every: int = 0
    #: torch.compile backend of the training forward ("inductor", "aot_eager", ...); None = eager
    compile: str | None = None
    recipe: str | None = None
    init_from: str | None = None


def config_defaults(cls) -> dict[str, Any]:
    """The plain default of every field of a config dataclass (the value a run recorded before the
    field existed had)."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def read_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist")
    text = p.read_text()
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error is the user's file
        raise ConfigError(f"cannot parse config file '{p}': {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{p}' must hold a mapping of option names to values")
    return data


def make_config(cls, file: str | Path | None = None, **overrides: Any):
    """``cls`` from defaults, then the config file, then non-None ``overrides``."""
    known = {f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    if file:
        data = read_config_file(file)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown} in '{file}'; expected some of {sorted(known)}")
        values.update(data)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)


#: the largest accepted ``image_size`` (every image is held in memory at that size)
MAX_IMAGE_SIZE = 1024
#: the largest accepted ``seed`` (seeds are mixed into 64-bit generator seeds)
MAX_SEED = 2**32 - 1
#: fields that must be positive integers when given (None = the preset's / the data's own)
_POSITIVE_INTS = ("epochs", "batch_size", "train_subset", "test_subset", "image_size")
_NAMES = ("space", "method", "dataset", "device", "arch")
_OPTION_DICTS = ("space_options", "method_options", "network_options", "options")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_config(cfg) -> None:
    """Check the types and ranges of a run config's fields before anything runs or is written:
    a one-line :class:`ConfigError` naming the option (``--epochs must be a positive integer, got 0``).
    Path-like ``out`` / ``data_dir`` / ``arch`` become strings."""
    names = {f.name for f in fields(cfg)}
    for name in _POSITIVE_INTS:
        if name in names:
            v = getattr(cfg, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{_flag(name)} must be a positive integer, got {v!r}")
    if getattr(cfg, "image_size", None) is not None and cfg.image_size > MAX_IMAGE_SIZE:
        raise ConfigError(f"--image-size must be at most {MAX_IMAGE_SIZE}, got {cfg.image_size}")
    v = getattr(cfg, "checkpoint_every", 0)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ConfigError(f"--checkpoint-every must be a non-negative integer (training steps; 0 = at epoch "
                          f"ends only), got {v!r}")
    if "seed" in names:
        v = cfg.seed
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SEED:
            raise ConfigError(f"--seed must be an integer from 0 to {MAX_SEED}, got {v!r}")
    for name in ("out", "data_dir", "arch", "init_from"):
        v = getattr(cfg, name, None)
        if isinstance(v, Path):
            setattr(cfg, name, str(v))
    for name in _NAMES:
        if name in names and (not isinstance(getattr(cfg, name), str) or not getattr(cfg, name).strip()):
            if name == "arch" and getattr(cfg, name) == "":
                continue  # reported by train(): no architecture given
            raise ConfigError(f"{_flag(name)} must be a non-empty string, got {getattr(cfg, name)!r}")
    for name in ("out", "data_dir", "compile", "recipe", "init_from"):
        v = getattr(cfg, name, None)
        if name in names and v is not None and (not isinstance(v, str) or not v.strip()):
            raise ConfigError(f"{_flag(name)} must be a non-empty string, got {v!r}")
    for name in _OPTION_DICTS:
        if name in names:
            v = getattr(cfg, name)
            if v is None:
                setattr(cfg, name, {})
            elif not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
                raise ConfigError(f"{_flag(name)} must be a JSON object of option names to values, got {v!r}")
    if "amp" in names and not isinstance(cfg.amp, bool):
        raise ConfigError(f"--amp must be true or false, got {cfg.amp!r}")


def check_stop_after(stop_after: Any) -> None:
    """``--stop-after N``: None or a positive integer."""
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int)
                                   or stop_after < 1):
        raise ConfigError(f"--stop-after must be a positive integer (epochs to run now), got {stop_after!r}")


def to_dict(cfg) -> dict[str, Any]:
    return asdict(cfg)
