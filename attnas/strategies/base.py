"""The search-strategy interface.

A strategy decides how the candidates at a choice point are combined (its
:class:`~attnas.spaces.base.Mixer`), owns the architecture state (``arch``:
alphas, indicator transformers, thresholds, ...), performs one search step,
and scores the candidates so that the space's derivation rule can pick the
architecture.  The training loop itself is the shared engine
(:mod:`attnas.training.engine`).
"""
from __future__ import annotations

import random
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Any, ClassVar, Iterable, Iterator, Mapping

import torch
import torch.nn as nn

from attnas.arch import Architecture
from attnas.errors import ConfigError
from attnas.presets import get_preset, override
from attnas.spaces.base import ChoicePoint, Mixer, SearchSpace, set_recompute


class ArchRef:
    """A plain (non-Module) handle, so that mixers can read the strategy's
    architecture module without registering it a second time."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module


class SuperNet(nn.Module):
    """A supernet: ``net`` (operation weights) and ``arch`` (the strategy's state)."""

    def __init__(self, net: nn.Module, arch: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def use_batch_statistics(module: nn.Module) -> None:
    """Make every affine-free BatchNorm of a supernet normalise with batch statistics,
    in eval mode too (NAS-Bench-201 / AutoDL search cells: ``track_running_stats=False``).

    Running statistics accumulated over changing mixtures or sampled paths do
    not describe any one architecture, so scoring with them is biased.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.affine:
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None


@contextmanager
def frozen(params: Iterable[torch.nn.Parameter]) -> Iterator[None]:
    """Temporarily stop gradients to ``params``.

    A DARTS weight step needs no gradient for alpha and an architecture step
    none for the weights: freezing the other side skips those backward kernels
    and the activations saved only for them (same update, less time and memory).
    """
    params = [p for p in params if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class Strategy(ABC):
    """Base class of search strategies; ``preset_name`` names its preset in :mod:`attnas.presets`."""

    name: ClassVar[str]
    preset_name: ClassVar[str]
    #: progress of long selection phases (an evolution): a callable taking one line, or None
    #: (quiet); set by :func:`attnas.api.search` from its ``progress`` flag
    log: Any = None
    #: what :meth:`scores` measures, as the search's table labels the numbers
    scores_label: ClassVar[str] = "candidate strengths"
    #: whether the search derives (and looks up) an architecture after every epoch
    derive_each_epoch: ClassVar[bool] = True

    def __init__(self, space: SearchSpace, options: Mapping[str, Any] | None = None) -> None:
        self.space = space
        self.cfg = override(get_preset(self.preset_name), dict(options or {}))
        self.points: list[ChoicePoint] = space.choice_points()
        self.rng = random.Random(0)

    def seed(self, seed: int) -> None:
        """Seed the strategy's own sampler (architecture sampling, evolution)."""
        self.rng = random.Random(seed)

    # ----- construction ----------------------------------------------------
    @abstractmethod
    def build_arch(self) -> nn.Module:
        """The architecture state (an nn.Module, possibly without parameters)."""

    @abstractmethod
    def make_mixer(self, point: ChoicePoint, arch: ArchRef) -> Mixer:
        """The mixer of one ChoiceBlock instance of ``point``."""

    def build(self, num_classes: int, in_channels: int, image_size: int) -> SuperNet:
        arch = self.build_arch()
        ref = ArchRef(arch)
        net = self.space.build_supernet(lambda p: self.make_mixer(p, ref), num_classes,
                                        in_channels, image_size)
        use_batch_statistics(net)
        set_recompute(net, getattr(self.cfg, "recompute", "none"), image_size)
        return SuperNet(net, arch)

    # ----- optimisation ----------------------------------------------------
    @abstractmethod
    def optimizers(self, model: SuperNet, steps_per_epoch: int, epochs: int) -> dict[str, Any]:
        """Optimizers and schedulers by name (their state is checkpointed)."""

    @abstractmethod
    def train_step(self, model: SuperNet, opt: dict[str, Any], batch_w, batch_a,
                   epoch: int, step: int) -> dict[str, float]:
        """One search step; ``batch_w``/``batch_a`` are ``(x, y)`` of the weight and
        architecture splits (already augmented).  Returns metrics to log."""

    def end_epoch(self, model: SuperNet, opt: dict[str, Any], epoch: int) -> None:
        """Per-epoch bookkeeping (schedulers, temperature annealing)."""
        for sched in opt.get("schedulers", []):
            sched.step()

    # ----- selection -------------------------------------------------------
    def derives_after_epoch(self, epoch: int) -> bool:
        """Whether the architecture derived after ``epoch`` (0-based) means anything (the
        per-epoch trajectory); False e.g. while a warm-up keeps the scores uniform."""
        return self.derive_each_epoch

    @abstractmethod
    def scores(self, model: SuperNet) -> dict[str, list[float]]:
        """Strength of every candidate at every choice point (higher = better)."""

    def derive(self, model: SuperNet, context: Any = None) -> Architecture:
        """The discrete architecture (the space's rule applied to :meth:`scores`)."""
        arch = self.space.derive(self.scores(model))
        arch.meta["method"] = self.name
        return arch

    def state_dict(self) -> dict[str, Any]:
        """Strategy state outside the model (the sampler's RNG); checkpointed."""
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "rng" in state:
            st = state["rng"]
            self.rng.setstate((st[0], tuple(st[1]), st[2]))


_STRATEGIES: dict[str, type[Strategy]] = {}

#: modules whose import registers the built-in strategies
BUILTIN_STRATEGY_MODULES = [
    "attnas.strategies.darts",
    "attnas.strategies.random_search",
    "attnas.strategies.spos",
    "attnas.strategies.itnas",
    "attnas.strategies.nos",
    "attnas.strategies.entrannas",
    "attnas.strategies.trionet",
]


def register_strategy(name: str):
    def deco(cls):
        cls.name = name
        _STRATEGIES[name] = cls
        return cls
    return deco


def strategy_names() -> list[str]:
    import importlib

    for m in BUILTIN_STRATEGY_MODULES:
        importlib.import_module(m)
    return sorted(_STRATEGIES)


def get_strategy(name: str, space: SearchSpace, options: Mapping[str, Any] | None = None) -> Strategy:
    names = strategy_names()
    if name not in _STRATEGIES:
        raise ConfigError(f"unknown method '{name}'; expected one of {names}")
    return _STRATEGIES[name](space, options)


def weight_optimizer(params, cfg, steps_per_epoch: int, epochs: int) -> tuple[torch.optim.Optimizer, Any]:
    """SGD + per-epoch cosine schedule from a :class:`attnas.presets.WeightOptim`."""
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs), eta_min=cfg.lr_min)
    return opt, sched
