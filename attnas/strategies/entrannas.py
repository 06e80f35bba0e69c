"""EnTranNAS and EnTranNAS-DST (Yang, Hu, Wang, Lin & Xu, CVPR 2021).

The search network is the DARTS one (8 cells, C=16) built from feature-sharing
bottleneck cells (:mod:`attnas.spaces.shared_cells`, Eq. 6 and Sec. 2.5).
*Engine* cells (default: the first normal and the first reduction cell, Fig. 4)
mix every connection with architecture weights; every other cell is a
*transit* cell that computes only the architecture derived from the engine's
current parameters, re-derived at every forward (Fig. 2).  Gradients reach
the architecture parameters through the engine cells only.

EnTranNAS (``entrannas``)
    p = softmax(alpha / tau) per edge (Eq. 5), tau annealed by epoch without
    Gumbel noise; ``none`` stays in the softmax and contributes zero (DARTS).
    Derivation (transit cells and the result): the DARTS rule, top-2 incoming
    edges per node by their strongest non-``none`` p, that operation on each
    (Eq. 4) -- the space's own :meth:`derive`.

EnTranNAS-DST (``entrannas-dst``)
    Per intermediate node j, over the connections (i, k) entering it:
    p (Eq. 5); connection normalisation p_hat = p / max_{i,k} p (Eq. 7);
    q = ReLU(p_hat - t_j), t_j = sigmoid(beta_j) (Eq. 8); on every edge with a
    non-zero q, q_hat = q / sum_k q (Eq. 9).  Engine cells use q_hat as
    coefficients, zero ones are skipped (exact: their value and gradient are
    zero).  Derivation keeps every connection with q_hat > 0 (Eq. 10): any
    number of inputs per node, at least one (the max has p_hat = 1 > t_j).
    Architecture step: L_val + lambda * sum over cell types of
    (1/(n-1)) sum_j -log t_j (Eq. 11), applied by :class:`PenalizedAdam`.

Choices where the paper is silent (documented and tested):

* ``none`` is left out of Eq. 5-9 in DST: the thresholds do its job, and a
  ``none`` maximum would leave a node without input (breaking Eq. 8's
  guarantee).  Its score is reported as 0.
* The library's architectures hold one operation per edge, so when two
  operations of the same edge survive Eq. 8 the derived architecture (and the
  transit cells, to stay equal to it) keep the one with the larger q; the
  engine cells keep both (Eq. 9).  ``meta["multi_op_edges"]`` counts them.
  With tau annealed the per-edge softmax is near one-hot, so this is rare.
* t_j is capped at ``t_max`` < 1 (float32 sigmoid rounds to 1 for beta > 17).
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnas.arch import Architecture, edge_key, parse_edge_key
from attnas.errors import ConfigError
from attnas.spaces.base import ChoicePoint
from attnas.spaces.darts import CELL_TYPES, CONCAT, _DartsLikeSpace
from attnas.spaces.shared_cells import CellPlan, build_shared_supernet
from attnas.strategies.base import ArchRef, SuperNet, register_strategy, register_variant, use_batch_statistics
from attnas.strategies.darts import DartsStrategy, param_name

TAU_SCHEDULES = ("linear", "exponential", "constant")


def temperature(schedule: str, tau_max: float, tau_min: float, epoch: int, epochs: int) -> float:
    """tau of Eq. 5 at ``epoch`` (0-based) of ``epochs``: tau_max at the first, tau_min at the last."""
    if schedule not in TAU_SCHEDULES:
        raise ConfigError(f"unknown tau_schedule '{schedule}'; expected one of {list(TAU_SCHEDULES)}")
    if schedule == "constant" or epochs <= 1:
        return float(tau_max)
    f = min(max(epoch, 0), epochs - 1) / (epochs - 1)
    if schedule == "linear":
        return float(tau_max + (tau_min - tau_max) * f)
    return float(tau_max * (tau_min / tau_max) ** f)


def beta_name(cell: str, node: int) -> str:
    return f"{cell}__{node}"


class PenalizedAdam(torch.optim.Adam):
    """Adam whose step first adds the gradient of ``penalty()`` (Eq. 11's sparsity term).

    The architecture step of DARTS backpropagates L_val; adding the penalty's
    gradient before the update gives the gradient of L_val + penalty exactly.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], penalty, **kw: Any) -> None:
        super().__init__(params, **kw)
        self.penalty = penalty
        self.last_penalty = 0.0

    def step(self, closure=None):  # type: ignore[override]
        with torch.enable_grad():
            pen = self.penalty()
            if pen.requires_grad:  # add d(penalty)/d(param) to the gradients of the step
                params = [p for g in self.param_groups for p in g["params"] if p.requires_grad]
                for p, g in zip(params, torch.autograd.grad(pen, params, allow_unused=True)):
                    if g is not None:
                        p.grad = g if p.grad is None else p.grad + g
        self.last_penalty = float(pen.detach())
        return super().step(closure)


@register_strategy("entrannas")
class EnTranNASStrategy(DartsStrategy):
    """EnTranNAS (``dst`` False) or EnTranNAS-DST (``dst`` True); see the module docstring."""

    preset_name = "entrannas"

    def __init__(self, space, options=None) -> None:
        super().__init__(space, options)
        if not isinstance(space, _DartsLikeSpace):
            raise ConfigError(f"method '{self.name}' runs on the DARTS-like cell spaces (darts, s1-s4), "
                              f"not '{space.name}'")
        c = self.cfg
        temperature(c.tau_schedule, c.tau_max, c.tau_min, 0, 1)  # validates the schedule name
        if not (c.tau_max > 0 and c.tau_min > 0):
            raise ConfigError(f"temperatures must be positive, got tau_max={c.tau_max}, tau_min={c.tau_min}")
        if c.sparsity_lambda < 0:
            raise ConfigError(f"sparsity_lambda must be >= 0, got {c.sparsity_lambda}")
        if not 0.0 < c.t_max < 1.0:
            raise ConfigError(f"t_max must be in (0, 1), got {c.t_max}")
        self.total_epochs = c.epochs
        #: candidate positions other than ``none`` (the DST candidates), per choice point
        self.not_none = {p.key: [n for n, o in enumerate(p.candidates) if o != "none"] for p in self.points}
        self.by_node: dict[tuple[str, int], list[ChoicePoint]] = {}
        for p in self.points:
            cell, node = p.group.split(":")
            self.by_node.setdefault((cell, int(node)), []).append(p)

    # ----- construction ----------------------------------------------------
    def build_arch(self) -> nn.Module:
        arch = super().build_arch()
        arch.register_buffer("tau", torch.tensor(float(self.cfg.tau_max)))
        if self.cfg.dst:
            arch.betas = nn.ParameterDict({beta_name(c, j): nn.Parameter(torch.tensor(float(self.cfg.beta_init)))
                                           for c in CELL_TYPES for j in CONCAT})
        return arch

    def build(self, num_classes: int, in_channels: int, image_size: int) -> SuperNet:
        arch = self.build_arch()
        ref = ArchRef(arch)
        net = build_shared_supernet(self.space, lambda: self.plan(ref.module), self.cfg.engine_cells,
                                    self.cfg.bottleneck_ratio, num_classes, in_channels, image_size)
        use_batch_statistics(net)
        return SuperNet(net, arch)

    # ----- optimisation ----------------------------------------------------
    def optimizers(self, model: SuperNet, steps_per_epoch: int, epochs: int) -> dict[str, Any]:
        self.total_epochs = epochs
        opt = super().optimizers(model, steps_per_epoch, epochs)
        if self.cfg.dst:
            opt["arch"] = PenalizedAdam(model.arch.parameters(), lambda: self.sparsity_penalty(model.arch),
                                        lr=self.cfg.arch_lr, betas=tuple(self.cfg.arch_betas),
                                        weight_decay=self.cfg.arch_weight_decay)
            self._arch_opt = opt["arch"]
        return opt

    def sparsity_penalty(self, arch: nn.Module) -> torch.Tensor:
        """lambda * sum over cell types of (1/(n-1)) sum_j -log t_j (Eq. 11); -log sigmoid = softplus(-beta)."""
        total = arch.tau.new_zeros(())
        for c in CELL_TYPES:
            total = total + torch.stack([F.softplus(-arch.betas[beta_name(c, j)]) for j in CONCAT]).mean()
        return self.cfg.sparsity_lambda * total

    def begin_step(self, model: SuperNet, epoch: int, step: int) -> None:
        """The Gumbel temperature of this epoch (Eq. 5)."""
        self._tau = temperature(self.cfg.tau_schedule, self.cfg.tau_max, self.cfg.tau_min, epoch, self.total_epochs)
        model.arch.tau.fill_(self._tau)

    def end_step(self, model: SuperNet, epoch: int, step: int) -> dict[str, float]:
        out = {"tau": self._tau}
        if self.cfg.dst:
            out["sparsity_penalty"] = self._arch_opt.last_penalty
        return out

    # ----- Eq. 5 and Eq. 7-9 ---------------------------------------------------
    def _probs(self, arch: nn.Module, p: ChoicePoint, drop_none: bool) -> torch.Tensor:
        a = arch.alphas[param_name(p.key)]
        if drop_none and len(self.not_none[p.key]) < len(p.candidates):
            a = a[self.not_none[p.key]]
        return F.softmax(a / arch.tau, dim=-1)

    def dst_coefficients(self, arch: nn.Module) -> dict[str, torch.Tensor]:
        """q_hat (Eq. 9) of every candidate of every edge (0 for ``none`` and pruned ones)."""
        out: dict[str, torch.Tensor] = {}
        for (cell, j), pts in self.by_node.items():
            probs = [self._probs(arch, p, drop_none=True) for p in pts]
            p_hat = [pr / torch.cat(probs).max() for pr in probs]  # Eq. 7
            t = torch.sigmoid(arch.betas[beta_name(cell, j)]).clamp(max=self.cfg.t_max)
            for p, ph in zip(pts, p_hat):
                q = F.relu(ph - t)  # Eq. 8
                s = q.sum()
                q_hat = q / torch.where(s > 0, s, torch.ones_like(s))  # Eq. 9 (edges with q != 0)
                keep = self.not_none[p.key]
                if len(keep) == len(p.candidates):
                    out[p.key] = q_hat
                else:
                    idx = torch.tensor(keep, device=q_hat.device)
                    out[p.key] = q_hat.new_zeros(len(p.candidates)).index_copy(0, idx, q_hat)
        return out

    def _dst_choices(self, coef: dict[str, list[float]]) -> tuple[dict[str, str], int]:
        """Eq. 10 with one operation per edge (the larger q_hat); also the number of multi-op edges."""
        choices, multi = {}, 0
        for p in self.points:
            vals = coef[p.key]
            alive = [n for n, v in enumerate(vals) if v > 0]
            multi += len(alive) > 1
            choices[p.key] = p.candidates[max(alive, key=vals.__getitem__)] if alive else "none"
        return choices, multi

    # ----- the plan of every forward ------------------------------------------
    def plan(self, arch: nn.Module) -> dict[str, CellPlan]:
        """Engine coefficients and the derived (transit) connections, per cell type."""
        plans = {c: CellPlan() for c in CELL_TYPES}
        if self.cfg.dst:
            coef = self.dst_coefficients(arch)
            values = {k: v.detach().tolist() for k, v in coef.items()}
            choices, _ = self._dst_choices(values)
        else:
            coef = {p.key: self._probs(arch, p, drop_none=False) for p in self.points}
            values = {k: v.detach().tolist() for k, v in coef.items()}
            choices = self.space.derive(values).choices
        for (cell, j), pts in self.by_node.items():
            eng, tra = [], []
            for p in pts:
                i = parse_edge_key(p.key)[1]
                for n, op in enumerate(p.candidates):
                    if op != "none" and values[p.key][n] > 0:
                        eng.append((i, op, coef[p.key][n]))
                if choices[p.key] != "none":
                    tra.append((i, choices[p.key], None))
            plans[cell].engine[j] = eng
            plans[cell].transit[j] = tra
        return plans

    # ----- selection -------------------------------------------------------
    scores_label = "architecture weights softmax(alpha / tau) (DST: q_hat, Eq. 9)"

    def scores(self, model: SuperNet) -> dict[str, list[float]]:
        """softmax(alpha / tau) (Eq. 5), or q_hat (Eq. 9) for DST."""
        with torch.no_grad():
            if self.cfg.dst:
                return {k: v.tolist() for k, v in self.dst_coefficients(model.arch).items()}
            return {p.key: self._probs(model.arch, p, drop_none=False).tolist() for p in self.points}

    def derive(self, model: SuperNet, context: Any = None) -> Architecture:
        """The DARTS rule on Eq. 5 (EnTranNAS) or every non-zero connection, Eq. 10 (DST)."""
        sc = self.scores(model)
        if self.cfg.dst:
            choices, multi = self._dst_choices(sc)
            arch = Architecture(self.space.name, choices)
            arch.meta["multi_op_edges"] = multi
            arch.meta["thresholds"] = {beta_name(c, j): round(float(torch.sigmoid(
                model.arch.betas[beta_name(c, j)].detach()).clamp(max=self.cfg.t_max)), 4)
                for c in CELL_TYPES for j in CONCAT}
        else:
            arch = self.space.derive(sc)
        arch.meta["method"] = self.name
        arch.meta["tau"] = round(float(model.arch.tau), 4)
        arch.meta["inputs_per_node"] = inputs_per_node(arch)
        return arch


def inputs_per_node(arch: Architecture) -> dict[str, list[int]]:
    """Number of non-``none`` inputs of every intermediate node, per cell type."""
    return {c: [sum(1 for i in range(j) if arch.choices.get(edge_key(c, i, j), "none") != "none")
                for j in CONCAT] for c in CELL_TYPES}


register_variant("entrannas-dst", EnTranNASStrategy, dst=True)  # differentiable topology (Eq. 7-11)
