"""Predictor-guided search on NAS-Bench-201 CIFAR-10 against random search and regularized evolution.

Every method evaluates architectures by a benchmark look-up of the CIFAR-10
*validation* accuracy (what a search may see) and is scored by the *test*
accuracy of its incumbent (the best architecture by validation accuracy so
far).  Reported: evaluations until the incumbent's test accuracy reaches
94.0 and the optimum 94.37 (the validation optimum is one of the two cells
with test accuracy 94.37), mean over seeds; seeds that do not get there
within the budget are counted separately.  A run stops as soon as its
incumbent is optimal (94.37), since nothing is left to measure.

TNASP-guided: 20 random architectures, then rounds of "retrain TNASP from
scratch on all evaluated, predict every unevaluated cell, evaluate the 10
best predicted" (light TNASP preset, below).

    python bench/predictor_guided_search.py --data-dir DATA --seeds 20 --threads 1
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attnas.benchmarks.nb201 import NB201Bench, nb201_index  # noqa: E402
from attnas.predictors import encoder_for, get_predictor  # noqa: E402
from attnas.predictors.guided_search import (predictor_guided_search, random_search,  # noqa: E402
                                             regularized_evolution)
from attnas.spaces.nb201 import NB201Space  # noqa: E402

GUIDED_TNASP = {"epochs": 20, "min_steps": 200}
THRESHOLDS = (94.0, 94.37)
CHECKPOINTS = (20, 50, 100, 150, 200, 300)


class IncumbentIsOptimal:
    """Stop rule: the incumbent (best validation accuracy so far) has the optimal test accuracy."""

    def __init__(self, test: np.ndarray) -> None:
        self.test, self.best, self.seen = test, -np.inf, 0

    def __call__(self, res) -> bool:
        for k in range(self.seen, len(res.scores)):  # incremental: only the new evaluations
            if res.scores[k] > self.best:
                self.best, self.inc = res.scores[k], res.archs[k]
        self.seen = len(res.scores)
        return bool(self.test[nb201_index(self.inc)] >= THRESHOLDS[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget-guided", type=int, default=300)
    ap.add_argument("--budget-re", type=int, default=3000)
    ap.add_argument("--budget-random", type=int, default=15625)
    ap.add_argument("--methods", default="guided,random,re")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "predictor_guided_search.jsonl"))
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.report:
        bench = NB201Bench(args.data_dir)
        val, test = bench.accuracies("cifar10", "val"), bench.accuracies("cifar10", "test")
        archs = bench.architectures()
        evaluate = lambda a: float(val[nb201_index(a)])  # noqa: E731
        enc = encoder_for("nb201")
        encoded = enc.encode(archs)
        space = NB201Space()
        done = set()
        if out.exists():
            done = {(r["method"], r["seed"]) for r in map(json.loads, out.read_text().splitlines())}
        for seed in range(args.seeds):
            for method in args.methods.split(","):
                if (method, seed) in done:
                    continue
                t0 = time.time()
                stop = IncumbentIsOptimal(test)
                if method == "guided":
                    mk = lambda r, s=seed: get_predictor("tnasp", enc, 1000 * s + r, **GUIDED_TNASP)  # noqa: E731
                    res = predictor_guided_search(evaluate, mk, args.budget_guided, candidates=archs, initial=20,
                                                  batch=10, seed=seed, encoded=encoded, stop=stop)
                elif method == "random":
                    res = random_search(evaluate, args.budget_random, candidates=archs, seed=seed, stop=stop)
                elif method == "re":
                    res = regularized_evolution(evaluate, args.budget_re, space, population=20, sample=5, seed=seed,
                                                stop=stop)
                else:
                    raise SystemExit(f"unknown method {method}")
                tests = [float(test[nb201_index(a)]) for a in res.archs]
                inc = res.incumbents()
                # incumbent's test accuracy after k evaluations (a stopped run keeps its optimal incumbent)
                done_opt = tests[inc[-1]] >= THRESHOLDS[-1]
                curve = {str(k): tests[inc[min(k, len(inc)) - 1]] if k <= len(inc) or done_opt else None
                         for k in CHECKPOINTS}
                budget = {"guided": args.budget_guided, "random": args.budget_random, "re": args.budget_re}[method]
                rec = {"method": method, "seed": seed, "budget": budget, "evaluations": len(res.scores),
                       "reach": {str(t): res.evaluations_to_reach(t - 1e-9, tests) for t in THRESHOLDS},
                       "final_incumbent_test": tests[res.incumbents()[-1]], "wall_s": round(time.time() - t0, 1),
                       "predictor_fits": res.predictor_fits, "incumbent_test_at": curve}
                with out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                print(json.dumps(rec), flush=True)
    print(report(out))


def report(path: Path) -> str:
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    names = {"guided": "TNASP-guided", "re": "regularized evolution", "random": "random search"}
    lines = ["| method | seeds | budget | evals to test ≥ 94.0 (mean ± std, reached) | "
             "evals to 94.37 (mean ± std, reached) | wall time per run (s) |", "|---|---|---|---|---|---|"]
    for m in ("guided", "re", "random"):
        rs = [r for r in recs if r["method"] == m]
        if not rs:
            continue
        cells = []
        for t in THRESHOLDS:
            v = [r["reach"][str(t)] for r in rs if r["reach"][str(t)] is not None]
            cells.append(f"{np.mean(v):.0f} ± {np.std(v):.0f} ({len(v)}/{len(rs)})" if v else f"– (0/{len(rs)})")
        lines.append(f"| {names[m]} | {len(rs)} | {max(r.get('budget', 0) for r in rs)} | {cells[0]} | {cells[1]} | "
                     f"{np.mean([r['wall_s'] for r in rs]):.0f} |")
    lines += ["", "Mean test accuracy (%) of the incumbent after k evaluations:", "",
              "| method | " + " | ".join(f"k={k}" for k in CHECKPOINTS) + " |", "|---" * (len(CHECKPOINTS) + 1) + "|"]
    for m in ("guided", "re", "random"):
        rs = [r for r in recs if r["method"] == m and "incumbent_test_at" in r]
        if rs:
            cells = []
            for k in CHECKPOINTS:
                v = [r["incumbent_test_at"][str(k)] for r in rs if r["incumbent_test_at"][str(k)] is not None]
                cells.append(f"{np.mean(v):.2f}" + ("" if len(v) == len(rs) else f" (n={len(v)})") if v else "–")
            lines.append(f"| {names[m]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
