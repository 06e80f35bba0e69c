"""Feature-sharing cells with a bottleneck, in two roles: engine and transit (EnTranNAS).

EnTranNAS (Yang et al., CVPR 2021) re-shapes the DARTS search network of the
DARTS-like spaces (DARTS, S1-S4); the evaluation network is unchanged.

* Feature sharing (Eq. 6): a cell holds ONE instance of operation ``k`` per
  source node ``i`` (weights ``w_k^(i)``), and ``o_k(w_k^(i), x_i)`` is
  computed once per forward and re-used by every edge ``(i, j)``, ``j > i``.
  The candidates of source ``i`` are the union of the candidates of its
  outgoing edges (S1 lists different pairs per edge).  ``noise`` (S4) is shared
  like every other operation: one noise draw per source node and forward.
* Bottleneck (Sec. 2.5): every source node is reduced by a 1x1 ReLU-Conv-BN to
  ``C // ratio`` channels (ratio 4) before the candidates; each intermediate
  node restores ``C`` channels with a 1x1 Conv-BN after summing its inputs.
  Reduction cells round the bottleneck width up to an even number (the strided
  ``skip_connect`` is a FactorizedReduce, which needs one).
* Roles (Fig. 2, Fig. 4): an *engine* cell computes the weighted sum over every
  connection ``(i, k)`` with a non-zero coefficient (Eq. 6 top); a *transit*
  cell computes only the connections of the currently derived architecture,
  unweighted (Eq. 6 bottom).  Operations that no kept connection uses are
  never run -- in either role -- which is where the savings come from.

What the cells compute is given, once per forward, by a *planner* (a callable
supplied by the strategy) that returns a :class:`CellPlan` per cell type; the
network stores the plans on its cells before running them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
import torch.nn as nn

from attnas.arch import edge_key
from attnas.errors import ConfigError
from attnas.ops.primitives import ReLUConvBN, build_op, darts_ops
from attnas.spaces.darts import (CELL_TYPES, CONCAT, DARTS_EDGES, N_INPUTS, N_NODES, DartsNetwork,
                                 _DartsLikeSpace)

#: one connection of a node: (source node, operation name, coefficient or None = 1)
Connection = tuple[int, str, "torch.Tensor | None"]


@dataclass
class CellPlan:
    """What every cell of one type computes in this forward.

    engine:  node -> connections ``(i, op, coefficient)``; zero-coefficient
             connections are left out (they contribute nothing, in value and
             gradient).
    transit: node -> connections ``(i, op, None)`` of the derived architecture.
    """

    engine: dict[int, list[Connection]] = field(default_factory=dict)
    transit: dict[int, list[Connection]] = field(default_factory=dict)


Planner = Callable[[], Mapping[str, CellPlan]]


def bottleneck_width(C: int, ratio: int, reduction: bool) -> int:
    """``C // ratio`` (at least 1), rounded up to even in reduction cells."""
    width = max(1, C // ratio)
    if reduction and width % 2:
        width += 1
    return width


class SharedCell(nn.Module):
    """A DARTS-like cell with feature sharing and bottleneck; ``role`` is "engine" or "transit"."""

    def __init__(self, cell: str, C: int, reduction: bool, candidates: Mapping[tuple[int, int], Sequence[str]],
                 ratio: int) -> None:
        super().__init__()
        self.cell, self.role = cell, "transit"
        self.plan: CellPlan | None = None
        Cb = bottleneck_width(C, ratio, reduction)
        family = darts_ops(search=True)
        sources = sorted({i for i, _ in candidates})
        self.reduce = nn.ModuleDict()
        self.ops = nn.ModuleDict()
        for i in sources:
            names = sorted({o for (s, _), ops in candidates.items() if s == i for o in ops if o != "none"})
            stride = 2 if reduction and i < N_INPUTS else 1
            self.reduce[str(i)] = ReLUConvBN(C, Cb, 1, 1, 0, affine=False) if Cb != C else nn.Identity()
            self.ops[str(i)] = nn.ModuleDict({o: build_op(family, o, Cb, Cb, stride, False) for o in names})
        self.restore = nn.ModuleDict({
            str(j): (nn.Sequential(nn.Conv2d(Cb, C, 1, bias=False), nn.BatchNorm2d(C, affine=False))
                     if Cb != C else nn.Identity())
            for j in CONCAT})
        #: number of operation evaluations in the last forward (for tests and benchmarks)
        self.last_op_calls = 0

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        if self.plan is None:
            raise ConfigError("a SharedCell runs only inside its network (no plan was set)")
        plan = self.plan.engine if self.role == "engine" else self.plan.transit
        states = [s0, s1]
        reduced: dict[int, torch.Tensor] = {}
        feats: dict[tuple[int, str], torch.Tensor] = {}
        calls = 0
        for j in CONCAT:
            total = None
            for i, op, coef in plan[j]:
                key = (i, op)
                if key not in feats:  # Eq. 6: o_k(w_k^(i), x_i) once per source node
                    if i not in reduced:
                        reduced[i] = self.reduce[str(i)](states[i])
                    feats[key] = self.ops[str(i)][op](reduced[i])
                    calls += 1
                h = feats[key] if coef is None else coef * feats[key]
                total = h if total is None else total + h
            if total is None:
                raise ConfigError(f"{self.cell} cell node {j}: the plan has no input connection")
            states.append(self.restore[str(j)](total))
        self.last_op_calls = calls
        return torch.cat([states[j] for j in CONCAT], dim=1)


class SharedCellNetwork(DartsNetwork):
    """The DARTS search network built from :class:`SharedCell`; runs the planner once per forward."""

    def __init__(self, planner: Planner, engine_cells: Sequence[int], **kw) -> None:
        super().__init__(**kw)
        self._planner = planner
        self.engine_cells = sorted(set(int(i) for i in engine_cells))
        for idx, cell in enumerate(self.cells):
            cell.dag.role = "engine" if idx in self.engine_cells else "transit"

    def cell_types(self) -> list[str]:
        return [c.dag.cell for c in self.cells]

    def forward(self, x: torch.Tensor):
        plans = self._planner()
        for cell in self.cells:
            cell.dag.plan = plans[cell.dag.cell]
        try:
            return super().forward(x)
        finally:
            for cell in self.cells:  # drop the references to the plan's tensors
                cell.dag.plan = None


def cell_types_of(layers: int) -> list[str]:
    """The type of every cell of a DARTS network of ``layers`` cells (reductions at 1/3, 2/3)."""
    return ["reduce" if i in (layers // 3, 2 * layers // 3) else "normal" for i in range(layers)]


def engine_indices(spec: str | Sequence[int], layers: int) -> list[int]:
    """Cell indices of the engine cells (EnTranNAS Sec. 2.5 / Table 1 ablation).

    ``"first"``: the first normal and the first reduction cell (the paper);
    ``"last"``: the last of each type; ``"all"``: every cell (no transit cell);
    or an explicit list of indices (any configuration of the paper's Table 1).  Every cell type needs at least one engine
    cell, or its architecture parameters would get no gradient.
    """
    types = cell_types_of(layers)
    first = {t: types.index(t) for t in CELL_TYPES}
    last = {t: len(types) - 1 - types[::-1].index(t) for t in CELL_TYPES}
    if isinstance(spec, str):
        if spec == "first":
            idx = sorted(first.values())
        elif spec == "last":
            idx = sorted(last.values())
        elif spec == "all":
            idx = list(range(layers))
        else:
            raise ConfigError(f"unknown engine_cells '{spec}'; expected first, last, all "
                              "or a list of cell indices")
    else:
        try:
            idx = sorted({int(i) for i in spec})
        except (TypeError, ValueError):
            raise ConfigError(f"engine_cells must be a name or a list of cell indices, got {spec!r}") from None
        bad = [i for i in idx if not 0 <= i < layers]
        if bad:
            raise ConfigError(f"engine_cells {bad} out of range for a network of {layers} cells")
    missing = [t for t in CELL_TYPES if not any(types[i] == t for i in idx)]
    if missing:
        raise ConfigError(f"engine_cells {idx} has no {' and no '.join(missing)} cell; every cell type "
                          "needs an engine cell")
    return idx


def build_shared_supernet(space: _DartsLikeSpace, planner: Planner, engine_cells: str | Sequence[int],
                          ratio: int, num_classes: int, in_channels: int, image_size: int) -> SharedCellNetwork:
    """The EnTranNAS search network of a DARTS-like space (same macro structure as DARTS)."""
    if not isinstance(space, _DartsLikeSpace):
        raise ConfigError(f"EnTranNAS runs on the DARTS-like cell spaces (darts, s1-s4), not '{space.name}'")
    if ratio < 1:
        raise ConfigError(f"bottleneck ratio must be >= 1, got {ratio}")
    space.check_input(in_channels, image_size)
    points = {p.key: p for p in space.choice_points()}

    def make_dag(cell: str, C: int, reduction: bool) -> SharedCell:
        cands = {(i, j): points[edge_key(cell, i, j)].candidates for i, j in DARTS_EDGES}
        return SharedCell(cell, C, reduction, cands, ratio)

    return SharedCellNetwork(planner, engine_indices(engine_cells, space.layers), make_dag=make_dag,
                             C=space.C, layers=space.layers, num_classes=num_classes,
                             in_channels=in_channels, image_size=image_size, affine=False)


__all__ = ["CellPlan", "SharedCell", "SharedCellNetwork", "build_shared_supernet", "engine_indices",
           "bottleneck_width", "cell_types_of", "N_NODES"]
