"""Benchmark 2 (NOS): step time and peak memory of the NOS search network vs the DARTS one.

Same width, depth, batch and image size for both; each configuration runs in a fresh
process (clean peak reading).  A step is one first-order bi-level step of the library's
strategy (architecture forward/backward + weight forward/backward + optimizer steps) on a
fixed random batch:

* ``darts``: space ``darts`` (8 candidates, 14 edges per cell), method ``darts`` (order 1);
* ``nos``: space ``nos`` (11 candidates, 18 edges per cell), method ``nos`` without teacher
  (same DARTS step, plain cross-entropy);
* ``nos+at``: method ``nos`` with a CIFAR ResNet-20 teacher (random weights: the cost does not
  depend on them) and L_AT at both levels.

Reported: wall and process-CPU seconds per step (median over ``--steps`` after ``--warmup``),
peak resident memory of the process (``ru_maxrss``: runtime + network + activations) and
the supernet's parameter count.  Activation checkpointing is off for both (``recompute`` none).

    python bench/nos_step_cost.py --threads 1 --C 8 --layers 5 --batch 16 --steps 3
    python bench/nos_step_cost.py --threads 1 --C 8 --layers 5 --batch 16 --steps 3 --device cuda   # on a GPU
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from _device import add_device_argument, peak_memory, resolve, sync

CONFIGS = ("darts", "nos", "nos+at")


def worker(config: str, threads: int, C: int, layers: int, batch: int, image: int, steps: int,
           warmup: int, seed: int, device: str = "cpu") -> dict:
    import torch

    from attnas.spaces.registry import get_space
    from attnas.training.step import search_step
    from attnas.strategies.base import get_strategy

    dev = resolve(device)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    space = get_space("darts" if config == "darts" else "nos", C=C, layers=layers)
    options: dict = {"recompute": "none"}
    if config == "nos+at":  # an untrained teacher: the cost does not depend on its weights
        import tempfile

        from attnas.teacher import CifarResNet, save_teacher
        path = os.path.join(tempfile.mkdtemp(), "teacher.pt")
        save_teacher(CifarResNet(depth=20, num_classes=10), path, "attnas.teacher:CifarResNet",
                     {"depth": 20, "num_classes": 10}, CifarResNet.stages)
        options["teacher_checkpoint"] = path
    strategy = get_strategy("darts" if config == "darts" else "nos", space, options)
    model = strategy.build(10, 3, image).to(dev)  # (the teacher follows the batch's device)
    opt = strategy.optimizers(model, steps_per_epoch=100, epochs=10)
    x = torch.randn(batch, 3, image, image, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    walls, cpus = [], []
    for i in range(warmup + steps):
        sync(dev)
        t0, c0 = time.perf_counter(), time.process_time()
        search_step(strategy, model, opt, (x, y), (x, y), 0, i)
        sync(dev)
        if i >= warmup:
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"config": config, "device": str(dev), "C": C, "layers": layers, "batch": batch, "image": image,
            "threads": threads, "wall_s_per_step": statistics.median(walls),
            "cpu_s_per_step": statistics.median(cpus), "peak_rss_mb": rss / 1024, **peak_memory(dev),
            "rss_after_build_mb": rss0 / 1024,
            "supernet_params": sum(p.numel() for p in model.net.parameters()),
            "choice_points": len(strategy.points)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--C", type=int, default=8)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--image", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    add_device_argument(ap)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.threads, a.C, a.layers, a.batch, a.image, a.steps,
                                a.warmup, a.seed, a.device)))
        return
    resolve(a.device)  # a missing device is a one-line error before any work
    rows = []
    for cfg in a.configs.split(","):
        cmd = [sys.executable, __file__, "--worker", cfg] + [
            f"--{k}={getattr(a, k)}" for k in ("threads", "C", "layers", "batch", "image", "steps", "warmup", "seed",
                                                 "device")]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["load_avg_1m"] = os.getloadavg()[0]
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("| config | choice points | supernet params | wall s/step | CPU s/step | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['choice_points']} | {r['supernet_params']:,} | {r['wall_s_per_step']:.2f} | "
              f"{r['cpu_s_per_step']:.2f} | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
