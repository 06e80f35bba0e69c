"""Chains as rows of boxes: layout (:func:`layout_chain`) and drawing (:func:`draw_chain`).

Every key that is not an edge key (``"layer:<i>"`` of chain spaces) is a box in a row, in
layer order, wrapping after ``DrawStyle.chain_per_row`` boxes; layers whose operation is a
skip (``skip``, ``identity``, ``none``) are drawn faded with a dashed border.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from attnas.arch import Architecture
from attnas.errors import ArchitectureError
from attnas.viz.geometry import text_size
from attnas.viz.style import FAMILY_COLORS, DrawStyle, op_family

#: chain layers drawn faded: the layer is left out of the network
SKIP_OPS = frozenset({"skip", "skip_connect", "identity", "none", "zero"})


@dataclass
class ChainBox:
    key: str
    op: str
    caption: str
    x: float
    y: float
    w: float
    h: float
    faded: bool
    family: str


@dataclass
class ChainLayout:
    """The geometry of a chain panel (inches)."""

    boxes: list[ChainBox]
    bounds: tuple[float, float, float, float]
    name: str = "chain"

    def labels(self) -> list[str]:
        return [b.op for b in self.boxes]


def _chain_sort_key(key: str) -> tuple:
    prefix, _, rest = key.partition(":")
    parts = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", rest) if p]
    return (prefix, [(0, p) if isinstance(p, int) else (1, p) for p in parts])


def layout_chain(arch: Architecture, keys: list[str] | None = None,
                 style: DrawStyle | None = None) -> ChainLayout:
    """Boxes for the non-edge keys of ``arch`` (``layer:<i>``), in layer order."""
    style = style or DrawStyle()
    keys = keys if keys is not None else [k for k in arch.choices if "->" not in k]
    if not keys:
        raise ArchitectureError("architecture has no layer to draw")
    keys = sorted(keys, key=_chain_sort_key)
    captions = [k.replace("layer:", "layer ") for k in keys]
    width = max(max(text_size(arch.choices[k], style.label_fontsize + 1)[0] for k in keys),
                max(text_size(c, style.label_fontsize - 1)[0] for c in captions)) + 0.3
    width = max(width, 1.0)
    per_row = max(1, style.chain_per_row)
    boxes = []
    for n, (k, cap) in enumerate(zip(keys, captions)):
        row, col = divmod(n, per_row)
        x = col * (width + style.chain_gap)
        y = -row * (style.chain_box_h + 2 * style.chain_gap)
        op = arch.choices[k]
        boxes.append(ChainBox(k, op, cap, x, y, width, style.chain_box_h,
                              op.lower() in SKIP_OPS, op_family(op)))
    x1 = max(b.x + b.w for b in boxes)
    y0 = min(b.y for b in boxes)
    bounds = (-0.1, y0 - 0.1, x1 + 0.1, style.chain_box_h + 0.1)
    return ChainLayout(boxes, bounds)


def draw_chain(ax, panel: ChainLayout, style: DrawStyle) -> set[str]:
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    from matplotlib.path import Path as MPath

    families = set()
    for b in panel.boxes:
        color = FAMILY_COLORS[b.family]
        alpha = 0.35 if b.faded else 1.0
        if not b.faded:  # skipped layers have their own legend entry
            families.add(b.family)
        box = FancyBboxPatch((b.x, b.y), b.w, b.h, boxstyle="round,pad=0,rounding_size=0.08",
                             fc=color, ec=color, alpha=0.18 if b.faded else 0.22, lw=0, zorder=2)
        ax.add_patch(box)
        ax.add_patch(FancyBboxPatch((b.x, b.y), b.w, b.h, boxstyle="round,pad=0,rounding_size=0.08",
                                    fc="none", ec=color, lw=1.4, ls="--" if b.faded else "-",
                                    alpha=alpha, zorder=3))
        ax.text(b.x + b.w / 2, b.y + b.h * 0.72, b.caption, ha="center", va="center",
                fontsize=style.label_fontsize - 1, color="#555555", alpha=alpha, zorder=4)
        ax.text(b.x + b.w / 2, b.y + b.h * 0.36, b.op, ha="center", va="center",
                fontsize=style.label_fontsize + 1, color="#1A1A1A", alpha=alpha, zorder=4,
                fontweight="bold" if not b.faded else "normal")
    for a, b in zip(panel.boxes, panel.boxes[1:]):
        if abs(a.y - b.y) < 1e-9:
            verts = [(a.x + a.w, a.y + a.h / 2), (b.x, b.y + b.h / 2)]
        else:  # wrap to the next row: down, left, down
            ymid = (a.y + b.y + b.h) / 2
            verts = [(a.x + a.w / 2, a.y), (a.x + a.w / 2, ymid), (b.x + b.w / 2, ymid),
                     (b.x + b.w / 2, b.y + b.h)]
        path = MPath(verts, [MPath.MOVETO] + [MPath.LINETO] * (len(verts) - 1))
        ax.add_patch(FancyArrowPatch(path=path, arrowstyle="-|>", mutation_scale=10, lw=1.2,
                                     color="#444444", zorder=1))
    return families
