"""The network to export: :func:`load_network` builds the stand-alone network of an
architecture (``space.build_network``) with weights from one of four sources:

* ``inherited`` -- a search run (``attnas search``): its supernet is restored
  from ``checkpoint.pt`` (:func:`attnas.from_run.load_search_run`) and
  the chosen path's weights are copied into the network
  (:mod:`attnas.search.export`).  Cell spaces search with affine-free batch
  norm while their stand-alone networks have affine BN: those BN scales and
  shifts start at the identity (1, 0), which computes the same as the
  affine-free BN; every BN's running statistics are then recomputed on
  training batches of the run's own split (``--bn-images``), since a
  supernet's statistics (or its batch statistics) describe no single path.
  The network is built with the supernet's width and depth (DARTS-like
  spaces: ``C`` and ``layers`` of the search, no auxiliary head).
* ``retrained`` -- a training run (``attnas train``): ``weights.pt`` when the
  run finished, else the network of its last ``checkpoint.pt``; the network
  is built with the run's ``space_options`` and ``network_options``.
* ``file`` -- a state dict (``weights.pt``, ``subnet.pt`` of ``attnas evolve
  --export``) or a training checkpoint given with ``--weights``.
* ``fresh`` -- no weights: the network's own initialisation under ``seed``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from attnas.arch import Architecture
from attnas.errors import AttnasError, ConfigError
from attnas.spaces.io import resolve_architecture
from attnas.run_dir import CHECKPOINT, CONFIG, WEIGHTS

#: (in_channels, image_size, num_classes) of a fresh network when nothing says otherwise
DEFAULT_DIMS = (3, 32, 10)


@dataclass
class LoadedNetwork:
    """A stand-alone network ready to export, and where it came from."""

    network: nn.Module
    arch: Architecture
    weights: str                      # inherited | retrained | file | fresh
    source: str | None                # the run folder or file the weights came from
    in_channels: int
    image_size: int
    num_classes: int
    space_options: dict[str, Any] = field(default_factory=dict)
    network_options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(p.numel() for n, p in self.network.named_parameters() if "auxiliary" not in n)


# ---------------------------------------------------------------------------
# run folders and architectures
def read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read '{path}': {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"'{path}' is not a JSON object")
    return d


def run_kind(run_dir: str | os.PathLike) -> str:
    """``search`` or ``train`` for a run folder (from its ``config.json``); a ConfigError otherwise."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"run folder '{run}' does not exist")
    if not (run / CONFIG).is_file():
        raise ConfigError(f"'{run}' is not a run folder: it has no config.json")
    cfg = read_json(run / CONFIG)
    if "method" in cfg and "space" in cfg:
        return "search"
    if "arch" in cfg:
        return "train"
    raise ConfigError(f"'{run}/config.json' is neither a search nor a training run's config")


def _state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The network state dict in a weights file: a plain state dict, or a training
    checkpoint (``{"task": {"model": ...}}``)."""
    if isinstance(obj, dict) and isinstance(obj.get("task"), dict) and "model" in obj["task"]:
        obj = obj["task"]["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"'{path}' holds no network weights (expected a state dict such as weights.pt, "
                          "or a training run's checkpoint.pt)")
    if any(k.startswith("arch.") for k in obj) and any(k.startswith("net.") for k in obj):
        raise ConfigError(f"'{path}' is a search run's supernet checkpoint: export with --from-run RUN_DIR "
                          "to inherit its weights")
    return obj


def load_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from attnas.training.checkpoint import safe_torch_load

    p = Path(path)
    obj = safe_torch_load(p, "weights file")  # tensors and plain data only: never runs code
    return _state_dict_of(obj, p)


def _load_state(network: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:300]
        raise ConfigError(f"the weights in '{source}' do not fit the network built for this architecture "
                          f"(different space, network options or data dimensions?): {first}") from None


def dataset_dims(dataset: str, data_dir: str | None = None, image_size: int | None = None,
                 **subsets: Any) -> tuple[int, int, int]:
    """``(in_channels, image_size, num_classes)`` of a dataset (loaded, so cached data is reused)."""
    from attnas.data.datasets import load_dataset

    try:
        data = load_dataset(dataset, data_dir, image_size=image_size,
                            **{k: v for k, v in subsets.items() if v is not None})
    except AttnasError as e:
        raise ConfigError(f"cannot load dataset '{dataset}' to learn the network's input size ({e}); "
                          "pass --in-channels, --image-size and --num-classes") from None
    return data.in_channels, data.image_size, data.num_classes


def inherit_from_supernet(space, supernet: nn.Module, arch: Architecture, network: nn.Module) -> list[str]:
    """:func:`attnas.search.export.inherit_path` with a user-facing error: copy ``arch``'s path
    of ``supernet`` into ``network``; returns the BN keys left at identity."""
    from attnas.search.export import inherit_path

    try:
        return inherit_path(space, supernet, arch, network)
    except AttnasError as e:
        raise ConfigError(f"cannot inherit the supernet's weights for space '{arch.space}': {e}; export "
                          "retrained weights with --from-run TRAIN_RUN, or fresh ones with --fresh") from None


# ---------------------------------------------------------------------------
def load_network(arch_spec: str | None = None, *, weights: str | None = None, from_run: str | None = None,
                 fresh: bool = False, space: str | None = None, space_options: dict[str, Any] | None = None,
                 network_options: dict[str, Any] | None = None, in_channels: int | None = None,
                 image_size: int | None = None, num_classes: int | None = None,
                 bn_images: int = 256, seed: int = 0) -> LoadedNetwork:
    """The stand-alone network to export (see the module docstring for the weight sources).

    ``arch_spec`` (file, native string or run folder) may be left out when
    ``from_run`` is given (the run's ``architecture.json``); a run folder given
    as ``arch_spec`` with neither ``weights`` nor ``from_run`` supplies its
    weights too, unless ``fresh``."""
    from attnas.spaces.registry import get_space

    if weights and from_run:
        raise ConfigError("give either --weights CKPT or --from-run RUN_DIR, not both")
    if fresh and (weights or from_run):
        raise ConfigError("--fresh exports the network's initial weights: leave out --weights / --from-run")
    if arch_spec is None and from_run is None:
        raise ConfigError("no architecture given: pass --arch FILE_OR_RUN_DIR (or --from-run RUN_DIR)")
    if arch_spec is not None and from_run is None and weights is None and not fresh:
        try:
            if Path(arch_spec).is_dir():
                if (Path(arch_spec) / "subnet.pt").is_file() and not (Path(arch_spec) / CONFIG).is_file():
                    weights = str(Path(arch_spec) / "subnet.pt")  # an `attnas evolve --export` folder
                else:
                    from_run = arch_spec
        except OSError:
            pass
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"weights file '{weights}' does not exist")
    kind = run_kind(from_run) if from_run is not None else None
    arch = resolve_architecture(arch_spec if arch_spec is not None else str(from_run), space)
    torch.manual_seed(seed)
    notes: list[str] = []
    dims_given = (in_channels, image_size, num_classes)

    if kind == "search":
        from attnas.search.evolution import recalibrate_bn, take_images
        from attnas.search.export import supernet_network_options
        from attnas.from_run import load_search_run

        loaded = load_search_run(from_run, device="cpu")
        if loaded.cfg.space != arch.space:
            raise ConfigError(f"the architecture is of space '{arch.space}' but run '{from_run}' searched "
                              f"'{loaded.cfg.space}'")
        if any(v is not None for v in dims_given):
            want = (loaded.data.in_channels, loaded.data.image_size, loaded.data.num_classes)
            if any(g is not None and g != w for g, w in zip(dims_given, want)):
                raise ConfigError(f"inherited weights fix the input to {want[0]} channels, {want[1]}x{want[1]} "
                                  f"images and {want[2]} classes (the run's data); leave out "
                                  "--in-channels/--image-size/--num-classes")
        # (compared as resolved: the run records the space's resolved defaults beside the user's)
        if space_options is not None and {**loaded.space.recorded_options(), **dict(space_options)} != \
                dict(loaded.cfg.space_options):
            raise ConfigError(f"inherited weights fix the space options to the run's "
                              f"{json.dumps(loaded.cfg.space_options)}; leave out --space-options")
        sp = loaded.space
        sp.validate(arch)
        net_opts = supernet_network_options(sp, network_options)
        try:
            network = sp.build_network(arch, loaded.data.num_classes, loaded.data.in_channels,
                                       loaded.data.image_size, **net_opts)
        except TypeError as e:
            raise ConfigError(f"bad network option for space '{arch.space}': {e}") from None
        identity = inherit_from_supernet(sp, loaded.model, arch, network)
        batches = take_images(loaded.task.weight_batches(0), bn_images)
        n = recalibrate_bn(network, batches) if batches else 0
        if identity:
            notes.append(f"{len(identity)} batch-norm tensors the affine-free supernet lacks start at identity")
        notes.append(f"batch-norm statistics recomputed on {n} training images of the run's split")
        return LoadedNetwork(network.eval(), arch, "inherited", str(from_run), loaded.data.in_channels,
                             loaded.data.image_size, loaded.data.num_classes, dict(loaded.cfg.space_options),
                             net_opts, notes)

    run_cfg: dict[str, Any] = {}
    state = None
    source = None
    if kind == "train":
        run = Path(from_run)
        run_cfg = read_json(run / CONFIG)
        if (run / WEIGHTS).is_file():
            state, source = load_weights_file(run / WEIGHTS), str(run / WEIGHTS)
        elif (run / CHECKPOINT).is_file():
            state, source = load_weights_file(run / CHECKPOINT), str(run / CHECKPOINT)
            notes.append("training not finished: weights of its last checkpoint")
        else:
            raise ConfigError(f"training run '{run}' has no weights yet (neither weights.pt nor checkpoint.pt)")
    elif weights is not None:
        state, source = load_weights_file(weights), str(weights)

    meta = arch.meta if isinstance(arch.meta, dict) else {}
    sp_opts = space_options if space_options is not None else (
        run_cfg.get("space_options") if kind == "train" else meta.get("space_options")) or {}
    net_opts = network_options if network_options is not None else (run_cfg.get("network_options") or {})
    sp = get_space(arch.space, data_dir=run_cfg.get("data_dir"), **sp_opts)
    sp.validate(arch)
    if all(v is not None for v in dims_given):
        dims = dims_given
    else:
        dataset = run_cfg.get("dataset") or meta.get("dataset")
        if dataset:
            found = dataset_dims(str(dataset), run_cfg.get("data_dir"), run_cfg.get("image_size"),
                                 train_subset=run_cfg.get("train_subset"), test_subset=run_cfg.get("test_subset"))
        else:
            found = DEFAULT_DIMS
            notes.append("input size not recorded: CIFAR-10 defaults (3 channels, 32x32, 10 classes)")
        dims = tuple(g if g is not None else f for g, f in zip(dims_given, found))
    c, s, k = (int(v) for v in dims)
    if min(c, s, k) < 1:
        raise ConfigError(f"in_channels, image_size and num_classes must be positive, got {c}, {s}, {k}")
    try:
        network = sp.build_network(arch, k, c, s, **net_opts)
    except TypeError as e:
        raise ConfigError(f"bad network option for space '{arch.space}': {e}") from None
    if state is not None:
        _load_state(network, state, source)
    label = "retrained" if kind == "train" else "file" if state is not None else "fresh"
    if label == "fresh":
        notes.append(f"fresh weights (the network's initialisation, seed {seed})")
    return LoadedNetwork(network.eval(), arch, label, source or (str(from_run) if from_run else None),
                         c, s, k, dict(sp_opts), dict(net_opts), notes)
