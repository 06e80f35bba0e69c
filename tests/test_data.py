"""Tests of attnas.data: datasets, batching and augmentation.

Real-data tests read ``$ATTNAS_DATA_DIR`` (or ``../shared/data`` next to the
repository, when present) and are skipped otherwise.  The first CIFAR-10 run
decodes the JPEG zip and caches it (``$ATTNAS_CACHE_DIR``, default
``~/.cache/attnas``); later runs load the cache.
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attnas.data import (
    BatchAugment,
    Batches,
    ImageData,
    dataset_names,
    default_augment,
    load_dataset,
    split_indices,
)
from attnas.data import datasets as ds
from attnas.errors import AttnasError, ConfigError, DataFileNotFound, ShapeError

REPO_ROOT = Path(__file__).resolve().parents[1]
CIFAR10_ZIP = "cifar10/cifar10_jpg_yoongikim.zip"


def real_data_dir() -> Path | None:
    env = os.environ.get("ATTNAS_DATA_DIR")
    if env:
        return Path(env)
    fallback = REPO_ROOT.parent / "shared" / "data"
    return fallback if fallback.is_dir() else None


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ATTNAS_CACHE_DIR", str(cache))
    return cache


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


# --------------------------------------------------------------------------- datasets


def test_digits_shapes_dtypes_classes():
    d = load_dataset("digits")
    assert isinstance(d, ImageData) and d.name == "digits"
    assert d.train_x.shape == (1437, 1, 8, 8) and d.test_x.shape == (360, 1, 8, 8)
    assert d.train_x.dtype == torch.uint8 and d.train_y.dtype == torch.int64
    assert d.num_classes == 10 and d.in_channels == 1 and d.image_size == 8
    assert int(d.train_x.max()) == 255 and int(d.train_x.min()) == 0
    assert set(d.train_y.tolist()) == set(range(10)) == set(d.test_y.tolist())
    # stratified: every class has 17 or 18 test images (20 % of ~180)
    assert d.test_y.bincount().min() >= 35 and d.test_y.bincount().max() <= 37
    expected_mean = d.train_x.double().div(255).mean().item()
    assert d.mean[0] == pytest.approx(expected_mean, abs=1e-9)
    assert d.std[0] == pytest.approx(d.train_x.double().div(255).std(unbiased=False).item(), abs=1e-9)
    # the split does not depend on the run seed
    assert torch.equal(load_dataset("digits", seed=5).test_x, d.test_x)


def test_unknown_dataset_lists_known_names():
    assert {"digits", "cifar10", "cifar100", "svhn", "imagefolder", "synthetic"} <= set(dataset_names())
    with pytest.raises(ConfigError) as err:
        load_dataset("mnist")
    for name in ("digits", "cifar10", "svhn", "imagefolder:PATH", "synthetic"):
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="imagefolder:PATH"):
        load_dataset("imagefolder")
    with pytest.raises(ConfigError, match="train_subset"):
        load_dataset("digits", train_subset=0)
    with pytest.raises(ConfigError, match="larger than"):
        load_dataset("digits", train_subset=10_000)
    with pytest.raises(ConfigError, match="synthetic"):
        load_dataset("synthetic:3,x")


def test_train_subset_is_class_balanced_and_seeded():
    a = load_dataset("digits", train_subset=100, test_subset=50, seed=1)
    assert a.train_x.shape[0] == 100 and a.test_x.shape[0] == 50
    assert a.train_y.bincount(minlength=10).tolist() == [10] * 10
    assert a.test_y.bincount(minlength=10).tolist() == [5] * 10
    b = load_dataset("digits", train_subset=100, test_subset=50, seed=1)
    c = load_dataset("digits", train_subset=100, test_subset=50, seed=2)
    assert torch.equal(a.train_x, b.train_x)
    assert not torch.equal(a.train_x, c.train_x)
    # uneven counts: 10 classes, 13 samples -> 1 or 2 per class
    counts = load_dataset("digits", train_subset=13).train_y.bincount(minlength=10)
    assert counts.sum() == 13 and counts.min() >= 1 and counts.max() <= 2
    # a too-small class gives what it has; the rest goes to the others
    y = torch.tensor([0] * 2 + [1] * 50 + [2] * 50)
    keep = ds.balanced_subset(y, 30, seed=0)
    assert y[keep].bincount().tolist() == [2, 14, 14]


def test_image_size_resizes_and_non_square_is_shape_error():
    d = load_dataset("digits", image_size=16, train_subset=20)
    assert d.train_x.shape == (20, 1, 16, 16) and d.test_x.shape[1:] == (1, 16, 16)
    assert d.image_size == 16 and d.train_x.dtype == torch.uint8
    # a constant image stays constant under bilinear resizing
    x = torch.full((2, 3, 7, 7), 77, dtype=torch.uint8)
    assert torch.equal(ds.resize_images(x, 12), torch.full((2, 3, 12, 12), 77, dtype=torch.uint8))
    wide = ImageData("wide", torch.zeros(2, 1, 4, 6, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64),
                     torch.zeros(1, 1, 4, 6, dtype=torch.uint8), torch.zeros(1, dtype=torch.int64),
                     1, (0.0,), (1.0,))
    with pytest.raises(ShapeError, match="4x6"):
        _ = wide.image_size


def test_synthetic_is_deterministic_and_learnable():
    d = load_dataset("synthetic")
    assert d.train_x.shape == (512, 3, 32, 32) and d.test_x.shape == (128, 3, 32, 32)
    assert d.num_classes == 10
    assert torch.equal(d.train_x, load_dataset("synthetic").train_x)
    s = load_dataset("synthetic:3,16,4")
    assert s.train_x.shape[1:] == (3, 16, 16) and s.num_classes == 4
    assert s.train_y.bincount().tolist() == [128] * 4
    g = load_dataset("synthetic:1,8,3,60,30")
    assert g.train_x.shape == (60, 1, 8, 8) and g.test_x.shape == (30, 1, 8, 8)
    # class means differ, and a nearest-class-mean classifier beats chance by far
    x = d.train_x.float().flatten(1)
    means = torch.stack([x[d.train_y == k].mean(0) for k in range(10)])
    assert torch.cdist(means, means).fill_diagonal_(1e9).min() > 50
    pred = torch.cdist(d.test_x.float().flatten(1), means).argmin(1)
    assert (pred == d.test_y).float().mean() > 0.8


def test_svhn_from_tiny_mat(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    (tmp_path / "svhn").mkdir()
    xs = {}
    for split, n in (("train", 12), ("test", 5)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # 1..10, 10 = digit 0
        savemat(tmp_path / "svhn" / f"{split}_32x32.mat", {"X": x, "y": y})
        xs[split] = (x, y)
    d = load_dataset("svhn", tmp_path)
    assert d.train_x.shape == (12, 3, 32, 32) and d.test_x.shape == (5, 3, 32, 32)
    assert d.train_x.dtype == torch.uint8 and d.num_classes == 10
    x, y = xs["train"]
    assert d.train_y.tolist() == [v % 10 for v in y.reshape(-1).tolist()]
    assert 0 in d.train_y.tolist() and 10 not in d.train_y.tolist()
    # pixel (row, col, channel) of image i lands at [i, channel, row, col]
    assert int(d.train_x[7, 2, 5, 9]) == int(x[5, 9, 2, 7])
    assert default_augment(d).flip is False


def test_imagefolder_with_and_without_test(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    for split, n in (("train", 5), ("test", 2)):
        for cname in ("dog", "cat"):
            for i in range(n):
                _write_png(root / split / cname / f"{i}.png", rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    _write_png(root / "train" / "cat" / "gray.png", np.full((6, 6), 200, dtype=np.uint8))  # L -> RGB
    d = load_dataset(f"imagefolder:{root}")
    assert d.class_names == ("cat", "dog") and d.num_classes == 2
    assert d.train_x.shape == (11, 3, 6, 6) and d.test_x.shape == (4, 3, 6, 6)
    assert d.train_y.bincount().tolist() == [6, 5]
    assert d.test_y.bincount().tolist() == [2, 2]
    gray = (d.train_x == 200).flatten(1).all(1)
    assert gray.sum() == 1 and int(d.train_y[gray]) == 0  # the gray image is a cat, as RGB
    assert default_augment(d).flip is True
    # relative PATH resolves against the data folder
    assert load_dataset("imagefolder:pets", tmp_path).train_x.shape == (11, 3, 6, 6)
    # no test/: a fixed stratified 20 % holdout
    only_train = tmp_path / "only"
    for cname in ("a", "b"):
        for i in range(10):
            _write_png(only_train / "train" / cname / f"{i}.png", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    h = load_dataset(f"imagefolder:{only_train}")
    assert h.train_y.bincount().tolist() == [8, 8] and h.test_y.bincount().tolist() == [2, 2]
    with pytest.raises(DataFileNotFound, match="nowhere"):
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}")


def test_imagefolder_size_mismatch(tmp_path):
    root = tmp_path / "mixed"
    _write_png(root / "train" / "a" / "0.png", np.zeros((8, 8, 3), dtype=np.uint8))
    _write_png(root / "train" / "a" / "1.png", np.zeros((8, 8, 3), dtype=np.uint8))
    _write_png(root / "train" / "b" / "odd.png", np.zeros((10, 8, 3), dtype=np.uint8))
    _write_png(root / "test" / "a" / "0.png", np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(ShapeError) as err:
        load_dataset(f"imagefolder:{root}")
    assert "odd.png" in str(err.value) and "image_size" in str(err.value)
    d = load_dataset(f"imagefolder:{root}", image_size=5)
    assert d.train_x.shape == (3, 3, 5, 5) and d.test_x.shape == (1, 3, 5, 5)


def test_missing_cifar10_names_file_and_folder(tmp_path, monkeypatch):
    with pytest.raises(DataFileNotFound) as err:
        load_dataset("cifar10", tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and CIFAR10_ZIP in msg and "cifar-10-batches-py" in msg
    assert "\n" not in msg
    monkeypatch.delenv("ATTNAS_DATA_DIR", raising=False)
    with pytest.raises(DataFileNotFound, match="ATTNAS_DATA_DIR"):
        load_dataset("cifar10")
    with pytest.raises(DataFileNotFound, match="svhn/train_32x32.mat"):
        load_dataset("svhn", tmp_path)


def test_cifar10_from_pickle_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                 b"labels": list(np.arange(20) % 10)}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [c.encode() for c in ds.CIFAR10_CLASSES]}, fh)
    d = load_dataset("cifar10", tmp_path)
    assert d.train_x.shape == (100, 3, 32, 32) and d.test_x.shape == (20, 3, 32, 32)
    assert d.class_names == ds.CIFAR10_CLASSES
    with open(folder / "data_batch_1", "rb") as fh:
        first = pickle.load(fh)
    assert torch.equal(d.train_x[0].flatten(), torch.from_numpy(first[b"data"][0]))


def _fake_cifar_zip(path: Path, per_class: dict[str, int]) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for split, n in per_class.items():
            for cname in ds.CIFAR10_CLASSES:
                for i in range(n):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
                    zf.writestr(f"{split}/{cname}/{i:04d}.jpg", buf.getvalue())


def test_cifar10_zip_is_decoded_once_and_cached(tmp_path, tmp_cache, monkeypatch):
    (tmp_path / "cifar10").mkdir()
    _fake_cifar_zip(tmp_path / CIFAR10_ZIP, {"train": 3, "test": 1})
    d = load_dataset("cifar10", tmp_path)
    assert d.train_x.shape == (30, 3, 32, 32) and d.test_x.shape == (10, 3, 32, 32)
    assert d.train_y.bincount().tolist() == [3] * 10 and d.class_names == ds.CIFAR10_CLASSES
    cached = list(tmp_cache.glob("*.npz"))
    assert len(cached) == 1 and not list(tmp_cache.glob("*.tmp"))

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(ds, "_decode_image", no_decode)
    again = load_dataset("cifar10", tmp_path)
    assert torch.equal(again.train_x, d.train_x) and torch.equal(again.test_y, d.test_y)
    # a changed source file (new mtime) is decoded again
    os.utime(tmp_path / CIFAR10_ZIP, ns=(1_000_000_000, 1_000_000_000))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_real_zip_subset():
    root = real_data_dir()
    if root is None or not (root / CIFAR10_ZIP).is_file():
        pytest.skip(f"real CIFAR-10 zip not found: set ATTNAS_DATA_DIR to a folder with {CIFAR10_ZIP}")
    d = load_dataset("cifar10", root, train_subset=2000, test_subset=500, seed=0)
    assert d.train_x.shape == (2000, 3, 32, 32) and d.test_x.shape == (500, 3, 32, 32)
    assert d.train_y.bincount().tolist() == [200] * 10
    assert d.test_y.bincount().tolist() == [50] * 10
    assert d.mean == pytest.approx((0.491, 0.482, 0.447), abs=0.015)
    assert d.image_size == 32 and d.in_channels == 3
    reference = root / "cifar10" / "cifar10_test_from_jpg_uint8.npz"
    if reference.is_file():  # the full test set matches the reference decode pixel for pixel (per class sums)
        full = load_dataset("cifar10", root, train_subset=10)
        with np.load(reference) as ref:
            ref_x = torch.from_numpy(ref["x_test"]).permute(0, 3, 1, 2)
            ref_y = torch.from_numpy(ref["y_test"].astype(np.int64))
        for k in range(10):
            assert full.test_x[full.test_y == k].sum() == ref_x[ref_y == k].sum()


# --------------------------------------------------------------------------- loader


def test_split_indices_disjoint_and_covering():
    a, b = split_indices(101, 0.5, seed=3)
    assert len(a) == 50 and len(b) == 51 and a.dtype == torch.int64
    assert sorted(torch.cat([a, b]).tolist()) == list(range(101))
    a2, _ = split_indices(101, 0.5, seed=3)
    assert torch.equal(a, a2)
    assert not torch.equal(a, split_indices(101, 0.5, seed=4)[0])
    assert len(split_indices(10, 0.0, 0)[0]) == 0 and len(split_indices(10, 1.0, 0)[1]) == 0
    with pytest.raises(ConfigError):
        split_indices(10, 1.5, 0)


def test_batches_reproducible_and_resumable():
    x = torch.arange(23, dtype=torch.uint8).view(23, 1, 1, 1).expand(23, 1, 2, 2).contiguous()
    y = torch.arange(23, dtype=torch.int64)
    b = Batches(x, y, None, batch_size=5, shuffle=True, seed=7)
    assert len(b) == 5 and len(Batches(x, y, None, 5, True, 7, drop_last=True)) == 4
    e1 = [yb.tolist() for _, yb in b.epoch(1)]
    assert e1 == [yb.tolist() for _, yb in Batches(x, y, None, 5, True, 7).epoch(1)]
    assert e1 != [yb.tolist() for _, yb in b.epoch(2)]
    assert e1 != [yb.tolist() for _, yb in Batches(x, y, None, 5, True, 8).epoch(1)]
    assert sorted(sum(e1, [])) == list(range(23)) and [len(v) for v in e1] == [5, 5, 5, 5, 3]
    for xb, yb in b.epoch(1):
        assert xb.dtype == torch.uint8 and yb.dtype == torch.int64
        assert torch.equal(xb[:, 0, 0, 0].long(), yb)
    assert [yb.tolist() for _, yb in b.epoch_from(1, 3)] == e1[3:]
    assert list(b.epoch_from(1, len(b))) == []
    with pytest.raises(ConfigError):
        list(b.epoch_from(1, 6))
    # restricted to indices, unshuffled keeps the given order; drop_last drops the tail
    idx = torch.tensor([4, 2, 9, 11, 0])
    plain = Batches(x, y, idx, batch_size=2, shuffle=False, seed=0, drop_last=True)
    assert [yb.tolist() for _, yb in plain.epoch(0)] == [[4, 2], [9, 11]]
    shuffled = Batches(x, y, idx, batch_size=2, shuffle=True, seed=0)
    assert sorted(sum((yb.tolist() for _, yb in shuffled.epoch(3)), [])) == sorted(idx.tolist())
    with pytest.raises(ShapeError):
        Batches(x, y, torch.tensor([23]), 2, False, 0)


# --------------------------------------------------------------------------- augmentation


def _ramp_batch(n: int, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    base = torch.arange(1, c * h * w + 1).view(1, c, h, w) % 250 + 1  # no zeros: padding is visible
    return (base + torch.arange(n).view(n, 1, 1, 1)).clamp(max=255).to(torch.uint8)


def test_augment_shapes_determinism_and_eval():
    x = _ramp_batch(16)
    aug = BatchAugment((0.5, 0.4, 0.3), (0.2, 0.25, 0.3), crop_padding=2, flip=True, cutout=3)
    out = aug(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.equal(out, aug(x, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, aug(x, torch.Generator().manual_seed(1)))
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    assert torch.allclose(aug(x, train=False), (x.float() / 255 - mean) / std)
    with pytest.raises(ShapeError, match="uint8"):
        aug(x.float())
    with pytest.raises(ShapeError, match="channels"):
        aug(x[:, :1])
    with pytest.raises(ConfigError):
        BatchAugment((0.5,), (0.0,))
    assert issubclass(ShapeError, AttnasError)


def test_crop_shifts_content_like_padded_slices():
    p = 2
    x = _ramp_batch(40)
    aug = BatchAugment((0.0,) * 3, (1.0,) * 3, crop_padding=p, flip=False, cutout=0)
    out = aug(x, torch.Generator().manual_seed(0))
    padded = F.pad(x.float() / 255, (p, p, p, p))
    seen = set()
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                   if torch.allclose(out[i], padded[i, :, dy:dy + 8, dx:dx + 8], atol=1e-6)]
        assert len(matches) == 1, f"sample {i} is not a crop of its padded image"
        seen.add(matches[0])
    assert len(seen) > 5 and any(s != (p, p) for s in seen)
    # hand-made example: shifting by (dy, dx) = (0, 4) of padding 2 moves content left by 2, zeros on the right
    one = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4)
    one_aug = BatchAugment((0.0,), (1.0,), crop_padding=2, flip=False)
    expected = torch.tensor([[3, 4, 0, 0], [7, 8, 0, 0], [11, 12, 0, 0], [15, 16, 0, 0]]) / 255
    hits = [torch.allclose(one_aug(one, torch.Generator().manual_seed(s))[0, 0], expected) for s in range(200)]
    assert any(hits)


def test_flip_flips_per_sample():
    x = _ramp_batch(64)
    aug = BatchAugment((0.0,) * 3, (1.0,) * 3, crop_padding=0, flip=True)
    out = aug(x, torch.Generator().manual_seed(0))
    ref = x.float() / 255
    same = [torch.allclose(out[i], ref[i], atol=1e-6) for i in range(64)]
    flipped = [torch.allclose(out[i], ref[i].flip(2), atol=1e-6) for i in range(64)]
    assert all(s or f for s, f in zip(same, flipped))
    assert 10 < sum(flipped) < 54


def test_cutout_zeros_one_square_after_normalization():
    n, size = 64, 4
    x = torch.full((n, 2, 16, 16), 200, dtype=torch.uint8)
    aug = BatchAugment((0.1, 0.2), (0.5, 0.5), crop_padding=0, flip=False, cutout=size)
    out = aug(x, torch.Generator().manual_seed(0))
    full_squares = 0
    for i in range(n):
        zero = out[i] == 0
        assert torch.equal(zero[0], zero[1])  # the same square on every channel
        rows = torch.nonzero(zero[0].any(1)).flatten()
        cols = torch.nonzero(zero[0].any(0)).flatten()
        assert 1 <= len(rows) <= size and 1 <= len(cols) <= size
        assert zero[0].sum() == len(rows) * len(cols)  # a rectangle
        assert rows.max() - rows.min() + 1 == len(rows) and cols.max() - cols.min() + 1 == len(cols)
        full_squares += int(len(rows) == size and len(cols) == size)
        for ch, (m, sd) in enumerate(((0.1, 0.5), (0.2, 0.5))):  # outside: normalized, untouched
            assert torch.allclose(out[i, ch][~zero[ch]], torch.tensor((200 / 255 - m) / sd))
    assert full_squares > n // 2


def test_default_augment_choices():
    digits = load_dataset("digits", train_subset=10)
    a = default_augment(digits)
    assert a.crop_padding == 1 and a.flip is False and a.cutout == 0
    synth = load_dataset("synthetic:3,32,2,8,4")
    b = default_augment(synth, cutout=16)
    assert b.crop_padding == 4 and b.cutout == 16 and b.mean == pytest.approx(synth.mean)
    natural = ImageData("cifar10", synth.train_x, synth.train_y, synth.test_x, synth.test_y, 2,
                        synth.mean, synth.std)
    assert default_augment(natural).flip is True


def test_cifar10_from_image_folder_keeps_cifar_class_order(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cname in ("cat", "airplane"):
            _write_png(tmp_path / "cifar10" / split / cname / "0.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    d = load_dataset("cifar10", tmp_path)
    assert d.num_classes == 10 and d.class_names == ds.CIFAR10_CLASSES
    assert sorted(d.train_y.tolist()) == [0, 3] and d.name == "cifar10"
