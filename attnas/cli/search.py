"""``attnas search``: run or resume an architecture search."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from attnas.run_dir import ARCHITECTURE, SCORES
from attnas.cli.common import (add_data_flags, add_tensorboard_flag, architecture_cell, is_main_process,
                               margin_warnings, margins_table, parse_json_option, refuse_with_resume, scores_table,
                               table)
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
                   help="selection constraint: at most F FLOPs per image, FLOPs = 2 x multiply-accumulates "
                        "as in the TrioNet paper (e.g. 2e9; spos, fairnas, trionet)")
    p.add_argument("--macs-budget", type=float, metavar="M",
                   help="selection constraint: at most M multiply-accumulates (MACs) per image -- what SPOS, "
                        "ProxylessNAS and NAS-Bench-Macro call FLOPs (e.g. 3.3e8; spos, fairnas, trionet)")
    p.add_argument("--params-budget", type=float, metavar="P",
                   help="selection constraint: at most P parameters (e.g. 2e6; spos, fairnas)")
    p.add_argument("--teacher", metavar="CKPT",
                   help="teacher for attention-guided NOS search: a checkpoint file or an "
                        "'attnas teacher train' run folder (method option teacher_checkpoint)")
    p.add_argument("--amp", action="store_true", default=None,
                   help="mixed precision: float16 with loss scaling on CUDA, bfloat16 on CPU")
    add_data_flags(p)
    add_tensorboard_flag(p)
    add_json_flag(p)
    p.set_defaults(func=run)


#: options that define a new run: refused with --resume (the run keeps its recorded ones)
RUN_OPTIONS = ("space", "method", "out", "force", "space_options", "method_options", "flops_budget", "macs_budget",
               "params_budget", "teacher", "amp", "dataset", "data_dir", "epochs", "batch_size", "seed", "config",
               "train_subset", "test_subset", "image_size", "device")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from attnas import api

    progress = not args.quiet
    refuse_with_resume(args, RUN_OPTIONS)
    if args.resume:
        result = api.resume_search(args.resume, progress=progress, stop_after=args.stop_after,
                                  checkpoint_every=args.checkpoint_every,
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
            image_size=args.image_size, device=args.device, amp=args.amp, checkpoint_every=args.checkpoint_every,
            space_options=space_options,
            method_options=_with_budgets(parse_json_option(args.method_options, "--method-options"), args))
        result = api.search(cfg, progress=progress, stop_after=args.stop_after, tensorboard=args.tensorboard,
                            force=args.force)
    if not is_main_process():  # torchrun: rank 0 reports
        return None
    print_result(result)
    return result


def _with_budgets(options: dict[str, Any] | None, args: argparse.Namespace) -> dict[str, Any] | None:
    """``--flops-budget`` / ``--macs-budget`` / ``--params-budget`` / ``--teacher`` as the method options
    ``flops_budget`` / ``macs_budget`` / ``params_budget`` / ``teacher_checkpoint``."""
    budgets = {k: v for k, v in (("flops_budget", args.flops_budget), ("params_budget", args.params_budget),
                                 ("macs_budget", getattr(args, "macs_budget", None)),
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
    sc = json.loads((run_dir / SCORES).read_text())
    arch = json.loads((run_dir / ARCHITECTURE).read_text())
    print(scores_table(sc["candidates"], sc["scores"], arch["choices"], sc.get("label", "candidate strengths")))
    if sc.get("margins"):
        print()
        print(margins_table(sc["margins"]))
        for line in margin_warnings(sc["margins"]):
            print(line, file=sys.stderr)
    print()
    rows = [["run folder", result["run_dir"]], ["space / method", f"{result['space']} / {result['method']}"],
            ["architecture", architecture_cell(arch.get("native") or arch["choices"])],
            ["supernet valid acc", result.get("valid_acc")],
            ["search time (s)", result.get("search_time_s")]]
    if result.get("selection_time_s"):  # included in the search time
        rows.append(["  of which selection (s)", result["selection_time_s"]])
    for k, v in (result.get("benchmark") or {}).items():
        rows.append([k, v])
    print(table(["", ""], rows))
