"""``attnas evolve``: evolutionary search (and export) on the supernet of a one-shot search run.

``attnas search --method spos`` already ends with this search; ``evolve`` reruns
it on the saved supernet under other budgets or seeds, with BN recalibrated on
training batches, and can export the sub-network with inherited weights
(:mod:`attnas.from_run`).

Under ``torchrun --nproc_per_node N -m attnas.cli.main evolve RUN_DIR ...`` the
candidates of each population step are split over the N processes (each holds
the supernet and the data); the result is the one-process result.
"""
from __future__ import annotations

import argparse
from typing import Any

from attnas.cli.common import architecture_cell, is_main_process, parse_json_option, table
from attnas.cli.main import add_json_flag

EVOLUTION_FLAGS = ("population", "generations", "top_k", "mutations", "crossovers", "mutation_prob",
                   "bn_images", "eval_images")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evolve", help="evolutionary search on a trained supernet (spos, fairnas runs)",
                       description="Run the SPOS evolutionary search on the supernet of RUN_DIR under a "
                                   "FLOPs/parameter budget; write architecture.json, evolution.json and "
                                   "(--export) subnet.pt into --out (default RUN_DIR/evolve).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="folder of an 'attnas search --method spos' run")
    p.add_argument("--out", help="output folder (default RUN_DIR/evolve); rerun to resume a killed evolution")
    p.add_argument("--flops-budget", type=float, metavar="F",
                   help="at most F FLOPs per image, FLOPs = 2 x multiply-accumulates as in the TrioNet paper "
                        "(e.g. 2e9)")
    p.add_argument("--macs-budget", type=float, metavar="M",
                   help="at most M multiply-accumulates per image (what SPOS / NAS-Bench-Macro call FLOPs)")
    p.add_argument("--params-budget", type=float, metavar="P", help="at most P parameters (e.g. 2e6)")
    for name in EVOLUTION_FLAGS:
        kind = float if name == "mutation_prob" else int
        p.add_argument("--" + name.replace("_", "-"), type=kind, help=f"evolution '{name}' (default: the preset's)")
    p.add_argument("--method-options", help="JSON object of further SPOS preset overrides")
    p.add_argument("--seed", type=int, help="seed of the evolution (default: the run's RNG state)")
    p.add_argument("--export", action="store_true",
                   help="also save subnet.pt: the sub-network with inherited weights, BN recalibrated")
    p.add_argument("--device", help="auto, cpu or cuda (default: the run's)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from attnas.from_run import evolve_run

    options = dict(parse_json_option(args.method_options, "--method-options") or {})
    for name in EVOLUTION_FLAGS + ("flops_budget", "macs_budget", "params_budget"):
        v = getattr(args, name)
        if v is not None:
            options[name] = v
    res = evolve_run(args.run_dir, out=args.out, method_options=options, seed=args.seed, export=args.export,
                     progress=not args.quiet, device=args.device)
    if not is_main_process():  # torchrun: rank 0 reports
        return None
    rows = [["architecture", architecture_cell(res["architecture"])],   # the file: in "output" below
            ["supernet valid acc", res["supernet_val_acc"]], ["FLOPs (2 x MACs)", res["flops"]],
            ["MACs", res.get("macs")], ["params", res["params"]],
            ["budgets (FLOPs / MACs / params)",
             f"{res['flops_budget']} / {res.get('macs_budget')} / {res['params_budget']}"],
            ["evaluated (replayed)", f"{res['evaluated']} ({res['replayed']})"], ["output", res["out"]]]
    for k, v in (res.get("benchmark") or {}).items():
        rows.append([k, v])
    print(table(["", ""], rows))
    return res
