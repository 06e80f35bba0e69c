"""Reproducible mini-batches over in-memory tensors.

The order of an epoch depends only on ``(seed, epoch)``, so a run resumed at
``(epoch, step)`` with :meth:`Batches.epoch_from` sees exactly the batches the
uninterrupted run would have seen.
"""
from __future__ import annotations

from typing import Iterator, Sized

import torch

from attnas.errors import ConfigError, ShapeError

_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads (seed, epoch) over the seed space
_MASK = (1 << 63) - 1


def _epoch_seed(seed: int, epoch: int) -> int:
    """A generator seed derived from ``(seed, epoch)`` (splitmix64-style mixing)."""
    z = (int(seed) * _MIX + int(epoch) + 1) & ((1 << 64) - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return (z ^ (z >> 31)) & _MASK


def split_indices(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly split ``range(n)`` into two disjoint int64 index tensors.

    A permutation drawn by a ``torch.Generator`` seeded with ``seed``; the first
    part has ``round(n * fraction)`` indices, the second the rest.  Used e.g. for
    the DARTS search split (half for the weights, half for the architecture).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"split_indices: n must be a non-negative integer, got {n!r}")
    if not 0.0 <= float(fraction) <= 1.0:
        raise ConfigError(f"split fraction must be within [0, 1], got {fraction!r}")
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=gen)
    k = int(round(n * float(fraction)))
    return perm[:k].clone(), perm[k:].clone()


class BatchSchedule:
    """What every batch source shares: ``indices`` served ``batch_size`` at a time, an epoch at a
    time, resumable at a step.  Subclasses set ``indices``, ``batch_size`` and ``drop_last`` and
    serve the batches of an epoch from a step on (:meth:`_serve`)."""

    indices: Sized
    batch_size: int
    drop_last: bool

    @property
    def num_samples(self) -> int:
        """Samples per epoch before dropping the last partial batch."""
        return len(self.indices)

    def __len__(self) -> int:
        """Batches per epoch."""
        n, b = len(self.indices), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch``."""
        return self.epoch_from(epoch, 0)

    def epoch_from(self, epoch: int, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch`` from batch number ``start_step`` on (the earlier ones are skipped, not built)."""
        steps = len(self)
        if isinstance(start_step, bool) or not isinstance(start_step, int) or not 0 <= start_step <= steps:
            raise ConfigError(f"start_step must be an integer in [0, {steps}], got {start_step!r}")
        return self._serve(epoch, start_step, steps)

    def _serve(self, epoch: int, start_step: int, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError


class Batches(BatchSchedule):
    """Mini-batches of ``(x[idx], y[idx])`` over ``indices`` (all samples when None).

    With ``shuffle`` the order of each epoch is a permutation seeded by
    ``(seed, epoch)``; without it, ``indices`` are taken in their given order.
    Batches keep the dtype and device of ``x`` and ``y`` (uint8 images, int64 labels).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None,
                 batch_size: int, shuffle: bool, seed: int, drop_last: bool = False) -> None:
        if len(x) != len(y):
            raise ShapeError(f"Batches: x has {len(x)} samples but y has {len(y)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if indices is None:
            idx = torch.arange(len(x), dtype=torch.int64)
        else:
            idx = torch.as_tensor(indices).to(device="cpu", dtype=torch.int64).reshape(-1)
            if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= len(x)):
                raise ShapeError(f"Batches: indices must lie in [0, {len(x)}), "
                                 f"got {int(idx.min())}..{int(idx.max())}")
        self.x, self.y = x, y
        self.indices = idx
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)

    def order(self, epoch: int) -> torch.Tensor:
        """The sample indices of ``epoch`` in the order they are served."""
        if not self.shuffle:
            return self.indices
        gen = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        return self.indices[torch.randperm(len(self.indices), generator=gen)]

    def _serve(self, epoch: int, start_step: int, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order(epoch)
        b = self.batch_size
        dev_x, dev_y = self.x.device, self.y.device
        for step in range(start_step, steps):
            idx = order[step * b:(step + 1) * b]
            yield self.x[idx.to(dev_x)], self.y[idx.to(dev_y)]


def make_batches(data, split: str, indices: torch.Tensor | None, batch_size: int, shuffle: bool,
                 seed: int, drop_last: bool = False):
    """The batches of one split (``"train"`` or ``"test"``) of a dataset: the one place the
    tasks build their batch sources, so another kind of dataset can serve its own: a streamed
    dataset gets a :class:`~attnas.data.stream.StreamBatches` (same interface, float batches)."""
    if split not in ("train", "test"):
        raise ConfigError(f"make_batches: split must be 'train' or 'test', got {split!r}")
    from attnas.data.stream import StreamBatches, is_streaming

    if is_streaming(data):  # decoded and augmented batch by batch in DataLoader workers
        return StreamBatches(data, split, indices, batch_size, shuffle, seed, drop_last=drop_last)
    x, y = (data.train_x, data.train_y) if split == "train" else (data.test_x, data.test_y)
    return Batches(x, y, indices, batch_size, shuffle, seed, drop_last=drop_last)
