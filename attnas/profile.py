"""FLOPs and parameter counts of any network.

Convention (the one of NAS-Bench-Macro's ``flops`` column, of ProxylessNAS'
and SPOS' "FLOPs", and of most NAS papers): **FLOPs = multiply-accumulates
of convolution and linear weights** for one image,

* ``Conv2d``: ``H_out * W_out * C_out * (C_in / groups) * k_h * k_w``
  (depthwise convolutions included, since they are Conv2d with groups),
* ``Linear``: ``in_features * out_features`` (per row of the input),

plus what a module reports through an ``extra_flops()`` method (called after
its forward; e.g. the attention matmuls of :mod:`attnas.ops.trio`), and nothing
else: biases, batch norm, activations, pooling, the SE gate's element-wise
product and residual additions are **excluded** (they are a fraction of a percent
of the count and are left out by the benchmark too: NAS-Bench-Macro's stored
FLOPs equal this count exactly, see
``tests/test_profile.py``).  Counted with forward hooks on one dummy input.

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


@dataclass(frozen=True)
class Profile:
    """FLOPs (multiply-accumulates per image) and parameter count."""

    flops: int
    params: int

    def to_dict(self) -> dict[str, int]:
        return {"flops": self.flops, "params": self.params}


def count_params(module: nn.Module) -> int:
    """Number of parameter elements of ``module`` (shared parameters counted once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def _conv_flops(m: nn.Conv2d, out: torch.Tensor) -> int:
    per_position = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
    return int(out[0].numel()) * per_position


def _linear_flops(m: nn.Linear, out: torch.Tensor) -> int:
    rows = int(out[0].numel()) // m.out_features  # 1 for (N, F) inputs, more for (N, L, F)
    return rows * m.in_features * m.out_features


@torch.no_grad()
def count_flops(module: nn.Module, x: torch.Tensor) -> tuple[int, Any]:
    """FLOPs of ``module`` on one image (``x`` may hold a batch: the count is per image).

    Returns ``(flops, output)``; the module runs in eval mode (restored after).
    """
    if x.dim() < 1 or x.shape[0] < 1:
        raise ShapeError(f"count_flops needs a batch of at least one input, got shape {tuple(x.shape)}")
    total = [0]

    def hook(m: nn.Module, inputs, out) -> None:
        if isinstance(m, nn.Conv2d):
            total[0] += _conv_flops(m, out)
        elif isinstance(m, nn.Linear):
            total[0] += _linear_flops(m, out)
        if callable(getattr(m, "extra_flops", None)):
            total[0] += int(m.extra_flops())

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)) or callable(getattr(m, "extra_flops", None))]
    was_training = module.training
    module.eval()
    try:
        out = module(x[:1])
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    return total[0], out


def profile(module: nn.Module, in_channels: int, image_size: int) -> Profile:
    """FLOPs and parameters of ``module`` for ``in_channels x image_size x image_size`` images."""
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    flops, _ = count_flops(module, torch.zeros(1, in_channels, image_size, image_size, device=device))
    return Profile(flops=flops, params=count_params(module))


def profile_architecture(space, arch, num_classes: int, in_channels: int, image_size: int,
                         **network_options: Any) -> Profile:
    """FLOPs and parameters of the stand-alone network of ``arch`` (``space.build_network``)."""
    net = space.build_network(arch, num_classes, in_channels, image_size, **network_options)
    return profile(net, in_channels, image_size)
