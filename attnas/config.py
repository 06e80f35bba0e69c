"""Run configurations: dataclasses, loaded from flags and an optional JSON/YAML file.

Precedence: command-line flag > ``--config FILE`` > dataclass default >
the method's preset (for epochs, batch size and hyper-parameters).  The fully
resolved config is written to ``RUN_DIR/config.json``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
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
    """Retraining a derived architecture from scratch (``options`` override the
    retrain preset; ``network_options`` go to ``space.build_network``, e.g.
    ``{"C": 36, "layers": 20}`` for DARTS)."""

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
    #: torch.compile backend of the training forward ("inductor", "aot_eager", ...); None = eager
    compile: str | None = None


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


def to_dict(cfg) -> dict[str, Any]:
    return asdict(cfg)
