"""``attnas data pack SRC --out DIR``: WebDataset tar shards for the streaming input pipeline."""
from __future__ import annotations

import argparse
import sys



def register(sub) -> None:
    p = sub.add_parser("data", help="prepare datasets (pack image folders into WebDataset shards)",
                       description="Prepare datasets for the streaming input pipeline.")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    k = dsub.add_parser("pack", help="write WebDataset tar shards from an image folder or an image zip",
                        description="Write WebDataset tar shards (train-*.tar, test-*.tar and the manifest "
                                    "attnas-shards.json) from an image folder with train/<class>/ (and "
                                    "test/ or val/) or a zip of {train,test}/<class>/ images such as the "
                                    "CIFAR-10 JPEG zip.  Use the result with --dataset shards:DIR.")
    k.add_argument("src", help="image folder (PATH/train/<class>/*) or zip file")
    k.add_argument("--out", required=True, help="new (or empty) output folder")
    k.add_argument("--shard-size", type=int, default=1000, metavar="N", help="images per shard (default 1000)")
    k.add_argument("--resize", type=int, metavar="S",
                   help="re-encode every image as a JPEG whose shorter side is S (e.g. to upscale CIFAR)")
    k.add_argument("--quiet", action="store_true", help="no progress bar")
    k.add_argument("--json", action="store_true", help="print the summary as JSON")
    k.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict | None:
    from attnas.data.pack import pack
    from attnas.training.engine import Progress

    bar = Progress("pack", 1, enabled=not args.quiet)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - 1, {})

    summary = pack(args.src, args.out, args.shard_size, resize=args.resize, progress=progress)
    bar.close()
    if args.json:
        return summary  # printed by attnas.cli.main
    else:
        print(f"packed {summary['train']} training and {summary['test']} test images of {summary['classes']} "
              f"classes into {summary['shards']} shards in {summary['out']}"
              + (f"; skipped {summary['skipped']} unreadable files" if summary["skipped"] else ""))
        if summary["skipped"]:
            for f in summary["skipped_files"]:
                print(f"  skipped: {f}", file=sys.stderr)
    return None
