"""``attnas sweep SWEEP.yaml --out DIR``: a grid of searches, run by a process pool or Ray.

The sweep file's ``base`` (search options shared by every run) and ``grid`` (lists whose
cartesian product gives the runs) are checked as a whole before any run starts
(:mod:`attnas.sweeps.spec`); each run gets a folder ``DIR/SPACE-METHOD[-...]-sSEED``.  Rerunning
the command skips finished runs, resumes stopped ones and tries failed ones again
(:mod:`attnas.sweeps.runner`).  Exit status 0 only when every run has finished.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from attnas.cli.common import table
from attnas.cli.main import add_json_flag
from attnas.jsonio import dumps


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a grid of searches from a sweep file (local process pool or Ray)",
                       description="Run every search of a sweep file's grid, each in its own folder under "
                                   "--out; finished runs are skipped, stopped ones resumed, failed ones recorded "
                                   "(RUN/error.json, DIR/runs.jsonl) without stopping the others.")
    p.add_argument("sweep_file", metavar="SWEEP", help="YAML or JSON file with 'base', 'grid' and optional 'train'")
    p.add_argument("--out", required=True, metavar="DIR", help="sweep folder (one run folder per grid point)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="runs at the same time (default 1)")
    p.add_argument("--threads", type=int, metavar="T",
                   help="threads per run (default: CPU cores / jobs; jobs x threads may not exceed the cores)")
    p.add_argument("--backend", default="local", choices=("local", "ray"),
                   help="local: spawned processes (default); ray: Ray tasks (pip install 'attnas[ray]')")
    p.add_argument("--address", metavar="ADDR",
                   help="Ray cluster to join (ray.init(address=ADDR)); default: a local Ray instance")
    p.add_argument("--dry-run", action="store_true", help="check the sweep file and list the runs; run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from attnas.sweeps.runner import SweepFailed, run_sweep

    res = run_sweep(args.sweep_file, args.out, jobs=args.jobs, threads=args.threads, backend=args.backend,
                    address=args.address, dry_run=args.dry_run, progress=not args.quiet)
    if res.get("dry_run"):
        rows = [[st["run"], st["state"], json.dumps(st["values"], default=str)] for st in res["plan"]]
        print(table(["run", "state", "grid values"], rows))
        todo = sum(st["state"] != "done" for st in res["plan"])
        print(f"{res['runs']} runs, {todo} to run ({res['backend']}, {res['jobs']} at a time, "
              f"{res['threads']} thread(s) each); nothing was run (--dry-run)")
        return res
    print(f"sweep {res['out']}: {res['finished']}/{res['runs']} finished ({res['skipped']} skipped, "
          f"{res['ran']} run now, {res['failed']} failed) in {res['elapsed_s']:.1f} s")
    for f in res["failed_runs"]:
        print(f"  failed: {f['run']}: {f['error']}")
    if res["status"] != "done":
        if args.json:  # the summary is still the last line of the output
            print(dumps(res))
        names = ", ".join(f["run"] for f in res["failed_runs"][:3]) + ("..." if len(res["failed_runs"]) > 3 else "")
        raise SweepFailed(f"{res['runs'] - res['finished']} of {res['runs']} runs did not finish ({names}); "
                          f"see {res['out']}/runs.jsonl and RUN/error.json, then rerun the sweep to try them again")
    return res
