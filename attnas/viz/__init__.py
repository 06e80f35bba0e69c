"""Drawings of architectures (cells as DAGs, chains as rows of boxes) and of run curves.

* :func:`draw_architecture` / :func:`layout_architecture` -- :mod:`attnas.viz.draw`
* :func:`plot_run` -- :mod:`attnas.viz.curves`

Everything renders through matplotlib's Agg canvas directly (no pyplot, no
global backend change).
"""
from attnas.viz.curves import CurvesDrawing, is_run_dir, plot_run, read_run
from attnas.viz.draw import (DARTS_CELL, FAMILY_COLORS, FORMATS, NB201_CELL, ArchitectureDrawing,
                             CellInfo, CellLayout, ChainLayout, DrawStyle, cell_info_for_space,
                             check_output_path, draw_architecture, infer_cell_info, layout_architecture,
                             layout_cell, layout_chain, op_family, render_architecture)

__all__ = [
    "ArchitectureDrawing", "CellInfo", "CellLayout", "ChainLayout", "CurvesDrawing", "DARTS_CELL",
    "DrawStyle", "FAMILY_COLORS", "FORMATS", "NB201_CELL", "cell_info_for_space", "check_output_path",
    "draw_architecture", "infer_cell_info", "is_run_dir", "layout_architecture", "layout_cell",
    "layout_chain", "op_family", "plot_run", "read_run", "render_architecture",
]
