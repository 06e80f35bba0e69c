"""``attnas search``: run or resume an architecture search."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from attnas.cli.common import (add_data_flags, add_tensorboard_flag, is_main_process, margin_warnings,
                               margins_table, parse_json_option, scores_table, table)
from attnas.cli.main import add_json_flag
from attnas.config import EMBEDDED_DEFAULT, SearchConfig, embedded_default_applies, make_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search an architecture (no arguments: the embedded default)",
                       description="Train a supernet with a search method and derive an architecture. "
                                   "Writes architecture.json, metrics.jsonl, scores.json, config.json and "
                                   "checkpoint.pt into --out.")
    p.add_argument("--space", help="search space (nb201, darts, s1..s4, ...)")
    p.add_argument("--method", help="search method (default itnas; darts, darts-2nd, random, spos, ...)")
    p.add_argument("--out", help="run folder (default: runs/search-SPACE-METHOD-DATASET-sSEED)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or killed run")
    p.add_argument("--force", action="store_true",
                   help="write a new run into a non-empty --out folder (the files of an earlier run there "
                        "are replaced; other files are left alone)")
    p.add_argument("--space-options", help="JSON object of space options, e.g. '{\"C\": 8, \"N\": 1}'")
    p.add_argument("--method-options", help="JSON object overriding the method's preset")
    p.add_argument("--flops-budget", type=float, metavar="F",
                   help="selection constraint: at most F multiply-adds per image (e.g. 6e7; spos, fairnas)")
    p.add_argument("--params-budget", type=float, metavar="P",
                   help="selection constraint: at most P parameters (e.g. 2e6; spos, fairnas)")
    p.add_argument("--teacher", metavar="CKPT",
                   help="teacher for attention-guided NOS search: a checkpoint file or an "
                        "'attnas teacher train' run folder (method option teacher_checkpoint)")
    add_data_flags(p)
    add_tensorboard_flag(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from attnas import api

    progress = not args.quiet
    if args.resume:
        result = api.resume_search(args.resume, progress=progress, stop_after=args.stop_after,
                                   tensorboard=args.tensorboard)
    else:
        space_options = parse_json_option(args.space_options, "--space-options")
        epochs = args.epochs
        if embedded_default_applies(space=args.space, dataset=args.dataset, epochs=args.epochs,
                                    space_options=space_options, config=args.config):
            epochs, space_options = EMBEDDED_DEFAULT["epochs"], dict(EMBEDDED_DEFAULT["space_options"])
        cfg = make_config(
            SearchConfig, args.config, space=args.space, method=args.method, dataset=args.dataset,
            data_dir=args.data_dir, epochs=epochs, batch_size=args.batch_size, seed=args.seed,
            out=args.out, train_subset=args.train_subset, test_subset=args.test_subset,
            image_size=args.image_size, device=args.device,
            space_options=space_options,
            method_options=_with_budgets(parse_json_option(args.method_options, "--method-options"), args))
        result = api.search(cfg, progress=progress, stop_after=args.stop_after, tensorboard=args.tensorboard,
                            force=args.force)
    if not is_main_process():  # torchrun: rank 0 reports
        return None
    print_result(result)
    return result


def _with_budgets(options: dict[str, Any] | None, args: argparse.Namespace) -> dict[str, Any] | None:
    """``--flops-budget`` / ``--params-budget`` / ``--teacher`` as the method options ``flops_budget`` /
    ``params_budget`` / ``teacher_checkpoint``."""
    budgets = {k: v for k, v in (("flops_budget", args.flops_budget), ("params_budget", args.params_budget),
                                 ("teacher_checkpoint", args.teacher)) if v is not None}
    return {**(options or {}), **budgets} if budgets else options


def print_result(result: dict[str, Any]) -> None:
    if result.get("status") != "done":
        print(f"search stopped after {result['epochs_done']}/{result['epochs']} epochs; "
              f"continue with: attnas search --resume {result['run_dir']}")
        return
    import json
    from pathlib import Path
    run_dir = Path(result["run_dir"])
    sc = json.loads((run_dir / "scores.json").read_text())
    arch = json.loads((run_dir / "architecture.json").read_text())
    print(scores_table(sc["candidates"], sc["scores"], arch["choices"]))
    if sc.get("margins"):
        print()
        print(margins_table(sc["margins"]))
        for line in margin_warnings(sc["margins"]):
            print(line, file=sys.stderr)
    print()
    rows = [["run folder", result["run_dir"]], ["space / method", f"{result['space']} / {result['method']}"],
            ["architecture", arch.get("native") or json.dumps(arch["choices"])],
            ["supernet valid acc", result.get("valid_acc")],
            ["search time (s)", result.get("search_time_s")]]
    for k, v in (result.get("benchmark") or {}).items():
        rows.append([k, v])
    print(table(["", ""], rows))
