"""The optimizer and learning-rate schedule of a retraining (``attnas train``).

A retraining recipe (:class:`attnas.presets.RetrainPreset` and the per-method recipes) names
its schedule; :func:`retrain_optimizer` builds it from :mod:`torch.optim.lr_scheduler` classes,
stepped once per epoch by :class:`attnas.training.tasks.RetrainTask`:

* ``warmup_epochs`` w > 0: a :class:`~torch.optim.lr_scheduler.LinearLR` warm-up -- epoch
  e < w trains at lr x (e + 1) / (w + 1) -- then the main schedule from the full rate, chained
  by :class:`~torch.optim.lr_scheduler.SequentialLR`;
* ``cosine``: :class:`~torch.optim.lr_scheduler.CosineAnnealingLR` from lr to ``lr_min`` over
  the epochs after the warm-up (DARTS);
* ``linear``: :class:`~torch.optim.lr_scheduler.LinearLR` from lr to ``lr_min`` over the epochs
  after the warm-up (NOS on ImageNet, PC-DARTS);
* ``step``: :class:`~torch.optim.lr_scheduler.StepLR`, lr multiplied by ``step_gamma`` every
  ``step_size`` epochs after the warm-up.

As DARTS's cosine schedule, the cosine and linear ones reach ``lr_min`` after the last epoch.  A
run shorter than its warm-up warms up over all but its last epoch.  Every scheduler's state is
in the task's checkpoint, so a resumed run continues the schedule exactly.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR, StepLR

from attnas.errors import ConfigError

#: the learning-rate schedules a retraining recipe may name
LR_SCHEDULES = ("cosine", "linear", "step")


def check_retrain_schedule(cfg: Any) -> None:
    """A one-line ConfigError for a recipe whose schedule or optimizer cannot be built
    (checked before the run folder is written); types and signs are checked by
    :func:`attnas.presets.override`."""
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"unknown lr_schedule {cfg.lr_schedule!r}; expected one of {list(LR_SCHEDULES)}")
    if cfg.lr_schedule == "step" and cfg.step_size < 1:
        raise ConfigError(f"option 'step_size' must be a positive number of epochs, got {cfg.step_size}")
    if cfg.weights.lr_min > cfg.weights.lr:
        raise ConfigError(f"option 'weights.lr_min' ({cfg.weights.lr_min}) must not exceed "
                          f"'weights.lr' ({cfg.weights.lr})")
    if not cfg.label_smoothing < 1.0:
        raise ConfigError(f"option 'label_smoothing' must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.nesterov and cfg.weights.momentum <= 0:
        raise ConfigError("option 'nesterov' needs a positive 'weights.momentum'")


def warmup_epochs(cfg: Any, epochs: int) -> int:
    """The warm-up epochs of a run of ``epochs``: the recipe's, at most all but the last epoch."""
    return max(0, min(int(cfg.warmup_epochs), epochs - 1))


def _main_schedule(opt: torch.optim.Optimizer, cfg: Any, epochs: int) -> LRScheduler:
    w = cfg.weights
    if cfg.lr_schedule == "cosine":
        return CosineAnnealingLR(opt, T_max=max(1, epochs), eta_min=w.lr_min)
    if cfg.lr_schedule == "linear":
        end = w.lr_min / w.lr if w.lr > 0 else 1.0
        return LinearLR(opt, start_factor=1.0, end_factor=end, total_iters=max(1, epochs))
    return StepLR(opt, step_size=cfg.step_size, gamma=cfg.step_gamma)


def retrain_optimizer(params: Iterable[torch.nn.Parameter], cfg: Any,
                      epochs: int) -> tuple[torch.optim.Optimizer, LRScheduler]:
    """SGD (``nesterov`` momentum as the recipe says) and the recipe's per-epoch schedule
    (module docstring) for a run of ``epochs``."""
    check_retrain_schedule(cfg)
    w = cfg.weights
    opt = torch.optim.SGD(params, lr=w.lr, momentum=w.momentum, weight_decay=w.weight_decay,
                          nesterov=bool(cfg.nesterov))
    warm = warmup_epochs(cfg, epochs)
    if warm == 0:
        return opt, _main_schedule(opt, cfg, epochs)
    warmup = LinearLR(opt, start_factor=1.0 / (warm + 1), end_factor=1.0, total_iters=warm)
    return opt, SequentialLR(opt, [warmup, _main_schedule(opt, cfg, epochs - warm)], milestones=[warm])
