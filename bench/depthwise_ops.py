"""Depthwise convolution backward: oneDNN (PyTorch's ``convolution_backward``) vs attnas's
(:mod:`attnas.ops.depthwise`) at the shapes of the three peer settings (issue 19).

For each shape: the forward (oneDNN, the same in both), oneDNN's input and weight gradients,
and attnas's (the input gradient as a flipped-kernel forward at stride 1, the C kernel's
weight gradient); milliseconds, median of ``--repeats`` calls after two warm-up calls,
batch ``--batch``, channels-last float32, ``--threads`` threads.  Every row is also checked
against oneDNN's values.

``--device cuda``: the C kernel is CPU-only, so on CUDA tensors attnas's backward
(:func:`attnas.ops.depthwise.conv_backward`) is PyTorch's ``convolution_backward`` (cuDNN), the
same call as the "oneDNN" column: only the forward and that one backward are timed (the device
synchronised around every call), with no comparison.  The device is in the output.

    python bench/depthwise_ops.py --json bench/logs/depthwise_ops.json
    python bench/depthwise_ops.py --device cuda   # on a GPU
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from _device import add_device_argument, resolve, sync

# (setting, channels, side, kernel, stride, dilation): the DARTS space's separable and dilated
# convolutions at C=16 (its three widths), the ProxylessNAS blocks' hidden widths at 224x224
SHAPES = [("darts", C, side, k, s, d) for C, side in ((16, 32), (32, 16), (64, 8))
          for k, s, d in ((3, 1, 1), (5, 1, 1), (3, 1, 2), (5, 1, 2))] + \
    [("darts", 16, 32, 3, 2, 2), ("darts", 16, 32, 5, 2, 1)] + \
    [("proxyless", C, side, k, 1, 1) for C, side in ((96, 56), (144, 56), (240, 28)) for k in (3, 5, 7)] + \
    [("proxyless", 96, 112, k, 2, 1) for k in (5, 7)]


def measure(setting, C, side, k, s, d, batch, repeats, device) -> dict:
    import torch
    import torch.nn.functional as F

    from attnas.ops.depthwise import conv_backward

    p = d * (k - 1) // 2
    x = torch.randn(batch, C, side, side, device=device).contiguous(memory_format=torch.channels_last)
    w = torch.randn(C, 1, k, k, device=device).contiguous(memory_format=torch.channels_last)
    y = F.conv2d(x, w, None, s, p, d, C)
    g = torch.randn_like(y)

    def onednn():
        return torch.ops.aten.convolution_backward(g, x, w, None, [s, s], [p, p], [d, d], False, [0, 0], C,
                                                   [True, True, False])[:2]

    def ours():
        return conv_backward(g, x, w, s, p, d, C)

    def ms(fn):
        fn(), fn()
        times = []
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - t0)
        return round(1e3 * statistics.median(times), 3)

    if device.type == "cuda":  # attnas's backward is PyTorch's there: one backward column
        return {"setting": setting, "channels": C, "side": side, "kernel": k, "stride": s, "dilation": d,
                "forward_ms": ms(lambda: F.conv2d(x, w, None, s, p, d, C)), "backward_ms": ms(ours)}
    ref, got = onednn(), ours()
    err = max(float((a - b).abs().max() / (a.abs().max() + 1e-12)) for a, b in zip(ref, got))
    fwd, bwd_onednn, bwd_ours = ms(lambda: F.conv2d(x, w, None, s, p, d, C)), ms(onednn), ms(ours)
    return {"setting": setting, "channels": C, "side": side, "kernel": k, "stride": s, "dilation": d,
            "forward_ms": fwd, "backward_onednn_ms": bwd_onednn, "backward_attnas_ms": bwd_ours,
            "speedup": round(bwd_onednn / bwd_ours, 2), "max_rel_error": err}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="also write the rows here")
    add_device_argument(ap)
    a = ap.parse_args()
    dev = resolve(a.device)  # a missing device is a one-line error before any work
    import torch
    torch.set_num_threads(a.threads)
    rows = []
    cuda = dev.type == "cuda"
    if cuda:
        print(f"{dev}: attnas's depthwise backward is PyTorch's convolution_backward on CUDA (the C kernel is "
              f"CPU-only): one backward column")
        print(f"{'setting':10} {'C':>4} {'side':>4} {'k':>2} {'s':>2} {'d':>2} {'fwd':>8} {'bwd':>11}")
    else:
        print(f"{'setting':10} {'C':>4} {'side':>4} {'k':>2} {'s':>2} {'d':>2} {'fwd':>8} "
              f"{'bwd oneDNN':>11} {'bwd attnas':>11} {'speed-up':>9}")
    for shape in SHAPES:
        r = measure(*shape, a.batch, a.repeats, dev)
        rows.append(r)
        line = (f"{r['setting']:10} {r['channels']:4d} {r['side']:4d} {r['kernel']:2d} {r['stride']:2d} "
                f"{r['dilation']:2d} {r['forward_ms']:8.2f}")
        if cuda:
            print(f"{line} {r['backward_ms']:11.2f}", flush=True)
            continue
        print(f"{line} {r['backward_onednn_ms']:11.2f} {r['backward_attnas_ms']:11.2f} {r['speedup']:8.2f}x",
              flush=True)
        if r["max_rel_error"] > 1e-4:
            raise SystemExit(f"mismatch against oneDNN: {r}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": str(dev), "batch": a.batch, "threads": a.threads, "torch": torch.__version__,
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
