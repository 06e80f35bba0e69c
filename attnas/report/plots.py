"""The report's pictures (PNG bytes, matplotlib's Agg canvas, no pyplot): other recorded
scalars per epoch, the heat map of the final candidate strengths, benchmark look-ups per epoch."""
from __future__ import annotations

import io
import math
from typing import Any

from attnas.report.run_data import bench_split, is_number


def png_of_figure(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor="white")
    return buf.getvalue()


def figure(w: float, h: float, dpi: int = 110):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _epochs(metrics: list[dict[str, Any]]) -> list[int]:
    return [int(r["epoch"]) + 1 if isinstance(r.get("epoch"), int) else i + 1 for i, r in enumerate(metrics)]


def _integer_ticks(ax, epochs: list[int]) -> None:
    from matplotlib.ticker import MaxNLocator

    if len(epochs) == 1:
        ax.set_xticks(epochs)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def other_scalars_png(metrics: list[dict[str, Any]], keys: list[str]) -> bytes:
    n = len(keys)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = figure(3.0 * cols + 0.5, 2.3 * rows + 0.3)
    axes = fig.subplots(rows, cols, squeeze=False)
    ep = _epochs(metrics)
    marker = "o" if len(ep) <= 25 else None
    for i, k in enumerate(keys):
        ax = axes[i // cols][i % cols]
        vals = [float(r[k]) if is_number(r.get(k)) else math.nan for r in metrics]
        ax.plot(ep, vals, marker=marker, ms=3, lw=1.5, color="#0072B2")
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        _integer_ticks(ax, ep)
    for i in range(n, rows * cols):
        axes[i // cols][i % cols].axis("off")
    return png_of_figure(fig)


def heatmap_png(candidates: dict[str, list[str]], scores: dict[str, list[float]],
                chosen: dict[str, str], title: str) -> bytes:
    import numpy as np
    from matplotlib.patches import Rectangle

    keys = [k for k in candidates if k in scores]
    names: list[str] = []
    for k in keys:
        names += [c for c in candidates[k] if c not in names]
    mat = np.full((len(keys), len(names)), np.nan)
    for i, k in enumerate(keys):
        for c, v in zip(candidates[k], scores[k]):
            mat[i, names.index(c)] = float(v)
    fig = figure(max(5.0, 0.85 * len(names) + 2.6), max(2.2, 0.24 * len(keys) + 1.6))
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(mat), aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(keys)), keys, fontsize=7 if len(keys) > 20 else 8)
    for i, k in enumerate(keys):
        c = chosen.get(k)
        if c in names:
            j = names.index(c)
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="#D55E00", lw=2.0))
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=10, loc="left")
    return png_of_figure(fig)


def bench_png(metrics: list[dict[str, Any]], bench_keys: list[str]) -> bytes:
    ep = _epochs(metrics)
    acc = [k for k in bench_keys if bench_split(k)[1].endswith("acc")]
    rank = [k for k in bench_keys if bench_split(k)[1] == "rank"]
    panels = [p for p in ((acc, "accuracy (%)"), (rank, "rank (lower is better)")) if p[0]]
    fig = figure(5.2 * len(panels) + 0.4, 3.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    marker = "o" if len(ep) <= 25 else None
    for ax, (keys, ylabel) in zip(axes, panels):
        for k in keys:
            vals = [float(r[k]) if is_number(r.get(k)) else math.nan for r in metrics]
            ds, m = bench_split(k)
            ax.plot(ep, vals, marker=marker, ms=3, lw=1.5, ls="--" if m.startswith("val") else "-",
                    label=f"{ds} {m}".strip())
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
        _integer_ticks(ax, ep)
    fig.suptitle("benchmark look-up of the architecture derived at each epoch", fontsize=10)
    return png_of_figure(fig)
