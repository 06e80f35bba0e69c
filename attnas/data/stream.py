"""Streaming datasets: images decoded and augmented in DataLoader workers, never held in memory.

Two sources:

``imagefolder:PATH`` (streamed when it holds at least :data:`STREAM_MIN_IMAGES` images, or with
the ``stream:`` prefix)
    ``PATH/train/<class>/*`` (ImageNet's ``train/<wnid>/*.JPEG`` layout) and ``PATH/test/<class>/*``
    (or ``PATH/val/<class>/*``); without either, a fixed stratified 20 % of ``train/`` is held out.
    Only the list of file names and labels is kept in memory.
``shards:PATH``
    WebDataset tar shards written by ``attnas data pack`` (``PATH/train-000000.tar`` ...,
    ``PATH/test-000000.tar`` ... and ``PATH/attnas-shards.json``, the manifest with the classes,
    the shard names, their sample counts and labels).  Read with the ``webdataset`` package.

The epoch's order depends only on ``(seed, epoch)``:

- image folders: the same permutation as the in-memory :class:`~attnas.data.loader.Batches`;
- shards: the shards in a seeded order, then a seeded shuffle buffer of
  :data:`SHUFFLE_BUFFER` samples (WebDataset's usual scheme; ``pack`` already mixed the classes).

A batch lists the samples' file names (or their bytes, read in order from the tar shards);
``--workers N`` DataLoader worker processes decode and augment them
(:class:`~attnas.data.transforms.ImageTransform`), so memory does not grow with the dataset.
Resuming at ``(epoch, step)`` (:meth:`StreamBatches.epoch_from`) rebuilds the same order and
skips the first ``step`` batches without decoding them.

Under ``torchrun`` a training batch source gives each process only its slice of every global
batch (the slice :func:`attnas.distributed.shard` would cut), decoded by its own workers;
the images tensor carries the slice (:class:`LocalSlice`) so that ``shard`` keeps it as it is.

A corrupt or truncated image is skipped (the batch is one shorter) and counted; the count is
reported at the end of the epoch, and more than ``max_bad`` (a fraction of the epoch's samples,
default :data:`MAX_BAD_FRACTION`, or ``$ATTNAS_MAX_BAD_IMAGES``) stops the run.  An unreadable
shard stops it at once, naming the shard.
"""
from __future__ import annotations

import json
import os
import random
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from attnas.data.loader import BatchSchedule
from attnas.errors import ConfigError, DataFileNotFound

#: image folders with at least this many images are streamed unless ``memory:`` is asked for
STREAM_MIN_IMAGES = 50_000
#: output side when none is given
DEFAULT_IMAGE_SIZE = 224
#: samples held by the shuffle buffer of a shard stream
SHUFFLE_BUFFER = 2000
#: unreadable images tolerated per epoch, as a fraction of the epoch's samples
MAX_BAD_FRACTION = 0.01
MANIFEST = "attnas-shards.json"
MANIFEST_FORMAT = "attnas-webdataset-shards"
WORKERS_ENV = "ATTNAS_WORKERS"
MAX_BAD_ENV = "ATTNAS_MAX_BAD_IMAGES"
#: ImageNet statistics: the normalisation of streamed image folders too small to sample
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")


def default_workers() -> int:
    """``$ATTNAS_WORKERS``, else one worker per core but one (the training process), at most 8,
    shared by the processes of a torchrun launch on this machine."""
    env = os.environ.get(WORKERS_ENV)
    if env not in (None, ""):
        try:
            n = int(env)
        except ValueError:
            n = -1
        if n < 0:
            raise ConfigError(f"${WORKERS_ENV} must be a non-negative integer, got {env!r}")
        return n
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, min(8, (cores - local) // local if cores > local else 1))


def max_bad_fraction() -> float:
    env = os.environ.get(MAX_BAD_ENV)
    if env in (None, ""):
        return MAX_BAD_FRACTION
    try:
        v = float(env)
    except ValueError:
        v = -1.0
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"${MAX_BAD_ENV} must be a fraction in [0, 1], got {env!r}")
    return v


# --------------------------------------------------------------------------- sources


@dataclass
class FolderSplit:
    """One split of an image folder: file paths and labels (the only per-image state kept)."""

    files: list[str]
    labels: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.files)


@dataclass
class ShardSplit:
    """One split of a shard set: the shard paths, their sample counts and labels in tar order."""

    shards: list[str]
    counts: list[int]
    labels: np.ndarray  # int64, shard-major order

    def __len__(self) -> int:
        return int(sum(self.counts))


class LocalSlice(torch.Tensor):
    """A batch of images that is already this process's slice ``[lo:hi]`` of a global batch of
    ``n`` samples (``keep``: the slice positions that decoded; the others were unreadable).
    The slice survives ``.to(device)`` and friends; :func:`attnas.distributed.shard`
    reads it and returns plain tensors."""

    attnas_slice: tuple[int, int, int, tuple[int, ...] | None]

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **kwargs)
        if func in _KEEP_SLICE and isinstance(out, torch.Tensor) and args and isinstance(args[0], LocalSlice):
            out = out.as_subclass(LocalSlice)
            out.attnas_slice = args[0].attnas_slice
        return out


_KEEP_SLICE = {torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu, torch.Tensor.contiguous,
               torch.Tensor.pin_memory, torch.Tensor.float, torch.Tensor.detach}


@dataclass
class StreamingData:
    """A dataset whose images are read from disk batch by batch (the attributes the tasks read of
    :class:`~attnas.data.datasets.ImageData`, without ``train_x`` / ``test_x``)."""

    name: str
    kind: str  # "folder" or "shards"
    train: FolderSplit | ShardSplit
    test: FolderSplit | ShardSplit
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: int
    class_names: tuple[str, ...] = field(default=())
    workers: int | None = None  # None: default_workers() when batches are made
    max_bad: float | None = None  # None: max_bad_fraction()
    streaming: bool = True

    def __post_init__(self) -> None:
        self.train_y = torch.from_numpy(np.asarray(self.train.labels, dtype=np.int64))
        self.test_y = torch.from_numpy(np.asarray(self.test.labels, dtype=np.int64))

    @property
    def in_channels(self) -> int:
        return 3

    @property
    def image_size(self) -> int:
        return self.size

    @property
    def train_x(self):
        raise ConfigError(f"{self.name} is streamed from disk and has no in-memory images "
                          f"(use 'memory:{self.name.removeprefix('stream:')}' for a small dataset)")

    test_x = train_x


def is_streaming(data: Any) -> bool:
    return isinstance(data, StreamingData)


# --------------------------------------------------------------------------- loading


def list_folder(root: Path) -> tuple[list[str], list[int], tuple[str, ...]]:
    """``root/<class>/*`` image files (sorted) and class indices; classes sorted by name."""
    if not root.is_dir():
        raise DataFileNotFound(f"image folder '{root}' does not exist")
    classes = tuple(sorted(d.name for d in os.scandir(root) if d.is_dir() and not d.name.startswith(".")))
    if not classes:
        raise DataFileNotFound(f"image folder '{root}' has no class sub-folders (expected '{root}/<class>/*.JPEG')")
    files: list[str] = []
    ys: list[int] = []
    for ci, c in enumerate(classes):
        names = sorted(e.name for e in os.scandir(root / c)
                       if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS)
        files.extend(str(root / c / n) for n in names)
        ys.extend([ci] * len(names))
    if not files:
        raise DataFileNotFound(f"image folder '{root}' holds no images in its class sub-folders")
    return files, ys, classes


def folder_splits(root: Path) -> tuple[FolderSplit, FolderSplit, tuple[str, ...]]:
    """Train/test splits of an image folder (``test/`` or ``val/``, else a fixed 20 % holdout)."""
    files, ys, classes = list_folder(root / "train")
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    y = np.asarray(ys, dtype=np.int64)
    if test_dir is not None:
        tfiles, tys, tclasses = list_folder(test_dir)
        extra = sorted(set(tclasses) - set(classes))
        if extra:
            raise ConfigError(f"test folder '{test_dir}' has classes {extra[:5]} that '{root / 'train'}' lacks")
        remap = np.asarray([classes.index(c) for c in tclasses], dtype=np.int64)
        return FolderSplit(files, y), FolderSplit(tfiles, remap[np.asarray(tys, dtype=np.int64)]), classes
    from attnas.data.datasets import _stratified_holdout

    tr, te = _stratified_holdout(y)
    return (FolderSplit([files[i] for i in tr], y[tr]), FolderSplit([files[i] for i in te], y[te]), classes)


def count_folder_images(root: Path, limit: int) -> int:
    """Images in ``root/train/<class>/`` (and test/val), counting stops at ``limit``."""
    n = 0
    for split in ("train", "test", "val"):
        d = root / split
        if not d.is_dir():
            continue
        for c in os.scandir(d):
            if c.is_dir():
                n += sum(1 for e in os.scandir(c.path) if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS)
                if n >= limit:
                    return n
    return n


def sample_stats(files: Sequence[str], n: int = 256) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std (of pixel / 255) over a fixed sample (seed 0) of ``n`` image files."""
    rng = np.random.default_rng(0)
    pick = rng.choice(len(files), size=min(n, len(files)), replace=False) if files else []
    blobs = []
    for i in pick:
        try:
            blobs.append(_read_file(files[int(i)]))
        except OSError:
            continue
    return image_stats(blobs)


def image_stats(blobs: Sequence[bytes]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std (of pixel / 255) of encoded images, each decoded with its shorter side
    at least 64 (JPEG DCT scaling); unreadable ones are left out; ImageNet's values when none."""
    from attnas.data.transforms import BadImage, decode

    s = np.zeros(3)
    s2 = np.zeros(3)
    count = 0
    for data in blobs:
        try:
            img, _ = decode(data, min_side=64)
        except BadImage:
            continue
        px = img.reshape(-1, 3).astype(np.float64) / 255.0
        s += px.sum(0)
        s2 += (px ** 2).sum(0)
        count += len(px)
    if count == 0:
        return IMAGENET_MEAN, IMAGENET_STD
    mean = s / count
    std = np.sqrt(np.maximum(s2 / count - mean ** 2, 0))
    std = np.where(std > 0, std, 1.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def load_folder(root: Path, name: str, image_size: int | None) -> StreamingData:
    train, test, classes = folder_splits(root)
    mean, std = sample_stats(train.files)
    return StreamingData(name=name, kind="folder", train=train, test=test, num_classes=len(classes),
                         mean=mean, std=std, size=int(image_size or DEFAULT_IMAGE_SIZE), class_names=classes)


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.is_file():
        raise DataFileNotFound(f"'{root}' is not a shard folder made by 'attnas data pack': no {MANIFEST} "
                               f"(make one with: attnas data pack SRC --out {root})")
    try:
        man = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataFileNotFound(f"cannot read shard manifest '{path}': {exc}") from None
    if not isinstance(man, dict) or man.get("format") != MANIFEST_FORMAT:
        raise DataFileNotFound(f"'{path}' is not an attnas shard manifest (format {MANIFEST_FORMAT!r})")
    return man


def load_shards(root: Path, name: str, image_size: int | None) -> StreamingData:
    man = read_manifest(root)
    splits = {}
    try:
        classes = tuple(str(c) for c in man["classes"])
        for split in ("train", "test"):
            shards, counts, labels = [], [], []
            for s in man["splits"][split]:
                p = root / str(s["name"])
                if not p.is_file():
                    raise DataFileNotFound(f"shard '{p}' listed in {root / MANIFEST} is missing")
                ys = [int(v) for v in s["labels"]]
                shards.append(str(p))
                counts.append(len(ys))
                labels.extend(ys)
            lab = np.asarray(labels, dtype=np.int64)
            if len(lab) and (lab.min() < 0 or lab.max() >= len(classes)):
                raise DataFileNotFound(f"{root / MANIFEST}: {split} labels outside 0..{len(classes) - 1}")
            splits[split] = ShardSplit(shards, counts, lab)
        mean = tuple(float(v) for v in man.get("mean", IMAGENET_MEAN))
        std = tuple(float(v) for v in man.get("std", IMAGENET_STD))
        native = man.get("image_size")
    except (KeyError, TypeError, ValueError) as exc:
        raise DataFileNotFound(f"malformed shard manifest '{root / MANIFEST}': {type(exc).__name__}: {exc}") from None
    if not len(splits["train"]):
        raise DataFileNotFound(f"shard folder '{root}' has no training samples")
    size = int(image_size or native or DEFAULT_IMAGE_SIZE)
    return StreamingData(name=name, kind="shards", train=splits["train"], test=splits["test"],
                         num_classes=len(classes), mean=mean, std=std, size=size, class_names=classes)


def find_root(option: str, data_dir, what: str, marker: str) -> Path:
    from attnas.data.paths import folder_candidates

    if not option:
        raise ConfigError(f"dataset '{what}' needs a folder: '{what}:PATH'")
    candidates = folder_candidates(option, data_dir)
    for cand in candidates:
        if (cand / marker).exists():
            return cand
    raise DataFileNotFound(f"{what} folder not found: expected '{option}/{marker}' "
                           f"(looked in {', '.join(str(c) for c in candidates)})")


def subset(data: StreamingData, train_subset: int | None, test_subset: int | None, seed: int) -> StreamingData:
    """Class-balanced subsets (as :func:`~attnas.data.datasets.balanced_subset`), keeping only
    the file list / the shards' sample positions of the chosen samples."""
    from attnas.data.datasets import balanced_subset

    def cut(split, n):
        if n is None:
            return split
        keep = balanced_subset(torch.from_numpy(np.asarray(split.labels)), n, seed, data.num_classes,
                               what="subset").numpy()
        if isinstance(split, FolderSplit):
            return FolderSplit([split.files[i] for i in keep], split.labels[keep])
        return _ShardSubset(split, keep)

    data.train = cut(data.train, train_subset)
    data.test = cut(data.test, test_subset)
    data.__post_init__()
    return data


class _ShardSubset(ShardSplit):
    """Some of the samples of a :class:`ShardSplit` (sample ids in shard-major order)."""

    def __init__(self, full: ShardSplit, keep: np.ndarray) -> None:
        keep = np.sort(np.asarray(keep, dtype=np.int64))
        super().__init__(full.shards, full.counts, full.labels[keep])
        self.keep = keep

    def __len__(self) -> int:
        return len(self.keep)


# --------------------------------------------------------------------------- batches


def _read_file(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


class _Decoder(torch.utils.data.Dataset):
    """What a worker does with one entry of a batch: decode + transform an item, or pass the
    batch header through."""

    def __init__(self, transform) -> None:
        self.transform = transform

    def __getitem__(self, item):
        if item[0] == "meta":
            return item
        _, source, label, seed = item
        try:
            data = _read_file(source) if isinstance(source, str) else source
            return ("ok", self.transform(data, seed), label)
        except OSError as exc:
            return ("bad", source if isinstance(source, str) else f"sample {label}", " ".join(str(exc).split())[:200])
        except Exception as exc:  # noqa: BLE001 - BadImage and any decoder error: skip the image
            name = source if isinstance(source, str) else "<tar member>"
            return ("bad", name, " ".join(str(exc).split())[:200])

    def __len__(self) -> int:  # the batch sampler, not the length, drives the loader
        return 0


def _collate(entries):
    meta = entries[0]
    xs, ys, bad = [], [], []
    keep = []
    for pos, e in enumerate(entries[1:]):
        if e[0] == "ok":
            xs.append(torch.from_numpy(e[1]))
            ys.append(e[2])
            keep.append(pos)
        else:
            bad.append(f"{e[1]} ({e[2]})")
    x = torch.stack(xs) if xs else torch.zeros(0)
    return meta, x, torch.tensor(ys, dtype=torch.int64), keep, bad


def _worker_init(_: int) -> None:
    """One thread per worker; and close the regular files the worker inherited from the training
    process by ``fork`` (e.g. the run folder's ``.lock``): a killed run's orphaned workers would
    otherwise hold its lock for a few seconds and the ``--resume`` would be refused."""
    import stat

    torch.set_num_threads(1)
    try:
        fds = [int(f) for f in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd <= 2:
            continue
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and not os.readlink(f"/proc/self/fd/{fd}").startswith("/dev/shm"):
                os.close(fd)
        except OSError:
            continue


class StreamBatches(BatchSchedule):
    """Mini-batches of a streamed split, with the interface of :class:`~attnas.data.loader.Batches`
    (``__len__``, ``num_samples``, ``epoch``, ``epoch_from``).  Yields ``(x, y)``: float32 images
    already augmented and normalised, int64 labels."""

    def __init__(self, data: StreamingData, split: str, indices: torch.Tensor | None, batch_size: int,
                 shuffle: bool, seed: int, drop_last: bool = False, workers: int | None = None) -> None:
        from attnas.data.transforms import ImageTransform

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.data, self.split = data, split
        self.source = data.train if split == "train" else data.test
        n = len(self.source)
        if indices is None:
            idx = np.arange(n, dtype=np.int64)
        else:
            idx = torch.as_tensor(indices).to(device="cpu", dtype=torch.int64).reshape(-1).numpy()
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise ConfigError(f"indices must lie in [0, {n}), got {idx.min()}..{idx.max()}")
        self.indices = idx
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, bool(shuffle), int(seed), bool(drop_last)
        self.workers = workers if workers is not None else (data.workers if data.workers is not None
                                                            else default_workers())
        # training batches (shuffled) are augmented; the others get the evaluation transform
        self.transform = ImageTransform(data.size, data.mean, data.std, train=self.shuffle)
        self.max_bad = data.max_bad if data.max_bad is not None else max_bad_fraction()
        self.bad_last_epoch = 0
        self.bad_examples: list[str] = []

    # ------------------------------------------------------------------ order
    def order(self, epoch: int) -> np.ndarray:
        """Sample positions (in the split) of ``epoch``, in the order they are served."""
        from attnas.data.loader import _epoch_seed

        if isinstance(self.source, ShardSplit):
            return np.fromiter((pos for pos, _ in self._shard_stream(epoch, with_bytes=False)), dtype=np.int64,
                               count=len(self.indices))
        if not self.shuffle:
            return self.indices
        gen = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        return self.indices[torch.randperm(len(self.indices), generator=gen).numpy()]

    def _shard_stream(self, epoch: int, with_bytes: bool = True) -> Iterator[tuple[int, bytes | None]]:
        """(sample position in the split, image bytes) in the epoch's order: the shards in a seeded
        order, the samples of ``indices`` only, through a seeded shuffle buffer."""
        from attnas.data.loader import _epoch_seed

        src: ShardSplit = self.source  # type: ignore[assignment]
        ids = getattr(src, "keep", None)
        wanted = np.zeros(len(src.labels) if ids is None else int(sum(src.counts)), dtype=bool)
        full_ids = self.indices if ids is None else ids[self.indices]
        wanted[full_ids] = True
        # position in the split (what the labels/indices count) of every full sample id
        position = np.full(len(wanted), -1, dtype=np.int64)
        if ids is None:
            position[:] = np.arange(len(wanted))
        else:
            position[ids] = np.arange(len(ids))
        starts = np.concatenate([[0], np.cumsum(src.counts)])
        shard_order = list(range(len(src.shards)))
        rng = None
        if self.shuffle:
            rng = random.Random(_epoch_seed(self.seed, epoch))
            rng.shuffle(shard_order)

        def samples():
            for si in shard_order:
                lo, hi = int(starts[si]), int(starts[si + 1])
                if not wanted[lo:hi].any():
                    continue
                if not with_bytes:
                    for fid in range(lo, hi):
                        if wanted[fid]:
                            yield int(position[fid]), None
                    continue
                for k, data in enumerate(read_shard(src.shards[si], hi - lo)):
                    if wanted[lo + k]:
                        yield int(position[lo + k]), data

        if rng is None:
            yield from samples()
            return
        buf: list[tuple[int, bytes | None]] = []
        for s in samples():
            if len(buf) < SHUFFLE_BUFFER:
                buf.append(s)
                continue
            j = rng.randrange(len(buf))
            yield buf[j]
            buf[j] = s
        rng.shuffle(buf)
        yield from buf

    # ------------------------------------------------------------------ iteration
    def _local_range(self, n: int) -> tuple[int, int]:
        from attnas import distributed

        if not self.shuffle or not distributed.is_distributed():
            return 0, n
        w, r = distributed.world_size(), distributed.rank()
        return r * n // w, (r + 1) * n // w

    def _item_batches(self, epoch: int, start_step: int) -> Iterator[list]:
        from attnas.data.loader import _epoch_seed

        b, steps = self.batch_size, len(self)
        labels = self.source.labels
        aug_seed = _epoch_seed(self.seed + 7_777, epoch)
        if isinstance(self.source, ShardSplit):
            stream = self._shard_stream(epoch, with_bytes=True)
            chunks = ([next(stream) for _ in range(min(b, len(self.indices) - step * b))] for step in range(steps))
        else:
            order = self.order(epoch)
            files = self.source.files
            chunks = ([(int(p), files[int(p)]) for p in order[step * b:(step + 1) * b]] for step in range(steps))
        for step, chunk in enumerate(chunks):
            if step < start_step:
                continue  # read (shards) or listed, never decoded
            n = len(chunk)
            lo, hi = self._local_range(n)
            meta = ("meta", step, lo, hi, n, [int(labels[p]) for p, _ in chunk])
            yield [meta] + [("item", src, int(labels[p]), (aug_seed + 1_000_003 * int(p)) % (2 ** 63))
                            for p, src in chunk[lo:hi]]

    def _serve(self, epoch: int, start_step: int, steps: int):
        return self._run(epoch, start_step)

    def _loader(self, batches):
        from torch.utils.data import DataLoader

        kw: dict[str, Any] = {}
        if self.workers > 0:
            kw = dict(num_workers=self.workers, worker_init_fn=_worker_init, prefetch_factor=2,
                      multiprocessing_context="fork" if sys.platform.startswith("linux") else None)
        # its own generator: creating the loader draws a seed from it, not from the global RNG the
        # training draws from (the augmentation is seeded per sample, not by that seed)
        return DataLoader(_Decoder(self.transform), batch_sampler=_Once(batches), collate_fn=_collate,
                          generator=torch.Generator().manual_seed(self.seed), **kw)

    def _run(self, epoch: int, start_step: int):
        from attnas import distributed

        bad_total, examples = 0, []
        limit = self.max_bad * max(1, self.num_samples)
        try:
            for meta, x, y, keep, bad in self._loader(self._item_batches(epoch, start_step)):
                _, step, lo, hi, n, all_labels = meta
                if bad:
                    bad_total += len(bad)
                    examples.extend(bad[: max(0, 3 - len(examples))])
                    if bad_total > limit:
                        raise DataFileNotFound(
                            f"{self.data.name}: {bad_total} unreadable images in epoch {epoch} "
                            f"(more than {self.max_bad:.2%} of {self.num_samples}); first: {examples[0]}")
                if (lo, hi) != (0, n):  # this process's slice of a global batch (torchrun, training)
                    x = x.as_subclass(LocalSlice)
                    x.attnas_slice = (lo, hi, n, None if len(keep) == hi - lo else tuple(keep))
                    yield x, torch.tensor(all_labels, dtype=torch.int64)
                    continue
                if not len(y) and not distributed.is_distributed():
                    continue  # every image of the batch was unreadable
                yield x, y
        except ShardError as exc:
            raise DataFileNotFound(str(exc)) from None
        self.bad_last_epoch, self.bad_examples = bad_total, examples
        if bad_total:
            print(f"attnas: warning: {self.data.name} {self.split} epoch {epoch}: skipped {bad_total} unreadable "
                  f"image(s) of {self.num_samples} (first: {examples[0]})", file=sys.stderr)


class _Once:
    """An iterable over a generator of batches (DataLoader's batch_sampler)."""

    def __init__(self, gen) -> None:
        self.gen = gen

    def __iter__(self):
        return self.gen


class ShardError(Exception):
    pass


def read_shard(path: str, expected: int) -> Iterator[bytes]:
    """The image bytes of the samples of one tar shard, in order (webdataset's tar reader);
    an unreadable or short shard is a :class:`ShardError` naming it."""
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    count = 0
    try:
        with open(path, "rb") as fh:
            files = (dict(f, __url__=path) for f in tar_file_iterator(fh))
            for sample in group_by_keys(files):
                data = next((sample[k] for k in _IMAGE_KEYS if k in sample), None)
                if data is None:
                    raise ShardError(f"shard '{path}': sample '{sample.get('__key__')}' has no image "
                                     f"({', '.join(_IMAGE_KEYS)})")
                count += 1
                if count > expected:
                    raise ShardError(f"shard '{path}' holds more samples than its manifest lists ({expected})")
                yield data
    except ShardError:
        raise
    except (OSError, tarfile.TarError, ValueError, EOFError) as exc:
        raise ShardError(f"cannot read shard '{path}': {' '.join(str(exc).split())[:200]}") from None
    if count != expected:
        raise ShardError(f"shard '{path}' holds {count} samples but its manifest lists {expected} "
                         "(truncated or replaced?)")
