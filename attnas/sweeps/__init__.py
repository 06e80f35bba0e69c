"""Sweeps: a grid of ``attnas search`` runs from one file, run by a process pool or Ray, and
a leaderboard of the finished runs.

* :mod:`attnas.sweeps.spec` -- the sweep file (``base``, ``grid``, optional ``train``), checked as a
  whole before anything runs, expanded into named runs (:func:`load_sweep`, :func:`plan_runs`);
* :mod:`attnas.sweeps.runner` -- :func:`run_sweep`: skips finished runs, resumes stopped ones,
  records failed ones (``RUN/error.json``, ``DIR/runs.jsonl``) without stopping the others;
* :mod:`attnas.sweeps.executors` -- ``local`` (one spawned process per run, ``--jobs`` at a time)
  and ``ray`` (Ray tasks); :mod:`attnas.sweeps.worker` is what runs in them;
* :mod:`attnas.sweeps.leaderboard` -- per-space tables of the finished search runs under a folder,
  as text, strict JSON and a self-contained HTML page (:mod:`attnas.sweeps.leaderboard_html`).
"""
from __future__ import annotations

from attnas.sweeps.spec import PlannedRun, Sweep, load_sweep, plan_runs

__all__ = ["PlannedRun", "Sweep", "load_sweep", "plan_runs", "run_sweep"]


def run_sweep(*args, **kwargs):
    """:func:`attnas.sweeps.runner.run_sweep` (imported on first use)."""
    from attnas.sweeps.runner import run_sweep as _run

    return _run(*args, **kwargs)
