"""Pictures of architectures: cells as DAGs (:mod:`attnas.viz.cell`), chains as rows of boxes
(:mod:`attnas.viz.chain`), one panel each, in one figure.

The drawing is generic over :class:`attnas.arch.Architecture`, not written per space: every
edge key ``"<cell>:<src>-><dst>"`` belongs to the panel of cell type ``<cell>`` (DARTS:
``normal`` and ``reduce``; NAS-Bench-201: ``cell``), every other key (``"layer:<i>"`` of chain
spaces) to one chain panel.

Colours follow the operation family (:func:`attnas.viz.style.op_family`: conv, pool, skip,
attention, other).  Only matplotlib is used, through its Agg canvas directly
(no pyplot, so the caller's matplotlib backend is left alone).  The layout
functions return the geometry they drew (:class:`CellLayout`,
:class:`ChainLayout`) so callers and tests can inspect it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from attnas.arch import Architecture, CellInfo, parse_edge_key
from attnas.errors import ArchitectureError, ConfigError
from attnas.viz.cell import CellLayout, draw_cell, layout_cell
from attnas.viz.chain import ChainLayout, draw_chain, layout_chain
from attnas.viz.style import FAMILY_COLORS, OP_FAMILIES, DrawStyle, check_output_path

Panel = Union[CellLayout, ChainLayout]


@dataclass
class ArchitectureDrawing:
    """What :func:`draw_architecture` drew: the panels and the file written."""

    space: str
    panels: list[Panel]
    path: Path | None = None
    size_px: tuple[int, int] | None = None
    families: list[str] = field(default_factory=list)

    @property
    def cells(self) -> list[str]:
        return [p.name for p in self.panels]

    def edge_counts(self) -> dict[str, int]:
        """Drawn operations per panel (labelled edges of a cell, boxes of a chain)."""
        return {p.name: len(p.labels()) for p in self.panels}


def layout_architecture(arch: Architecture, info: CellInfo | None = None,
                        style: DrawStyle | None = None) -> list[Panel]:
    """One panel per cell type (in the order the keys list them), then one chain
    panel for the remaining keys (``layer:<i>``) if any."""
    if not isinstance(arch, Architecture):
        raise ArchitectureError(f"expected an Architecture, got {type(arch).__name__}")
    if not arch.choices:
        raise ArchitectureError(f"architecture of space '{arch.space}' has no choices to draw")
    cells: list[str] = []
    others: list[str] = []
    for k in arch.choices:
        if "->" in k:
            c, _, _ = parse_edge_key(k)  # raises ArchitectureError on a malformed key
            if c not in cells:
                cells.append(c)
        else:
            others.append(k)
    panels: list[Panel] = [layout_cell(arch, c, info, style) for c in cells]
    if others:
        panels.append(layout_chain(arch, others, style))
    return panels


def _panel_title(panel: Panel) -> str:
    if isinstance(panel, ChainLayout):
        n = len(panel.boxes)
        skipped = sum(b.faded for b in panel.boxes)
        return f"chain: {n} layers" + (f" ({skipped} skipped, faded)" if skipped else "")
    n = len(panel.op_edges())
    names = {"normal": "normal cell", "reduce": "reduction cell", "cell": "cell"}
    return f"{names.get(panel.cell, panel.cell + ' cell')}: {n} operation{'s' if n != 1 else ''}"


def render_architecture(arch: Architecture, info: CellInfo | None = None, title: str | None = None,
                        style: DrawStyle | None = None):
    """A matplotlib ``Figure`` (Agg canvas, no pyplot) of ``arch``, with its drawing record."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    style = style or DrawStyle()
    panels = layout_architecture(arch, info, style)
    margin, head, legend_h = 0.25, 0.45, 0.5
    sizes = [(p.bounds[2] - p.bounds[0], p.bounds[3] - p.bounds[1]) for p in panels]
    fig_w = max(w for w, _ in sizes) + 2 * margin
    top = 0.5 if title else 0.15
    fig_h = top + sum(h + head for _, h in sizes) + legend_h + margin
    fig = Figure(figsize=(fig_w, fig_h), dpi=style.dpi)
    FigureCanvasAgg(fig)
    if title:
        fig.text(0.5, 1 - 0.3 / fig_h, title, ha="center", va="center",
                 fontsize=style.title_fontsize + 1, fontweight="bold")
    y_top = fig_h - top
    families: set[str] = set()
    for p, (w, h) in zip(panels, sizes):
        fig.text(margin / fig_w, (y_top - head / 2) / fig_h, _panel_title(p), ha="left", va="center",
                 fontsize=style.title_fontsize)
        y_top -= head
        left = (fig_w - w) / 2
        ax = fig.add_axes((left / fig_w, (y_top - h) / fig_h, w / fig_w, h / fig_h))
        ax.set_xlim(p.bounds[0], p.bounds[2])
        ax.set_ylim(p.bounds[1], p.bounds[3])
        ax.set_aspect("equal")
        ax.axis("off")
        if isinstance(p, CellLayout):
            families |= draw_cell(ax, p, style)
        else:
            families |= draw_chain(ax, p, style)
        y_top -= h
    fams = [f for f in OP_FAMILIES if f in families]
    handles = [Line2D([], [], color=FAMILY_COLORS[f], lw=2.5, label=f) for f in fams]
    if any(isinstance(p, CellLayout) and p.info.output == "concat" for p in panels):
        handles.append(Line2D([], [], color="#9A9A9A", lw=1.2, ls=(0, (4, 2)), label="concat (no op)"))
    if any(isinstance(p, CellLayout) and any(n.kind == "empty" for n in p.nodes) for p in panels):
        handles.append(Line2D([], [], ls="none", marker="o", ms=11, mfc="white", mec="#333333",
                              label="node without input (zero)"))
    if any(isinstance(p, ChainLayout) and any(b.faded for b in p.boxes) for p in panels):
        handles.append(Line2D([], [], color="#7F7F7F", lw=1.4, ls="--", alpha=0.5, label="skipped layer"))
    if handles:
        fig.legend(handles=handles, loc="center", bbox_to_anchor=(0.5, (legend_h / 2 + 0.05) / fig_h),
                   ncol=len(handles), frameon=False, fontsize=style.label_fontsize + 1,
                   handlelength=2.2, columnspacing=1.6)
    drawing = ArchitectureDrawing(arch.space, panels, families=fams)
    return fig, drawing


def draw_architecture(arch: Architecture, out: str | os.PathLike, info: CellInfo | None = None,
                      title: str | None = None, style: DrawStyle | None = None) -> ArchitectureDrawing:
    """Draw ``arch`` to ``out`` (``.png``, ``.svg`` or ``.pdf``); return what was drawn.

    ``info`` overrides how cell inputs and output are read (default: from the
    space, see :func:`cell_info_for_space`, else :func:`infer_cell_info`).
    """
    path = check_output_path(out)
    fig, drawing = render_architecture(arch, info, title, style)
    try:
        fig.savefig(path, dpi=fig.dpi, facecolor="white")
    except OSError as e:
        raise ConfigError(f"cannot write '{path}': {e}") from None
    drawing.path = path
    drawing.size_px = tuple(fig.canvas.get_width_height())  # pixels of a PNG
    return drawing
