"""Image-classification datasets as whole uint8 tensors.

:func:`load_dataset` returns an :class:`ImageData`: the train and test images
as ``uint8`` tensors of shape ``(N, C, H, W)``, ``int64`` labels, and the
per-channel mean/std of the (returned) training images scaled to ``[0, 1]``.
Augmentation and normalisation happen later, on whole batches
(:mod:`attnas.data.augment`).

Datasets (``name``):

``digits``
    scikit-learn's bundled 8x8 digits (1797 images, 1 channel, values 0..16
    scaled to 0..255).  Needs no data folder.  Fixed stratified split: 20 % test
    (360 images), 80 % train (1437), split seed 0 whatever the run seed.
``cifar10`` / ``cifar100``
    From the data folder, the first found of: the python-pickle folder
    (``cifar-10-batches-py/`` / ``cifar-100-python/``), an image folder
    (``cifar10/train/<class>/*.png``, ``cifar10/test/...``), and for CIFAR-10
    the JPEG zip ``cifar10/cifar10_jpg_yoongikim.zip``.
``svhn``
    ``svhn/train_32x32.mat`` and ``svhn/test_32x32.mat`` (label 10 means the
    digit 0 and becomes class 0).
``imagefolder:PATH``
    ``PATH/train/<class>/*`` and ``PATH/test/<class>/*``; without ``test/``, a
    fixed stratified 20 % of ``train/`` is held out (split seed 0).  A relative
    PATH is looked up in the working directory, then in the data folder.
``synthetic`` / ``synthetic:C,H,K[,N_TRAIN[,N_TEST]]``
    Deterministic random data for tests with a learnable class signal;
    default ``3,32,10,512,128``.
``shards:PATH``
    WebDataset tar shards written by ``attnas data pack``: always streamed.

Image folders of at least :data:`attnas.data.stream.STREAM_MIN_IMAGES` images (and ``shards:``)
are not loaded into memory: :func:`load_dataset` returns a
:class:`~attnas.data.stream.StreamingData` whose batches are decoded and augmented in DataLoader
workers.  The prefixes ``stream:`` and ``memory:`` force the choice (``stream:imagefolder:PATH``).

Decoded image files (the JPEG zip, image folders of at least
``CACHE_MIN_IMAGES`` images) are cached as ``.npz`` in ``$ATTNAS_CACHE_DIR``
(default ``~/.cache/attnas``), keyed by the source's path, size and mtime.

Sources whose files are ordered by class (zip, image folders) are shuffled
once with a fixed permutation (seed 0) so that no slice of the training set
is a single class.
"""
from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from attnas.data.paths import folder_candidates, require_file
from attnas.errors import ConfigError, DataFileNotFound, ShapeError

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
CACHE_ENV_VAR = "ATTNAS_CACHE_DIR"
#: Image folders with fewer images are decoded every time instead of cached.
CACHE_MIN_IMAGES = 1000
#: Bump when the cached array layout changes, so old cache files are ignored.
_CACHE_VERSION = 1
#: Seed of the fixed splits/permutations that do not depend on the run seed.
_FIXED_SEED = 0
_HOLDOUT_FRACTION = 0.2


# --------------------------------------------------------------------------- ImageData


@dataclass
class ImageData:
    """A dataset held in memory as uint8 images and int64 labels."""

    name: str
    train_x: torch.Tensor  # uint8 (N, C, H, W)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor  # uint8 (M, C, H, W)
    test_y: torch.Tensor  # int64 (M,)
    num_classes: int
    mean: tuple[float, ...]  # per-channel mean of train_x / 255
    std: tuple[float, ...]  # per-channel std of train_x / 255
    class_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise ShapeError(f"{self.name}: {split}_x must be uint8 (N, C, H, W), "
                                 f"got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.dim() != 1 or len(y) != len(x):
                raise ShapeError(f"{self.name}: {split}_y must be int64 of shape ({len(x)},), "
                                 f"got {y.dtype} {tuple(y.shape)}")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ShapeError(f"{self.name}: train images {tuple(self.train_x.shape[1:])} and test "
                             f"images {tuple(self.test_x.shape[1:])} differ in shape")

    @property
    def in_channels(self) -> int:
        """Number of image channels C."""
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        """Side of the (square) images; a :class:`ShapeError` for non-square ones."""
        h, w = int(self.train_x.shape[2]), int(self.train_x.shape[3])
        if h != w:
            raise ShapeError(f"{self.name}: images are {h}x{w}, but a square image size is required "
                             f"(pass image_size to load_dataset to resize)")
        return h


# --------------------------------------------------------------------------- public API


def dataset_names() -> list[str]:
    """The known dataset names (``imagefolder`` takes ``:PATH``, ``synthetic`` optional ``:C,H,K``)."""
    return sorted([*_LOADERS, "shards"])


def dataset_family(name: Any) -> str | None:
    """What kind of data ``name`` is, for choosing a retraining recipe: ``"cifar100"``,
    ``"imagenet"`` for image folders and shards (the ImageNet-style streamed pipeline: random-resized
    crops at 224 by default), else the loader's name (``"cifar10"``, ``"digits"``, ...); None when
    ``name`` is not a dataset name."""
    if not isinstance(name, str) or not name.strip():
        return None
    base = _split_name(name)[0]
    return "imagenet" if base in ("imagefolder", "shards") else base


def _split_name(name: str) -> tuple[str, str, bool | None]:
    """``(loader, option, force)`` of a dataset name: ``"stream:imagefolder:PATH"`` gives
    ``("imagefolder", "PATH", True)``; ``force`` is None unless ``stream:`` / ``memory:`` forces the
    choice by size."""
    base, _, option = name.strip().partition(":")
    base = base.lower()
    force: bool | None = None
    if base in ("stream", "memory"):
        force = base == "stream"
        base, _, option = option.partition(":")
        base = base.lower()
    return base, option, force


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *,
                 train_subset: int | None = None, test_subset: int | None = None,
                 seed: int = 0, image_size: int | None = None) -> ImageData:
    """Load dataset ``name`` (see the module docstring).

    ``train_subset`` / ``test_subset`` keep a class-balanced random subset of that
    many images, drawn with ``seed``; ``image_size`` resizes (bilinear) to a square
    of that side.  Unknown names raise :class:`ConfigError`, missing files
    :class:`DataFileNotFound`.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"dataset name must be a non-empty string, got {name!r}; "
                          f"known: {_known_text()}")
    base, option, force = _split_name(name)  # force: "stream:NAME" / "memory:NAME" override the choice by size
    if base not in _LOADERS and base != "shards":
        raise ConfigError(f"unknown dataset '{name}'; known: {_known_text()}")
    for label, value in (("train_subset", train_subset), ("test_subset", test_subset),
                         ("image_size", image_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{label} must be a positive integer, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")

    streamed = _streamed(base, option, data_dir, force, name, image_size)
    if streamed is not None:
        from attnas.data.stream import subset

        return subset(streamed, train_subset, test_subset, seed)
    raw = _LOADERS[base](option, data_dir, image_size)
    full_name = base + (":" + option if option else "")
    train_x, train_y, test_x, test_y = raw.train_x, raw.train_y, raw.test_x, raw.test_y
    num_classes = len(raw.class_names)

    if train_subset is not None:
        keep = balanced_subset(train_y, train_subset, seed, num_classes, what="train_subset")
        train_x, train_y = train_x[keep], train_y[keep]
    if test_subset is not None:
        keep = balanced_subset(test_y, test_subset, seed, num_classes, what="test_subset")
        test_x, test_y = test_x[keep], test_y[keep]
    if image_size is not None:
        train_x = resize_images(train_x, image_size)
        test_x = resize_images(test_x, image_size)

    mean, std = channel_stats(train_x)
    return ImageData(name=full_name, train_x=train_x.contiguous(), train_y=train_y.contiguous(),
                     test_x=test_x.contiguous(), test_y=test_y.contiguous(),
                     num_classes=num_classes, mean=mean, std=std, class_names=raw.class_names)


def _streamed(base: str, option: str, data_dir, force: bool | None, name: str, image_size: int | None):
    """The :class:`~attnas.data.stream.StreamingData` for ``shards:PATH`` and for image folders of
    at least ``STREAM_MIN_IMAGES`` images (or with ``stream:``); None for the in-memory path."""
    from attnas.data import stream

    if base == "shards":
        if force is False:
            raise ConfigError("'memory:shards:...' is not supported: tar shards are always streamed "
                              "(use the image folder or dataset they were packed from)")
        root = stream.find_root(option, data_dir, "shards", stream.MANIFEST)
        return stream.load_shards(root, name.strip(), image_size)
    if base == "imagefolder" and force is not False:
        if not option:
            return None  # the in-memory loader's error
        root = stream.find_root(option, data_dir, "imagefolder", "train")
        if force or stream.count_folder_images(root, stream.STREAM_MIN_IMAGES) >= stream.STREAM_MIN_IMAGES:
            return stream.load_folder(root, name.strip(), image_size)
        return None
    if force:
        raise ConfigError(f"'stream:' works with imagefolder:PATH and shards:PATH, not '{base}'; "
                          f"pack it into shards first: attnas data pack SRC --out DIR, then --dataset shards:DIR")
    return None


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 images ``(N, C, H, W)`` to ``size x size``: bilinear on float, then round.

    Downscaling is anti-aliased.  Works in chunks to bound memory.
    """
    if x.dim() != 4 or x.dtype != torch.uint8:
        raise ShapeError(f"resize_images needs uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
    if tuple(x.shape[2:]) == (size, size):
        return x
    down = size < x.shape[2] or size < x.shape[3]
    out = torch.empty((x.shape[0], x.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, x.shape[0], 2048):
        chunk = x[start:start + 2048].float()
        chunk = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=down)
        out[start:start + 2048] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out


def balanced_subset(y: torch.Tensor, n: int, seed: int, num_classes: int | None = None,
                    what: str = "subset") -> torch.Tensor:
    """Sorted indices of ``n`` samples, as equal per class as the class sizes allow.

    Each class gets ``n // K`` (the remainder goes to randomly chosen classes);
    a class too small to fill its share gives all it has and the rest is spread
    over the others.  Drawn with ``seed``.
    """
    total = len(y)
    if n > total:
        raise ConfigError(f"{what}={n} is larger than the {total} samples available")
    k = int(num_classes) if num_classes is not None else int(y.max()) + 1 if total else 0
    gen = torch.Generator().manual_seed(int(seed))
    counts = torch.bincount(y, minlength=k).tolist()
    quota = [0] * k
    remaining = n
    open_classes = [c for c in range(k) if counts[c] > 0]
    while remaining > 0 and open_classes:
        share, extra = divmod(remaining, len(open_classes))
        lucky = set(torch.randperm(len(open_classes), generator=gen)[:extra].tolist())
        still_open = []
        for i, c in enumerate(open_classes):
            give = min(share + (1 if i in lucky else 0), counts[c] - quota[c])
            quota[c] += give
            remaining -= give
            if quota[c] < counts[c]:
                still_open.append(c)
        open_classes = still_open
    picks = []
    for c in range(k):
        if quota[c]:
            members = torch.nonzero(y == c, as_tuple=True)[0]
            picks.append(members[torch.randperm(len(members), generator=gen)[:quota[c]]])
    if not picks:
        return torch.zeros(0, dtype=torch.int64)
    return torch.sort(torch.cat(picks)).values


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images ``x / 255``."""
    c = x.shape[1]
    if x.shape[0] == 0:
        return (0.0,) * c, (1.0,) * c
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for start in range(0, x.shape[0], 4096):
        chunk = x[start:start + 4096].to(torch.float64).div_(255.0)
        s += chunk.sum(dim=(0, 2, 3))
        s2 += chunk.square_().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / count
    std = (s2 / count - mean.square()).clamp_min(0).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))  # constant channel: avoid dividing by 0
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def cache_dir() -> Path:
    """The decode cache folder: ``$ATTNAS_CACHE_DIR`` or ``~/.cache/attnas``."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "attnas"


# --------------------------------------------------------------------------- internals


@dataclass
class _Raw:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: tuple[str, ...]


def _known_text() -> str:
    return ("digits, cifar10, cifar100, svhn, imagefolder:PATH, shards:PATH, "
            "synthetic[:C,H,N_CLASSES[,N_TRAIN[,N_TEST]]] (prefix stream: or memory: to force the "
            "streaming or in-memory path)")


def _to_raw(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
            class_names: tuple[str, ...]) -> _Raw:
    return _Raw(torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.uint8)),
                torch.from_numpy(np.asarray(train_y, dtype=np.int64)),
                torch.from_numpy(np.ascontiguousarray(test_x, dtype=np.uint8)),
                torch.from_numpy(np.asarray(test_y, dtype=np.int64)),
                tuple(class_names))


def _fixed_shuffle(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply a fixed (seed 0) permutation so that class-sorted sources are mixed."""
    perm = np.random.default_rng(_FIXED_SEED).permutation(len(y))
    return x[perm], y[perm]


def _stratified_holdout(y: np.ndarray, fraction: float = _HOLDOUT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Fixed stratified (train_idx, test_idx) split with seed 0."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    counts = np.bincount(y)
    stratify = y if len(counts) > 1 and counts[counts > 0].min() >= 2 else None
    try:
        tr, te = train_test_split(idx, test_size=fraction, random_state=_FIXED_SEED, stratify=stratify)
    except ValueError as exc:  # too few samples for a stratified split
        raise ConfigError(f"cannot hold out {fraction:.0%} of {len(y)} images per class: {exc}") from None
    return np.sort(tr), np.sort(te)


# --- the npz decode cache


def _cached_arrays(kind: str, source: Path, extra: str,
                   build: Callable[[], dict[str, np.ndarray]],
                   stat_paths: list[Path] | None = None) -> dict[str, np.ndarray]:
    """Return ``build()``'s arrays, cached as ``.npz`` keyed by the source files' path+size+mtime."""
    key_parts = [f"v{_CACHE_VERSION}", kind, extra]
    for p in (stat_paths if stat_paths is not None else [source]):
        st = p.stat()
        key_parts.append(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}")
    digest = hashlib.sha1("\n".join(key_parts).encode()).hexdigest()[:20]
    folder = cache_dir()
    path = folder / f"{kind}-{digest}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except Exception as exc:  # corrupt/partial cache file: rebuild it
            warnings.warn(f"ignoring unreadable cache file {path}: {exc}")
    arrays = build()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is not secret
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as exc:
        warnings.warn(f"could not write the dataset cache in {folder} ({exc}); "
                      f"set {CACHE_ENV_VAR} to a writable folder to avoid decoding again")
    return arrays


# --- image decoding


def _decode_image(data: bytes | Path, label: str, image_size: int | None) -> np.ndarray:
    """One image file as uint8 RGB (H, W, 3), optionally resized like :func:`resize_images`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            arr = np.array(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataFileNotFound(f"cannot read image '{label}': {exc}") from None
    if image_size is not None and arr.shape[:2] != (image_size, image_size):
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).unsqueeze(0)
        arr = resize_images(t, image_size)[0].permute(1, 2, 0).numpy()
    return arr


def _stack_images(images: list[np.ndarray], labels: list[str]) -> np.ndarray:
    """Stack (H, W, 3) images to (N, 3, H, W), or a ShapeError naming the first odd one."""
    if not images:
        return np.zeros((0, 3, 1, 1), dtype=np.uint8)
    shape = images[0].shape
    for img, label in zip(images, labels):
        if img.shape != shape:
            raise ShapeError(f"image '{label}' is {img.shape[1]}x{img.shape[0]} but '{labels[0]}' is "
                             f"{shape[1]}x{shape[0]}: all images must share one size, or pass image_size")
    return np.stack(images).transpose(0, 3, 1, 2).copy()


def _list_class_folder(root: Path, class_order: tuple[str, ...] | None) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """Files of ``root/<class>/*`` with their class indices (classes sorted, or ``class_order``)."""
    if not root.is_dir():
        raise DataFileNotFound(f"image folder '{root}' does not exist")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if class_order is None:
        classes = tuple(found)
    else:
        unknown = sorted(set(found) - set(class_order))
        if unknown:
            raise ConfigError(f"folder '{root}' has class folders {unknown} that are not among "
                              f"the classes {list(class_order)}")
        classes = class_order
    files, ys = [], []
    for ci, cname in enumerate(classes):
        cdir = root / cname
        if not cdir.is_dir():
            continue
        for f in sorted(cdir.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(f)
                ys.append(ci)
    if not classes:
        raise DataFileNotFound(f"image folder '{root}' has no class sub-folders (expected '{root}/<class>/*.png')")
    if not files:
        raise DataFileNotFound(f"image folder '{root}' holds no images "
                               f"({', '.join(sorted(IMAGE_EXTENSIONS))}) in its class sub-folders")
    return files, ys, classes


def _load_image_folder(root: Path, image_size: int | None,
                       class_order: tuple[str, ...] | None = None) -> _Raw:
    """``root/train/<class>/*`` and ``root/test/<class>/*`` (or a fixed 20 % holdout)."""
    train_files, train_ys, classes = _list_class_folder(root / "train", class_order)
    test_dir = root / "test"
    if test_dir.is_dir():
        test_files, test_ys, test_classes = _list_class_folder(test_dir, class_order)
        if class_order is None and test_classes != classes:
            extra = sorted(set(test_classes) - set(classes))
            if extra:
                raise ConfigError(f"test folder '{test_dir}' has classes {extra} that '{root / 'train'}' lacks")
            remap = [classes.index(c) for c in test_classes]
            test_ys = [remap[c] for c in test_ys]
    else:
        test_files, test_ys = [], []
    all_files = train_files + test_files

    def build() -> dict[str, np.ndarray]:
        labels = [str(f) for f in all_files]
        images = [_decode_image(f, str(f), image_size) for f in all_files]
        x = _stack_images(images, labels)
        return {"train_x": x[:len(train_files)], "test_x": x[len(train_files):]}

    if len(all_files) >= CACHE_MIN_IMAGES:
        arrays = _cached_arrays("imagefolder", root, f"size={image_size}", build, stat_paths=all_files)
    else:
        arrays = build()
    train_x, test_x = arrays["train_x"], arrays["test_x"]
    train_y, test_y = np.asarray(train_ys, dtype=np.int64), np.asarray(test_ys, dtype=np.int64)
    if not test_files:
        tr, te = _stratified_holdout(train_y)
        train_x, test_x, train_y, test_y = train_x[tr], train_x[te], train_y[tr], train_y[te]
    train_x, train_y = _fixed_shuffle(train_x, train_y)
    test_x, test_y = _fixed_shuffle(test_x, test_y)
    return _to_raw(train_x, train_y, test_x, test_y, classes)


# --- individual datasets


def _no_option(base: str, option: str) -> None:
    if option:
        raise ConfigError(f"dataset '{base}' takes no options, got '{base}:{option}'")


def _load_digits(option: str, data_dir: str | os.PathLike | None, image_size: int | None) -> _Raw:
    _no_option("digits", option)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.rint(bunch.data.reshape(-1, 1, 8, 8) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    y = bunch.target.astype(np.int64)
    tr, te = _stratified_holdout(y)
    return _to_raw(x[tr], y[tr], x[te], y[te], tuple(str(c) for c in range(10)))


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 pickles ``bytes`` at protocol 2, and nothing else."""
    if not isinstance(obj, str) or encoding.lower() not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return obj.encode("latin1", errors)


def _cifar_globals() -> dict[tuple[str, str], Any]:
    """What the CIFAR python-pickle files (and numpy's pickling of arrays) may name: array
    reconstruction, numpy scalars and dtypes, plain containers; nothing that runs code."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric
    allowed: dict[tuple[str, str], Any] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = multiarray._reconstruct
        allowed[(mod, "scalar")] = multiarray.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        if hasattr(numeric, "_frombuffer"):
            allowed[(mod, "_frombuffer")] = numeric._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    for cls in (dict, list, tuple, set, frozenset, bytes, bytearray, str, int, float, complex, bool):
        allowed[("builtins", cls.__name__)] = cls
        allowed[("__builtin__", cls.__name__)] = cls
    allowed[("__builtin__", "unicode")] = str
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


class _CifarUnpickler(pickle.Unpickler):
    """A pickle reader that resolves only :func:`_cifar_globals`: unpickling a file that names
    any other function or class (which could run code) fails instead."""

    def find_class(self, module: str, name: str) -> Any:
        found = _cifar_globals().get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refused to load the Python object '{module}.{name}', which "
                                         "the CIFAR python-pickle format never uses")
        return found


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        try:
            batch = _CifarUnpickler(fh, encoding="bytes").load()
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input
            msg = " ".join(str(exc).split())[:300]
            raise DataFileNotFound(f"cannot read CIFAR batch file '{path}': {type(exc).__name__}: {msg}") from None
    if not isinstance(batch, dict):
        raise DataFileNotFound(f"CIFAR batch file '{path}' is not in the python-pickle format: it holds a "
                               f"{type(batch).__name__}, not a dict")
    return batch


def _pickle_arrays(batch: dict, label_key: bytes, path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(batch[label_key], dtype=np.int64)
    except (KeyError, ValueError) as exc:
        raise DataFileNotFound(f"CIFAR batch file '{path}' is not in the python-pickle format: {exc}") from None
    return x, y


def _cifar_pickle_names(path: Path, key: bytes, fallback: int) -> tuple[str, ...]:
    if path.exists():
        meta = _unpickle(path)
        if key in meta:
            return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[key])
    return tuple(str(i) for i in range(fallback))


def _load_cifar10(option: str, data_dir: str | os.PathLike | None, image_size: int | None) -> _Raw:
    _no_option("cifar10", option)
    found = require_file("cifar-10-batches-py/data_batch_1|cifar10/train|cifar10/cifar10_jpg_yoongikim.zip",
                         data_dir, "CIFAR-10")
    if found.name == "data_batch_1":
        folder = found.parent
        xs, ys = [], []
        for i in range(1, 6):
            p = require_file(f"cifar-10-batches-py/data_batch_{i}", data_dir, "CIFAR-10 training batch")
            x, y = _pickle_arrays(_unpickle(p), b"labels", p)
            xs.append(x)
            ys.append(y)
        p = require_file("cifar-10-batches-py/test_batch", data_dir, "CIFAR-10 test batch")
        test_x, test_y = _pickle_arrays(_unpickle(p), b"labels", p)
        names = _cifar_pickle_names(folder / "batches.meta", b"label_names", 10)
        return _to_raw(np.concatenate(xs), np.concatenate(ys), test_x, test_y, names)
    if found.is_dir():
        classes = CIFAR10_CLASSES if {d.name for d in found.iterdir() if d.is_dir()} <= set(CIFAR10_CLASSES) else None
        return _load_image_folder(found.parent, image_size, classes)
    return _load_cifar10_zip(found)


def _load_cifar10_zip(path: Path) -> _Raw:
    """The YoongiKim CIFAR-10 JPEG zip (``{train,test}/{class}/{NNNN}.jpg``), decoded once and cached."""
    import zipfile

    def build() -> dict[str, np.ndarray]:
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataFileNotFound(f"cannot open CIFAR-10 zip '{path}': {exc}") from None
        with zf:
            entries: dict[str, list[tuple[int, str, str]]] = {"train": [], "test": []}
            for name in zf.namelist():
                parts = name.split("/")
                if len(parts) < 3 or Path(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                split, cname = parts[-3], parts[-2]
                if split not in entries:
                    continue
                if cname not in CIFAR10_CLASSES:
                    raise DataFileNotFound(f"CIFAR-10 zip '{path}': unknown class folder in '{name}'")
                entries[split].append((CIFAR10_CLASSES.index(cname), parts[-1], name))
            out: dict[str, np.ndarray] = {}
            for split, items in entries.items():
                if not items:
                    raise DataFileNotFound(f"CIFAR-10 zip '{path}' has no '{split}/<class>/*.jpg' images")
                items.sort()
                labels = [n for _, _, n in items]
                images = [_decode_image(zf.read(n), f"{path}:{n}", None) for n in labels]
                out[f"{split}_x"] = _stack_images(images, labels)
                out[f"{split}_y"] = np.asarray([c for c, _, _ in items], dtype=np.int64)
        return out

    a = _cached_arrays("cifar10zip", path, "", build)
    train_x, train_y = _fixed_shuffle(a["train_x"], a["train_y"])
    test_x, test_y = _fixed_shuffle(a["test_x"], a["test_y"])
    return _to_raw(train_x, train_y, test_x, test_y, CIFAR10_CLASSES)


def _load_cifar100(option: str, data_dir: str | os.PathLike | None, image_size: int | None) -> _Raw:
    _no_option("cifar100", option)
    found = require_file("cifar-100-python/train|cifar100/train", data_dir, "CIFAR-100")
    if found.is_dir():
        return _load_image_folder(found.parent, image_size)
    train_x, train_y = _pickle_arrays(_unpickle(found), b"fine_labels", found)
    p = require_file("cifar-100-python/test", data_dir, "CIFAR-100 test set")
    test_x, test_y = _pickle_arrays(_unpickle(p), b"fine_labels", p)
    names = _cifar_pickle_names(found.parent / "meta", b"fine_label_names", 100)
    return _to_raw(train_x, train_y, test_x, test_y, names)


def _read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
        x, y = mat["X"], np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    except (KeyError, ValueError, OSError, NotImplementedError) as exc:
        raise DataFileNotFound(f"cannot read SVHN file '{path}' (needs 'X' (32,32,3,N) and 'y'): {exc}") from None
    if x.ndim != 4 or x.shape[2] != 3 or x.shape[3] != len(y):
        raise ShapeError(f"SVHN file '{path}': X has shape {x.shape}, expected (H, W, 3, {len(y)})")
    if len(y) and (y.min() < 0 or y.max() > 10):
        raise ShapeError(f"SVHN file '{path}': labels must be in 0..10, got {y.min()}..{y.max()}")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1), dtype=np.uint8), np.where(y == 10, 0, y)


def _load_svhn(option: str, data_dir: str | os.PathLike | None, image_size: int | None) -> _Raw:
    _no_option("svhn", option)
    train_x, train_y = _read_svhn(require_file("svhn/train_32x32.mat", data_dir, "SVHN training set"))
    test_x, test_y = _read_svhn(require_file("svhn/test_32x32.mat", data_dir, "SVHN test set"))
    return _to_raw(train_x, train_y, test_x, test_y, tuple(str(c) for c in range(10)))


def _load_imagefolder(option: str, data_dir: str | os.PathLike | None, image_size: int | None) -> _Raw:
    if not option:
        raise ConfigError("dataset 'imagefolder' needs a folder: 'imagefolder:PATH' "
                          "with PATH/train/<class>/*.png (and optionally PATH/test/<class>/*)")
    candidates = folder_candidates(option, data_dir)
    for cand in candidates:
        if (cand / "train").is_dir():
            return _load_image_folder(cand, image_size)
    raise DataFileNotFound(f"image folder not found: expected '{option}/train/<class>/' "
                           f"(looked in {', '.join(str(c) for c in candidates)})")


def _parse_synthetic(option: str) -> tuple[int, int, int, int, int]:
    values = [3, 32, 10, 512, 128]
    if option:
        parts = option.split(",")
        try:
            given = [int(p) for p in parts]
        except ValueError:
            given = []
        if not given or len(given) > 5 or any(v < 1 for v in given):
            raise ConfigError(f"bad synthetic options '{option}': expected positive integers "
                              f"'C,H,N_CLASSES[,N_TRAIN[,N_TEST]]', e.g. 'synthetic:3,16,4'")
        values[:len(given)] = given
    return tuple(values)  # type: ignore[return-value]


def _load_synthetic(option: str, data_dir: str | os.PathLike | None, image_size: int | None) -> _Raw:
    """Class prototypes (smooth random patterns) plus pixel noise; the same data every call."""
    c, h, k, n_train, n_test = _parse_synthetic(option)
    gen = torch.Generator().manual_seed(1234 + 7 * c + 131 * h + 1031 * k)
    low = max(2, h // 4)
    protos = torch.randn(k, c, low, low, generator=gen)
    protos = F.interpolate(protos, size=(h, h), mode="bilinear", align_corners=False)
    protos = protos / protos.flatten(1).std(dim=1).clamp_min(1e-6).view(k, 1, 1, 1)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % k
        y = y[torch.randperm(n, generator=gen)]
        brightness = 1.0 + 0.2 * torch.randn(n, 1, 1, 1, generator=gen)
        noise = torch.randn(n, c, h, h, generator=gen)
        x = 128.0 + 45.0 * brightness * protos[y] + 35.0 * noise
        return x.round().clamp(0, 255).to(torch.uint8), y.to(torch.int64)

    train_x, train_y = make(n_train)
    test_x, test_y = make(n_test)
    return _Raw(train_x, train_y, test_x, test_y, tuple(str(i) for i in range(k)))


_LOADERS: dict[str, Callable[[str, str | os.PathLike | None, int | None], _Raw]] = {
    "digits": _load_digits,
    "cifar10": _load_cifar10,
    "cifar100": _load_cifar100,
    "svhn": _load_svhn,
    "imagefolder": _load_imagefolder,
    "synthetic": _load_synthetic,
}
