"""What the report reads from a run folder: :func:`collect_run` gathers ``metrics.jsonl``,
``config.json``, ``scores.json``, ``result.json`` and the (final or last derived) architecture
into one :class:`RunData`."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnas.errors import AttnasError, ConfigError
from attnas.run_dir import ARCHITECTURE, CONFIG, METRICS, RESULT, SCORES

_BENCH_METRICS = ("val_acc", "valid_acc", "test_acc", "train_acc", "rank", "params", "flops", "macs", "latency", "acc")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read '{path}': {e}") from None


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def scalar_keys(metrics: list[dict[str, Any]]) -> list[str]:
    """Every field holding a finite number in some epoch, in first-seen order."""
    keys: list[str] = []
    for rec in metrics:
        for k, v in rec.items():
            if k not in keys and is_number(v):
                keys.append(k)
    return keys


def bench_split(key: str) -> tuple[str, str]:
    """``bench_cifar10_test_acc`` -> ``("cifar10", "test_acc")``."""
    rest = key[len("bench_"):]
    for m in _BENCH_METRICS:
        if rest.endswith("_" + m):
            return rest[: -len(m) - 1], m
    return "", rest


@dataclass
class RunData:
    """Everything the report shows of one run folder."""

    run: Path
    metrics: list[dict[str, Any]]
    config: dict[str, Any]
    candidates: dict[str, list[str]]
    chosen: dict[str, str]
    scores_file: Any
    result: dict[str, Any]
    kind: str                # search | train | run
    method: str
    arch: Any                # Architecture | None
    native: str | None
    arch_json: Any
    arch_note: str | None
    space: str
    warnings: list[str] = field(default_factory=list)


def _arch_of_run(run: Path, metrics: list[dict[str, Any]], config: dict[str, Any]):
    """``(Architecture | None, native | None, json dict | None, note)`` of a run."""
    from attnas.spaces.io import architecture_from_dict
    from attnas.spaces.registry import get_space_class

    if (run / ARCHITECTURE).is_file():
        d = read_json(run / ARCHITECTURE)
        try:
            arch = architecture_from_dict(d)
        except AttnasError:
            return None, d.get("native") if isinstance(d, dict) else None, d, "architecture.json is not valid here"
        native = d.get("native") if isinstance(d, dict) else None
        if native is None:
            try:
                native = get_space_class(arch.space).to_native(arch)
            except AttnasError:
                native = None
        return arch, native, d, None
    space = config.get("space")
    last = next((r for r in reversed(metrics) if r.get("arch") is not None), None)
    if not space or last is None:
        return None, None, None, None
    field_ = last["arch"]
    try:
        if isinstance(field_, dict):
            arch = architecture_from_dict({"space": space, "choices": field_})
        else:
            arch = get_space_class(space).parse_native(str(field_))
    except AttnasError:
        return None, None, None, None
    epoch = int(last.get("epoch", len(metrics) - 1)) + 1
    native = field_ if isinstance(field_, str) else None
    return arch, native, arch.to_dict(native), f"search not finished: the architecture derived at epoch {epoch}"


def collect_run(run_dir: str | os.PathLike) -> RunData:
    """Read a run folder (only ``metrics.jsonl`` or ``architecture.json`` is required)."""
    from attnas.viz.curves import read_run

    run = Path(run_dir)
    try:
        is_dir = run.is_dir()
    except OSError:
        is_dir = False
    if not is_dir:
        raise ConfigError(f"run folder '{run}' does not exist")
    has_metrics = (run / METRICS).is_file()
    if not has_metrics and not (run / ARCHITECTURE).is_file():
        raise ConfigError(f"'{run}' is not a run folder: it has neither metrics.jsonl nor architecture.json")
    warnings_: list[str] = []
    if has_metrics:
        try:
            data = read_run(run)
            metrics, config, candidates, chosen = data.metrics, data.config, data.candidates, data.chosen
        except ConfigError as e:
            if "holds no epoch" not in str(e):
                raise
            metrics, config, candidates, chosen = [], {}, {}, {}
            warnings_.append("metrics.jsonl holds no epoch yet")
    else:
        metrics, config, candidates, chosen = [], {}, {}, {}
        warnings_.append("no metrics.jsonl: no curves")
    if not config and (run / CONFIG).is_file():
        c = read_json(run / CONFIG)
        config = c if isinstance(c, dict) else {}
    scores_file = read_json(run / SCORES) if (run / SCORES).is_file() else None
    result = read_json(run / RESULT) if (run / RESULT).is_file() else {}
    result = result if isinstance(result, dict) else {}
    kind = "search" if "method" in config else "train" if "arch" in config else "run"
    method = str(config.get("method", "")) if kind == "search" else ""
    arch, native, arch_json, arch_note = _arch_of_run(run, metrics, config)
    if arch is not None and not chosen:
        chosen = dict(arch.choices)
    space = config.get("space") or (arch.space if arch is not None else "")
    return RunData(run, metrics, config, candidates, chosen, scores_file, result, kind, method, arch, native,
                   arch_json, arch_note, space, warnings_)
