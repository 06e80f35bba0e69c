"""``attnas profile``: FLOPs, multiply-accumulates and parameters of an architecture's network,
per layer and in total (:mod:`attnas.profile`; FLOPs = 2 x MACs, the TrioNet paper's unit).

The architecture is an ``architecture.json``, a native string (``--space`` names its space when
it cannot be guessed) or a run folder (search, train or ``evolve`` output); its stand-alone network
(``space.build_network``) is built with, in this order, the options given here, the run's
recorded ones, or the ones saved with the architecture.  The input is ``--in-channels`` x
``--image-size``^2 with ``--num-classes`` outputs, else the run's dataset, else the space's
nominal input (TrioNet layouts: 224 / 1000 classes for ``imagenet``), else CIFAR's 3 x 32^2, 10.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from attnas.run_dir import ARCHITECTURE, CONFIG
from attnas.cli.common import parse_json_option, table
from attnas.cli.main import add_json_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="FLOPs (2 x MACs), MACs and parameters per layer of an architecture",
                       description="Count the FLOPs (= 2 x multiply-accumulates), multiply-accumulates (MACs) "
                                   "and parameters of an architecture's stand-alone network, per layer and in "
                                   "total, for one image.")
    p.add_argument("--arch", required=True, metavar="FILE_OR_STRING_OR_RUN",
                   help="architecture.json, a native string or a run folder")
    p.add_argument("--space", help="space of a native string (default: guessed from the string)")
    p.add_argument("--space-options", help="JSON object of space options (default: the run's or the "
                                           "architecture's saved ones)")
    p.add_argument("--network-options", help="JSON object for build_network (default: a training run's)")
    p.add_argument("--image-size", type=int, metavar="N", help="input side in pixels")
    p.add_argument("--in-channels", type=int, metavar="C", help="input channels")
    p.add_argument("--num-classes", type=int, metavar="K", help="number of classes")
    p.add_argument("--data-dir", help="data folder (spaces or datasets that read a file)")
    add_json_flag(p)
    p.set_defaults(func=run)


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3f} {unit}"
    return str(n)


def _resolve(args: argparse.Namespace):
    """(architecture, run config dict or {}) of ``--arch``."""
    from attnas.spaces.io import load_architecture
    from attnas.errors import ConfigError
    from attnas.model_export.load import read_json

    spec = str(args.arch)
    path = Path(spec)
    try:
        is_dir = path.is_dir()
    except OSError:
        is_dir = False
    cfg: dict[str, Any] = {}
    if is_dir:
        if (path / CONFIG).is_file():
            cfg = read_json(path / CONFIG)
        if not (path / ARCHITECTURE).is_file():
            raise ConfigError(f"run folder '{path}' has no architecture.json (the search has not finished)")
        return load_architecture(path / ARCHITECTURE, space=args.space), cfg
    return load_architecture(spec, space=args.space), cfg


def run(args: argparse.Namespace) -> dict[str, Any]:
    from attnas.errors import ConfigError
    from attnas.model_export import DEFAULT_DIMS, dataset_dims
    from attnas.profile import FLOPS_UNIT, profile_layers
    from attnas.spaces.registry import get_space

    arch, cfg = _resolve(args)
    meta = arch.meta if isinstance(arch.meta, dict) else {}
    space_options = parse_json_option(args.space_options, "--space-options")
    if space_options is None:
        space_options = cfg.get("space_options") or meta.get("space_options") or {}
    net_options = parse_json_option(args.network_options, "--network-options")
    if net_options is None:
        net_options = cfg.get("network_options") or {}
    data_dir = args.data_dir or cfg.get("data_dir")
    space = get_space(arch.space, data_dir=data_dir, **space_options)
    space.validate(arch)
    given = (args.in_channels, args.image_size, args.num_classes)
    input_from = "given"
    if not all(v is not None for v in given):
        input_from = "given, the rest from " if any(v is not None for v in given) else ""
        dataset = cfg.get("dataset") or meta.get("dataset")
        if dataset:
            found = dataset_dims(str(dataset), data_dir, cfg.get("image_size"),
                                 train_subset=cfg.get("train_subset"), test_subset=cfg.get("test_subset"))
            input_from += f"dataset {dataset}"
        elif callable(getattr(space, "default_input", None)):
            found = space.default_input()
            input_from += "the space's nominal input"
        else:
            found = DEFAULT_DIMS
            input_from += "CIFAR defaults"
        given = tuple(g if g is not None else f for g, f in zip(given, found))
    c, s, k = (int(v) for v in given)
    if min(c, s, k) < 1:
        raise ConfigError(f"--in-channels, --image-size and --num-classes must be positive, got {c}, {s}, {k}")
    space.check_input(c, s)
    try:
        net = space.build_network(arch, k, c, s, **net_options)
    except TypeError as e:
        raise ConfigError(f"bad network option for space '{arch.space}': {e}") from None
    rows, total = profile_layers(net, c, s)
    layer_rows = []
    for r in rows:
        choice = None
        head, _, idx = r.name.partition(".")
        if head == "layers" and idx.isdigit():
            choice = arch.choices.get(f"layer:{idx}")
        layer_rows.append({**r.to_dict(), "choice": choice})
    native = space.to_native(arch)
    print(f"{arch.space} network{' ' + native if native and len(native) <= 120 else ''}: "
          f"{c}x{s}x{s} input ({input_from}), {k} classes; {FLOPS_UNIT}")
    print(table(["layer", "module", "choice", "FLOPs", "MACs", "params"],
                [[r["name"], r["kind"], r["choice"] or "", _human(r["flops"]), _human(r["macs"]),
                  _human(r["params"])] for r in layer_rows]
                + [["total", "", "", _human(total.flops), _human(total.macs), _human(total.params)]]))
    return {"space": arch.space, "architecture": native or arch.choices, "space_options": space_options,
            "input": [c, s, s], "num_classes": k, "unit": FLOPS_UNIT, "layers": layer_rows,
            **total.to_dict()}
