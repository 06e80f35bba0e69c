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


def one_default_search_epoch(method: str, space) -> tuple[list[float], dict]:
    """One epoch of ``method`` with its default preset on digits (seed 0): the per-step training
    losses and the end-of-epoch record (validation loss and accuracy)."""
    from attnas.data.datasets import load_dataset
    from attnas.strategies.base import get_strategy
    from attnas.training.engine import seed_everything
    from attnas.training.tasks import SearchTask

    data = load_dataset("digits", None, seed=0)
    strat = get_strategy(method, space, {})
    seed_everything(0)
    strat.seed(0)
    model = strat.build(data.num_classes, data.in_channels, data.image_size)
    task = SearchTask(strat, model, data, 1, 64, 0, torch.device("cpu"))
    seed_everything(0, 0)
    losses = [task.train_step(b, 0, i)["loss"] for i, b in enumerate(task.batches(0))]
    return losses, task.end_epoch(0)
