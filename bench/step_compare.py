"""Step time of the same search step in two checkouts, side by side (issue 15: "step time of every
method within noise of the previous commit").

    git worktree add /tmp/oldtree <commit>
    python bench/step_compare.py --old /tmp/oldtree --new . --rounds 3
    python bench/step_compare.py --old /tmp/oldtree --new . --rounds 3 --device cuda   # on a GPU

Each measurement is its own process (one thread, batch 32, 32x32 random data, median of 5 steps
after 2 warm-up steps); old and new alternate so that drift in the machine's speed hits both.
Checkouts from before the phase executor are timed through ``strategy.train_step``, later ones
through ``attnas.training.step.search_step``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from _device import add_device_argument, peak_memory, resolve, sync

CONFIGS = [("darts", "nb201", {"C": 8, "N": 2}), ("itnas", "nb201", {"C": 8, "N": 2}),
           ("random", "nb201", {"C": 8, "N": 2}), ("spos", "macro", {}), ("nos", "nos", {"C": 8, "layers": 5})]


def measure(tree: str, method: str, space: str, opts: dict, device: str = "cpu") -> dict:
    """``{"median_s", "device", "peak_rss_gb"[, "peak_device_gb"]}`` of one configuration in one checkout."""
    dev = resolve(device)
    sys.path.insert(0, tree)
    import time

    import torch

    import attnas
    if not attnas.__file__.startswith(str(__import__("pathlib").Path(tree).resolve())):
        raise SystemExit(f"imported attnas from {attnas.__file__}, not from {tree}")
    from attnas.spaces.registry import get_space
    from attnas.strategies.base import get_strategy

    torch.set_num_threads(1)
    torch.manual_seed(0)
    st = get_strategy(method, get_space(space, **opts), {"warmup": 0} if method == "itnas" else {})
    st.seed(0)
    model = st.build(10, 3, 32).to(dev)
    opt = st.optimizers(model, 100, 10)
    g = torch.Generator().manual_seed(0)  # drawn on the CPU, then moved: the same data on every device
    bw = (torch.randn(32, 3, 32, 32, generator=g).to(dev), torch.randint(0, 10, (32,), generator=g).to(dev))
    ba = (torch.randn(32, 3, 32, 32, generator=g).to(dev), torch.randint(0, 10, (32,), generator=g).to(dev))
    try:
        from attnas.training.step import search_step

        def step(i):
            search_step(st, model, opt, bw, ba, 0, i)
    except ImportError:  # a checkout from before the phase executor
        def step(i):
            st.train_step(model, opt, bw, ba, 0, i)
    ts = []
    for i in range(7):
        sync(dev)
        t = time.perf_counter()
        step(i)
        sync(dev)
        ts.append(time.perf_counter() - t)
    return {"median_s": statistics.median(ts[2:]), "device": str(dev), **peak_memory(dev)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", required=True, help="checkout of the earlier commit")
    ap.add_argument("--new", default=".", help="checkout of the later commit")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--one", nargs=4, metavar=("TREE", "METHOD", "SPACE", "OPTIONS"), help=argparse.SUPPRESS)
    add_device_argument(ap)
    args = ap.parse_args()
    if args.one:
        tree, method, space, opts = args.one
        print(json.dumps(measure(tree, method, space, json.loads(opts), args.device)))
        return
    resolve(args.device)  # a missing device is a one-line error before any work
    import pathlib
    trees = {"old": str(pathlib.Path(args.old).resolve()), "new": str(pathlib.Path(args.new).resolve())}
    times: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.rounds):
        for method, space, opts in CONFIGS:
            for label, tree in trees.items():
                out = subprocess.run([sys.executable, __file__, "--old", args.old, "--one", tree, method, space,
                                      json.dumps(opts), "--device", args.device], capture_output=True, text=True,
                                     cwd=tree, check=True)
                t = json.loads(out.stdout.strip().splitlines()[-1])["median_s"]
                times.setdefault(f"{method} ({space})", {}).setdefault(label, []).append(t)
    print("| method (space) | old (s) | new (s) | ratio of medians new/old |\n|---|---|---|---|")
    for name, r in times.items():
        ratio = statistics.median(r["new"]) / statistics.median(r["old"])
        print(f"| {name} | {', '.join(f'{t:.3g}' for t in r['old'])} | {', '.join(f'{t:.3g}' for t in r['new'])} "
              f"| {ratio:.2f} |")


if __name__ == "__main__":
    main()
