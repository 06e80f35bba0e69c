"""Streaming input pipeline benchmark (issue 17): decode + augment throughput per worker count, and
peak memory for 1x and 4x the images.

    # 1. a folder of N real JPEGs: CIFAR-10 training images upscaled (shorter side S, quality 90)
    python bench/data_stream.py prepare --data-dir /work/shared/data --out /tmp/cifar-up --images 20000 --size 224
    # 2. shards of it (attnas data pack), and the 4x folder (every file linked 4 times)
    attnas data pack /tmp/cifar-up --out /tmp/cifar-up-shards --shard-size 1000 --quiet
    python bench/data_stream.py replicate /tmp/cifar-up --out /tmp/cifar-up-4x --times 4
    # 3. measure (each configuration in a fresh process)
    python bench/data_stream.py run --source imagefolder:/tmp/cifar-up --workers 1 2
    python bench/data_stream.py run --source shards:/tmp/cifar-up-shards --workers 1 2
    python bench/data_stream.py run --source imagefolder:/tmp/cifar-up-4x --workers 2
    # 4. the JPEG decoder choice: decode-only images/s of Pillow and simplejpeg (and PyTurboJPEG if present)
    python bench/data_stream.py decoders /tmp/cifar-up --images 3000

Each ``run`` line decodes and augments every image of both splits once (random-resized crop to 224, flip,
colour jitter, lighting, normalisation) in batches of 64 and prints images/s, the peak RSS of the
training process and the peak RSS of the largest worker (``ru_maxrss``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path


def prepare(args) -> None:
    from attnas.data.pack import _jpeg_resized

    zpath = Path(args.data_dir) / "cifar10" / "cifar10_jpg_yoongikim.zip"
    out = Path(args.out)
    per_class = args.images // 10
    with zipfile.ZipFile(zpath) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith("train/") and n.endswith(".jpg"))
        taken: dict[str, int] = {}
        for n in names:
            cls = n.split("/")[1]
            if taken.get(cls, 0) >= per_class:
                continue
            taken[cls] = taken.get(cls, 0) + 1
            dst = out / "train" / cls / Path(n).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(_jpeg_resized(zf.read(n), args.size))
    print(json.dumps({"out": str(out), "images": sum(taken.values()), "size": args.size}))


def replicate(args) -> None:
    src, out = Path(args.src), Path(args.out)
    n = 0
    for f in sorted((src / "train").glob("*/*")):
        for k in range(args.times):
            dst = out / "train" / f.parent.name / f"{k}_{f.name}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(f, dst)
            n += 1
    print(json.dumps({"out": str(out), "images": n}))


def one(args) -> None:
    import torch

    torch.set_num_threads(1)
    from attnas.data import load_dataset
    from attnas.data.loader import make_batches

    name = args.source if args.source.startswith(("shards:", "stream:")) else "stream:" + args.source
    data = load_dataset(name, image_size=args.image_size)
    data.workers = args.workers
    # both splits, with the training transform (shuffle=True): every image of the folder once
    sources = [make_batches(data, split, None, args.batch_size, True, 0, drop_last=False)
               for split in ("train", "test")]
    t0 = time.perf_counter()
    n = 0
    for batches in sources:
        for x, _ in batches.epoch(0):
            n += len(x)
    dt = time.perf_counter() - t0
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"source": args.source, "workers": args.workers, "images": n, "seconds": round(dt, 2),
                      "images_per_s": round(n / dt, 1), "peak_rss_main_mb": round(self_kb / 1024, 1),
                      "peak_rss_worker_mb": round(child_kb / 1024, 1)}))


def run(args) -> None:
    for w in args.workers:
        cmd = [sys.executable, __file__, "one", "--source", args.source, "--workers", str(w),
               "--batch-size", str(args.batch_size), "--image-size", str(args.image_size)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
        print(out.stdout.strip().splitlines()[-1], flush=True)


def decoders(args) -> None:
    """Decode-only throughput (one process, one thread) of the JPEG bindings available."""
    import io

    import numpy as np
    from PIL import Image

    files = sorted(Path(args.folder).glob("train/*/*"))[: args.images]
    blobs = [f.read_bytes() for f in files]
    results = {}

    def pillow(b):
        with Image.open(io.BytesIO(b)) as im:
            return np.asarray(im.convert("RGB"))

    cands = {"pillow": pillow}
    try:
        import simplejpeg

        cands["simplejpeg"] = lambda b: simplejpeg.decode_jpeg(b, colorspace="RGB")
    except ImportError:
        pass
    try:
        from turbojpeg import TurboJPEG

        tj = TurboJPEG()
        cands["pyturbojpeg"] = lambda b: tj.decode(b)
    except Exception:  # noqa: BLE001 - not installed or no libturbojpeg on this machine
        pass
    for name, fn in cands.items():
        t0 = time.perf_counter()
        for b in blobs:
            fn(b)
        results[name] = round(len(blobs) / (time.perf_counter() - t0), 1)
    print(json.dumps({"images": len(blobs), "decodes_per_s": results}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--data-dir", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--images", type=int, default=20000)
    a.add_argument("--size", type=int, default=224)
    a.set_defaults(func=prepare)
    r = sub.add_parser("replicate")
    r.add_argument("src")
    r.add_argument("--out", required=True)
    r.add_argument("--times", type=int, default=4)
    r.set_defaults(func=replicate)
    d = sub.add_parser("decoders")
    d.add_argument("folder")
    d.add_argument("--images", type=int, default=3000)
    d.set_defaults(func=decoders)
    for name, fn in (("run", run), ("one", one)):
        q = sub.add_parser(name)
        q.add_argument("--source", required=True)
        q.add_argument("--workers", type=int, nargs="+" if name == "run" else None, default=[1, 2] if name == "run" else 1)
        q.add_argument("--batch-size", type=int, default=64)
        q.add_argument("--image-size", type=int, default=224)
        q.set_defaults(func=fn)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
