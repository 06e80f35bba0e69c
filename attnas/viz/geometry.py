"""Geometry of a drawing in inches: text extents (Agg renderer), quadratic curves as
matplotlib's ``arc3`` draws them, and overlap tests of boxes, circles and points."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from attnas.viz.style import DrawStyle


@lru_cache(maxsize=512)
def text_size(text: str, fontsize: float) -> tuple[float, float]:
    """Width and height of ``text`` in inches (Agg renderer, 72 points per inch)."""
    from matplotlib.font_manager import FontProperties

    w, h, _ = _renderer().get_text_width_height_descent(text, FontProperties(size=fontsize),
                                                        ismath="$" in text)
    return w / 72.0, h / 72.0


@lru_cache(maxsize=1)
def _renderer():
    from matplotlib.backends.backend_agg import RendererAgg

    return RendererAgg(10, 10, 72)


def label_extent(text: str, style: DrawStyle) -> tuple[float, float]:
    """Half width and half height of a label box (text + padding), inches."""
    w, h = text_size(text, style.label_fontsize)
    pad = style.label_pad * style.label_fontsize / 72.0
    return w / 2 + pad, max(h, style.label_fontsize / 72.0) / 2 + pad


CURVE_T = np.linspace(0.0, 1.0, 41)


def control(p0: np.ndarray, p2: np.ndarray, rad: float) -> np.ndarray:
    """matplotlib ``arc3`` control point: midpoint + rad * (dy, -dx)."""
    d = p2 - p0
    return (p0 + p2) / 2 + rad * np.array([d[1], -d[0]])


def bezier(p0: np.ndarray, c: np.ndarray, p2: np.ndarray, t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=float)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * c + t ** 2 * p2


def rect_circle(box: tuple[float, float, float, float], cx: float, cy: float, r: float) -> bool:
    x0, y0, x1, y1 = box
    dx = cx - min(max(cx, x0), x1)
    dy = cy - min(max(cy, y0), y1)
    return dx * dx + dy * dy < r * r


def rects_overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float],
           margin: float = 0.0) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0]
                or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def points_in(box: tuple[float, float, float, float], pts: np.ndarray) -> bool:
    x0, y0, x1, y1 = box
    return bool(np.any((pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > y0) & (pts[:, 1] < y1)))
