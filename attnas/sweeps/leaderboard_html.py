"""The leaderboard as one self-contained HTML page: per space its table and a plot of found
accuracy against search time (every run a point, every row's mean a larger marker with its standard
deviation as error bars), embedded as a base64 PNG; CSS inline, no script, no external URL
(the same conventions as :mod:`attnas.report`)."""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

from attnas.report.markup import CSS, check_html_path, esc, img, table, write_page
from attnas.report.plots import figure, png_of_figure
from attnas.sweeps.leaderboard import table_rows

_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _label(row: dict[str, Any]) -> str:
    return row["method"] + (f" [{row['variant']}]" if row["variant"] else "")


def plot_png(space: dict[str, Any]) -> bytes | None:
    """Found accuracy vs search time of one space's runs, or None when no run has both."""
    fig = figure(7.0, 4.2)
    ax = fig.subplots()
    drawn = 0
    for i, row in enumerate(space["rows"]):
        pts = [(float(p["search_time_s"]), float(p["acc"])) for p in row["points"]
               if isinstance(p.get("search_time_s"), (int, float)) and isinstance(p.get("acc"), (int, float))]
        if not pts:
            continue
        color, marker = _COLORS[i % len(_COLORS)], _MARKERS[i % len(_MARKERS)]
        ax.scatter([x for x, _ in pts], [y for _, y in pts], s=22, alpha=0.55, color=color, marker=marker,
                   label=f"{_label(row)} ({row['measure']})")
        if row["search_time_s_mean"] is not None and row["acc_mean"] is not None:
            ax.errorbar([row["search_time_s_mean"]], [row["acc_mean"]], yerr=[row["acc_std"] or 0.0],
                        xerr=[row["search_time_s_std"] or 0.0], fmt=marker, ms=9, color=color, mec="black",
                        capsize=3, lw=1.2)
        drawn += len(pts)
    if not drawn:
        return None
    ax.set_xlabel("search time (s)")
    measures = sorted({r["measure_label"] for r in space["rows"]})
    ax.set_ylabel("found accuracy (%)" if len(measures) != 1 else f"{measures[0]} (%)", fontsize=9)
    ax.set_title(f"{space['space']}: found accuracy vs search time (large marker: mean ± std)", fontsize=10,
                 loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="best")
    return png_of_figure(fig)


def build_html(board: dict[str, Any], title: str | None = None) -> tuple[str, int]:
    """``(HTML document, number of pictures)``."""
    sections, images = [], 0
    for space in board["spaces"]:
        headers, rows = table_rows(space)
        note = (f'<p class="note">{space["runs"]} finished runs; accuracies in %, mean ± sample standard '
                "deviation over the runs of a row; measure: what the accuracy is (benchmark look-up of the "
                "derived architecture, its retraining, or the supernet's validation accuracy).</p>")
        parts = [note, table(headers, rows)]
        png = plot_png(space)
        if png is not None:
            parts.append(img(png, f"{space['space']}: found accuracy vs search time"))
            images += 1
        runs = [[r["method"], p["seed"], f"{p['acc']:.2f}", p["search_time_s"], p["architecture"], p["run_dir"]]
                for r in space["rows"] for p in r["points"]]
        parts.append("<details><summary>every run</summary>" + '<div class="scroll">'
                     + table(["method", "seed", "found acc (%)", "search time (s)", "architecture", "run folder"],
                             runs) + "</div></details>")
        sections.append((f"space-{space['space']}", f"Space {space['space']}", "".join(parts)))
    if board.get("unfinished"):
        sections.append(("unfinished", "Unfinished runs (not counted)",
                         "<ul>" + "".join(f"<li>{esc(p)}</li>" for p in board["unfinished"]) + "</ul>"))
    heading = title or f"attnas leaderboard: {Path(board['dir']).name or board['dir']}"
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{sid}">{esc(t)}</a>' for sid, t, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{esc(t)}</h2>{h}</section>' for sid, t, h in sections)
    doc = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
           f"<title>{esc(heading)}</title><style>{CSS}</style></head><body>"
           f"<header><h1>{esc(heading)}</h1><p>{board['runs']} runs under {esc(board['dir'])} · generated "
           f"{esc(stamp)} by attnas leaderboard</p></header><nav>{nav}</nav><main>{body}</main></body></html>\n")
    return doc, images


def write_html(board: dict[str, Any], path: str | os.PathLike, title: str | None = None) -> dict[str, Any]:
    """Write the page to ``path`` (atomically); ``{"output", "images", "size_bytes"}``."""
    path = Path(path)
    check_html_path(path)
    doc, images = build_html(board, title)
    return {"output": str(path), "images": images, "size_bytes": write_page(path, doc)}
