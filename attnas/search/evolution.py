"""Evolutionary architecture search over a trained one-shot supernet (SPOS, Guo et al., ECCV 2020, Sec. 3.4).

Algorithm (SPOS Alg. 1 and its reference implementation's defaults, which
:class:`attnas.presets.SPOSPreset` holds: population 50, 20 generations,
top-k 10, 25 mutations + 25 crossovers per generation, mutation probability 0.1):

1. the population starts as ``population`` random architectures;
2. for each of ``generations`` generations, the ``top_k`` best architectures evaluated so far are the
   parents; ``mutations`` children copy a random parent and redraw each choice
   point uniformly with probability ``mutation_prob``; ``crossovers`` children
   take each choice point from one of two random parents (probability 1/2
   each); random architectures fill the population up to ``population``.  Where a space's
   choices depend on each other (TrioNet's elastic depth: the blocks past a stage's depth are
   "none") the drawn child is made consistent by ``space.conform``: a mutated or crossed-over
   depth skips the blocks past it, and a block it runs that was "none" is drawn afresh (mutation)
   or taken from the parent that runs it (crossover);
3. the answer is the best architecture evaluated in any of the ``generations + 1``
   populations (the initial one and one per generation, as the SPOS code evaluates).

A candidate is *legal* (the only ones evaluated) when it was not evaluated
before, satisfies the space's topology rule, and meets the constraint
``flops <= flops_budget``, ``macs <= macs_budget`` and ``params <= params_budget``
(:class:`Constraint`, counts of :mod:`attnas.profile`: FLOPs = 2 x MACs, the unit of the
TrioNet paper; SPOS, ProxylessNAS and NAS-Bench-Macro call MACs "FLOPs", so their numbers
are ``macs_budget``s); illegal candidates are rejected and drawn
again -- rejection sampling, at most ``max_tries_factor`` x the number wanted
per step (SPOS code: 10x), and a :class:`ConfigError` when not even one random
architecture meets the budget.  Where uniform draws almost never fit a budget (TrioNet's
paper-size space at 224 px: none of 20,000 draws under 3 B FLOPs, median 8 B) and the space
has an additive cost table, the random candidates that rejection sampling did not find are
*moved into the budget*: a uniform draw, then, while it is over budget, one choice point at a
time set to a random cheaper candidate (:meth:`EvolutionSearch._into_budget`).  Neither
SPOS nor TrioNet says how its initial population meets a tight budget; this fill only runs
where rejection sampling came up short, so every other run draws exactly as before.

Fitness (:class:`SupernetEvaluator`): the supernet is routed through the
candidate, the running statistics of its batch norms are recomputed on
training batches (SPOS Sec. 3.4: shared BN statistics do not describe any one
path; reset, then a cumulative average over ``bn_images`` training images in
train mode without gradients), and the accuracy on the validation split is the
score.  Everything is deterministic given the strategy's RNG, so an
interrupted evolution replays identically; evaluated scores can be cached
(``evaluated``/``on_evaluate``) so that a replay skips them.

Candidates are drawn first and scored together, one batch per population
step (the initial population, the mutations, the crossovers, the random
fill); scoring never touches the RNG, so the draws and the result are those
of a one-at-a-time loop.  Under ``torchrun`` the batch is split over the
processes (:func:`attnas.distributed.map_items`): ``torchrun
--nproc_per_node N -m attnas.cli.main evolve RUN`` scores N candidates at a
time, with the same result as one process.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn as nn

from attnas.arch import Architecture
from attnas.errors import ArchitectureError, ConfigError
from attnas.profile import Profile, profile_architecture
from attnas.spaces.base import SearchSpace
from attnas.distributed import map_items, world_size


# --------------------------------------------------------------------------- data for selection


@dataclass
class SelectionContext:
    """What a selection pass needs: validation batches (scoring) and training batches
    (BN recalibration).  Iterating it yields the validation batches, so strategies that
    expect a plain iterable of validation batches accept it too."""

    validation: Iterable[tuple[torch.Tensor, torch.Tensor]]
    train: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.validation)


def take_images(batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None,
                n_images: int | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first batches of ``batches`` holding ``n_images`` images (all when None / 0);
    the last batch is cut to the exact count."""
    if batches is None:
        return []
    out, seen = [], 0
    for x, y in batches:
        if n_images and seen >= n_images:
            break
        if n_images and seen + len(y) > n_images:
            x, y = x[: n_images - seen], y[: n_images - seen]
        out.append((x, y))
        seen += len(y)
    return out


# --------------------------------------------------------------------------- BN recalibration


def _running_bns(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
            and m.running_mean is not None]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> int:
    """Reset every BN's running statistics and recompute them as the exact average over
    ``batches`` (momentum None = cumulative average), in train mode, without gradients.
    Returns the number of images used; the model is left in eval mode."""
    bns = _running_bns(model)
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    n = 0
    try:
        for x, _ in batches:
            model(x)
            n += len(x)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.eval()
    return n


def bn_state(model: nn.Module) -> list[dict[str, torch.Tensor]]:
    """A copy of every running BN's statistics (to restore after a selection pass)."""
    return [{k: v.clone() for k, v in m.state_dict().items()} for m in _running_bns(model)]


def load_bn_state(model: nn.Module, state: list[dict[str, torch.Tensor]]) -> None:
    for m, s in zip(_running_bns(model), state):
        m.load_state_dict(s)


# --------------------------------------------------------------------------- constraint


class Constraint:
    """``flops <= flops_budget`` (FLOPs = 2 x MACs), ``macs <= macs_budget`` (multiply-accumulates)
    and ``params <= params_budget`` (None = no limit) for the networks of ``num_classes`` classes
    on ``in_channels x image_size^2`` inputs.

    Chain spaces use their additive cost table; other spaces build each stand-alone
    network (``build_network`` with its default options, i.e. the network that would be
    retrained) once per architecture, cached."""

    def __init__(self, space: SearchSpace, num_classes: int, in_channels: int, image_size: int,
                 flops_budget: float | None = None, params_budget: float | None = None,
                 macs_budget: float | None = None) -> None:
        for label, v in (("flops_budget", flops_budget), ("params_budget", params_budget),
                         ("macs_budget", macs_budget)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
                raise ConfigError(f"{label} must be a positive number (absolute count, e.g. 6e7), got {v!r}")
        self.space, self.flops_budget, self.params_budget = space, flops_budget, params_budget
        self.macs_budget = macs_budget
        self.shape = (num_classes, in_channels, image_size)
        self._table = space.cost_table(*self.shape) if hasattr(space, "cost_table") else None
        self._cache: dict[Architecture, Profile] = {}

    @property
    def additive(self) -> bool:
        """True when costs come from the space's additive cost table (cheap to look up)."""
        return self._table is not None

    @property
    def active(self) -> bool:
        return any(b is not None for b in (self.flops_budget, self.macs_budget, self.params_budget))

    def cost(self, arch: Architecture) -> Profile:
        if self._table is not None:
            return self._table.of(arch)
        if arch not in self._cache:
            self._cache[arch] = profile_architecture(self.space, arch, *self.shape)
        return self._cache[arch]

    def holds(self, arch: Architecture) -> bool:
        if not self.active:
            return True
        c = self.cost(arch)
        return ((self.flops_budget is None or c.flops <= self.flops_budget)
                and (self.macs_budget is None or c.macs <= self.macs_budget)
                and (self.params_budget is None or c.params <= self.params_budget))

    def describe(self) -> dict[str, Any]:
        return {"flops_budget": self.flops_budget, "macs_budget": self.macs_budget,
                "params_budget": self.params_budget}


# --------------------------------------------------------------------------- fitness


class SupernetEvaluator:
    """Validation accuracy of a path of a single-path supernet, after BN recalibration.

    ``route(arch)`` activates the path (e.g. :func:`attnas.strategies.random_search.activate`);
    ``bn_batches`` empty means no recalibration (the supernet's running statistics)."""

    def __init__(self, model: nn.Module, route: Callable[[Architecture], None],
                 valid_batches: list[tuple[torch.Tensor, torch.Tensor]],
                 bn_batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        if not valid_batches:
            raise ConfigError("evolutionary search needs validation batches to score architectures")
        self.model, self.route = model, route
        self.valid, self.bn = valid_batches, bn_batches

    @torch.no_grad()
    def __call__(self, arch: Architecture) -> float:
        self.route(arch)
        if self.bn:
            recalibrate_bn(self.model, self.bn)
        return accuracy(self.model, self.valid)


@torch.no_grad()
def accuracy(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) over ``batches``."""
    model.eval()
    correct = total = 0
    for x, y in batches:
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return correct / max(1, total)


# --------------------------------------------------------------------------- evolution


@dataclass
class EvolutionResult:
    best: Architecture
    best_score: float
    top: list[tuple[Architecture, float]]
    history: list[dict[str, Any]]
    evaluated: dict[Architecture, float] = field(repr=False)
    evaluated_per_process: list[int] = field(default_factory=list)  # fresh scores computed per process


class EvolutionSearch:
    """SPOS evolution (module docstring).  ``cfg`` carries ``population``, ``generations``,
    ``top_k``, ``mutations``, ``crossovers``, ``mutation_prob``, ``max_tries_factor``
    (a :class:`attnas.presets.SPOSPreset`)."""

    def __init__(self, space: SearchSpace, cfg: Any, rng: random.Random,
                 evaluate: Callable[[Architecture], float], constraint: Constraint | None = None,
                 evaluated: dict[Architecture, float] | None = None,
                 on_evaluate: Callable[[Architecture, float], None] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        for name in ("population", "top_k", "max_tries_factor"):
            if int(getattr(cfg, name)) < 1:
                raise ConfigError(f"evolution option '{name}' must be >= 1, got {getattr(cfg, name)}")
        for name in ("generations", "mutations", "crossovers"):
            if int(getattr(cfg, name)) < 0:
                raise ConfigError(f"evolution option '{name}' must be >= 0, got {getattr(cfg, name)}")
        if not 0.0 <= float(cfg.mutation_prob) <= 1.0:
            raise ConfigError(f"evolution option 'mutation_prob' must be in [0, 1], got {cfg.mutation_prob}")
        self.space, self.cfg, self.rng = space, cfg, rng
        self.points = space.choice_points()
        self._candidates = {p.key: p.candidates for p in self.points}
        self.evaluate_fn, self.constraint = evaluate, constraint
        self.cache = dict(evaluated or {})       # scores known before this run (replay)
        self.scores: dict[Architecture, float] = {}  # evaluated in this run
        self.on_evaluate, self.log = on_evaluate, log
        self.rejected = {"seen": 0, "topology": 0, "constraint": 0}
        self.evaluated_per_process = [0] * world_size()  # fresh evaluations computed by each process
        self._first_eval_s: float | None = None  # seconds of the first fresh evaluation (the estimate)

    # ----- legality ----------------------------------------------------------
    def _legal(self, arch: Architecture, pending: set[Architecture]) -> bool:
        """SPOS ``is_legal``: new, valid, within budget (scored afterwards, in a batch)."""
        if arch in self.scores or arch in pending:
            self.rejected["seen"] += 1
            return False
        try:
            self.space.validate_topology(arch)
        except ArchitectureError:
            self.rejected["topology"] += 1
            return False
        if self.constraint is not None and not self.constraint.holds(arch):
            self.rejected["constraint"] += 1
            return False
        return True

    def _timed_evaluate(self, arch: Architecture) -> float:
        """``evaluate_fn(arch)``; the first fresh evaluation also logs the time estimate."""
        t = time.time()
        score = float(self.evaluate_fn(arch))
        if self._first_eval_s is None:
            self._first_eval_s = time.time() - t
            if self.log is not None:
                n, procs = self.max_candidates(), world_size()
                est = self._first_eval_s * n / procs
                self.log(f"evolution: one candidate scored in {self._first_eval_s:.2f}s; estimate for up to {n} "
                         f"candidates{f' on {procs} processes' if procs > 1 else ''}: ~{_duration(est)}")
        return score

    def max_candidates(self) -> int:
        """The most candidates the run scores: the initial population, then per generation the
        mutations and crossovers, filled up with random ones to the population size."""
        c = self.cfg
        per_gen = max(int(c.population), int(c.mutations) + int(c.crossovers))
        return int(c.population) + int(c.generations) * per_gen

    def _score(self, archs: list[Architecture]) -> None:
        """Score the legal candidates ``archs`` (cached scores replayed, the rest split over
        the processes), in draw order."""
        todo = [a for a in archs if a not in self.cache]
        fresh, per_process = map_items(self._timed_evaluate, todo)
        self.evaluated_per_process = [n + k for n, k in zip(self.evaluated_per_process, per_process)]
        new = dict(zip(todo, fresh))
        for arch in archs:
            if arch in new:
                self.scores[arch] = new[arch]
                if self.on_evaluate is not None:
                    self.on_evaluate(arch, new[arch])
            else:
                self.scores[arch] = self.cache[arch]

    # ----- operators -----------------------------------------------------------
    def _draw(self, key: str) -> str:
        """A candidate of choice point ``key``, uniformly (a subclass may draw differently)."""
        return self.rng.choice(self._candidates[key])

    def _conform(self, arch: Architecture, fill: Callable[[str], str]) -> Architecture:
        """``arch`` made consistent where the space's choices depend on each other
        (``space.conform``: TrioNet's elastic depth, whose blocks past a stage's depth are "none"
        and whose blocks within it that were "none" get ``fill(key)``); other spaces: as drawn."""
        conform = getattr(self.space, "conform", None)
        return arch if conform is None else conform(arch, fill)

    def _random(self) -> Architecture:
        return self._conform(Architecture(self.space.name, {p.key: self._draw(p.key) for p in self.points}),
                             self._draw)

    def _mutate(self, parent: Architecture) -> Architecture:
        choices = {p.key: (self._draw(p.key) if self.rng.random() < self.cfg.mutation_prob
                           else parent.choices[p.key]) for p in self.points}
        return self._conform(Architecture(self.space.name, choices), self._draw)

    def _crossover(self, a: Architecture, b: Architecture) -> Architecture:
        child = Architecture(self.space.name, {p.key: self.rng.choice((a.choices[p.key], b.choices[p.key]))
                                               for p in self.points})

        def other_parent(key: str) -> str:
            """A block the child's depth runs, taken from the parent that skips it: the other
            parent's (the one whose depth the child has runs it)."""
            return a.choices[key] if a.choices[key] in self._candidates[key] else b.choices[key]

        return self._conform(child, other_parent)

    def _excess(self, arch: Architecture) -> float:
        """How far ``arch`` is over the constraint: the sum of its relative overshoots (0: fits)."""
        c, k = self.constraint.cost(arch), self.constraint
        return sum(max(0.0, v / b - 1.0) for v, b in ((c.flops, k.flops_budget), (c.macs, k.macs_budget),
                                                      (c.params, k.params_budget)) if b is not None)

    def _into_budget(self, arch: Architecture) -> Architecture:
        """``arch`` moved under the constraint: while it is over, one choice point is set to a
        random candidate among all single changes that lower the overshoot (made consistent by
        ``space.conform``); stops when nothing lowers it (then the result is still illegal)."""
        excess = self._excess(arch)
        while excess > 0:
            cheaper = []
            for p in self.points:
                for c in self._candidates[p.key]:
                    if c != arch.choices[p.key]:
                        nxt = self._conform(Architecture(arch.space, {**arch.choices, p.key: c}), self._draw)
                        e = self._excess(nxt)
                        if e < excess:
                            cheaper.append((nxt, e))
            if not cheaper:
                break
            arch, excess = self.rng.choice(cheaper)
        return arch

    def _random_candidates(self, n: int) -> list[Architecture]:
        """Up to ``n`` legal random candidates, scored: uniform draws (rejection sampling), and, for
        what that leaves missing under an active budget with a cost table, draws moved into it."""
        out = self._collect(n, self._random)
        k = self.constraint
        if len(out) < n and k is not None and k.active and k.additive:
            out += self._collect(n - len(out), lambda: self._into_budget(self._random()))
        return out

    def _collect(self, n: int, make: Callable[[], Architecture]) -> list[Architecture]:
        """Draw up to ``n`` legal candidates (rejection sampling), then score them."""
        out: list[Architecture] = []
        pending: set[Architecture] = set()
        for _ in range(max(1, n) * int(self.cfg.max_tries_factor)):
            if len(out) >= n:
                break
            arch = make()
            if self._legal(arch, pending):
                out.append(arch)
                pending.add(arch)
        self._score(out)
        return out

    def _top(self, k: int) -> list[tuple[Architecture, float]]:
        return sorted(self.scores.items(), key=lambda t: -t[1])[:k]

    # ----- run -------------------------------------------------------------------
    def run(self) -> EvolutionResult:
        """The evolution; with ``log``, its budget first (population x generations, the most
        candidates, then a time estimate after the first candidate), then one line per generation
        (candidates scored, best so far, elapsed time, estimated time left)."""
        cfg = self.cfg
        t0 = time.time()
        if self.log is not None:
            replay = f", {len(self.cache)} scores known from before (replayed)" if self.cache else ""
            self.log(f"evolution: population {cfg.population} x {cfg.generations} generations "
                     f"(top-{cfg.top_k} parents, {cfg.mutations} mutations + {cfg.crossovers} crossovers per "
                     f"generation): up to {self.max_candidates()} candidates to score{replay}")
        population = self._random_candidates(int(cfg.population))
        if not population:
            msg = "no random architecture met the constraint"
            if self.constraint is not None and self.constraint.active:
                msg += f" {self.constraint.describe()} in {int(cfg.population) * int(cfg.max_tries_factor)} draws"
            raise ConfigError(msg + "; raise the budget")
        history: list[dict[str, Any]] = []
        scored_before = 0
        for gen in range(int(cfg.generations) + 1):
            top = self._top(int(cfg.top_k))
            history.append({"generation": gen, "population": len(population),
                            "evaluated": len(self.scores), "best": top[0][1],
                            "top_k_mean": sum(s for _, s in top) / len(top),
                            "population_mean": sum(self.scores[a] for a in population) / len(population)})
            if self.log is not None:
                elapsed = time.time() - t0
                left = elapsed / (gen + 1) * (int(cfg.generations) - gen)
                self.log(f"evolution generation {gen}/{cfg.generations}: {len(self.scores) - scored_before} "
                         f"candidates scored ({len(self.scores)} in all), best so far {top[0][1]:.4f}, "
                         f"top-{len(top)} mean {history[-1]['top_k_mean']:.4f}, {_duration(elapsed)} elapsed"
                         + (f", ~{_duration(left)} left" if gen < int(cfg.generations) else ""))
            scored_before = len(self.scores)
            if gen == int(cfg.generations):
                break
            parents = [a for a, _ in top]
            children = self._collect(int(cfg.mutations), lambda: self._mutate(self.rng.choice(parents)))
            children += self._collect(int(cfg.crossovers),
                                      lambda: self._crossover(self.rng.choice(parents), self.rng.choice(parents)))
            children += self._random_candidates(int(cfg.population) - len(children))
            population = children if children else population
        top = self._top(int(cfg.top_k))
        best, best_score = top[0]
        return EvolutionResult(best=best, best_score=best_score, top=top, history=history,
                               evaluated=dict(self.scores), evaluated_per_process=self.evaluated_per_process)


def _duration(seconds: float) -> str:
    """``42s``, ``3m 05s``, ``1h 02m``."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"
