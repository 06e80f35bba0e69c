"""``attnas report RUN_DIR [-o report.html]``: a self-contained HTML report of a run.

Config, curves (loss, accuracy, per-choice-point architecture weights or
indicator attention over epochs), other recorded scalars, the final candidate
strengths, the derived architecture drawn with its native string and JSON,
benchmark look-ups when the metrics carry ``bench_*`` fields, and a per-epoch
table; pictures are embedded as base64 PNG (:mod:`attnas.report`).
"""
from __future__ import annotations

import argparse
from typing import Any

from attnas.cli.main import add_json_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of a search or training run",
                       description="Write one HTML file (pictures embedded, no external files) with a run's "
                                   "configuration, curves, architecture and benchmark look-ups.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder of attnas search or attnas train")
    p.add_argument("-o", "--output", help="HTML file to write (default: RUN_DIR/report.html)")
    p.add_argument("--title", help="title of the report (default: run kind and folder name)")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from attnas.report import write_report

    res = write_report(args.run_dir, args.output, title=args.title)
    print(f"wrote {res.path} ({res.kind} run, {res.epochs} epochs, {res.images} pictures, "
          f"{res.size_bytes / 1024:.0f} KiB; sections: {', '.join(res.sections)})")
    for w in res.warnings:
        print(f"warning: {w}")
    return res.to_dict()
