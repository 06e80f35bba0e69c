"""Atomic checkpoints: write to a temporary file, then rename over the old one.

Loading never runs code from the file: :func:`safe_torch_load` reads with
``torch.load(..., weights_only=True)`` (tensors and plain Python data only), so a
file whose unpickling would call anything else is refused with a one-line
:class:`attnas.errors.CheckpointError`.  :func:`load_checkpoint` also checks that
the file is an engine checkpoint (``{"kind", "epoch", "task": {"model", ...}}``) of the
expected kind (``search`` or ``train``).  Checkpoints hold only tensors and plain data
(dicts, lists, tuples, str, int, float, bool, None): a task or strategy state with other
objects (numpy arrays, RNG objects) must convert them (``.tolist()``, tensors) first.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from attnas.errors import CheckpointError
from attnas.jsonio import dumps

#: the keys of an engine checkpoint's task state, per kind of run
TASK_KEYS = {"search": ("model", "optim", "schedulers", "strategy"), "train": ("model", "optim", "sched")}


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Strict JSON (non-finite floats become null, :mod:`attnas.jsonio`), written atomically."""
    atomic_write_text(path, dumps(obj, indent=2) + "\n")


def _one_line(e: BaseException) -> str:
    """The gist of a (possibly multi-line) torch.load error, on one line."""
    text = str(e)
    m = re.search(r"GLOBAL ([\w.]+)", text)
    if m:
        return (f"refused to unpickle it: it would load the Python object '{m.group(1)}', which a file of "
                "tensors and plain data never needs (a corrupted or malicious file?)")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if lines and lines[0].startswith("Weights only load failed"):
        detail = next((ln for ln in lines[1:] if not ln.startswith(("Check the documentation", "Please file"))), "")
        return f"not a PyTorch checkpoint of tensors and plain data ({detail[:200] or 'unpickling failed'})"
    return f"not a PyTorch checkpoint ({type(e).__name__}: {(lines[0] if lines else '')[:200]})"


def safe_torch_load(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; any failure (unreadable, not a
    PyTorch file, or a pickle that would run code) is a one-line CheckpointError."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} '{p}' does not exist")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error line says enough
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input
        raise CheckpointError(f"cannot read {what} '{p}': {_one_line(e)}") from None


def checkpoint_kind(obj: Any) -> str | None:
    """``search`` or ``train`` for an engine checkpoint (recorded, else from its task state's keys)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("task"), dict):
        return None
    kind = obj.get("kind")
    if kind in TASK_KEYS:
        return kind
    for k, keys in TASK_KEYS.items():
        if all(key in obj["task"] for key in keys):
            return k
    return None


def load_checkpoint(path: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """An engine checkpoint (``{"epoch": int, "task": {...}}``, plus ``"partial"`` when it was taken
    inside an epoch: :class:`attnas.training.engine.Engine`), read safely and checked;
    ``kind`` (``search`` / ``train``): also check it is a checkpoint of that kind of run."""
    obj = safe_torch_load(path)
    found = checkpoint_kind(obj)
    epoch = obj.get("epoch") if isinstance(obj, dict) else None
    # a checkpoint taken inside the first epoch (``partial``) has no complete epoch yet: -1
    lowest = -1 if found is not None and isinstance(obj.get("partial"), dict) else 0
    if found is None or isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < lowest \
            or not isinstance(obj["task"].get("model"), dict):
        raise CheckpointError(f"'{path}' is not an attnas checkpoint (expected the 'epoch' and 'task' "
                              "state that attnas search / attnas train write)")
    if kind is not None and found != kind:
        other = {"search": "an 'attnas search'", "train": "an 'attnas train'"}
        raise CheckpointError(f"'{path}' is the checkpoint of {other[found]} run, not of {other[kind]} run; "
                              f"continue it with attnas {found} --resume")
    return obj


def restore_task(task: Any, task_state: Any, path: str | os.PathLike, fits: str) -> None:
    """``task.load_state_dict(task_state)``; a state that does not fit is a one-line
    :class:`CheckpointError` naming ``path`` and what it should fit (``fits``)."""
    try:
        task.load_state_dict(task_state)
    except (KeyError, IndexError, RuntimeError, TypeError, ValueError, AttributeError) as e:
        first = " ".join(str(e).split())[:200]
        raise CheckpointError(f"'{path}' does not fit {fits}: {type(e).__name__}: {first}") from None
