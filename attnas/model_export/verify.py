"""Checking a written model against PyTorch: both run on the same random inputs with the global
RNG seeded the same before each (random operations such as S4's noise then draw the same
numbers), the written file is loaded and run (never the in-memory object), and the largest
absolute difference of the logits must stay within ``tolerance * max(1, max |logit|)``."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from attnas.errors import AttnasError


def logits(out: Any) -> torch.Tensor:
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise AttnasError(f"the network returns {type(out).__name__}, not a tensor of logits")
    return out


def run_seeded(model, xs: list[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """Outputs with the global RNG seeded the same before each input (random operations,
    e.g. S4's noise, then draw the same numbers in PyTorch and in TorchScript)."""
    outs = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        for i, x in enumerate(xs):
            torch.manual_seed(seed + 1000 + i)
            outs.append(logits(model(x)).detach())
    return outs


def is_stochastic(network: nn.Module, x: torch.Tensor, ref: torch.Tensor, seed: int) -> bool:
    """Whether ``network`` gives other logits than ``ref`` on ``x`` under another seed."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed + 7)
        return not torch.equal(logits(network(x)), ref)


def run_written(path: Path, fmt: str, inputs: list[torch.Tensor], seed: int, ort, dynamic: bool,
                what: str) -> list[torch.Tensor]:
    """The logits of the model written at ``path`` (TorchScript, or ONNX under the onnxruntime
    module ``ort``) on ``inputs``; a model that does not run is removed and an AttnasError."""
    try:
        if fmt == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: still the loader
                loaded = torch.jit.load(str(path), map_location="cpu")
            with torch.no_grad():
                return run_seeded(loaded, inputs, seed)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return [torch.from_numpy(sess.run(None, {name: x.numpy()})[0]) for x in inputs]
    except Exception as e:  # noqa: BLE001
        path.unlink(missing_ok=True)
        hint = (" -- the network folds the batch size into a shape; export for one fixed batch size "
                "with --batch-size N" if dynamic else "")
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        reason = (lines[-1] if lines else "")[:200]
        batch_sizes = sorted({int(x.shape[0]) for x in inputs})
        raise AttnasError(f"the exported {fmt} model of {what} does not run on batch sizes "
                          f"{batch_sizes}: {type(e).__name__}: {reason}{hint}") from None


def compare(refs: list[torch.Tensor], outs: list[torch.Tensor], path: Path, fmt: str, tolerance: float,
            tracer_msgs: list[str], dynamic: bool, what: str) -> float:
    """The largest absolute difference of ``outs`` from ``refs``; a shape that differs or a
    difference over the tolerance removes ``path`` and is an AttnasError."""
    diffs = []
    for ref, got in zip(refs, outs):
        if tuple(got.shape) != tuple(ref.shape):
            path.unlink(missing_ok=True)
            raise AttnasError(f"the exported {fmt} model of {what} gives shape {tuple(got.shape)}, PyTorch "
                              f"{tuple(ref.shape)}: it is not valid for other batch sizes"
                              + (" (export for one fixed batch size with --batch-size N)" if dynamic else ""))
        diffs.append(float((got.float() - ref.float()).abs().max()))
    max_diff = max(diffs)
    scale = max(1.0, max(float(r.abs().max()) for r in refs))
    if not max_diff <= tolerance * scale:
        path.unlink(missing_ok=True)
        reason = (f"; the trace froze data-dependent control flow: {tracer_msgs[0]}" if tracer_msgs else "")
        raise AttnasError(f"the exported {fmt} model of {what} differs from PyTorch: max abs difference "
                          f"{max_diff:.3g} > tolerance {tolerance:g} x {scale:.3g}{reason}")
    return max_diff
