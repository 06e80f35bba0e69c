"""Per-image decoding and augmentation for the streaming pipeline (run in DataLoader workers).

JPEG files are decoded with libjpeg-turbo through :mod:`simplejpeg` (chosen by measurement,
see ``docs/benchmarks.md``), using its DCT-domain downscaling when the output needs fewer
pixels than the file holds; other formats (PNG, ...) go through Pillow.

Training (:class:`ImageTransform` with ``train=True``), the ImageNet recipe of the papers
(DARTS, ProxylessNAS, ...):

1. random-resized crop: area ``U(0.08, 1)`` of the image, aspect ratio log-uniform in
   ``[3/4, 4/3]`` (10 tries, then a centre crop of the clamped ratio), resized bilinearly to
   ``size x size``;
2. horizontal flip with probability 1/2;
3. colour jitter: brightness, contrast and saturation factors ``U(1 - 0.4, 1 + 0.4)``, applied
   in a random order, and a hue shift ``U(-0.1, 0.1)`` turns, done as a rotation of the
   chroma plane in YIQ space (a linear stand-in for torchvision's HSV hue shift);
4. AlexNet-style PCA lighting noise (``alphastd`` 0.1, ImageNet eigenvalues/eigenvectors);
5. normalisation ``(x / 255 - mean) / std``.

Evaluation: resize the shorter side to ``round(size / 0.875)`` (256 for 224) and take the
centre ``size x size`` crop, then normalise.

Every random number comes from a ``numpy`` generator seeded per sample by
``(seed, epoch, sample id)``: the augmentation of a sample does not depend on which worker or
process decodes it.
"""
from __future__ import annotations

import io
import math

import numpy as np

#: ImageNet PCA lighting (AlexNet; as in the DARTS/ProxylessNAS ImageNet code), RGB order
IMAGENET_EIGVAL = np.array([0.2175, 0.0188, 0.0045], dtype=np.float32)
IMAGENET_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                            [-0.5808, -0.0045, -0.8140],
                            [-0.5836, -0.6948, 0.4203]], dtype=np.float32)
EVAL_CROP_FRACTION = 0.875
_GRAY = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class BadImage(Exception):
    """An image file that cannot be decoded (corrupt, truncated, not an image)."""


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def decode(data: bytes, min_side: int = 0, box: tuple[float, float, float, float] | None = None,
           out: int = 0) -> tuple[np.ndarray, float]:
    """Decode ``data`` to uint8 RGB ``(H, W, 3)``; returns ``(image, scale)`` where ``scale`` is
    decoded size / file size.  JPEGs are decoded at the smallest libjpeg scale (1/8 .. 1) that keeps
    the shorter side at least ``min_side`` (or the crop ``box`` of the full-size image at least
    ``out`` pixels a side).  Any failure is a :class:`BadImage`."""
    try:
        if is_jpeg(data):
            import simplejpeg

            h, w, _, _ = simplejpeg.decode_jpeg_header(data)
            want_h = want_w = 0
            if box is not None and out:
                s = max(out / max(box[2], 1e-6), out / max(box[3], 1e-6))
                want_h, want_w = math.ceil(h * min(1.0, s)), math.ceil(w * min(1.0, s))
            elif min_side:
                s = min(1.0, min_side / min(h, w))
                want_h, want_w = math.ceil(h * s), math.ceil(w * s)
            img = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=want_h, min_width=want_w,
                                         fastdct=False, fastupsample=False, strict=True)
            return img, img.shape[1] / w
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8), 1.0
    except Exception as exc:  # noqa: BLE001 - every decoding failure is the file's fault
        raise BadImage(" ".join(str(exc).split())[:200] or type(exc).__name__) from None


def _resize(img: np.ndarray, size: tuple[int, int], box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Bilinear (anti-aliased when shrinking) resize of ``img`` (or its ``box``) to ``size`` = (w, h)."""
    from PIL import Image

    pil = Image.fromarray(img)
    if box is not None:  # (left, top, width, height), clamped to the image (rounding of scaled boxes)
        h, w = img.shape[:2]
        x0, y0 = min(max(0.0, box[0]), w - 1.0), min(max(0.0, box[1]), h - 1.0)
        box = (x0, y0, min(float(w), x0 + box[2]), min(float(h), y0 + box[3]))
    return np.asarray(pil.resize(size, Image.BILINEAR, box=box), dtype=np.uint8)


class ImageTransform:
    """Decode + augment (``train``) or decode + resize-centre-crop, then normalise: a float32
    ``(3, size, size)`` array.  Picklable (it is sent to the DataLoader workers)."""

    def __init__(self, size: int, mean, std, train: bool, *, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), jitter: float = 0.4, hue: float = 0.1,
                 lighting: float = 0.1, flip: bool = True) -> None:
        self.size, self.train = int(size), bool(train)
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)
        self.scale, self.ratio = scale, ratio
        self.jitter, self.hue, self.lighting, self.flip = jitter, hue, lighting, flip

    def __call__(self, data: bytes, seed: int) -> np.ndarray:
        if self.train:
            img = self._train(data, np.random.default_rng(seed))
        else:
            img = self._eval(data)
        x = img.transpose(2, 0, 1).astype(np.float32) if img.dtype == np.uint8 else img.transpose(2, 0, 1)
        x *= 1.0 / 255.0
        x -= self.mean
        x /= self.std
        return np.ascontiguousarray(x, dtype=np.float32)

    # ------------------------------------------------------------------ evaluation
    def _eval(self, data: bytes) -> np.ndarray:
        s = self.size
        short = int(round(s / EVAL_CROP_FRACTION))
        img, _ = decode(data, min_side=short)
        h, w = img.shape[:2]
        if h <= w:
            nh, nw = short, max(short, int(round(w * short / h)))
        else:
            nw, nh = short, max(short, int(round(h * short / w)))
        top, left = (nh - s) // 2, (nw - s) // 2
        # resize and crop in one step: the box of the original that maps onto the centre crop
        fy, fx = h / nh, w / nw
        return _resize(img, (s, s), (left * fx, top * fy, s * fx, s * fy))

    # ------------------------------------------------------------------ training
    def _crop_box(self, h: int, w: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
        area = h * w
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            ar = math.exp(rng.uniform(lo, hi))
            cw = int(round(math.sqrt(target * ar)))
            ch = int(round(math.sqrt(target / ar)))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(rng.integers(0, h - ch + 1))
                left = int(rng.integers(0, w - cw + 1))
                return left, top, cw, ch
        in_ratio = w / h  # fallback: centre crop of the clamped ratio (as torchvision)
        if in_ratio < self.ratio[0]:
            cw, ch = w, int(round(w / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            ch, cw = h, int(round(h * self.ratio[1]))
        else:
            cw, ch = w, h
        return (w - cw) // 2, (h - ch) // 2, cw, ch

    def _train(self, data: bytes, rng: np.random.Generator) -> np.ndarray:
        s = self.size
        if is_jpeg(data):
            try:
                import simplejpeg

                h, w, _, _ = simplejpeg.decode_jpeg_header(data)
            except Exception as exc:  # noqa: BLE001
                raise BadImage(" ".join(str(exc).split())[:200]) from None
            box = self._crop_box(h, w, rng)
            img, scale = decode(data, box=box, out=s)
            box = tuple(v * scale for v in box)
        else:
            img, _ = decode(data)
            box = self._crop_box(img.shape[0], img.shape[1], rng)
        out = _resize(img, (s, s), box)
        if self.flip and rng.random() < 0.5:
            out = out[:, ::-1]
        x = out.astype(np.float32)
        if self.jitter > 0 or self.hue > 0:
            x = self._color(x, rng)
        if self.lighting > 0:
            alpha = rng.normal(0.0, self.lighting, size=3).astype(np.float32)
            x += 255.0 * (IMAGENET_EIGVEC @ (alpha * IMAGENET_EIGVAL))
        return x

    def _color(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        j = self.jitter
        factors = rng.uniform(1 - j, 1 + j, size=3) if j > 0 else np.ones(3)
        for op in rng.permutation(3):
            f = float(factors[op])
            if op == 0:  # brightness
                x *= f
            elif op == 1:  # contrast: blend with the mean grey level
                m = float((x @ _GRAY).mean())
                x *= f
                x += (1 - f) * m
            else:  # saturation: blend with the grey image
                g = (x @ _GRAY)[..., None]
                x *= f
                x += (1 - f) * g
            np.clip(x, 0, 255, out=x)
        if self.hue > 0:
            theta = 2 * math.pi * rng.uniform(-self.hue, self.hue)
            c, sn = math.cos(theta), math.sin(theta)
            to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                              dtype=np.float32)
            rot = np.array([[1, 0, 0], [0, c, -sn], [0, sn, c]], dtype=np.float32)
            m = np.linalg.inv(to_yiq) @ rot @ to_yiq
            x = x @ m.T.astype(np.float32)
            np.clip(x, 0, 255, out=x)
        return x
