"""Where a search step's time goes, and how close its convolutions run to the machine's peak (issue 19).

For each of the three peer settings of ``docs/benchmarks.md`` (batch 64, 2 threads):

* ``nb201``  -- one first-order DARTS step on NAS-Bench-201 C=16 N=5, 32x32 (the DARTS preset);
* ``darts``  -- one first-order DARTS step on the DARTS space, 8 cells C=16, 32x32;
* ``spos``   -- one SPOS step on the ProxylessNAS ImageNet supernet, 224x224 (a fresh path per step),

the step is timed without a profiler (``--steps`` after ``--warmup``), then profiled for ``--profiled``
steps with ``torch.profiler`` (shapes recorded); on CPU inside the memory pool that ``attnas search``
installs (:mod:`attnas.ops.cpu_pool`; ``--no-cpu-pool``: PyTorch's allocator).  Every ATen operator's *self* time (time on the
calling thread not spent in child operators; with intra-op threads it is wall time) is put in one of

* ``convolution``  -- forward and backward convolution kernels (every op whose name has ``conv``);
* ``batch norm``   -- ``native_batch_norm`` forward and backward;
* ``matmul``       -- ``mm``, ``addmm``, ``bmm``, ``matmul`` (classifier, attention);
* ``elementwise and other kernels`` -- everything else ATen runs (activations, additions of the
  mixture, copies, pooling, the optimizer's updates, reductions);

and ``framework overhead`` is the rest of the profiled step: Python, the autograd engine, dispatch
outside the kernels' own time (and the profiler's own cost, which lands here and in the per-op
self times: a profiled step is slower than an unprofiled one, both are reported).  Shares are of
the profiled step's wall time.

Convolution arithmetic: the FLOPs (2 x MACs) of every forward convolution from its recorded
shapes, and of every backward one from its shapes and output mask (input gradient and weight
gradient each cost one forward's FLOPs).  ``achieved`` is those FLOPs over the time spent in the
convolution kernels; ``peak`` is the best of a few large dense convolutions (forward + backward,
channels-last, the same threads) measured in the same process -- this machine's practical
convolution throughput.  ``achieved / peak`` says how well the step's (small, depthwise, 1x1)
convolutions use the hardware; ``step conv FLOPs / (peak x step time)`` is the fraction of the
step's wall time the machine would need at peak -- the physical limit, so its inverse is the
speed-up headroom if everything but the convolutions vanished and they ran at peak.

``--device cuda``: model, batches and the peak convolutions are on the GPU, the device is
synchronised around every timed step, and the profiler records CUDA activity too.  An operator's
time is then its *self device* time (the kernels it launched, not its children's), since its CPU
time is only the launch; ``framework overhead`` is the step's wall time in which no kernel ran
(Python, dispatch, launches the GPU waits on).  The peak adds two larger convolutions on a GPU
(the CPU shapes are too small to fill one).  The device is in the output.

    python bench/step_profile.py --setting nb201 darts spos --json bench/logs/step_profile.json
    python bench/step_profile.py --setting nb201 darts spos --device cuda   # on a GPU
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from _device import add_device_argument, allocator, machine, resolve, sync

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CLASSES = ("convolution", "batch norm", "matmul", "elementwise and other kernels")


def _setup(setting: str, batch: int, threads: int, device):
    """``(step function, label)`` for one setting, built as the step-time benchmarks build it."""
    import torch

    from attnas.spaces.registry import get_space
    from attnas.strategies.base import get_strategy
    from attnas.training.step import search_step

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if setting == "spos":
        space = get_space("proxyless", variant="imagenet")
        strategy = get_strategy("spos", space)
        strategy.seed(0)
        model = strategy.build(1000, 3, 224).to(device)
        opt = strategy.optimizers(model, steps_per_epoch=100, epochs=10)
        x, y = torch.randn(batch, 3, 224, 224, device=device), torch.randint(0, 1000, (batch,), device=device)
        model.train()
        counter = [0]

        def step() -> None:
            search_step(strategy, model, opt, (x, y), None, 0, counter[0])
            counter[0] += 1
        return step, "SPOS, ProxylessNAS supernet, 224x224"
    opts = {"nb201": {"C": 16, "N": 5}, "darts": {"C": 16, "layers": 8}}[setting]
    space = get_space(setting, **opts)
    strategy = get_strategy("darts", space)
    model = strategy.build(10, 3, 32).to(device)
    opt = strategy.optimizers(model, steps_per_epoch=100, epochs=50)
    bw = (torch.randn(batch, 3, 32, 32, device=device), torch.randint(0, 10, (batch,), device=device))
    ba = (torch.randn(batch, 3, 32, 32, device=device), torch.randint(0, 10, (batch,), device=device))
    counter = [0]

    def step() -> None:
        search_step(strategy, model, opt, bw, ba, 0, counter[0])
        counter[0] += 1
    label = {"nb201": "DARTS 1st order, NAS-Bench-201 C=16 N=5, 32x32",
             "darts": "DARTS 1st order, DARTS space 8 cells C=16, 32x32"}[setting]
    return step, label


def _prod(xs) -> int:
    out = 1
    for v in xs:
        out *= int(v)
    return out


def conv_flops(event) -> float:
    """FLOPs (2 x MACs) of one ``aten::convolution`` or ``aten::convolution_backward`` event."""
    shapes, args = event.input_shapes, event.concrete_inputs
    if event.name == "aten::convolution":
        x, w = shapes[0], shapes[1]
        stride, padding, dilation = args[3], args[4], args[5]   # groups: in the weight shape (C_in / groups)
        if len(x) != 4 or len(w) != 4:
            return 0.0
        out = [(x[2 + i] + 2 * padding[i] - dilation[i] * (w[2 + i] - 1) - 1) // stride[i] + 1 for i in range(2)]
        return 2.0 * x[0] * w[0] * out[0] * out[1] * _prod(w[1:])
    if event.name == "aten::convolution_backward":
        gout, w, mask = shapes[0], shapes[2], args[10]
        if len(gout) != 4 or len(w) != 4:
            return 0.0
        one = 2.0 * _prod(gout) * _prod(w[1:])
        return one * (int(bool(mask[0])) + int(bool(mask[1])))
    return 0.0


def classify(name: str) -> str | None:
    if not name.startswith("aten::"):
        return None
    op = name[len("aten::"):]
    if "conv" in op:
        return "convolution"
    if "batch_norm" in op:
        return "batch norm"
    if op in ("mm", "addmm", "bmm", "matmul", "baddbmm", "linear"):
        return "matmul"
    return "elementwise and other kernels"


def peak_conv(threads: int, device, rounds: int = 3) -> dict:
    """Best forward + backward FLOP/s of a few large dense convolutions (channels-last) on ``device``."""
    import torch

    torch.set_num_threads(threads)
    best = {}
    shapes = ((64, 64, 32, 3), (64, 128, 16, 3), (32, 256, 14, 1))
    if device.type == "cuda":
        shapes += ((128, 256, 56, 3), (128, 512, 28, 3))
    for n, c, side, k in shapes:
        conv = torch.nn.Conv2d(c, c, k, padding=k // 2, bias=False).to(device, memory_format=torch.channels_last)
        x = torch.randn(n, c, side, side, device=device).to(memory_format=torch.channels_last).requires_grad_(True)
        flops = 3 * 2.0 * n * c * side * side * c * k * k          # forward + input grad + weight grad
        times = []
        for r in range(rounds + 1):
            sync(device)
            t0 = time.perf_counter()
            conv(x).sum().backward()
            sync(device)
            if r:
                times.append(time.perf_counter() - t0)
        best[f"{n}x{c}x{side}x{side} k{k}"] = flops / min(times) / 1e9
    return {"device": str(device), "gflops_per_s": max(best.values()),
            "shapes": {k: round(v, 1) for k, v in best.items()}}


def profile_setting(setting: str, batch: int, threads: int, steps: int, warmup: int, profiled: int,
                    peak_gflops: float, device, pool: bool = True) -> dict:
    """One setting, inside the CPU memory pool as ``attnas search`` runs it (``pool``)."""
    with allocator(device, pool) as pooled:
        return {**_profile_setting(setting, batch, threads, steps, warmup, profiled, peak_gflops, device),
                "cpu_pool": pooled}


def _profile_setting(setting: str, batch: int, threads: int, steps: int, warmup: int, profiled: int,
                     peak_gflops: float, device) -> dict:
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    step, label = _setup(setting, batch, threads, device)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    wall = statistics.median(times)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities, record_shapes=True) as prof:
        sync(device)
        t0 = time.perf_counter()
        for _ in range(profiled):
            step()
        sync(device)
        profiled_wall = (time.perf_counter() - t0) / profiled
    self_us = {c: 0.0 for c in CLASSES}
    flops = 0.0
    for e in prof.events():
        cls = classify(e.name)
        if cls is not None:  # on CUDA: the kernels the operator launched (kernel events are not aten::)
            self_us[cls] += e.self_device_time_total if cuda else e.self_cpu_time_total
        if e.name in ("aten::convolution", "aten::convolution_backward"):
            flops += conv_flops(e)
    per_step = {c: v / 1e6 / profiled for c, v in self_us.items()}
    flops /= profiled
    kernels = sum(per_step.values())
    overhead = max(0.0, profiled_wall - kernels)
    conv_s = per_step["convolution"]
    achieved = flops / conv_s / 1e9 if conv_s > 0 else 0.0
    return {"setting": setting, "label": label, "device": str(device), "batch": batch, "threads": threads,
            "step_s_median": round(wall, 3), "step_s_rounds": [round(t, 3) for t in times],
            "profiled_step_s": round(profiled_wall, 3),
            "seconds": {**{c: round(v, 3) for c, v in per_step.items()}, "framework overhead": round(overhead, 3)},
            "share": {**{c: round(v / profiled_wall, 3) for c, v in per_step.items()},
                      "framework overhead": round(overhead / profiled_wall, 3)},
            "conv_gflop_per_step": round(flops / 1e9, 2),
            "conv_achieved_gflops_per_s": round(achieved, 1),
            "conv_achieved_vs_peak": round(achieved / peak_gflops, 3) if peak_gflops else None,
            "step_at_peak_s": round(flops / (peak_gflops * 1e9), 3) if peak_gflops else None,
            "step_vs_physical_limit": round(wall / (flops / (peak_gflops * 1e9)), 1) if peak_gflops and flops else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", nargs="+", default=["nb201", "darts", "spos"], choices=("nb201", "darts", "spos"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="timed steps without the profiler")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--profiled", type=int, default=1, help="profiled steps")
    ap.add_argument("--json", help="also write the result here")
    ap.add_argument("--no-cpu-pool", dest="cpu_pool", action="store_false",
                    help="profile on PyTorch's allocator, not inside the CPU memory pool that attnas search uses")
    add_device_argument(ap)
    a = ap.parse_args()
    dev = resolve(a.device)  # a missing device is a one-line error before any work
    peak = peak_conv(a.threads, dev)
    print(json.dumps({"peak": peak}), file=sys.stderr, flush=True)
    rows = []
    for s in a.setting:
        row = profile_setting(s, a.batch, a.threads, a.steps, a.warmup, a.profiled, peak["gflops_per_s"], dev,
                              a.cpu_pool)
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    out = {"device": str(dev), **machine(dev), "peak_conv": peak, "settings": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
