"""TrioNet effect experiment (issue 18): searched mix vs the best stand-alone operator network at
equal-or-lower FLOPs, retrained from scratch with one recipe over several seeds.

Drives the CLI (``attnas train`` / ``attnas profile`` / ``attnas search``), one process at a time:

1. the stand-alone conv / local / axial networks of the space (``TrioNetSpace.standalone``) are
   profiled (FLOPs) and retrained from scratch for every seed;
2. the best stand-alone network (highest mean test accuracy over the seeds) sets the FLOPs budget;
3. one TrioNet search (supernet: Hierarchical Sampling + Sandwich + Multi-Head Sharing, then SPOS
   evolution under ``--flops-budget`` = that network's FLOPs) on seed ``--search-seed``;
4. the searched architecture is retrained from scratch with the same recipe and seeds;
5. paired differences (searched - each stand-alone, same seed = same data subset, order and
   initialisation seed) with a 95 % t-interval over the seeds.

    OMP_NUM_THREADS=1 ATTNAS_DATA_DIR=/work/shared/data .venv/bin/python bench/trionet_effect.py \
        --out bench/runs/effect_trionet --json bench/results/effect_trionet.json

Finished runs (a run folder whose metrics.jsonl has every epoch) are reused on a rerun.
``--device cuda`` runs the retrainings and the search on a GPU (the CLI's ``--device``; default
``cpu``; ``attnas profile`` only counts FLOPs).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _device import add_device_argument, resolve  # noqa: E402
from effect_stats import ci95  # noqa: E402

ATTNAS = str(Path(sys.executable).with_name("attnas"))


def run(cmd: list[str], log) -> dict:
    t = time.time()
    print("$ " + " ".join(cmd), file=log, flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    log.write(p.stderr[-3000:])
    if p.returncode:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["wall_s"] = round(time.time() - t, 1)
    print(json.dumps({k: v for k, v in out.items() if k != "architecture"}), file=log, flush=True)
    return out


def done_epochs(run_dir: Path) -> list[dict]:
    f = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.exists() else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench/runs/effect_trionet")
    ap.add_argument("--json", default="bench/results/effect_trionet.json")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--search-seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--train-subset", type=int, default=4000)
    ap.add_argument("--test-subset", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=12, help="retraining epochs")
    ap.add_argument("--search-epochs", type=int, default=4)
    ap.add_argument("--space-options", default='{"width": 16, "heads": [1, 2]}')
    ap.add_argument("--recipe-options", default='{"warmup_epochs": 1, "weights": {"lr": 0.05}}',
                    help="overrides of the trionet retraining recipe, the same for every model")
    ap.add_argument("--search-options", default='{"warmup_epochs": 1, "weights": {"lr": 0.05}, "population": 16, '
                    '"generations": 3, "top_k": 4, "mutations": 8, "crossovers": 8, "bn_images": 256}')
    add_device_argument(ap)
    args = ap.parse_args()
    resolve(args.device)  # a missing device is a one-line error before any work

    from attnas.spaces.registry import get_space

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "effect.log", "a")
    seeds = [int(s) for s in args.seeds.split(",")]
    sopts = json.loads(args.space_options)
    space = get_space("trionet", **sopts)
    data = ["--dataset", "cifar10", "--image-size", str(args.image_size), "--train-subset", str(args.train_subset),
            "--test-subset", str(args.test_subset), "--device", args.device] + (
                ["--data-dir", args.data_dir] if args.data_dir else [])
    t_start = time.time()

    def arch_file(name: str, arch) -> Path:
        f = out / f"arch_{name}.json"
        f.write_text(json.dumps({"space": "trionet", "choices": dict(arch.choices), "meta": {"method": "trionet"}}))
        return f

    def profile(f: Path) -> dict:
        p = subprocess.run([ATTNAS, "profile", "--arch", str(f), "--space-options", json.dumps(sopts),
                            "--image-size", str(args.image_size), "--num-classes", "10", "--json"],
                           capture_output=True, text=True, check=True)
        d = json.loads(p.stdout.strip().splitlines()[-1])
        return {"flops": d["flops"], "macs": d["macs"], "params": d["params"], "native": d["architecture"]}

    def retrain(name: str, f: Path, seed: int) -> dict:
        rd = out / f"{name}-s{seed}"
        rows = done_epochs(rd)
        if len(rows) < args.epochs:
            run([ATTNAS, "train", "--arch", str(f), "--space-options", json.dumps(sopts), "--recipe", "trionet",
                 "--options", args.recipe_options, "--epochs", str(args.epochs), "--seed", str(seed), *data,
                 "--out", str(rd), "--force", "--quiet", "--json"], log)
            rows = done_epochs(rd)
        return {"seed": seed, "test_acc": rows[-1]["test_acc"], "train_acc": rows[-1]["train_acc"],
                "train_s": round(sum(r.get("epoch_time_s", 0) for r in rows), 1)}

    models: dict[str, dict] = {}
    for op in ("conv", "local", "axial"):
        f = arch_file(op, space.standalone(op))
        models[op] = {**profile(f), "runs": [retrain(op, f, s) for s in seeds]}
    for m in models.values():
        m["summary"] = ci95([r["test_acc"] for r in m["runs"]])
    best = max(("conv", "local", "axial"), key=lambda o: models[o]["summary"]["mean"])
    budget = models[best]["flops"]

    srd = out / f"search-s{args.search_seed}"
    if not (srd / "architecture.json").exists():
        run([ATTNAS, "search", "--space", "trionet", "--method", "trionet", "--space-options", json.dumps(sopts),
             "--method-options", args.search_options, "--flops-budget", str(budget), "--epochs",
             str(args.search_epochs), "--seed", str(args.search_seed), *data, "--out", str(srd), "--force",
             "--quiet", "--json"], log)
    found = json.loads((srd / "architecture.json").read_text())
    f = out / "arch_searched.json"
    f.write_text(json.dumps({"space": "trionet", "choices": found["choices"], "meta": {"method": "trionet"}}))
    models["searched"] = {**profile(f), "supernet_val_acc": found["meta"].get("supernet_val_acc"),
                          "runs": [retrain("searched", f, s) for s in seeds]}
    models["searched"]["summary"] = ci95([r["test_acc"] for r in models["searched"]["runs"]])

    acc = {k: [r["test_acc"] for r in m["runs"]] for k, m in models.items()}
    diffs = {f"searched-{op}": {**ci95([a - b for a, b in zip(acc["searched"], acc[op])]),
                                "per_seed": [round(a - b, 4) for a, b in zip(acc["searched"], acc[op])]}
             for op in ("conv", "local", "axial")}
    result = {"settings": vars(args), "seeds": seeds, "best_standalone": best, "flops_budget": budget,
              "search_run": str(srd), "models": models, "differences": diffs,
              "wall_s": round(time.time() - t_start, 1)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps({"best_standalone": best, "flops_budget": budget,
                      **{k: m["summary"] for k, m in models.items()}, **diffs}, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
