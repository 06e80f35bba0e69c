"""Export a derived network: :func:`export_network` writes the model (:mod:`attnas.model_export.write`)
and checks the written file against PyTorch on the same random inputs
(:mod:`attnas.model_export.verify`: two batch sizes, the batch dimension is dynamic, the image
size is fixed to the one exported), raising :class:`attnas.errors.AttnasError` when the largest
absolute difference exceeds the tolerance."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from attnas.errors import AttnasError, ConfigError
from attnas.model_export.verify import compare, is_stochastic, run_seeded, run_written
from attnas.model_export.write import FORMATS, ONNX_EXPORTERS, require_onnx, write_model


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    tolerance: float
    batch_sizes: tuple[int, ...]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    size_bytes: int
    tracer_warnings: list[str] = field(default_factory=list)
    exporter: str | None = None
    stochastic: bool = False   # random operations: compared under the same RNG seed

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.path), "format": self.format, "max_abs_diff": self.max_abs_diff,
                "tolerance": self.tolerance, "batch_sizes": list(self.batch_sizes),
                "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
                "size_bytes": self.size_bytes, "tracer_warnings": self.tracer_warnings,
                "exporter": self.exporter, "stochastic": self.stochastic}


def export_network(network: nn.Module, in_channels: int, image_size: int, out: str | os.PathLike,
                   fmt: str, tolerance: float = 1e-4, batch_size: int | None = None,
                   seed: int = 0, exporter: str = "torchscript", opset: int = 17,
                   label: str = "") -> ExportResult:
    """Write ``network`` (eval mode) as TorchScript or ONNX to ``out`` and check the written
    model against PyTorch on random inputs; raise when the largest absolute difference
    exceeds ``tolerance * max(1, max |logit|)``.

    ``batch_size`` None: the batch dimension is dynamic (checked on batches of 2 and 3);
    an int: the model is exported for that batch size only (checked on two inputs of it),
    for networks whose operations fold the batch into a shape (NOS' per-sample dynamic
    convolution kernels)."""
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch size must be positive, got {batch_size}")
    batch_sizes = (2, 3) if batch_size is None else (batch_size, batch_size)
    dynamic = batch_size is None
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}'; expected one of {list(FORMATS)}")
    if exporter not in ONNX_EXPORTERS:
        raise ConfigError(f"unknown ONNX exporter '{exporter}'; expected one of {list(ONNX_EXPORTERS)}")
    if tolerance <= 0:
        raise ConfigError(f"tolerance must be positive, got {tolerance}")
    ort = require_onnx(exporter) if fmt == "onnx" else None
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"'{out}' is a folder: give the file to write with -o")
    if not out.parent.exists():
        raise ConfigError(f"cannot write '{out}': folder '{out.parent}' does not exist")
    network = network.eval()
    gen = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(b, in_channels, image_size, image_size, generator=gen) for b in batch_sizes]
    what = f"space '{label}'" if label else "the network"
    refs = run_seeded(network, inputs, seed)
    stochastic = is_stochastic(network, inputs[0], refs[0], seed)
    if stochastic and fmt == "onnx":
        raise AttnasError(f"{what} is stochastic in eval mode (two runs on the same input differ, e.g. S4's "
                          "'noise' operation): ONNX Runtime draws its own random numbers, so the export cannot "
                          "be checked against PyTorch; export it to torchscript")
    tmp = out.with_name(out.name + ".tmp")
    tracer_msgs = write_model(network, inputs[0], tmp, fmt, exporter, opset, dynamic, what)
    outs = run_written(tmp, fmt, inputs, seed, ort, dynamic, what)
    max_diff = compare(refs, outs, tmp, fmt, tolerance, tracer_msgs, dynamic, what)
    os.replace(tmp, out)
    return ExportResult(out, fmt, max_diff, tolerance, tuple(sorted(set(batch_sizes))),
                        (-1 if dynamic else batch_size, in_channels, image_size, image_size),
                        (-1 if dynamic else batch_size, int(refs[0].shape[-1])),
                        out.stat().st_size, tracer_msgs, exporter if fmt == "onnx" else None, stochastic)
