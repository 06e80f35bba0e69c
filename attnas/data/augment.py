"""Data augmentation on whole batches, on the batch's own device.

The pipeline follows the DARTS CIFAR recipe, vectorised over the batch:

1. random crop after zero padding (the padding is black in pixel space, as
   ``torchvision.transforms.RandomCrop(32, padding=4)`` pads the raw image);
2. random horizontal flip (probability 1/2 per sample);
3. normalisation ``(x / 255 - mean) / std``;
4. cutout (DeVries & Taylor, 2017): one ``cutout x cutout`` square per sample,
   centred uniformly in the image and clipped at its border, set to zero
   *after* normalisation as the DARTS code does (rows ``cy - s//2 .. cy - s//2 + s - 1``,
   so an odd side gives an s x s square where DARTS gives (s-1) x (s-1)).

Sizes scale with the image (:func:`default_augment`): the crop padding is 1/8 of the
side and the cutout side at most half of it, so DARTS's CIFAR settings (padding 4,
cutout 16 on 32x32) become padding 1 and cutout 4 on the 8x8 digits; an explicitly
requested cutout of the whole side or more is refused (:func:`effective_cutout`).

``train=False`` applies only step 3.  With a ``torch.Generator`` the result
is deterministic; random numbers are drawn on the generator's device and then
moved to the batch's device.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from attnas.errors import ConfigError, ShapeError

if TYPE_CHECKING:
    from attnas.data.datasets import ImageData

#: Datasets whose labels change under a horizontal flip (digits) or that are not
#: natural images (synthetic class patterns): :func:`default_augment` does not flip them.
NO_FLIP_DATASETS = frozenset({"digits", "svhn", "synthetic"})


class BatchAugment:
    """Augmentation on whole batches, on the batch's device (CPU or GPU).

    ``crop_padding``: zero padding of the random crop (0 = no crop);
    ``flip``: random horizontal flips; ``cutout``: side of the cutout square (0 = off).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], crop_padding: int = 4,
                 flip: bool = True, cutout: int = 0) -> None:
        mean_t = torch.as_tensor([float(m) for m in mean], dtype=torch.float32)
        std_t = torch.as_tensor([float(s) for s in std], dtype=torch.float32)
        if mean_t.numel() == 0 or mean_t.shape != std_t.shape:
            raise ConfigError(f"mean and std need one value per channel, got {len(mean_t)} and {len(std_t)}")
        if bool((std_t <= 0).any()):
            raise ConfigError(f"std values must be positive, got {tuple(std_t.tolist())}")
        for label, value in (("crop_padding", crop_padding), ("cutout", cutout)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{label} must be a non-negative integer, got {value!r}")
        self.mean = tuple(mean_t.tolist())
        self.std = tuple(std_t.tolist())
        self.crop_padding = crop_padding
        self.flip = bool(flip)
        self.cutout = cutout
        self._mean = mean_t.view(1, -1, 1, 1)
        self._std = std_t.view(1, -1, 1, 1)

    def __repr__(self) -> str:
        return (f"BatchAugment(mean={self.mean}, std={self.std}, crop_padding={self.crop_padding}, "
                f"flip={self.flip}, cutout={self.cutout})")

    def __call__(self, x_uint8: torch.Tensor, generator: torch.Generator | None = None,
                 train: bool = True) -> torch.Tensor:
        """Augment (when ``train``) and normalise a uint8 batch ``(N, C, H, W)`` to float32."""
        if not isinstance(x_uint8, torch.Tensor) or x_uint8.dtype != torch.uint8 or x_uint8.dim() != 4:
            got = f"{x_uint8.dtype} {tuple(x_uint8.shape)}" if isinstance(x_uint8, torch.Tensor) else type(x_uint8).__name__
            raise ShapeError(f"BatchAugment needs a uint8 batch (N, C, H, W), got {got}")
        n, c, h, w = x_uint8.shape
        if c != self._mean.shape[1]:
            raise ShapeError(f"BatchAugment was built for {self._mean.shape[1]} channels "
                             f"but the batch has {c}")
        device = x_uint8.device
        x = x_uint8
        if train and n > 0:  # crop and flip on uint8 (cheaper), then one normalisation pass
            if self.crop_padding > 0:
                x = self._crop(x, generator)
            if self.flip:
                flip = self._rand((n,), generator, device) < 0.5
                x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
        out = x.to(torch.float32)
        out.sub_((self._mean * 255.0).to(device)).mul_((1.0 / (255.0 * self._std)).to(device))
        if train and n > 0 and self.cutout > 0:
            out.mul_(self._cutout_keep(n, h, w, generator, device).unsqueeze(1))
        return out

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _rand(shape: tuple[int, ...], generator: torch.Generator | None,
              device: torch.device) -> torch.Tensor:
        gen_device = generator.device if generator is not None else device
        return torch.rand(shape, generator=generator, device=gen_device).to(device)

    @staticmethod
    def _randint(high: int, shape: tuple[int, ...], generator: torch.Generator | None,
                 device: torch.device) -> torch.Tensor:
        gen_device = generator.device if generator is not None else device
        return torch.randint(0, high, shape, generator=generator, device=gen_device).to(device)

    def _crop(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Random crop of the zero-padded batch: one (dy, dx) offset in [0, 2p] per sample."""
        n, c, h, w = x.shape
        p = self.crop_padding
        offsets = self._randint(2 * p + 1, (n, 2), generator, x.device)
        padded = F.pad(x, (p, p, p, p))
        ar_h = torch.arange(h, device=x.device)
        ar_w = torch.arange(w, device=x.device)
        rows = (offsets[:, 0:1] + ar_h).view(n, 1, h, 1).expand(n, c, h, w + 2 * p)
        cols = (offsets[:, 1:2] + ar_w).view(n, 1, 1, w).expand(n, c, h, w)
        return padded.gather(2, rows).gather(3, cols)  # pick rows, then columns, per sample

    def _cutout_keep(self, n: int, h: int, w: int, generator: torch.Generator | None,
                     device: torch.device) -> torch.Tensor:
        return cutout_keep(self.cutout, n, h, w, generator, device)


def cutout_keep(size: int, n: int, h: int, w: int, generator: torch.Generator | None,
                device: torch.device) -> torch.Tensor:
    """(N, H, W) float mask: 0 inside each sample's ``size`` x ``size`` cutout square (centred
    uniformly on the image, clipped at its border), 1 elsewhere."""
    cy = BatchAugment._randint(h, (n, 1), generator, device)
    cx = BatchAugment._randint(w, (n, 1), generator, device)
    y0, x0 = cy - size // 2, cx - size // 2
    ys = torch.arange(h, device=device).view(1, h)
    xs = torch.arange(w, device=device).view(1, w)
    in_y = (ys >= y0) & (ys < y0 + size)  # (N, H)
    in_x = (xs >= x0) & (xs < x0 + size)  # (N, W)
    return (~(in_y.unsqueeze(2) & in_x.unsqueeze(1))).to(torch.float32)


def crop_padding_for(image_size: int) -> int:
    """Random-crop padding for ``image_size``: 1/8 of the side (4 for 32x32, the DARTS recipe;
    1 for 8x8; 0 below 8x8)."""
    return max(0, int(image_size) // 8)


def effective_cutout(cutout: int, image_size: int, explicit: bool = False) -> int:
    """The cutout side used on ``image_size`` x ``image_size`` images: at most half the side
    (16 for 32x32, the DARTS recipe; 4 for the 8x8 digits), so a preset's 16 never blanks a
    small image.  An ``explicit`` request (the user's own option) of the whole side or more
    would erase the image: a one-line :class:`ConfigError`."""
    if isinstance(cutout, bool) or not isinstance(cutout, int) or cutout < 0:
        raise ConfigError(f"cutout must be a non-negative integer, got {cutout!r}")
    if explicit and cutout >= image_size:
        raise ConfigError(f"cutout {cutout} would erase the whole {image_size}x{image_size} image; "
                          f"use at most {max(0, image_size // 2)} (half the side) or 0 for none")
    return min(cutout, max(0, int(image_size) // 2))


class PassThrough:
    """The "augmentation" of a streamed dataset: its batches come out of the DataLoader workers
    already augmented (training) or resized and centre-cropped (evaluation), and normalised, so
    the batch is returned as it is -- except for ``cutout`` (a side > 0), which training batches
    get here, on the batch's device, after the workers' augmentation (as the DARTS recipe applies
    it after normalisation).  The batch is changed in place, so a process's slice of a global
    batch under torchrun (:class:`attnas.data.stream.LocalSlice`) stays one."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], cutout: int = 0) -> None:
        self.mean, self.std = tuple(mean), tuple(std)
        self.crop_padding, self.flip, self.cutout = 0, False, int(cutout)

    def __repr__(self) -> str:
        return f"PassThrough(mean={self.mean}, std={self.std}, cutout={self.cutout})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None,
                 train: bool = True) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ShapeError("a streamed batch must be float images (normalised in the workers), got "
                             f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")
        if train and self.cutout > 0 and x.dim() == 4 and len(x):
            _, _, h, w = x.shape
            part = getattr(x, "attnas_slice", None)
            if part is None:
                keep = cutout_keep(self.cutout, len(x), h, w, generator, x.device)
            else:  # torchrun: the squares of the whole global batch, this process's rows of them
                from attnas.distributed import slice_rows

                keep = slice_rows(cutout_keep(self.cutout, part[2], h, w, generator, x.device), part)
            x.mul_(keep.unsqueeze(1))
        return x


def default_augment(data: ImageData, cutout: int = 0) -> BatchAugment | PassThrough:
    """The standard training augmentation for ``data``.

    Sizes follow the image size: crop padding is ``image_size // 8``
    (:func:`crop_padding_for`: 4 for 32x32, 1 for 8x8) and the cutout side is capped at
    ``image_size // 2`` (:func:`effective_cutout`: DARTS's 16 on 32x32, 4 on 8x8).
    Horizontal flips are on for natural images and off for ``digits``, ``svhn`` (a mirrored
    digit is a different or no digit) and ``synthetic`` (its class patterns are
    not mirror-symmetric).  ``cutout`` is the square's side (0 = off; DARTS uses 16).

    A streamed dataset (:mod:`attnas.data.stream`) is augmented in its DataLoader workers
    (random-resized crop, flip, colour jitter, lighting): :class:`PassThrough`, which adds only
    the cutout.
    """
    from attnas.data.stream import is_streaming

    if is_streaming(data):
        return PassThrough(data.mean, data.std, cutout=effective_cutout(cutout, data.image_size))
    base = data.name.split(":", 1)[0].lower()
    return BatchAugment(data.mean, data.std, crop_padding=crop_padding_for(data.image_size),
                        flip=base not in NO_FLIP_DATASETS, cutout=effective_cutout(cutout, data.image_size))
