"""The search-strategy interface: a strategy *declares*, the search task *executes*.

A strategy declares
- its preset (``preset_name``, a frozen dataclass in :mod:`attnas.presets`),
- how the candidates at a choice point are combined (:meth:`Strategy.make_mixer`) and the
  architecture state (:meth:`Strategy.build_arch`: alphas, indicator transformers, ...),
- its optimizers (:meth:`Strategy.optimizers`),
- the phases of one search step (:meth:`Strategy.phases`: which data split each reads, which
  parameters it updates, which optimizers step, the clipping), its loss (:meth:`Strategy.loss`,
  cross-entropy by default) and, for single-path methods, its path sampler
  (:meth:`Strategy.sample_paths` / :meth:`Strategy.activate`: one path, FairNAS's m paths,
  TrioNet's sandwich; the gradients of a step's paths are accumulated),
- its selection (:meth:`Strategy.scores` / :meth:`Strategy.derive`: scores, evolution,
  sample-best) and the spaces it needs (:meth:`Strategy.check_space`).

:class:`attnas.training.tasks.SearchTask` executes the phases: data splits, forward under
autocast, backward, gradient sync over torchrun processes, clipping and the optimizer steps.
No strategy calls ``backward`` or an optimizer's ``step``.
"""
from __future__ import annotations

import random
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnas.arch import Architecture
from attnas.errors import ConfigError
from attnas.presets import get_preset, override, register_preset
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


#: the data splits a phase can read: the weight split and the architecture split of the
#: training images (the validation split, which selection reads, is the architecture split)
SPLITS = ("weights", "arch")


@dataclass(frozen=True)
class Phase:
    """One optimisation phase of a search step, executed by the search task.

    ``split``: the batch it reads; ``params(model)``: the parameters it updates (every other
    parameter of the model is frozen while it runs); ``optimizers``: the optimizers stepped
    after its backward pass; ``clip``: gradient-norm clipping over ``params`` (0 = none);
    ``prefix``: of its metric names (``""`` gives ``loss``/``acc``, ``"arch_"`` gives
    ``arch_loss``); ``sampled``: run the strategy's path sampler and accumulate the paths'
    gradients; ``gradient(model, batches, opt)``: a custom gradient (DARTS's unrolled one)
    that sets the ``.grad`` of ``params`` itself and returns the loss, instead of a backward
    pass of :meth:`Strategy.loss`."""

    split: str
    optimizers: tuple[str, ...]
    params: Callable[["SuperNet"], Iterable[nn.Parameter]]
    clip: float = 0.0
    prefix: str = ""
    sampled: bool = False
    gradient: Callable[..., float] | None = None

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"a phase reads one of the splits {list(SPLITS)}, not {self.split!r}")


def net_params(model: "SuperNet") -> Iterator[nn.Parameter]:
    """The operation weights of a supernet."""
    return model.net.parameters()


def arch_params(model: "SuperNet") -> Iterator[nn.Parameter]:
    """The architecture parameters of a supernet (alphas, betas, ...)."""
    return model.arch.parameters()


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
    #: whether the supernet runs one sampled path per forward pass (SPOS, random, TrioNet)
    single_path: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, options: Mapping[str, Any] | None = None) -> None:
        self.space = space
        self.cfg = override(get_preset(self.preset_name), dict(options or {}))
        self.points: list[ChoicePoint] = space.choice_points()
        self.rng = random.Random(0)
        self.check_space(space)

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
        set_recompute(net, self.recompute_policy(image_size), image_size, self.space)
        return SuperNet(net, arch)

    def recompute_policy(self, image_size: int) -> str:
        """The preset's ``recompute`` option (:func:`attnas.spaces.base.set_recompute`, whose
        ``"auto"`` is the space's choice for a mixture of all candidates)."""
        return getattr(self.cfg, "recompute", "none")

    # ----- optimisation ----------------------------------------------------
    @abstractmethod
    def optimizers(self, model: SuperNet, steps_per_epoch: int, epochs: int) -> dict[str, Any]:
        """Optimizers and schedulers by name (their state is checkpointed)."""

    @property
    def train_portion(self) -> float:
        """Share of the training images in the weight split; the rest is the architecture /
        validation split (read by bi-level phases and by selection)."""
        return float(getattr(self.cfg, "train_portion", 0.5))

    def phases(self, epoch: int) -> Sequence[Phase]:
        """The phases of one step of ``epoch``, in order.  Default: one weight phase on the
        weight split, every sampled path, SGD clipped at the preset's ``grad_clip``."""
        return (Phase("weights", ("weights",), net_params, clip=self.cfg.weights.grad_clip, sampled=True),)

    def loss(self, model: SuperNet, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """``(loss to differentiate, logits, metrics)`` of one forward pass; cross-entropy by
        default.  A ``"loss"`` entry in the metrics replaces the logged loss (e.g. the CE part
        of a composite loss)."""
        logits = model(x)
        return F.cross_entropy(logits, y), logits, {}

    def begin_step(self, model: SuperNet, epoch: int, step: int) -> None:
        """Before a step's phases (temperature, per-step state)."""

    def sample_paths(self, model: SuperNet) -> Sequence[Any]:
        """The paths a ``sampled`` phase trains in one step (gradients accumulated); ``[None]``
        runs the whole supernet once."""
        return [None]

    def activate(self, model: SuperNet, path: Any) -> None:
        """Make ``path`` (one of :meth:`sample_paths`) the supernet's active path."""

    def after_backward(self, model: SuperNet, phase: Phase, paths: Sequence[Any]) -> None:
        """After a phase's backward passes, on the synced (torchrun) and unscaled (float16 loss
        scaling) gradients, before clip/step (e.g. a decay on some slices)."""

    def end_step(self, model: SuperNet, epoch: int, step: int) -> dict[str, float]:
        """After a step's phases; extra metrics to log."""
        return {}

    def check_space(self, space: SearchSpace) -> None:
        """Raise :class:`ConfigError` when the method cannot run in ``space`` (by default: a
        space whose supernet runs one candidate per choice point needs a single-path method)."""
        if space.single_path_only and not self.single_path:
            singles = sorted(n for n in strategy_names() if _STRATEGIES[n].single_path)
            raise ConfigError(f"space '{space.name}' has a weight-sliced supernet that runs one candidate per "
                              f"block; use a single-path method ({', '.join(singles)}), not '{self.name}'")

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


def register_strategy(name: str, preset: Any | None = None):
    """Class decorator: register a strategy as method ``name``; ``preset`` (a frozen dataclass
    instance) is its default configuration, registered under the same name (a method defined
    in one file declares its preset there; the built-in ones keep theirs in
    :mod:`attnas.presets`, citing their papers)."""
    def deco(cls):
        if name in _STRATEGIES and _STRATEGIES[name] is not cls:
            raise ConfigError(f"a different strategy is already registered as method '{name}'")
        cls.name = name
        if preset is not None:
            register_preset(name, preset)
            cls.preset_name = name
        _STRATEGIES[name] = cls
        return cls
    return deco


def register_variant(name: str, of: type[Strategy], **changes: Any) -> type[Strategy]:
    """Register method ``name`` as strategy ``of`` with preset fields changed (``darts-2nd`` is
    ``darts`` with ``order=2``); returns the variant's class."""
    from dataclasses import replace

    preset = replace(get_preset(of.preset_name), **changes)
    variant = type(f"{of.__name__}_{name.replace('-', '_')}", (of,),
                   {"__doc__": f"Method '{name}': '{of.name}' with {changes}.", "__module__": of.__module__})
    return register_strategy(name, preset)(variant)


def strategy_names() -> list[str]:
    """Every registered method: the built-in ones, those of installed packages (entry-point
    group ``attnas.strategies``) and the modules named in ``$ATTNAS_PLUGINS`` (comma-separated
    module names, importable from the working directory: a method in one file)."""
    import importlib
    import os
    import sys
    from importlib.metadata import entry_points

    for m in BUILTIN_STRATEGY_MODULES:
        importlib.import_module(m)
    for ep in entry_points(group="attnas.strategies"):
        ep.load()
    plugins = [m.strip() for m in os.environ.get("ATTNAS_PLUGINS", "").split(",") if m.strip()]
    if plugins and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for m in plugins:
        try:
            importlib.import_module(m)
        except ImportError as e:
            raise ConfigError(f"ATTNAS_PLUGINS names module '{m}', which cannot be imported: {e}") from None
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
