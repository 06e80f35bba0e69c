"""Time one search step and measure peak memory (issue 2 / 3 / 8 performance benchmarks).

One DARTS first-order search step = one architecture step (on an architecture
batch) + one weight step (on a weight batch), batch 64, 32x32 random data,
2 threads; median of ``--steps`` steps after ``--warmup`` warm-up steps.
Peak resident memory is the process's ru_maxrss, so run ONE configuration
per process (this script does that when given several).

    python bench/search_step.py --space darts --method darts
    python bench/search_step.py --space nb201 --method darts
    python bench/search_step.py --all          # every configuration, one process each
    python bench/search_step.py --space nb201 --method darts --device cuda   # on a GPU

The steps run with the CPU memory pool as ``attnas search`` runs them (:mod:`attnas.ops.cpu_pool`);
``--no-cpu-pool`` measures PyTorch's own allocator.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from _device import add_device_argument

CONFIGS = [
    ("darts", "darts", {"C": 16, "layers": 8}),
    ("nb201", "darts", {"C": 16, "N": 5}),
]


def measure(space_name: str, method: str, space_options: dict, batch: int, steps: int, warmup: int,
            threads: int, method_options: dict | None = None, device: str = "cpu", pool: bool = True) -> dict:
    import torch

    from _device import allocator, machine, peak_memory, resolve, sync

    from attnas.spaces.registry import get_space
    from attnas.training.step import search_step
    from attnas.strategies.base import get_strategy

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    space = get_space(space_name, **space_options)
    strategy = get_strategy(method, space, method_options or {})
    dev = resolve(device)
    model = strategy.build(10, 3, 32).to(dev)
    opt = strategy.optimizers(model, steps_per_epoch=100, epochs=50)
    x = torch.randn(batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    xa = torch.randn(batch, 3, 32, 32, device=dev)
    ya = torch.randint(0, 10, (batch,), device=dev)
    times = []
    with allocator(dev, pool) as pooled:
        for i in range(warmup + steps):
            sync(dev)
            t0 = time.perf_counter()
            search_step(strategy, model, opt, (x, y), (xa, ya), 0, i)
            sync(dev)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return {"space": space_name, "method": method, "space_options": space_options,
            "method_options": method_options or {}, "batch": batch, "threads": threads,
            "device": str(dev), "median_s_per_step": round(statistics.median(times), 3),
            "min_s": round(min(times), 3), "max_s": round(max(times), 3),
            **peak_memory(dev), "cpu_pool": pooled, "steps": steps, "warmup": warmup,
            "torch": torch.__version__, **machine(dev)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--space", default="darts")
    ap.add_argument("--method", default="darts")
    ap.add_argument("--space-options", default=None)
    ap.add_argument("--method-options", default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--all", action="store_true", help="run every configuration in its own process")
    ap.add_argument("--no-cpu-pool", action="store_true", help="PyTorch's allocator instead of attnas's CPU pool")
    add_device_argument(ap)
    a = ap.parse_args()
    if a.all:
        for space, method, opts in CONFIGS:
            subprocess.run([sys.executable, __file__, "--space", space, "--method", method,
                            "--space-options", json.dumps(opts), "--batch", str(a.batch),
                            "--steps", str(a.steps), "--warmup", str(a.warmup),
                            "--threads", str(a.threads), "--device", a.device]
                           + (["--no-cpu-pool"] if a.no_cpu_pool else []), check=True)
        return
    opts = json.loads(a.space_options) if a.space_options else dict(
        next((o for s, m, o in CONFIGS if s == a.space), {}))
    mopts = json.loads(a.method_options) if a.method_options else None
    print(json.dumps(measure(a.space, a.method, opts, a.batch, a.steps, a.warmup, a.threads, mopts, a.device,
                             not a.no_cpu_pool)))


if __name__ == "__main__":
    main()
