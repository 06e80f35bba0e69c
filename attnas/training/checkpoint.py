"""Atomic checkpoints: write to a temporary file, then rename over the old one."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from attnas.errors import ConfigError


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
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError) as e:
        raise ConfigError(f"cannot read checkpoint '{path}': {e}") from None
