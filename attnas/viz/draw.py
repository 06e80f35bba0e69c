"""Pictures of architectures: cells as DAGs, chains as rows of boxes.

The drawing is generic over :class:`attnas.arch.Architecture`, not written per
space:

* **cells** -- every edge key ``"<cell>:<src>-><dst>"`` is an edge of the DAG
  of cell type ``<cell>``; one panel per cell type (DARTS: ``normal`` and
  ``reduce``; NAS-Bench-201: ``cell``).  Edges whose operation is ``none`` are
  not drawn.  How a cell starts and ends comes from a :class:`CellInfo`:

  - DARTS-like spaces (``darts``, ``s1``-``s4``, any subclass of the DARTS
    space): nodes 0 and 1 are the inputs ``c_{k-2}``, ``c_{k-1}``; the output
    ``c_{k}`` is an extra node fed (grey dashed arrows, no operation) by every
    intermediate node, since the cell concatenates them.
  - NAS-Bench-201: node 0 is the input, the last node is the output.
  - a space may declare its own ``viz_cell = CellInfo(...)`` class attribute;
  - any other cell space is inferred (:func:`infer_cell_info`): the leading
    nodes that are never the destination of an edge key are the inputs; with
    one input the last node is the output (NAS-Bench-201 convention), with
    several the output concatenates every other node (DARTS convention).

  Nodes are placed left to right by index (inputs stacked in the first
  column), and every edge is a quadratic curve labelled with its operation
  at a point of the curve.  The bend of each curve and the position of its
  label are chosen greedily (shortest edges first) from a small set of
  candidates so that labels overlap neither each other nor nodes and curves
  avoid nodes and labels; this handles any number of inputs per node
  (flexible topologies such as EnTranNAS-DST).  Intermediate nodes with no
  incoming operation (allowed in NAS-Bench-201: their value is zero) are
  drawn dashed.

* **chains** -- every other key (``"layer:<i>"`` of chain spaces) is a box in
  a row, in layer order, wrapping after ``DrawStyle.chain_per_row`` boxes;
  layers whose operation is a skip (``skip``, ``identity``, ``none``) are
  drawn faded with a dashed border.

Colours follow the operation family (:func:`op_family`: conv, pool, skip,
attention, other).  Only matplotlib is used, through its Agg canvas directly
(no pyplot, so the caller's matplotlib backend is left alone).  The layout
functions return the geometry they drew (:class:`CellLayout`,
:class:`ChainLayout`) so callers and tests can inspect it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Union

import numpy as np

from attnas.arch import Architecture, CellInfo, parse_edge_key
from attnas.errors import ArchitectureError, ConfigError

#: output formats :func:`draw_architecture` and :func:`attnas.viz.curves.plot_run` write
FORMATS = (".png", ".svg", ".pdf")

OP_FAMILIES = ("conv", "pool", "skip", "attention", "other")
#: colour per operation family (colour-blind-safe Okabe-Ito hues)
FAMILY_COLORS = {"conv": "#0072B2", "pool": "#009E73", "skip": "#7F7F7F",
                 "attention": "#CC79A7", "other": "#D55E00"}
_FAMILY_RULES = (  # first match wins; op names are lower-cased first
    ("skip", re.compile(r"skip|identity|^id$|^none$|zero")),
    ("attention", re.compile(r"att|transformer|mhsa|self_?att|axial|token|^sa[_\d]|^trio")),
    ("pool", re.compile(r"pool")),
    ("conv", re.compile(r"conv|^mb|^ir[_\d]|^k\d|sep|dil|bottleneck|resnet|^fc|linear")),
)
#: chain layers drawn faded: the layer is left out of the network
SKIP_OPS = frozenset({"skip", "skip_connect", "identity", "none", "zero"})


def op_family(op: str) -> str:
    """The family of an operation name: ``conv``, ``pool``, ``skip``, ``attention`` or ``other``."""
    name = op.lower()
    for fam, rule in _FAMILY_RULES:
        if rule.search(name):
            return fam
    return "other"


@dataclass(frozen=True)
class DrawStyle:
    """Sizes of a drawing; lengths in inches (one layout unit is one inch)."""

    node_radius: float = 0.3
    node_dx: float = 2.1          # horizontal distance between consecutive nodes
    input_dy: float = 2.0         # vertical distance between stacked input nodes
    label_fontsize: float = 9.0
    node_fontsize: float = 11.0
    title_fontsize: float = 12.0
    label_pad: float = 0.25       # label box padding, in units of the font size
    bow_step: float = 0.35        # bends tried for a curve: 0, +-step, +-2 step, ... (inches at its middle)
    max_bow: float = 2.2          # largest bend tried
    chain_per_row: int = 8
    chain_box_h: float = 0.8
    chain_gap: float = 0.45
    dpi: int = 150


DARTS_CELL = CellInfo(2, "concat", ("$c_{k-2}$", "$c_{k-1}$"), "$c_{k}$")
NB201_CELL = CellInfo(1, "last", ("in",), "out")


def cell_info_for_space(space: str) -> CellInfo | None:
    """The :class:`CellInfo` of a registered space, or None when the space is
    unknown or declares nothing (then :func:`infer_cell_info` is used)."""
    from attnas.spaces.registry import get_space_class

    try:
        cls = get_space_class(space)
    except ConfigError:
        return None
    declared = getattr(cls, "viz_cell", None)
    if isinstance(declared, CellInfo):
        return declared
    from attnas.spaces.darts import _DartsLikeSpace
    from attnas.spaces.nb201 import NB201Space

    if issubclass(cls, _DartsLikeSpace):
        return DARTS_CELL
    if issubclass(cls, NB201Space):
        return NB201_CELL
    return None


def infer_cell_info(edges: list[tuple[int, int]]) -> CellInfo:
    """Inputs = the leading nodes that are never a destination (over every edge
    key, ``none`` included); one input -> the last node is the output, several
    -> the output concatenates every other node."""
    dsts = {d for _, d in edges}
    n = 0
    while n in {s for s, _ in edges} | dsts and n not in dsts:
        n += 1
    n = max(n, 1)
    return CellInfo(n, "last" if n == 1 else "concat")


# ---------------------------------------------------------------------------
# layout data
@dataclass
class Node:
    """A drawn node of a cell: ``kind`` is ``input``, ``node``, ``output`` or ``empty``
    (an intermediate node without incoming operation)."""

    id: int
    label: str
    x: float
    y: float
    kind: str
    caption: str = ""


@dataclass
class Edge:
    """A drawn edge: ``kind`` ``op`` (labelled with ``op``) or ``concat`` (into a concat output)."""

    src: int
    dst: int
    op: str
    kind: str
    family: str
    rad: float = 0.0                          # matplotlib arc3 bend
    label_xy: tuple[float, float] | None = None
    label_box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1


@dataclass
class CellLayout:
    """The geometry of one cell panel (inches)."""

    cell: str
    nodes: list[Node]
    edges: list[Edge]
    bounds: tuple[float, float, float, float]  # x0, y0, x1, y1 of everything drawn
    info: CellInfo

    @property
    def name(self) -> str:
        return self.cell

    def node(self, node_id: int) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def op_edges(self) -> list[Edge]:
        """The labelled edges: one per non-``none`` edge key of the cell."""
        return [e for e in self.edges if e.kind == "op"]

    def labels(self) -> list[str]:
        return [e.op for e in self.op_edges()]


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


# ---------------------------------------------------------------------------
# text measurement and geometry helpers
@lru_cache(maxsize=512)
def _text_size(text: str, fontsize: float) -> tuple[float, float]:
    """Width and height of ``text`` in inches (Agg renderer, 72 points per inch)."""
    from matplotlib.font_manager import FontProperties

    w, h, _ = _renderer().get_text_width_height_descent(text, FontProperties(size=fontsize),
                                                        ismath="$" in text)
    return w / 72.0, h / 72.0


@lru_cache(maxsize=1)
def _renderer():
    from matplotlib.backends.backend_agg import RendererAgg

    return RendererAgg(10, 10, 72)


def _label_extent(text: str, style: DrawStyle) -> tuple[float, float]:
    """Half width and half height of a label box (text + padding), inches."""
    w, h = _text_size(text, style.label_fontsize)
    pad = style.label_pad * style.label_fontsize / 72.0
    return w / 2 + pad, max(h, style.label_fontsize / 72.0) / 2 + pad


_T = np.linspace(0.0, 1.0, 41)


def _control(p0: np.ndarray, p2: np.ndarray, rad: float) -> np.ndarray:
    """matplotlib ``arc3`` control point: midpoint + rad * (dy, -dx)."""
    d = p2 - p0
    return (p0 + p2) / 2 + rad * np.array([d[1], -d[0]])


def _bezier(p0: np.ndarray, c: np.ndarray, p2: np.ndarray, t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=float)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * c + t ** 2 * p2


def _rect_circle(box: tuple[float, float, float, float], cx: float, cy: float, r: float) -> bool:
    x0, y0, x1, y1 = box
    dx = cx - min(max(cx, x0), x1)
    dy = cy - min(max(cy, y0), y1)
    return dx * dx + dy * dy < r * r


def _rects(a: tuple[float, float, float, float], b: tuple[float, float, float, float],
           margin: float = 0.0) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0]
                or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def _points_in(box: tuple[float, float, float, float], pts: np.ndarray) -> bool:
    x0, y0, x1, y1 = box
    return bool(np.any((pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > y0) & (pts[:, 1] < y1)))


# ---------------------------------------------------------------------------
# cell layout
def _place_nodes(cell_edges: list[tuple[int, int, str]], info: CellInfo,
                 style: DrawStyle) -> list[Node]:
    ids = set(range(info.n_inputs)) | {s for s, _, _ in cell_edges} | {d for _, d, _ in cell_edges}
    n_max = max(ids)
    fed = {d for _, d, op in cell_edges if op != "none"}
    nodes: list[Node] = []
    for i in range(info.n_inputs):
        y = ((info.n_inputs - 1) / 2 - i) * style.input_dy
        nodes.append(Node(i, info.input_label(i), 0.0, y, "input", caption=str(i)))
    for j in range(info.n_inputs, n_max + 1):
        x = (j - info.n_inputs + 1) * style.node_dx
        kind = "node" if j in fed else "empty"
        if info.output == "last" and j == n_max:
            nodes.append(Node(j, info.output_label, x, 0.0, "output" if j in fed else "empty",
                              caption=str(j)))
        else:
            nodes.append(Node(j, str(j), x, 0.0, kind))
    if info.output == "concat":
        x = (n_max - info.n_inputs + 2) * style.node_dx
        nodes.append(Node(n_max + 1, info.output_label, x, 0.0, "output", caption="concat"))
    return nodes


class _Placer:
    """Greedy choice of bend and label position per edge (see the module docstring)."""

    HARD, THROUGH_NODE, CROSS_LABEL, COVER_CURVE = 1000.0, 300.0, 30.0, 30.0

    def __init__(self, nodes: list[Node], style: DrawStyle) -> None:
        self.style = style
        self.nodes = nodes
        self.pos = {n.id: np.array([n.x, n.y]) for n in nodes}
        self.label_boxes: list[tuple[float, float, float, float]] = []
        self.curves: list[np.ndarray] = []

    def _through_nodes(self, pts: np.ndarray, src: int, dst: int) -> int:
        r = self.style.node_radius + 0.1
        hits = 0
        for n in self.nodes:
            if n.id in (src, dst):
                continue
            if np.min(np.hypot(pts[:, 0] - n.x, pts[:, 1] - n.y)) < r:
                hits += 1
        return hits

    def place(self, edge: Edge) -> None:
        p0, p2 = self.pos[edge.src], self.pos[edge.dst]
        length = float(np.hypot(*(p2 - p0)))
        bows = [0.0]
        b = self.style.bow_step
        while b <= self.style.max_bow + 1e-9:
            bows += [b, -b]
            b += self.style.bow_step
        ts = (0.5, 0.38, 0.62, 0.28, 0.72) if edge.kind == "op" else (0.5,)
        half = _label_extent(edge.op, self.style) if edge.kind == "op" else (0.0, 0.0)
        best = None
        for bow in bows:
            rad = 2 * bow / length  # the curve's middle lies bow away from the chord
            c = _control(p0, p2, rad)
            pts = _bezier(p0, c, p2, _T)
            base = self.THROUGH_NODE * self._through_nodes(pts, edge.src, edge.dst) + abs(bow)
            inner = pts[4:-4]
            base += self.CROSS_LABEL * sum(_points_in(bx, inner) for bx in self.label_boxes)
            for t in ts:
                cost = base + 2.0 * abs(t - 0.5)
                box = None
                xy = None
                if edge.kind == "op":
                    xy = _bezier(p0, c, p2, np.array([t]))[0]
                    box = (xy[0] - half[0], xy[1] - half[1], xy[0] + half[0], xy[1] + half[1])
                    if any(_rects(box, other, 0.04) for other in self.label_boxes):
                        cost += self.HARD
                    if any(_rect_circle(box, n.x, n.y, self.style.node_radius + 0.03) for n in self.nodes):
                        cost += self.HARD
                    cost += self.COVER_CURVE * sum(_points_in(box, cv) for cv in self.curves)
                if best is None or cost < best[0]:
                    best = (cost, rad, pts, xy, box)
                if cost < 1.0:  # nothing in the way: take the straightest choice
                    break
            if best[0] < 1.0:
                break
        _, rad, pts, xy, box = best
        edge.rad = float(rad)
        self.curves.append(pts[3:-3])
        if box is not None:
            edge.label_xy = (float(xy[0]), float(xy[1]))
            edge.label_box = tuple(float(v) for v in box)
            self.label_boxes.append(edge.label_box)


def _cell_edges(arch: Architecture, cell: str) -> list[tuple[int, int, str]]:
    return [(s, d, op) for c, s, d, op in arch.edges(cell)]


def layout_cell(arch: Architecture, cell: str, info: CellInfo | None = None,
                style: DrawStyle | None = None) -> CellLayout:
    """Place the nodes and edges of cell type ``cell`` of ``arch`` (inches)."""
    style = style or DrawStyle()
    cell_edges = _cell_edges(arch, cell)
    if not cell_edges:
        raise ArchitectureError(f"architecture has no edge of cell '{cell}'")
    info = info or cell_info_for_space(arch.space) or infer_cell_info([(s, d) for s, d, _ in cell_edges])
    for s, d, _ in cell_edges:
        if s >= d:
            raise ArchitectureError(f"edge '{cell}:{s}->{d}' does not go forward: a cell is a DAG "
                                    "with edges from lower to higher node numbers")
        if d < info.n_inputs:
            raise ArchitectureError(f"edge '{cell}:{s}->{d}' enters input node {d} of the cell")
    nodes = _place_nodes(cell_edges, info, style)
    edges = [Edge(s, d, op, "op", op_family(op)) for s, d, op in cell_edges if op != "none"]
    # shortest spans first: they get straight lines, longer ones bend around them
    edges.sort(key=lambda e: (e.dst - e.src, e.dst, e.src))
    if info.output == "concat":
        out = nodes[-1].id
        edges += [Edge(n.id, out, "concat", "concat", "other")
                  for n in nodes if n.kind in ("node", "empty")
                  and (info.concat_nodes is None or n.id in info.concat_nodes)]
    placer = _Placer(nodes, style)
    for e in edges:
        placer.place(e)
    r = style.node_radius
    xs = [n.x - r for n in nodes] + [n.x + r for n in nodes]
    ys = [n.y - r - 0.25 for n in nodes] + [n.y + r for n in nodes]
    for cv in placer.curves:
        xs += [float(cv[:, 0].min()), float(cv[:, 0].max())]
        ys += [float(cv[:, 1].min()), float(cv[:, 1].max())]
    for bx in placer.label_boxes:
        xs += [bx[0], bx[2]]
        ys += [bx[1], bx[3]]
    pad = 0.08  # room for line widths and arrow heads
    bounds = (min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad)
    return CellLayout(cell, nodes, edges, bounds, info)


# ---------------------------------------------------------------------------
# chain layout
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
    width = max(max(_text_size(arch.choices[k], style.label_fontsize + 1)[0] for k in keys),
                max(_text_size(c, style.label_fontsize - 1)[0] for c in captions)) + 0.3
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


# ---------------------------------------------------------------------------
# rendering
def check_output_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path; ConfigError unless its extension is a supported format
    and its folder exists."""
    p = Path(path)
    if p.suffix.lower() not in FORMATS:
        raise ConfigError(f"cannot write '{p}': unsupported picture format '{p.suffix or '(none)'}'; "
                          f"use one of {', '.join(FORMATS)}")
    if not p.parent.is_dir():
        raise ConfigError(f"cannot write '{p}': folder '{p.parent}' does not exist")
    return p


def _panel_title(panel: Panel) -> str:
    if isinstance(panel, ChainLayout):
        n = len(panel.boxes)
        skipped = sum(b.faded for b in panel.boxes)
        return f"chain: {n} layers" + (f" ({skipped} skipped, faded)" if skipped else "")
    n = len(panel.op_edges())
    names = {"normal": "normal cell", "reduce": "reduction cell", "cell": "cell"}
    return f"{names.get(panel.cell, panel.cell + ' cell')}: {n} operation{'s' if n != 1 else ''}"


def _draw_cell(ax, panel: CellLayout, style: DrawStyle) -> set[str]:
    from matplotlib.patches import Circle, FancyArrowPatch

    fills = {"input": "#D9F0D3", "node": "#DCE9F5", "output": "#FFF2B3", "empty": "white"}
    circles = {}
    shrink = style.node_radius * 72 + 1.5
    families = set()
    for n in panel.nodes:
        circ = Circle((n.x, n.y), style.node_radius, fc=fills[n.kind], ec="#333333",
                      lw=1.2, ls="--" if n.kind == "empty" else "-", zorder=3)
        ax.add_patch(circ)
        circles[n.id] = circ
        ax.text(n.x, n.y, n.label, ha="center", va="center", fontsize=style.node_fontsize, zorder=4)
        if n.caption and n.caption != n.label:
            ax.text(n.x, n.y - style.node_radius - 0.04, n.caption, ha="center", va="top",
                    fontsize=style.label_fontsize - 2, color="#666666", zorder=4)
    for e in panel.edges:
        pa, pb = panel.node(e.src), panel.node(e.dst)
        if e.kind == "concat":
            color, lw, ls = "#9A9A9A", 1.0, (0, (4, 2))
        else:
            color, lw, ls = FAMILY_COLORS[e.family], 1.6, "-"
            families.add(e.family)
        arrow = FancyArrowPatch((pa.x, pa.y), (pb.x, pb.y), connectionstyle=f"arc3,rad={e.rad:.4f}",
                                arrowstyle="-|>", mutation_scale=11, lw=lw, color=color,
                                linestyle=ls, shrinkA=shrink, shrinkB=shrink, zorder=2)
        ax.add_patch(arrow)
        if e.kind == "op" and e.label_xy is not None:
            ax.text(*e.label_xy, e.op, ha="center", va="center", fontsize=style.label_fontsize,
                    color="#1A1A1A", zorder=5,
                    bbox=dict(boxstyle=f"round,pad={style.label_pad}", fc="white", ec=color, lw=0.9))
    return families


def _draw_chain(ax, panel: ChainLayout, style: DrawStyle) -> set[str]:
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
            families |= _draw_cell(ax, p, style)
        else:
            families |= _draw_chain(ax, p, style)
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
