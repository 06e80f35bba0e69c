"""``attnas train``: retrain a derived architecture, from scratch or from inherited weights."""
from __future__ import annotations

import argparse
from typing import Any

from attnas.cli.common import (add_data_flags, add_tensorboard_flag, is_main_process, parse_json_option,
                               refuse_with_resume, table)
from attnas.cli.main import add_json_flag
from attnas.config import TrainConfig, make_config


DESCRIPTION = """\
Retrain an architecture and report its test accuracy every epoch.

Recipes (--recipe NAME; default: the recipe of the method that found the architecture, named in
its architecture.json, else darts -- in its CIFAR-100 or ImageNet form for --dataset cifar100 or an
image folder / shards where the paper has one; the resolved recipe is in RUN/config.json):
  darts             DARTS evaluation: 600 epochs, batch 96, SGD 0.025 cosine, drop-path 0.2, cutout 16
  darts-imagenet    DARTS on ImageNet: 250 epochs, batch 128, SGD 0.1 x 0.97 per epoch, label smoothing 0.1
  nos               NOS on CIFAR-10: 600 epochs, batch 128, SGD 0.25 cosine, wd 3e-4, drop-path 0.3
  nos-cifar100      NOS on CIFAR-100: as nos with weight decay 5e-4
  nos-imagenet      NOS on ImageNet: 300 epochs, batch 512, SGD 0.25 linear, 5 warm-up epochs
  trionet           TrioNet: 130 epochs, batch 64, Nesterov SGD 0.025, 10 warm-up epochs, label smoothing
  trionet-finetune  TrioNet small datasets (the default of a TrioNet --init-from): 16 epochs, lr 5e-4

Schedules (--options): "lr_schedule" cosine | linear | step ("step_size", "step_gamma"), each after
"warmup_epochs" of linear warm-up; "nesterov", "label_smoothing", "weights": {"lr", "lr_min",
"momentum", "weight_decay", "grad_clip"}, "auxiliary_weight", "drop_path", "cutout".
Example: --options '{"lr_schedule": "step", "step_size": 30, "step_gamma": 0.1, "warmup_epochs": 5}'

--init-from starts from inherited weights instead of fresh ones: a search run folder (the
architecture's path of its supernet, as 'attnas export --from-run' materialises it; the run's
space options and the supernet's width and depth), a training run folder or a weights file.
Every parameter must fit the network: a shape or name that does not is an error, nothing is skipped.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="retrain an architecture (from scratch or inherited weights), report test accuracy",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", help="architecture.json, a run folder or a native string (NAS-Bench-201 cell, "
                                  "DARTS Genotype); default with --init-from RUN: that run's architecture")
    p.add_argument("--out", help="run folder (default: runs/train-SPACE-DATASET-sSEED)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or killed training")
    p.add_argument("--force", action="store_true",
                   help="write a new run into a non-empty --out folder (the files of an earlier run there "
                        "are replaced; other files are left alone)")
    p.add_argument("--space-options", help="JSON object of space options (default: the space's defaults, or "
                                           "the search's own options saved with the architecture when it "
                                           "does not fit the default space)")
    p.add_argument("--network-options", help="JSON object for the evaluation network, "
                                             "e.g. '{\"C\": 36, \"layers\": 20, \"auxiliary\": true}'")
    p.add_argument("--recipe", metavar="NAME",
                   help="retraining recipe: darts, darts-imagenet, nos, nos-cifar100, nos-imagenet, trionet, trionet-finetune "
                        "(default: the method's; see above)")
    p.add_argument("--options", help="JSON object overriding the recipe (lr_schedule, warmup_epochs, weights, "
                                     "drop_path, cutout, ...)")
    p.add_argument("--init-from", metavar="RUN_OR_WEIGHTS",
                   help="start from these weights: a search run (inherited from its supernet), a training run, "
                        "or a weights file (read as tensors only)")
    p.add_argument("--amp", action="store_true", default=None,
                   help="mixed precision: float16 with loss scaling on CUDA, bfloat16 on CPU")
    p.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="torch.compile the training forward (default backend inductor; aot_eager needs "
                        "no C++ compiler)")
    add_data_flags(p)
    add_tensorboard_flag(p)
    add_json_flag(p)
    p.set_defaults(func=run)


#: options that define a new run: refused with --resume (the run keeps its recorded ones)
RUN_OPTIONS = ("arch", "out", "force", "space_options", "network_options", "options", "amp", "compile", "dataset",
               "data_dir", "epochs", "batch_size", "seed", "config", "train_subset", "test_subset", "image_size",
               "device", "recipe", "init_from")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from attnas import api

    progress = not args.quiet
    refuse_with_resume(args, RUN_OPTIONS)
    if args.resume:
        result = api.resume_train(args.resume, progress=progress, stop_after=args.stop_after,
                                  checkpoint_every=args.checkpoint_every,
                                  tensorboard=args.tensorboard)
    else:
        cfg = make_config(
            TrainConfig, args.config, arch=args.arch, dataset=args.dataset, data_dir=args.data_dir,
            epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, out=args.out,
            train_subset=args.train_subset, test_subset=args.test_subset, image_size=args.image_size,
            device=args.device, amp=args.amp, checkpoint_every=args.checkpoint_every, compile=args.compile, recipe=args.recipe, init_from=args.init_from,
            space_options=parse_json_option(args.space_options, "--space-options"),
            network_options=parse_json_option(args.network_options, "--network-options"),
            options=parse_json_option(args.options, "--options"))
        result = api.train(cfg, progress=progress, stop_after=args.stop_after, tensorboard=args.tensorboard,
                           force=args.force)
    if not is_main_process():  # torchrun: rank 0 reports
        return None
    if result["status"] != "done":
        print(f"training stopped after {result['epochs_done']}/{result['epochs']} epochs; "
              f"continue with: attnas train --resume {result['run_dir']}")
    else:
        print(table(["", ""], [["run folder", result["run_dir"]], ["recipe", result["recipe"]],
                               ["parameters", result["params"]],
                               ["final test acc", result["test_acc"]],
                               ["best test acc", result["best_test_acc"]]]))
    return result
