"""NAS-Bench-201 on CIFAR-10 (the JPEG set): IT-NAS vs DARTS vs random sampling, 3 seeds each,
under one reduced CPU proxy (issue 3, benchmark 1).

Every run is ``attnas search --space nb201 --dataset cifar10`` with the same proxy (defaults
below: ``C=8, N=1`` supernet, images resized to 16x16, a class-balanced subset of 5,000
training images -- 2,500 train the weights, 2,500 are the validation half --, batch 64,
10 epochs, 1 thread); each method keeps its own preset otherwise (IT-NAS: Eq. 5
mono-level on the train half + Eq. 6 pass over the validation half; DARTS: first-order
bi-level; random: weight-sharing random search, best of 100 sampled cells on 10
validation batches).  The derived cells are looked up in the NAS-Bench-201 tables
(200-epoch accuracies of the full-size networks) on CIFAR-10, CIFAR-100 and
ImageNet16-120; per-epoch look-ups are the search trajectories (Fig. 2).  Runs are
resumable: a finished run is skipped, a stopped one resumed (on the device it started on).
``--device cuda`` runs the searches on a GPU (``attnas search --device``; default ``cpu``).

    python bench/itnas_nb201.py run --jobs 2          # IT-NAS and DARTS, seeds 0-4 (bench/runs/itnas_nb201/)
    python bench/itnas_nb201.py summary               # tables + bench/results/itnas_nb201.json
    python bench/itnas_nb201.py run --epochs 30 --seeds 0,1,2 --out bench/runs/nb201_e30   # longer budget
    python bench/itnas_nb201.py run --methods itnas --method-options '{"output_norm": "none"}' \
        --out bench/runs/nb201_nonorm                 # a variant, in its own folder
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _device import add_device_argument, resolve

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench" / "runs" / "itnas_nb201"
RESULTS = REPO / "bench" / "results" / "itnas_nb201.json"
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
PAPER = {"itnas": 93.65, "darts": 54.30, "optimum": 94.37}  # Table 5, CIFAR-10 test, full budget


def _data_dir(flag: str | None) -> str:
    d = flag or os.environ.get("ATTNAS_DATA_DIR")
    if not d:
        raise SystemExit("give --data-dir or set ATTNAS_DATA_DIR (CIFAR-10 JPEG zip and NAS-Bench-201 tables)")
    return d


def _run_one(method: str, seed: int, a: argparse.Namespace) -> dict:
    out = Path(a.out) / f"{method}-s{seed}"
    if (out / "result.json").exists():
        return {"run": str(out), "status": "done (kept)"}
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    if (out / "checkpoint.pt").exists():
        cmd = ["attnas", "search", "--resume", str(out), "--quiet", "--json"]
    else:
        cmd = ["attnas", "search", "--space", "nb201", "--method", method, "--dataset", "cifar10",
               "--data-dir", _data_dir(a.data_dir), "--train-subset", str(a.train_subset),
               "--image-size", str(a.image_size), "--epochs", str(a.epochs), "--batch-size", str(a.batch_size),
               "--seed", str(seed), "--space-options", json.dumps({"C": a.C, "N": a.N}),
               "--device", a.device, "--out", str(out), "--quiet", "--json"]
        if a.method_options:
            cmd += ["--method-options", a.method_options]
    t0 = time.time()
    log = Path(a.out) / f"{method}-s{seed}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        rc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    return {"run": str(out), "status": f"rc={rc}", "wall_s": round(time.time() - t0, 1)}


def run(a: argparse.Namespace) -> None:
    jobs = [(m, s) for s in a.seeds for m in a.methods]
    with ThreadPoolExecutor(max_workers=a.jobs) as ex:
        for res in ex.map(lambda ms: _run_one(ms[0], ms[1], a), jobs):
            print(json.dumps(res), flush=True)


def _mean_std(v: list[float]) -> tuple[float, float]:
    return (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0) if v else (float("nan"), float("nan"))


def summary(a: argparse.Namespace) -> dict:
    out = Path(a.out)
    runs: dict[str, list[dict]] = {}
    for d in sorted(out.glob("*-s*")):
        if not (d / "result.json").is_file():
            continue
        res = json.loads((d / "result.json").read_text())
        metrics = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if x.strip()]
        cfg = json.loads((d / "config.json").read_text())
        runs.setdefault(res["method"], []).append({"dir": str(d), "result": res, "metrics": metrics, "config": cfg})
    table = {}
    for method, rs in sorted(runs.items()):
        row = {"runs": len(rs), "search_time_s": _mean_std([r["result"]["search_time_s"] for r in rs]),
               "architectures": [r["result"]["architecture"] for r in rs]}
        for ds in DATASETS:
            for split in ("val", "test"):
                row[f"{ds}_{split}"] = _mean_std([r["result"]["benchmark"][f"bench_{ds}_{split}_acc"] for r in rs])
        traj = {}
        for r in rs:
            for m in r["metrics"]:
                if "bench_cifar10_test_acc" in m:
                    traj.setdefault(m["epoch"], []).append(m["bench_cifar10_test_acc"])
        row["trajectory_cifar10_test"] = {e: _mean_std(v) for e, v in sorted(traj.items())}
        row["supernet_valid_acc"] = _mean_std([r["result"].get("valid_acc") or 0.0 for r in rs])
        row["per_seed_cifar10_test"] = {r["config"]["seed"]: r["result"]["benchmark"]["bench_cifar10_test_acc"]
                                        for r in rs}
        row["not_separated"] = {r["config"]["seed"]: r["result"].get("not_separated") for r in rs
                                if "not_separated" in r["result"]}
        table[method] = row
    proxy = runs and next(iter(runs.values()))[0]["config"]
    report = {"proxy": {k: proxy.get(k) for k in ("dataset", "train_subset", "image_size", "epochs", "batch_size",
                                                   "space_options")} if proxy else {},
              "paper_full_budget_cifar10_test": PAPER, "methods": table}
    rank_dirs = [r["dir"] for m in ("itnas", "darts") for r in runs.get(m, [])]
    if rank_dirs:
        from attnas.analysis.ranking import ranking_consistency
        from attnas.benchmarks.nb201 import NB201Bench
        rep = ranking_consistency(rank_dirs, NB201Bench(_data_dir(a.data_dir)))
        report["ranking_consistency"] = {m: {e: rep.tau(m)[e] for e in rep.edges} for m in rep.runs}
    results = Path(a.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=1) + "\n")
    _print(report)
    return report


def _fmt(ms: tuple[float, float]) -> str:
    return f"{ms[0]:.2f} ± {ms[1]:.2f}"


def _print(report: dict) -> None:
    print(f"proxy: {json.dumps(report['proxy'])}")
    print()
    print("| method | runs | CIFAR-10 val | CIFAR-10 test | CIFAR-100 val | CIFAR-100 test | "
          "ImageNet16-120 val | ImageNet16-120 test | search time (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m, row in report["methods"].items():
        cells = [_fmt(row[f"{ds}_{sp}"]) for ds in DATASETS for sp in ("val", "test")]
        print(f"| {m} | {row['runs']} | " + " | ".join(cells) + f" | {row['search_time_s'][0]:.0f} ± "
              f"{row['search_time_s'][1]:.0f} |")
    print()
    for m, row in report["methods"].items():
        seeds = ", ".join(f"s{k}: {v:.2f}" for k, v in sorted(row["per_seed_cifar10_test"].items(), key=lambda kv: int(kv[0])))
        print(f"{m} per seed (CIFAR-10 test): {seeds}")
        if row.get("not_separated"):
            print(f"{m} choice points not separated from their runner-up: "
                  + "; ".join(f"s{k}: {len(v or [])}" for k, v in sorted(row["not_separated"].items(), key=lambda kv: int(kv[0]))))
    print()
    print("Trajectory (CIFAR-10 test accuracy of the cell derived after each epoch, mean over seeds):")
    methods = list(report["methods"])
    epochs = sorted({int(e) for m in methods for e in report["methods"][m]["trajectory_cifar10_test"]})
    print("| epoch | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for e in epochs:
        cells = []
        for m in methods:
            t = report["methods"][m]["trajectory_cifar10_test"]
            v = t.get(e, t.get(str(e)))
            cells.append(_fmt(v) if v else "")
        print(f"| {e + 1} | " + " | ".join(cells) + " |")
    if "ranking_consistency" in report:
        print()
        print("Ranking consistency (Kendall tau-b vs best_acc of Eq. 9, CIFAR-10 test, mean ± std over seeds):")
        rc = report["ranking_consistency"]
        ms = sorted(rc)
        print("| edge | " + " | ".join(ms) + " |")
        print("|---|" + "---|" * len(ms))
        for n, e in enumerate(next(iter(rc.values()))):
            print(f"| Edge_{n + 1} ({e}) | " + " | ".join(_fmt(tuple(rc[m][e])) for m in ms) + " |")
        print("| mean over edges | " + " | ".join(
            f"{statistics.fmean(rc[m][e][0] for e in rc[m]):.3f}" for m in ms) + " |")
    print()
    for m, row in report["methods"].items():
        for arch in row["architectures"]:
            print(f"{m}: {arch}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("run", "summary"))
    ap.add_argument("--methods", default="itnas,darts", type=lambda s: s.split(","))
    ap.add_argument("--seeds", default="0,1,2,3,4", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--results", default=str(RESULTS), help="summary JSON written by 'summary'")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--train-subset", type=int, default=5000)
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--C", type=int, default=8)
    ap.add_argument("--N", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2, help="searches run in parallel")
    ap.add_argument("--method-options", default=None,
                    help="JSON object passed to every run's --method-options (a variant: give it its own --out)")
    add_device_argument(ap)
    a = ap.parse_args()
    if a.command == "run":
        resolve(a.device)  # a missing device is a one-line error before any search starts
        run(a)
    else:
        summary(a)


if __name__ == "__main__":
    main()
