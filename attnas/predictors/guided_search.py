"""Predictor-guided search, with random search and regularized evolution as references.

:func:`predictor_guided_search` (the search loop of predictor-based NAS,
Neural Predictor / TNASP): evaluate a random initial batch; then repeatedly
retrain the predictor on everything evaluated so far, predict a large pool of
unevaluated candidates and evaluate the ``batch`` best predicted, until the
evaluation budget is spent.

Candidates come either from an enumerable list (a tabular benchmark: every
unevaluated architecture is a candidate; or a fixed pool of random architectures
of a space, :func:`sample_pool`) or from a search space (a fresh random pool of
``pool_size`` architectures per round).  An evaluation is any callable
``arch -> score`` (higher is better): a benchmark look-up
(:func:`nb201_evaluator`), the accuracy with weights inherited from a search
run's supernet (:class:`InheritedWeightsEvaluator`) or training with the
library's engine (:class:`TrainingEvaluator`).  Each distinct architecture is evaluated once;
the result records the order of evaluations, so "best architecture found
against the number of evaluations" is :attr:`SearchResult.best_curve`.
"""
from __future__ import annotations

import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from attnas.arch import Architecture
from attnas.errors import ArchitectureError, ConfigError
from attnas.jsonio import dumps as json_dumps
from attnas.predictors.encoders import EncodedBatch
from attnas.predictors.train import NeuralPredictor

Evaluator = Callable[[Any], float]


@dataclass
class SearchResult:
    """Evaluations in order; ``best_curve[k]`` = best score after k+1 evaluations."""

    method: str
    archs: list[Any] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    time_s: float = 0.0
    predictor_fits: int = 0

    @property
    def best_curve(self) -> list[float]:
        return np.maximum.accumulate(np.asarray(self.scores, dtype=float)).tolist() if self.scores else []

    def incumbents(self) -> list[int]:
        """Index (into ``archs``) of the best architecture after each evaluation (first on ties)."""
        out, best = [], 0
        for k, s in enumerate(self.scores):
            if s > self.scores[best]:
                best = k
            out.append(best)
        return out

    def best(self) -> tuple[Any, float]:
        k = int(np.argmax(self.scores))
        return self.archs[k], self.scores[k]

    def evaluations_to_reach(self, threshold: float, values: Sequence[float] | None = None) -> int | None:
        """Evaluations until the incumbent's value reaches ``threshold`` (None if never).

        ``values[k]`` is the value reported for evaluation k (default: its
        score); e.g. search on validation accuracy and report the test accuracy
        of the incumbent.
        """
        vals = self.scores if values is None else list(values)
        for k, inc in enumerate(self.incumbents()):
            if vals[inc] >= threshold:
                return k + 1
        return None

    def to_dict(self, native: Callable[[Any], Any] = str) -> dict[str, Any]:
        arch, score = self.best()
        return {"method": self.method, "evaluations": len(self.scores), "best_score": score,
                "best_arch": native(arch), "best_curve": self.best_curve, "time_s": round(self.time_s, 2),
                "predictor_fits": self.predictor_fits}


def _key(arch: Any) -> Hashable:
    if isinstance(arch, Architecture):
        return (arch.space, tuple(sorted(arch.choices.items())))
    return arch if isinstance(arch, Hashable) else repr(arch)


StopRule = Callable[[SearchResult], bool]


class _Evaluations:
    """Counts distinct evaluations, caches their scores, applies the stop rule."""

    def __init__(self, evaluate: Evaluator, budget: int, method: str, stop: StopRule | None = None) -> None:
        if budget < 1:
            raise ConfigError(f"the evaluation budget must be positive, got {budget}")
        self.evaluate, self.budget, self.stop = evaluate, int(budget), stop
        self.cache: dict[Hashable, float] = {}
        self.result = SearchResult(method)
        self.stopped = False

    @property
    def left(self) -> int:
        """Evaluations still allowed (0 once the budget is spent or the stop rule fired)."""
        return 0 if self.stopped else self.budget - len(self.result.scores)

    def __call__(self, arch: Any) -> float:
        k = _key(arch)
        if k not in self.cache:
            if self.left <= 0:
                raise RuntimeError("evaluation budget exhausted")
            s = float(self.evaluate(arch))
            self.cache[k] = s
            self.result.archs.append(arch)
            self.result.scores.append(s)
            if self.stop is not None and self.stop(self.result):
                self.stopped = True
        return self.cache[k]

    def seen(self, arch: Any) -> bool:
        return _key(arch) in self.cache


def _sample_new(space: Any, rng: random.Random, n: int, exclude: Callable[[Any], bool]) -> list[Any]:
    out, keys = [], set()
    for _ in range(50 * n + 100):
        if len(out) >= n:
            break
        a = space.sample(rng)
        k = _key(a)
        if k in keys or exclude(a):
            continue
        keys.add(k)
        out.append(a)
    return out


def sample_pool(space: Any, n: int, seed: int = 0) -> list[Any]:
    """``n`` distinct random architectures of ``space`` drawn with ``seed`` (``space.sample``,
    so cell spaces keep their topology rule); fewer only when the space has fewer."""
    if n < 1:
        raise ConfigError(f"the pool must hold at least one architecture, got {n}")
    return _sample_new(space, random.Random(seed), n, lambda arch: False)


def predictor_guided_search(evaluate: Evaluator, make_predictor: Callable[[int], NeuralPredictor], budget: int,
                            candidates: Sequence[Any] | None = None, space: Any = None, initial: int = 10,
                            batch: int = 10, pool_size: int = 1000, seed: int = 0,
                            encoded: EncodedBatch | None = None, stop: StopRule | None = None,
                            log: Callable[[str], None] | None = None) -> SearchResult:
    """Search guided by a predictor (see module doc).

    ``make_predictor(round)`` returns a fresh predictor; ``candidates`` (with
    optional ``encoded``, their pre-computed encoding) or ``space`` gives the
    pool.  ``initial`` random architectures are evaluated first, then
    ``batch`` per round.  ``stop(result)`` (optional) ends the search early,
    e.g. once a target accuracy is reached.  ``log``: a progress line per predictor round.
    """
    if (candidates is None) == (space is None):
        raise ConfigError("give exactly one of candidates (an enumerable table) or space (sampled pools)")
    if initial < 2 or batch < 1:
        raise ConfigError(f"initial must be >= 2 and batch >= 1, got {initial} and {batch}")
    ev = _Evaluations(evaluate, budget, "predictor-guided", stop)
    rng = random.Random(seed)
    t0 = time.time()

    def progress(rounds: int) -> None:
        if log is not None and ev.result.scores:
            log(f"guided search: round {rounds}, {len(ev.result.scores)}/{budget} evaluated, best so far "
                f"{max(ev.result.scores):.4f}, {time.time() - t0:.0f}s elapsed")
    if candidates is not None:
        n_all = len(candidates)
        order = list(range(n_all))
        rng.shuffle(order)
        done = np.zeros(n_all, dtype=bool)
        evaluated_idx: list[int] = []
        for i in order[:min(initial, budget, n_all)]:
            if ev.left <= 0:
                break
            ev(candidates[i])
            done[i] = True
            evaluated_idx.append(i)
        rounds = 0
        while ev.left > 0 and not done.all():
            pred = make_predictor(rounds)
            X = encoded.index(np.array(evaluated_idx)) if encoded is not None else [candidates[i] for i in evaluated_idx]
            pred.fit(X, [ev.cache[_key(candidates[i])] for i in evaluated_idx])
            ev.result.predictor_fits += 1
            pool = np.nonzero(~done)[0]
            if pool_size and len(pool) > pool_size and encoded is None:
                pool = np.array(sorted(rng.sample(list(pool), pool_size)))
            Xp = encoded.index(pool) if encoded is not None else [candidates[i] for i in pool]
            scores = pred.predict(Xp)
            for i in pool[np.argsort(-scores, kind="stable")][:min(batch, ev.left)]:
                if ev.left <= 0:
                    break
                ev(candidates[int(i)])
                done[int(i)] = True
                evaluated_idx.append(int(i))
            rounds += 1
            progress(rounds)
    else:
        archs: list[Any] = []
        for a in _sample_new(space, rng, min(initial, budget), ev.seen):
            if ev.left <= 0:
                break
            ev(a)
            archs.append(a)
        rounds = 0
        while ev.left > 0:
            pred = make_predictor(rounds)
            pred.fit(archs, [ev.cache[_key(a)] for a in archs])
            ev.result.predictor_fits += 1
            pool = _sample_new(space, rng, pool_size, ev.seen)
            if not pool:
                break
            scores = pred.predict(pool)
            for k in np.argsort(-scores, kind="stable")[:min(batch, ev.left)]:
                if ev.left <= 0:
                    break
                ev(pool[int(k)])
                archs.append(pool[int(k)])
            rounds += 1
            progress(rounds)
    ev.result.time_s = time.time() - t0
    return ev.result


def random_search(evaluate: Evaluator, budget: int, candidates: Sequence[Any] | None = None, space: Any = None,
                  seed: int = 0, stop: StopRule | None = None) -> SearchResult:
    """Uniform sampling without repetition (from ``candidates`` or ``space.sample``)."""
    if (candidates is None) == (space is None):
        raise ConfigError("give exactly one of candidates or space")
    ev = _Evaluations(evaluate, budget, "random", stop)
    rng = random.Random(seed)
    t0 = time.time()
    if candidates is not None:
        for i in rng.sample(range(len(candidates)), min(budget, len(candidates))):
            if ev.left <= 0:
                break
            ev(candidates[i])
    else:
        for a in _sample_new(space, rng, budget, ev.seen):
            if ev.left <= 0:
                break
            ev(a)
    ev.result.time_s = time.time() - t0
    return ev.result


def mutate(arch: Architecture, space: Any, rng: random.Random) -> Architecture:
    """Change one random choice point to a different candidate (valid topology, retried)."""
    points = [p for p in space.choice_points() if len(p.candidates) > 1]
    if not points:
        raise ConfigError(f"space '{space.name}' has no choice point to mutate")
    for _ in range(200):
        p = rng.choice(points)
        op = rng.choice([c for c in p.candidates if c != arch.choices[p.key]])
        child = Architecture(arch.space, {**arch.choices, p.key: op})
        try:
            space.validate_topology(child)
            return child
        except ArchitectureError:
            continue
    raise ArchitectureError(f"could not mutate the architecture into a valid one of '{space.name}'")


def regularized_evolution(evaluate: Evaluator, budget: int, space: Any, population: int = 20, sample: int = 5,
                          seed: int = 0, stop: StopRule | None = None) -> SearchResult:
    """Aging evolution (Real et al., 2019): tournament of ``sample`` from a population of
    ``population``, mutate the winner, evaluate the child, drop the oldest."""
    if population < 2 or not 1 <= sample <= population:
        raise ConfigError(f"need population >= 2 and 1 <= sample <= population, got {population}, {sample}")
    ev = _Evaluations(evaluate, budget, "regularized-evolution", stop)
    rng = random.Random(seed)
    t0 = time.time()
    pop: list[tuple[Architecture, float]] = []
    for a in _sample_new(space, rng, min(population, budget), ev.seen):
        if ev.left <= 0:
            break
        pop.append((a, ev(a)))
    stall = 0
    while ev.left > 0 and stall < 1000:
        parent = max(rng.sample(pop, min(sample, len(pop))), key=lambda t: t[1])[0]
        child = mutate(parent, space, rng)
        stall = stall + 1 if ev.seen(child) else 0  # a repeat costs no evaluation
        pop.append((child, ev(child)))
        pop.pop(0)
    ev.result.time_s = time.time() - t0
    return ev.result


# --------------------------------------------------------------------------- evaluators
def nb201_evaluator(data_dir: str | None = None, dataset: str = "cifar10", split: str = "val") -> Evaluator:
    """NAS-Bench-201 look-up of ``split`` accuracy on ``dataset``."""
    from attnas.benchmarks.nb201 import NB201Bench, nb201_index

    acc = NB201Bench(data_dir).accuracies(dataset, split)
    return lambda arch: float(acc[nb201_index(arch)])


class InheritedWeightsEvaluator:
    """Evaluate an architecture with the weights it inherits from a search run's supernet.

    ``run_dir`` is an ``attnas search`` run folder (any method whose supernet keeps one set
    of weights per candidate of each choice point: DARTS, SPOS, FairNAS, random, ...; not
    EnTranNAS), re-opened as ``attnas evolve`` re-opens it
    (:func:`attnas.from_run.load_search_run`: config, data split, last checkpoint, read with
    ``weights_only=True``).  Per architecture, the stand-alone network of the supernet's
    layout inherits the weights of its path (:func:`attnas.search.export.export_subnet`),
    its batch-norm statistics are recomputed on ``bn_images`` training images of the run's
    weight split (SPOS Sec. 3.4, :func:`attnas.search.evolution.recalibrate_bn`), and the
    score is its accuracy on ``eval_images`` images of the run's validation split, which the
    supernet's weights never trained on (0 = every image of the split, for both counts).  On
    a single-path supernet (SPOS) this is the fitness of ``attnas evolve``: the routed
    supernet computes what the exported network computes.  ``space`` (a name), when given,
    must be the space the run searched.
    """

    def __init__(self, run_dir: str | Path, space: str | None = None, bn_images: int = 512,
                 eval_images: int = 0, device: str | None = None) -> None:
        from attnas.from_run import load_search_run, selection_context
        from attnas.search.evolution import take_images

        for label, v in (("bn_images", bn_images), ("eval_images", eval_images)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{label} must be a non-negative integer (0 = all), got {v!r}")
        run = load_search_run(run_dir, device=device)
        if space is not None and run.cfg.space != space:
            raise ConfigError(f"'{run_dir}' searched space '{run.cfg.space}', not '{space}'")
        context = selection_context(run.task)
        self.valid = take_images(context.validation, eval_images)
        if not self.valid:
            raise ConfigError(f"'{run_dir}' has no validation images to score architectures on "
                              "(its method trains on the whole training set)")
        self.bn = take_images(context.train, bn_images)
        self.run_dir, self.cfg, self.space, self.model = Path(run_dir), run.cfg, run.space, run.model
        self.shape = (run.data.num_classes, run.data.in_channels, run.data.image_size)
        self.epochs_done = run.epochs_done
        self._network(self.space.sample(random.Random(0)), bn=False)  # can this supernet be inherited from?

    def _network(self, arch: Architecture, bn: bool = True):
        from attnas.search.export import export_subnet

        try:
            return export_subnet(self.space, self.model, arch, *self.shape, bn_batches=self.bn if bn else None)
        except ArchitectureError as e:
            raise ConfigError(f"cannot evaluate architectures with the weights of '{self.run_dir}' "
                              f"({self.cfg.method} on {self.cfg.space}): {e}") from None

    def __call__(self, arch: Architecture) -> float:
        from attnas.search.evolution import accuracy

        return accuracy(self._network(arch), self.valid)

    def describe(self) -> dict[str, Any]:
        """What the scores depend on: the run, its supernet epochs, the images used."""
        return {"supernet": str(self.run_dir), "supernet_method": self.cfg.method, "dataset": self.cfg.dataset,
                "space_options": dict(self.cfg.space_options), "supernet_epochs": self.epochs_done,
                "bn_images": sum(len(y) for _, y in self.bn), "eval_images": sum(len(y) for _, y in self.valid)}


class TrainingEvaluator:
    """Evaluate an architecture by training it with the library's engine (``attnas.api.train``).

    ``train_options`` are :class:`attnas.config.TrainConfig` fields (dataset,
    epochs, batch_size, data_dir, train_subset, ...).  Each architecture gets
    a run folder under ``out_root``; the score is ``metric`` of the run's
    result (the engine reports ``test_acc`` / ``best_test_acc``).
    """

    def __init__(self, out_root: str | None = None, metric: str = "test_acc", progress: bool = False,
                 **train_options: Any) -> None:
        from attnas.config import TrainConfig, check_config

        known = set(TrainConfig.__dataclass_fields__) - {"arch", "out"}
        own = sorted({"arch", "out"} & set(train_options))
        if own:
            raise ConfigError(f"training option(s) {own} are set by the evaluator (one run folder per "
                              "architecture under out_root)")
        bad = sorted(set(train_options) - known)
        if bad:
            raise ConfigError(f"unknown training option(s) {bad}; expected some of {sorted(known)}")
        check_config(TrainConfig(**train_options))  # types and ranges, before anything is trained
        self.out_root = Path(out_root or tempfile.mkdtemp(prefix="attnas-guided-"))
        self.metric, self.progress, self.train_options = metric, progress, train_options
        self.count = 0

    def __call__(self, arch: Architecture) -> float:
        from attnas import api
        from attnas.spaces.io import save_architecture
        from attnas.config import TrainConfig

        self.count += 1
        run = self.out_root / f"eval-{self.count:04d}"
        run.mkdir(parents=True, exist_ok=True)
        path = run / "candidate.json"
        save_architecture(arch, path)
        cfg = TrainConfig(arch=str(path), out=str(run / "train"), **self.train_options)
        result = api.train(cfg, progress=self.progress)
        if self.metric not in result:
            raise ConfigError(f"training result has no '{self.metric}'; it has {sorted(result)}")
        (run / "score.json").write_text(json_dumps({"score": result[self.metric]}))
        return float(result[self.metric])

    def describe(self) -> dict[str, Any]:
        """What the scores depend on: the training options and the metric."""
        return {"training": dict(self.train_options), "metric": self.metric}
