"""Drawing conventions shared by every picture: output formats, the colour of each operation
family, sizes (:class:`DrawStyle`)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from attnas.errors import ConfigError

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
