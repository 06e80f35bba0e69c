"""A self-contained HTML report of a search or training run.

:func:`write_report` reads a run folder (``config.json``, ``metrics.jsonl``,
``scores.json``, ``architecture.json``, ``result.json``; only
``metrics.jsonl`` or ``architecture.json`` is required) and writes one HTML
file with everything inline: CSS in a ``<style>`` element, every picture a
``data:image/png;base64`` URI, no script and no external URL, so the file can
be mailed or archived as it is.  Sections:

1. **summary** -- run kind, space, method, dataset, status, final and best
   accuracies, time, parameters (retraining);
2. **curves** -- loss and accuracy over epochs, and for a search the strength
   of every candidate at every choice point over epochs
   (:func:`attnas.viz.curves.plot_run`, the same figure as ``attnas show``).
   What a strength is depends on the method (:data:`SCORE_MEANING`: DARTS'
   softmax of alpha, IT-NAS's indicator-token attention, SPOS's sampling
   frequency, ...);
3. **other recorded scalars** -- every other numeric per-epoch field
   (learning rate, EnTranNAS' temperature and sparsity penalty, architecture
   loss, ...), one small plot each;
4. **final strengths** -- a heat map (choice points x candidates) of the
   final scores with the chosen candidate framed, and the same as a table;
5. **architecture** -- the derived architecture drawn
   (:func:`attnas.viz.draw.render_architecture`), its native string and its
   JSON; a search still running shows the architecture derived at its last
   epoch;
6. **benchmark** -- when the metrics carry ``bench_*`` fields (tabular
   look-ups of the architecture derived each epoch, e.g. NAS-Bench-201): the
   trajectory over epochs and the final values per dataset;
7. **configuration** -- the resolved ``config.json`` flattened into a table;
8. **per-epoch table** -- every scalar field of every epoch.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnas.errors import AttnasError, ConfigError

#: what a method's per-candidate ``scores`` are (the y axis of the strength curves)
SCORE_MEANING = {
    "darts": "architecture weights softmax(&alpha;) (DARTS)",
    "darts-2nd": "architecture weights softmax(&alpha;) (DARTS, 2nd order)",
    "nos": "architecture weights softmax(&alpha;) (NOS)",
    "itnas": "indicator-token attention a[1:] per candidate (IT-NAS, Eq. 6)",
    "entrannas": "softmax(&alpha; / &tau;) (EnTranNAS, Eq. 5)",
    "entrannas-dst": "connection coefficients q&#770; (EnTranNAS-DST, Eq. 9)",
    "spos": "fraction of training passes in which each candidate was active (SPOS)",
    "fairnas": "fraction of training passes in which each candidate was active (FairNAS)",
    "trionet": "fraction of training passes in which each candidate was active (TrioNet)",
    "random": "uniform: random search has no preference",
}

_SKIP_SCALARS = {"epoch", "epoch_time_s"}
_BENCH_METRICS = ("val_acc", "valid_acc", "test_acc", "train_acc", "rank", "params", "flops", "macs", "latency", "acc")


@dataclass
class ReportResult:
    """What :func:`write_report` wrote."""

    path: Path
    kind: str
    sections: list[str]
    images: int
    size_bytes: int
    epochs: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.path), "kind": self.kind, "sections": self.sections, "images": self.images,
                "size_bytes": self.size_bytes, "epochs": self.epochs, "warnings": self.warnings}


# ---------------------------------------------------------------------------
# reading
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read '{path}': {e}") from None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _scalar_keys(metrics: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for rec in metrics:
        for k, v in rec.items():
            if k not in keys and _is_number(v):
                keys.append(k)
    return keys


def _bench_split(key: str) -> tuple[str, str]:
    """``bench_cifar10_test_acc`` -> ``("cifar10", "test_acc")``."""
    rest = key[len("bench_"):]
    for m in _BENCH_METRICS:
        if rest.endswith("_" + m):
            return rest[: -len(m) - 1], m
    return "", rest


# ---------------------------------------------------------------------------
# pictures
def _png_of_figure(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor="white")
    return buf.getvalue()


def _figure(w: float, h: float, dpi: int = 110):
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


def _other_scalars_png(metrics: list[dict[str, Any]], keys: list[str]) -> bytes:
    n = len(keys)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = _figure(3.0 * cols + 0.5, 2.3 * rows + 0.3)
    axes = fig.subplots(rows, cols, squeeze=False)
    ep = _epochs(metrics)
    marker = "o" if len(ep) <= 25 else None
    for i, k in enumerate(keys):
        ax = axes[i // cols][i % cols]
        vals = [float(r[k]) if _is_number(r.get(k)) else math.nan for r in metrics]
        ax.plot(ep, vals, marker=marker, ms=3, lw=1.5, color="#0072B2")
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        _integer_ticks(ax, ep)
    for i in range(n, rows * cols):
        axes[i // cols][i % cols].axis("off")
    return _png_of_figure(fig)


def _heatmap_png(candidates: dict[str, list[str]], scores: dict[str, list[float]],
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
    fig = _figure(max(5.0, 0.85 * len(names) + 2.6), max(2.2, 0.24 * len(keys) + 1.6))
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
    return _png_of_figure(fig)


def _bench_png(metrics: list[dict[str, Any]], bench_keys: list[str]) -> bytes:
    ep = _epochs(metrics)
    acc = [k for k in bench_keys if _bench_split(k)[1].endswith("acc")]
    rank = [k for k in bench_keys if _bench_split(k)[1] == "rank"]
    panels = [p for p in ((acc, "accuracy (%)"), (rank, "rank (lower is better)")) if p[0]]
    fig = _figure(5.2 * len(panels) + 0.4, 3.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    marker = "o" if len(ep) <= 25 else None
    for ax, (keys, ylabel) in zip(axes, panels):
        for k in keys:
            vals = [float(r[k]) if _is_number(r.get(k)) else math.nan for r in metrics]
            ds, m = _bench_split(k)
            ax.plot(ep, vals, marker=marker, ms=3, lw=1.5, ls="--" if m.startswith("val") else "-",
                    label=f"{ds} {m}".strip())
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
        _integer_ticks(ax, ep)
    fig.suptitle("benchmark look-up of the architecture derived at each epoch", fontsize=10)
    return _png_of_figure(fig)


# ---------------------------------------------------------------------------
# HTML pieces
def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.4e}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def _table(headers: list[str], rows: list[list[Any]], cls: str = "", raw_cols: tuple[int, ...] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for r in rows:
        cells = "".join(f"<td>{c if i in raw_cols else _e(_fmt(c))}</td>" for i, c in enumerate(r))
        body.append(f"<tr>{cells}</tr>")
    return (f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>' + "".join(body)
            + "</tbody></table>")


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _compact_json(obj: Any, indent: int = 0) -> str:
    """Indented JSON with lists of scalars kept on one line."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f'{pad}  {json.dumps(str(k))}: {_compact_json(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, list):
        if all(not isinstance(v, (dict, list)) for v in obj):
            return "[" + ", ".join(json.dumps(round(v, 6) if isinstance(v, float) else v, default=str)
                                   for v in obj) + "]"
        return "[\n" + ",\n".join(f"{pad}  {_compact_json(v, indent + 1)}" for v in obj) + f"\n{pad}]"
    return json.dumps(obj, default=str)


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(d, dict) and d:
        for k, v in d.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        out.append((prefix, d))
    return out


_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3b57;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px 0;font-size:22px} header p{margin:0;opacity:.85;font-size:13px}
nav{padding:8px 28px;background:#e9eef3;font-size:13px} nav a{margin-right:14px;color:#1f3b57}
main{padding:8px 28px 40px 28px;max-width:1400px}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px 18px;margin:16px 0}
h2{font-size:18px;margin:4px 0 10px 0;color:#1f3b57}
p.note{color:#555;font-size:13px;margin:4px 0 10px 0}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border:1px solid #d5d5d5;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f6} td.num{text-align:right}
table.kv td:first-child{font-weight:600;white-space:nowrap}
.chosen{background:#fde7d9;font-weight:700}
img{max-width:100%;height:auto;display:block;margin:8px 0;border:1px solid #eee}
pre{background:#f5f5f5;border:1px solid #e2e2e2;padding:8px;overflow-x:auto;font-size:12px;white-space:pre-wrap;word-break:break-all}
.scroll{overflow-x:auto}
"""


# ---------------------------------------------------------------------------
def _arch_of_run(run: Path, metrics: list[dict[str, Any]], config: dict[str, Any]):
    """``(Architecture | None, native | None, json dict | None, note)`` of a run."""
    from attnas.spaces.io import architecture_from_dict
    from attnas.spaces.registry import get_space_class

    if (run / "architecture.json").is_file():
        d = _read_json(run / "architecture.json")
        try:
            arch = architecture_from_dict(d)
        except AttnasError:
            return None, d.get("native") if isinstance(d, dict) else None, d, "architecture.json is not valid here"
        native = d.get("native") if isinstance(d, dict) else None
        if native is None:
            try:
                native = get_space_class(arch.space).to_native(arch)
            except AttnasError:
                native = None
        return arch, native, d, None
    space = config.get("space")
    last = next((r for r in reversed(metrics) if r.get("arch") is not None), None)
    if not space or last is None:
        return None, None, None, None
    field_ = last["arch"]
    try:
        if isinstance(field_, dict):
            arch = architecture_from_dict({"space": space, "choices": field_})
        else:
            arch = get_space_class(space).parse_native(str(field_))
    except AttnasError:
        return None, None, None, None
    epoch = int(last.get("epoch", len(metrics) - 1)) + 1
    native = field_ if isinstance(field_, str) else None
    return arch, native, arch.to_dict(native), f"search not finished: the architecture derived at epoch {epoch}"


def build_report(run_dir: str | os.PathLike, title: str | None = None) -> tuple[str, dict[str, Any]]:
    """The report's HTML and a summary ``{"kind", "sections", "images", "epochs", "warnings"}``."""
    from attnas.viz.curves import read_run

    run = Path(run_dir)
    try:
        is_dir = run.is_dir()
    except OSError:
        is_dir = False
    if not is_dir:
        raise ConfigError(f"run folder '{run}' does not exist")
    has_metrics = (run / "metrics.jsonl").is_file()
    if not has_metrics and not (run / "architecture.json").is_file():
        raise ConfigError(f"'{run}' is not a run folder: it has neither metrics.jsonl nor architecture.json")
    warnings_: list[str] = []
    if has_metrics:
        try:
            data = read_run(run)
            metrics, config, candidates, chosen = data.metrics, data.config, data.candidates, data.chosen
        except ConfigError as e:
            if "holds no epoch" not in str(e):
                raise
            metrics, config, candidates, chosen = [], {}, {}, {}
            warnings_.append("metrics.jsonl holds no epoch yet")
    else:
        metrics, config, candidates, chosen = [], {}, {}, {}
        warnings_.append("no metrics.jsonl: no curves")
    if not config and (run / "config.json").is_file():
        c = _read_json(run / "config.json")
        config = c if isinstance(c, dict) else {}
    scores_file = _read_json(run / "scores.json") if (run / "scores.json").is_file() else None
    result = _read_json(run / "result.json") if (run / "result.json").is_file() else {}
    result = result if isinstance(result, dict) else {}
    kind = "search" if "method" in config else "train" if "arch" in config else "run"
    method = str(config.get("method", "")) if kind == "search" else ""
    arch, native, arch_json, arch_note = _arch_of_run(run, metrics, config)
    if arch is not None and not chosen:
        chosen = dict(arch.choices)
    space = config.get("space") or (arch.space if arch is not None else "")

    images = 0
    sections: list[tuple[str, str, str]] = []  # id, title, html

    # 1. summary -------------------------------------------------------------
    last = metrics[-1] if metrics else {}
    rows: list[list[Any]] = [["run folder", str(run)], ["kind", kind]]
    if space:
        rows.append(["space", space])
    if method:
        rows.append(["method", method])
    if config.get("dataset"):
        rows.append(["dataset", config["dataset"]])
    if config.get("seed") is not None:
        rows.append(["seed", config["seed"]])
    epochs_total = config.get("epochs")
    status = result.get("status") or ("done" if epochs_total and len(metrics) >= int(epochs_total) else
                                      "running or stopped")
    rows.append(["epochs", f"{len(metrics)} / {epochs_total}" if epochs_total else len(metrics)])
    rows.append(["status", status])
    for k in ("train_loss", "train_acc", "valid_acc", "test_acc"):
        if _is_number(last.get(k)):
            rows.append([f"final {k}", float(last[k])])
    for k in ("valid_acc", "test_acc"):
        vals = [float(r[k]) for r in metrics if _is_number(r.get(k))]
        if vals:
            best = max(vals)
            rows.append([f"best {k}", f"{best:.4g} (epoch {1 + vals.index(best)})"])
    if result.get("params") is not None:
        rows.append(["parameters", result["params"]])
    times = [float(r["epoch_time_s"]) for r in metrics if _is_number(r.get("epoch_time_s"))]
    if times:
        rows.append(["training time (s)", round(sum(times), 2)])
    if native:
        rows.append(["architecture", native])
    sections.append(("summary", "Summary", _table(["", ""], rows, "kv")))

    # 2. curves --------------------------------------------------------------
    if metrics:
        from attnas.viz.curves import plot_run

        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "curves.png"
            curves = plot_run(run, png, title=None, dpi=110)
            curves_png = png.read_bytes()
        images += 1
        parts = []
        if curves.choice_points:
            meaning = SCORE_MEANING.get(method, "candidate strength (the strategy's score)")
            parts.append(f'<p class="note">(a) loss and accuracy per epoch (accuracies in %). (b) per choice '
                         f"point, the strength of each candidate over epochs: {meaning}; the thick line is "
                         "the candidate the final architecture chose.</p>")
        else:
            parts.append('<p class="note">Loss and accuracy per epoch (accuracies in %).</p>')
        parts.append(_img(curves_png, "loss, accuracy and candidate strength curves"))
        sections.append(("curves", "Curves", "".join(parts)))

        used = set(curves.loss_series) | set(curves.acc_series)
        others = [k for k in _scalar_keys(metrics) if k not in used and k not in _SKIP_SCALARS
                  and not k.startswith("bench_")]
        if others:
            images += 1
            sections.append(("scalars", "Other recorded scalars",
                             '<p class="note">Every other numeric field of metrics.jsonl per epoch.</p>'
                             + _img(_other_scalars_png(metrics, others), "other scalars per epoch")))

    # 4. final strengths -----------------------------------------------------
    final_scores: dict[str, list[float]] = {}
    if isinstance(scores_file, dict) and isinstance(scores_file.get("scores"), dict):
        final_scores = {str(k): [float(x) for x in v] for k, v in scores_file["scores"].items()
                        if isinstance(v, list)}
    elif metrics and isinstance(metrics[-1].get("scores"), dict):
        final_scores = {str(k): [float(x) for x in v] for k, v in metrics[-1]["scores"].items()
                        if isinstance(v, list)}
    if final_scores:
        cands = {k: candidates.get(k) or [f"candidate {j}" for j in range(len(v))]
                 for k, v in final_scores.items()}
        meaning = SCORE_MEANING.get(method, "candidate strength")
        images += 1
        trs = []
        for k, v in final_scores.items():
            cells = []
            for c, s in zip(cands[k], v):
                cls = ' class="chosen"' if chosen.get(k) == c else ""
                cells.append(f"<td{cls}>{_e(c)}: {s:.4f}</td>")
            trs.append(f"<tr><td>{_e(k)}</td>{''.join(cells)}</tr>")
        width = max(len(v) for v in final_scores.values())
        table = (f'<div class="scroll"><table><thead><tr><th>choice point</th><th colspan="{width}">candidates '
                 f'(highlighted: chosen)</th></tr></thead><tbody>{"".join(trs)}</tbody></table></div>')
        sections.append(("strengths", "Final candidate strengths",
                         f'<p class="note">{meaning}, at the end of the search; framed / highlighted: the '
                         "chosen candidate.</p>"
                         + _img(_heatmap_png(cands, final_scores, chosen, "final strength per choice point"),
                                "heat map of the final candidate strengths") + table))
    margins = scores_file.get("margins") if isinstance(scores_file, dict) else None
    if isinstance(margins, dict) and margins:
        rows = [[k, m.get("top1"), m.get("top2"), f"{m.get('margin', 0):.4f} ± {m.get('margin_std', 0):.4f}",
                 f"{100 * m.get('win_rate', 0):.0f}%",
                 f"{m.get('epoch_agreement', 1.0) * m.get('epochs_compared', 0):.0f}/{m.get('epochs_compared', 0)}",
                 "yes" if m.get("separated") else "NOT SEPARATED"] for k, m in margins.items()]
        n_bad = sum(1 for m in margins.values() if not m.get("separated"))
        sections.append(("margins", "Selection margins",
                         '<p class="note">Eq. 6 winner against the runner-up at every choice point: the margin '
                         "of their mean attention with its bootstrap standard deviation over the validation "
                         "batches, the share of bootstrap resamples the winner wins, and in how many of the "
                         "last epochs' selection passes it was the winner. "
                         + (f"<strong>{n_bad} choice point(s) are not separated from their runner-up.</strong>"
                            if n_bad else "Every choice is separated.") + "</p>"
                         + _table(["choice point", "chosen", "runner-up", "margin ± std", "bootstrap wins",
                                   "same winner, last epochs", "separated"], rows)))

    # 5. architecture --------------------------------------------------------
    if arch is not None or arch_json is not None:
        parts = []
        if arch_note:
            parts.append(f'<p class="note">{_e(arch_note)}</p>')
        if arch is not None:
            from attnas.viz.draw import render_architecture

            try:
                fig, drawing = render_architecture(arch, title=f"{arch.space} architecture"
                                                   + (f" ({method})" if method else ""))
                parts.append(_img(_png_of_figure(fig), f"{arch.space} architecture drawing"))
                images += 1
                counts = ", ".join(f"{c}: {n}" for c, n in drawing.edge_counts().items())
                parts.append(f'<p class="note">Drawn operations per panel: {_e(counts)}.</p>')
            except AttnasError as e:
                warnings_.append(f"architecture not drawn: {e}")
                parts.append(f'<p class="note">Not drawn: {_e(e)}</p>')
        if native:
            parts.append(f"<h3>native string</h3><pre>{_e(native)}</pre>")
        if arch_json is not None:
            text = _compact_json(arch_json)
            n_lines = text.count("\n") + 1
            parts.append(f"<details{' open' if n_lines <= 60 else ''}><summary>architecture JSON "
                         f"({n_lines} lines)</summary><pre>{_e(text)}</pre></details>")
        sections.append(("architecture", "Architecture", "".join(parts)))

    # 6. benchmark -----------------------------------------------------------
    bench_keys = [k for k in _scalar_keys(metrics) if k.startswith("bench_")]
    bench_final = {k: v for k, v in (result.get("benchmark") or {}).items()} if isinstance(
        result.get("benchmark"), dict) else {}
    if not bench_final and bench_keys:
        bench_final = {k: last.get(k) for k in bench_keys if k in last}
    if bench_keys or bench_final:
        parts = ['<p class="note">Tabular benchmark look-ups (e.g. NAS-Bench-201) of the derived '
                 "architecture, recorded in metrics.jsonl each epoch.</p>"]
        if bench_keys:
            parts.append(_img(_bench_png(metrics, bench_keys), "benchmark look-ups over epochs"))
            images += 1
        by_ds: dict[str, dict[str, Any]] = {}
        metric_names: list[str] = []
        for k, v in bench_final.items():
            ds, m = _bench_split(k) if k.startswith("bench_") else ("", k)
            by_ds.setdefault(ds or "-", {})[m] = v
            if m not in metric_names:
                metric_names.append(m)
        rows = [[ds] + [vals.get(m, "") for m in metric_names] for ds, vals in by_ds.items()]
        parts.append("<h3>final architecture</h3>" + _table(["dataset", *metric_names], rows))
        sections.append(("benchmark", "Benchmark", "".join(parts)))

    # 7. configuration -------------------------------------------------------
    if config:
        rows = [[k, v] for k, v in _flatten(config)]
        sections.append(("config", "Configuration (resolved)",
                         _table(["option", "value"], rows, "kv")
                         + f"<details><summary>config.json</summary><pre>"
                           f"{_e(json.dumps(config, indent=2, default=str))}</pre></details>"))

    # 8. per-epoch table -----------------------------------------------------
    if metrics:
        cols = [k for k in _scalar_keys(metrics) if not k.startswith("bench_") or len(metrics) < 200]
        rows = [[r.get(k, "") for k in cols] for r in metrics]
        extra = ""
        if any(isinstance(r.get("arch"), str) for r in metrics):
            arows = [[r.get("epoch", i), r.get("arch", "")] for i, r in enumerate(metrics)
                     if isinstance(r.get("arch"), str)]
            extra = "<h3>architecture derived each epoch</h3>" + _table(["epoch", "architecture"], arows)
        sections.append(("epochs", "Per-epoch table",
                         '<div class="scroll">' + _table(cols, rows) + "</div>" + extra))

    heading = title or f"attnas {kind} report: {run.name}"
    sub = " · ".join(_e(x) for x in (space, method, config.get("dataset")) if x)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{sid}">{_e(t)}</a>' for sid, t, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{_e(t)}</h2>{h}</section>' for sid, t, h in sections)
    if warnings_:
        body = ('<section id="warnings"><h2>Warnings</h2><ul>'
                + "".join(f"<li>{_e(w)}</li>" for w in warnings_) + "</ul></section>" + body)
    doc = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
           f"<title>{_e(heading)}</title><style>{_CSS}</style></head><body>"
           f"<header><h1>{_e(heading)}</h1><p>{sub} · generated {_e(stamp)} by attnas report</p></header>"
           f"<nav>{nav}</nav><main>{body}</main></body></html>\n")
    summary = {"kind": kind, "sections": [sid for sid, _, _ in sections], "images": images,
               "epochs": len(metrics), "warnings": warnings_}
    return doc, summary


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                 title: str | None = None) -> ReportResult:
    """Write the HTML report of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``)."""
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    if out is not None:  # a bad -o fails before the (slow) pictures are drawn
        if path.is_dir():
            raise ConfigError(f"'{path}' is a folder: give the HTML file to write with -o")
        if not path.parent.exists():
            raise ConfigError(f"cannot write '{path}': folder '{path.parent}' does not exist")
    doc, summary = build_report(run_dir, title)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(doc, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise ConfigError(f"cannot write '{path}': {e}") from None
    return ReportResult(path, summary["kind"], summary["sections"], summary["images"], path.stat().st_size,
                        summary["epochs"], summary["warnings"])

