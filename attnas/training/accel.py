"""Mixed precision and graph compilation for retraining (``attnas train --amp --compile``).

* ``amp``: the forward pass and the loss run under :func:`torch.autocast` --
  float16 on CUDA, with a :class:`torch.amp.GradScaler` (its state is part of
  the checkpoint, so a resumed run continues exactly); bfloat16 on CPU, which
  needs no scaling.  Weights, optimizer state and evaluation stay float32.
* ``compile_backend``: the training forward goes through
  ``torch.compile(network, backend=...)`` (``inductor`` by default; ``aot_eager``
  traces without generating code, useful where no C++ compiler is installed).
  The network itself, its state dict and the evaluation stay eager.

Neither is needed on CPU and neither is on by default; channels-last layout is
always on where safe (:mod:`attnas.ops.layout`).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
import torch.nn as nn

from attnas.errors import ConfigError


def amp_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.bfloat16


class Accelerator:
    """Autocast context, optional compiled forward and gradient scaler of one training run."""

    def __init__(self, net: nn.Module, device: torch.device, amp: bool = False,
                 compile_backend: str | None = None) -> None:
        self.device, self.amp, self.backend = device, bool(amp), compile_backend
        self.dtype = amp_dtype(device) if self.amp else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp and device.type == "cuda" else None
        self.forward: Callable[[torch.Tensor], Any] = net
        if compile_backend:
            try:
                self.forward = torch.compile(net, backend=compile_backend)
            except Exception as e:  # noqa: BLE001 - an unknown backend name
                raise ConfigError(f"--compile {compile_backend}: {str(e).splitlines()[0]}") from None
        self._first = True

    def autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def run(self, x: torch.Tensor):
        """The (compiled) forward; a compilation failure is a one-line error."""
        if not (self.backend and self._first):
            return self.forward(x)
        try:
            out = self.forward(x)
        except Exception as e:  # noqa: BLE001 - dynamo/inductor errors are long; name the cause
            raise ConfigError(f"--compile {self.backend} failed: {type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else ''} "
                              "(try --compile aot_eager, or train without --compile)") from None
        self._first = False
        return out

    def backward_and_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer,
                          before_step: Callable[[], None]) -> None:
        """``loss.backward()``, ``before_step()`` (gradient sync, clipping), ``opt.step()`` --
        with loss scaling when float16 needs it."""
        if self.scaler is None:
            loss.backward()
            before_step()
            opt.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(opt)
        before_step()
        self.scaler.step(opt)
        self.scaler.update()

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, scaled when float16 needs it (gradients accumulate)."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale(self, opts) -> None:
        """Unscale the gradients of ``opts`` before clipping (no-op without a scaler)."""
        if self.scaler is not None:
            for o in opts:
                self.scaler.unscale_(o)

    def step(self, opts, scaled: bool = True) -> None:
        """Step every optimizer of ``opts`` (skipping inf/NaN steps under a scaler; ``scaled``
        False: gradients that no loss scaling produced, stepped as they are)."""
        if self.scaler is None or not scaled:
            for o in opts:
                o.step()
            return
        for o in opts:
            self.scaler.step(o)
        self.scaler.update()

    def describe(self) -> dict[str, Any]:
        return {"amp": str(self.dtype).replace("torch.", "") if self.amp else None, "compile": self.backend}

    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
