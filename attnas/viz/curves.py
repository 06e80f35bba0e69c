"""Pictures of a run's curves, from the files a run folder holds.

:func:`plot_run` reads ``metrics.jsonl`` (one JSON object per epoch, written by
:mod:`attnas.training.engine`) and, when present, ``scores.json``
(``{"candidates": {key: [names]}, "scores": {...}}``) and ``architecture.json``,
and draws one figure with two parts:

(a) **loss and accuracy** over epochs: every numeric field whose name contains
    ``loss`` (left) or ``acc`` (right; ``train_acc``, ``valid_acc``,
    ``test_acc`` and benchmark look-ups ``bench_*acc*``).  Accuracies are
    shown in percent: a series whose values all lie in [0, 1] is taken as a
    fraction and multiplied by 100 (the engine records fractions, the
    benchmarks percentages).
(b) **candidate strength per choice point** over epochs (the ``scores`` field
    of each epoch: the strategy's strength of every candidate, e.g. DARTS'
    softmax of alpha): small multiples, one subplot per choice point sharing
    the y axis, one line per candidate with one colour per candidate name
    across subplots, one legend for the figure.  The candidate the final
    architecture chose is drawn thick.  Runs without scores (retraining) get
    part (a) only.

Candidate names come from ``scores.json``; for a search still running (no
``scores.json`` yet) from the space named in ``config.json``; else they are
numbered.  Epochs are shown 1-based (epoch 1 = after the first epoch).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnas.errors import AttnasError, ConfigError
from attnas.run_dir import ARCHITECTURE, CONFIG, METRICS, SCORES



@dataclass
class RunData:
    """What :func:`read_run` found in a run folder."""

    run_dir: Path
    metrics: list[dict[str, Any]]
    candidates: dict[str, list[str]] = field(default_factory=dict)
    chosen: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class CurvesDrawing:
    """What :func:`plot_run` drew."""

    path: Path
    epochs: int
    loss_series: list[str]
    acc_series: list[str]
    choice_points: list[str]
    size_px: tuple[int, int]


def is_run_dir(path: str | os.PathLike) -> bool:
    """A folder with a ``metrics.jsonl`` (a search or a retraining run)."""
    p = Path(path)
    return p.is_dir() and (p / METRICS).is_file()


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{what} '{path}' is not valid JSON: {e}") from None


def read_run(run_dir: str | os.PathLike) -> RunData:
    """Read ``metrics.jsonl`` and, when there, ``scores.json``, ``architecture.json``, ``config.json``."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"run folder '{run}' does not exist")
    mpath = run / METRICS
    if not mpath.is_file():
        raise ConfigError(f"'{run}' is not a run folder: it has no {METRICS}")
    metrics = []
    for n, line in enumerate(mpath.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{mpath} line {n} is not valid JSON: {e}") from None
        if not isinstance(rec, dict):
            raise ConfigError(f"{mpath} line {n} is not a JSON object")
        metrics.append(rec)
    if not metrics:
        raise ConfigError(f"{mpath} holds no epoch yet: nothing to plot")
    data = RunData(run, metrics)
    if (run / CONFIG).is_file():
        cfg = _read_json(run / CONFIG, "run config")
        data.config = cfg if isinstance(cfg, dict) else {}
    if (run / SCORES).is_file():
        sc = _read_json(run / SCORES, "scores file")
        cands = sc.get("candidates", {}) if isinstance(sc, dict) else {}
        data.candidates = {str(k): [str(c) for c in v] for k, v in cands.items() if isinstance(v, list)}
    if not data.candidates:
        data.candidates = _candidates_from_config(data.config)
    if (run / ARCHITECTURE).is_file():
        arch = _read_json(run / ARCHITECTURE, "architecture file")
        if isinstance(arch, dict) and isinstance(arch.get("choices"), dict):
            data.chosen = {str(k): str(v) for k, v in arch["choices"].items()}
    return data


def _candidates_from_config(cfg: dict[str, Any]) -> dict[str, list[str]]:
    """Candidate names from the run's space (search still running: no scores.json)."""
    if not cfg.get("space"):
        return {}
    try:
        from attnas.spaces.registry import get_space

        space = get_space(str(cfg["space"]), data_dir=cfg.get("data_dir"), **(cfg.get("space_options") or {}))
        return {p.key: list(p.candidates) for p in space.choice_points()}
    except (AttnasError, TypeError, ValueError, OSError):  # only costs the candidate names
        return {}


def _series(metrics: list[dict[str, Any]], word: str) -> dict[str, list[float]]:
    names: list[str] = []
    for rec in metrics:
        for k, v in rec.items():
            if (word in k.lower() and k not in names and isinstance(v, (int, float))
                    and not isinstance(v, bool)):
                names.append(k)
    out = {}
    for k in names:
        vals = [float(r[k]) if isinstance(r.get(k), (int, float)) else math.nan for r in metrics]
        out[k] = vals
    return out


def _as_percent(vals: list[float]) -> list[float]:
    finite = [v for v in vals if not math.isnan(v)]
    if finite and all(0.0 <= v <= 1.0 for v in finite):
        return [v * 100 for v in vals]
    return vals


def _grid(n: int) -> tuple[int, int]:
    cols = n if n <= 4 else 3 if n <= 9 else 4 if n <= 16 else 7 if n <= 49 else 8
    return math.ceil(n / cols), cols


def _integer_epochs(ax, epochs: list[int]) -> None:
    from matplotlib.ticker import MaxNLocator

    if len(epochs) == 1:
        ax.set_xticks(epochs)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_run(run_dir: str | os.PathLike, out_png: str | os.PathLike, title: str | None = None,
             dpi: int = 130) -> CurvesDrawing:
    """Draw the curves of the run in ``run_dir`` to ``out_png`` (.png, .svg or .pdf)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from attnas.viz.style import check_output_path

    out = check_output_path(out_png)
    data = read_run(run_dir)
    metrics = data.metrics
    epochs = [int(r["epoch"]) + 1 if isinstance(r.get("epoch"), int) else i + 1
              for i, r in enumerate(metrics)]
    losses = _series(metrics, "loss")
    accs = {k: _as_percent(v) for k, v in _series(metrics, "acc").items()}
    keys: list[str] = []
    for rec in metrics:
        sc = rec.get("scores")
        if isinstance(sc, dict):
            keys += [k for k in sc if k not in keys]
    if data.candidates:
        keys.sort(key=lambda k: list(data.candidates).index(k) if k in data.candidates else len(keys))
    marker = "o" if len(epochs) <= 25 else None

    rows, cols = _grid(len(keys)) if keys else (0, 0)
    width = max(10.0, 2.3 * cols)
    top_h = 3.3
    bottom_h = 1.75 * rows + 1.0 if keys else 0.0
    fig = Figure(figsize=(width, top_h + bottom_h + (0.4 if title else 0.0)), dpi=dpi,
                 layout="constrained")
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title, fontsize=13, fontweight="bold")
    if keys:
        sub_top, sub_bottom = fig.subfigures(2, 1, height_ratios=[top_h, bottom_h])
    else:
        sub_top, sub_bottom = fig, None
    ax_l, ax_a = sub_top.subplots(1, 2)
    for ax, series, ylabel, name in ((ax_l, losses, "loss", "(a) loss"),
                                     (ax_a, accs, "accuracy (%)", "(a) accuracy")):
        for k, vals in series.items():
            ax.plot(epochs, vals, marker=marker, ms=3.5, lw=1.6, label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=11, loc="left")
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=8, frameon=False)
        else:
            ax.text(0.5, 0.5, f"no {ylabel.split()[0]} recorded", ha="center", va="center",
                    transform=ax.transAxes, color="#777777")
        _integer_epochs(ax, epochs)

    if keys and sub_bottom is not None:
        names: list[str] = []
        for k in keys:
            for c in data.candidates.get(k, []):
                if c not in names:
                    names.append(c)
        cmap_name = "tab10" if len(names) <= 10 else "tab20"
        from matplotlib import colormaps

        cmap = colormaps[cmap_name]
        colour = {c: cmap(i % cmap.N) for i, c in enumerate(names)}
        axes = sub_bottom.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
        n_cand_max = 0
        for idx, k in enumerate(keys):
            ax = axes[idx // cols][idx % cols]
            series = [rec.get("scores", {}).get(k) if isinstance(rec.get("scores"), dict) else None
                      for rec in metrics]
            n_cand = max((len(s) for s in series if isinstance(s, list)), default=0)
            n_cand_max = max(n_cand_max, n_cand)
            cands = data.candidates.get(k) or [f"candidate {j}" for j in range(n_cand)]
            for j in range(n_cand):
                vals = [float(s[j]) if isinstance(s, list) and j < len(s) else math.nan for s in series]
                name = cands[j] if j < len(cands) else f"candidate {j}"
                if name not in colour:
                    colour[name] = cmap(len(colour) % cmap.N)
                    names.append(name)
                chosen = data.chosen.get(k) == name
                ax.plot(epochs, vals, color=colour[name], lw=2.6 if chosen else 1.1,
                        marker=marker, ms=2.5 if chosen else 1.8, zorder=3 if chosen else 2)
            ax.set_title(k, fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
        for idx in range(len(keys), rows * cols):
            axes[idx // cols][idx % cols].axis("off")
        for r in range(rows):
            axes[r][0].set_ylabel("strength", fontsize=8)
        for c in range(cols):
            axes[rows - 1][c].set_xlabel("epoch", fontsize=8)
        _integer_epochs(axes[0][0], epochs)
        handles = [Line2D([], [], color=colour[c], lw=2, label=c) for c in names]
        sub_bottom.suptitle("(b) candidate strength per choice point"
                            + (" (thick line: chosen operation)" if data.chosen else ""),
                            fontsize=11, x=0.01, ha="left")
        sub_bottom.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8),
                          frameon=False, fontsize=8)
    try:
        fig.savefig(out, dpi=dpi, facecolor="white")
    except OSError as e:
        raise ConfigError(f"cannot write '{out}': {e}") from None
    return CurvesDrawing(out, len(metrics), list(losses), list(accs), keys,
                         tuple(fig.canvas.get_width_height()))
