"""Training time of the predictors on 1,563 NAS-Bench-201 architectures (this CPU).

Times ``fit`` (the preset's full schedule) and, for TNASP and GCN, the
self-evolution phase (200 validation architectures), with 1 and with 2 torch
threads; also the time to predict all 15,625 cells.  Prints one JSON line per
measurement and a markdown table.

    python bench/predictor_train_time.py --data-dir DATA
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attnas.predictors import SelfEvolution, get_predictor, split_indices  # noqa: E402
from attnas.predictors.kendall import load_bench_data  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir")
    ap.add_argument("--train-size", type=int, default=1563)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--predictors", default="tnasp,gcn,mlp")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "predictor_train_time.jsonl"))
    args = ap.parse_args()
    data = load_bench_data("nb201", "cifar10", args.data_dir)
    tr, va = split_indices(len(data.items), args.train_size, 200, seed=0)
    rows = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for name in args.predictors.split(","):
            model = get_predictor(name, data.make_encoder("none"), 0)
            if name == "tnasp":
                model.encoder = data.make_encoder(model.config.pe)
            t0 = time.time()
            allb = model.encoder.encode(data.items)
            enc_s = time.time() - t0
            t0, c0 = time.time(), time.process_time()
            model.fit(allb.index(tr), data.train_target[tr])
            fit_s, fit_cpu = time.time() - t0, time.process_time() - c0
            se_s = None
            if name in ("tnasp", "gcn"):
                t0 = time.time()
                SelfEvolution(model).evolve(allb.index(tr), data.train_target[tr], allb.index(va),
                                            data.train_target[va])
                se_s = time.time() - t0
            t0 = time.time()
            model.predict(allb)
            pred_s = time.time() - t0
            rec = {"predictor": name, "threads": threads, "train_size": args.train_size,
                   "steps": model.history["steps"], "fit_s": round(fit_s, 1), "fit_cpu_s": round(fit_cpu, 1),
                   "self_evolution_s": None if se_s is None else round(se_s, 1),
                   "encode_all_s": round(enc_s, 2), "predict_all_s": round(pred_s, 2),
                   "load_avg_1min": round(os.getloadavg()[0], 2)}
            rows.append(rec)
            with out.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(json.dumps(rec), flush=True)
    print("\n| predictor | threads | optimizer steps | fit wall (s) | fit CPU (s) | self-evolution (s) | "
          "predict 15,625 (s) | load avg |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        se = "–" if r["self_evolution_s"] is None else r["self_evolution_s"]
        print(f"| {r['predictor']} | {r['threads']} | {r['steps']} | {r['fit_s']} | {r['fit_cpu_s']} | {se} | "
              f"{r['predict_all_s']} | {r['load_avg_1min']} |")


if __name__ == "__main__":
    main()
