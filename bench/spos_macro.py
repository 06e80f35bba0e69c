"""Benchmark 1: SPOS on NAS-Bench-Macro (CIFAR-10), reduced CPU budget.

Steps (each resumable: rerun the same command after a kill):

1. train the SPOS supernet of the ``macro`` space with the library's strategy
   and engine (uniform single-path sampling, per-epoch checkpoints) on a
   class-balanced CIFAR-10 subset (``--train-subset``), 80 % for the weights,
   20 % held out for scoring; an epoch is every batch of the weight split
   (:class:`WeightSplitSearchTask`);
2. score ``--archs`` random architectures with inherited weights (BN statistics
   recomputed on ``--bn-images`` training images, accuracy on ``--eval-images``
   held-out images) and compute Kendall's tau (and Spearman's rho) against the
   benchmark's mean accuracy (``MacroBench``);
3. run the evolutionary search for each of ``--seeds`` (same supernet, shared
   score cache) and look the winners up in the benchmark; compare with the mean
   benchmark accuracy of the random architectures and of the whole table, and
   with the table's best (93.13);
4. the same under a budget of multiply-accumulates (``--macs-budget``: the
   benchmark's ``flops`` column counts MACs; attnas's FLOPs are 2 x MACs),
   against the best architecture of the table within that budget.

Results: ``OUT/results.json`` and a Markdown summary on stdout.  ``--device cuda`` trains and
scores the supernet on a GPU (default ``cpu``).

    python bench/spos_macro.py --data-dir ../shared/data > bench/logs/spos_macro.log 2>&1
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

from _device import add_device_argument, resolve
from attnas.benchmarks.macro import MacroBench
from attnas.config import SearchConfig
from attnas.data.datasets import load_dataset
from attnas.presets import override
from attnas.from_run import EvaluationLog, load_search_run, selection_context
from attnas.spaces.registry import get_space
from attnas.strategies.base import get_strategy
from attnas.training.checkpoint import write_json
from attnas.training.engine import CHECKPOINT, Engine, seed_everything
from attnas.training.tasks import SearchTask

BENCH_BEST = 93.13


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def train_supernet(cfg: SearchConfig) -> float:
    """Train (or resume) the supernet in ``cfg.out`` with the library's engine; seconds of training."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", asdict(cfg))
    space = get_space(cfg.space, **cfg.space_options)
    strategy = get_strategy(cfg.method, space, cfg.method_options)
    data = load_dataset(cfg.dataset, cfg.data_dir, train_subset=cfg.train_subset, seed=cfg.seed)
    seed_everything(cfg.seed)
    strategy.seed(cfg.seed)
    model = strategy.build(data.num_classes, data.in_channels, data.image_size)
    task = SearchTask(strategy, model, data, cfg.epochs, cfg.batch_size, cfg.seed, torch.device(cfg.device))
    log(f"supernet: {cfg.epochs} epochs of {task.steps_per_epoch()} steps "
        f"({'resuming' if (out / CHECKPOINT).exists() else 'fresh'})")
    metrics = Engine(out, cfg.epochs, cfg.seed, progress=True, label="supernet").run(task)
    return float(sum(m["epoch_time_s"] for m in metrics))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=None, help="data folder (default $ATTNAS_DATA_DIR)")
    ap.add_argument("--out", default="bench/logs/spos_macro")
    ap.add_argument("--train-subset", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05, help="NAS-Bench-Macro: 0.1 at batch 256; cosine")
    ap.add_argument("--weight-decay", type=float, default=5e-4, help="NAS-Bench-Macro recipe")
    ap.add_argument("--archs", type=int, default=100)
    ap.add_argument("--bn-images", type=int, default=256)
    ap.add_argument("--eval-images", type=int, default=1000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--population", type=int, default=10)
    ap.add_argument("--generations", type=int, default=3)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--mutations", type=int, default=5)
    ap.add_argument("--crossovers", type=int, default=5)
    ap.add_argument("--macs-budget", type=float, default=5e7,
                    help="multiply-accumulates (the table's 'flops' column); 0 = skip the constrained runs")
    ap.add_argument("--seed", type=int, default=0, help="seed of the supernet training")
    ap.add_argument("--threads", type=int, default=1)
    add_device_argument(ap)
    args = ap.parse_args()
    resolve(args.device)  # a missing device is a one-line error before any work
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    bench = MacroBench(args.data_dir)
    evo = {"population": args.population, "generations": args.generations, "top_k": args.top_k,
           "mutations": args.mutations, "crossovers": args.crossovers,
           "bn_images": args.bn_images, "eval_images": args.eval_images}
    # ---- 1. supernet
    t0 = time.time()
    method_options = {"weights": {"lr": args.lr, "lr_min": 0.0, "weight_decay": args.weight_decay,
                                  "momentum": 0.9, "grad_clip": 0.0},
                      "lr_schedule": "cosine", "train_portion": 0.8}
    cfg = SearchConfig(space="macro", method="spos", dataset="cifar10", data_dir=args.data_dir,
                       epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, out=str(out / "search"),
                       train_subset=args.train_subset, device=args.device, method_options=method_options)
    train_time = train_supernet(cfg)
    log(f"supernet done: {train_time:.0f} s of training")

    # ---- 2. Kendall tau over random architectures
    run = load_search_run(out / "search", method_options={**evo, "flops_budget": None, "macs_budget": None})
    strategy, space, model = run.strategy, run.space, run.model
    fingerprint = {"epochs_done": run.epochs_done, "bn_images": args.bn_images, "eval_images": args.eval_images,
                   "train_subset": args.train_subset, "seed": args.seed}
    cache = EvaluationLog(out / "evaluations.jsonl", fingerprint, space)
    evaluator, _, sel_meta = strategy.selection(model, selection_context(run.task))
    t1 = time.time()
    rng = random.Random(12345)
    archs = []
    while len(archs) < args.archs:
        a = space.sample(rng)
        if a not in archs:
            archs.append(a)
    scores = []
    for i, a in enumerate(archs):
        if a not in cache.scores:
            cache.append(a, evaluator(a))
        scores.append(cache.scores[a])
        if (i + 1) % 10 == 0:
            log(f"scored {i + 1}/{len(archs)} random architectures")
    truth = [bench.query(a)["mean_acc"] for a in archs]
    tau = kendalltau(scores, truth)
    rho = spearmanr(scores, truth)
    rank_time = time.time() - t1
    best_random = archs[int(np.argmax(scores))]
    table = bench.array("mean_acc")
    macs_col = bench.array("macs")
    summary = {
        "budget": {"train_subset": args.train_subset, "train_images": int(0.8 * args.train_subset),
                   "held_out_images": args.train_subset - int(0.8 * args.train_subset),
                   "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                   "weight_decay": args.weight_decay, "threads": args.threads, **sel_meta,
                   "evolution": evo, "supernet_training_s": round(train_time, 1)},
        "kendall": {"n": len(archs), "tau": tau.statistic, "tau_p": tau.pvalue, "spearman": rho.statistic,
                    "scoring_s": round(rank_time, 1),
                    "random_mean_bench_acc": float(np.mean(truth)),
                    "table_mean_acc": float(table.mean()), "table_best_acc": float(table.max()),
                    "supernet_best_of_random": {"arch": space.to_native(best_random),
                                                "bench_acc": bench.query(best_random)["mean_acc"]}},
        "evolution": [], "constrained": []}
    log(f"Kendall tau {tau.statistic:.3f} (p={tau.pvalue:.1e}), Spearman {rho.statistic:.3f}")

    # ---- 3./4. evolution, 3 seeds, unconstrained and under a MACs budget
    budgets = [None] + ([args.macs_budget] if args.macs_budget else [])
    for budget in budgets:
        for seed in [int(s) for s in args.seeds.split(",")]:
            t2 = time.time()
            strategy.cfg = override(strategy.cfg, {"flops_budget": None, "macs_budget": budget})
            strategy.seed(seed)
            before = len(cache.scores)
            best, result = strategy.evolve(model, selection_context(run.task), evaluated=dict(cache.scores),
                                           on_evaluate=cache.append, log=log)
            q = bench.query(best)
            rec = {"seed": seed, "macs_budget": budget, "arch": space.to_native(best),
                   "supernet_val_acc": result.best_score, "bench_acc": q["mean_acc"], "bench_rank": q["rank"],
                   "macs": best.meta["macs"], "params": best.meta["params"],
                   "evaluated": len(result.evaluated), "newly_scored": len(cache.scores) - before,
                   "time_s": round(time.time() - t2, 1)}
            (summary["evolution"] if budget is None else summary["constrained"]).append(rec)
            log(f"evolution seed {seed} budget {budget}: {rec['arch']} bench {rec['bench_acc']:.2f} "
                f"(rank {rec['bench_rank']}), MACs {rec['macs'] / 1e6:.1f}M")
        if budget is not None:
            ok = macs_col <= budget
            summary["constrained_oracle"] = {"macs_budget": budget, "best_bench_acc": float(table[ok].max()),
                                             "mean_bench_acc": float(table[ok].mean()),
                                             "fraction_of_space": float(ok.mean())}
    summary["total_s"] = round(time.time() - t0, 1)
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print_markdown(summary)


def print_markdown(s: dict) -> None:
    b, k = s["budget"], s["kendall"]
    print(f"Budget: {b['train_images']} training / {b['held_out_images']} held-out CIFAR-10 images, "
          f"{b['epochs']} epochs, batch {b['batch_size']}, SGD lr {b['lr']} cosine, wd {b['weight_decay']}; "
          f"scoring: BN on {b['bn_images']} training images, accuracy on {b['eval_images']} held-out images; "
          f"supernet training {b['supernet_training_s']:.0f} s, {b['threads']} thread(s).\n")
    print(f"Kendall tau over {k['n']} random architectures: {k['tau']:.3f} (p = {k['tau_p']:.1e}); "
          f"Spearman {k['spearman']:.3f}; scoring took {k['scoring_s']:.0f} s.\n")
    print("| run | seed | architecture | benchmark acc (%) | rank / 6561 | M MACs |")
    print("|---|---|---|---|---|---|")
    for r in s["evolution"] + s["constrained"]:  # results written before the units: "flops" = MACs
        budget, macs = r.get("macs_budget", r.get("flops_budget")), r.get("macs", r.get("flops"))
        name = "evolution" if budget is None else f"evolution, MACs <= {budget / 1e6:.0f}M"
        print(f"| {name} | {r['seed']} | {r['arch']} | {r['bench_acc']:.2f} | {r['bench_rank']} | "
              f"{macs / 1e6:.1f} |")
    ev = [r["bench_acc"] for r in s["evolution"]]
    if ev:
        print(f"\nEvolution mean {np.mean(ev):.2f} +- {np.std(ev):.2f}; random architectures' mean "
              f"{k['random_mean_bench_acc']:.2f}; table mean {k['table_mean_acc']:.2f}; table best "
              f"{k['table_best_acc']:.2f}; supernet-best of the {k['n']} random: "
              f"{k['supernet_best_of_random']['bench_acc']:.2f}.")
    if "constrained_oracle" in s:
        o = s["constrained_oracle"]
        print(f"Within {o.get('macs_budget', o.get('flops_budget')) / 1e6:.0f}M MACs "
              f"({100 * o['fraction_of_space']:.0f} % of the space): "
              f"best {o['best_bench_acc']:.2f}, mean {o['mean_bench_acc']:.2f}.")


if __name__ == "__main__":
    main()
