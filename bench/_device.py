"""``--device`` for the step-time benchmarks: parse and check it, synchronise, read peak memory.

On ``cuda`` the timers synchronise the device around every timed step, and the peak memory
is PyTorch's peak allocation on the device (``torch.cuda.max_memory_allocated``), reported
next to the process's peak resident memory.  A device that is not there is a one-line
error (exit 2), as in the CLI.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import sys


def add_device_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")


def resolve(name: str):
    import torch
    try:
        device = torch.device(name)
    except RuntimeError:
        print(f"attnas: error: --device {name}: not a device name (cpu, cuda, cuda:1, ...)", file=sys.stderr)
        sys.exit(2)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"attnas: error: --device {name}: this PyTorch sees no CUDA device", file=sys.stderr)
        sys.exit(2)
    if device.type not in ("cpu", "cuda"):
        print(f"attnas: error: --device {name}: only cpu and cuda are benchmarked", file=sys.stderr)
        sys.exit(2)
    return device


def allocator(device, pool: bool = True):
    """The context the timed steps run in: the CPU memory pool as ``attnas search`` uses it
    (:func:`attnas.ops.cpu_pool.active`, yields whether it is on), or PyTorch's own allocator."""
    import contextlib

    from attnas.ops import cpu_pool
    return cpu_pool.active(device) if pool else contextlib.nullcontext(False)


def sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device) -> dict:
    """Peak resident memory of the process (GiB) and, on CUDA, PyTorch's peak device allocation."""
    out = {"peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    if device.type == "cuda":
        import torch
        out["peak_device_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def machine(device) -> dict:
    """What ran a measurement: the CPU's model name (``/proc/cpuinfo`` where there is one; this
    project's VMs have been AMD and Intel on different days, and ratios between them differ) and
    the logical CPUs this process may run on, and on CUDA the GPU's name."""
    name = platform.processor() or platform.machine() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            found = next((line.partition(":")[2].strip() for line in f if line.startswith("model name")), "")
        name = found or name
    except (OSError, ValueError):  # no /proc (macOS), unreadable or undecodable
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out = {"cpu_model": name, "cpus": usable or 1}
    if device.type == "cuda":
        import torch
        out["gpu"] = torch.cuda.get_device_name(device)
    return out
