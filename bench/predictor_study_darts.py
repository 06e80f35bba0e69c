"""Controlled TNASP-vs-GCN experiments on the 214 DARTS genotypes (issue 16), one change at a time.

Each variant is the default TNASP (or GCN) of ``attnas.predictors`` with exactly one thing
changed; every run is the ``bench/predictor_kendall.py`` protocol (``run_kendall``: N training
genotypes, Kendall tau on the others; for ``--bench nb201``: on all 15,625 cells, CIFAR-10).
Use development seeds (not 0-4, the reported ones).  One JSON line per run is appended to
``--out`` (runs already there are skipped); ``--report`` prints mean ± std per variant and the
paired difference to ``tnasp`` on the common seeds.

    python bench/predictor_study_darts.py --variants tnasp,gcn,tnasp-pe-none --seeds 10,11,12,13,14
    python bench/predictor_study_darts.py --bench nb201 --sizes 78,156 --variants tnasp --seeds 10,11,12
    python bench/predictor_study_darts.py --report

The study, its commands and every seed's result: docs/benchmarks.md, "TNASP predictor", section 4.
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

from attnas.predictors.kendall import load_bench_data, run_kendall

#: variant -> (predictor, overrides of its preset, positional encoding or None).  The TNASP variants
#: pin ``none_tokens="keep"`` (the preset's value) unless they change it, so that "tnasp" stays the
#: TNASP of the published darts table even if the preset changes.
VARIANTS = {
    "tnasp": ("tnasp", {}, None),
    "gcn": ("gcn", {}, None),
    "mlp": ("mlp", {}, None),
    # positional encoding
    "tnasp-pe-none": ("tnasp", {}, "none"),
    "tnasp-pe-eig": ("tnasp", {}, "laplacian_eig"),
    # schedule / regularisation at N=100
    "tnasp-steps300": ("tnasp", {"min_steps": 300}, None),
    "tnasp-dropout0.3": ("tnasp", {"dropout": 0.3}, None),
    "tnasp-d32": ("tnasp", {"d_model": 32, "d_ff": 64, "mlp_hidden": 64}, None),
    "tnasp-prenorm": ("tnasp", {"norm_first": True}, None),
    # encoding and readout: unused ('none') edge tokens masked like padding (out of attention and readout)
    "tnasp-mask-none": ("tnasp", {"none_tokens": "mask"}, None),
    # the two changes that helped on their own, together
    "tnasp-mask-none-d32": ("tnasp", {"none_tokens": "mask", "d_model": 32, "d_ff": 64, "mlp_hidden": 64}, None),
}
VARIANTS = {k: (p, {"none_tokens": "keep", **o} if p == "tnasp" else o, pe) for k, (p, o, pe) in VARIANTS.items()}


def _key(r: dict) -> tuple:
    return (r["bench"], r["variant"], r["train_size"], r["seed"])


def load(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def variant_spec(name: str) -> tuple[str, dict, str | None]:
    if name in VARIANTS:
        return VARIANTS[name]
    raise SystemExit(f"unknown variant '{name}'; expected one of {sorted(VARIANTS)}")


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {_key(r) for r in load(out)}
    data = None
    for seed in args.seeds:
        for n in args.sizes:
            for name in args.variants:
                if (args.bench, name, n, seed) in done:
                    continue
                predictor, overrides, pe = variant_spec(name)
                if data is None:
                    data = load_bench_data(args.bench, "cifar10", args.data_dir)
                t0 = time.time()
                res = run_kendall(args.bench, train_size=n, seed=seed, predictor=predictor, data=data,
                                  pe=pe, overrides=overrides)
                rec = {"bench": args.bench, "variant": name, "train_size": n, "seed": seed,
                       "kendall_tau": res["kendall_tau"], "fit_time_s": res["fit_time_s"],
                       "wall_s": round(time.time() - t0, 1)}
                with out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(f"{args.bench} N={n} seed={seed} {name}: tau={rec['kendall_tau']:.4f} "
                      f"({rec['wall_s']} s)", flush=True)


def report(path: Path) -> str:
    recs = load(path)
    by: dict[tuple, dict[int, float]] = defaultdict(dict)
    for r in recs:
        by[(r["bench"], r["train_size"], r["variant"])][r["seed"]] = r["kendall_tau"]
    lines = ["| bench | N | variant | seeds | tau mean ± std | paired diff to tnasp (mean ± std, common seeds) |",
             "|---|---|---|---|---|---|"]
    for (bench, n, name), taus in sorted(by.items()):
        v = np.array(list(taus.values()))
        base = by.get((bench, n, "tnasp"), {})
        common = sorted(set(taus) & set(base))
        diff = "–"
        if name != "tnasp" and common:
            d = np.array([taus[s] - base[s] for s in common])
            diff = f"{d.mean():+.3f} ± {d.std():.3f} (n={len(d)})"
        seeds = ",".join(str(s) for s in sorted(taus))
        lines.append(f"| {bench} | {n} | {name} | {seeds} | {v.mean():.3f} ± {v.std():.3f} | {diff} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="darts", choices=["darts", "nb201"])
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--sizes", default=None, help="training sizes (default: 100 for darts, 78,156 for nb201)")
    ap.add_argument("--seeds", default="10,11,12,13,14")
    ap.add_argument("--variants", default="tnasp,gcn")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "logs" / "predictor_study_darts.jsonl"))
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    args.sizes = [int(x) for x in (args.sizes or ("100" if args.bench == "darts" else "78,156")).split(",")]
    args.seeds = [int(x) for x in args.seeds.split(",")]
    args.variants = [v for v in args.variants.split(",") if v]
    for v in args.variants:
        variant_spec(v)
    if not args.report:
        run(args)
    print(report(Path(args.out)))


if __name__ == "__main__":
    main()
