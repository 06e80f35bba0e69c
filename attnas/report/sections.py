"""The report's sections, each from a :class:`attnas.report.run_data.RunData`: summary,
curves, other scalars, final strengths, selection margins, architecture, benchmark,
configuration, per-epoch table.  Every function returns the sections it makes (none when the
run has nothing to show there)."""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnas.errors import AttnasError
from attnas.report.markup import compact_json, esc, flatten, img, table
from attnas.report.plots import bench_png, heatmap_png, other_scalars_png, png_of_figure
from attnas.report.run_data import RunData, bench_split, is_number, scalar_keys

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


@dataclass
class Section:
    id: str
    title: str
    html: str
    images: int = 0


def summary(d: RunData) -> list[Section]:
    metrics, config, result = d.metrics, d.config, d.result
    last = metrics[-1] if metrics else {}
    rows: list[list[Any]] = [["run folder", str(d.run)], ["kind", d.kind]]
    if d.space:
        rows.append(["space", d.space])
    if d.method:
        rows.append(["method", d.method])
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
        if is_number(last.get(k)):
            rows.append([f"final {k}", float(last[k])])
    for k in ("valid_acc", "test_acc"):
        vals = [float(r[k]) for r in metrics if is_number(r.get(k))]
        if vals:
            best = max(vals)
            rows.append([f"best {k}", f"{best:.4g} (epoch {1 + vals.index(best)})"])
    if result.get("params") is not None:
        rows.append(["parameters", result["params"]])
    times = [float(r["epoch_time_s"]) for r in metrics if is_number(r.get("epoch_time_s"))]
    if times:
        rows.append(["training time (s)", round(sum(times), 2)])
    if d.native:
        rows.append(["architecture", d.native])
    return [Section("summary", "Summary", table(["", ""], rows, "kv"))]


def curves(d: RunData) -> list[Section]:
    """Loss, accuracy and candidate strengths (:func:`attnas.viz.curves.plot_run`), then every
    other numeric per-epoch field."""
    if not d.metrics:
        return []
    from attnas.viz.curves import plot_run

    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "curves.png"
        drawn = plot_run(d.run, png, title=None, dpi=110)
        curves_png = png.read_bytes()
    parts = []
    if drawn.choice_points:
        meaning = SCORE_MEANING.get(d.method, "candidate strength (the strategy's score)")
        parts.append(f'<p class="note">(a) loss and accuracy per epoch (accuracies in %). (b) per choice '
                     f"point, the strength of each candidate over epochs: {meaning}; the thick line is "
                     "the candidate the final architecture chose.</p>")
    else:
        parts.append('<p class="note">Loss and accuracy per epoch (accuracies in %).</p>')
    parts.append(img(curves_png, "loss, accuracy and candidate strength curves"))
    out = [Section("curves", "Curves", "".join(parts), 1)]
    used = set(drawn.loss_series) | set(drawn.acc_series)
    others = [k for k in scalar_keys(d.metrics) if k not in used and k not in _SKIP_SCALARS
              and not k.startswith("bench_")]
    if others:
        out.append(Section("scalars", "Other recorded scalars",
                           '<p class="note">Every other numeric field of metrics.jsonl per epoch.</p>'
                           + img(other_scalars_png(d.metrics, others), "other scalars per epoch"), 1))
    return out


def strengths(d: RunData) -> list[Section]:
    """The final scores as a heat map and a table, the chosen candidate framed."""
    final_scores: dict[str, list[float]] = {}
    if isinstance(d.scores_file, dict) and isinstance(d.scores_file.get("scores"), dict):
        final_scores = {str(k): [float(x) for x in v] for k, v in d.scores_file["scores"].items()
                        if isinstance(v, list)}
    elif d.metrics and isinstance(d.metrics[-1].get("scores"), dict):
        final_scores = {str(k): [float(x) for x in v] for k, v in d.metrics[-1]["scores"].items()
                        if isinstance(v, list)}
    if not final_scores:
        return []
    cands = {k: d.candidates.get(k) or [f"candidate {j}" for j in range(len(v))]
             for k, v in final_scores.items()}
    meaning = SCORE_MEANING.get(d.method, "candidate strength")
    trs = []
    for k, v in final_scores.items():
        cells = []
        for c, s in zip(cands[k], v):
            cls = ' class="chosen"' if d.chosen.get(k) == c else ""
            cells.append(f"<td{cls}>{esc(c)}: {s:.4f}</td>")
        trs.append(f"<tr><td>{esc(k)}</td>{''.join(cells)}</tr>")
    width = max(len(v) for v in final_scores.values())
    tbl = (f'<div class="scroll"><table><thead><tr><th>choice point</th><th colspan="{width}">candidates '
           f'(highlighted: chosen)</th></tr></thead><tbody>{"".join(trs)}</tbody></table></div>')
    return [Section("strengths", "Final candidate strengths",
                    f'<p class="note">{meaning}, at the end of the search; framed / highlighted: the '
                    "chosen candidate.</p>"
                    + img(heatmap_png(cands, final_scores, d.chosen, "final strength per choice point"),
                          "heat map of the final candidate strengths") + tbl, 1)]


def margins(d: RunData) -> list[Section]:
    """IT-NAS's selection margins (``scores.json`` ``margins``)."""
    found = d.scores_file.get("margins") if isinstance(d.scores_file, dict) else None
    if not isinstance(found, dict) or not found:
        return []
    rows = [[k, m.get("top1"), m.get("top2"), f"{m.get('margin', 0):.4f} ± {m.get('margin_std', 0):.4f}",
             f"{100 * m.get('win_rate', 0):.0f}%",
             f"{m.get('epoch_agreement', 1.0) * m.get('epochs_compared', 0):.0f}/{m.get('epochs_compared', 0)}",
             "yes" if m.get("separated") else "NOT SEPARATED"] for k, m in found.items()]
    n_bad = sum(1 for m in found.values() if not m.get("separated"))
    return [Section("margins", "Selection margins",
                    '<p class="note">Eq. 6 winner against the runner-up at every choice point: the margin '
                    "of their mean attention with its bootstrap standard deviation over the validation "
                    "batches, the share of bootstrap resamples the winner wins, and in how many of the "
                    "last epochs' selection passes it was the winner. "
                    + (f"<strong>{n_bad} choice point(s) are not separated from their runner-up.</strong>"
                       if n_bad else "Every choice is separated.") + "</p>"
                    + table(["choice point", "chosen", "runner-up", "margin ± std", "bootstrap wins",
                             "same winner, last epochs", "separated"], rows))]


def architecture(d: RunData) -> list[Section]:
    """The architecture drawn (:func:`attnas.viz.draw.render_architecture`), its native string
    and its JSON; a drawing that fails becomes a warning of ``d``."""
    if d.arch is None and d.arch_json is None:
        return []
    parts = []
    images = 0
    if d.arch_note:
        parts.append(f'<p class="note">{esc(d.arch_note)}</p>')
    if d.arch is not None:
        from attnas.viz.draw import render_architecture

        try:
            fig, drawing = render_architecture(d.arch, title=f"{d.arch.space} architecture"
                                               + (f" ({d.method})" if d.method else ""))
            parts.append(img(png_of_figure(fig), f"{d.arch.space} architecture drawing"))
            images += 1
            counts = ", ".join(f"{c}: {n}" for c, n in drawing.edge_counts().items())
            parts.append(f'<p class="note">Drawn operations per panel: {esc(counts)}.</p>')
        except AttnasError as e:
            d.warnings.append(f"architecture not drawn: {e}")
            parts.append(f'<p class="note">Not drawn: {esc(e)}</p>')
    if d.native:
        parts.append(f"<h3>native string</h3><pre>{esc(d.native)}</pre>")
    if d.arch_json is not None:
        text = compact_json(d.arch_json)
        n_lines = text.count("\n") + 1
        parts.append(f"<details{' open' if n_lines <= 60 else ''}><summary>architecture JSON "
                     f"({n_lines} lines)</summary><pre>{esc(text)}</pre></details>")
    return [Section("architecture", "Architecture", "".join(parts), images)]


def benchmark(d: RunData) -> list[Section]:
    """Tabular look-ups recorded per epoch (``bench_*`` fields) and of the final architecture."""
    metrics, result = d.metrics, d.result
    last = metrics[-1] if metrics else {}
    bench_keys = [k for k in scalar_keys(metrics) if k.startswith("bench_")]
    bench_final = {k: v for k, v in (result.get("benchmark") or {}).items()} if isinstance(
        result.get("benchmark"), dict) else {}
    if not bench_final and bench_keys:
        bench_final = {k: last.get(k) for k in bench_keys if k in last}
    if not bench_keys and not bench_final:
        return []
    parts = ['<p class="note">Tabular benchmark look-ups (e.g. NAS-Bench-201) of the derived '
             "architecture, recorded in metrics.jsonl each epoch.</p>"]
    images = 0
    if bench_keys:
        parts.append(img(bench_png(metrics, bench_keys), "benchmark look-ups over epochs"))
        images += 1
    by_ds: dict[str, dict[str, Any]] = {}
    metric_names: list[str] = []
    for k, v in bench_final.items():
        ds, m = bench_split(k) if k.startswith("bench_") else ("", k)
        by_ds.setdefault(ds or "-", {})[m] = v
        if m not in metric_names:
            metric_names.append(m)
    rows = [[ds] + [vals.get(m, "") for m in metric_names] for ds, vals in by_ds.items()]
    parts.append("<h3>final architecture</h3>" + table(["dataset", *metric_names], rows))
    return [Section("benchmark", "Benchmark", "".join(parts), images)]


def configuration(d: RunData) -> list[Section]:
    if not d.config:
        return []
    rows = [[k, v] for k, v in flatten(d.config)]
    return [Section("config", "Configuration (resolved)",
                    table(["option", "value"], rows, "kv")
                    + f"<details><summary>config.json</summary><pre>"
                      f"{esc(json.dumps(d.config, indent=2, default=str))}</pre></details>")]


def epoch_table(d: RunData) -> list[Section]:
    metrics = d.metrics
    if not metrics:
        return []
    cols = [k for k in scalar_keys(metrics) if not k.startswith("bench_") or len(metrics) < 200]
    rows = [[r.get(k, "") for k in cols] for r in metrics]
    extra = ""
    if any(isinstance(r.get("arch"), str) for r in metrics):
        arows = [[r.get("epoch", i), r.get("arch", "")] for i, r in enumerate(metrics)
                 if isinstance(r.get("arch"), str)]
        extra = "<h3>architecture derived each epoch</h3>" + table(["epoch", "architecture"], arows)
    return [Section("epochs", "Per-epoch table", '<div class="scroll">' + table(cols, rows) + "</div>" + extra)]


#: the sections in page order
SECTIONS = (summary, curves, strengths, margins, architecture, benchmark, configuration, epoch_table)
