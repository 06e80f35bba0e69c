"""The one training engine, shared by architecture search and retraining.

A *task* (search or retrain) provides the steps; the engine runs epochs,
shows progress, appends one JSON object per epoch to ``metrics.jsonl`` as it
goes, and writes ``checkpoint.pt`` atomically after every epoch.  Every epoch
starts by seeding all random generators from ``(seed, epoch)`` and the data
order depends only on ``(seed, epoch)``, so a run resumed from its last
checkpoint continues exactly as the uninterrupted run would have: a killed
run loses at most the epoch in progress.

Checkpoints inside an epoch (``checkpoint_every`` steps; ``--checkpoint-every``): an epoch of a
large dataset can take hours, so the engine can also checkpoint after every ``checkpoint_every``
training steps.  Such a checkpoint (``"partial"``) adds where the epoch stands: the next step,
the running sums of the step metrics, the elapsed time, every random generator's state (Python,
NumPy, torch) and the task's data position (:meth:`Task.position`: the augmentation generator);
the task then serves the epoch's batches from that step on (``batches(epoch, start, position)``:
the loaders' ``epoch_from``, which skips the earlier batches without building them), so the
resumed run continues at the right sample of the right epoch and ends exactly as the
uninterrupted one (tests/test_engine_resume.py).  Under ``torchrun`` the running sums are
averaged over the processes when the checkpoint is taken (the end-of-epoch average is the same).

Under ``torchrun`` (:mod:`attnas.distributed`) every process runs the
same epochs; the per-step metrics are averaged over the processes at the end
of an epoch, the task state is checked to be identical on all of them, and
only rank 0 writes ``metrics.jsonl``, ``checkpoint.pt``, TensorBoard events and
progress.  With ``tensorboard=True`` every numeric value of an epoch's record
(nested ones such as ``scores`` flattened to ``scores/<key>/<i>``) is also
written to ``RUN_DIR/tensorboard``.

Divergence: a non-finite value among a step's metrics (the training loss), or non-finite
network weights at the end of an epoch, stops the run with a one-line
:class:`attnas.errors.TrainingDiverged` naming the epoch and step; that epoch writes no
metrics record and no checkpoint, so ``checkpoint.pt`` stays the last good one.  Under
``torchrun`` the processes agree on it every step (one scalar all-reduce).  Checkpoints
record the kind of run (``search`` / ``train``) and are loaded without running code
(:func:`attnas.training.checkpoint.load_checkpoint`); ``metrics.jsonl`` is strict JSON.
"""
from __future__ import annotations

import json
import math
import random
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np
import torch

from attnas.errors import TrainingDiverged
from attnas.jsonio import dumps as json_dumps
from attnas import distributed
from attnas.run_dir import CHECKPOINT, METRICS, TENSORBOARD
from attnas.training.checkpoint import atomic_torch_save, load_checkpoint, restore_task



def require_tensorboard():
    """``torch.utils.tensorboard.SummaryWriter``; a one-line ConfigError without tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        from attnas.errors import ConfigError
        raise ConfigError("--tensorboard needs the tensorboard package: "
                          "pip install 'attnas[tensorboard]' (or pip install tensorboard)") from None
    return SummaryWriter


def tensorboard_writer(log_dir: str | Path, purge_step: int | None = None):
    """A SummaryWriter logging to ``log_dir`` (events after ``purge_step`` of an earlier,
    interrupted invocation are discarded)."""
    return require_tensorboard()(str(log_dir), purge_step=purge_step)


def scalars(record: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, float]]:
    """Every numeric value of a metrics record as ``(tag, value)``; nested dicts and lists
    give ``parent/child`` tags (``scores/<choice point>/<candidate index>``)."""
    for k, v in record.items():
        # TensorBoard tags allow only [-/\w.]: "cell:0->1" becomes "cell.0-1"
        tag = prefix + re.sub(r"[^-\w.]", "_", str(k).replace("->", "-").replace(":", "."))
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            if k != "epoch" or prefix:
                yield tag, float(v)
        elif isinstance(v, dict):
            yield from scalars(v, tag + "/")
        elif isinstance(v, (list, tuple)):
            yield from scalars({str(i): x for i, x in enumerate(v)}, tag + "/")


class Task(Protocol):
    """What the engine needs from a search or a retraining."""

    def steps_per_epoch(self) -> int: ...
    def batches(self, epoch: int, start: int = 0, position: Any = None) -> Iterable[Any]:
        """The epoch's steps from step ``start`` on; ``position`` (from :meth:`position`) is where
        the task's own random draws stood at that step."""
    def position(self) -> Any:
        """The state of the task's per-epoch random draws (plain data or tensors), now."""
    def train_step(self, batch: Any, epoch: int, step: int) -> dict[str, float]: ...
    def end_epoch(self, epoch: int) -> dict[str, Any]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def seed_everything(seed: int, epoch: int = 0) -> None:
    s = (seed * 1_000_003 + epoch) % (2**31 - 1)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def rng_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's global generator states as checkpointable data."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.copy()), pos, has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy(), int(pos), int(has_gauss), float(gauss)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Progress:
    """A one-line progress bar with live loss/accuracy (plain lines when not a TTY)."""

    def __init__(self, label: str, total: int, enabled: bool = True, stream=None) -> None:
        # sys.stderr looked up now, not at import (it may have been replaced since, e.g. by pytest)
        stream = sys.stderr if stream is None else stream
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
                 label: str = "epoch", stop_after: int | None = None, tensorboard: bool = False,
                 kind: str | None = None, checkpoint_every: int = 0) -> None:
        self.out = Path(out_dir)
        #: also checkpoint after every this many training steps of an epoch (0: at epoch ends only)
        self.checkpoint_every = int(checkpoint_every or 0)
        #: where the checkpoint on disk stands, for error messages (set by _restore and every save)
        self._saved: str | None = None
        self.kind = kind  # "search" / "train": recorded in the checkpoint, checked on resume
        self.out.mkdir(parents=True, exist_ok=True)
        self.main = distributed.is_main()
        self.epochs, self.seed, self.progress, self.label = epochs, seed, progress and self.main, label
        self.stop_after = stop_after
        self.tensorboard = tensorboard
        if tensorboard:
            require_tensorboard()  # on every process, before any epoch

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT

    def completed_epochs(self) -> int:
        if not self.checkpoint_path.exists():
            return 0
        return int(load_checkpoint(self.checkpoint_path, self.kind)["epoch"]) + 1

    def _restore(self, task: Task) -> tuple[int, dict[str, Any] | None]:
        """``(first epoch to run, where inside it to resume or None)``."""
        if not self.checkpoint_path.exists():
            if self.main:
                (self.out / METRICS).write_text("")
            return 0, None
        state = load_checkpoint(self.checkpoint_path, self.kind)
        restore_task(task, state["task"], self.checkpoint_path, "this run (another space, method or options?)")
        start = int(state["epoch"]) + 1
        partial = state.get("partial")
        self._saved = self._where(start - 1, partial["step"] if isinstance(partial, dict) else None)
        # drop metrics of epochs that ran after the checkpoint (the killed one)
        path = self.out / METRICS
        if path.exists() and self.main:
            kept = [ln for ln in path.read_text().splitlines() if _epoch_of(ln) < start]
            path.write_text("".join(ln + "\n" for ln in kept))
        return start, partial

    def run(self, task: Task) -> list[dict[str, Any]]:
        start, partial = self._restore(task)
        writer = None
        if self.tensorboard and self.main:
            writer = tensorboard_writer(self.out / TENSORBOARD, purge_step=start or None)
        try:
            self._epochs(task, start, writer, partial)
        finally:
            if writer is not None:
                writer.close()
        distributed.barrier()
        return read_metrics(self.out)

    def _epochs(self, task: Task, start: int, writer, partial: dict[str, Any] | None = None) -> None:
        ran = 0
        for epoch in range(start, self.epochs):
            if self.stop_after is not None and ran >= self.stop_after:
                break
            seed_everything(self.seed, epoch)
            n = task.steps_per_epoch()
            bar = Progress(f"{self.label} {epoch + 1}/{self.epochs}", n, self.progress)
            first, position, sums, count, t0 = 0, None, {}, 0, time.time()
            if partial is not None:  # resume inside this epoch
                first, position = int(partial["step"]), partial["position"]
                sums, count = {k: float(v) for k, v in partial["sums"].items()}, int(partial["count"])
                t0 -= float(partial["elapsed_s"])
                set_rng_state(partial["rng"])
                partial = None
            for step, batch in enumerate(task.batches(epoch, first, position), start=first):
                m = task.train_step(batch, epoch, step)
                self._check_finite(m, epoch, step, n)
                count += 1
                for k, v in m.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                bar.update(step, {k: v / count for k, v in sums.items()})
                if self.checkpoint_every and (step + 1) % self.checkpoint_every == 0 and step + 1 < n:
                    self._checkpoint_inside(task, epoch, step + 1, sums, count, time.time() - t0)
            bar.close()
            if distributed.is_distributed():
                sums = distributed.average_dict(sums)
            record: dict[str, Any] = {"epoch": epoch}
            record.update({f"train_{k}": v / max(1, count) for k, v in sums.items()})
            record.update(task.end_epoch(epoch))
            record["epoch_time_s"] = round(time.time() - t0, 3)
            state = {"kind": self.kind, "epoch": epoch, "task": task.state_dict()}
            self._check_weights(state["task"], epoch, n)
            if distributed.is_distributed():
                record["world_size"] = distributed.world_size()
                distributed.check_same(state, f"the task state after epoch {epoch}")
            if self.main:
                with open(self.out / METRICS, "a") as f:
                    f.write(json_dumps(record) + "\n")
                atomic_torch_save(state, self.checkpoint_path)
                if writer is not None:
                    for tag, value in scalars(record):
                        writer.add_scalar(tag, value, epoch)
                    writer.flush()
            self._saved = self._where(epoch)
            distributed.barrier()
            if self.progress:
                shown = {k: v for k, v in record.items() if isinstance(v, (int, float))}
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in shown.items()), file=sys.stderr)
            ran += 1

    def _checkpoint_inside(self, task: Task, epoch: int, next_step: int, sums: dict[str, float], count: int,
                           elapsed: float) -> None:
        """A checkpoint inside ``epoch`` before step ``next_step`` (module docstring)."""
        shared = distributed.average_dict(sums) if distributed.is_distributed() else sums
        state = {"kind": self.kind, "epoch": epoch - 1, "task": task.state_dict(),
                 "partial": {"step": next_step, "sums": dict(shared), "count": count, "elapsed_s": elapsed,
                             "rng": rng_state(), "position": task.position()}}
        self._check_weights(state["task"], epoch, next_step, inside=True)
        if self.main:
            atomic_torch_save(state, self.checkpoint_path)
        self._saved = self._where(epoch - 1, next_step)
        distributed.barrier()

    def _diverged(self, epoch: int, what: str) -> TrainingDiverged:
        kept = (f"{self.checkpoint_path} keeps {self._saved}, the last good one" if self._saved
                else "no checkpoint was written")
        return TrainingDiverged(f"training diverged at epoch {epoch + 1}/{self.epochs} {what}; try a lower "
                                f"learning rate; {kept}")

    def _where(self, last_epoch: int, next_step: int | None = None) -> str:
        """A checkpoint's place: ``epoch 3/10`` (after epoch index ``last_epoch``), or ``epoch 4/10, step
        200`` (inside the next epoch, before step index ``next_step``)."""
        if next_step is None:
            return f"epoch {last_epoch + 1}/{self.epochs}"
        return f"epoch {last_epoch + 2}/{self.epochs}, step {next_step}"

    def _check_finite(self, metrics: dict[str, Any], epoch: int, step: int, steps: int) -> None:
        """Stop on a non-finite step metric (the loss); under torchrun all processes stop together."""
        bad = [(k, float(v)) for k, v in metrics.items()
               if isinstance(v, (int, float, torch.Tensor)) and not math.isfinite(float(v))]
        if distributed.is_distributed():
            if distributed.sum_values([1.0 if bad else 0.0])[0] == 0:
                return
        elif not bad:
            return
        what = ", ".join(f"{k} is {v}" for k, v in bad) if bad else "a non-finite loss on another process"
        raise self._diverged(epoch, f"step {step + 1}/{steps}: {what}")

    def _check_weights(self, task_state: dict[str, Any], epoch: int, steps: int, inside: bool = False) -> None:
        """Never checkpoint non-finite network weights (a step that overflowed without a NaN loss)."""
        model = task_state.get("model") if isinstance(task_state, dict) else None
        for name, t in (model or {}).items():
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                where = f"step {steps}" if inside else f"step {steps}/{steps}"
                raise self._diverged(epoch, f"{where}: the network weight '{name}' is not finite "
                                            f"{'at the checkpoint' if inside else 'after the epoch'}")


def _epoch_of(line: str) -> int:
    """The epoch of a metrics.jsonl line (a large number for a line cut by a kill or unreadable)."""
    try:
        rec = json.loads(line)
        return int(rec.get("epoch", -1)) if isinstance(rec, dict) else 1 << 62
    except (ValueError, TypeError):
        return 1 << 62


def read_metrics(out_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(out_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
