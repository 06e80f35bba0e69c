"""Streaming input pipeline (issue 17): image folders and WebDataset shards, decoded and augmented
in DataLoader workers.  Every image is made here, on the fly."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import torch
from PIL import Image

from attnas.cli.main import main
from attnas.data import load_dataset
from attnas.data import stream as st
from attnas.data.augment import PassThrough, default_augment
from attnas.data.datasets import ImageData
from attnas.data.loader import Batches, make_batches
from attnas.data.transforms import ImageTransform
from attnas.errors import ConfigError, DataFileNotFound
from attnas import distributed

CLASSES = ("ant", "bee", "cat")


def _image(rng, h, w, cls):
    base = np.zeros((h, w, 3), dtype=np.uint8)
    base[..., CLASSES.index(cls)] = 160
    return np.clip(base + rng.integers(0, 90, (h, w, 3)), 0, 255).astype(np.uint8)


def make_folder(root: Path, n_train=8, n_test=3, seed=0) -> Path:
    """ImageNet-like layout: train/<class>/*.JPEG (some PNG), test/<class>/*, varied sizes."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for c in CLASSES:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = _image(rng, 20 + 3 * i, 28 + 2 * (i % 4), c)
                if i % 4 == 3:
                    Image.fromarray(img).save(d / f"{c}_{i}.png")
                else:
                    (d / f"{c}_{i}.JPEG").write_bytes(simplejpeg.encode_jpeg(img, quality=90))
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("stream") / "imgs")


@pytest.fixture(scope="module")
def shards(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "shards"
    assert main(["data", "pack", str(folder), "--out", str(out), "--shard-size", "5", "--quiet"]) == 0
    return out


def _collect(batches, epoch=0, start=0):
    return [(x.clone(), y.clone()) for x, y in batches.epoch_from(epoch, start)]


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


# --------------------------------------------------------------------------- choice of path


def test_choice_by_size_and_forcing(folder, shards, monkeypatch):
    small = load_dataset(f"imagefolder:{folder}", image_size=16)
    assert isinstance(small, ImageData)  # below the threshold: in memory, as before
    forced = load_dataset(f"stream:imagefolder:{folder}", image_size=16)
    assert st.is_streaming(forced) and forced.image_size == 16 and forced.in_channels == 3
    assert forced.num_classes == 3 and len(forced.train_y) == 24 and len(forced.test_y) == 9
    assert forced.class_names == CLASSES
    monkeypatch.setattr(st, "STREAM_MIN_IMAGES", 20)
    assert st.is_streaming(load_dataset(f"imagefolder:{folder}", image_size=16))
    assert isinstance(load_dataset(f"memory:imagefolder:{folder}", image_size=16), ImageData)
    sh = load_dataset(f"shards:{shards}")
    assert st.is_streaming(sh) and 20 <= sh.image_size <= 34  # the packed images' median shorter side
    assert sorted(sh.train_y.tolist()) == sorted(forced.train_y.tolist())
    with pytest.raises(ConfigError, match="pack it into shards"):
        load_dataset("stream:digits")
    with pytest.raises(ConfigError, match="always streamed"):
        load_dataset(f"memory:shards:{shards}")
    with pytest.raises(ConfigError, match="no in-memory images"):
        forced.train_x
    aug = default_augment(forced)
    assert isinstance(aug, PassThrough)
    x = torch.randn(2, 3, 16, 16)
    assert aug(x, generator=torch.Generator()) is x and aug(x, train=False) is x
    # cutout (the DARTS retrain recipe) on streamed training batches: one zero square per image,
    # capped at half the side; evaluation batches untouched; a torchrun slice stays a slice
    cut = default_augment(forced, cutout=16)
    assert cut.cutout == 8
    x = torch.randn(4, 3, 16, 16).abs() + 1.0
    y = cut(x.clone(), generator=torch.Generator().manual_seed(0))
    zeros = (y == 0).all(1)  # (N, H, W): pixels zero in every channel
    assert all(4 * 4 <= int(z.sum()) <= 8 * 8 for z in zeros)  # a square, clipped at the border
    assert torch.equal(y[~zeros.unsqueeze(1).expand_as(y)], x[~zeros.unsqueeze(1).expand_as(x)])
    assert torch.equal(cut(x.clone(), train=False), x)
    # under torchrun each process's slice gets its rows of the global batch's squares (the
    # same squares as one process would draw), and stays a slice
    for lo, hi, kept in ((0, 2, None), (2, 4, None), (2, 4, (1,))):
        sl = x[lo:hi].clone()[list(kept) if kept else slice(None)].as_subclass(st.LocalSlice)
        sl.attnas_slice = (lo, hi, 4, kept)
        out = cut(sl, generator=torch.Generator().manual_seed(0))
        want = y[lo:hi][list(kept) if kept else slice(None)]
        assert isinstance(out, st.LocalSlice) and out.attnas_slice == (lo, hi, 4, kept) and torch.equal(out, want)


# --------------------------------------------------------------------------- ordering


def test_folder_order_is_the_in_memory_order(folder):
    data = load_dataset(f"stream:imagefolder:{folder}", image_size=16)
    idx = torch.tensor([0, 2, 3, 5, 7, 11, 13, 17, 19, 23])
    ref = Batches(torch.zeros(24, 1, 1, 1, dtype=torch.uint8), data.train_y, idx, 4, True, 5)
    sb = make_batches(data, "train", idx, 4, True, 5, drop_last=True)
    assert len(sb) == 2 and sb.num_samples == 10
    for epoch in (0, 1):
        assert sb.order(epoch).tolist() == ref.order(epoch).tolist()
    assert sb.order(0).tolist() != sb.order(1).tolist()
    got = _collect(sb, 1)
    order = sb.order(1)
    assert torch.equal(torch.cat([y for _, y in got]), data.train_y[torch.from_numpy(order[:8])])
    assert all(x.dtype == torch.float32 and x.shape == (4, 3, 16, 16) for x, _ in got)


def test_shard_order_seeded_complete_and_worker_independent(shards):
    data = load_dataset(f"shards:{shards}", image_size=16)
    a = make_batches(data, "train", None, 5, True, 3, drop_last=False)
    b = make_batches(data, "train", None, 5, True, 3, drop_last=False)
    assert sorted(a.order(0).tolist()) == list(range(24))
    assert a.order(0).tolist() == b.order(0).tolist() and a.order(0).tolist() != a.order(1).tolist()
    a.workers, b.workers = 0, 2
    ra, rb = _collect(a, 1), _collect(b, 1)
    assert _same(ra, rb)  # the same images and augmentation whatever the number of workers
    assert torch.equal(torch.cat([y for _, y in ra]), data.train_y[torch.from_numpy(a.order(1))])
    assert [len(y) for _, y in ra] == [5, 5, 5, 5, 4]
    ev = make_batches(data, "test", None, 4, False, 0)
    xs = _collect(ev)
    assert sum(len(y) for _, y in xs) == 9 and _same(xs, _collect(ev))  # evaluation: deterministic


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("kind", ["folder", "shards"])
def test_resume_mid_epoch(kind, folder, shards):
    name = f"stream:imagefolder:{folder}" if kind == "folder" else f"shards:{shards}"
    data = load_dataset(name, image_size=16, train_subset=18, seed=1)
    idx_w = torch.arange(0, 18, 2)
    full = _collect(make_batches(data, "train", idx_w, 2, True, 9, drop_last=True), 2)
    resumed = _collect(make_batches(data, "train", idx_w, 2, True, 9, drop_last=True), 2, start=3)
    assert len(full) == 4 and _same(full[3:], resumed)
    with pytest.raises(ConfigError):
        make_batches(data, "train", idx_w, 2, True, 9).epoch_from(0, 99)


# --------------------------------------------------------------------------- torchrun sharding


@pytest.mark.parametrize("kind", ["folder", "shards"])
def test_two_processes_read_their_slices(kind, folder, shards, monkeypatch):
    name = f"stream:imagefolder:{folder}" if kind == "folder" else f"shards:{shards}"
    data = load_dataset(name, image_size=16)
    whole = _collect(make_batches(data, "train", None, 7, True, 4), 0)
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    parts = []
    for r in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        sb = make_batches(data, "train", None, 7, True, 4)
        got = []
        for x, y in sb.epoch(0):
            assert isinstance(x, st.LocalSlice) and len(y) in (7, 3)  # labels of the global batch
            x = x.to("cpu")  # the slice survives .to(device)
            lx, ly = distributed.shard(x, y)
            assert type(lx) is torch.Tensor and len(lx) == len(ly)
            got.append((lx, ly))
        parts.append(got)
    for step, (gx, gy) in enumerate(whole):
        n = len(gy)
        for r in (0, 1):
            lo, hi = r * n // 2, (r + 1) * n // 2
            lx, ly = parts[r][step]
            assert torch.equal(lx, gx[lo:hi]) and torch.equal(ly, gy[lo:hi])
    # evaluation batches stay whole (distributed.shard_batches splits them by batch)
    ev = make_batches(data, "test", None, 4, False, 0)
    assert all(type(x) is torch.Tensor for x, _ in ev.epoch(0))


def test_unsharded_passes_pair_each_image_with_its_label(folder, monkeypatch):
    """Under torchrun a streamed training split decodes only this process's slice of a global
    batch; passes that ask for whole batches (``weight_batches``: BN recalibration, selection)
    must still see each image with its own label, not the global batch's labels."""
    from attnas.spaces.registry import get_space
    from attnas.strategies.base import get_strategy
    from attnas.training.tasks import SearchTask

    data = load_dataset(f"stream:imagefolder:{folder}", image_size=8)
    st_ = get_strategy("darts", get_space("nb201", C=4, N=1))
    model = st_.build(data.num_classes, data.in_channels, data.image_size)
    task = SearchTask(st_, model, data, 1, 4, 0, torch.device("cpu"))
    whole = [(x.clone(), y.clone()) for x, y in task.weight_batches(0)]
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    for r in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        got = list(task.weight_batches(0))
        assert len(got) == len(whole)
        for (x, y), (gx, gy) in zip(got, whole):
            lo, hi = r * len(gy) // 2, (r + 1) * len(gy) // 2
            assert len(x) == len(y) == hi - lo
            assert torch.equal(y, gy[lo:hi]) and torch.allclose(x, gx[lo:hi])
    # whole in-memory batches stay whole
    x = torch.zeros(6, 3)
    assert distributed.local_pair(x, torch.arange(6))[1].tolist() == list(range(6))


# --------------------------------------------------------------------------- bad data


def test_bad_images_are_skipped_counted_and_limited(tmp_path, capsys):
    root = make_folder(tmp_path / "bad", n_train=6, n_test=2)
    good = (root / "train" / "ant" / "ant_0.JPEG").read_bytes()
    (root / "train" / "ant" / "ant_1.JPEG").write_bytes(good[: len(good) // 2])  # truncated
    (root / "train" / "bee" / "bee_1.JPEG").write_bytes(b"\xff\xd8\xff not really a jpeg")  # corrupt
    (root / "train" / "cat" / "cat_3.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # corrupt PNG
    data = load_dataset(f"stream:imagefolder:{root}", image_size=16)
    data.max_bad = 0.5
    sb = make_batches(data, "train", None, 6, True, 0)
    sb.workers = 2
    got = _collect(sb)
    assert sum(len(y) for _, y in got) == 18 - 3 and all(len(x) == len(y) for x, y in got)
    assert sb.bad_last_epoch == 3
    err = capsys.readouterr().err
    assert "skipped 3 unreadable image(s) of 18" in err
    data.max_bad = 0.1  # 3 > 10 % of 18: the run stops, naming a file
    with pytest.raises(DataFileNotFound, match=r"unreadable images in epoch 0 .*(ant_1|bee_1|cat_3)"):
        _collect(make_batches(data, "train", None, 6, True, 0))


def test_unreadable_shard_is_named(folder, tmp_path):
    out = tmp_path / "sh"
    assert main(["data", "pack", str(folder), "--out", str(out), "--shard-size", "10", "--quiet"]) == 0
    victim = out / "train-000001.tar"
    victim.write_bytes(victim.read_bytes()[:700])  # cut inside the first member
    data = load_dataset(f"shards:{out}", image_size=16)
    with pytest.raises(DataFileNotFound, match="train-000001.tar"):
        _collect(make_batches(data, "train", None, 4, False, 0))
    victim.unlink()
    with pytest.raises(DataFileNotFound, match="train-000001.tar.*missing"):
        load_dataset(f"shards:{out}")


# --------------------------------------------------------------------------- pack


def test_pack_zip_and_errors(tmp_path, capsys):
    rng = np.random.default_rng(1)
    zpath = tmp_path / "imgs.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for split, n in (("train", 4), ("test", 2)):
            for c in ("dog", "cat"):
                for i in range(n):
                    zf.writestr(f"cifar/{split}/{c}/{i:04d}.jpg", simplejpeg.encode_jpeg(_image(rng, 32, 32, "ant")))
        zf.writestr("cifar/train/dog/bad.jpg", b"\xff\xd8\xff broken")
    out = tmp_path / "z"
    assert main(["data", "pack", str(zpath), "--out", str(out), "--shard-size", "3", "--resize", "48",
                 "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["train"] == 8 and summary["test"] == 4 and summary["skipped"] == 1
    man = json.loads((out / st.MANIFEST).read_text())
    assert man["classes"] == ["cat", "dog"] and [s["count"] for s in man["splits"]["train"]] == [3, 3, 2]
    data = load_dataset(f"shards:{out}")
    assert data.image_size == 48 and len(data.train_y) == 8
    x, y = next(iter(make_batches(data, "test", None, 4, False, 0).epoch(0)))
    assert x.shape == (4, 3, 48, 48)
    # a non-empty --out: one-line error, exit 2, nothing written
    assert main(["data", "pack", str(zpath), "--out", str(out), "--quiet"]) == 2
    assert "attnas: error: output folder" in capsys.readouterr().err
    assert main(["data", "pack", str(tmp_path / "nope"), "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    assert "attnas: error:" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists() and not list(tmp_path.glob(".*partial*"))


# --------------------------------------------------------------------------- transforms


def test_transforms_deterministic_and_shaped():
    rng = np.random.default_rng(0)
    img = _image(rng, 300, 400, "bee")
    data = simplejpeg.encode_jpeg(img, quality=95)
    t = ImageTransform(64, (0.5,) * 3, (0.25,) * 3, train=True)
    a, b, c = t(data, 1), t(data, 1), t(data, 2)
    assert a.shape == (3, 64, 64) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    e = ImageTransform(64, (0.5,) * 3, (0.25,) * 3, train=False)
    out = e(data, 0)
    assert out.shape == (3, 64, 64) and np.array_equal(out, e(data, 5))  # no randomness
    # evaluation = resize the shorter side to 73 and crop the centre 64: a flat image stays flat
    flat = simplejpeg.encode_jpeg(np.full((100, 150, 3), 128, dtype=np.uint8))
    assert np.allclose(e(flat, 0), (128 / 255 - 0.5) / 0.25, atol=0.05)


_RANK_SCRIPT = r"""
import os, sys, torch, torch.distributed as dist
from attnas.data import load_dataset
from attnas.data.loader import make_batches
from attnas import distributed
dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=int(sys.argv[2]), world_size=2)
data = load_dataset(sys.argv[3], image_size=16)
data.workers = 1
got = [distributed.shard(x, y) for x, y in make_batches(data, "train", None, 6, True, 4).epoch_from(1, 1)]
torch.save([(x.clone(), y.clone()) for x, y in got], sys.argv[4])
dist.destroy_process_group()
"""


def test_two_real_processes_under_gloo(shards, tmp_path):
    """Two processes in a Gloo group (as torchrun starts them), each with a DataLoader worker,
    resumed mid-epoch: together they see exactly the single-process global batches."""
    import os
    import subprocess
    import sys

    script = tmp_path / "rank.py"
    script.write_text(_RANK_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "store"), str(r), f"shards:{shards}",
                               str(tmp_path / f"r{r}.pt")], env=env, stderr=subprocess.PIPE, text=True)
             for r in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    data = load_dataset(f"shards:{shards}", image_size=16)
    whole = _collect(make_batches(data, "train", None, 6, True, 4), 1, start=1)
    parts = [torch.load(tmp_path / f"r{r}.pt") for r in (0, 1)]
    assert len(whole) == len(parts[0]) == len(parts[1]) == 3
    for step, (gx, gy) in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][step][0], parts[1][step][0]]), gx)
        assert torch.equal(torch.cat([parts[0][step][1], parts[1][step][1]]), gy)
        assert len(parts[0][step][1]) == 3
