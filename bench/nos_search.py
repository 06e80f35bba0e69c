"""Benchmark 1 (NOS): attention-guided search vs plain NOS vs DARTS space (Table 4, shortened).

On a class-balanced CIFAR-10 subset (the JPEG set, found with ``--data-dir`` /
``$ATTNAS_DATA_DIR``), at reduced image size, with the same budget for every search
(proxy width, cells, epochs, batch):

1. a teacher (CIFAR ResNet) is trained once with ``attnas teacher train``;
2. per seed, three searches through the CLI: ``nos`` space + ``nos`` method with the teacher
   (AGS), ``nos`` + ``nos`` without teacher, ``darts`` space + ``darts`` method (order 1);
3. each derived cell is drawn (``attnas show``) and retrained briefly (``attnas train``) on
   the same subset; test accuracy on a class-balanced test subset.

Every step is a resumable attnas run folder under ``--out``; re-running the script skips
finished runs (and resumes killed ones, on the device they started on), so the benchmark can
be continued in pieces.  ``--device cuda`` runs every new teacher, search and retraining on a
GPU (the CLI's ``--device``; default ``cpu``).
The summary (markdown table + JSON) is printed at the end.

    ATTNAS_DATA_DIR=... python bench/nos_search.py --out bench/runs/nos --seeds 0,1
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _device import add_device_argument, resolve

CONFIGS = {  # name -> (space, method, guided)
    "nos+AGS": ("nos", "nos", True),
    "nos": ("nos", "nos", False),
    "darts": ("darts", "darts", False),
}


def attnas(*args: str) -> dict:
    """Run the attnas CLI; return its --json result."""
    quiet = [] if args[0] == "show" else ["--quiet"]
    cmd = [sys.executable, "-m", "attnas.cli.main", *args, "--json", *quiet]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_or_resume(kind: str, run_dir: Path, args: list[str]) -> dict:
    result = run_dir / "result.json"
    if result.exists():
        return json.loads(result.read_text())
    if (run_dir / "checkpoint.pt").exists():
        if kind == "teacher":
            return attnas("teacher", "train", "--resume", str(run_dir))
        return attnas(kind, "--resume", str(run_dir))
    if kind == "teacher":
        return attnas("teacher", "train", "--out", str(run_dir), *args)
    return attnas(kind, "--out", str(run_dir), *args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/runs/nos")
    ap.add_argument("--data-dir", default=os.environ.get("ATTNAS_DATA_DIR"))
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--train-subset", type=int, default=1000)
    ap.add_argument("--test-subset", type=int, default=1000)
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--C", type=int, default=4)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--search-epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--teacher-epochs", type=int, default=10)
    ap.add_argument("--teacher-depth", type=int, default=20)
    ap.add_argument("--train-epochs", type=int, default=5)
    ap.add_argument("--train-C", type=int, default=8)
    ap.add_argument("--train-layers", type=int, default=5)
    add_device_argument(ap)
    a = ap.parse_args()
    resolve(a.device)  # a missing device is a one-line error before any run starts
    if not a.data_dir:
        sys.exit("set ATTNAS_DATA_DIR or pass --data-dir (the folder holding cifar10/)")
    out = Path(a.out)
    data = ["--dataset", "cifar10", "--data-dir", a.data_dir, "--train-subset", str(a.train_subset),
            "--test-subset", str(a.test_subset), "--image-size", str(a.image_size), "--device", a.device]
    teacher = run_or_resume("teacher", out / "teacher", data + [
        "--epochs", str(a.teacher_epochs), "--batch-size", "64", "--options", '{"weights": {"lr": 0.1}}',
        "--teacher-options", json.dumps({"depth": a.teacher_depth})])
    print(json.dumps({"teacher": teacher}), flush=True)
    rows = []
    for seed in [int(s) for s in a.seeds.split(",")]:
        for name in a.configs.split(","):
            space, method, guided = CONFIGS[name]
            mopts = {"teacher_checkpoint": str(out / "teacher" / "teacher.pt")} if guided else {}
            tag = name.replace("+", "_")
            s = run_or_resume("search", out / f"search-{tag}-s{seed}", data + [
                "--space", space, "--method", method, "--seed", str(seed),
                "--epochs", str(a.search_epochs), "--batch-size", str(a.batch),
                "--space-options", json.dumps({"C": a.C, "layers": a.layers}),
                "--method-options", json.dumps(mopts)])
            arch = out / f"search-{tag}-s{seed}" / "architecture.json"
            png = out / f"cell-{tag}-s{seed}.png"
            if not png.exists():
                attnas("show", str(arch), "-o", str(png))
            t = run_or_resume("train", out / f"train-{tag}-s{seed}", data + [
                "--arch", str(arch), "--seed", str(seed), "--epochs", str(a.train_epochs),
                "--batch-size", "64",
                "--network-options", json.dumps({"C": a.train_C, "layers": a.train_layers,
                                                 "auxiliary": True})])
            row = {"config": name, "seed": seed, "search_time_s": s.get("search_time_s"),
                   "supernet_valid_acc": s.get("valid_acc"), "retrain_test_acc": t.get("test_acc"),
                   "retrain_best_test_acc": t.get("best_test_acc"), "params": t.get("params"),
                   "cell_png": str(png)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| config | seed | search time (s) | supernet valid acc | retrain test acc | params |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['seed']} | {r['search_time_s']} | {r['supernet_valid_acc']:.3f} | "
              f"{r['retrain_test_acc']:.3f} | {r['params']:,} |")


if __name__ == "__main__":
    main()
