"""Building blocks shared by the cell spaces: the cell DAG and drop-path."""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from attnas.arch import edge_key


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob`` and rescale (DARTS eval, Zoph et al.)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


class CellDAG(nn.Module):
    """Nodes ``n_inputs .. n_inputs+n_nodes-1``; node j = sum of its incoming edges.

    ``edges`` maps ``(src, dst)`` to a module (a supernet ChoiceBlock or a
    fixed operation).  A node with no incoming edge is an error caught when the
    architecture is validated.  The output is the concatenation of ``concat``
    nodes (DARTS) or the last node (NAS-Bench-201, ``concat=None``).
    ``drop_prob`` is applied, during training, to every edge that is not an
    identity (DARTS evaluation network).
    """

    def __init__(self, cell: str, n_inputs: int, n_nodes: int,
                 edges: Mapping[tuple[int, int], nn.Module], concat: list[int] | None) -> None:
        super().__init__()
        self.n_inputs, self.n_nodes, self.concat = n_inputs, n_nodes, concat
        self.edge_list = sorted(edges, key=lambda e: (e[1], e[0]))
        self.edges = nn.ModuleDict({edge_key(cell, s, d).replace(":", "_").replace("->", "_"): edges[(s, d)]
                                    for s, d in self.edge_list})
        self._names = [edge_key(cell, s, d).replace(":", "_").replace("->", "_") for s, d in self.edge_list]
        self.drop_prob = 0.0

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        states = list(inputs)
        by_dst: dict[int, list[int]] = {}
        for i, (s, d) in enumerate(self.edge_list):
            by_dst.setdefault(d, []).append(i)
        for dst in range(self.n_inputs, self.n_inputs + self.n_nodes):
            total = None
            for i in by_dst.get(dst, []):
                src = self.edge_list[i][0]
                op = self.edges[self._names[i]]
                h = op(states[src])
                if self.training and self.drop_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, self.drop_prob)
                total = h if total is None else total + h
            states.append(total if total is not None else torch.zeros_like(states[-1]))
        if self.concat is None:
            return states[-1]
        return torch.cat([states[i] for i in self.concat], dim=1)
