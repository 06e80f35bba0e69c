"""``attnas guided``: predictor-guided search (TNASP slides, Sec. 4 and Tables 3 / 8).

The loop is :func:`attnas.predictors.guided_search.predictor_guided_search`:
``--initial`` random architectures are evaluated, then rounds of "retrain the
predictor from scratch on every evaluated architecture, predict every
unevaluated candidate, evaluate the ``--batch`` best" until ``--budget``
evaluations are spent.  The predictor (``--predictor``, TNASP by default) runs
with a light preset (``--options``; default 20 epochs, at least 200 steps), as
``bench/predictor_guided_search.py`` does, on the encoding of the space
(:func:`attnas.predictors.encoders.encoder_for`: subdivision graphs of DARTS
cells, a path of ProxylessNAS layers, ...).

Candidates and evaluations (``--evaluator``):

* ``lookup`` (default for ``--space nb201``; ``--bench nb201`` is the same):
  every cell of NAS-Bench-201 is a candidate and an evaluation is a look-up of
  its *validation* accuracy (what a search may see); the report adds the
  incumbent's *test* accuracy and the table's optimum.
* ``supernet`` (``--supernet RUN_DIR``, e.g. a finished ``attnas search --space
  darts --method darts`` or ``--space proxyless --method spos`` run): the
  candidates are a pool of ``--pool`` random architectures of the run's space
  (drawn with ``--seed``); an architecture's score is the accuracy, on
  ``--eval-images`` images of the run's validation split, of its stand-alone
  network with the weights it inherits from the supernet and its batch-norm
  statistics recomputed on ``--bn-images`` training images
  (:class:`attnas.predictors.guided_search.InheritedWeightsEvaluator`, the
  fitness of ``attnas evolve``).
* ``train``: the same pool; an architecture's score is the test accuracy of a
  short training from scratch (``--train-options``: ``attnas train`` options
  such as epochs, batch_size, train_subset, network_options; ``--dataset``),
  one run folder each under ``--runs-dir`` (default: a temporary folder,
  removed at the end) -- for small budgets.

The report gives the incumbent (best score so far) after k evaluations, the
evaluation that found the final one, and (``--json``) the same as one JSON
object; ``--out FILE`` also writes every evaluation, and the final architecture
goes to ``--arch-out`` (default: ``architecture.json`` next to ``--out``), a
file ``attnas train --arch`` takes.  Bad options, a missing or incompatible
supernet run and a space mismatch stop before the search, with nothing written.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from attnas.cli.common import parse_json_option, table
from attnas.cli.main import add_json_flag
from attnas.errors import ConfigError

LIGHT_TNASP = {"epochs": 20, "min_steps": 200}
EVALUATORS = ("lookup", "supernet", "train")
#: the spaces whose every architecture has a table entry (candidates: the table, evaluator: look-ups)
LOOKUP_SPACES = ("nb201",)
DEFAULT_POOL = 1000
#: flags that only one kind of evaluator reads (given with another: an error)
ONLY_FOR = {"supernet": ("supernet", "bn_images", "eval_images", "device"),
            "train": ("train_options", "runs_dir"),
            "pool": ("pool", "space_options")}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("guided", help="predictor-guided search (TNASP): NAS-Bench-201 look-ups, or a pool of "
                                      "DARTS / ProxylessNAS architectures scored by a supernet or by training")
    p.add_argument("--space", help="nb201 (default; with --supernet: the space of that run), darts, proxyless, "
                                   "or another space with a predictor encoder")
    p.add_argument("--bench", help="nb201: the same as --space nb201 with look-ups (the flag before --space)")
    p.add_argument("--evaluator", choices=EVALUATORS,
                   help="lookup (nb201's table; the default there), supernet (inherited weights of --supernet; "
                        "the default when it is given) or train (short training from scratch)")
    p.add_argument("--supernet", metavar="RUN_DIR", help="search run folder whose supernet scores the candidates")
    p.add_argument("--pool", type=int, help=f"random architectures of the space to choose from (default "
                                            f"{DEFAULT_POOL}; supernet and train evaluators)")
    p.add_argument("--space-options", help="JSON options of the space (train evaluator; a supernet run has its own)")
    p.add_argument("--bn-images", type=int, help="training images the batch-norm statistics are recomputed on "
                                                 "(supernet evaluator; default 512, 0 = the whole weight split)")
    p.add_argument("--eval-images", type=int, help="validation images of the run's split scored (supernet "
                                                   "evaluator; default 0 = all of them)")
    p.add_argument("--device", help="device of the supernet evaluator (default: the run's)")
    p.add_argument("--train-options", help="JSON object of attnas train options for the train evaluator "
                                           "(epochs, batch_size, train_subset, network_options, options, ...)")
    p.add_argument("--runs-dir", help="keep the train evaluator's runs here (default: a temporary folder)")
    p.add_argument("--dataset", help="look-ups: cifar10 (default), cifar100 or ImageNet16-120; "
                                     "train evaluator: the dataset to train on")
    p.add_argument("--budget", type=int, default=100, help="evaluations in all")
    p.add_argument("--initial", type=int, default=20, help="random architectures evaluated first")
    p.add_argument("--batch", type=int, default=10, help="architectures evaluated per predictor round")
    p.add_argument("--predictor", default="tnasp", help="tnasp (default), mlp or gcn")
    p.add_argument("--options", help="JSON object overriding the predictor preset "
                                     f"(default for tnasp: {json.dumps(LIGHT_TNASP)})")
    p.add_argument("--seed", type=int, default=0, help="seed of the pool, the initial draw and the predictors")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--data-dir", help="data folder: benchmark tables, datasets (default: $ATTNAS_DATA_DIR)")
    p.add_argument("--out", help="write the result and every evaluation (order, architecture, score) "
                                 "to this JSON file")
    p.add_argument("--arch-out", help="write the final architecture (for attnas train --arch) to this file "
                                      "(default: architecture.json next to --out; nothing without --out)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    add_json_flag(p)
    p.set_defaults(func=run)


@dataclass
class Setup:
    """What the search runs on: the space, its candidates (and their encoding), the evaluation,
    and how the report names the score (``extra``: a second number per evaluation, e.g. test accuracy)."""

    space: Any
    candidates: list[Any]
    evaluate: Callable[[Any], float]
    score_key: str
    describe: dict[str, Any]
    extra_key: str | None = None
    extra: Callable[[Any], float] | None = None


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from attnas.predictors import encoder_for, get_predictor
    from attnas.predictors.guided_search import predictor_guided_search

    space_name, kind = _resolve(args)
    outputs = _outputs(args)
    if args.threads:
        torch.set_num_threads(int(args.threads))
    overrides = parse_json_option(args.options, "--options")
    if overrides is None and args.predictor == "tnasp":
        overrides = dict(LIGHT_TNASP)
    with contextlib.ExitStack() as cleanup:
        setup = _lookup_setup(args) if kind == "lookup" else _pool_setup(args, space_name, kind, cleanup)
        enc = encoder_for(setup.space)
        get_predictor(args.predictor, enc, 0, **(overrides or {}))  # a bad name or option fails before the search
        res = predictor_guided_search(
            setup.evaluate, lambda r: get_predictor(args.predictor, enc, 1000 * args.seed + r, **(overrides or {})),
            args.budget, candidates=setup.candidates, initial=args.initial, batch=args.batch, seed=args.seed,
            encoded=enc.encode(setup.candidates), log=None if args.quiet else _stderr)
    result, evaluated = _report(args, setup, kind, res)
    _write(outputs, setup, result, evaluated, res)
    return result


# ----- options ------------------------------------------------------------------------------------
def _resolve(args: argparse.Namespace) -> tuple[str | None, str]:
    """The space and the evaluator, every option checked against them (before anything runs);
    the space is None when ``--supernet`` alone names it (the run's)."""
    if args.bench is not None and args.bench not in LOOKUP_SPACES:
        raise ConfigError(f"--bench takes a benchmark with a complete table ({', '.join(LOOKUP_SPACES)}), not "
                          f"'{args.bench}'; for other spaces use --space with --evaluator supernet or train")
    if args.bench is not None and args.space is not None and args.space != args.bench:
        raise ConfigError(f"--bench {args.bench} and --space {args.space} disagree; give one of them")
    kind = args.evaluator
    # --supernet RUN_DIR without --space: the space that run searched (None here; the run says)
    by_run = args.supernet is not None and kind in (None, "supernet") and not (args.space or args.bench)
    space = args.space or args.bench or (None if by_run else "nb201")
    if kind is None:
        kind = "supernet" if args.supernet else "lookup" if space in LOOKUP_SPACES else None
    if kind is None:
        raise ConfigError(f"space '{space}' has no complete table to look up: choose --evaluator supernet "
                          "(with --supernet RUN_DIR) or --evaluator train")
    if kind == "lookup" and space not in LOOKUP_SPACES:
        raise ConfigError(f"--evaluator lookup needs a complete table ({', '.join(LOOKUP_SPACES)}); space "
                          f"'{space}' has none: use --evaluator supernet or train")
    if args.bench is not None and kind != "lookup":
        raise ConfigError("--bench means look-ups; with --evaluator supernet or train give --space")
    for group, names in ONLY_FOR.items():
        wanted = group == kind or (group == "pool" and kind != "lookup")
        given = [n for n in names if getattr(args, n) is not None]
        if given and not wanted:
            flags = ", ".join("--" + n.replace("_", "-") for n in given)
            what = "a pool of sampled candidates (--evaluator supernet or train)" if group == "pool" \
                else f"--evaluator {group}"
            raise ConfigError(f"{flags} only apply to {what}, not to --evaluator {kind}")
    if kind == "supernet" and not args.supernet:
        raise ConfigError("--evaluator supernet needs --supernet RUN_DIR (a finished attnas search run)")
    if kind == "supernet" and args.dataset is not None:
        raise ConfigError("--dataset: the supernet run fixes the dataset (its own split scores the candidates)")
    for flag, v, low in (("--budget", args.budget, 1), ("--initial", args.initial, 2), ("--batch", args.batch, 1),
                         ("--pool", args.pool, 1), ("--bn-images", args.bn_images, 0),
                         ("--eval-images", args.eval_images, 0), ("--threads", args.threads, 1)):
        if v is not None and v < low:
            raise ConfigError(f"{flag} must be at least {low}, got {v}")
    if args.budget < args.initial:
        raise ConfigError(f"--budget {args.budget} is smaller than --initial {args.initial}")
    if kind != "lookup" and args.budget > (args.pool or DEFAULT_POOL):
        raise ConfigError(f"--budget {args.budget} exceeds --pool {args.pool or DEFAULT_POOL}: the search would "
                          "evaluate the whole pool; raise --pool")
    return space, kind


def _outputs(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """``--out`` and the architecture file, checked to be writable before the search."""
    out = Path(args.out) if args.out else None
    arch = Path(args.arch_out) if args.arch_out else (out.with_name("architecture.json") if out else None)
    if out is not None and arch is not None and out.resolve() == arch.resolve():
        raise ConfigError(f"--out and --arch-out are the same file '{out}'")
    for flag, p in (("--out", out), ("--arch-out", arch)):
        if p is None:
            continue
        if p.is_dir():
            raise ConfigError(f"{flag} '{p}' is a folder, not a file")
        existing = next(a for a in p.absolute().parents if a.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            raise ConfigError(f"cannot write {flag} '{p}': '{existing}' is not a writable folder")
    return out, arch


# ----- candidates and evaluators -----------------------------------------------------------------
def _lookup_setup(args: argparse.Namespace) -> Setup:
    from attnas.benchmarks.nb201 import NB201Bench, nb201_index
    from attnas.spaces.nb201 import NB201Space

    dataset = args.dataset or "cifar10"
    bench = NB201Bench(args.data_dir)
    val, test = bench.accuracies(dataset, "val"), bench.accuracies(dataset, "test")
    return Setup(NB201Space(), bench.architectures(), lambda a: float(val[nb201_index(a)]), "val_acc",
                 {"dataset": dataset, "optimum_test_acc": float(test.max())},
                 extra_key="test_acc", extra=lambda a: float(test[nb201_index(a)]))


def _pool_setup(args: argparse.Namespace, space_name: str | None, kind: str, cleanup: contextlib.ExitStack) -> Setup:
    from attnas.predictors.guided_search import InheritedWeightsEvaluator, TrainingEvaluator, sample_pool
    from attnas.spaces.registry import get_space

    if kind == "supernet":
        evaluate = InheritedWeightsEvaluator(
            args.supernet, space_name, 512 if args.bn_images is None else args.bn_images,
            args.eval_images or 0, args.device)
        space = evaluate.space
    else:
        space_options = parse_json_option(args.space_options, "--space-options") or {}
        train = parse_json_option(args.train_options, "--train-options") or {}
        for key, flag, value in (("dataset", "--dataset", args.dataset), ("data_dir", "--data-dir", args.data_dir),
                                 ("space_options", "--space-options", space_options or None)):
            if value is not None and train.get(key, value) != value:
                raise ConfigError(f"{flag} and --train-options' '{key}' disagree; give one of them")
            if value is not None:
                train[key] = value
        # the pool is drawn from the space the candidates are trained in (options from either flag)
        pool_options = train.get("space_options") or {}
        if not isinstance(pool_options, dict):
            raise ConfigError(f"--train-options' 'space_options' must be a JSON object, got {pool_options!r}")
        space = get_space(space_name, data_dir=train.get("data_dir"), **pool_options)
        runs = args.runs_dir or cleanup.enter_context(tempfile.TemporaryDirectory(prefix="attnas-guided-"))
        evaluate = TrainingEvaluator(runs, progress=False, **train)
    pool = sample_pool(space, args.pool or DEFAULT_POOL, args.seed)
    if len(pool) < args.budget:
        raise ConfigError(f"space '{space.name}' gave only {len(pool)} distinct architectures for a budget of "
                          f"{args.budget}")
    return Setup(space, pool, evaluate, "score", {"pool": len(pool), **evaluate.describe()})


# ----- report -------------------------------------------------------------------------------------
def _report_points(initial: int, batch: int, n: int) -> list[int]:
    """Evaluation counts shown: the initial draw, then about ten points at round ends, and the last."""
    first_round_end = batch * ((initial + batch - 1) // batch)
    ks = {initial, *range(first_round_end, n + 1, max(batch, n // 10 or 1)), n}
    return [k for k in sorted(ks) if 1 <= k <= n]


def _report(args: argparse.Namespace, setup: Setup, kind: str, res) -> tuple[dict[str, Any], list[dict]]:
    native = lambda a: setup.space.to_native(a) or a.choices  # noqa: E731
    extras = [setup.extra(a) for a in res.archs] if setup.extra is not None else None
    inc = res.incumbents()

    def entry(i: int) -> dict[str, Any]:
        out = {"arch": native(res.archs[i]), setup.score_key: res.scores[i]}
        if extras is not None:
            out[setup.extra_key] = extras[i]
        return out

    curve = [{"evaluations": k, **entry(inc[k - 1])} for k in _report_points(args.initial, args.batch, len(inc))]
    best = inc[-1]
    result: dict[str, Any] = {"space": setup.space.name, "evaluator": kind}
    if kind == "lookup":
        result["bench"] = setup.space.name
    result.update({"predictor": args.predictor, "seed": args.seed, **setup.describe,
                   "evaluations": len(res.scores), "predictor_fits": res.predictor_fits,
                   "best_arch": native(res.archs[best]), f"best_{setup.score_key}": res.scores[best]})
    if extras is not None:
        result[f"best_{setup.extra_key}"] = extras[best]
    result.update({"found_at": best + 1, "time_s": round(res.time_s, 2), "curve": curve})
    headers = ["evaluations", f"incumbent {setup.score_key.replace('_', ' ')}"]
    headers += [f"its {setup.extra_key.replace('_', ' ')}"] if extras is not None else []
    print(table([*headers, "incumbent"],
                [[c["evaluations"], c[setup.score_key], *([c[setup.extra_key]] if extras else []), c["arch"]]
                 for c in curve]))
    line = (f"best of {len(res.scores)} evaluations (found at evaluation {best + 1}): {result['best_arch']}  "
            f"{setup.score_key} {res.scores[best]:.4f}")
    if extras is not None:
        line += f"  {setup.extra_key} {extras[best]:.4f}  (table optimum: {setup.describe['optimum_test_acc']:.2f})"
    print(line)
    return result, [entry(i) for i in range(len(res.archs))]


def _write(outputs: tuple[Path | None, Path | None], setup: Setup, result: dict[str, Any],
           evaluated: list[dict], res) -> None:
    """The final architecture (meta: how it was found), then the result with every evaluation."""
    from attnas.arch import Architecture
    from attnas.jsonio import dumps
    from attnas.spaces.io import save_architecture
    from attnas.training.checkpoint import atomic_write_text

    out, arch_out = outputs
    if arch_out is not None:
        best = res.archs[result["found_at"] - 1]
        meta = {**{k: v for k, v in setup.describe.items() if k not in ("pool", "optimum_test_acc")},
                "method": "predictor-guided", "predictor": result["predictor"], "evaluator": result["evaluator"],
                "seed": result["seed"], "evaluations": result["evaluations"], "found_at": result["found_at"],
                "score": res.scores[result["found_at"] - 1]}
        arch_out.parent.mkdir(parents=True, exist_ok=True)
        save_architecture(Architecture(best.space, dict(best.choices), meta), arch_out)
        result["architecture"] = str(arch_out)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, dumps({**result, "evaluated": evaluated}, indent=1))


def _stderr(message: str) -> None:
    """A progress line on stderr."""
    import sys

    print(message, file=sys.stderr, flush=True)
