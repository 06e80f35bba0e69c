"""The Python API: what the CLI calls, usable directly.

>>> from attnas.api import search, train
>>> result = search(SearchConfig(space="nb201", method="darts", dataset="digits", epochs=2, out="runs/x"))
>>> train(TrainConfig(arch="runs/x/architecture.json", epochs=1, out="runs/x-train"))

Launched by ``torchrun`` (``WORLD_SIZE`` > 1), :func:`search` and :func:`train`
join the process group and train data-parallel (:mod:`attnas.distributed`);
only rank 0 writes the run folder and returns the full result (the other ranks
return ``{"rank": r, ...}`` without the derived architecture).

Run folders (:mod:`attnas.run_dir`): a new run refuses a non-empty ``out`` unless
``force`` (which replaces an earlier run's files); a run holds an exclusive lock on its
folder while it runs (rank 0 under torchrun); ``resume_*(RUN_DIR)`` writes into RUN_DIR,
whatever ``out`` its ``config.json`` recorded and whatever the working directory.

On a CPU device, both run with :mod:`attnas.ops.cpu_pool` as PyTorch's allocator (large tensors'
pages kept for reuse; ``ATTNAS_CPU_POOL=0`` turns it off); it is uninstalled when they return.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any


from attnas.run_dir import ARCHITECTURE, CHECKPOINT, CONFIG, RESULT, SCORES, WEIGHTS
from attnas.spaces.io import is_dir, load_architecture, resolve_architecture, save_architecture
from attnas.config import SearchConfig, TrainConfig, check_config, check_stop_after
from attnas.data.datasets import ImageData, dataset_family, load_dataset
from attnas.data.augment import effective_cutout
from attnas.data.paths import absolute_data_dir, absolute_dataset, check_data_dir
from attnas.errors import AttnasError, ConfigError, RunFolderError
from attnas.model_export.initial import initial_weights, load_initial_weights
from attnas.ops import cpu_pool
from attnas.presets import override, recipe_for_method, retrain_recipe, to_dict
from attnas.spaces.registry import get_space
from attnas.strategies.base import get_strategy
from attnas import distributed
from attnas.distributed import resolve_device
from attnas.benchmarks.registry import benchmark_for
from attnas.training.checkpoint import atomic_torch_save, write_json
from attnas.training.engine import TENSORBOARD, Engine, seed_everything
from attnas.run_dir import check_new_run_dir, is_free, open_run_dir, read_run_config
from attnas.training.schedules import check_retrain_schedule
from attnas.training.tasks import RetrainTask, SearchTask


def _default_out(prefix: str) -> Path:
    base = Path("runs") / prefix
    out, n = base, 1
    while not is_free(out):
        n += 1
        out = Path(f"{base}-{n}")
    return out


def _fresh_out(out: str | None, prefix: str, force: bool = False) -> Path:
    """The folder of a new run: ``out`` if free (or ``force``), else a RunFolderError; default
    ``runs/PREFIX[-n]``, the first free one.  Decided on rank 0 and broadcast."""
    p, error = None, None
    if distributed.is_main():
        try:
            p = _default_out(prefix) if out is None else Path(out)
            check_new_run_dir(p, force)
        except RunFolderError as e:
            error = str(e)
    p, error = distributed.broadcast_object((p, error))
    if error is not None:
        raise RunFolderError(error)
    return p


def _load_data(cfg) -> ImageData:
    return load_dataset(cfg.dataset, cfg.data_dir, train_subset=cfg.train_subset,
                        test_subset=cfg.test_subset, seed=cfg.seed, image_size=cfg.image_size)


def search(cfg: SearchConfig, resume: bool = False, progress: bool = True,
           stop_after: int | None = None, tensorboard: bool = False, force: bool = False) -> dict[str, Any]:
    """Run (or resume) an architecture search; write the run folder; return the result.
    ``tensorboard``: also log every epoch's scalars to ``RUN_DIR/tensorboard``; ``force``: a new
    run may write into a non-empty ``cfg.out`` (an earlier run's files there are replaced).
    Every input is checked (:func:`attnas.config.check_config`, the space's and the method's
    options, the data, the batch size against the data) before anything is written."""
    check_config(cfg)
    check_stop_after(stop_after)
    check_data_dir(cfg.data_dir)
    if not resume:  # a relative folder would be read against the working directory of a resume
        cfg.data_dir, cfg.dataset = absolute_data_dir(cfg.data_dir), absolute_dataset(cfg.dataset)
        teacher = (cfg.method_options or {}).get("teacher_checkpoint")
        if isinstance(teacher, str) and teacher and Path(teacher).expanduser().exists():
            cfg.method_options = {**cfg.method_options,
                                  "teacher_checkpoint": str(Path(teacher).expanduser().absolute())}
    space = get_space(cfg.space, data_dir=cfg.data_dir, **cfg.space_options)
    if not resume:  # the space's resolved defaults, so that the run reopens as this space
        cfg.space_options = {**space.recorded_options(), **(cfg.space_options or {})}
    strategy = get_strategy(cfg.method, space, cfg.method_options)
    preset = strategy.cfg
    cfg.epochs = cfg.epochs if cfg.epochs is not None else preset.epochs
    cfg.batch_size = cfg.batch_size if cfg.batch_size is not None else preset.batch_size
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ConfigError(f"epochs and batch size must be positive, got {cfg.epochs} and {cfg.batch_size}")
    device = distributed.init(resolve_device(cfg.device))
    out = Path(cfg.out) if resume else _fresh_out(cfg.out, f"search-{cfg.space}-{cfg.method}-{cfg.dataset}-s{cfg.seed}",
                                                  force)
    cfg.out = str(out)
    data = _load_data(cfg)
    space.check_input(data.in_channels, data.image_size)
    _check_search_batch(strategy, data, cfg.batch_size, cfg.epochs)
    seed_everything(cfg.seed)
    strategy.seed(cfg.seed)
    strategy.log = _stderr_log if progress and distributed.is_main() else None  # selection progress
    model = strategy.build(data.num_classes, data.in_channels, data.image_size)
    lock = open_run_dir(out, fresh=not resume, force=force)
    try:
        with cpu_pool.active(device):
            return _search_locked(cfg, resume, progress, stop_after, tensorboard, space, strategy, data, model,
                                  device, out)
    finally:
        if lock is not None:
            lock.release()


def _stderr_log(message: str) -> None:
    """Progress of a long phase (evolution, ...): one line on stderr."""
    print(message, file=sys.stderr, flush=True)


def _check_search_batch(strategy, data: ImageData, batch_size: int, epochs: int) -> None:
    """The search splits the training images in two (``train_portion``) and drops partial
    batches: the weight split, and the architecture split when a phase reads it, must each
    hold one batch; the validation split (the architecture split) at least one image
    (checked before the run folder is written)."""
    from attnas.data.loader import split_indices

    n = len(data.train_y)
    portion = getattr(strategy.cfg, "train_portion", 0.5)
    if isinstance(portion, bool) or not isinstance(portion, (int, float)) or not 0.0 < portion < 1.0:
        raise ConfigError(f"option 'train_portion' must be a number between 0 and 1, got {portion!r}")
    idx_w, idx_a = split_indices(n, portion, 0)
    sizes = {"weights": len(idx_w), "arch": len(idx_a)}
    for split in SearchTask.splits_read(strategy, epochs):
        if batch_size > sizes[split]:
            what = "weight" if split == "weights" else "architecture"
            raise ConfigError(f"batch size {batch_size} is larger than the {sizes[split]} images of the {what} "
                              f"split of the {n} training images (train_portion {portion}); "
                              f"use --batch-size {max(1, sizes[split])} or less")
    if not idx_a.numel():
        raise ConfigError(f"train_portion {portion} leaves no validation images of the {n} training images")


def _search_locked(cfg, resume, progress, stop_after, tensorboard, space, strategy, data, model, device,
                   out) -> dict[str, Any]:
    """The rest of :func:`search`, run while the run folder is locked."""
    preset = strategy.cfg
    if distributed.is_main():
        # the preset as this run uses it: the run's own epochs and batch size, not the preset's
        write_json(out / CONFIG, {**asdict(cfg), "resolved_method_options": {
            **to_dict(preset), "epochs": cfg.epochs, "batch_size": cfg.batch_size}})
    bench = benchmark_for(cfg.space, cfg.data_dir)

    def on_epoch(epoch: int, task: SearchTask) -> dict[str, Any]:
        rec: dict[str, Any] = {"scores": strategy.scores(task.model)}
        if strategy.derives_after_epoch(epoch):
            arch = strategy.derive(task.model)
            rec["arch"] = space.to_native(arch) or arch.choices
            if bench is not None:
                rec.update(bench(arch))
        return rec

    task = SearchTask(strategy, model, data, cfg.epochs, cfg.batch_size, cfg.seed, device, on_epoch,
                      amp=bool(getattr(cfg, "amp", False)))
    engine = Engine(out, cfg.epochs, cfg.seed, progress, label="search", stop_after=stop_after,
                    tensorboard=tensorboard, kind="search", checkpoint_every=cfg.checkpoint_every)
    t0 = time.time()
    metrics = engine.run(task)
    distributed.debug_dump("search", task.model, {"strategy": strategy.state_dict()})
    result: dict[str, Any] = {"run_dir": str(out), "space": cfg.space, "method": cfg.method,
                              "epochs_done": len(metrics), "epochs": cfg.epochs, **task.accel.describe()}
    if len(metrics) < cfg.epochs:
        result["status"] = "stopped"
        return result
    # every process derives (an evolutionary selection splits its candidates over them); rank 0 writes
    t_select = time.time()
    arch = strategy.derive(task.model, context=task.validation_batches())
    select_s = time.time() - t_select  # e.g. the evolution of spos / fairnas / trionet
    if not distributed.is_main():
        distributed.barrier()
        return {**result, "status": "done", "rank": distributed.rank()}
    arch.meta.update({"seed": cfg.seed, "dataset": cfg.dataset, "space_options": cfg.space_options})
    save_architecture(arch, out / ARCHITECTURE)
    scores = strategy.scores(task.model)
    margins = arch.meta.get("margins")  # IT-NAS: winner vs runner-up with a bootstrap noise estimate
    write_json(out / SCORES, {"candidates": {p.key: list(p.candidates) for p in strategy.points},
                                     "scores": scores, "label": strategy.scores_label,
                                     **({"margins": margins} if margins else {})})
    result.update({"status": "done", "architecture": space.to_native(arch) or arch.choices,
                   "valid_acc": metrics[-1].get("valid_acc"),
                   # every phase: the supernet epochs (of all invocations) and the selection after them
                   "search_time_s": round(sum(m.get("epoch_time_s", 0) for m in metrics) + select_s, 2),
                   "selection_time_s": round(select_s, 2),
                   "this_run_time_s": round(time.time() - t0, 2)})
    if bench is not None:
        result["benchmark"] = bench(arch)
    result["scores"] = scores
    if margins:
        result["margins"] = margins
        result["not_separated"] = sorted(k for k, m in margins.items() if not m["separated"])
    write_json(out / RESULT, result)
    distributed.barrier()
    return result


def resume_search(run_dir: str | Path, progress: bool = True, stop_after: int | None = None,
                  tensorboard: bool = False, checkpoint_every: int | None = None) -> dict[str, Any]:
    """Continue a search run (TensorBoard logging goes on if the run logged to it)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise RunFolderError(f"'{run_dir}' is not a search run folder (no config.json)")
    cfg = SearchConfig(**read_run_config(run_dir, "search", resume=True))
    cfg.out = str(run_dir)  # RUN_DIR is the run, wherever it was moved or resumed from
    if checkpoint_every is not None:  # how often to checkpoint does not change the run's results
        cfg.checkpoint_every = checkpoint_every
    tensorboard = tensorboard or (run_dir / TENSORBOARD).is_dir()
    return search(cfg, resume=True, progress=progress, stop_after=stop_after, tensorboard=tensorboard)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True,
          stop_after: int | None = None, tensorboard: bool = False, force: bool = False) -> dict[str, Any]:
    """Retrain an architecture (from scratch, or from ``cfg.init_from``'s weights); report test
    accuracy.  The recipe is ``cfg.recipe``, else the one of the method that found the
    architecture (:func:`attnas.presets.recipe_for_method`).
    ``tensorboard``: also log every epoch's scalars to ``RUN_DIR/tensorboard``; ``force``: a new
    run may write into a non-empty ``cfg.out`` (an earlier run's files there are replaced)."""
    check_config(cfg)
    check_stop_after(stop_after)
    if not cfg.arch and cfg.init_from and is_dir(Path(cfg.init_from)):
        cfg.arch = cfg.init_from  # fine-tune a run's own architecture
    if not cfg.arch:
        raise ConfigError("no architecture given: pass --arch FILE (an architecture.json), a run folder "
                          "or a native string")
    check_data_dir(cfg.data_dir)
    if not resume:  # a relative folder would be read against the working directory of a resume
        cfg.data_dir, cfg.dataset = absolute_data_dir(cfg.data_dir), absolute_dataset(cfg.dataset)
        if cfg.init_from is not None:  # read again by a resume that finds no checkpoint
            cfg.init_from = str(Path(cfg.init_from).absolute())
    arch = (resolve_architecture(cfg.arch, validate=False) if is_dir(Path(cfg.arch))  # a run folder
            else load_architecture(cfg.arch))
    cfg.recipe = cfg.recipe or recipe_for_method(arch.meta.get("method"), fine_tune=cfg.init_from is not None,
                                                 family=dataset_family(cfg.dataset))
    rcfg = override(retrain_recipe(cfg.recipe), cfg.options)
    check_retrain_schedule(rcfg)
    init = None
    # a resumed run's checkpoint holds its weights; one killed before its first checkpoint starts
    # again from the initial weights
    if cfg.init_from is not None and not (resume and (Path(cfg.out) / CHECKPOINT).is_file()):
        init = initial_weights(cfg.init_from, cfg.arch, cfg.space_options or None, cfg.network_options or None)
        cfg.space_options = init.space_options if init.space_options is not None else cfg.space_options
        cfg.network_options = init.network_options if init.network_options is not None else cfg.network_options
    space = get_space(arch.space, data_dir=cfg.data_dir, **cfg.space_options)
    searched = arch.meta.get("space_options") or {}
    if not cfg.space_options and searched:
        try:
            space.validate(arch)
        except AttnasError:  # e.g. a chain searched with other depths: the search's own space options
            cfg.space_options = dict(searched) if isinstance(searched, dict) else searched
            try:
                space = get_space(arch.space, data_dir=cfg.data_dir, **cfg.space_options)
            except (ConfigError, TypeError) as e:
                raise ConfigError(f"{e} (the space_options recorded in the architecture's meta; "
                                  "pass --space-options to override them)") from None
    space.validate(arch)
    cfg.epochs = cfg.epochs if cfg.epochs is not None else rcfg.epochs
    cfg.batch_size = cfg.batch_size if cfg.batch_size is not None else rcfg.batch_size
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ConfigError(f"epochs and batch size must be positive, got {cfg.epochs} and {cfg.batch_size}")
    device = distributed.init(resolve_device(cfg.device))
    out = Path(cfg.out) if resume else _fresh_out(cfg.out, f"train-{arch.space}-{cfg.dataset}-s{cfg.seed}", force)
    cfg.out = str(out)
    data = _load_data(cfg)
    space.check_input(data.in_channels, data.image_size)
    # augmentation sizes follow the image size (attnas.data.augment); an explicit cutout that
    # would erase the whole image is refused
    rcfg = replace(rcfg, cutout=effective_cutout(rcfg.cutout, data.image_size, explicit="cutout" in cfg.options))
    seed_everything(cfg.seed)
    try:
        net = space.build_network(arch, data.num_classes, data.in_channels, data.image_size,
                                  **cfg.network_options)
    except (TypeError, ValueError) as e:
        if not cfg.network_options:
            raise
        raise ConfigError(f"bad --network-options {cfg.network_options} for space '{arch.space}': "
                          f"{' '.join(str(e).split())}") from None
    if init is not None:
        load_initial_weights(net, init)
    lock = open_run_dir(out, fresh=not resume, force=force)
    try:
        with cpu_pool.active(device):
            return _train_locked(cfg, arch, rcfg, progress, stop_after, tensorboard, net, data, device, out, init)
    finally:
        if lock is not None:
            lock.release()


def _train_locked(cfg, arch, rcfg, progress, stop_after, tensorboard, net, data, device, out,
                  init=None) -> dict[str, Any]:
    """The rest of :func:`train`, run while the run folder is locked."""
    if distributed.is_main():
        resolved = {**to_dict(rcfg), "epochs": cfg.epochs, "batch_size": cfg.batch_size}
        if init is not None:
            resolved["init"] = init.describe()
        elif cfg.init_from is not None:  # resumed: what the run recorded when it started
            resolved["init"] = json.loads((out / CONFIG).read_text()).get("resolved_options", {}).get("init")
        write_json(out / CONFIG, {**asdict(cfg), "resolved_options": resolved})
        save_architecture(arch, out / ARCHITECTURE)
    task = RetrainTask(net, data, rcfg, cfg.epochs, cfg.batch_size, cfg.seed, device,
                       amp=cfg.amp, compile_backend=cfg.compile)
    metrics = Engine(out, cfg.epochs, cfg.seed, progress, label="train", stop_after=stop_after,
                     tensorboard=tensorboard, kind="train", checkpoint_every=cfg.checkpoint_every).run(task)
    distributed.debug_dump("train", net)
    n_params = sum(p.numel() for n, p in net.named_parameters() if "auxiliary" not in n)
    result = {"run_dir": str(out), "space": arch.space, "epochs_done": len(metrics), "epochs": cfg.epochs,
              "recipe": cfg.recipe, "params": n_params, **task.accel.describe(),
              "status": "done" if len(metrics) >= cfg.epochs else "stopped"}
    if metrics:
        result.update({"test_acc": metrics[-1]["test_acc"],
                       "best_test_acc": max(m["test_acc"] for m in metrics)})
    if not distributed.is_main():
        result["rank"] = distributed.rank()
    elif result["status"] == "done":
        atomic_torch_save(net.state_dict(), out / WEIGHTS)
        write_json(out / RESULT, result)
    distributed.barrier()
    return result


def resume_train(run_dir: str | Path, progress: bool = True, stop_after: int | None = None,
                 tensorboard: bool = False, checkpoint_every: int | None = None) -> dict[str, Any]:
    """Continue a training run (TensorBoard logging goes on if the run logged to it)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise RunFolderError(f"'{run_dir}' is not a training run folder (no config.json)")
    data = read_run_config(run_dir, "train", resume=True)
    data.setdefault("recipe", "darts")  # a run recorded before the per-method recipes trained with DARTS's
    data["arch"] = str(run_dir / ARCHITECTURE)
    data["out"] = str(run_dir)  # RUN_DIR is the run, wherever it was moved or resumed from
    if checkpoint_every is not None:  # how often to checkpoint does not change the run's results
        data["checkpoint_every"] = checkpoint_every
    tensorboard = tensorboard or (run_dir / TENSORBOARD).is_dir()
    return train(TrainConfig(**data), resume=True, progress=progress, stop_after=stop_after,
                 tensorboard=tensorboard)
