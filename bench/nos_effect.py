"""NOS effect experiment (issue 18): attention-guided NOS vs unguided NOS, paired seeds.

Drives the CLI, one process at a time:

1. ``attnas teacher train`` (CIFAR ResNet-20, once) into ``--teacher``;
2. ``attnas sweep bench/sweeps/effect_nos.yaml --jobs 1 --threads 1`` -- per seed one unguided and
   one guided search (``method_options.teacher_checkpoint``), each derived cell retrained with the
   same recipe (the sweep's ``train:``);
3. a summary from the run folders: per arm the retrained test accuracy (last epoch) and the
   supernet's validation accuracy per seed, mean +- std, and the paired difference guided -
   unguided with a 95 % t-interval over the seeds.

    OMP_NUM_THREADS=1 ATTNAS_DATA_DIR=/work/shared/data .venv/bin/python bench/nos_effect.py

Finished runs are skipped on a rerun (the sweep runner's own rule); ``--summary-only`` only reads.

``--device cuda`` trains the teacher and runs the sweep's searches and retrainings on a GPU
(default ``cpu``).  ``attnas sweep`` has no ``--device``: the sweep runs from a copy of the
sweep file with ``base.device`` set, written into its ``--out`` folder (``sweep_file.json``).
A sweep folder whose runs recorded another device (before this option: ``auto``) is refused by
the sweep runner; give it another ``--out``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _device import add_device_argument, resolve  # noqa: E402
from effect_stats import ci95  # noqa: E402

ATTNAS = str(Path(sys.executable).with_name("attnas"))


def rows(f: Path) -> list[dict]:
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()] if f.exists() else []


def sweep_on_device(sweep: str, out: Path, device: str) -> Path:
    """A copy of the sweep file with ``base.device`` set, in the sweep's folder (``train`` inherits it)."""
    from attnas.config import read_config_file

    spec = read_config_file(sweep)
    spec["base"] = {**(spec.get("base") or {}), "device": device}
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep_file.json").write_text(json.dumps(spec, indent=1) + "\n")
    return out / "sweep_file.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sweep", default="bench/sweeps/effect_nos.yaml")
    ap.add_argument("--out", default="bench/runs/effect_nos")
    ap.add_argument("--teacher", default="bench/runs/effect_nos_teacher")
    ap.add_argument("--teacher-args", default="--dataset cifar10 --image-size 16 --train-subset 4000 "
                    "--test-subset 2000 --epochs 10 --seed 0")
    ap.add_argument("--json", default="bench/results/effect_nos.json")
    ap.add_argument("--summary-only", action="store_true")
    add_device_argument(ap)
    args = ap.parse_args()
    resolve(args.device)  # a missing device is a one-line error before any work
    t0 = time.time()
    teacher = Path(args.teacher)
    if not args.summary_only:
        if not (teacher / "teacher.pt").exists():
            subprocess.run([ATTNAS, "teacher", "train", *args.teacher_args.split(), "--out", str(teacher),
                            "--device", args.device, "--force", "--quiet", "--json"], check=True)
        subprocess.run([ATTNAS, "sweep", str(sweep_on_device(args.sweep, Path(args.out), args.device)), "--out",
                        args.out, "--jobs", "1", "--threads", "1"], check=True)

    t_rows = rows(teacher / "metrics.jsonl")
    sweep = json.loads((Path(args.out) / "sweep.json").read_text())
    arms: dict[str, dict[int, dict]] = {"guided": {}, "unguided": {}}
    for r in sweep["runs"]:
        rd = Path(args.out) / r["name"]
        tr = rows(rd / "train" / "metrics.jsonl")
        if len(tr) < (r["train"] or {}).get("epochs", 0):
            continue  # not finished
        search = rows(rd / "metrics.jsonl")
        arm = "guided" if r["values"]["method_options.teacher_checkpoint"] else "unguided"
        arms[arm][r["values"]["seed"]] = {"run": r["name"], "test_acc": tr[-1]["test_acc"],
                                          "train_acc": round(tr[-1]["train_acc"], 4),
                                          "supernet_valid_acc": search[-1].get("valid_acc"),
                                          "search_epoch_s": [s.get("epoch_time_s") for s in search],
                                          "retrain_s": round(sum(x.get("epoch_time_s", 0) for x in tr), 1)}
    paired = sorted(set(arms["guided"]) & set(arms["unguided"]))
    d = [arms["guided"][s]["test_acc"] - arms["unguided"][s]["test_acc"] for s in paired]
    dv = [arms["guided"][s]["supernet_valid_acc"] - arms["unguided"][s]["supernet_valid_acc"] for s in paired]
    result = {"sweep": args.sweep, "out": args.out, "device": args.device,
              "teacher": {"run": str(teacher), "args": args.teacher_args,
                          "test_acc": t_rows[-1]["test_acc"] if t_rows else None},
              "arms": {a: {"per_seed": {str(s): v for s, v in sorted(x.items())},
                           "test_acc": ci95([v["test_acc"] for v in x.values()]) if x else None}
                       for a, x in arms.items()},
              "paired_seeds": paired,
              "difference_guided_minus_unguided": {**ci95(d), "per_seed": [round(x, 4) for x in d]} if d else None,
              "difference_supernet_valid_acc": {**ci95(dv), "per_seed": [round(x, 4) for x in dv]} if dv else None,
              "wall_s_this_invocation": round(time.time() - t0, 1)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("teacher", "difference_guided_minus_unguided")}, indent=1))
    for a in arms:
        print(a, result["arms"][a]["test_acc"])


if __name__ == "__main__":
    main()
