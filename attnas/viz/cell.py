"""Cells as DAGs: layout (:func:`layout_cell`) and drawing (:func:`draw_cell`).

Every edge key ``"<cell>:<src>-><dst>"`` is an edge of the DAG
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
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnas.arch import Architecture, CellInfo
from attnas.errors import ArchitectureError, ConfigError
from attnas.viz.geometry import CURVE_T, bezier, control, label_extent, points_in, rect_circle, rects_overlap
from attnas.viz.style import FAMILY_COLORS, DrawStyle, op_family

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


# ---------------------------------------------------------------------------
# layout
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
        half = label_extent(edge.op, self.style) if edge.kind == "op" else (0.0, 0.0)
        best = None
        for bow in bows:
            rad = 2 * bow / length  # the curve's middle lies bow away from the chord
            c = control(p0, p2, rad)
            pts = bezier(p0, c, p2, CURVE_T)
            base = self.THROUGH_NODE * self._through_nodes(pts, edge.src, edge.dst) + abs(bow)
            inner = pts[4:-4]
            base += self.CROSS_LABEL * sum(points_in(bx, inner) for bx in self.label_boxes)
            for t in ts:
                cost = base + 2.0 * abs(t - 0.5)
                box = None
                xy = None
                if edge.kind == "op":
                    xy = bezier(p0, c, p2, np.array([t]))[0]
                    box = (xy[0] - half[0], xy[1] - half[1], xy[0] + half[0], xy[1] + half[1])
                    if any(rects_overlap(box, other, 0.04) for other in self.label_boxes):
                        cost += self.HARD
                    if any(rect_circle(box, n.x, n.y, self.style.node_radius + 0.03) for n in self.nodes):
                        cost += self.HARD
                    cost += self.COVER_CURVE * sum(points_in(box, cv) for cv in self.curves)
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
# drawing
def draw_cell(ax, panel: CellLayout, style: DrawStyle) -> set[str]:
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
