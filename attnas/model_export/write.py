"""Writing a network as TorchScript or ONNX (:func:`write_model`).

* **TorchScript** is written with :func:`torch.jit.trace` (``torch.jit.script``
  cannot compile the cell DAGs, whose ``forward`` takes ``*inputs``).  A trace
  records the operations run on the example input: Python branches on tensor
  values would be frozen.  The spaces only branch on shapes (e.g. odd spatial
  sizes in ``FactorizedReduce``), which are fixed by the exported image size;
  a network whose trace disagrees with PyTorch on a second batch size is
  reported as not traceable, with the tracer's warnings.
* **ONNX** needs the optional packages ``onnx`` and ``onnxruntime``
  (``pip install 'attnas[export]'``).  The default exporter is PyTorch's
  TorchScript-based one (``torch.onnx.export(..., dynamo=False)``: seconds per
  network); ``exporter="dynamo"`` uses the ``torch.export`` exporter, which
  also needs ``onnxscript`` and is much slower on cell networks (about 40 s
  for a 3-cell DARTS network on one CPU thread).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from attnas.errors import AttnasError, ConfigError

FORMATS = ("torchscript", "onnx")
ONNX_EXPORTERS = ("torchscript", "dynamo")


def require_onnx(exporter: str = "torchscript"):
    """Import ``onnx`` and ``onnxruntime`` (and ``onnxscript`` for the dynamo exporter),
    or raise a one-line error naming the extra to install."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as e:
        raise ConfigError(f"ONNX export needs the packages onnx and onnxruntime ({e.name} is not installed): "
                          "pip install 'attnas[export]'") from None
    if exporter == "dynamo":
        try:
            import onnxscript  # noqa: F401
        except ImportError:
            raise ConfigError("the dynamo ONNX exporter needs onnxscript: pip install onnxscript") from None
    return onnxruntime


class _CapturedOutput:
    """Redirect the process's stdout and stderr file descriptors to a temporary file (the
    exporters' C++ code prints whole graphs there when they fail); ``text`` holds it after."""

    def __enter__(self):
        import sys
        import tempfile

        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, ValueError):
                pass
        self.file = tempfile.TemporaryFile(mode="w+b")
        self.saved = []
        for fd in (1, 2):
            try:
                self.saved.append((fd, os.dup(fd)))
                os.dup2(self.file.fileno(), fd)
            except OSError:
                pass
        self.text = ""
        return self

    def __exit__(self, *exc):
        import sys

        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, ValueError):
                pass
        for fd, saved in self.saved:
            os.dup2(saved, fd)
            os.close(saved)
        self.file.seek(0)
        self.text = self.file.read().decode("utf-8", "replace")
        self.file.close()
        return False


def _python_function(e: BaseException) -> str | None:
    import re

    m = re.search(r"Could not export Python function call '([^']+)'", str(e))
    return m.group(1) if m else None


def _python_function_in_trace(network: nn.Module, x: torch.Tensor) -> str | None:
    """Why an ONNX export failed, when a TorchScript trace names it (a Python autograd function)."""
    try:
        with warnings.catch_warnings(), _CapturedOutput(), torch.no_grad():
            warnings.simplefilter("ignore")
            import io

            torch.jit.save(torch.jit.trace(network, (x,), check_trace=False), io.BytesIO())
    except Exception as e:  # noqa: BLE001
        return _python_function(e)
    return None


def _first_line(e: BaseException, limit: int = 300) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    for ln in lines[1:3]:  # TorchScript interpreter errors put the reason after a header line
        if len(text) < 80:
            text += " " + ln
    return text.split("[Caused by")[0].strip()[:limit]


def write_model(network: nn.Module, example: torch.Tensor, path: Path, fmt: str, exporter: str, opset: int,
                dynamic: bool, what: str) -> list[str]:
    """Write ``network`` (eval mode) traced or exported on ``example`` to ``path``; returns the
    tracer's warnings.  A failure removes ``path`` and raises an AttnasError naming the reason
    (a Python autograd function the trace cannot record, a shape that needs a fixed batch size)."""
    tracer_msgs: list[str] = []
    failure = None
    with warnings.catch_warnings(record=True) as caught, _CapturedOutput():
        warnings.simplefilter("always")
        try:
            if fmt == "torchscript":
                with torch.no_grad():
                    traced = torch.jit.trace(network, (example,), check_trace=False)
                torch.jit.save(traced, str(path))
            elif exporter == "torchscript":
                torch.onnx.export(network, (example,), str(path), dynamo=False, input_names=["input"],
                                  output_names=["logits"], opset_version=opset,
                                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic
                                  else None)
            else:
                torch.onnx.export(network, (example,), str(path), dynamo=True, input_names=["input"],
                                  output_names=["logits"], external_data=False,
                                  dynamic_shapes=({0: torch.export.Dim("batch")},) if dynamic else None)
        except AttnasError:
            raise
        except Exception as e:  # noqa: BLE001 - the exporters raise many kinds; report the reason
            failure = e
    if failure is not None:
        path.unlink(missing_ok=True)
        reason = f"{type(failure).__name__}: {_first_line(failure)}"
        python_fn = _python_function(failure) or (_python_function_in_trace(network, example)
                                                   if fmt == "onnx" else None)
        if python_fn:
            reason = (f"it calls the Python autograd function '{python_fn}', which tracing cannot record "
                      f"({reason})")
        elif dynamic and "unknown shape" in str(failure):
            reason += " -- export for one fixed batch size with --batch-size N"
        raise AttnasError(f"{what} cannot be exported to {fmt}: {reason}")
    for w in caught:
        if issubclass(w.category, torch.jit.TracerWarning):
            msg = " ".join(str(w.message).split())[:160]
            if msg not in tracer_msgs:
                tracer_msgs.append(msg)
    return tracer_msgs
