"""``attnas leaderboard DIR [-o leaderboard.html]``: per-space tables of the finished search runs
under DIR (a sweep's folder or any tree of run folders): method, runs, found accuracy mean ± std
(benchmark test accuracy when recorded, else the retraining's or the supernet's; the measure is
named), the rank of the mean in the benchmark, mean search time (:mod:`attnas.sweeps.leaderboard`).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from attnas.cli.common import table
from attnas.cli.main import add_json_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="tables of the finished search runs under a folder (e.g. a sweep's)",
                       description="Read every search run folder under DIR (recursively) and print, per space, "
                                   "each method's runs, found accuracy mean ± std, the rank of the mean in the "
                                   "benchmark and the mean search time; -o also writes a self-contained HTML page "
                                   "with a plot of accuracy vs search time.")
    p.add_argument("dir", metavar="DIR", help="folder holding search run folders (e.g. an 'attnas sweep' --out)")
    p.add_argument("-o", "--output", metavar="FILE.html", help="also write the leaderboard as an HTML page")
    p.add_argument("--data-dir", help="folder with the benchmark tables, for the rank of the mean "
                                      "(default: the runs' data folder, else $ATTNAS_DATA_DIR)")
    p.add_argument("--title", help="title of the HTML page")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from attnas.errors import ConfigError
    from attnas.sweeps.leaderboard import build_leaderboard, table_rows

    if args.output is not None:  # a bad -o fails before anything is read or drawn
        out = Path(args.output)
        if out.is_dir():
            raise ConfigError(f"'{out}' is a folder: give the HTML file to write with -o")
        if not out.parent.exists():
            raise ConfigError(f"cannot write '{out}': folder '{out.parent}' does not exist")
    board = build_leaderboard(args.dir, data_dir=args.data_dir)
    for i, space in enumerate(board["spaces"]):
        if i:
            print()
        print(f"space {space['space']}: {space['runs']} runs")
        headers, rows = table_rows(space)
        print(table(headers, rows))
    if board["unfinished"]:
        print(f"\n{len(board['unfinished'])} unfinished run(s) not counted: {', '.join(board['unfinished'][:3])}"
              + (" ..." if len(board["unfinished"]) > 3 else ""))
    if board["without_accuracy"]:
        print(f"{len(board['without_accuracy'])} run(s) recorded no accuracy: "
              f"{', '.join(board['without_accuracy'][:3])}")
    if args.output is not None:
        from attnas.sweeps.leaderboard_html import write_html

        board["html"] = write_html(board, args.output, title=args.title)
        print(f"wrote {board['html']['output']} ({board['html']['images']} plots, "
              f"{board['html']['size_bytes'] / 1024:.0f} KiB)")
    return board
