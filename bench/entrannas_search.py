"""EnTranNAS / EnTranNAS-DST vs DARTS on a CIFAR-10 subset under a fixed CPU budget (issue 8, bench 2).

For each seed: search with DARTS (first order), EnTranNAS and EnTranNAS-DST (lambda in
``--lambdas``) on the same data and budget; record the derived cells, the number of inputs
per node DST chose, the search time; draw the cells with ``attnas show``; retrain the cells
of DARTS, EnTranNAS and DST (``--retrain-lambdas``) for a few epochs and record test accuracy.
Results go to ``--out``/results_s<SEEDS>.json, updated after every run (so a cut-off run keeps what
it finished).  Data: ``cifar10`` from ``--data-dir`` / ``$ATTNAS_DATA_DIR`` (the JPEG zip works).
Searches and retrainings run on ``--device`` (default ``cpu``; ``cuda`` for a GPU).

    ATTNAS_DATA_DIR=/path/to/data python bench/entrannas_search.py --out bench/logs/entrannas_search
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _device import add_device_argument, resolve


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/logs/entrannas_search")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--lambdas", default="0.1,0,1")
    ap.add_argument("--retrain-lambdas", default="0.1")
    ap.add_argument("--train-subset", type=int, default=2000)
    ap.add_argument("--test-subset", type=int, default=1000)
    ap.add_argument("--C", type=int, default=8)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--search-epochs", type=int, default=4)
    ap.add_argument("--retrain-epochs", type=int, default=3)
    ap.add_argument("--retrain-C", type=int, default=8)
    ap.add_argument("--retrain-layers", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--arch-lr", type=float, default=None,
                    help="architecture learning rate for every method (the paper's 3e-4 assumes ~20k steps)")
    add_device_argument(ap)
    a = ap.parse_args()
    resolve(a.device)  # a missing device is a one-line error before any work

    import torch

    from attnas.api import search, train
    from attnas.cli.main import main as cli
    from attnas.config import SearchConfig, TrainConfig

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / f"results_s{a.seeds.replace(',', '_')}.json"  # one file per process
    results = json.loads(res_path.read_text()) if res_path.exists() else {"runs": []}
    results["setup"] = {k: v for k, v in vars(a).items() if k != "out"}
    done = {r["name"] for r in results["runs"]}
    lambdas = [float(x) for x in a.lambdas.split(",") if x]
    retrain_l = {float(x) for x in a.retrain_lambdas.split(",") if x}
    for seed in [int(s) for s in a.seeds.split(",")]:
        configs = [("darts", "darts", {}, True), ("entrannas", "entrannas", {}, True)]
        configs += [(f"dst-l{lam:g}", "entrannas-dst", {"sparsity_lambda": lam}, lam in retrain_l)
                    for lam in lambdas]
        for name, method, mopts, do_retrain in configs:
            tag = f"{name}-s{seed}"
            if tag in done:
                continue
            run_dir = out / tag
            t0 = time.time()
            if a.arch_lr is not None:
                mopts = {**mopts, "arch_lr": a.arch_lr}
            cfg = SearchConfig(space="darts", method=method, dataset="cifar10", data_dir=a.data_dir,
                               epochs=a.search_epochs, batch_size=a.batch, seed=seed, out=str(run_dir),
                               space_options={"C": a.C, "layers": a.layers}, method_options=mopts,
                               train_subset=a.train_subset, test_subset=a.test_subset, device=a.device)
            resume = (run_dir / "checkpoint.pt").exists()
            r = search(cfg, resume=resume, progress=False)
            arch = json.loads((run_dir / "architecture.json").read_text())
            row = {"name": tag, "method": method, "seed": seed, "method_options": mopts,
                   "search_time_s": r["search_time_s"], "supernet_valid_acc": r["valid_acc"],
                   "choices": arch["choices"], "native": arch.get("native"),
                   "inputs_per_node": arch.get("meta", {}).get("inputs_per_node"),
                   "multi_op_edges": arch.get("meta", {}).get("multi_op_edges")}
            cli(["show", str(run_dir / "architecture.json"), "-o", str(out / f"{tag}.png")])
            row["drawing"] = f"{tag}.png"
            if do_retrain:
                tr_dir = out / f"{tag}-retrain"
                tcfg = TrainConfig(arch=str(run_dir / "architecture.json"), dataset="cifar10",
                                   data_dir=a.data_dir, epochs=a.retrain_epochs, batch_size=a.batch,
                                   seed=seed, out=str(tr_dir), train_subset=a.train_subset,
                                   test_subset=a.test_subset, device=a.device,
                                   network_options={"C": a.retrain_C, "layers": a.retrain_layers,
                                                    "auxiliary": False})
                tr = train(tcfg, resume=(tr_dir / "checkpoint.pt").exists(), progress=False)
                row.update({"retrain_test_acc": tr.get("test_acc"), "retrain_params": tr.get("params")})
            row["wall_s"] = round(time.time() - t0, 1)
            results["runs"].append(row)
            res_path.write_text(json.dumps(results, indent=1) + "\n")
            print(json.dumps({k: v for k, v in row.items() if k != "choices"}), flush=True)


if __name__ == "__main__":
    main()
