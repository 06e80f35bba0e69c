"""NOS: attention-guided differentiable search (Neural Operator Search, Sec. 3.3).

The DARTS bi-level search (softmax relaxation Eq. 7, first-order alternation) with the
attention-transfer loss of Eq. 6 added at both levels (Eq. 8-9):

    w-step:  L_train(w, A) + lambda * L_AT(w, A)   on the weight split
    A-step:  L_val(w, A)   + lambda * L_AT(w, A)   on the architecture split

L_AT compares, stage by stage, the spatial attention maps ``x = vec(sum_c |F(c)|^2)`` of the
proxy network (the outputs of its last cell before each reduction and of its last cell:
S_0, S_1, S_2 of Fig. 3) and of a teacher (named modules, :mod:`attnas.teacher`), each
L2-normalised per sample.  When a student and a teacher map differ in size, the larger is
average-pooled to the smaller before normalisation.  The reduction over positions follows
``at_reduction`` of :class:`attnas.presets.NOSPreset`.  The teacher is frozen, in eval mode,
held by the strategy (not part of the checkpointed supernet) and fed the same normalised,
augmented batch as the proxy.

Runs on any DARTS-style network (``nos`` and ``darts`` spaces: a ``cells`` list with
reductions at 1/3 and 2/3 of the depth).  The architecture is derived by the space's rule
(:meth:`attnas.spaces.nos.NOSSpace.derive`).
"""
from __future__ import annotations

import sys
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnas.errors import ConfigError, ShapeError
from attnas.spaces.nos import stage_cells
from attnas.strategies.base import SuperNet, register_strategy
from attnas.strategies.darts import DartsStrategy
from attnas.teacher import StageHooks, load_teacher

AT_REDUCTIONS = ("mean_sq", "norm")


def attention_map(feat: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Eq. 6: ``vec(sum_c |F(:, :, c)|^2)`` per sample, optionally average-pooled to ``size``,
    L2-normalised -> ``[N, H*W]``."""
    if feat.dim() != 4:
        raise ShapeError(f"a stage output must be [N, C, H, W], got shape {tuple(feat.shape)}")
    a = feat.pow(2).sum(1, keepdim=True)
    if size is not None and tuple(a.shape[-2:]) != tuple(size):
        a = F.adaptive_avg_pool2d(a, size)
    return F.normalize(a.flatten(1), dim=1)


def at_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor],
            reduction: str = "mean_sq") -> torch.Tensor:
    """L_AT of Eq. 6: ``1/2 sum_j d(x_S^j / ||x_S^j||, x_T^j / ||x_T^j||)``.

    ``reduction`` "norm": d = the L2 norm of the difference (Eq. 6 as printed), averaged over
    samples; "mean_sq": d = the squared difference averaged over samples and positions
    (Zagoruyko & Komodakis's reference code, for which lambda = 1e3 was set)."""
    if len(student) != len(teacher):
        raise ConfigError(f"{len(student)} student stages but {len(teacher)} teacher stages")
    if reduction not in AT_REDUCTIONS:
        raise ConfigError(f"unknown at_reduction '{reduction}'; expected one of {list(AT_REDUCTIONS)}")
    total = None
    for s, t in zip(student, teacher):
        if s.shape[0] != t.shape[0]:
            raise ShapeError(f"student batch {s.shape[0]} != teacher batch {t.shape[0]}")
        size = (min(s.shape[-2], t.shape[-2]), min(s.shape[-1], t.shape[-1]))
        diff = attention_map(s, size) - attention_map(t.detach(), size)
        d = diff.pow(2).mean() if reduction == "mean_sq" else diff.norm(dim=1).mean()
        total = d if total is None else total + d
    return 0.5 * total


@register_strategy("nos")
class NOSStrategy(DartsStrategy):
    """DARTS first-order search with the attention-transfer loss at both levels (Eq. 8-9)."""

    preset_name = "nos"

    def __init__(self, space, options=None) -> None:
        super().__init__(space, options)
        if self.cfg.order != 1:
            raise ConfigError("method 'nos' implements the first-order DARTS step only (order 1)")
        if self.cfg.at_reduction not in AT_REDUCTIONS:
            raise ConfigError(f"unknown at_reduction '{self.cfg.at_reduction}'; "
                              f"expected one of {list(AT_REDUCTIONS)}")
        if self.cfg.at_weight < 0:
            raise ConfigError(f"at_weight must be >= 0, got {self.cfg.at_weight}")
        self.teacher: nn.Module | None = None
        self.teacher_hooks: StageHooks | None = None
        self.student_hooks: StageHooks | None = None

    @property
    def guided(self) -> bool:
        return self.teacher is not None and self.cfg.at_weight > 0

    def build(self, num_classes: int, in_channels: int, image_size: int) -> SuperNet:
        model = super().build(num_classes, in_channels, image_size)
        cells = getattr(model.net, "cells", None)
        if not isinstance(cells, nn.ModuleList) or len(cells) < 3:
            raise ConfigError(f"method 'nos' needs a DARTS-style cell network (spaces nos, darts), "
                              f"not space '{self.space.name}'")
        self.student_hooks = StageHooks(model.net, [f"cells.{i}" for i in stage_cells(len(cells))])
        cfg = self.cfg
        if cfg.teacher and not cfg.teacher_checkpoint:
            raise ConfigError("a teacher class was given without 'teacher_checkpoint'; "
                              "train one with 'attnas teacher train'")
        if cfg.teacher_checkpoint:
            self.teacher, names = load_teacher(cfg.teacher_checkpoint, cfg.teacher, cfg.teacher_options,
                                               cfg.teacher_stages or None, num_classes, in_channels)
            if len(names) != 3:
                raise ConfigError(f"teacher_stages must name 3 modules (the proxy's 3 stages), got {names}")
            self.teacher_hooks = StageHooks(self.teacher, names)
        elif cfg.at_weight > 0:
            print("attnas: method 'nos' without a teacher: searching without attention guidance",
                  file=sys.stderr)
        return model

    def loss(self, model: SuperNet, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """CE + lambda * L_AT on one batch (Eq. 8-9, both phases of DARTS's alternation);
        the logged ``loss`` is the CE part, ``at_loss`` the attention-transfer part."""
        if not self.guided:
            return super().loss(model, x, y)
        with self.student_hooks.capture():
            logits = model(x)
        feats_s = self.student_hooks.pop()
        self.teacher.to(x.device)
        with torch.no_grad(), self.teacher_hooks.capture():
            self.teacher(x)
        feats_t = self.teacher_hooks.pop()
        ce = F.cross_entropy(logits, y)
        lat = at_loss(feats_s, feats_t, self.cfg.at_reduction)
        total = ce + self.cfg.at_weight * lat
        return total, logits, {"loss": ce.item(), "at_loss": lat.item()}

