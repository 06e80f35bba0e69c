"""Shared fixtures: the real data folder (skipped when absent) and tiny configurations."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)


def find_data_dir() -> Path | None:
    env = os.environ.get("ATTNAS_DATA_DIR")
    if env and Path(env).is_dir():
        return Path(env)
    fallback = REPO.parent / "shared" / "data"
    return fallback if fallback.is_dir() else None


@pytest.fixture
def data_dir() -> Path:
    d = find_data_dir()
    if d is None:
        pytest.skip("real data folder not found: set ATTNAS_DATA_DIR to a folder laid out like shared/data")
    return d


def require_data(data_dir: Path, rel: str) -> Path:
    p = data_dir / rel
    if not p.exists():
        pytest.skip(f"{rel} not found under {data_dir}")
    return p
