"""Executors of a sweep's runs: ``local`` (spawned processes) and ``ray`` (Ray tasks).

Both take the runs' tasks (plain data, :func:`attnas.sweeps.worker.execute_run`), keep at most
``jobs`` of them going, and call ``on_start(task)`` / ``on_finish(task, outcome)`` in the calling
process as runs start and end (``outcome`` is always a dict: a run that crashes its process or
Ray worker is a failed outcome, the others go on).

* ``local``: one freshly spawned process per run (``multiprocessing`` "spawn" context: no state
  shared with the caller, memory returned when the run ends), its output in the run's log file;
  a process that dies (killed, out of memory) fails only its run.
* ``ray``: ``import ray`` happens here only; ``ray.init(address=...)`` joins a running cluster,
  else a local instance with ``num_cpus = jobs * threads`` is started (and shut down at the
  end).  Each run is a task asking for ``threads`` CPUs, in a worker process used once
  (``max_calls=1``).  The paths in the tasks are absolute; on a cluster the sweep folder must be
  on a file system every node reads and writes.
"""
from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

from attnas.errors import ConfigError

Task = dict[str, Any]
OnStart = Callable[[Task], None]
OnFinish = Callable[[Task, dict[str, Any]], None]
RAY_MISSING = "the ray backend needs Ray, which is not installed: pip install 'attnas[ray]'"


def _crashed(task: Task, why: str) -> dict[str, Any]:
    return {"run": task["name"], "run_dir": task["run_dir"], "status": "failed", "stage": "worker",
            "error": why, "error_type": "WorkerDied"}


def run_local(tasks: list[Task], jobs: int, on_start: OnStart, on_finish: OnFinish) -> None:
    """At most ``jobs`` spawned processes at a time, one per run."""
    from attnas.sweeps.worker import process_main

    ctx = mp.get_context("spawn")
    pending = list(tasks)
    active: list[tuple[Any, Any, Task]] = []  # (process, receiving end, task)
    try:
        while pending or active:
            while pending and len(active) < jobs:
                task = pending.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=process_main, args=(task, send), name=f"attnas-sweep:{task['name']}",
                                   daemon=False)
                proc.start()
                send.close()  # the child holds the other end: EOF when it exits
                active.append((proc, recv, task))
                on_start(task)
            ready = set(wait([c for _, c, _ in active] + [p.sentinel for p, _, _ in active]))
            for entry in list(active):
                proc, conn, task = entry
                if conn not in ready and proc.sentinel not in ready:
                    continue
                outcome = None
                try:
                    if conn.poll():
                        outcome = conn.recv()
                except (EOFError, OSError):
                    outcome = None
                if outcome is None and proc.is_alive() and conn not in ready:
                    continue
                proc.join(timeout=None if outcome is not None else 30)
                conn.close()
                active.remove(entry)
                if outcome is None:
                    code = proc.exitcode
                    why = (f"killed by signal {-code}" if code is not None and code < 0
                           else f"exit status {code}")
                    outcome = _crashed(task, f"the worker process ended without a result ({why}); see its log "
                                             f"{task.get('log')}")
                on_finish(task, outcome)
    finally:
        for proc, conn, _ in active:  # interrupted: stop the runs still going (their checkpoints stay)
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=10)
            conn.close()


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def run_ray(tasks: list[Task], jobs: int, threads: int, address: str | None, on_start: OnStart,
            on_finish: OnFinish) -> None:
    """Ray tasks, at most ``jobs`` in flight, each asking for ``threads`` CPUs."""
    ray = import_ray()
    from attnas.sweeps.worker import execute_run

    started = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=jobs * threads, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at '{address}'" if address else "a local Ray instance"
            raise ConfigError(f"cannot start or join {where}: {' '.join(str(e).split())}") from None
        started = True
    remote = ray.remote(num_cpus=threads, max_calls=1)(execute_run)
    pending = list(tasks)
    inflight: dict[Any, Task] = {}
    try:
        while pending or inflight:
            while pending and len(inflight) < jobs:
                task = pending.pop(0)
                inflight[remote.remote(task)] = task
                on_start(task)
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                task = inflight.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - a worker that died, a task Ray could not run
                    first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
                    outcome = _crashed(task, f"the Ray task failed: {type(e).__name__}: {first}")
                on_finish(task, outcome)
    finally:
        for ref in inflight:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
