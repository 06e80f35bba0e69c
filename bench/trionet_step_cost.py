"""TrioNet benchmark 4: supernet training step time and peak memory, batch 64, at 32x32 and 224x224.

Each configuration runs in a fresh process (clean peak-memory reading): the ``trionet``
strategy builds the supernet of the TrioNet space (``cifar`` layout for 32x32 with 10
classes, ``imagenet`` layout for 224x224 with 1000 classes; depths 2-3-6-3, ``--width``
planes), then ``--steps`` timed steps follow ``--warmup`` untimed ones on a fixed random
batch.  ``--mode``:

* ``sandwich`` -- the paper's step (Sec. 3.4): smallest, biggest and 2 random sub-networks
  (hierarchical sampling), gradients accumulated, one SGD step;
* ``single`` -- one hierarchically sampled sub-network per step (no sandwich);
* ``smallest`` / ``biggest`` -- only that path of the sandwich (the two extremes of the cost).

Reported: wall and process-CPU seconds per step, the sampled paths' FLOPs (analytic count of
:mod:`attnas.spaces.trionet`), supernet parameters, peak resident memory (``ru_maxrss``:
includes the runtime, the supernet, its gradients and momentum) and the load average (on a
shared CPU wall time depends on other jobs; CPU time much less).

    python bench/trionet_step_cost.py --threads 1 --images 32,224 --mode sandwich --steps 1 --warmup 0
    python bench/trionet_step_cost.py --threads 1 --images 32 --width 8 --heads 2,4 --steps 3   # tiny supernet
    python bench/trionet_step_cost.py --images 32,224 --mode sandwich --steps 2 --device cuda   # on a GPU

``ATTNAS_LOCAL_KERNEL=0`` in the environment times the attention operators' PyTorch
implementations instead of the C kernels (:mod:`attnas.ops.local_kernel`,
:mod:`attnas.ops.axial_kernel`); ``ATTNAS_AXIAL=products`` only axial attention's.
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

LAYOUT = {32: ("cifar", 10), 224: ("imagenet", 1000)}
MODES = ("sandwich", "single", "smallest", "biggest")


def worker(image: int, mode: str, threads: int, steps: int, warmup: int, batch: int, width: int, seed: int,
           heads: str = "", depths: str = "", device: str = "cpu") -> dict:
    import torch

    from attnas.arch import Architecture
    from attnas.spaces.registry import get_space
    from attnas.training.step import search_step
    from attnas.strategies.base import get_strategy

    dev = resolve(device)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    layout, classes = LAYOUT[image]
    extra = {k: [int(x) for x in v.split(",")] for k, v in (("heads", heads), ("depths", depths)) if v}
    space = get_space("trionet", layout=layout, width=width, **extra)
    strategy = get_strategy("trionet", space, {"sandwich": mode != "single"})
    strategy.seed(seed)
    model = strategy.build(classes, 3, image).to(dev)
    params = sum(p.numel() for p in model.parameters())
    if mode in ("smallest", "biggest"):  # one path of the sandwich
        keep, sandwich = (0 if mode == "smallest" else 1), strategy.sample_paths
        strategy.sample_paths = lambda: [sandwich()[keep]]
    opt = strategy.optimizers(model, steps_per_epoch=100, epochs=10)
    costs = space.cost_table(classes, 3, image)
    x = torch.randn(batch, 3, image, image, device=dev)
    y = torch.randint(0, classes, (batch,), device=dev)
    model.train()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    walls, cpus, gflops = [], [], []
    for i in range(warmup + steps):
        recorded = []
        orig = strategy._count

        def count(arch, _orig=orig):
            recorded.append(costs.of(Architecture("trionet", dict(arch.choices))).macs / 1e9)
            _orig(arch)

        strategy._count = count
        sync(dev)
        t, c = time.perf_counter(), time.process_time()
        search_step(strategy, model, opt, (x, y), None, 0, i)
        sync(dev)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        strategy._count = orig
        print(f"  {image}px {mode} step {i}{' (warm-up)' if i < warmup else ''}: {wall:.1f} s wall, {cpu:.1f} s CPU, "
              f"paths {[round(g, 2) for g in recorded]} GFLOPs", file=sys.stderr, flush=True)
        if i >= warmup:
            walls.append(wall)
            cpus.append(cpu)
            gflops.append(sum(recorded))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    device_peak = {k: v for k, v in peak_memory(dev).items() if k != "peak_rss_gb"}  # peak_device_gb on cuda
    return {"image": image, "layout": layout, "mode": mode, "device": str(dev), "threads": threads, "batch": batch, "width": width,
            "heads": heads or "4,8", "depths": depths or "2,3,6,3",
            "steps": steps, "supernet_params_M": round(params / 1e6, 2),
            "wall_s_mean": round(statistics.mean(walls), 2), "cpu_s_mean": round(statistics.mean(cpus), 2),
            "step_gmacs_per_image": round(statistics.mean(gflops), 3),
            "rss_after_build_gb": round(rss0, 2), "peak_rss_gb": round(peak, 2), **device_peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--images", default="32,224")
    ap.add_argument("--mode", default="sandwich", help=f"comma-separated, of {list(MODES)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heads", default="", help="comma-separated heads options (default the paper's 4,8; "
                    "small widths need fewer, e.g. --width 8 --heads 2,4)")
    ap.add_argument("--depths", default="", help="comma-separated blocks per stage (default 2,3,6,3)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    add_device_argument(ap)
    args = ap.parse_args()
    if args.worker:
        image, mode = args.worker.split(":")
        print(json.dumps(worker(int(image), mode, args.threads, args.steps, args.warmup, args.batch, args.width,
                                args.seed, args.heads, args.depths, args.device)))
        return
    resolve(args.device)  # a missing device is a one-line error before any work
    for image in args.images.split(","):
        for mode in args.mode.split(","):
            if int(image) not in LAYOUT or mode not in MODES:
                raise SystemExit(f"unknown image size {image} (32, 224) or mode {mode} {list(MODES)}")
            load0 = os.getloadavg()[0]
            cmd = [sys.executable, __file__, "--worker", f"{image}:{mode}"] + [
                f"--{k}={getattr(args, k)}" for k in ("threads", "steps", "warmup", "batch", "width", "seed", "heads",
                                                   "depths", "device")]
            out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": str(args.threads)}).stdout
            rec = json.loads(out.strip().splitlines()[-1])
            rec["load_avg_before"], rec["load_avg_after"] = load0, os.getloadavg()[0]
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
