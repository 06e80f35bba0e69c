"""Predictor-guided search in the DARTS space with the supernet evaluator, against random sampling.

1. Supernet: ``attnas search --space darts --method darts`` on a CIFAR-10 subset
   (reused when ``--run-dir`` already holds a finished run).
2. Evaluator: :class:`attnas.predictors.guided_search.InheritedWeightsEvaluator`, the one
   ``attnas guided --evaluator supernet`` uses: the stand-alone network inherits the
   supernet's weights, its BN statistics are recomputed on ``--bn-images`` images of the
   weight split, the score is its accuracy on ``--eval-images`` images of the validation
   split (held out from the weight training).
3. Pool: ``--pool`` random DARTS architectures (``--pool-seed``).  The evaluator is
   deterministic (fixed BN and validation images), so every pool member is scored once
   here and the searches read those scores: the pool's ranking is known, and an evaluation
   count is what a search would pay.
4. Per seed: TNASP-guided search (``--initial`` random, then rounds of ``--batch``; the light
   TNASP preset of ``attnas guided``) and random sampling, the same ``--budget`` on the same pool.

Reported per seed and method: the best score found, its rank in the pool (1 = the pool's
best), the evaluations needed to reach the pool's top 5.  Results: one JSON object in ``--out``.
``--device cuda`` runs the supernet search and the evaluator on a GPU (default ``cpu``); the
TNASP predictor trains on the CPU either way (the predictors have no device option).

    OMP_NUM_THREADS=1 python bench/guided_darts.py --data-dir ../shared/data --threads 1
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from _device import add_device_argument, resolve

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attnas.cli.guided import LIGHT_TNASP  # noqa: E402
from attnas.cli.main import main as attnas_main  # noqa: E402
from attnas.predictors import (InheritedWeightsEvaluator, encoder_for, get_predictor,  # noqa: E402
                               predictor_guided_search, random_search, sample_pool)
from attnas.run_dir import RESULT  # noqa: E402


def supernet(args: argparse.Namespace) -> tuple[Path, float | None]:
    """The DARTS search run (made here unless ``--run-dir`` holds a finished one); its wall time."""
    run = Path(args.run_dir)
    if (run / RESULT).is_file():
        print(f"reusing the finished search run {run}", flush=True)
        return run, None
    t0 = time.time()
    argv = ["search", "--space", "darts", "--method", "darts", "--space-options",
            json.dumps({"C": args.C, "layers": args.layers}), "--dataset", "cifar10", "--train-subset",
            str(args.train_subset), "--test-subset", "100", "--epochs", str(args.epochs), "--batch-size", "64",
            "--seed", "0", "--device", args.device, "--out", str(run), "--force", "--quiet"]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    if attnas_main(argv) != 0:
        raise SystemExit("the supernet search failed")
    return run, time.time() - t0


def rank_in(pool_scores: np.ndarray, score: float) -> int:
    """1 + the number of pool architectures scoring strictly higher."""
    return 1 + int((pool_scores > score).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir")
    ap.add_argument("--run-dir", default=str(Path(__file__).parent / "runs" / "guided_darts_supernet"))
    ap.add_argument("--C", type=int, default=8)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--train-subset", type=int, default=2000, help="CIFAR-10 training images (half for weights)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--bn-images", type=int, default=256)
    ap.add_argument("--eval-images", type=int, default=500)
    ap.add_argument("--pool", type=int, default=100)
    ap.add_argument("--pool-seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--initial", type=int, default=10)
    ap.add_argument("--batch", type=int, default=5)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "guided_darts.json"))
    add_device_argument(ap)
    args = ap.parse_args()
    resolve(args.device)  # a missing device is a one-line error before any work
    torch.set_num_threads(args.threads)
    t_start = time.time()

    run, search_s = supernet(args)
    evaluator = InheritedWeightsEvaluator(run, "darts", bn_images=args.bn_images, eval_images=args.eval_images,
                                          device=args.device)
    pool = sample_pool(evaluator.space, args.pool, args.pool_seed)
    t0 = time.time()
    scores = {a: evaluator(a) for a in pool}
    score_pool_s = time.time() - t0
    pool_scores = np.array([scores[a] for a in pool])
    lookup = scores.__getitem__  # the searches pick from the pool: its scores, computed once
    top5 = float(np.sort(pool_scores)[-5])
    print(f"pool of {len(pool)} scored in {score_pool_s:.0f}s: best {pool_scores.max():.4f}, top-5 threshold "
          f"{top5:.4f}, median {np.median(pool_scores):.4f}, worst {pool_scores.min():.4f}", flush=True)

    enc = encoder_for(evaluator.space)
    encoded = enc.encode(pool)
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for method in ("guided", "random"):
            t0 = time.time()
            if method == "guided":
                res = predictor_guided_search(
                    lookup, lambda r, s=seed: get_predictor("tnasp", enc, 1000 * s + r, **LIGHT_TNASP),
                    args.budget, candidates=pool, initial=args.initial, batch=args.batch, seed=seed,
                    encoded=encoded)
            else:
                res = random_search(lookup, args.budget, candidates=pool, seed=seed)
            best = max(res.scores)
            rec = {"seed": seed, "method": method, "evaluations": len(res.scores), "best_score": best,
                   "rank_in_pool": rank_in(pool_scores, best), "found_at": int(np.argmax(res.scores)) + 1,
                   "evals_to_top5": res.evaluations_to_reach(top5), "predictor_fits": res.predictor_fits,
                   "wall_s": round(time.time() - t0, 1)}
            runs.append(rec)
            print(json.dumps(rec), flush=True)

    summary = {}
    for method in ("guided", "random"):
        rs = [r for r in runs if r["method"] == method]
        summary[method] = {"mean_best_score": float(np.mean([r["best_score"] for r in rs])),
                           "mean_rank_in_pool": float(np.mean([r["rank_in_pool"] for r in rs])),
                           "reached_top5": sum(r["evals_to_top5"] is not None for r in rs), "seeds": len(rs)}
    record = {"command": " ".join(["python", "bench/guided_darts.py", *sys.argv[1:]]),
              "date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {torch.get_num_threads()} "
              f"torch thread(s), {platform.python_version()}, torch {torch.__version__}",
              "config": vars(args), "supernet": evaluator.describe(), "search_s": search_s,
              "score_pool_s": round(score_pool_s, 1), "total_s": round(time.time() - t_start, 1),
              "pool_best": float(pool_scores.max()), "pool_top5_threshold": top5,
              "pool_median": float(np.median(pool_scores)), "pool_worst": float(pool_scores.min()),
              "runs": runs, "summary": summary}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    for method, s in summary.items():
        print(f"{method}: mean best {s['mean_best_score']:.4f}, mean rank in pool {s['mean_rank_in_pool']:.1f}, "
              f"top-5 reached in {s['reached_top5']}/{s['seeds']} seeds")


if __name__ == "__main__":
    main()
