"""DARTS: differentiable architecture search (Liu, Simonyan & Yang, ICLR 2019).

Every choice point mixes its candidates with softmax weights of an
architecture parameter alpha shared by all cells of the same type (Eq. 2);
weights w and alpha are optimised alternately (bi-level, Eq. 3-4), alpha on
the architecture half of the training set.

* ``order=1``: first-order approximation, grad_alpha L_val(w, alpha).
* ``order=2``: the unrolled gradient (Eq. 6-8): w' = w - xi * grad_w L_train
  (with SGD momentum and weight decay, as the reference code), and the
  second-order term by the finite difference
  (grad_alpha L_train(w+) - grad_alpha L_train(w-)) / 2 eps,
  w+- = w +- eps * grad_w' L_val(w', alpha), eps = 0.01 / ||grad_w' L_val||.

The ``none`` candidate contributes an exact zero, so the mixture skips it
(its weight still enters the softmax normalisation, so nothing changes in
value or gradient).  Candidates with a fused ``w * op(x)`` kernel
(:mod:`attnas.ops.fused`) run through it in training.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnas.ops.primitives import scaled_forward
from attnas.spaces.base import ChoiceBlock, ChoicePoint, Mixer
from attnas.strategies.base import (ArchRef, Phase, Strategy, SuperNet, arch_params, net_params,
                                   register_strategy, register_variant, weight_optimizer)
from attnas import distributed


def param_name(key: str) -> str:
    """A choice-point key as a legal ParameterDict / ModuleDict name."""
    return key.replace(":", "__").replace("->", "_to_").replace(".", "_")


def weighted_sum(x: torch.Tensor, block: ChoiceBlock, weights: torch.Tensor) -> torch.Tensor:
    """sum_i w_i * op_i(x) over the non-``none`` candidates (Eq. 2)."""
    out = None
    for i, (op, name) in enumerate(zip(block.ops, block.point.candidates)):
        if name == "none":
            continue
        h = scaled_forward(op, x, weights[i])
        out = h if out is None else out + h
    if out is None:  # only 'none' candidates
        return block.ops[0](x)
    return out


class SoftmaxMixer(Mixer):
    """The DARTS continuous relaxation of one choice point."""

    def __init__(self, key: str, arch: ArchRef) -> None:
        super().__init__()
        self.name = param_name(key)
        self.arch = arch

    def forward(self, x: torch.Tensor, block: ChoiceBlock) -> torch.Tensor:
        return weighted_sum(x, block, F.softmax(self.arch.module.alphas[self.name], dim=-1))


@register_strategy("darts")
class DartsStrategy(Strategy):
    """DARTS; ``order`` (1 or 2) chooses the first-order or unrolled architecture step."""

    preset_name = "darts"

    def build_arch(self) -> nn.Module:
        arch = nn.Module()
        arch.alphas = nn.ParameterDict({
            param_name(p.key): nn.Parameter(1e-3 * torch.randn(len(p.candidates)))
            for p in self.points})
        return arch

    def make_mixer(self, point: ChoicePoint, arch: ArchRef) -> Mixer:
        return SoftmaxMixer(point.key, arch)

    def optimizers(self, model: SuperNet, steps_per_epoch: int, epochs: int) -> dict[str, Any]:
        w_opt, sched = weight_optimizer(model.net.parameters(), self.cfg.weights, steps_per_epoch, epochs)
        a_opt = torch.optim.Adam(model.arch.parameters(), lr=self.cfg.arch_lr,
                                 betas=tuple(self.cfg.arch_betas), weight_decay=self.cfg.arch_weight_decay)
        return {"weights": w_opt, "arch": a_opt, "schedulers": [sched]}

    def phases(self, epoch: int) -> Sequence[Phase]:
        """Architecture step on the architecture split (weights frozen; second order: the
        unrolled gradient), then the weight step on the weight split (alpha frozen)."""
        arch = Phase("arch", ("arch",), arch_params, prefix="arch_",
                     gradient=self._unrolled_gradient if self.cfg.order == 2 else None)
        return (arch, Phase("weights", ("weights",), net_params, clip=self.cfg.weights.grad_clip))

    def _unrolled_gradient(self, model: SuperNet, batches: dict[str, Any], opt: dict[str, Any]) -> float:
        return self._unrolled_step(model, opt["weights"], batches["weights"], batches["arch"])

    def _unrolled_step(self, model: SuperNet, w_opt: torch.optim.Optimizer, batch_w, batch_a) -> float:
        """Set alpha.grad to the second-order DARTS gradient (Eq. 7-8)."""
        w_params = [p for p in model.net.parameters() if p.requires_grad]
        a_params = list(model.arch.parameters())
        group = w_opt.param_groups[0]
        xi, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]

        def grads(loss: torch.Tensor, params):
            gs = torch.autograd.grad(loss, params, allow_unused=True)
            # torchrun: the gradients of the global batch (a no-op in one process)
            return distributed.average_tensors([torch.zeros_like(p) if g is None else g
                                                for p, g in zip(params, gs)])

        g_train = grads(F.cross_entropy(model(batch_w[0]), batch_w[1]), w_params)
        backup = [p.detach().clone() for p in w_params]
        with torch.no_grad():  # w' = w - xi * (momentum * buf + grad + wd * w)
            for p, g in zip(w_params, g_train):
                buf = w_opt.state.get(p, {}).get("momentum_buffer")
                step = g + wd * p
                if buf is not None:
                    step = step + momentum * buf
                p.sub_(xi * step)
        loss_val = F.cross_entropy(model(batch_a[0]), batch_a[1])
        g_all = grads(loss_val, a_params + w_params)
        d_alpha, v = g_all[:len(a_params)], g_all[len(a_params):]
        eps = self.cfg.unrolled_eps / (torch.cat([g.flatten() for g in v]).norm() + 1e-12)

        def alpha_grad_at(sign: float):
            with torch.no_grad():
                for p, b, vi in zip(w_params, backup, v):
                    p.copy_(b + sign * eps * vi)
            return grads(F.cross_entropy(model(batch_w[0]), batch_w[1]), a_params)

        g_pos, g_neg = alpha_grad_at(+1.0), alpha_grad_at(-1.0)
        with torch.no_grad():
            for p, b in zip(w_params, backup):
                p.copy_(b)
        for a, da, gp, gn in zip(a_params, d_alpha, g_pos, g_neg):
            a.grad = da - xi * (gp - gn) / (2 * eps)
        distributed.mark_synced(a_params)
        return loss_val.item()

    scores_label = "architecture weights softmax(alpha)"

    def scores(self, model: SuperNet) -> dict[str, list[float]]:
        with torch.no_grad():
            return {p.key: F.softmax(model.arch.alphas[param_name(p.key)], -1).tolist()
                    for p in self.points}


register_variant("darts-2nd", DartsStrategy, order=2)
