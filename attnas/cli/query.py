"""``attnas query``: look an architecture up in a tabular benchmark.

* ``--bench nb201 --arch '|nor_conv_3x3~0|+|...|'`` (or an architecture.json):
  validation and test accuracy on CIFAR-10, CIFAR-100 and ImageNet16-120.
* ``--bench macro --arch 11111221`` (or an architecture.json of the macro chain
  space): mean accuracy, std over the 3 runs, params, FLOPs, rank among 6,561.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from attnas.cli.common import table
from attnas.cli.main import add_json_flag
from attnas.errors import ConfigError

BENCHES = ("nb201", "macro")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("query", help="look an architecture up in a tabular benchmark (nb201, macro)")
    p.add_argument("--bench", required=True, help=f"benchmark: one of {', '.join(BENCHES)}")
    p.add_argument("--arch", required=True,
                   help="native string (NAS-Bench-201 cell string, 8-digit macro string) or architecture.json")
    p.add_argument("--data-dir", help="folder with the benchmark tables (default: $ATTNAS_DATA_DIR)")
    add_json_flag(p)
    p.set_defaults(func=run)


def _is_file(spec: str) -> bool:
    return spec.endswith(".json") or (len(spec) < 4096 and Path(spec).is_file())


def run(args: argparse.Namespace) -> dict[str, Any]:
    from attnas.spaces.io import load_architecture

    bench = str(args.bench).lower()
    if bench == "nb201":
        from attnas.benchmarks.nb201 import NB201_DATASETS, NB201Bench

        arch = load_architecture(args.arch, space="nb201")
        res = NB201Bench(args.data_dir).query(arch)
        rows = [[ds, res[ds]["val_acc"], res[ds]["test_acc"], res[ds]["rank"]] for ds in NB201_DATASETS]
        print(f"NAS-Bench-201 cell {res['arch']} (index {res['index']})")
        print(table(["dataset", "val acc (%)", "test acc (%)", "test rank"], rows, floatfmt=".2f"))
        return {"bench": "nb201", **res}
    if bench == "macro":
        from attnas.benchmarks.macro import MacroBench

        spec = str(args.arch)
        arch = load_architecture(spec) if _is_file(spec) else spec
        res = MacroBench(args.data_dir).query(arch)
        print(f"NAS-Bench-Macro architecture {res['arch']} (CIFAR-10, 3 runs)")
        print(table(["mean acc (%)", "std", "params", "FLOPs (2 x MACs)", "MACs", "rank"],
                    [[res["mean_acc"], res["std"], res["params"], res["flops"], res["macs"],
                      f"{res['rank']} of {res['of']}"]],
                    floatfmt=".2f"))
        return {"bench": "macro", **res}
    raise ConfigError(f"unknown benchmark '{args.bench}'; expected one of {list(BENCHES)}")
