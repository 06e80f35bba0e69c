"""Search-step time and peak memory of EnTranNAS / EnTranNAS-DST vs the library's DARTS (issue 8, bench 1).

Same harness as ``bench/search_step.py`` (DARTS search network: 8 cells, C=16, batch 64,
32x32 random data, 2 threads, one first-order step = architecture step + weight step),
one configuration per process (peak RSS = ru_maxrss), run back-to-back so the ratios
see the same machine load.  ``--rounds 2`` repeats the whole sequence.

    python bench/entrannas_step_cost.py --steps 3 --warmup 1 --out bench/logs/entrannas_step_cost.json
    python bench/entrannas_step_cost.py --steps 3 --warmup 1 --device cuda --out bench/logs/entrannas_cuda.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _device import add_device_argument, resolve

HERE = Path(__file__).resolve().parent
SPACE_OPTIONS = {"C": 16, "layers": 8}
CONFIGS = [
    ("darts", {}),
    ("entrannas", {}),
    # DST at initialisation: p_hat ~ 1 everywhere, every connection survives (densest, slowest state)
    ("entrannas-dst", {}),
    # DST in a sparse state: alphas ~ N(0, 1e-3) at tau = 1e-3 spread p_hat, t = 0.5 prunes
    ("entrannas-dst", {"tau_schedule": "constant", "tau_max": 0.001}),
    # Table 1 ablation: every cell an engine (feature sharing + bottleneck, no transit cell)
    ("entrannas", {"engine_cells": "all"}),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--only", default=None, help="comma-separated indices into CONFIGS")
    ap.add_argument("--out", default=str(HERE / "logs" / "entrannas_step_cost.json"))
    add_device_argument(ap)
    a = ap.parse_args()
    resolve(a.device)  # a missing device is a one-line error before any work
    chosen = [CONFIGS[int(i)] for i in a.only.split(",")] if a.only else CONFIGS
    rows = []
    for r in range(a.rounds):
        for method, mopts in chosen:
            t0 = time.time()
            out = subprocess.run([sys.executable, str(HERE / "search_step.py"), "--space", "darts",
                                  "--method", method, "--space-options", json.dumps(SPACE_OPTIONS),
                                  "--method-options", json.dumps(mopts), "--steps", str(a.steps),
                                  "--warmup", str(a.warmup), "--device", a.device],
                                 check=True, capture_output=True, text=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row.update({"round": r, "wall_s": round(time.time() - t0, 1),
                        "started": time.strftime("%H:%M:%S", time.gmtime(t0))})
            rows.append(row)
            print(json.dumps(row), flush=True)
            Path(a.out).write_text(json.dumps(rows, indent=1) + "\n")
    base = {r["round"]: r for r in rows if r["method"] == "darts" and not r["method_options"]}
    for row in rows:
        b = base.get(row["round"])
        if b:
            print(f"{row['method']:>14} {json.dumps(row['method_options']):<50} "
                  f"{row['median_s_per_step']:7.2f} s/step ({b['median_s_per_step'] / row['median_s_per_step']:.2f}x faster) "
                  f"{row['peak_rss_gb']:5.2f} GB ({row['peak_rss_gb'] / b['peak_rss_gb']:.2f}x memory)")


if __name__ == "__main__":
    main()
