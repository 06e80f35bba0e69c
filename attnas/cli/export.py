"""``attnas export``: a derived network as TorchScript or ONNX, checked against PyTorch.

``attnas export --arch FILE_OR_RUN_DIR [--weights CKPT | --from-run RUN_DIR | --fresh]
--format torchscript|onnx -o FILE``

Weights: a search run (``--from-run SEARCH_RUN``: inherited from its supernet,
BN statistics recomputed), a training run (``--from-run TRAIN_RUN``: the
retrained network), a state-dict file (``--weights``), or fresh
(initialisation; the default for an architecture file or string).  A run
folder given as ``--arch`` supplies its own weights unless ``--fresh``.
The written model is run against the PyTorch network on the same random
inputs (batch sizes 2 and 3) and the command fails when the max abs
difference exceeds ``--tolerance``.  See :mod:`attnas.model_export`.
"""
from __future__ import annotations

import argparse
from typing import Any

from attnas.cli.common import parse_json_option, table
from attnas.cli.main import add_json_flag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a derived network (inherited, retrained or fresh weights) to TorchScript or ONNX",
        description="Export the stand-alone network of an architecture to TorchScript or ONNX and check "
                    "the exported model against PyTorch on the same input.")
    p.add_argument("--arch", help="architecture.json, native string, or a run folder (search or train)")
    p.add_argument("--weights", metavar="CKPT", help="state dict (weights.pt, subnet.pt) or a training checkpoint")
    p.add_argument("--from-run", metavar="RUN_DIR",
                   help="search run (weights inherited from its supernet) or training run (retrained weights)")
    p.add_argument("--fresh", action="store_true", help="export the network's initial weights")
    p.add_argument("--format", required=True, help="torchscript or onnx")
    p.add_argument("-o", "--output", required=True, help="file to write (.pt for TorchScript, .onnx)")
    p.add_argument("--space", help="space of a native string when it cannot be guessed")
    p.add_argument("--space-options", help="JSON object of space options (default: the run's)")
    p.add_argument("--network-options", help="JSON object of network options (default: the run's)")
    p.add_argument("--image-size", type=int, help="input image side (default: the run's data)")
    p.add_argument("--in-channels", type=int, help="input channels (default: the run's data)")
    p.add_argument("--num-classes", type=int, help="classes (default: the run's data)")
    p.add_argument("--batch-size", type=int,
                   help="export for this one batch size (default: any batch size, checked on 2 and 3); "
                        "needed by networks that fold the batch into a shape, e.g. NOS' dynamic kernels")
    p.add_argument("--bn-images", type=int, default=256,
                   help="inherited weights: training images to recompute BN statistics on (default 256)")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest allowed |exported - PyTorch| relative to max(1, max |logit|) (default 1e-4)")
    p.add_argument("--onnx-exporter", default="torchscript",
                   help="torchscript (default, torch.onnx legacy exporter) or dynamo (needs onnxscript; slow)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (torchscript ONNX exporter)")
    p.add_argument("--seed", type=int, default=0, help="seed of fresh weights and of the check's inputs")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from attnas.errors import ConfigError
    from attnas.model_export import FORMATS, export_network, load_network, require_onnx

    fmt = str(args.format).lower()
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{args.format}'; expected one of {list(FORMATS)}")
    if fmt == "onnx":  # fail before any model is built
        require_onnx(args.onnx_exporter)
    loaded = load_network(
        args.arch, weights=args.weights, from_run=args.from_run, fresh=args.fresh, space=args.space,
        space_options=parse_json_option(args.space_options, "--space-options"),
        network_options=parse_json_option(args.network_options, "--network-options"),
        in_channels=args.in_channels, image_size=args.image_size, num_classes=args.num_classes,
        bn_images=args.bn_images, seed=args.seed)
    res = export_network(loaded.network, loaded.in_channels, loaded.image_size, args.output, fmt,
                         tolerance=args.tolerance, batch_size=args.batch_size, seed=args.seed, exporter=args.onnx_exporter,
                         opset=args.opset, label=loaded.arch.space)
    result: dict[str, Any] = {**res.to_dict(), "space": loaded.arch.space, "weights": loaded.weights,
                              "weights_source": loaded.source, "params": loaded.params,
                              "in_channels": loaded.in_channels, "image_size": loaded.image_size,
                              "num_classes": loaded.num_classes, "space_options": loaded.space_options,
                              "network_options": loaded.network_options, "notes": loaded.notes}
    rows = [["output", str(res.path)], ["format", fmt + (f" ({res.exporter} exporter)" if res.exporter else "")],
            ["space", loaded.arch.space], ["weights", loaded.weights + (f" ({loaded.source})" if loaded.source else "")],
            ["parameters", loaded.params],
            ["input", f"{'N' if args.batch_size is None else args.batch_size} x {loaded.in_channels} x "
                      f"{loaded.image_size} x {loaded.image_size}"
                      + (" (N: any batch size)" if args.batch_size is None else " (fixed batch size)")],
            ["classes", loaded.num_classes],
            ["max abs diff", f"{res.max_abs_diff:.3g} (tolerance {res.tolerance:g}, batch sizes "
                             f"{list(res.batch_sizes)})"]]
    rows += [["note", n] for n in loaded.notes]
    if res.stochastic:
        rows.append(["note", "stochastic network (random operations): compared with the same RNG seed"])
    print(table(["", ""], rows))
    return result
