"""TrioNet benchmark 1: sampling balance, uniform vs Hierarchical Sampling (Sec. 3.4, Eq. 4).

Draws ``--draws`` sub-networks of the full TrioNet space (Table 1: 6 conv, 48 local, 16 axial
candidates per block, depths 2-3-6-3) with the ``trionet`` strategy's sampler, without the
sandwich rule (one random path per draw), and reports how often each operator was chosen,
pooled over all blocks, plus the per-block minimum/maximum frequency.  Table 1 predicts
6/70, 48/70, 16/70 under uniform sampling and 1/3 each under hierarchical sampling.
Pure Python, a few seconds.

    python bench/trionet_sampling.py --draws 10000 > bench/logs/trionet_sampling.json
"""
from __future__ import annotations

import argparse
import json
import time

from attnas.spaces.registry import get_space
from attnas.spaces.trionet import operator_of
from attnas.strategies.base import get_strategy

OPS = ("conv", "local", "axial")
EXPECTED = {"uniform": {"conv": 6 / 70, "local": 48 / 70, "axial": 16 / 70},
            "hierarchical": {op: 1 / 3 for op in OPS}}


def run(draws: int, seed: int, layout: str) -> dict:
    # the paper's maximal depths, fixed (as measured in docs/benchmarks.md; the elastic depths would add "none" blocks)
    space = get_space("trionet", layout=layout, size="paper", elastic_depth=False)
    out = {"space": space.cardinality_report(), "draws": draws, "blocks": len(space.choice_points()), "modes": {}}
    for mode in ("uniform", "hierarchical"):
        strat = get_strategy("trionet", space, {"sampling": mode, "sandwich": False})
        strat.seed(seed)
        per_block = {p.key: {op: 0 for op in OPS} for p in strat.points}
        t = time.perf_counter()
        for _ in range(draws):
            (arch,) = strat.sample_paths()
            for k, v in arch.choices.items():
                per_block[k][operator_of(v)] += 1
        elapsed = time.perf_counter() - t
        total = draws * len(per_block)
        pooled = {op: sum(b[op] for b in per_block.values()) / total for op in OPS}
        out["modes"][mode] = {
            "pooled_frequency": {op: round(f, 4) for op, f in pooled.items()},
            "expected": {op: round(f, 4) for op, f in EXPECTED[mode].items()},
            "per_block_min": {op: round(min(b[op] for b in per_block.values()) / draws, 4) for op in OPS},
            "per_block_max": {op: round(max(b[op] for b in per_block.values()) / draws, 4) for op in OPS},
            "seconds": round(elapsed, 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layout", default="imagenet")
    args = ap.parse_args()
    print(json.dumps(run(args.draws, args.seed, args.layout), indent=1))


if __name__ == "__main__":
    main()
