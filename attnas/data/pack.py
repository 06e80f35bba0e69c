"""``attnas data pack``: write WebDataset tar shards (and the manifest the streaming loader reads)
from an image folder or a zip of ``{train,test}/<class>/*`` images (the CIFAR-10 JPEG zip).

Each sample is ``KEY.<ext>`` (the file's bytes unchanged, or re-encoded as JPEG at ``resize``) and
``KEY.cls`` (the class index); shards are ``train-000000.tar`` ... and ``test-000000.tar`` ... with
``shard_size`` samples each, written with ``webdataset.TarWriter``.  The samples of a split are
written in a fixed shuffled order (seed 0) so that every shard mixes the classes.  Unreadable
image files are left out and counted.  The output folder appears only when complete.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from attnas.data.stream import IMAGE_EXTENSIONS, MANIFEST, MANIFEST_FORMAT, folder_splits
from attnas.errors import ConfigError, DataFileNotFound

_FIXED_SEED = 0


def _zip_entries(path: Path) -> tuple[dict[str, list[tuple[str, int]]], tuple[str, ...], zipfile.ZipFile]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataFileNotFound(f"cannot open zip '{path}': {exc}") from None
    found: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for name in zf.namelist():
        parts = name.split("/")
        if len(parts) < 3 or Path(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if parts[-3] in found:
            found[parts[-3]].append((parts[-2], name))
    classes = tuple(sorted({c for items in found.values() for c, _ in items}))
    if not found["train"]:
        raise DataFileNotFound(f"zip '{path}' has no 'train/<class>/<image>' entries")
    entries = {s: sorted((n, classes.index(c)) for c, n in items) for s, items in found.items()}
    return entries, classes, zf


def _jpeg_resized(data: bytes, size: int) -> bytes:
    """The image resized so that its shorter side is ``size`` (bilinear), as a quality-90 JPEG."""
    import simplejpeg
    from PIL import Image

    from attnas.data.transforms import decode

    img, _ = decode(data)
    h, w = img.shape[:2]
    s = size / min(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    out = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR), dtype=np.uint8)
    return simplejpeg.encode_jpeg(np.ascontiguousarray(out), quality=90, colorspace="RGB")


def _check(data: bytes) -> tuple[int, int]:
    """(height, width) of an image, from its header; a BadImage when it cannot be read."""
    from attnas.data.transforms import BadImage, is_jpeg

    try:
        if is_jpeg(data):
            import simplejpeg

            h, w, _, _ = simplejpeg.decode_jpeg_header(data)
            return h, w
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            im.verify()
            return im.size[1], im.size[0]
    except Exception as exc:  # noqa: BLE001
        raise BadImage(str(exc)) from None


def _parse_shard_size(value) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ConfigError(f"--shard-size must be a positive number of images per shard, got {value!r}")
    return n


def pack(src: str | os.PathLike, out: str | os.PathLike, shard_size=1000, resize: int | None = None,
         progress: Callable[[int, int], None] | None = None) -> dict:
    """Pack ``src`` (an image folder with ``train/<class>/`` or a zip) into shards in ``out``.
    Returns a summary (samples per split, shards, skipped files, the manifest path)."""
    import webdataset as wds

    from attnas.data.stream import image_stats
    from attnas.data.transforms import BadImage

    shard_size = _parse_shard_size(shard_size)
    if resize is not None and (isinstance(resize, bool) or not isinstance(resize, int) or resize < 8):
        raise ConfigError(f"--resize must be an integer of at least 8, got {resize!r}")
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"output folder '{out}' exists and is not empty; choose a new --out")
    zf = None
    if src.is_file() and zipfile.is_zipfile(src):
        entries, classes, zf = _zip_entries(src)
        splits = {s: ([n for n, _ in e], np.asarray([c for _, c in e], dtype=np.int64)) for s, e in entries.items()}

        def read(name: str) -> bytes:
            return zf.read(name)
    elif src.is_dir():
        if not (src / "train").is_dir():
            raise DataFileNotFound(f"'{src}' has no train/<class>/ folder")
        tr, te, classes = folder_splits(src)
        splits = {"train": (tr.files, tr.labels), "test": (te.files, te.labels)}

        def read(name: str) -> bytes:
            with open(name, "rb") as fh:
                return fh.read()
    else:
        raise DataFileNotFound(f"pack source '{src}' is neither an image folder nor a zip file")

    total = sum(len(f) for f, _ in splits.values())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    manifest: dict = {"format": MANIFEST_FORMAT, "version": 1, "source": str(src), "classes": list(classes),
                      "splits": {}}
    skipped: list[str] = []
    done = 0
    sizes: list[int] = []
    stats_sample: list[bytes] = []
    try:
        for split in ("train", "test"):
            names, labels = splits[split]
            order = np.random.default_rng(_FIXED_SEED).permutation(len(names))
            shards: list[dict] = []
            writer, cur = None, None
            for i in order:
                name, label = names[int(i)], int(labels[int(i)])
                done += 1
                try:
                    data = read(name)
                    h, w = _check(data)
                    if resize is not None:
                        data = _jpeg_resized(data, resize)
                        h = w = resize
                    ext = "jpg" if data[:3] == b"\xff\xd8\xff" else Path(name).suffix.lower().lstrip(".")
                except (BadImage, OSError, KeyError) as exc:
                    skipped.append(f"{name} ({' '.join(str(exc).split())[:120]})")
                    continue
                if len(sizes) < 1000:
                    sizes.append(min(h, w))
                if split == "train" and len(stats_sample) < 256:
                    stats_sample.append(data)
                if cur is None or len(cur["labels"]) >= shard_size:
                    if writer is not None:
                        writer.close()
                    cur = {"name": f"{split}-{len(shards):06d}.tar", "labels": []}
                    shards.append(cur)
                    writer = wds.TarWriter(str(tmp / cur["name"]))
                writer.write({"__key__": f"{split}{done:09d}", ext: data, "cls": label})
                cur["labels"].append(label)
                if progress is not None:
                    progress(done, total)
            if writer is not None:
                writer.close()
            if progress is not None:
                progress(done, total)
            manifest["splits"][split] = [dict(s, count=len(s["labels"])) for s in shards]
        if not manifest["splits"]["train"]:
            raise DataFileNotFound(f"no readable training image in '{src}'")
        mean, std = image_stats(stats_sample)
        manifest["mean"], manifest["std"] = list(mean), list(std)
        manifest["image_size"] = int(np.median(sizes)) if sizes else None
        manifest["skipped"] = len(skipped)
        (tmp / MANIFEST).write_text(json.dumps(manifest))
        for p in tmp.iterdir():
            os.chmod(p, 0o644)
        os.chmod(tmp, 0o755)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if zf is not None:
            zf.close()
    return {"out": str(out), "classes": len(classes),
            "train": sum(s["count"] for s in manifest["splits"]["train"]),
            "test": sum(s["count"] for s in manifest["splits"]["test"]),
            "shards": len(manifest["splits"]["train"]) + len(manifest["splits"]["test"]),
            "skipped": len(skipped), "skipped_files": skipped[:10], "manifest": str(out / MANIFEST)}
