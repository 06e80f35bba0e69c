"""Search-step time and peak memory of IT-NAS vs the DARTS softmax mixture (issue 3, benchmark 3).

Three step kinds on the same space, batch and data (random 32x32 images, 10 classes):

* ``itnas``   -- one IT-NAS mono-level step (Eq. 5): forward + backward + SGD on a train batch;
* ``darts``   -- one DARTS first-order step: architecture step (Adam on alpha, weights frozen)
  + weight step (SGD, alpha frozen), as :class:`attnas.strategies.darts.DartsStrategy` does it;
* ``darts-w`` -- the DARTS weight step alone.

Both strategies run with their presets except the activation checkpointing, which
``--recompute`` sets to the same policy for both (default ``first_stage``, the IT-NAS
preset's: the full-resolution choice blocks are recomputed in the backward pass; the
DARTS preset recomputes ``all``).

* ``--mode time``: ONE process holds the IT-NAS and the DARTS supernet and alternates the
  three kinds step by step (``--rounds`` rounds after ``--warmup``); the median of each
  kind and the median of the per-round ratios are reported.  Interleaving makes load on
  a shared machine hit all kinds alike, so the ratios are robust even when the absolute
  times are not.
* ``--mode memory``: each kind in its OWN process (peak RSS is a per-process high-water
  mark): ``peak_rss_gb`` and ``step_mem_gb`` = peak minus the resident size after building
  the model and optimizers (what the steps themselves need).

``torch.set_num_threads(--threads)`` everywhere.

    python bench/itnas_step_cost.py --mode time --space nb201
    python bench/itnas_step_cost.py --mode memory --space darts
    python bench/itnas_step_cost.py --mode all > bench/logs/itnas_step_cost.json
    python bench/itnas_step_cost.py --mode time --space nb201 --device cuda   # on a GPU
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

SPACES = {
    "darts": {"C": 16, "layers": 8},
    "nb201": {"C": 16, "N": 5},
}
KINDS = ("itnas", "darts", "darts-w")


def _rss_gb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024**3


def _setup(space_name: str, method: str, batch: int, threads: int, recompute: str, seed: int = 0, dev=None):
    import torch

    from attnas.spaces.registry import get_space
    from attnas.strategies.darts import DartsStrategy
    from attnas.strategies.itnas import ITNASStrategy

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    cls = ITNASStrategy if method == "itnas" else DartsStrategy   # (classes directly: the registry
    strategy = cls(get_space(space_name, **SPACES[space_name]),   # imports every strategy module)
                   {"recompute": recompute})
    dev = dev if dev is not None else torch.device("cpu")
    model = strategy.build(10, 3, 32).to(dev)
    opt = strategy.optimizers(model, steps_per_epoch=100, epochs=50)
    g = torch.Generator().manual_seed(seed)  # drawn on the CPU, then moved: the same data on every device
    bw = (torch.randn(batch, 3, 32, 32, generator=g).to(dev), torch.randint(0, 10, (batch,), generator=g).to(dev))
    ba = (torch.randn(batch, 3, 32, 32, generator=g).to(dev), torch.randint(0, 10, (batch,), generator=g).to(dev))
    return strategy, model, opt, bw, ba


def _step_fn(kind: str, strategy, model, opt, bw, ba):
    from attnas.training.step import StepExecutor, search_step

    counter = [0]

    executor = StepExecutor(strategy, model, opt)

    def weight_step() -> None:  # the weight phase of a DARTS step alone
        executor.run_phase(strategy.phases(0)[-1], {"weights": bw})

    def full_step() -> None:
        search_step(strategy, model, opt, bw, ba, 0, counter[0])
        counter[0] += 1

    return weight_step if kind == "darts-w" else full_step


def measure_time(space: str, batch: int, rounds: int, warmup: int, threads: int, recompute: str, dev) -> dict:
    import torch

    it = _setup(space, "itnas", batch, threads, recompute, dev=dev)
    da = _setup(space, "darts", batch, threads, recompute, dev=dev)
    fns = {"itnas": _step_fn("itnas", *it), "darts": _step_fn("darts", *da), "darts-w": _step_fn("darts-w", *da)}
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    for r in range(warmup + rounds):
        for k in KINDS:
            sync(dev)
            t0 = time.perf_counter()
            fns[k]()
            sync(dev)
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[k].append(dt)
        print(json.dumps({"round": r, **{k: round(v[-1], 3) for k, v in times.items() if v}}),
              file=sys.stderr, flush=True)
    ratios_full = [a / b for a, b in zip(times["itnas"], times["darts"])]
    ratios_w = [a / b for a, b in zip(times["itnas"], times["darts-w"])]
    return {"space": space, "space_options": SPACES[space], "batch": batch, "threads": threads,
            "device": str(dev), "rounds": rounds, "warmup": warmup, "torch": torch.__version__,
            **peak_memory(dev), "median_s": {k: round(statistics.median(v), 4) for k, v in times.items()},
            "time_vs_darts_step": round(statistics.median(ratios_full), 3),
            "time_vs_darts_weight_step": round(statistics.median(ratios_w), 3),
            "per_round_s": {k: [round(x, 4) for x in v] for k, v in times.items()}}


def measure_memory_one(space: str, kind: str, batch: int, steps: int, threads: int, recompute: str, dev) -> dict:
    strategy, model, opt, bw, ba = _setup(space, "itnas" if kind == "itnas" else "darts", batch, threads, recompute,
                                          dev=dev)
    step = _step_fn(kind, strategy, model, opt, bw, ba)
    rss0 = _rss_gb()
    for _ in range(steps):
        sync(dev)
        step()
        sync(dev)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    device_peak = {k: v for k, v in peak_memory(dev).items() if k != "peak_rss_gb"}  # peak_device_gb on cuda
    return {"space": space, "kind": kind, "device": str(dev), "batch": batch, "steps": steps,
            "peak_rss_gb": round(peak, 3), **device_peak, "step_mem_gb": round(peak - rss0, 3),
            "net_params": sum(p.numel() for p in model.net.parameters())}


def measure_memory(space: str, batch: int, steps: int, threads: int, recompute: str, kinds=KINDS,
                   previous: dict | None = None, device: str = "cpu") -> dict:
    rows = dict(previous or {})
    for kind in kinds:
        out = subprocess.run([sys.executable, __file__, "--mode", "memory-one", "--space", space, "--kind", kind,
                              "--recompute", recompute,
                              "--batch", str(batch), "--steps", str(steps), "--threads", str(threads),
                              "--device", device],
                             check=True, capture_output=True, text=True)
        rows[kind] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(rows[kind]), file=sys.stderr, flush=True)
    it = rows["itnas"]
    return {"space": space, "space_options": SPACES[space], "batch": batch, "device": device, "rows": rows,
            "step_mem_vs_darts_step": round(it["step_mem_gb"] / rows["darts"]["step_mem_gb"], 3),
            "step_mem_vs_darts_weight_step": round(it["step_mem_gb"] / rows["darts-w"]["step_mem_gb"], 3),
            "peak_rss_vs_darts_step": round(it["peak_rss_gb"] / rows["darts"]["peak_rss_gb"], 3),
            "peak_rss_vs_darts_weight_step": round(it["peak_rss_gb"] / rows["darts-w"]["peak_rss_gb"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", default="all", choices=("time", "memory", "memory-one", "all"))
    ap.add_argument("--space", default=None, help="nb201 or darts (default: both)")
    ap.add_argument("--kind", default="itnas", choices=KINDS, help="for --mode memory-one")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (--mode time)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2, help="steps per memory measurement")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--recompute", default="first_stage", help="activation checkpointing of both strategies")
    ap.add_argument("--kinds", default=",".join(KINDS), help="kinds to measure in --mode memory")
    ap.add_argument("--previous", help="JSON of earlier memory rows to reuse for the kinds not measured")
    add_device_argument(ap)
    a = ap.parse_args()
    dev = resolve(a.device)  # a missing device is a one-line error before any work
    spaces = [a.space] if a.space else ["nb201", "darts"]
    for s in spaces:
        if s not in SPACES:
            raise SystemExit(f"unknown space '{s}'; expected one of {sorted(SPACES)}")
    if a.mode == "memory-one":
        print(json.dumps(measure_memory_one(spaces[0], a.kind, a.batch, a.steps, a.threads, a.recompute, dev)))
        return
    out = {}
    for s in spaces:
        if a.mode in ("memory", "all"):
            prev = json.loads(open(a.previous).read())[s]["memory"]["rows"] if a.previous else None
            out.setdefault(s, {})["memory"] = measure_memory(s, a.batch, a.steps, a.threads, a.recompute,
                                                             a.kinds.split(","), prev, str(dev))
        if a.mode in ("time", "all"):
            out.setdefault(s, {})["time"] = measure_time(s, a.batch, a.rounds, a.warmup, a.threads, a.recompute,
                                                         dev)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
