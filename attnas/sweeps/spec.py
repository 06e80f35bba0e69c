"""The sweep file: a grid of ``attnas search`` runs, checked as a whole before any run starts.

A sweep file (YAML or JSON) holds::

    base:                      # fields of attnas.config.SearchConfig shared by every run
      space: nb201
      dataset: cifar10
      epochs: 10
      space_options: {C: 8, N: 1}
    grid:                      # lists; their cartesian product gives the runs
      method: [itnas, darts]
      seed: [0, 1, 2, 3, 4]
      method_options.arch_lr: [0.001, 0.0003]   # one key inside space_options / method_options
    train:                     # optional: retrain each derived architecture (TrainConfig fields)
      epochs: 10

``out`` is not a field here: every run gets its own folder under the sweep's ``--out``, named from
its grid values (:func:`run_name`, e.g. ``nb201-itnas-s0``).  A key may be in ``base`` or in
``grid``, not both -- except ``space_options`` / ``method_options``, whose grid values are merged
over the base's.  ``train`` inherits the search's ``dataset``, ``data_dir``, ``seed``,
``train_subset``, ``test_subset``, ``image_size`` and ``device`` unless it gives them.

Every problem (unknown key, wrong type, empty grid, an unknown space or method, an option the
method's preset does not have) is a one-line :class:`attnas.errors.ConfigError` naming the key.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from attnas.config import (
    SearchConfig,
    TrainConfig,
    check_config,
    make_config,
    read_config_file,
)
from attnas.errors import AttnasError, ConfigError

TOP_KEYS = ("base", "grid", "train")
#: SearchConfig fields a sweep may set (``out`` is the sweep's own)
SEARCH_FIELDS = tuple(f.name for f in fields(SearchConfig) if f.name != "out")
#: TrainConfig fields ``train:`` may set (the architecture and folder come from the search run)
TRAIN_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name not in ("arch", "out"))
OPTION_DICTS = ("space_options", "method_options")
#: search fields a retraining inherits unless ``train:`` gives them
INHERITED = ("dataset", "data_dir", "seed", "train_subset", "test_subset", "image_size", "device")
#: short prefixes of scalar grid values in run names (``e10`` for ``epochs: 10``)
NAME_PREFIX = {"dataset": "", "epochs": "e", "batch_size": "b", "train_subset": "n", "test_subset": "t",
               "image_size": "i", "device": ""}
_SAFE = re.compile(r"[^A-Za-z0-9._]+")


@dataclass
class PlannedRun:
    """One run of a sweep: its folder name, its grid values, the search config (SearchConfig
    fields, ``out`` unset) and the retraining options (TrainConfig fields but ``arch``/``out``)."""

    name: str
    values: dict[str, Any]
    config: dict[str, Any]
    train: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "values": self.values, "config": self.config, "train": self.train}


@dataclass
class Sweep:
    path: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    train: dict[str, Any] | None
    runs: list[PlannedRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"sweep_file": self.path, "base": self.base, "grid": self.grid, "train": self.train,
                "runs": [r.to_dict() for r in self.runs]}


def _key_error(where: str, key: str, allowed: tuple[str, ...]) -> ConfigError:
    return ConfigError(f"{where}: unknown key '{key}'; expected some of {sorted(allowed)}")


def _check_mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{where} must be a mapping of option names to values, got {type(value).__name__}")
    return value


def _grid_key_ok(key: str) -> bool:
    if key in SEARCH_FIELDS:
        return True
    head, _, rest = key.partition(".")
    return head in OPTION_DICTS and bool(rest) and all(part.strip() for part in rest.split("."))


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def apply_values(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the grid ``values`` set: whole fields first (option dicts merged over the
    base's), then dotted keys (``method_options.arch_lr``) inside the option dicts."""
    out = copy.deepcopy(base)
    for key, v in values.items():
        if "." in key:
            continue
        if key in OPTION_DICTS and isinstance(v, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **copy.deepcopy(v)}
        else:
            out[key] = copy.deepcopy(v)
    for key, v in values.items():
        if "." not in key:
            continue
        head, *path = key.split(".")
        node = out.get(head)
        if node is None:
            node = out[head] = {}
        if not isinstance(node, dict):
            raise ConfigError(f"grid key '{key}': '{head}' is not a mapping")
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"grid key '{key}': '{part}' is not a mapping")
        node[path[-1]] = copy.deepcopy(v)
    return out


def _search_config(values: dict[str, Any], where: str) -> SearchConfig:
    try:
        cfg = make_config(SearchConfig, None, **values)
        check_config(cfg)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except TypeError as e:  # not a field (cannot happen after the key checks, kept one-line anyway)
        raise ConfigError(f"{where}: {e}") from None
    return cfg


def _absolute_paths(cfg: dict[str, Any]) -> dict[str, Any]:
    """Paths as :func:`attnas.api.search` records them: the runs (in other processes, on other
    machines with Ray) and a later resume read the same folders whatever their working directory."""
    from attnas.data.paths import absolute_data_dir, absolute_dataset

    cfg["data_dir"] = absolute_data_dir(cfg.get("data_dir"))
    cfg["dataset"] = absolute_dataset(cfg.get("dataset"))
    teacher = (cfg.get("method_options") or {}).get("teacher_checkpoint")
    if isinstance(teacher, str) and teacher and Path(teacher).expanduser().exists():
        cfg["method_options"] = {**cfg["method_options"],
                                 "teacher_checkpoint": str(Path(teacher).expanduser().absolute())}
    return cfg


def _short(value: Any) -> str | None:
    """A scalar as a file-name-safe word, or None when it is not short and simple."""
    if isinstance(value, (dict, list)) or value is None:
        return None
    text = _SAFE.sub("-", str(value)).strip("-")
    return text if text and len(text) <= 24 else None


def _hash(obj: Any) -> str:
    return hashlib.sha1(_canon(obj).encode()).hexdigest()[:6]


def run_name(config: dict[str, Any], values: dict[str, Any], varying: list[str]) -> str:
    """``SPACE-METHOD[-PARTS]-sSEED``: the varying grid values other than space, method and seed
    as short words (``e10``, ``b64``, ``arch_lr0.001``), and those that are not short scalars
    (option dicts, paths) as one ``h`` + 6-hex hash of their values."""
    parts = [_short(config["space"]) or _hash(config["space"]), _short(config["method"]) or _hash(config["method"])]
    hashed: dict[str, Any] = {}
    for key in varying:
        if key in ("space", "method", "seed"):
            continue
        word = _short(values[key]) if key not in ("data_dir",) else None
        if word is None:
            hashed[key] = values[key]
            continue
        prefix = NAME_PREFIX.get(key, _SAFE.sub("_", key.rsplit(".", 1)[-1]))
        parts.append(f"{prefix}{word}")
    if hashed:
        parts.append("h" + _hash(hashed))
    parts.append(f"s{config['seed']}")
    return "-".join(parts)


def _train_config(search_cfg: dict[str, Any], train: dict[str, Any]) -> dict[str, Any]:
    values = {k: search_cfg.get(k) for k in INHERITED if k not in train}
    values.update(copy.deepcopy(train))
    try:
        cfg = make_config(TrainConfig, None, arch="(the run's architecture.json)", **values)
        check_config(cfg)
    except ConfigError as e:
        raise ConfigError(f"train: {e}") from None
    return _absolute_paths({k: getattr(cfg, k) for k in TRAIN_FIELDS})


def plan_runs(base: dict[str, Any], grid: dict[str, list[Any]], train: dict[str, Any] | None) -> list[PlannedRun]:
    """The cartesian product of ``grid`` over ``base``, each run checked and named."""
    keys = list(grid)
    varying = [k for k in keys if len(grid[k]) > 1]
    runs: list[PlannedRun] = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo))
        where = "run " + ", ".join(f"{k}={_canon(v)}" for k, v in values.items())
        cfg = _search_config(apply_values(base, values), where)
        config = _absolute_paths({f.name: getattr(cfg, f.name) for f in fields(SearchConfig)})
        config.pop("out")
        runs.append(PlannedRun(run_name(config, values, varying), values, config,
                               _train_config(config, train) if train is not None else None))
    groups: dict[str, list[PlannedRun]] = {}
    for r in runs:
        groups.setdefault(r.name, []).append(r)
    for name, same in groups.items():  # names that collide (e.g. after making them file-name safe)
        if len(same) > 1:
            for r in same:
                r.name = f"{name}-{_hash(r.values)}"
    return runs


def preflight(runs: list[PlannedRun]) -> None:
    """Build each distinct space and method (cheap: no network, no data): an unknown space or
    method, or an option its preset does not have, is an error before any run starts."""
    from attnas.spaces.registry import get_space
    from attnas.strategies.base import get_strategy

    seen: set[str] = set()
    for r in runs:
        c = r.config
        key = _canon([c["space"], c["space_options"], c["method"], c["method_options"], c["data_dir"]])
        if key in seen:
            continue
        seen.add(key)
        try:
            space = get_space(c["space"], data_dir=c["data_dir"], **c["space_options"])
            get_strategy(c["method"], space, c["method_options"])
        except AttnasError as e:
            raise type(e)(f"run {r.name}: {' '.join(str(e).split())}") from None
        except (TypeError, ValueError) as e:
            raise ConfigError(f"run {r.name}: {' '.join(str(e).split())}") from None


def load_sweep(path: str | Path, check: bool = True) -> Sweep:
    """Read, check and expand a sweep file (``check``: also build every space and method)."""
    where = f"sweep file '{path}'"
    try:
        data = read_config_file(path)
    except ConfigError as e:
        raise ConfigError(str(e).replace("config file", "sweep file")) from None
    for key in data:
        if key not in TOP_KEYS:
            raise _key_error(where, key, TOP_KEYS)
    base = dict(_check_mapping(data.get("base") or {}, f"{where}: 'base'"))
    for key in base:
        if key == "out":
            raise ConfigError(f"{where}: 'base' may not set 'out': each run's folder is named under the "
                              "sweep's --out")
        if key not in SEARCH_FIELDS:
            raise _key_error(f"{where}: 'base'", key, SEARCH_FIELDS)
    if "grid" not in data:
        raise ConfigError(f"{where}: no 'grid' (a mapping of option names to lists of values)")
    grid = _check_mapping(data["grid"], f"{where}: 'grid'")
    if not grid:
        raise ConfigError(f"{where}: 'grid' is empty; give at least one option with a list of values")
    for key, values in grid.items():
        if not _grid_key_ok(key):
            raise _key_error(f"{where}: 'grid'", key, SEARCH_FIELDS + tuple(f"{d}.KEY" for d in OPTION_DICTS))
        if base.get(key) is not None and key not in OPTION_DICTS:
            raise ConfigError(f"{where}: '{key}' is in both 'base' and 'grid'; give it in one of them")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: grid '{key}' must be a non-empty list of values, got {values!r}")
        canon = [_canon(v) for v in values]
        if len(set(canon)) < len(canon):
            raise ConfigError(f"{where}: grid '{key}' lists a value twice: {values!r}")
    train = data.get("train")
    if train is not None:
        train = dict(_check_mapping(train, f"{where}: 'train'"))
        for key in train:
            if key not in TRAIN_FIELDS:
                raise _key_error(f"{where}: 'train'", key, TRAIN_FIELDS)
    try:
        _search_config(base, "base")
        for key, values in grid.items():
            for v in values:
                _search_config(apply_values(base, {key: v}), f"grid '{key}' value {_canon(v)}")
        runs = plan_runs(base, grid, train)
        if check:
            preflight(runs)
    except AttnasError as e:
        raise type(e)(f"{where}: {e}") from None
    return Sweep(str(Path(path).absolute()), base, dict(grid), train, runs)
