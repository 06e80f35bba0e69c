"""Re-open a finished (or stopped) one-shot search run and select / export on its supernet.

``attnas evolve RUN_DIR`` (:mod:`attnas.cli.evolve`) calls :func:`evolve_run`:
the run's config, data split and supernet checkpoint are restored exactly
(:class:`attnas.training.tasks.SearchTask`), then the SPOS evolutionary search
runs with training batches of the weight split for BN recalibration and the
validation split for scoring (:class:`SelectionContext`), under the budgets and
evolution options given, and writes into ``OUT`` (default ``RUN_DIR/evolve``):

* ``architecture.json`` -- the best architecture (meta: supernet accuracy,
  ``flops`` (2 x MACs), ``macs``, ``params``, budgets);
* ``evolution.json`` -- per-generation statistics, the top-k with scores, and
  the benchmark look-up when the space has one (NAS-Bench-Macro);
* ``evaluations.jsonl`` -- every evaluated architecture and score, appended as
  they come: a killed evolution rerun with the same options replays the same
  draws (the RNG is seeded the same) and skips what is already scored;
* ``subnet.pt`` (``export=True``) -- the stand-alone network's state dict with
  the inherited weights and BN statistics recomputed on the training batches;
  load it into ``space.build_network(arch, ...)``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnas.run_dir import ARCHITECTURE, CONFIG, EVOLUTION
from attnas.benchmarks.registry import benchmark_for
from attnas.arch import Architecture
from attnas.spaces.io import architecture_from_dict, save_architecture
from attnas.config import SearchConfig
from attnas.data.datasets import ImageData, load_dataset
from attnas.errors import ConfigError
from attnas.jsonio import dumps as json_dumps
from attnas.search.evolution import SelectionContext, take_images
from attnas.search.export import export_subnet
from attnas.spaces.base import SearchSpace
from attnas.spaces.registry import get_space
from attnas.strategies.base import Strategy, SuperNet, get_strategy
from attnas import distributed
from attnas.training.checkpoint import (atomic_torch_save, load_checkpoint, restore_task, safe_torch_load,
                                        write_json)
from attnas.training.engine import CHECKPOINT, seed_everything
from attnas.run_dir import open_run_dir, read_run_config
from attnas.training.tasks import SearchTask

EVALUATIONS = "evaluations.jsonl"


@dataclass
class LoadedRun:
    """A search run restored from its folder."""

    cfg: SearchConfig
    space: SearchSpace
    strategy: Strategy
    model: SuperNet
    task: SearchTask
    data: ImageData
    epochs_done: int


def load_search_run(run_dir: str | Path, method_options: dict[str, Any] | None = None,
                    device: str | None = None) -> LoadedRun:
    """Rebuild a run's space, strategy, data split and supernet; load its last checkpoint.
    ``method_options`` override the run's own (e.g. evolution options, budgets; a FLOPs or MACs
    budget given replaces both of the run's)."""
    from attnas.distributed import resolve_device

    run = Path(run_dir)
    if not (run / CONFIG).is_file():
        raise ConfigError(f"'{run}' is not a search run folder (no config.json)")
    cfg = SearchConfig(**read_run_config(run, "search"))
    if not (run / CHECKPOINT).is_file():
        raise ConfigError(f"'{run}' has no {CHECKPOINT}: the search has not finished an epoch yet")
    # read (safely: tensors and plain data only) and checked before anything is built
    state = load_checkpoint(run / CHECKPOINT, "search")
    own = dict(cfg.method_options or {})
    given = dict(method_options or {})
    if "flops_budget" in given or "macs_budget" in given:  # a new compute budget replaces the run's
        own.pop("flops_budget", None)
        own.pop("macs_budget", None)
    cfg.method_options = {**own, **given}
    if device is not None:
        cfg.device = device
    space = get_space(cfg.space, data_dir=cfg.data_dir, **cfg.space_options)
    strategy = get_strategy(cfg.method, space, cfg.method_options)
    images = load_dataset(cfg.dataset, cfg.data_dir, train_subset=cfg.train_subset,
                          test_subset=cfg.test_subset, seed=cfg.seed, image_size=cfg.image_size)
    seed_everything(cfg.seed)
    strategy.seed(cfg.seed)
    model = strategy.build(images.num_classes, images.in_channels, images.image_size)
    # under torchrun every process joins the group here (a no-op otherwise), as api.search does
    task = SearchTask(strategy, model, images, cfg.epochs, cfg.batch_size, cfg.seed,
                      distributed.init(resolve_device(cfg.device)))
    restore_task(task, state["task"], run / CHECKPOINT, f"the run's {CONFIG}")
    return LoadedRun(cfg, space, strategy, task.model, task, images, int(state["epoch"]) + 1)


def selection_context(task: SearchTask) -> SelectionContext:
    """Validation batches of the run's split for scoring; weight-split training batches
    (with the search's augmentation, epoch 0's fixed order) for BN recalibration."""
    return SelectionContext(validation=task.validation_batches(),
                            train=task.weight_batches(0))


class EvaluationLog:
    """Scores of evaluated architectures, appended to a JSON-lines file as they come.

    The first line is a ``fingerprint`` of what the scores depend on (run, supernet
    epoch, BN and evaluation images); a file with another fingerprint is started afresh.
    A line cut by a kill is ignored."""

    def __init__(self, path: str | Path, fingerprint: dict[str, Any], space: SearchSpace) -> None:
        self.path, self.space = Path(path), space
        self.scores: dict[Architecture, float] = {}
        lines = self.path.read_text().splitlines() if self.path.is_file() else []
        header = None
        if lines:
            try:
                header = json.loads(lines[0]).get("fingerprint")
            except json.JSONDecodeError:
                header = None
        if header != fingerprint:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json_dumps({"fingerprint": fingerprint}) + "\n")
            return
        for ln in lines[1:]:
            try:
                rec = json.loads(ln)
                self.scores[Architecture(space.name, dict(rec["choices"]))] = float(rec["score"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue

    def append(self, arch: Architecture, score: float) -> None:
        self.scores[arch] = score
        with open(self.path, "a") as f:
            f.write(json_dumps({"choices": arch.choices, "native": self.space.to_native(arch),
                                "score": score}) + "\n")


def evolve_run(run_dir: str | Path, out: str | Path | None = None,
               method_options: dict[str, Any] | None = None, seed: int | None = None,
               export: bool = False, progress: bool = True, device: str | None = None) -> dict[str, Any]:
    """Evolutionary search on the supernet of ``run_dir`` (module docstring); returns the result.

    ``seed`` reseeds the evolution's RNG (default: the run's RNG state at its checkpoint,
    i.e. what ``attnas search`` itself would draw)."""
    run = load_search_run(run_dir, method_options, device)
    strategy = run.strategy
    if not hasattr(strategy, "evolve"):
        raise ConfigError(f"'{run_dir}' was searched with '{run.cfg.method}', which has no evolutionary "
                          "selection; evolve runs of spos or fairnas")
    if seed is not None:
        strategy.seed(seed)
    out_dir = Path(out) if out is not None else Path(run_dir) / "evolve"
    main = distributed.is_main()  # torchrun: candidates are scored by all processes, rank 0 writes
    cfg = strategy.cfg
    fingerprint = {"run_dir": str(Path(run_dir).resolve()), "epochs_done": run.epochs_done,
                   "bn_images": cfg.bn_images, "eval_images": cfg.eval_images}
    lock = open_run_dir(out_dir, fresh=False)  # rank 0 writes OUT and keeps other processes out of it
    try:
        return _evolve_locked(run, run_dir, out_dir, seed, export, progress, main, fingerprint)
    finally:
        if lock is not None:
            lock.release()


def _evolve_locked(run: LoadedRun, run_dir, out_dir: Path, seed, export: bool, progress: bool, main: bool,
                   fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The rest of :func:`evolve_run`, run while OUT is locked (rank 0)."""
    strategy, cfg = run.strategy, run.strategy.cfg
    cache = EvaluationLog(out_dir / EVALUATIONS, fingerprint, run.space) if main else None
    evaluated = distributed.broadcast_object(dict(cache.scores) if cache is not None else None)

    log = (lambda msg: print(msg, file=sys.stderr)) if progress and main else None
    best, result = strategy.evolve(run.model, selection_context(run.task), evaluated=evaluated,
                                   on_evaluate=cache.append if cache is not None else None, log=log)
    best.meta.update({"seed": run.cfg.seed, "evolution_seed": seed, "dataset": run.cfg.dataset,
                      "space_options": run.cfg.space_options, "supernet_epochs": run.epochs_done})
    if main:
        save_architecture(best, out_dir / ARCHITECTURE)
    native = run.space.to_native(best)
    summary: dict[str, Any] = {
        "run_dir": str(run_dir), "out": str(out_dir), "space": run.cfg.space, "method": run.cfg.method,
        "architecture": native or best.choices, "supernet_val_acc": result.best_score,
        "flops": best.meta["flops"], "macs": best.meta["macs"], "params": best.meta["params"],
        "flops_budget": cfg.flops_budget, "macs_budget": cfg.macs_budget, "params_budget": cfg.params_budget,
        "evaluated": len(result.evaluated), "replayed": sum(1 for a in result.evaluated if a in evaluated),
        "processes": distributed.world_size(), "evaluated_per_process": result.evaluated_per_process,
        "history": result.history,
        "top": [{"architecture": run.space.to_native(a) or a.choices, "score": s} for a, s in result.top]}
    lookup = benchmark_for(run.cfg.space, run.cfg.data_dir)
    bench = lookup(best) if lookup is not None else None
    if bench is not None:
        summary["benchmark"] = bench
    if not main:
        distributed.barrier()
        return summary
    if export:
        net = export_subnet(run.space, run.model, best, run.data.num_classes, run.data.in_channels,
                            run.data.image_size,
                            bn_batches=take_images(run.task.weight_batches(0),
                                                  cfg.bn_images))
        atomic_torch_save(net.state_dict(), out_dir / "subnet.pt")
        summary["subnet"] = str(out_dir / "subnet.pt")
    write_json(out_dir / EVOLUTION, summary)
    distributed.barrier()
    return summary


def load_subnet(out_dir: str | Path, num_classes: int, in_channels: int, image_size: int,
                space_options: dict[str, Any] | None = None) -> torch.nn.Module:
    """The exported stand-alone network of an ``evolve`` output folder, weights loaded."""
    out = Path(out_dir)
    arch = architecture_from_dict(json.loads((out / ARCHITECTURE).read_text()))
    opts = space_options if space_options is not None else arch.meta.get("space_options", {})
    space = get_space(arch.space, **opts)
    net = space.build_network(arch, num_classes, in_channels, image_size)
    net.load_state_dict(safe_torch_load(out / "subnet.pt", "subnet weights"))
    return net.eval()
