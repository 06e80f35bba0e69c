"""``attnas analyze``: analyses of finished search runs.

* ``attnas analyze ranking RUN [RUN ...]`` -- ranking consistency on NAS-Bench-201
  (IT-NAS Sec. 4.3, App. A.7-A.8): per edge, Kendall's tau between each run's
  indicator (``scores.json``: IT-NAS attention, DARTS softmax(alpha), ...) and the
  benchmark ``best_acc`` of Eq. 9; runs are grouped by method (``config.json``)
  and shown side by side as mean +- std over runs.  ``--detail`` adds, per
  edge, the operations with their ``best_acc`` and each method's mean indicator
  (the tables of the paper's Fig. 9-14).
* ``attnas analyze gradcam RUN --layer KEY -o grid.png`` -- per-operation Grad-CAM at one
  choice point of a trained supernet (IT-NAS Fig. 4), the indicator's choice marked.
"""
from __future__ import annotations

import argparse
import math
from typing import Any

from attnas.cli.common import table
from attnas.cli.main import add_json_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="analyses of search runs (ranking consistency)",
                       description="Analyses of finished search runs.")
    asub = p.add_subparsers(dest="analysis", metavar="ANALYSIS")
    r = asub.add_parser(
        "ranking", help="Kendall tau of the indicator vs NAS-Bench-201 best_acc, per edge",
        description="Ranking consistency (IT-NAS App. A.7): for each NAS-Bench-201 edge, Kendall's tau "
                    "between a run's candidate strengths (scores.json) and the best benchmark accuracy "
                    "reachable with each operation on that edge (Eq. 9).  Runs are grouped by method.")
    r.add_argument("runs", nargs="+", metavar="RUN_DIR", help="folders of finished nb201 searches")
    r.add_argument("--dataset", default="cifar10", help="benchmark dataset: cifar10 (default), cifar100, "
                                                        "ImageNet16-120")
    r.add_argument("--split", default="test", choices=("test", "val"),
                   help="benchmark accuracy column (default test, as the paper's figures)")
    r.add_argument("--data-dir", help="folder with the NAS-Bench-201 tables (default: $ATTNAS_DATA_DIR)")
    r.add_argument("--detail", action="store_true", help="also print every edge's operations, best_acc "
                                                         "and mean indicators")
    add_json_flag(r)
    r.set_defaults(func=run_ranking)
    g = asub.add_parser(
        "gradcam", help="per-operation Grad-CAM at one choice point of a trained supernet (IT-NAS Fig. 4)",
        description="For a few validation images of a finished search run, where each candidate operation "
                    "of one choice point responds (Grad-CAM of the target-class logit w.r.t. the operation's "
                    "output, all candidates in one pass); the indicator's choice is framed.")
    g.add_argument("run", metavar="RUN_DIR", help="folder of a search run (itnas, darts, entrannas)")
    g.add_argument("--layer", metavar="KEY", help="choice point, e.g. layer:4 or cell:0->1 (default: the middle one)")
    g.add_argument("--instance", type=int, default=0, help="instance of a shared choice point (cell spaces)")
    g.add_argument("--images", type=int, default=4, help="number of validation images (default 4)")
    g.add_argument("--predicted", action="store_true", help="explain the predicted class instead of the label")
    g.add_argument("-o", "--output", default=None, help="PNG to write (default RUN_DIR/gradcam-KEY.png)")
    add_json_flag(g)
    g.set_defaults(func=run_gradcam)
    p.set_defaults(func=lambda args: (p.print_help(), None)[1])


def _fmt(mu: float, sd: float, n: int) -> str:
    if math.isnan(mu):
        return "nan"
    return f"{mu:+.2f}" if n == 1 else f"{mu:+.2f} +- {sd:.2f}"


def run_ranking(args: argparse.Namespace) -> dict[str, Any]:
    from attnas.analysis.ranking import ranking_consistency
    from attnas.benchmarks.nb201 import NB201Bench, canonical_dataset

    dataset = canonical_dataset(args.dataset)
    rep = ranking_consistency(args.runs, NB201Bench(args.data_dir), dataset, args.split)
    methods = sorted(rep.runs)
    taus = {m: rep.tau(m) for m in methods}
    headers = ["edge", "choice point"] + [f"{m} tau ({len(rep.runs[m])} run{'s' * (len(rep.runs[m]) > 1)})"
                                          for m in methods]
    rows = []
    for n, edge in enumerate(rep.edges):
        rows.append([f"Edge_{n + 1}", edge] + [_fmt(*taus[m][edge], len(rep.runs[m])) for m in methods])
    means = []
    for m in methods:
        vals = [taus[m][e][0] for e in rep.edges if not math.isnan(taus[m][e][0])]
        means.append(f"{sum(vals) / len(vals):+.2f}" if vals else "nan")
    rows.append(["mean", ""] + means)
    print(f"Ranking consistency on NAS-Bench-201 ({dataset} {args.split} accuracy, best_acc of Eq. 9): "
          "Kendall tau-b per edge")
    print(table(headers, rows))
    if args.detail:
        for edge in rep.edges:
            inds = {m: rep.mean_indicator(m)[edge] for m in methods}
            detail = [[op, acc] + [inds[m][k] for m in methods]
                      for k, (op, acc) in enumerate(rep.best[edge].items())]
            print()
            print(f"{edge}")
            print(table(["operation", "best_acc (%)"] + [f"{m} indicator" for m in methods], detail))
    return rep.to_dict()


def run_gradcam(args: argparse.Namespace) -> dict[str, Any]:
    from pathlib import Path

    from attnas.analysis.gradcam import draw_gradcam, gradcam_run
    from attnas.errors import ConfigError

    if args.images < 1:
        raise ConfigError(f"--images must be at least 1, got {args.images}")
    res = gradcam_run(args.run, args.layer, args.images, args.instance, use_labels=not args.predicted)
    out = Path(args.output or Path(args.run) / f"gradcam-{res.key.replace(':', '_').replace('->', '-')}.png")
    draw_gradcam(res, out, res.meta.get("class_names") or None)
    print(f"Grad-CAM per operation at {res.key} ({args.images} images), indicator's choice: {res.chosen}")
    print(table(["operation", "mean map peak (raw)", "chosen"],
                [[o, f"{float(res.strength[o].mean()):.3g}", "*" if o == res.chosen else ""] for o in res.ops]))
    print(f"wrote {out}")
    return {**res.to_dict(), "image": str(out)}
