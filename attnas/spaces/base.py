"""The search-space interface.

A space declares its choice points once (:meth:`SearchSpace.choice_points`);
each is an edge of a cell or a layer of a chain with its candidate
operations.  :meth:`SearchSpace.build_supernet` instantiates every choice
point as a :class:`ChoiceBlock` and asks a *mixer factory* -- supplied by the
search strategy -- how the candidates' outputs are combined (DARTS softmax
weights, IT-NAS indicator-token attention, a sampled single path, a sparse
mask).  The same space therefore runs under every strategy, and adding a
strategy never means copying a space.
"""
from __future__ import annotations

import contextlib
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from attnas.arch import Architecture
from attnas.errors import ArchitectureError, ConfigError, ShapeError


@dataclass(frozen=True)
class ChoicePoint:
    """A decision of the space.

    key:        unique name (see :mod:`attnas.arch`); cells of the same type
                share their choice points, as DARTS shares alpha.
    candidates: the operation names to choose from.
    group:      derivation group -- the edges entering one node of a cell
                (the DARTS top-2 rule picks within a group) or the key itself.
    """

    key: str
    candidates: tuple[str, ...]
    group: str


class Mixer(nn.Module):
    """How a strategy combines the candidates of one :class:`ChoiceBlock`.

    ``forward(x, block)`` returns the block's output; ``block.ops`` holds the
    candidate modules in ``block.point.candidates`` order.
    """

    def forward(self, x: torch.Tensor, block: "ChoiceBlock") -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


MixerFactory = Callable[[ChoicePoint], Mixer]


class ChoiceBlock(nn.Module):
    """One instance of a choice point inside a supernet."""

    def __init__(self, point: ChoicePoint, ops: Sequence[nn.Module], mixer: Mixer,
                 absent: Callable[[torch.Tensor], Any] | None = None) -> None:
        super().__init__()
        if len(ops) != len(point.candidates):
            raise ArchitectureError(f"{point.key}: {len(ops)} modules for {len(point.candidates)} candidates")
        self.point = point
        self.ops = nn.ModuleList(ops)
        self.mixer = mixer
        #: what the edge contributes when a derived architecture leaves it out ("none") although
        #: "none" is not one of its candidates (NOS first-tier edges); None = it cannot be absent
        self.absent = absent
        #: recompute this block in the backward pass (activation checkpointing) when
        #: its input is at least this wide; None = never.  See :func:`set_recompute`.
        self.recompute_min_side: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = self.recompute_min_side
        if side is not None and torch.is_grad_enabled() and x.shape[-1] >= side:
            return recomputed(self.mixer, self, x, self)
        return self.mixer(x, self)

    def extra_repr(self) -> str:
        return f"key={self.point.key!r}"


@contextlib.contextmanager
def _batch_norm_state_kept(block: nn.Module):
    """Around the recomputation of a checkpointed block: its batch norms' running statistics
    and step counters as they were before, so the repeated forward does not update them a
    second time (``nn.BatchNorm2d`` updates them on every training forward)."""
    buffers = [b for m in block.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
               for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, v in zip(buffers, saved):
                b.copy_(v)


def recomputed(fn: Callable[..., torch.Tensor], module: nn.Module, *args) -> torch.Tensor:
    """``fn(*args)`` with activation checkpointing: nothing inside is kept for the backward
    pass, which runs it again (same random state; ``module``'s batch-norm statistics are
    not updated a second time)."""
    return checkpoint(fn, *args, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(), _batch_norm_state_kept(module)))


def set_recompute(net: nn.Module, policy: str, image_size: int, space: "SearchSpace | None" = None) -> None:
    """Activation checkpointing of the choice blocks of a supernet.

    ``policy``: ``"none"``; ``"first_stage"`` -- blocks whose input is as wide as
    the image (the full-resolution stage, where a mixture of all candidates
    stores most of its activations); ``"all"`` -- every block, and the stem of
    networks that have ``recompute_stem`` (the chain spaces); ``"auto"`` -- the space's
    :attr:`SearchSpace.mixture_recompute`.  Recomputation repeats the
    block's forward in the backward pass with the same random state and the
    batch norms' running statistics left as the first forward set them, so the
    values, gradients and statistics are unchanged; only memory and time trade places.
    """
    if policy == "auto":
        policy = space.mixture_recompute if space is not None else "all"
    sides = {"none": None, "first_stage": image_size, "all": 1}
    if policy not in sides:
        raise ConfigError(f"unknown recompute policy '{policy}'; expected one of {sorted([*sides, 'auto'])}")
    for m in net.modules():
        if isinstance(m, ChoiceBlock):
            m.recompute_min_side = sides[policy]
        elif hasattr(m, "recompute_stem"):  # a network whose stem is recomputed too under "all"
            m.recompute_stem = policy == "all"


class SearchSpace(ABC):
    """Base class of every search space.

    Subclasses set ``name`` and implement the abstract methods; the options of
    a space (widths, depths) are constructor keyword arguments.
    """

    #: whether the space's supernet runs one candidate per choice point only (a method that
    #: mixes candidates cannot search it; :meth:`attnas.strategies.base.Strategy.check_space`)
    single_path_only: ClassVar[bool] = False

    name: ClassVar[str]
    #: the recompute policy ``"auto"`` means for a mixture of all candidates (DARTS): "all" where
    #: the mixtures' activations would not fit the memory budget otherwise (:func:`set_recompute`)
    mixture_recompute: ClassVar[str] = "all"
    #: smallest input side the space's network accepts (each reduction halves it)
    min_image_size: ClassVar[int] = 4

    @abstractmethod
    def choice_points(self) -> list[ChoicePoint]:
        """Every decision of the space, in a fixed order."""

    @abstractmethod
    def build_supernet(self, mixer_factory: MixerFactory, num_classes: int, in_channels: int,
                       image_size: int) -> nn.Module:
        """The weight-sharing network; every choice point becomes a ChoiceBlock."""

    @abstractmethod
    def build_network(self, arch: Architecture, num_classes: int, in_channels: int,
                      image_size: int, **options: Any) -> nn.Module:
        """The stand-alone network of one architecture, for retraining."""

    # ----- architectures -------------------------------------------------
    def validate(self, arch: Architecture) -> None:
        """Raise :class:`ArchitectureError` unless ``arch`` is a point of this space."""
        if arch.space != self.name:
            raise ArchitectureError(f"architecture is for space '{arch.space}', not '{self.name}'")
        points = {p.key: p for p in self.choice_points()}
        missing = [k for k in points if k not in arch.choices]
        extra = [k for k in arch.choices if k not in points]
        if missing or extra:
            raise ArchitectureError(
                f"architecture does not match space '{self.name}': "
                + (f"missing choice points {missing[:4]}{'...' if len(missing) > 4 else ''}" if missing else "")
                + ("; " if missing and extra else "")
                + (f"unknown choice points {extra[:4]}" if extra else ""))
        for k, op in arch.choices.items():
            if op not in points[k].candidates:
                raise ArchitectureError(
                    f"operation '{op}' is not a candidate of '{k}' in space '{self.name}'; "
                    f"expected one of {list(points[k].candidates)}")
        self.validate_topology(arch)

    def validate_topology(self, arch: Architecture) -> None:
        """Space-specific structural checks (e.g. every node has an input)."""

    def derive(self, scores: Mapping[str, Sequence[float]]) -> Architecture:
        """The discrete architecture from per-candidate strengths (default: argmax per point)."""
        choices = {}
        for p in self.choice_points():
            s = list(scores[p.key])
            choices[p.key] = p.candidates[max(range(len(s)), key=s.__getitem__)]
        return Architecture(self.name, choices)

    def sample(self, rng: random.Random) -> Architecture:
        """A uniformly random valid architecture (rejection on invalid topologies)."""
        for _ in range(1000):
            arch = Architecture(self.name, {p.key: rng.choice(p.candidates) for p in self.choice_points()})
            try:
                self.validate_topology(arch)
                return arch
            except ArchitectureError:
                continue
        raise ArchitectureError(f"could not sample a valid architecture of '{self.name}'")

    # ----- inputs ----------------------------------------------------------
    def check_input(self, in_channels: int, image_size: int) -> None:
        """Raise :class:`ShapeError` when images of this size cannot go through the network."""
        if image_size < self.min_image_size:
            raise ShapeError(
                f"space '{self.name}' needs images of at least {self.min_image_size}x"
                f"{self.min_image_size}, got {image_size}x{image_size}")

    # ----- notation --------------------------------------------------------
    @classmethod
    def parse_native(cls, text: str) -> Architecture:
        """Parse the space's own notation (override where the space has one)."""
        raise ArchitectureError(f"space '{cls.name}' has no native string notation; give a JSON file")

    @classmethod
    def to_native(cls, arch: Architecture) -> str | None:
        """The space's own notation of ``arch``, or None."""
        return None

    def recorded_options(self) -> dict[str, Any]:
        """Options resolved from defaults that a run records beside the user's own, so that
        reopening it builds the same space even if those defaults change (default: none)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """A short summary: number of choice points, candidates, cardinality."""
        pts = self.choice_points()
        card = 1
        for p in pts:
            card *= len(p.candidates)
        return {"space": self.name, "choice_points": len(pts), "cardinality_upper_bound": card}
