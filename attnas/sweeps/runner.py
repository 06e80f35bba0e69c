"""Running a sweep: :func:`run_sweep`.

Before any run starts, the whole sweep file is checked (:func:`attnas.sweeps.spec.load_sweep`),
the executor settings too, and every run folder that already exists under ``out`` must hold the
same run the sweep plans there (else a one-line error).  Then, in ``out``:

* ``sweep.json`` -- the sweep file's base, grid and train, and the expanded runs (name, grid
  values, full search config);
* ``runs.jsonl`` -- one line per event (``skipped``, ``started``, ``done``, ``failed``), appended
  by this process only;
* ``RUN/`` -- each run's folder (what ``attnas search`` writes; ``RUN/train`` for the optional
  retraining); a failed run gets ``RUN/error.json`` (removed when the run is tried again);
* ``logs/RUN.log`` -- each run's progress output (and a traceback, for an unexpected error).

A run whose ``result.json`` is there is skipped; one with ``config.json`` but no ``result.json``
(stopped or killed) is resumed; a failure is recorded and the other runs go on.  ``out`` is locked
(``out/.lock``) while the sweep runs.  SIGTERM (``kill PID``) stops a sweep as Ctrl-C does: the runs
going on are stopped with it (their checkpoints stay) instead of running on as orphans.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from attnas.config import SearchConfig, TrainConfig, config_defaults
from attnas.run_dir import CONFIG, RESULT
from attnas.errors import AttnasError, ConfigError, RunFolderError
from attnas.jsonio import dumps
from attnas.sweeps.spec import PlannedRun, Sweep, load_sweep
from attnas.sweeps.worker import TRAIN_DIR

BACKENDS = ("local", "ray")
SWEEP_JSON = "sweep.json"
RUNS_LOG = "runs.jsonl"
ERROR_JSON = "error.json"
LOGS = "logs"


class SweepFailed(AttnasError):
    """Some runs of a sweep failed (the others finished); the CLI reports it on one line, exit 2."""


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _positive(value: Any, flag: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{flag} must be a positive integer, got {value!r}")


def resolve_workers(jobs: int, threads: int | None, backend: str, address: str | None) -> tuple[int, int]:
    """``(jobs, threads)``: threads default to the CPU cores here over the jobs; here (local
    backend, or a local Ray instance) jobs x threads may not exceed the cores."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {list(BACKENDS)}, got {backend!r}")
    _positive(jobs, "--jobs")
    _positive(threads, "--threads")
    if address and backend != "ray":
        raise ConfigError("--address is the address of a Ray cluster: give it with --backend ray")
    cluster = backend == "ray" and bool(address)
    cpus = available_cpus()
    if threads is None:
        threads = 1 if cluster else max(1, cpus // jobs)
    if not cluster and jobs * threads > cpus:
        raise ConfigError(f"--jobs {jobs} x --threads {threads} = {jobs * threads} threads, more than the {cpus} "
                          f"CPU cores here; lower --jobs or --threads")
    return jobs, threads


# ----- run folders -----------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_state(run_dir: Path, run: PlannedRun) -> str:
    """``done`` (nothing to do), ``resume`` (search started, not finished), ``train`` (search done,
    retraining to run or finish) or ``new``."""
    if not (run_dir / RESULT).is_file():
        return "resume" if (run_dir / CONFIG).is_file() else "new"
    if run.train is not None and not (run_dir / TRAIN_DIR / RESULT).is_file():
        return "train"
    return "done"


def _differences(planned: dict[str, Any], recorded: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """Fields the sweep sets whose value differs from the recorded config's (None and an empty
    option dict mean "the default", which the run may have resolved: not compared; a field the
    run did not record -- one added to attnas after it started -- has its default, ``defaults``)."""
    def there(k: str) -> Any:
        return recorded[k] if k in recorded else defaults.get(k)
    return [f"{k}: {json.dumps(there(k), default=str)} there, {json.dumps(v, default=str)} in the sweep"
            for k, v in planned.items() if v is not None and v != {} and there(k) != v]


_DEFAULTS = {"search": config_defaults(SearchConfig), "train": config_defaults(TrainConfig)}


def check_existing(out: Path, runs: list[PlannedRun]) -> None:
    """A run folder that exists must hold the run the sweep plans there (one-line error otherwise)."""
    for r in runs:
        for sub, planned in (("", r.config), (TRAIN_DIR, r.train)):
            path = out / r.name / sub / CONFIG if sub else out / r.name / CONFIG
            if planned is None or not path.is_file():
                continue
            recorded = _read_json(path)
            if recorded is None:
                raise RunFolderError(f"cannot read '{path}' (run {r.name} of the sweep); remove that folder or "
                                     "give the sweep another --out")
            diff = _differences(planned, recorded, _DEFAULTS["train" if sub else "search"])
            if diff:
                raise RunFolderError(f"'{path.parent}' holds a run with other settings than the sweep's run "
                                     f"{r.name} ({'; '.join(diff[:3])}); give the sweep another --out or remove "
                                     "that folder")


# ----- progress --------------------------------------------------------------------------------
def _duration(s: float) -> str:
    s = round(s)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """Counts of the sweep's runs and one stderr line per event, with elapsed and remaining time."""

    def __init__(self, total: int, jobs: int, stream: TextIO | None) -> None:
        self.total, self.jobs, self.stream = total, jobs, stream
        self.t0 = time.time()
        self.done = self.failed = self.skipped = 0
        self.running: dict[str, float] = {}
        self.durations: list[float] = []

    def remaining_s(self) -> float | None:
        if not self.durations:
            return None
        avg = sum(self.durations) / len(self.durations)
        waiting = self.total - self.done - self.failed - self.skipped - len(self.running)
        now = time.time()
        left = sum(max(avg - (now - t), 0.0) for t in self.running.values()) + waiting * avg
        return left / max(1, min(self.jobs, waiting + len(self.running)))

    def status(self) -> str:
        left = self.remaining_s()
        unfinished = self.total - self.done - self.failed - self.skipped
        eta = "" if left is None or not unfinished else f", about {_duration(left)} left"
        return (f"{self.done + self.skipped}/{self.total} done ({self.skipped} skipped), {len(self.running)} running, "
                f"{self.failed} failed; elapsed {_duration(time.time() - self.t0)}{eta}")

    def _say(self, text: str) -> None:
        if self.stream is not None:
            print(f"sweep: {text}", file=self.stream, flush=True)

    def skip(self, name: str) -> None:
        self.skipped += 1
        self._say(f"skipped {name} (finished earlier) -- {self.status()}")

    def start(self, name: str, how: str) -> None:
        self.running[name] = time.time()
        self._say(f"started {name} ({how}) -- {self.status()}")

    def finish(self, name: str, ok: bool, detail: str = "") -> None:
        t = self.running.pop(name, time.time())
        if ok:
            self.done += 1
            self.durations.append(time.time() - t)
        else:
            self.failed += 1
        word = "finished" if ok else "FAILED"
        self._say(f"{word} {name} in {_duration(time.time() - t)}{(': ' + detail) if detail else ''} -- "
                  f"{self.status()}")


# ----- the sweep -------------------------------------------------------------------------------
class _Log:
    """``runs.jsonl``: one strict-JSON line per event."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, event: str, run: str, **fields: Any) -> None:
        rec = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "run": run, "event": event, **fields}
        with open(self.path, "a") as f:
            f.write(dumps(rec) + "\n")


def plan(sweep: Sweep, out: Path) -> list[dict[str, Any]]:
    return [{"run": r.name, "state": run_state(out / r.name, r), "values": r.values} for r in sweep.runs]


def run_sweep(sweep_file: str | os.PathLike, out: str | os.PathLike, jobs: int = 1, threads: int | None = None,
              backend: str = "local", address: str | None = None, dry_run: bool = False,
              progress: bool = True) -> dict[str, Any]:
    """Run every run of the sweep file that is not finished yet; returns the summary
    (``status``: ``done`` when every run has finished, else ``failed``; ``dry_run``: the plan only,
    nothing written).  The local backend spawns processes: a script calling this needs the usual
    ``if __name__ == "__main__":`` guard."""
    from attnas.sweeps.executors import import_ray
    from attnas.run_dir import RunLock

    jobs, threads = resolve_workers(jobs, threads, backend, address)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out '{out}' is a file, not a folder")
    sweep = load_sweep(sweep_file)
    check_existing(out, sweep.runs)
    states = plan(sweep, out)
    summary: dict[str, Any] = {"out": str(out), "sweep_file": sweep.path, "backend": backend, "jobs": jobs,
                               "threads": threads, "runs": len(sweep.runs)}
    if backend == "ray":
        import_ray()  # a missing Ray is reported before anything is written
    if dry_run:
        return {**summary, "dry_run": True, "plan": states}
    try:
        (out / LOGS).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the sweep folder '{out}': {e.strerror or e}") from None
    lock = RunLock(out).acquire()
    try:
        with _terminate_as_interrupt():
            return _run_locked(sweep, out, states, summary, jobs, threads, backend, address, progress)
    finally:
        lock.release()


@contextlib.contextmanager
def _terminate_as_interrupt():
    """While the sweep runs, SIGTERM raises KeyboardInterrupt as Ctrl-C does, so that the executor
    stops the worker processes (left alone, a terminated sweep's workers would run on as orphans,
    holding their run folders).  Only in the main thread, where Python can install handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_locked(sweep: Sweep, out: Path, states: list[dict[str, Any]], summary: dict[str, Any], jobs: int,
                threads: int, backend: str, address: str | None, progress: bool) -> dict[str, Any]:
    from attnas.sweeps.executors import run_local, run_ray
    from attnas.training.checkpoint import write_json

    write_json(out / SWEEP_JSON, {**sweep.to_dict(), "out": str(out.absolute())})
    log = _Log(out / RUNS_LOG)
    bar = Progress(len(sweep.runs), jobs, sys.stderr if progress else None)
    by_name = {r.name: r for r in sweep.runs}
    tasks, failed, how = [], [], {}
    for st in states:
        name = st["run"]
        if st["state"] == "done":
            log.write("skipped", name, reason="finished earlier")
            bar.skip(name)
            continue
        run_dir = out / name
        (run_dir / ERROR_JSON).unlink(missing_ok=True)  # tried again
        how[name] = {"new": "new", "resume": "resuming the search", "train": "retraining"}[st["state"]]
        tasks.append({"name": name, "run_dir": str(run_dir.absolute()), "config": by_name[name].config,
                      "train": by_name[name].train, "threads": threads,
                      "log": str((out / LOGS / f"{name}.log").absolute())})

    def on_start(task: dict[str, Any]) -> None:
        log.write("started", task["name"], how=how[task["name"]], backend=backend)
        bar.start(task["name"], how[task["name"]])

    def on_finish(task: dict[str, Any], outcome: dict[str, Any]) -> None:
        name = task["name"]
        extra = {k: outcome[k] for k in ("wall_s", "search", "train", "stage", "error", "error_type")
                 if k in outcome}
        if outcome.get("status") == "done":
            log.write("done", name, **extra, result=outcome.get("result"))
            bar.finish(name, True)
            return
        failed.append({"run": name, "error": outcome.get("error", "unknown error")})
        run_dir = Path(task["run_dir"])
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_dir / ERROR_JSON, {"run": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                              "log": task["log"], **extra})
        except OSError:
            pass
        log.write("failed", name, **extra, log=task["log"])
        bar.finish(name, False, outcome.get("error", ""))

    t0 = time.time()
    try:
        if tasks and backend == "ray":
            run_ray(tasks, jobs, threads, address, on_start, on_finish)
        elif tasks:
            run_local(tasks, jobs, on_start, on_finish)
    except KeyboardInterrupt:  # the runs going on are stopped; their checkpoints stay (rerun to resume)
        for name in list(bar.running):
            log.write("interrupted", name)
        raise
    finished = [r.name for r in sweep.runs if run_state(out / r.name, r) == "done"]
    summary.update({"finished": len(finished), "skipped": bar.skipped, "ran": len(tasks),
                    "resumed": sum(1 for st in states if st["state"] in ("resume", "train")),
                    "failed": len(failed), "failed_runs": failed,
                    "run_dirs": [str(out / r.name) for r in sweep.runs], "elapsed_s": round(time.time() - t0, 2),
                    "status": "done" if len(finished) == len(sweep.runs) else "failed"})
    return summary
