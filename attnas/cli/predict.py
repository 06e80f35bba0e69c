"""``attnas predict``: train a performance predictor on benchmark architectures, report Kendall's tau.

``attnas predict --bench nb201 --train-size 78 --seed 0 [--self-evolution]``
follows the TNASP slides' protocol: N training architectures plus a disjoint
200-architecture validation set (used by self-evolution), then Kendall's tau
between the predictions and the ground truth of every architecture of the
benchmark (NAS-Bench-201: train on validation accuracy, tau on test
accuracy).  ``--bench nb101`` / ``darts`` report the tau on the architectures
not used for training; ``macro`` on all 6,561.
"""
from __future__ import annotations

import argparse
from typing import Any

from attnas.cli.common import parse_json_option, table
from attnas.cli.main import add_json_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="train a performance predictor (TNASP, MLP, GCN) on a benchmark; "
                                       "report Kendall's tau")
    p.add_argument("--bench", default="nb201", help="nb201 (default), nb101, macro or darts")
    p.add_argument("--dataset", default="cifar10", help="NAS-Bench-201 dataset: cifar10, cifar100, ImageNet16-120")
    p.add_argument("--train-size", type=int, required=True, help="number of training architectures N")
    p.add_argument("--val-size", type=int, help="validation architectures for self-evolution "
                                                "(default 200 for nb201, nb101 and macro, 50 darts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--predictor", default="tnasp", help="tnasp (default), mlp or gcn")
    p.add_argument("--self-evolution", action="store_true", help="add self-evolution (slides Eq. 8-13)")
    p.add_argument("--pe", help="TNASP positional encoding: laplacian (default), laplacian_eig or none")
    p.add_argument("--options", help="JSON object overriding the predictor preset, e.g. '{\"epochs\": 50}'")
    p.add_argument("--se-options", help="JSON object overriding the self-evolution settings")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--data-dir", help="folder with the benchmark tables (default: $ATTNAS_DATA_DIR)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from attnas.predictors.kendall import run_kendall

    if args.threads:
        torch.set_num_threads(int(args.threads))
    res = run_kendall(bench=args.bench, train_size=args.train_size, seed=args.seed, predictor=args.predictor,
                      self_evolution=args.self_evolution, dataset=args.dataset, val_size=args.val_size,
                      data_dir=args.data_dir, pe=args.pe, overrides=parse_json_option(args.options, "--options"),
                      se_overrides=parse_json_option(args.se_options, "--se-options"),
                      log=None if args.quiet else _stderr)
    rows = [["benchmark", f"{res['bench']} ({res['dataset']})"],
            ["predictor", res["predictor"] + (" + self-evolution" if res["self_evolution"] else "")],
            ["training / validation archs", f"{res['train_size']} / {res['val_size']}"],
            ["seed", res["seed"]], ["tau computed on", f"{res['evaluated_on']} architectures"]]
    if res["self_evolution"]:
        rows.append(["Kendall tau before SE", res["kendall_tau_base"]])
    rows += [["Kendall tau", res["kendall_tau"]], ["training time (s)", res["fit_time_s"]]]
    print(table(["", ""], rows))
    return res


def _stderr(message: str) -> None:
    """A progress line on stderr."""
    import sys

    print(message, file=sys.stderr, flush=True)
