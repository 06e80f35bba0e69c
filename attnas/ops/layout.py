"""Memory layout of convolutional networks on CPU (and GPU): channels-last (NHWC).

oneDNN runs the convolutions of the cell and chain spaces much faster on NHWC
tensors: on the 2-core CPU of ``bench/search_step.py`` a depthwise 3x3
convolution forward + backward is 4x faster, a 5x5 one 4x, a 3x3 max pool 2x
(PyTorch 2.13), which makes a DARTS search step 1.45x faster.  Values are
unchanged (same kernels up to float summation order) and state dicts load into
either layout.

Networks that would hit a oneDNN bug in that layout keep NCHW
(:func:`channels_last_safe`).
"""
from __future__ import annotations

import torch
import torch.nn as nn

#: per-group input channels below which a strided 1x1 convolution stays out of the NHWC layout
NHWC_MIN_CHANNELS = 8


def channels_last_safe(module: nn.Module) -> bool:
    """False when ``module`` has a strided 1x1 convolution with fewer than 8 input channels per
    group: oneDNN in PyTorch 2.13 (CPU) corrupts the heap in its backward pass in the NHWC layout
    (reproducer: ``Conv2d(4, 8, 1, stride=2)``, NHWC input, one thread, forward + backward), so
    such (tiny) networks keep NCHW."""
    return not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and max(m.stride) > 1
                   and m.in_channels // m.groups < NHWC_MIN_CHANNELS for m in module.modules())


def use_channels_last(module: nn.Module, enabled: bool = True) -> bool:
    """Move ``module``'s 4-d weights to channels-last when ``enabled`` and safe; returns whether it did."""
    if enabled and channels_last_safe(module):
        module.to(memory_format=torch.channels_last)
        return True
    return False


def as_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` in the network's layout (4-d inputs only)."""
    if channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x
