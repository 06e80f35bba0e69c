"""Run folders: what kind of run a folder holds, whether a new run may write there, and
the lock that keeps two processes out of one folder.

* :func:`run_kind` / :func:`read_run_config` -- ``search`` or ``train`` from ``config.json``
  (a search config has ``space`` and ``method``, a training config ``arch``); the config of a
  run of the expected kind, or a one-line :class:`attnas.errors.RunFolderError`.
* :func:`check_new_run_dir` -- a new run (not ``--resume``) writes only into a folder that
  does not exist or is empty (a leftover ``.lock`` aside); any other folder is refused unless
  ``force`` (``--force``), which then replaces the files of an earlier run
  (:data:`RUN_FILES`; other files are left alone, :func:`clear_run_files`).
* :class:`RunLock` / :func:`open_run_dir` -- an exclusive ``fcntl.flock`` on ``RUN_DIR/.lock``
  for the life of the run; the file records the holder's pid and host, and a second process
  is refused with an error naming them.  The file is removed when the run ends; the lock
  itself goes with the process (a killed run leaves the file, not the lock).  Under ``torchrun`` only rank 0 locks (and writes); a refusal is
  broadcast so that every rank stops with the same error.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from attnas.errors import RunFolderError

LOCK_FILE = ".lock"
#: the files of a run folder: every module names them through these constants
CONFIG = "config.json"              # the run's configuration (and the preset it resolved to)
CHECKPOINT = "checkpoint.pt"        # the engine's atomic per-epoch checkpoint
METRICS = "metrics.jsonl"           # one JSON line per epoch
ARCHITECTURE = "architecture.json"  # a finished search's architecture
SCORES = "scores.json"              # a finished search's candidate scores (and IT-NAS margins)
RESULT = "result.json"              # a finished run's summary
WEIGHTS = "weights.pt"              # a finished training run's network weights
EVALUATIONS = "evaluations.jsonl"   # an evolution's scored candidates (replayed on resume)
EVOLUTION = "evolution.json"        # an evolution's summary
TENSORBOARD = "tensorboard"
#: what attnas search / train write into a run folder (``--force`` removes these, nothing else)
RUN_FILES = (CHECKPOINT, CONFIG, METRICS, ARCHITECTURE, SCORES, RESULT, WEIGHTS, "teacher_config.json", "teacher.pt")
RUN_DIRS = (TENSORBOARD, "evolve")
KINDS = {"search": "a search run ('attnas search')", "train": "a training run ('attnas train')"}

try:  # POSIX; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


# ----- kinds ---------------------------------------------------------------------------------
def _config_of(run: Path) -> dict[str, Any]:
    path = run / CONFIG
    if not path.is_file():
        what = "does not exist" if not run.exists() else "has no config.json"
        raise RunFolderError(f"'{run}' is not a run folder: it {what}")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunFolderError(f"cannot read '{path}': {type(e).__name__}: {e}") from None
    if not isinstance(cfg, dict):
        raise RunFolderError(f"'{path}' is not a JSON object")
    return cfg


def _kind_of(cfg: dict[str, Any]) -> str | None:
    if "method" in cfg and "space" in cfg:
        return "search"
    if "arch" in cfg:
        return "train"
    return None


def run_kind(run_dir: str | os.PathLike) -> str:
    """``search`` or ``train`` for a run folder (from its ``config.json``); a RunFolderError otherwise."""
    run = Path(run_dir)
    kind = _kind_of(_config_of(run))
    if kind is None:
        raise RunFolderError(f"'{run / CONFIG}' is neither a search nor a training run's config")
    return kind


def legacy_budget_units(cfg: dict[str, Any]) -> dict[str, Any]:
    """A search run written before budgets had units (its resolved options have ``flops_budget``
    but no ``macs_budget``) counted ``flops_budget`` in multiply-accumulates: it becomes the
    ``macs_budget`` it was, so resuming or evolving the run keeps its constraint.  In place."""
    resolved = cfg.get("resolved_method_options")
    opts = cfg.get("method_options")
    if (isinstance(resolved, dict) and "flops_budget" in resolved and "macs_budget" not in resolved
            and isinstance(opts, dict) and opts.get("flops_budget") is not None):
        opts = dict(opts)
        opts["macs_budget"] = opts.pop("flops_budget")
        cfg["method_options"] = opts
    return cfg


def legacy_space_options(cfg: dict[str, Any]) -> dict[str, Any]:
    """A TrioNet search run written before elastic depth (its space options do not say
    ``elastic_depth``; runs since record it) searched fixed depths: it reopens with
    ``elastic_depth: false``, unless it gave ``depth_choices``.  In place."""
    opts = cfg.get("space_options")
    if cfg.get("space") == "trionet" and isinstance(opts, dict) and "elastic_depth" not in opts \
            and opts.get("depth_choices") is None:
        cfg["space_options"] = {**opts, "elastic_depth": False}
    return cfg


def read_run_config(run_dir: str | os.PathLike, kind: str, resume: bool = False) -> dict[str, Any]:
    """The ``config.json`` of a ``kind`` run (``search`` / ``train``) as keyword arguments of
    :class:`attnas.config.SearchConfig` / :class:`~attnas.config.TrainConfig` (the resolved
    preset dropped); a one-line RunFolderError for any other folder (``resume``: saying how to
    continue a run of the other kind)."""
    from dataclasses import fields

    from attnas.config import SearchConfig, TrainConfig

    run = Path(run_dir)
    cfg = _config_of(run)
    found = _kind_of(cfg)
    if found != kind:
        if found is None:
            raise RunFolderError(f"'{run}' is not {KINDS[kind]}: its config.json has neither a search's "
                                 "space and method nor a training's arch")
        hint = f"; continue it with: attnas {found} --resume {run}" if resume else ""
        raise RunFolderError(f"'{run}' is {KINDS[found]}, not {KINDS[kind]}{hint}")
    cls = SearchConfig if kind == "search" else TrainConfig
    if kind == "search":
        legacy_budget_units(cfg)
        legacy_space_options(cfg)
    cfg.pop("resolved_method_options" if kind == "search" else "resolved_options", None)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise RunFolderError(f"'{run / CONFIG}' has unknown option(s) {unknown}; expected some of {sorted(known)}")
    return cfg


# ----- may a new run write here? -----------------------------------------------------------
def _entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name != LOCK_FILE)


def check_new_run_dir(out: str | os.PathLike, force: bool = False) -> None:
    """A new run may write into ``out`` only if it does not exist or is empty; else a
    RunFolderError (mentioning ``--resume`` for a run, ``--force`` always) unless ``force``."""
    p = Path(out)
    if not p.exists():
        return
    if not p.is_dir():
        raise RunFolderError(f"--out '{p}' is a file, not a folder")
    if force:
        return
    names = _entries(p)
    if not names:
        return
    if CONFIG in names or "checkpoint.pt" in names:
        try:
            kind = run_kind(p)
        except RunFolderError:
            kind = None
        hint = f"continue it with: attnas {kind} --resume {p}, " if kind else ""
        raise RunFolderError(f"'{p}' already holds a run; {hint}choose another --out, or pass --force "
                             "to overwrite it")
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    raise RunFolderError(f"--out '{p}' is not empty ({len(names)} entries: {shown}); choose another "
                         "--out, or pass --force to write the run there (replacing an earlier run's files)")


def is_free(out: str | os.PathLike) -> bool:
    """True when a new run could start in ``out`` without ``--force``."""
    p = Path(out)
    return not p.exists() or (p.is_dir() and not _entries(p))


def clear_run_files(out: str | os.PathLike) -> None:
    """Remove the files an earlier run wrote into ``out`` (:data:`RUN_FILES`, their ``.tmp``
    leftovers, :data:`RUN_DIRS`); anything else in the folder stays."""
    p = Path(out)
    for name in RUN_FILES:
        for f in (p / name, p / (name + ".tmp")):
            if f.is_file() or f.is_symlink():
                f.unlink()
    for name in RUN_DIRS:
        if (p / name).is_dir() and not (p / name).is_symlink():
            shutil.rmtree(p / name)


# ----- the lock ------------------------------------------------------------------------------
class RunLock:
    """An exclusive lock on a run folder (``RUN_DIR/.lock``), held until :meth:`release`
    (or the process ends).  Usable as a context manager."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if fcntl is None or self._fd is not None:
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _describe_holder(fd)
                os.close(fd)
                raise RunFolderError(f"run folder '{self.run_dir}' is in use by another attnas process "
                                     f"({holder}); wait for it to end or stop it, or choose another folder") from None
            try:  # the holder before us may have removed the file as we opened it: lock the current one
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(info) + "\n").encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file (still holding the lock, so no other process holds it) and unlock."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(fd)  # closing the descriptor releases the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _describe_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
        return f"pid {int(info['pid'])} on {info.get('host', '?')}, since {info.get('since', '?')}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def open_run_dir(out: str | os.PathLike, fresh: bool, force: bool = False) -> RunLock | None:
    """Create and lock the run folder ``out`` before a run writes into it; returns the lock
    (release it when the run ends), or None on the ranks > 0 of a torchrun launch.

    ``fresh`` (a new run, not a resume): the folder must be free (:func:`check_new_run_dir`),
    checked again under the lock; with ``force`` the files of an earlier run are removed
    first (under the lock, so never those of a run still going)."""
    from attnas import distributed

    lock, error = None, None
    if distributed.is_main():
        try:
            p = Path(out)
            if fresh:
                check_new_run_dir(p, force)
            p.mkdir(parents=True, exist_ok=True)
            lock = RunLock(p).acquire()
            if fresh:
                check_new_run_dir(p, force)
                if force:
                    clear_run_files(p)
        except RunFolderError as e:
            if lock is not None:
                lock.release()
            error = str(e)
        except OSError as e:
            if lock is not None:
                lock.release()
            error = f"cannot create run folder '{out}': {e.strerror or e}"
    if distributed.is_distributed():
        error = distributed.broadcast_object(error)
    if error is not None:
        raise RunFolderError(error)
    return lock
