"""``attnas show``: draw an architecture, or a run's architecture and curves.

``attnas show SPEC -o cell.png`` where SPEC is

* an ``architecture.json`` (written by ``attnas search``), or a text file
  holding a native string;
* a native string: a NAS-Bench-201 cell string ``'|nor_conv_3x3~0|+|...|'``,
  a DARTS ``'Genotype(normal=[...], ...)'`` (``--space`` names the space when
  it cannot be guessed, e.g. ``s3`` for a genotype of the S3 space);
* a run folder (has ``metrics.jsonl``): its ``architecture.json`` is drawn to
  ``-o`` (default ``RUN/architecture.png``) and its curves
  (:func:`attnas.viz.curves.plot_run`) beside it as ``<stem>_curves<ext>``
  (``cell.png`` -> ``cell_curves.png``).  A search still running has no
  ``architecture.json`` yet: the architecture derived at its last epoch
  (the ``arch`` field of ``metrics.jsonl``) is drawn instead.

Without ``-o``, the picture goes beside a JSON file (``x.json`` -> ``x.png``),
into the run folder, or to ``architecture.png`` for a native string.  The
format follows the extension: ``.png``, ``.svg`` or ``.pdf``.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from attnas.run_dir import ARCHITECTURE
from attnas.cli.main import add_json_flag
from attnas.spaces.io import is_dir, is_file, resolve_architecture
from attnas.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "show", help="draw an architecture (cells, chains) or a run's architecture and curves",
        description="Draw the cells (or layer chain) of an architecture; for a run folder also "
                    "its loss/accuracy and candidate-strength curves.")
    p.add_argument("spec", metavar="ARCH",
                   help="architecture.json, native string (NAS-Bench-201 cell string, DARTS Genotype) "
                        "or run folder")
    p.add_argument("-o", "--output", help="picture to write (.png, .svg, .pdf); for a run folder the "
                                          "curves go beside it as <stem>_curves<ext>")
    p.add_argument("--space", help="space of a native string when it cannot be guessed (e.g. s3)")
    p.add_argument("--title", help="title of the picture (default: space and method)")
    p.add_argument("--no-curves", action="store_true", help="for a run folder: draw the architecture only")
    add_json_flag(p)
    p.set_defaults(func=run)


def _arch_from_run(run: Path):
    """A run's architecture: ``architecture.json``, else the last epoch's derived one."""
    from attnas.arch import Architecture
    from attnas.spaces.io import architecture_from_dict
    from attnas.viz.curves import read_run

    if is_file(run / ARCHITECTURE):
        return resolve_architecture(str(run / ARCHITECTURE)), None
    data = read_run(run)
    last = data.metrics[-1]
    space = data.config.get("space")
    arch_field = last.get("arch")
    if not space or arch_field is None:
        return None, None
    epoch = int(last.get("epoch", len(data.metrics) - 1)) + 1
    if isinstance(arch_field, dict):
        arch = architecture_from_dict({"space": space, "choices": arch_field})
    else:
        from attnas.spaces.registry import get_space_class
        arch = get_space_class(space).parse_native(str(arch_field))
    arch = Architecture(arch.space, arch.choices, {"method": data.config.get("method")})
    return arch, f"derived at epoch {epoch} (search not finished)"


def _default_title(arch, note: str | None) -> str:
    method = arch.meta.get("method") if isinstance(arch.meta, dict) else None
    title = f"{arch.space} architecture" + (f" ({method})" if method else "")
    return title + (f": {note}" if note else "")


def curves_path(arch_png: Path) -> Path:
    """Where the curves of a run go: ``cell.png`` -> ``cell_curves.png``."""
    return arch_png.with_name(f"{arch_png.stem}_curves{arch_png.suffix}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from attnas.viz.draw import draw_architecture
    from attnas.viz.style import check_output_path

    spec = str(args.spec)
    path = Path(spec)
    is_run = is_dir(path)
    if args.output:
        out = check_output_path(args.output)
    elif is_run:
        out = path / "architecture.png"
    elif is_file(path):
        out = path.with_suffix(".png")
    else:
        out = Path("architecture.png")
    result: dict[str, Any] = {"output": [], "space": None, "cells": [], "edges": {}}
    note = None
    if is_run:
        from attnas.viz.curves import is_run_dir, plot_run

        has_metrics = is_run_dir(path)
        if not has_metrics and not is_file(path / ARCHITECTURE):
            raise ConfigError(f"'{path}' is not a run folder: it has neither metrics.jsonl "
                              "nor architecture.json")
        arch, note = _arch_from_run(path)
    else:
        has_metrics = False
        arch = resolve_architecture(spec, args.space)
    if arch is not None:
        drawing = draw_architecture(arch, out, title=args.title or _default_title(arch, note))
        result.update({"space": arch.space, "cells": drawing.cells, "edges": drawing.edge_counts(),
                       "architecture": str(out), "size_px": list(drawing.size_px or ())})
        result["output"].append(str(out))
        counts = ", ".join(f"{c}: {n}" for c, n in drawing.edge_counts().items())
        print(f"wrote {out} ({arch.space}; {counts})")
    if has_metrics and not args.no_curves:
        cpath = curves_path(out)
        curves = plot_run(path, cpath, title=f"run {path.name}")
        result["curves"] = str(cpath)
        result["output"].append(str(cpath))
        print(f"wrote {cpath} ({curves.epochs} epochs, {len(curves.choice_points)} choice points)")
    if not result["output"]:
        raise ConfigError(f"nothing to draw in '{path}': no architecture.json and no derived "
                          "architecture or metrics yet")
    return result
