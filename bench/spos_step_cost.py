"""Benchmark 2: SPOS single-path training step on the ProxylessNAS space at 224x224, batch 64.

Each configuration runs in a fresh process (clean peak-memory reading): the
``spos`` strategy builds the ProxylessNAS ImageNet supernet (1000 classes),
then ``--steps`` timed training steps follow ``--warmup`` untimed ones, each on
a freshly sampled uniform path (seeded) and a fixed random batch.  Reported per
configuration: wall seconds per step (mean, median), process CPU seconds per
step, and the process's peak resident memory (``ru_maxrss``, which includes the
Python/PyTorch runtime, the 16M-parameter supernet, its gradients and SGD
momentum).  The machine's load average is recorded too: on a shared CPU, wall
time depends on the other jobs, CPU time much less.

Configurations:
* ``attnas``: the library as ``attnas search`` runs it (channels-last layout, memory-efficient
  BN-activation-convolution segments, the CPU memory pool :mod:`attnas.ops.cpu_pool`, the
  preset's ``recompute: "auto"``, which at 128 px and more is ``"all"``: activation
  checkpointing of the stem and of every choice block);
* ``plain``: the same network as plain PyTorch modules in NCHW layout (the first two
  optimisations off), to show what they bring;
* ``recompute`` / ``norecompute``: the library with ``recompute`` forced to ``"all"`` /
  ``"none"`` whatever the image size (less memory, more time / the reverse);
* ``...+nopool`` (``attnas+nopool``, ``norecompute+nopool``): PyTorch's own allocator, that is
  glibc's malloc, which returns every block over 32 MB to the kernel, so the step's 100-300 MB
  maps page-fault on every allocation;
* ``...+heapcache``: glibc's malloc told to keep freed memory (``MALLOC_MMAP_MAX_=0``,
  ``MALLOC_TRIM_THRESHOLD_`` 100 GB, :data:`HEAP_CACHE_ENV`) instead of the pool: no faults,
  but the heap keeps its high-water mark and fragments (memory).

Reference: NNI 3.0 on this machine, same setting: 10.0 s/step and 7.4 GB.

    python bench/spos_step_cost.py --threads 2 --steps 5 > bench/logs/spos_step_cost.log
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

from _device import add_device_argument, resolve

#: glibc malloc settings of the ``heapcache`` configurations (set in the worker's environment)
HEAP_CACHE_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(10**11)}
NNI_SECONDS_PER_STEP = 10.0
NNI_PEAK_GB = 7.4
CONFIGS = ("attnas", "attnas+nopool", "plain")


def worker(config: str, threads: int, steps: int, warmup: int, batch: int, image: int, seed: int,
           device: str = "cpu") -> dict:
    import torch

    from _device import allocator, machine, peak_memory, resolve, sync

    from attnas.arch import Architecture
    from attnas.ops import cpu_pool
    from attnas.ops.mobile import InvertedResidual
    from attnas.spaces.registry import get_space
    from attnas.training.step import search_step
    from attnas.strategies.base import get_strategy

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    space = get_space("proxyless", variant="imagenet")
    recompute = {"recompute": "all", "norecompute": "none"}.get(config.split("+")[0])
    strategy = get_strategy("spos", space, {"recompute": recompute} if recompute else None)
    strategy.seed(seed)
    model = strategy.build(1000, 3, image)
    if config == "plain":
        for m in model.modules():
            if isinstance(m, InvertedResidual):
                m.memory_efficient = False
        model.net.channels_last = False
        model.to(memory_format=torch.contiguous_format)
    dev = resolve(device)
    model.to(dev)
    opt = strategy.optimizers(model, steps_per_epoch=100, epochs=10)
    x = torch.randn(batch, 3, image, image, device=dev)
    y = torch.randint(0, 1000, (batch,), device=dev)
    model.train()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    walls, cpus, flops = [], [], []
    costs = space.cost_table(1000, 3, image)
    use_pool = not config.endswith(("nopool", "heapcache"))
    with allocator(dev, use_pool) as pooled:
        for i in range(warmup + steps):
            sync(dev)
            t, c = time.perf_counter(), time.process_time()
            search_step(strategy, model, opt, (x, y), None, 0, i)
            sync(dev)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            path = {p.key: p.candidates[model.arch.active[p.key]] for p in strategy.points}
            f = costs.of(Architecture("proxyless", path)).macs
            print(f"  {config} step {i}{' (warm-up)' if i < warmup else ''}: {wall:.2f} s wall, {cpu:.2f} s CPU, "
                  f"path {f / 1e6:.0f} MFLOPs", file=sys.stderr, flush=True)
            if i >= warmup:
                walls.append(wall)
                cpus.append(cpu)
                flops.append(f)
        pool_stats = cpu_pool.stats() if pooled else {}
    return {"config": config, "device": str(dev), "threads": threads, "batch": batch, "image": image,
            "steps": steps, "wall_s_mean": statistics.mean(walls), "wall_s_median": statistics.median(walls),
            "cpu_s_mean": statistics.mean(cpus), **peak_memory(dev), "rss_after_build_gb": rss0,
            "path_mmacs_mean": statistics.mean(flops) / 1e6, "cpu_pool": pooled,
            "pool_fresh_gb": pool_stats.get("fresh", 0) / 2**30, "pool_moved_gb": pool_stats.get("moved", 0) / 2**30,
            **machine(dev)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--image", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    add_device_argument(ap)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads, args.steps, args.warmup, args.batch, args.image,
                                args.seed, args.device)))
        return
    resolve(args.device)  # a missing device is a one-line error before any work
    results = []
    for config in args.configs.split(","):
        load0 = os.getloadavg()[0]
        cmd = [sys.executable, __file__, "--worker", config] + [
            f"--{k}={getattr(args, k)}" for k in ("threads", "steps", "warmup", "batch", "image", "seed", "device")]
        env = {**os.environ, **(HEAP_CACHE_ENV if config.endswith("heapcache") else {})}
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
        if proc.returncode:
            sys.exit(proc.returncode)
        out = proc.stdout
        rec = json.loads(out.strip().splitlines()[-1])
        rec["load_avg_before"], rec["load_avg_after"] = load0, os.getloadavg()[0]
        rec["time_vs_nni"] = rec["wall_s_mean"] / NNI_SECONDS_PER_STEP
        rec["memory_vs_nni"] = rec["peak_rss_gb"] / NNI_PEAK_GB
        results.append(rec)
        print(json.dumps(rec), flush=True)
    print(f"\n{'config':19} {'s/step (wall)':>14} {'CPU s/step':>11} {'peak GB':>8} {'time/NNI':>9} "
          f"{'mem/NNI':>8} {'load':>10}")
    for r in results:
        print(f"{r['config']:19} {r['wall_s_mean']:14.2f} {r['cpu_s_mean']:11.2f} {r['peak_rss_gb']:8.2f} "
              f"{r['time_vs_nni']:9.2f} {r['memory_vs_nni']:8.2f} "
              f"{r['load_avg_before']:4.1f}-{r['load_avg_after']:4.1f}")


if __name__ == "__main__":
    main()
