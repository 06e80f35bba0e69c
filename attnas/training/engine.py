"""The one training engine, shared by architecture search and retraining.

A *task* (search or retrain) provides the steps; the engine runs epochs,
shows progress, appends one JSON object per epoch to ``metrics.jsonl`` as it
goes, and writes ``checkpoint.pt`` atomically after every epoch.  Every epoch
starts by seeding all random generators from ``(seed, epoch)`` and the data
order depends only on ``(seed, epoch)``, so a run resumed from its last
checkpoint continues exactly as the uninterrupted run would have: a killed
run loses at most the epoch in progress.
"""
from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np
import torch

from attnas.training.checkpoint import atomic_torch_save, load_checkpoint

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


class Task(Protocol):
    """What the engine needs from a search or a retraining."""

    def steps_per_epoch(self) -> int: ...
    def batches(self, epoch: int) -> Iterable[Any]: ...
    def train_step(self, batch: Any, epoch: int, step: int) -> dict[str, float]: ...
    def end_epoch(self, epoch: int) -> dict[str, Any]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def seed_everything(seed: int, epoch: int = 0) -> None:
    s = (seed * 1_000_003 + epoch) % (2**31 - 1)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


class Progress:
    """A one-line progress bar with live loss/accuracy (plain lines when not a TTY)."""

    def __init__(self, label: str, total: int, enabled: bool = True, stream=sys.stderr) -> None:
        self.label, self.total, self.enabled, self.stream = label, total, enabled, stream
        self.tty = enabled and stream.isatty()
        self.t0 = time.time()
        self.last = 0.0

    def update(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        now = time.time()
        if not self.tty and now - self.last < 30 and step + 1 < self.total:
            return
        self.last = now
        done = (step + 1) / max(1, self.total)
        bar = "#" * int(20 * done) + "-" * (20 - int(20 * done))
        stats = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        line = f"{self.label} [{bar}] {step + 1}/{self.total} {stats} {now - self.t0:.0f}s"
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class Engine:
    """Runs ``task`` for ``epochs`` epochs in ``out_dir`` (resuming if a checkpoint is there)."""

    def __init__(self, out_dir: str | Path, epochs: int, seed: int, progress: bool = True,
                 label: str = "epoch", stop_after: int | None = None) -> None:
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.epochs, self.seed, self.progress, self.label = epochs, seed, progress, label
        self.stop_after = stop_after

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT

    def completed_epochs(self) -> int:
        if not self.checkpoint_path.exists():
            return 0
        return int(load_checkpoint(self.checkpoint_path)["epoch"]) + 1

    def _restore(self, task: Task) -> int:
        if not self.checkpoint_path.exists():
            (self.out / METRICS).write_text("")
            return 0
        state = load_checkpoint(self.checkpoint_path)
        task.load_state_dict(state["task"])
        start = int(state["epoch"]) + 1
        # drop metrics of epochs that ran after the checkpoint (the killed one)
        path = self.out / METRICS
        if path.exists():
            kept = [ln for ln in path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("epoch", -1) < start]
            path.write_text("".join(ln + "\n" for ln in kept))
        return start

    def run(self, task: Task) -> list[dict[str, Any]]:
        start = self._restore(task)
        ran = 0
        for epoch in range(start, self.epochs):
            if self.stop_after is not None and ran >= self.stop_after:
                break
            seed_everything(self.seed, epoch)
            t0 = time.time()
            n = task.steps_per_epoch()
            bar = Progress(f"{self.label} {epoch + 1}/{self.epochs}", n, self.progress)
            sums: dict[str, float] = {}
            count = 0
            for step, batch in enumerate(task.batches(epoch)):
                m = task.train_step(batch, epoch, step)
                count += 1
                for k, v in m.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                bar.update(step, {k: v / count for k, v in sums.items()})
            bar.close()
            record: dict[str, Any] = {"epoch": epoch}
            record.update({f"train_{k}": v / max(1, count) for k, v in sums.items()})
            record.update(task.end_epoch(epoch))
            record["epoch_time_s"] = round(time.time() - t0, 3)
            with open(self.out / METRICS, "a") as f:
                f.write(json.dumps(record, default=str) + "\n")
            atomic_torch_save({"epoch": epoch, "task": task.state_dict()}, self.checkpoint_path)
            if self.progress:
                shown = {k: v for k, v in record.items() if isinstance(v, (int, float))}
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in shown.items()), file=sys.stderr)
            ran += 1
        return read_metrics(self.out)


def read_metrics(out_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
