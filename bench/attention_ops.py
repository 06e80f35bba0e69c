"""Attention-operator benchmark (issue 19): forward + backward time of TrioNet's local and axial
attention, the previous PyTorch implementations ("old": local attention offset by offset,
axial attention as batched matrix products) against the defaults ("new": the C kernels of
:mod:`attnas.ops.local_kernel` and :mod:`attnas.ops.axial_kernel`), side by side in one process
at the paper's shapes.

Three timings per shape: "old" as it ran when issue 19 was filed (PyTorch's allocator), "old
+ pool" (the same code inside the CPU memory pool, :mod:`attnas.ops.cpu_pool`, which ``attnas
search`` and ``train`` install on CPU since 2026-12-05), and "new" inside the pool (as the
library runs it now).  ``--no-cpu-pool`` runs all of them on PyTorch's allocator.

Shapes (``attnas.spaces.trionet``, width 64 -- the paper's ResNet-26/50 widths): ImageNet
layout at 224x224 input, the four stages at 56, 28, 14, 7 (block outputs 256 ... 2048):

* local: SASA's ``local_k7_e0.25_qk1_v1_h8`` (d_q = d_v = 64, 128, 256, 512; 8 heads, m = 7),
  the largest Table 1 local option ``local_k7_e0.5_qk1_v1_h8`` at 56x56 and the 3x3 window;
* axial: Axial-ResNet's ``axial_e0.5_qk0.5_v1_h8`` (d_q = 64 ... 512, d_v = 128 ... 1024,
  8 heads), a height and a width layer (on the same inputs, outputs summed), relative tables
  sized for the side;
* the CIFAR layout (32x32 input: 32, 16, 8, 4) at width 64 (same channels) and the tiny
  width-8 supernet of the tests and of the issue (``local_k7_e0.5_qk1_v1_h4``: 16 channels).

Two phases in one process: all rounds of "old" on PyTorch's allocator, then the pool installed
once (as ``attnas search`` does) and all rounds of "old + pool" and "new", interleaved shape by
shape (inputs, relative table and upstream gradient fixed; one untimed warm-up call each, also
used for the comparison).  The table gives the median over ``--rounds`` and the ratios old /
new and (old + pool) / new.  The values of old and new are compared at every shape (max abs difference
of output and gradients, float32).  ``--threads`` sets torch's (and the kernel's) threads.

``--device cuda`` times the operators as the library runs them on a GPU: the C kernel is
CPU-only, so on CUDA tensors old and new are the same PyTorch implementation and only that one
column is timed (``pytorch_ms``; the device is synchronised around every call; no kernel
build, no comparison).  The device is in the output.

    python bench/attention_ops.py --threads 1 --rounds 5 --json bench/logs/attention_ops.json
    python bench/attention_ops.py --rounds 5 --device cuda   # on a GPU
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from _device import add_device_argument, allocator, machine, resolve, sync


def shapes(quick: bool) -> list[dict]:
    out = []
    sides = {"imagenet": (56, 28, 14, 7), "cifar": (32, 16, 8, 4)}
    batch = {"imagenet": 8, "cifar": 32}
    for layout, ss in sides.items():
        for s, side in enumerate(ss):
            c = 64 * 2 ** s  # mid of e = 0.25 at width 64
            out.append(dict(op="local", layout=layout, name="local_k7_e0.25_qk1_v1_h8", B=batch[layout], side=side,
                            dq=c, dv=c, heads=8, m=7))
            out.append(dict(op="axial", layout=layout, name="axial_e0.5_qk0.5_v1_h8", B=batch[layout], side=side,
                            dq=c, dv=2 * c, heads=8, m=side))
    out.append(dict(op="local", layout="imagenet", name="local_k7_e0.5_qk1_v1_h8", B=8, side=56, dq=128, dv=128,
                    heads=8, m=7))
    out.append(dict(op="local", layout="imagenet", name="local_k3_e0.25_qk1_v1_h8", B=8, side=56, dq=64, dv=64,
                    heads=8, m=3))
    for name, dq, heads in (("local_k7_e0.5_qk1_v1_h4", 16, 4), ("local_k7_e0.5_qk1_v1_h8", 16, 8)):
        out.append(dict(op="local", layout="cifar-w8", name=name, B=64, side=32, dq=dq, dv=dq, heads=heads, m=7))
    out.append(dict(op="axial", layout="cifar-w8", name="axial_e0.5_qk0.5_v1_h4", B=64, side=32, dq=8, dv=16,
                    heads=4, m=32))
    if quick:
        out = [s for s in out if s["side"] <= 16 or s["layout"] == "cifar-w8"][:6]
    return out


def run(args, dev) -> dict:
    import torch

    from attnas.ops import axial_kernel, local_kernel
    from attnas.ops.trio import axial_attention_1d, axial_impl, local_attention

    torch.set_num_threads(args.threads)
    cuda = dev.type == "cuda"
    # on CUDA old and new are the same PyTorch implementation
    impls = ("pytorch",) if cuda else ("old", "oldpool", "new") if args.cpu_pool else ("old", "new")
    build_s = None
    if not cuda:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as cold:  # a cold build of the kernel (normally cached)
            os.environ["ATTNAS_KERNEL_CACHE"] = cold
            local_kernel.LIBRARY.build()
            axial_kernel.LIBRARY.build()
            build_s = round(time.perf_counter() - t0, 2)
            del os.environ["ATTNAS_KERNEL_CACHE"]
        if not (local_kernel.available() and axial_kernel.available()):
            raise SystemExit("the C kernels did not build on this machine")

    def make(sp, seed):
        g = torch.Generator().manual_seed(seed)
        B, n = sp["B"], sp["side"]
        q, k = (torch.randn(B, sp["dq"], n, n, generator=g) for _ in range(2))
        v = torch.randn(B, sp["dv"], n, n, generator=g)
        rel = (torch.randn(sp["dq"], sp["m"], sp["m"], generator=g) if sp["op"] == "local"
               else torch.randn(sp["dq"], 2 * sp["m"] - 1, generator=g))
        return [t.to(dev).requires_grad_() for t in (q, k, v, rel)]

    def step(sp, tensors, go):
        if sp["op"] == "local":
            y = local_attention(*tensors, sp["heads"])
        else:  # the axial operator's two layers: along the height and along the width
            y = axial_attention_1d(*tensors, sp["heads"], "h") + axial_attention_1d(*tensors, sp["heads"], "w")
        return torch.autograd.grad(y, tensors, go) + (y,)

    def timed(sp, tensors, go, impl):
        os.environ["ATTNAS_LOCAL_KERNEL"] = "1" if impl == "new" else "0"
        sync(dev)
        t = time.perf_counter()
        out = step(sp, tensors, go)
        sync(dev)
        return time.perf_counter() - t, out

    # phases: the allocator stays as it is for a whole phase (installing the pool per call would
    # start every call on fresh pages); impls within a phase interleave shape by shape
    pooled = args.cpu_pool and not cuda
    phases = [(("old",), False), (("oldpool", "new"), True)] if pooled else [(impls, False)]
    rows = []
    specs = [sp for sp in shapes(args.quick) if args.op in ("all", sp["op"])]
    data = []
    for i, sp in enumerate(specs):
        tensors = make(sp, i)
        go = torch.randn(sp["B"], sp["dv"], sp["side"], sp["side"],
                         generator=torch.Generator().manual_seed(99 + i)).to(dev)
        data.append((tensors, go))
        if cuda:
            impl = "pytorch" if sp["op"] == "local" else "products"
        else:
            impl = "kernel" if sp["op"] == "local" else axial_impl()
        rows.append({**sp, "impl": impl, **{f"{name}_s": [] for name in impls}, "max_abs_diff": None})
    first = {}
    for names, pool in phases:
        with allocator(dev, pool=pool):
            for row, (tensors, go) in zip(rows, data):   # warm-up calls, also compared
                for impl in names:
                    out = [t.detach().clone() for t in timed(row, tensors, go, impl)[1]]
                    if id(row) not in first:
                        first[id(row)] = out
                    elif impl == "new":
                        row["max_abs_diff"] = max((a - b).abs().max().item() for a, b in zip(first[id(row)], out))
            for r in range(args.rounds):
                for row, (tensors, go) in zip(rows, data):
                    for impl in names:
                        row[f"{impl}_s"].append(timed(row, tensors, go, impl)[0])
                print(f"{'+'.join(names)}: round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    os.environ.pop("ATTNAS_LOCAL_KERNEL", None)
    for row in rows:
        for impl in impls:
            row[f"{impl}_ms"] = round(1e3 * statistics.median(row[f"{impl}_s"]), 1)
            row[f"{impl}_s"] = [round(t, 4) for t in row[f"{impl}_s"]]
        if not cuda:
            row["speedup"] = round(row["old_ms"] / row["new_ms"], 2)
            if "oldpool_ms" in row:
                row["speedup_pool"] = round(row["oldpool_ms"] / row["new_ms"], 2)
    return {"command": " ".join([os.path.basename(sys.executable)] + sys.argv), "device": str(dev),
            "threads": args.threads, "rounds": args.rounds, "cpu_pool": args.cpu_pool and not cuda,
            "torch": torch.__version__,
            **machine(dev), "load_avg": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "kernel_cold_build_s": build_s, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--op", choices=("all", "local", "axial"), default="all", help="time only this operator")
    ap.add_argument("--quick", action="store_true", help="a few small shapes (smoke test)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--no-cpu-pool", dest="cpu_pool", action="store_false",
                    help="time everything on PyTorch's allocator (no 'old + pool' column)")
    add_device_argument(ap)
    args = ap.parse_args()
    dev = resolve(args.device)  # a missing device is a one-line error before any work
    res = run(args, dev)
    cuda = dev.type == "cuda"
    if cuda:
        print(f"torch {res['torch']}, {res['device']}, {res['rounds']} rounds (median); on CUDA old and new are "
              f"the same PyTorch implementation (the C kernel is CPU-only): one column")
        print("| op | layout | candidate | batch | side | d_q / d_v / heads | window | ms |")
        print("|---|---|---|---|---|---|---|---|")
    else:
        print(f"torch {res['torch']}, {res['threads']} thread(s), {res['rounds']} rounds (median), "
              f"kernel cold build {res['kernel_cold_build_s']} s, load average {res['load_avg'][0]:.1f}")
        pool = res["cpu_pool"]
        print("| op | layout | candidate | batch | side | d_q / d_v / heads | window | old ms |"
              + (" old + pool ms |" if pool else "") + " new ms | speed-up |"
              + (" vs old + pool |" if pool else "") + " max abs diff |")
        print("|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if pool else "") + "---|")
    for r in res["rows"]:
        window = f"{r['m']}x{r['m']}" if r["op"] == "local" else f"axis {r['side']} (h + w), {r['impl']}"
        if cuda:
            times = f"{r['pytorch_ms']} |"
        elif pool:
            times = (f"{r['old_ms']} | {r['oldpool_ms']} | {r['new_ms']} | {r['speedup']}x | {r['speedup_pool']}x | "
                     f"{r['max_abs_diff']:.1e} |")
        else:
            times = f"{r['old_ms']} | {r['new_ms']} | {r['speedup']}x | {r['max_abs_diff']:.1e} |"
        print(f"| {r['op']} | {r['layout']} | `{r['name']}` | {r['B']} | {r['side']} | {r['dq']} / {r['dv']} / "
              f"{r['heads']} | {window} | {times}")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
