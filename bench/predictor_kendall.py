"""Kendall tau of the performance predictors (TNASP slides, Tables 1-2 protocol).

NAS-Bench-201 (``--bench nb201``): for each dataset, training size N and seed,
sample N training architectures plus a disjoint 200-architecture validation
set, train on *validation* accuracy, predict all 15,625 cells and compute
Kendall's tau against *test* accuracy.  Predictors: TNASP, TNASP + self-
evolution, GCN (Neural Predictor), GCN + self-evolution, MLP, and the TNASP
ablation without positional encoding (``--ablation``, CIFAR-10 only).

NAS-Bench-101 sample (``--bench nb101``): 100 training architectures, tau on
the other 400 (self-evolution takes its 200 validation architectures from
those 400, as the slides' Table 1 protocol: 100 training, 200 validation).

NAS-Bench-Macro (``--bench macro``): the same fractions of the benchmark as the
NAS-Bench-201 sizes (1, 3 and 10 % of 6,561 architectures), tau on all of
them (its one accuracy column is both target and ground truth), 200 validation
architectures.  DARTS genotypes (``--bench darts``): 100 training genotypes, tau
on the others (self-evolution's 50 validation genotypes come from those).

Every run appends one JSON line to ``--out`` (runs already there are skipped,
so an interrupted benchmark resumes); ``--report`` prints the mean ± std tables.

    python bench/predictor_kendall.py --data-dir DATA --threads 1
    python bench/predictor_kendall.py --report
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attnas.predictors.kendall import load_bench_data, run_kendall  # noqa: E402

SLIDES_NB201 = {"TNASP + SE (slides)": [0.565, 0.594, 0.642, 0.690, 0.726],
                "TNASP (slides)": [0.539, 0.589, 0.640, 0.689, 0.724],
                "Neural Predictor + SE (slides)": [0.377, 0.433, 0.602, 0.652, 0.649],
                "Neural Predictor (slides)": [0.343, 0.413, 0.584, 0.634, 0.646]}
SIZES = [78, 156, 469, 781, 1563]
#: training sizes per benchmark (NAS-Bench-Macro: the NB201 sizes' fractions of its 6,561 architectures)
BENCH_SIZES = {"nb201": SIZES, "nb101": [100], "darts": [100], "macro": [66, 197, 656]}
#: validation architectures (self-evolution) per benchmark; a record without ``val_size`` predates the
#: field and used LEGACY_VAL_SIZES (NAS-Bench-101 had 100 before it took the slides' 200)
VAL_SIZES = {"nb201": 200, "nb101": 200, "darts": 50, "macro": 200}
LEGACY_VAL_SIZES = {**VAL_SIZES, "nb101": 100}
DATASETS = ["cifar10", "cifar100", "ImageNet16-120"]
# (row name, predictor, self-evolution, pe); SE runs also give the row without SE
RUNS = [("tnasp", "tnasp", True, None), ("gcn", "gcn", True, None), ("mlp", "mlp", False, None)]
ABLATION = ("tnasp-no-pe", "tnasp", False, "none")
ROW_NAMES = {"tnasp": "TNASP", "tnasp+se": "TNASP + SE", "gcn": "GCN (Neural Predictor)",
             "gcn+se": "GCN + SE", "mlp": "MLP (one-hot)", "tnasp-no-pe": "TNASP without Laplacian PE"}


def _val_size(r: dict) -> int:
    return r.get("val_size", LEGACY_VAL_SIZES[r["bench"]])


def _key(r: dict) -> tuple:
    return (r["bench"], r["dataset"], r["row"], r["train_size"], r["seed"], _val_size(r))


def load(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {_key(r) for r in load(out)}
    if args.bench != "nb201":
        plan = [("cifar10", n, s, spec) for s in args.seeds for n in BENCH_SIZES[args.bench] for spec in RUNS]
    else:
        # seed-major order: an interrupted benchmark leaves complete rows with fewer seeds
        plan = [(ds, n, s, spec) for ds in args.datasets for s in args.seeds for n in args.sizes
                for spec in RUNS + ([ABLATION] if args.ablation and ds == "cifar10" and s in args.ablation_seeds
                                    else [])]
    plan = [p for p in plan if p[3][0] in args.predictors or (p[3] is ABLATION)]
    # GCN + SE (the slides' "Neural Predictor + SE") only where asked, to keep the CPU budget
    plan = [(ds, n, s, (r, pr, se and (r != "gcn" or _canon(ds) in args.gcn_se), pe))
            for ds, n, s, (r, pr, se, pe) in plan]
    data_cache: dict[str, object] = {}
    for ds, n, seed, (row, predictor, se, pe) in plan:
        rows = [row] + ([row + "+se"] if se else [])
        if all((args.bench, _canon(ds), r, n, seed, VAL_SIZES[args.bench]) in done for r in rows):
            continue
        if ds not in data_cache:
            data_cache[ds] = load_bench_data(args.bench, ds, args.data_dir)
        t0 = time.time()
        res = run_kendall(args.bench, train_size=n, seed=seed, predictor=predictor, self_evolution=se,
                          data=data_cache[ds], pe=pe, val_size=VAL_SIZES[args.bench])
        base = {"bench": args.bench, "dataset": res["dataset"], "train_size": n, "seed": seed,
                "val_size": res["val_size"],
                "fit_time_s": res["fit_time_s"], "wall_s": round(time.time() - t0, 1)}
        lines = [{**base, "row": row, "kendall_tau": res.get("kendall_tau_base", res["kendall_tau"])}]
        if se:
            lines.append({**base, "row": row + "+se", "kendall_tau": res["kendall_tau"],
                          "se_time_s": res["se_time_s"]})
        with out.open("a") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
        print(" ".join(f"{l['dataset']} N={n} seed={seed} {l['row']}: tau={l['kendall_tau']:.4f}" for l in lines),
              f"({base['wall_s']} s)", flush=True)


def _canon(ds: str) -> str:
    from attnas.benchmarks.nb201 import canonical_dataset

    return canonical_dataset(ds)


def report(path: Path) -> str:
    recs = [r for r in load(path) if _val_size(r) == VAL_SIZES[r["bench"]]]
    by = defaultdict(list)
    for r in recs:
        by[(r["bench"], r["dataset"], r["row"], r["train_size"])].append(r["kendall_tau"])
    lines = []
    for bench in ("nb201", "nb101", "macro", "darts"):
        dsets = DATASETS if bench == "nb201" else ["cifar10"]
        sizes = BENCH_SIZES[bench]
        for ds in dsets:
            rows = [k for k in ROW_NAMES if any((bench, ds, k, n) in by for n in sizes)]
            if not rows:
                continue
            lines.append(f"\n**{bench} {ds}** (Kendall tau, mean ± std over seeds; n = seeds)\n")
            lines.append("| predictor | " + " | ".join(f"N={n}" for n in sizes) + " |")
            lines.append("|---" * (len(sizes) + 1) + "|")
            for k in rows:
                cells = []
                for n in sizes:
                    v = by.get((bench, ds, k, n))
                    cells.append(f"{np.mean(v):.3f} ± {np.std(v):.3f} (n={len(v)})" if v else "–")
                lines.append(f"| {ROW_NAMES[k]} | " + " | ".join(cells) + " |")
            if bench == "nb201" and ds == "cifar10":
                for name, vals in SLIDES_NB201.items():
                    lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    times = [r["fit_time_s"] for r in recs if r["row"] in ("tnasp",) and r["train_size"] == 1563]
    if times:
        lines.append(f"\nTNASP fit time at N=1563 during this benchmark: median {np.median(times):.0f} s")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="nb201", choices=sorted(BENCH_SIZES))
    ap.add_argument("--data-dir")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--predictors", default="tnasp,gcn,mlp")
    ap.add_argument("--ablation", action="store_true", help="add TNASP without positional encoding (CIFAR-10)")
    ap.add_argument("--ablation-seeds", default="0,1,2")
    ap.add_argument("--gcn-se", default="cifar10", help="datasets on which GCN also runs with self-evolution")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "predictor_kendall.jsonl"))
    ap.add_argument("--report", action="store_true", help="only print the tables from --out")
    args = ap.parse_args()
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.sizes = [int(x) for x in args.sizes.split(",")]
    args.seeds = [int(x) for x in args.seeds.split(",")]
    args.ablation_seeds = [int(x) for x in args.ablation_seeds.split(",")]
    args.predictors = args.predictors.split(",")
    args.gcn_se = [_canon(d) for d in args.gcn_se.split(",") if d] if args.bench == "nb201" else ["cifar10"]
    if not args.report:
        run(args)
    print(report(Path(args.out)))


if __name__ == "__main__":
    main()
