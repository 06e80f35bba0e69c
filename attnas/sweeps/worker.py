"""What runs in a sweep's worker process (a spawned process or a Ray task): one run, start to end.

:func:`execute_run` takes a plain-data task (run name and folder, the search config, the
retraining options, threads, log file) and returns a plain-data outcome, never raising: the
search is started, resumed (``config.json`` there, no ``result.json``: the same code path as
``attnas search --resume``) or, when finished, taken as it is; then the optional retraining
(``RUN/train``) likewise.  Progress and any traceback go to the run's log file.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from attnas.run_dir import ARCHITECTURE, CONFIG, RESULT

TRAIN_DIR = "train"
#: result fields an outcome carries back (result.json holds everything)
RESULT_KEYS = ("run_dir", "space", "method", "status", "architecture", "valid_acc", "search_time_s", "benchmark")


def set_threads(threads: int | None) -> None:
    """Intra-op threads of this process (environment for libraries not loaded yet, and torch)."""
    if not threads:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(int(threads))


def _one_line(e: BaseException) -> str:
    text = " ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())
    return text or type(e).__name__


def _search(run_dir: Path, config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    from attnas import api
    from attnas.config import SearchConfig

    if (run_dir / RESULT).is_file():
        return json.loads((run_dir / RESULT).read_text()), "kept"
    if (run_dir / CONFIG).is_file():
        return api.resume_search(run_dir, progress=True), "resumed"
    cfg = SearchConfig(**{**config, "out": str(run_dir)})
    return api.search(cfg, progress=True), "new"


def _train(run_dir: Path, train: dict[str, Any]) -> tuple[dict[str, Any], str]:
    from attnas import api
    from attnas.config import TrainConfig

    out = run_dir / TRAIN_DIR
    if (out / RESULT).is_file():
        return json.loads((out / RESULT).read_text()), "kept"
    if (out / CONFIG).is_file():
        return api.resume_train(out, progress=True), "resumed"
    cfg = TrainConfig(**{**train, "arch": str(run_dir / ARCHITECTURE), "out": str(out)})
    return api.train(cfg, progress=True), "new"


def execute_run(task: dict[str, Any]) -> dict[str, Any]:
    """Run one sweep run; returns ``{"run", "status": "done"|"failed", "wall_s", ...}``
    (``error`` and ``error_type`` when failed, ``result`` -- a summary -- when done)."""
    t0 = time.time()
    name, run_dir = task["name"], Path(task["run_dir"])
    log_path = task.get("log")
    log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115 - closed in finally
    outcome: dict[str, Any] = {"run": name, "run_dir": str(run_dir), "pid": os.getpid()}
    stage = "search"
    try:
        with contextlib.ExitStack() as stack:
            if log is not None:
                stack.enter_context(contextlib.redirect_stdout(log))
                stack.enter_context(contextlib.redirect_stderr(log))
                print(f"=== attnas sweep run {name} (pid {os.getpid()}, {time.strftime('%Y-%m-%d %H:%M:%S')})",
                      file=log)
            set_threads(task.get("threads"))
            result, how = _search(run_dir, task["config"])
            outcome["search"] = how
            if result.get("status") != "done":
                raise RuntimeError(f"the search stopped after {result.get('epochs_done')}/{result.get('epochs')} "
                                   "epochs")
            outcome["result"] = {k: result[k] for k in RESULT_KEYS if k in result}
            if task.get("train") is not None:
                stage = "train"
                tres, how = _train(run_dir, task["train"])
                outcome["train"] = how
                if tres.get("status") != "done":
                    raise RuntimeError(f"the retraining stopped after {tres.get('epochs_done')}/"
                                       f"{tres.get('epochs')} epochs")
                outcome["result"]["train_test_acc"] = tres.get("test_acc")
        outcome["status"] = "done"
    except Exception as e:  # noqa: BLE001 - every failure is recorded, none stops the sweep
        from attnas.errors import AttnasError

        outcome.update({"status": "failed", "stage": stage, "error": _one_line(e), "error_type": type(e).__name__})
        if log is not None:
            if not isinstance(e, AttnasError):
                traceback.print_exc(file=log)
            print(f"attnas: error: {_one_line(e)}", file=log)
    finally:
        outcome["wall_s"] = round(time.time() - t0, 2)
        if log is not None:
            log.close()
    return outcome


def process_main(task: dict[str, Any], conn) -> None:
    """Entry point of a spawned worker process: output (C libraries' too) into the run's log,
    the outcome sent back through ``conn``."""
    if task.get("log"):
        fd = os.open(task["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    outcome = execute_run(task)
    conn.send(outcome)
    conn.close()
