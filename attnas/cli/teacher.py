"""``attnas teacher train``: train a teacher for attention-guided search (NOS, Sec. 3.3).

Trains a model class (default: :class:`attnas.teacher.CifarResNet`) with the library's engine
(:class:`attnas.training.tasks.RetrainTask`, preset ``teacher`` of :mod:`attnas.presets`), with
checkpoints and ``--resume``, and writes ``teacher.pt`` (class, options, stage names, weights)
into the run folder: pass it to a search as
``--method-options '{"teacher_checkpoint": "RUN/teacher.pt"}'``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from attnas.run_dir import CONFIG, RESULT
from attnas.cli.common import add_data_flags, parse_json_option, table
from attnas.cli.main import add_json_flag

DEFAULT_CLASS = "attnas.teacher:CifarResNet"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("teacher", help="train a teacher network for attention-guided search (nos)")
    tsub = p.add_subparsers(dest="teacher_command", metavar="ACTION")
    t = tsub.add_parser("train", help="train a teacher with the library's engine; writes RUN/teacher.pt")
    t.add_argument("--class", dest="teacher_class", default=None,
                   help=f"registered teacher class: a short name (resnet20, pyramidnet110: NOS's "
                        f"PyramidNet-110, alpha 84) or 'module:Class' (default {DEFAULT_CLASS}; others "
                        f"are added from Python with attnas.teacher.register_teacher)")
    t.add_argument("--teacher-options", help="JSON constructor options, e.g. '{\"depth\": 20, \"width\": 16}'")
    t.add_argument("--stages", help="comma-separated module names of the 3 stages to match "
                                    "(default: the class's 'stages' attribute)")
    t.add_argument("--options", help="JSON object overriding the teacher preset (lr, weight decay, ...)")
    t.add_argument("--out", help="run folder (default: runs/teacher-DATASET-sSEED)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or killed training")
    t.add_argument("--force", action="store_true",
                   help="write a new run into a non-empty --out folder (the files of an earlier run there "
                        "are replaced; other files are left alone)")
    add_data_flags(t)
    add_json_flag(t)
    t.set_defaults(func=run)
    p.set_defaults(func=lambda args: p.print_help())


def run(args: argparse.Namespace) -> dict[str, Any]:
    from attnas.data.paths import absolute_data_dir, absolute_dataset
    from attnas.errors import ConfigError

    if args.resume:
        cfg_path = Path(args.resume) / "teacher_config.json"
        if not cfg_path.is_file():
            raise ConfigError(f"'{args.resume}' is not a teacher run folder (no teacher_config.json)")
        cfg = json.loads(cfg_path.read_text())
        cfg["out"] = args.resume
        resume = True
    else:
        cfg = {"teacher_class": args.teacher_class or DEFAULT_CLASS,
               "teacher_options": parse_json_option(args.teacher_options, "--teacher-options") or {},
               "stages": [s for s in (args.stages or "").split(",") if s],
               "options": parse_json_option(args.options, "--options") or {},
               "dataset": absolute_dataset(args.dataset or "digits"), "data_dir": absolute_data_dir(args.data_dir),
               "epochs": args.epochs,
               "batch_size": args.batch_size, "seed": args.seed or 0, "out": args.out,
               "train_subset": args.train_subset, "test_subset": args.test_subset,
               "image_size": args.image_size, "device": args.device or "auto"}
        resume = False
    result = train_teacher(cfg, resume=resume, progress=not args.quiet, stop_after=args.stop_after,
                           force=args.force)
    if result["status"] != "done":
        print(f"teacher training stopped after {result['epochs_done']}/{result['epochs']} epochs; "
              f"continue with: attnas teacher train --resume {result['run_dir']}")
    else:
        print(table(["", ""], [["run folder", result["run_dir"]], ["teacher", result["teacher"]],
                               ["stages", ", ".join(result["stages"])], ["parameters", result["params"]],
                               ["final test acc", result["test_acc"]]]))
    return result


def train_teacher(cfg: dict[str, Any], resume: bool = False, progress: bool = True,
                  stop_after: int | None = None, force: bool = False) -> dict[str, Any]:
    """Train the teacher described by ``cfg`` (see :func:`run`); return the result dict.
    ``force``: a new run may write into a non-empty ``out`` (an earlier run's files are replaced)."""
    from attnas.data.datasets import load_dataset
    from attnas.errors import ConfigError
    from attnas.presets import get_preset, override
    from attnas.teacher import import_class, instantiate
    from attnas.training.engine import seed_everything
    from attnas.run_dir import check_new_run_dir, open_run_dir
    from attnas.training.schedules import check_retrain_schedule

    tcfg = override(get_preset("teacher"), cfg["options"])
    check_retrain_schedule(tcfg)  # before the run folder is written (RetrainTask builds it later)
    epochs = cfg["epochs"] if cfg["epochs"] is not None else tcfg.epochs
    batch = cfg["batch_size"] if cfg["batch_size"] is not None else tcfg.batch_size
    if epochs < 1 or batch < 1:
        raise ConfigError(f"epochs and batch size must be positive, got {epochs} and {batch}")
    out = Path(cfg["out"] or f"runs/teacher-{cfg['dataset']}-s{cfg['seed']}")
    if not resume:
        check_new_run_dir(out, force)
    data = load_dataset(cfg["dataset"], cfg["data_dir"], train_subset=cfg["train_subset"],
                        test_subset=cfg["test_subset"], seed=cfg["seed"], image_size=cfg["image_size"])
    from dataclasses import replace

    from attnas.data.augment import effective_cutout  # capped at half the side; erasing the image is refused
    tcfg = replace(tcfg, cutout=effective_cutout(tcfg.cutout, data.image_size, explicit="cutout" in cfg["options"]))
    seed_everything(cfg["seed"])
    cls = import_class(cfg["teacher_class"])
    net = instantiate(cls, cfg["teacher_options"], data.num_classes, data.in_channels)
    stages = list(cfg["stages"]) or list(getattr(net, "stages", ()))
    if not stages:
        raise ConfigError("no stage names: pass --stages (module names, e.g. layer1,layer2,layer3)")
    for s in stages:
        try:
            net.get_submodule(s)
        except AttributeError:
            raise ConfigError(f"{cfg['teacher_class']} has no module '{s}' (a stage name)") from None
    lock = open_run_dir(out, fresh=not resume, force=force)
    try:
        return _train_teacher_locked(cfg, out, tcfg, epochs, batch, data, cls, net, stages, progress, stop_after)
    finally:
        if lock is not None:
            lock.release()


def _train_teacher_locked(cfg, out, tcfg, epochs, batch, data, cls, net, stages, progress,
                          stop_after) -> dict[str, Any]:
    """The rest of :func:`train_teacher`, run while the run folder is locked."""
    from attnas.distributed import resolve_device
    from attnas.presets import to_dict
    from attnas.teacher import TEACHER_FILE, save_teacher
    from attnas.training.checkpoint import write_json
    from attnas.training.engine import Engine
    from attnas.training.tasks import RetrainTask

    write_json(out / "teacher_config.json", {**cfg, "out": str(out)})
    write_json(out / CONFIG, {**cfg, "resolved_options": to_dict(tcfg)})
    device = resolve_device(cfg["device"])
    task = RetrainTask(net, data, tcfg, epochs, batch, cfg["seed"], device)
    metrics = Engine(out, epochs, cfg["seed"], progress, label="teacher", stop_after=stop_after).run(task)
    result: dict[str, Any] = {"run_dir": str(out), "teacher": cfg["teacher_class"], "stages": stages,
                              "epochs_done": len(metrics), "epochs": epochs,
                              "params": sum(p.numel() for p in net.parameters()),
                              "status": "done" if len(metrics) >= epochs else "stopped"}
    if metrics:
        result["test_acc"] = metrics[-1]["test_acc"]
    if result["status"] == "done":
        opts = dict(cfg["teacher_options"])
        params = _params(cls)
        if "num_classes" in params:
            opts.setdefault("num_classes", data.num_classes)
        if "in_channels" in params:
            opts.setdefault("in_channels", data.in_channels)
        save_teacher(net.cpu(), out / TEACHER_FILE, cfg["teacher_class"], opts, stages)
        result["teacher_checkpoint"] = str(out / TEACHER_FILE)
        write_json(out / RESULT, result)
    return result


def _params(cls: type) -> set[str]:
    import inspect

    return set(inspect.signature(cls).parameters)
