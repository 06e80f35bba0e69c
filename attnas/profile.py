"""FLOPs, multiply-accumulates (MACs) and parameter counts of any network.

Units (the TrioNet paper's, and the literal ones): **MACs** = multiply-accumulates, and
**FLOPs = 2 x MACs** (a multiply-accumulate is one multiplication and one addition).  Many NAS
papers and benchmarks call the MAC count "FLOPs" -- NAS-Bench-Macro's ``flops`` column,
SPOS' and ProxylessNAS' "FLOPs", OFA's "MACs"; compare their numbers with ``macs``.  Every
count attnas writes or prints names its unit: ``flops`` (2 x MACs) and ``macs``.

What is counted, for one image:

* ``Conv2d``: ``H_out * W_out * C_out * (C_in / groups) * k_h * k_w`` MACs
  (depthwise convolutions included, since they are Conv2d with groups),
* ``Linear``: ``in_features * out_features`` MACs (per row of the input),

plus what a module reports through an ``extra_macs()`` method (called after its forward; e.g.
the attention matmuls of :mod:`attnas.ops.trio`; ``extra_flops()``, its former name, is read
the same way, as MACs), and nothing else: biases, batch norm, activations, pooling, the SE
gate's element-wise product and residual additions are **excluded** (they are a fraction of
a percent of the count and are left out by the benchmark too: NAS-Bench-Macro's stored
``flops`` equal this MAC count exactly, see ``tests/test_profile.py``).  Counted with forward
hooks on one dummy input.  :func:`profile_layers` gives the same counts per layer (``attnas
profile``).

Parameters: every element of every ``nn.Parameter`` (BN affine weights
included, buffers such as running statistics excluded), which is
NAS-Bench-Macro's ``params`` column.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from attnas.errors import ShapeError


#: how the counts are defined, for tables and JSON
FLOPS_UNIT = "FLOPs = 2 x MACs (multiply-accumulates)"


@dataclass(frozen=True)
class Profile:
    """Multiply-accumulates per image and parameter count; ``flops`` = 2 x ``macs``."""

    macs: int
    params: int

    @property
    def flops(self) -> int:
        """FLOPs per image: 2 x MACs (module docstring)."""
        return 2 * self.macs

    def to_dict(self) -> dict[str, int]:
        return {"flops": self.flops, "macs": self.macs, "params": self.params}


@dataclass(frozen=True)
class LayerProfile:
    """The counts of one row of :func:`profile_layers`."""

    name: str
    kind: str
    macs: int
    params: int

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "flops": self.flops, "macs": self.macs,
                "params": self.params}


def count_params(module: nn.Module) -> int:
    """Number of parameter elements of ``module`` (shared parameters counted once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def _conv_macs(m: nn.Conv2d, out: torch.Tensor) -> int:
    per_position = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
    return int(out[0].numel()) * per_position


def _linear_macs(m: nn.Linear, out: torch.Tensor) -> int:
    rows = int(out[0].numel()) // m.out_features  # 1 for (N, F) inputs, more for (N, L, F)
    return rows * m.in_features * m.out_features


def _extra_macs(m: nn.Module) -> int:
    fn = getattr(m, "extra_macs", None) or getattr(m, "extra_flops", None)
    return int(fn()) if callable(fn) else 0


def _counted(m: nn.Module) -> bool:
    return isinstance(m, (nn.Conv2d, nn.Linear)) or callable(getattr(m, "extra_macs", None)) \
        or callable(getattr(m, "extra_flops", None))


@torch.no_grad()
def _count_by_module(module: nn.Module, x: torch.Tensor) -> tuple[dict[str, int], Any]:
    """MACs per (qualified) module name on one image, and the output."""
    if x.dim() < 1 or x.shape[0] < 1:
        raise ShapeError(f"counting MACs needs a batch of at least one input, got shape {tuple(x.shape)}")
    counts: dict[str, int] = {}

    def make_hook(name: str):
        def hook(m: nn.Module, inputs, out) -> None:
            n = 0
            if isinstance(m, nn.Conv2d):
                n += _conv_macs(m, out)
            elif isinstance(m, nn.Linear):
                n += _linear_macs(m, out)
            n += _extra_macs(m)
            counts[name] = counts.get(name, 0) + n
        return hook

    handles = [m.register_forward_hook(make_hook(name)) for name, m in module.named_modules() if _counted(m)]
    was_training = module.training
    module.eval()
    try:
        out = module(x[:1])
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    return counts, out


def count_macs(module: nn.Module, x: torch.Tensor) -> tuple[int, Any]:
    """Multiply-accumulates of ``module`` on one image (``x`` may hold a batch: the count is per
    image).  Returns ``(macs, output)``; the module runs in eval mode (restored after)."""
    counts, out = _count_by_module(module, x)
    return sum(counts.values()), out


def count_flops(module: nn.Module, x: torch.Tensor) -> tuple[int, Any]:
    """FLOPs (2 x MACs, module docstring) of ``module`` on one image, and the output."""
    macs, out = count_macs(module, x)
    return 2 * macs, out


def profile(module: nn.Module, in_channels: int, image_size: int) -> Profile:
    """MACs (and FLOPs) and parameters of ``module`` for ``in_channels x image_size x image_size`` images."""
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    macs, _ = count_macs(module, torch.zeros(1, in_channels, image_size, image_size, device=device))
    return Profile(macs=macs, params=count_params(module))


#: top-level children whose own children are the rows of :func:`profile_layers`
EXPANDED = ("layers", "cells")


def profile_layers(module: nn.Module, in_channels: int, image_size: int) -> tuple[list[LayerProfile], Profile]:
    """Per-layer counts and the total.  Rows: the network's top-level children, with the
    blocks of ``layers`` / ``cells`` (chain and cell networks) and of any ``nn.ModuleList``
    one row each (``layers.3``, ``cells.0``); rows that neither compute nor hold weights
    (pooling, dropout) are left out.  The rows add up to the total MACs; their parameters add
    up to the total unless a parameter is shared between rows."""
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    counts, _ = _count_by_module(module, torch.zeros(1, in_channels, image_size, image_size, device=device))
    rows: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        if name in EXPANDED or isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            rows += [(f"{name}.{n}", c) for n, c in child.named_children()]
        else:
            rows.append((name, child))
    out, seen = [], 0
    for name, child in rows:
        macs = sum(v for k, v in counts.items() if k == name or k.startswith(name + "."))
        params = count_params(child)
        seen += macs
        if macs or params:
            out.append(LayerProfile(name, type(child).__name__, macs, params))
    rest = sum(counts.values()) - seen
    if rest:  # MACs of the network module itself (or of a module outside the rows)
        out.append(LayerProfile("(other)", type(module).__name__, rest, 0))
    return out, Profile(macs=sum(counts.values()), params=count_params(module))


def profile_architecture(space, arch, num_classes: int, in_channels: int, image_size: int,
                         **network_options: Any) -> Profile:
    """MACs (and FLOPs) and parameters of the stand-alone network of ``arch`` (``space.build_network``)."""
    net = space.build_network(arch, num_classes, in_channels, image_size, **network_options)
    return profile(net, in_channels, image_size)
