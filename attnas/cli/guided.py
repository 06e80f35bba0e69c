"""``attnas guided``: predictor-guided search on a tabular benchmark (TNASP slides, Sec. 4).

Evaluations are NAS-Bench-201 look-ups of the *validation* accuracy (what a
search may see); the report gives, after k evaluations, the incumbent (best by
validation accuracy so far) and its *test* accuracy, and the evaluations the
search needed to find the final incumbent.  The loop is
:func:`attnas.predictors.guided_search.predictor_guided_search`: ``--initial``
random cells, then rounds of "retrain the predictor from scratch on every
evaluated cell, predict every unevaluated cell, evaluate the ``--batch`` best".
The predictor runs with a light preset (``--options``; default 20 epochs,
at least 200 steps), as ``bench/predictor_guided_search.py`` does.  To evaluate
by training instead of a look-up, use the Python API with
:class:`attnas.predictors.guided_search.TrainingEvaluator`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from attnas.cli.common import parse_json_option, table
from attnas.cli.main import add_json_flag
from attnas.errors import ConfigError

LIGHT_TNASP = {"epochs": 20, "min_steps": 200}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("guided", help="predictor-guided search on NAS-Bench-201 look-ups (TNASP)")
    p.add_argument("--bench", default="nb201", help="nb201 (the benchmark with a complete table)")
    p.add_argument("--dataset", default="cifar10", help="cifar10, cifar100 or ImageNet16-120")
    p.add_argument("--budget", type=int, default=100, help="evaluations (look-ups) in all")
    p.add_argument("--initial", type=int, default=20, help="random cells evaluated first")
    p.add_argument("--batch", type=int, default=10, help="cells evaluated per predictor round")
    p.add_argument("--predictor", default="tnasp", help="tnasp (default), mlp or gcn")
    p.add_argument("--options", help="JSON object overriding the predictor preset "
                                     f"(default for tnasp: {json.dumps(LIGHT_TNASP)})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--data-dir", help="folder with the benchmark tables (default: $ATTNAS_DATA_DIR)")
    p.add_argument("--out", help="write every evaluation (order, cell, validation and test accuracy) "
                                 "to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from attnas.benchmarks.nb201 import NB201Bench, nb201_index
    from attnas.predictors import encoder_for, get_predictor
    from attnas.predictors.guided_search import predictor_guided_search
    from attnas.spaces.nb201 import NB201Space

    if args.bench != "nb201":
        raise ConfigError(f"guided search runs on look-ups of a complete table: --bench nb201, not '{args.bench}'")
    if args.budget < args.initial:
        raise ConfigError(f"--budget {args.budget} is smaller than --initial {args.initial}")
    if args.threads:
        torch.set_num_threads(int(args.threads))
    overrides = parse_json_option(args.options, "--options")
    if overrides is None and args.predictor == "tnasp":
        overrides = dict(LIGHT_TNASP)
    bench = NB201Bench(args.data_dir)
    val, test = bench.accuracies(args.dataset, "val"), bench.accuracies(args.dataset, "test")
    archs = bench.architectures()
    enc = encoder_for("nb201")
    get_predictor(args.predictor, enc, 0, **(overrides or {}))  # a bad name or option fails before the search
    res = predictor_guided_search(
        lambda a: float(val[nb201_index(a)]),
        lambda r: get_predictor(args.predictor, enc, 1000 * args.seed + r, **(overrides or {})),
        args.budget, candidates=archs, initial=args.initial, batch=args.batch, seed=args.seed,
        encoded=enc.encode(archs), log=None if args.quiet else _stderr)
    tests = [float(test[nb201_index(a)]) for a in res.archs]
    inc = res.incumbents()
    rows, curve = [], []
    for k in sorted({args.initial, *range(args.batch * ((args.initial + args.batch - 1) // args.batch),
                                          len(inc) + 1, max(args.batch, len(inc) // 10 or 1)), len(inc)}):
        if 1 <= k <= len(inc):
            a = res.archs[inc[k - 1]]
            curve.append({"evaluations": k, "arch": NB201Space.to_native(a), "val_acc": res.scores[inc[k - 1]],
                          "test_acc": tests[inc[k - 1]]})
            rows.append([k, curve[-1]["val_acc"], curve[-1]["test_acc"], curve[-1]["arch"]])
    best = inc[-1]
    result = {"bench": "nb201", "dataset": args.dataset, "predictor": args.predictor, "seed": args.seed,
              "evaluations": len(res.scores), "predictor_fits": res.predictor_fits,
              "best_arch": NB201Space.to_native(res.archs[best]), "best_val_acc": res.scores[best],
              "best_test_acc": tests[best], "found_at": best + 1,
              "optimum_test_acc": float(test.max()), "time_s": round(res.time_s, 2), "curve": curve}
    print(table(["evaluations", "incumbent val acc", "its test acc", "incumbent"], rows))
    print(f"best of {len(res.scores)} evaluations (found at evaluation {best + 1}): {result['best_arch']}  "
          f"val {result['best_val_acc']:.2f}  test {result['best_test_acc']:.2f}  "
          f"(table optimum: test {result['optimum_test_acc']:.2f})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        from attnas.jsonio import dumps

        Path(args.out).write_text(dumps({**result, "evaluated": [
            {"arch": NB201Space.to_native(a), "val_acc": s, "test_acc": t}
            for a, s, t in zip(res.archs, res.scores, tests)]}, indent=1))
    return result


def _stderr(message: str) -> None:
    """A progress line on stderr."""
    import sys

    print(message, file=sys.stderr, flush=True)
