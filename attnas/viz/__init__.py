"""Drawings of architectures (cells as DAGs, chains as rows of boxes) and of run curves.

* :func:`draw_architecture` / :func:`layout_architecture` -- :mod:`attnas.viz.draw` (cells:
  :mod:`attnas.viz.cell`, chains: :mod:`attnas.viz.chain`, geometry: :mod:`attnas.viz.geometry`,
  formats, colours and sizes: :mod:`attnas.viz.style`)
* :func:`plot_run` -- :mod:`attnas.viz.curves`

Everything renders through matplotlib's Agg canvas directly (no pyplot, no
global backend change).
"""
from attnas.arch import CellInfo
from attnas.viz.cell import (DARTS_CELL, NB201_CELL, CellLayout, cell_info_for_space, infer_cell_info,
                             layout_cell)
from attnas.viz.curves import CurvesDrawing, is_run_dir, plot_run, read_run
from attnas.viz.chain import ChainLayout, layout_chain
from attnas.viz.draw import ArchitectureDrawing, draw_architecture, layout_architecture, render_architecture
from attnas.viz.style import FAMILY_COLORS, FORMATS, DrawStyle, check_output_path, op_family

__all__ = [
    "ArchitectureDrawing", "CellInfo", "CellLayout", "ChainLayout", "CurvesDrawing", "DARTS_CELL",
    "DrawStyle", "FAMILY_COLORS", "FORMATS", "NB201_CELL", "cell_info_for_space", "check_output_path",
    "draw_architecture", "infer_cell_info", "is_run_dir", "layout_architecture", "layout_cell",
    "layout_chain", "op_family", "plot_run", "read_run", "render_architecture",
]
