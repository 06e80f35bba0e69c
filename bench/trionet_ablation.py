"""TrioNet benchmark 2: supernet ablation on a CIFAR-10 subset at 32x32 (Fig. 5-6, shortened).

Trains the TrioNet supernet (``cifar`` layout; small ``--width`` / ``--depths`` for a CPU
budget) under four settings and reports, after each epoch, the test accuracy of the
*biggest* sub-network of each operator (every block: that operator with all elastic options
at their maximum -- the curves of Fig. 5-6), BN statistics recomputed on ``--bn-images``
training images first:

* ``full``        -- Hierarchical Sampling + Multi-Head Sharing + Sandwich rule (the paper);
* ``uniform``     -- uniform sampling over all 70 candidates instead of HS (Fig. 5a);
* ``prefix``      -- prefix weight sharing instead of MHS (Fig. 5b);
* ``no_sandwich`` -- one sampled path per step instead of the sandwich (Fig. 6a).

Every setting sees the same images in the same order (same seed), the same number of
epochs and steps; note that the sandwich settings do 4 forward/backward passes per step and
``no_sandwich`` one (the paper compares at equal epochs too).  Optimiser: the ``trionet``
preset (SGD Nesterov, lr 0.025 at batch 64, label smoothing 0.1, warm-up then cosine) with
``--warmup-epochs`` (and ``--lr`` to override the learning rate).  80 % of the
training subset trains the supernet (every batch of it each epoch; the other 20 % is the
engine's architecture split, unused here).  ``--device cuda`` trains and scores on a GPU
(default ``cpu``).

    ATTNAS_DATA_DIR=/work/shared/data python bench/trionet_ablation.py --threads 1 \\
        --train-subset 1000 --test-subset 500 --epochs 2 > bench/logs/trionet_ablation.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile

from _device import add_device_argument, resolve

CONFIGS = {"full": {}, "uniform": {"sampling": "uniform"}, "prefix": {"sharing": "prefix"},
           "no_sandwich": {"sandwich": False}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-subset", type=int, default=1000)
    ap.add_argument("--test-subset", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--warmup-epochs", type=int, default=0)
    ap.add_argument("--lr", type=float, default=None, help="override the preset's learning rate")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--depths", default="1,1,1,1")
    ap.add_argument("--heads", default="1,2")
    ap.add_argument("--bn-images", type=int, default=256)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--seed", type=int, default=0)
    add_device_argument(ap)
    args = ap.parse_args()
    dev = resolve(args.device)  # a missing device is a one-line error before any work

    import torch

    from attnas.data.datasets import load_dataset
    from attnas.data.paths import resolve_data_dir
    from attnas.search.evolution import recalibrate_bn, take_images
    from attnas.spaces.registry import get_space
    from attnas.strategies.base import get_strategy
    from attnas.strategies.random_search import activate, score_on_batches
    from attnas.arch import Architecture
    from attnas.training.engine import Engine
    from attnas.training.tasks import SearchTask

    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, resolve_data_dir(args.data_dir), train_subset=args.train_subset,
                        test_subset=args.test_subset, seed=args.seed)
    space = get_space("trionet", layout="cifar", width=args.width,
                      depths=[int(d) for d in args.depths.split(",")], heads=[int(h) for h in args.heads.split(",")])
    results = {"settings": vars(args), "space": space.cardinality_report(), "configs": {}}
    for name in args.configs.split(","):
        torch.manual_seed(args.seed)
        opts = {**CONFIGS[name], "warmup_epochs": args.warmup_epochs, "train_portion": 0.8}
        if args.lr is not None:
            opts["weights"] = {"lr": args.lr}
        strat = get_strategy("trionet", space, opts)
        strat.seed(args.seed)
        model = strat.build(data.num_classes, data.in_channels, data.image_size)
        test = None

        def on_epoch(epoch: int, task: SearchTask) -> dict:
            """The biggest sub-network of each operator, BN recalibrated, on the test images."""
            bn = take_images(task.weight_batches(epoch), args.bn_images)
            rec = {}
            for op in ("conv", "local", "axial"):
                arch = Architecture("trionet", {k: strat.extremes[k][op][1] for k in strat.extremes})
                activate(model, arch, strat.points)
                recalibrate_bn(model, bn)
                rec[f"biggest_{op}_acc"] = round(score_on_batches(model, test), 4)
            model.train()
            print(name, epoch + 1, json.dumps(rec), file=sys.stderr, flush=True)
            return rec

        task = SearchTask(strat, model, data, args.epochs, args.batch, args.seed, dev, on_epoch)
        test = [(task.augment(data.test_x[i:i + 256].to(dev), train=False), data.test_y[i:i + 256].to(dev))
                for i in range(0, len(data.test_y), 256)]
        with tempfile.TemporaryDirectory() as run_dir:  # the library's engine: progress, checks
            metrics = Engine(run_dir, args.epochs, args.seed, progress=True, label=name).run(task)
        curves = [{"epoch": m["epoch"] + 1, "train_loss": round(m["train_loss"], 4),
                   **{k: m[k] for k in m if k.startswith("biggest_")}, "elapsed_s": round(m["epoch_time_s"], 1)}
                  for m in metrics]
        results["configs"][name] = curves
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
