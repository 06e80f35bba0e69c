"""TrioNet benchmark 3: search under FLOPs budgets on a CIFAR-10 subset vs stand-alone networks (shortened).

1. Trains one TrioNet supernet (preset ``trionet``: Hierarchical Sampling, Sandwich rule,
   Multi-Head Sharing; ``cifar`` layout with a small ``--width``/``--depths``) for
   ``--search-epochs`` on 80 % of the training subset (the other 20 % scores candidates).
2. For every FLOPs budget (``--budgets``, fractions of the stand-alone convolutional network's
   FLOPs), runs the evolutionary search (SPOS evolution, small population) and exports the
   winner with inherited weights (BN recalibrated on training images).
3. Reports, for each found model and for the stand-alone conv / local / axial networks of the
   space: FLOPs, parameters, test accuracy with inherited weights, and test accuracy after a
   short retrain from scratch (``--retrain-epochs``, the library's retraining task: SGD 0.05,
   weight decay 5e-4, per-epoch cosine, standard augmentation).  Supernet training and
   retraining both run on the library's engine, on ``--device`` (default ``cpu``; ``cuda`` for a GPU).

    ATTNAS_DATA_DIR=/work/shared/data python bench/trionet_search.py --threads 1 > bench/logs/trionet_search.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from _device import add_device_argument, resolve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-subset", type=int, default=1000)
    ap.add_argument("--test-subset", type=int, default=500)
    ap.add_argument("--search-epochs", type=int, default=2)
    ap.add_argument("--retrain-epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--depths", default="1,1,1,1")
    ap.add_argument("--heads", default="1,2")
    ap.add_argument("--budgets", default="1.2,1.6", help="fractions of the stand-alone conv network's FLOPs")
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    add_device_argument(ap)
    args = ap.parse_args()
    dev = resolve(args.device)  # a missing device is a one-line error before any work

    import torch

    from attnas.data.augment import default_augment
    from attnas.data.datasets import load_dataset
    from attnas.data.paths import resolve_data_dir
    from attnas.errors import ConfigError
    from attnas.search.evolution import SelectionContext, take_images
    from attnas.search.export import export_subnet
    from attnas.spaces.registry import get_space
    from attnas.strategies.base import get_strategy
    from attnas.strategies.random_search import score_on_batches
    from attnas.presets import get_preset, override
    from attnas.training.engine import Engine
    from attnas.training.tasks import RetrainTask, SearchTask

    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, resolve_data_dir(args.data_dir), train_subset=args.train_subset,
                        test_subset=args.test_subset, seed=args.seed)
    space = get_space("trionet", layout="cifar", width=args.width,
                      depths=[int(d) for d in args.depths.split(",")], heads=[int(h) for h in args.heads.split(",")])
    costs = space.cost_table(data.num_classes, data.in_channels, data.image_size)
    conv_flops = costs.of(space.standalone("conv")).flops
    opts = {"weights": {"lr": args.lr}, "warmup_epochs": 0, "train_portion": 0.8, "population": args.population,
            "generations": args.generations, "top_k": max(2, args.population // 2),
            "mutations": args.population // 2, "crossovers": args.population // 2, "bn_images": 256}
    torch.manual_seed(args.seed)
    strat = get_strategy("trionet", space, opts)
    strat.seed(args.seed)
    model = strat.build(data.num_classes, data.in_channels, data.image_size)
    task = SearchTask(strat, model, data, args.search_epochs, args.batch, args.seed, dev)
    augment = default_augment(data)
    test = [(augment(data.test_x[i:i + 256].to(dev), train=False), data.test_y[i:i + 256].to(dev))
            for i in range(0, len(data.test_y), 256)]
    t0 = time.time()
    work = tempfile.TemporaryDirectory()  # run folders of the library's engine (checkpoints, metrics)
    Engine(f"{work.name}/supernet", args.search_epochs, args.seed, progress=True, label="supernet").run(task)
    out = {"settings": vars(args), "space": space.cardinality_report(), "supernet_train_s": round(time.time() - t0, 1),
           "conv_standalone_flops": conv_flops, "models": []}
    bn = take_images(task.weight_batches(0), 256)
    retrain_cfg = override(get_preset("retrain"), {"weights": {"lr": 0.05, "weight_decay": 5e-4},
                                                   "auxiliary_weight": 0.0, "drop_path": 0.0, "cutout": 0})

    def retrain(arch, label: str) -> float:
        """A short retrain from scratch with the library's retraining task (SGD 0.05, cosine)."""
        torch.manual_seed(args.seed)
        net = space.build_network(arch, data.num_classes, data.in_channels, data.image_size)
        rtask = RetrainTask(net, data, retrain_cfg, args.retrain_epochs, args.batch, args.seed, dev)
        metrics = Engine(f"{work.name}/{label}", args.retrain_epochs, args.seed, progress=False,
                         label="retrain").run(rtask)
        return float(metrics[-1]["test_acc"])

    def record(label, arch, extra=None):
        t = time.time()
        c = costs.of(arch)
        net = export_subnet(space, model, arch, data.num_classes, data.in_channels, data.image_size, bn_batches=bn)
        inherited = score_on_batches(net, test)
        rec = {"model": label, "flops_M": round(c.flops / 1e6, 2), "params_K": round(c.params / 1e3, 1),
               "inherited_test_acc": round(inherited, 4), "retrained_test_acc": round(retrain(arch, label), 4),
               "arch": space.to_native(arch), **(extra or {}), "seconds": round(time.time() - t, 1)}
        out["models"].append(rec)
        print(json.dumps(rec), file=sys.stderr, flush=True)

    for op in ("conv", "local", "axial"):
        record(f"standalone-{op}", space.standalone(op))
    context = SelectionContext(validation=list(task.validation_batches()), train=bn)
    for frac in [float(b) for b in args.budgets.split(",")]:
        budget = frac * conv_flops
        strat.cfg = type(strat.cfg)(**{**{f: getattr(strat.cfg, f) for f in strat.cfg.__dataclass_fields__},
                                       "flops_budget": budget})
        t = time.time()
        try:
            best, result = strat.evolve(model, context)
        except ConfigError as e:  # no random candidate met the budget
            out["models"].append({"model": f"trionet@{frac:g}x-conv", "budget_M": round(budget / 1e6, 2),
                                  "infeasible": str(e)})
            print(f"budget {frac:g}x: {e}", file=sys.stderr, flush=True)
            continue
        record(f"trionet@{frac:g}x-conv", best, {"budget_M": round(budget / 1e6, 2),
                                                  "supernet_val_acc": round(result.best_score, 4),
                                                  "evolution_s": round(time.time() - t, 1)})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
