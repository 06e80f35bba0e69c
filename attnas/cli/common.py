"""Helpers shared by the command modules: tables in the terminal and common flags."""
from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from typing import Any, Sequence

from attnas.run_dir import ARCHITECTURE, SCORES


def add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="digits (default, embedded), cifar10, cifar100, svhn, "
                                     "imagefolder:PATH, synthetic")
    p.add_argument("--data-dir", help="folder with datasets and benchmark tables "
                                      "(default: $ATTNAS_DATA_DIR)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--config", help="JSON or YAML file with any of the run's options")
    p.add_argument("--train-subset", type=int, help="use a class-balanced subset of N training images")
    p.add_argument("--test-subset", type=int, help="use a class-balanced subset of N test images")
    p.add_argument("--image-size", type=int, help="resize images to this side length")
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--stop-after", type=int, metavar="N",
                   help="stop after N epochs in this invocation (continue later with --resume)")
    p.add_argument("--workers", type=int, metavar="N", action=_WorkersAction, default=argparse.SUPPRESS,
                   help="DataLoader worker processes that decode and augment a streamed dataset "
                        "(imagefolder with 50,000+ images, stream:..., shards:PATH); default: the cores "
                        "but one, at most 8 (also $ATTNAS_WORKERS); the results do not depend on it")


class _WorkersAction(argparse.Action):
    """``--workers N`` sets ``$ATTNAS_WORKERS`` (read by :mod:`attnas.data.stream`); it is not a
    run option (the batches do not depend on it), so it is not stored in the run's config."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        import os

        if values < 0:
            parser.error(f"--workers must be a non-negative integer, got {values}")
        os.environ["ATTNAS_WORKERS"] = str(values)


def add_tensorboard_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tensorboard", action="store_true",
                   help="also log every epoch's metrics to RUN_DIR/tensorboard "
                        "(needs the tensorboard package: pip install 'attnas[tensorboard]')")
    p.add_argument("--checkpoint-every", type=int, metavar="STEPS", default=None,
                   help="also checkpoint after every STEPS training steps inside an epoch, so that a killed "
                        "run resumes at that step (default 0: at the end of every epoch only; with --resume: "
                        "changes the run's recorded value)")


def is_main_process() -> bool:
    """False on the ranks > 0 of a torchrun launch (they neither print nor return a result)."""
    from attnas import distributed
    return distributed.is_main()


def refuse_with_resume(args: argparse.Namespace, names: Sequence[str]) -> None:
    """``--resume RUN_DIR`` continues a run with the settings its config.json recorded: any of the
    options ``names`` given with it would be ignored, so it is a one-line error naming the option."""
    if not getattr(args, "resume", None):
        return
    from attnas.errors import ConfigError

    for name in names:
        if getattr(args, name, None) not in (None, False):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} cannot be given with --resume: a resumed run keeps the settings its "
                              f"config.json recorded (start a new run with --out to change them)")


def parse_json_option(text: str | None, flag: str) -> dict[str, Any] | None:
    """``--space-options '{"C": 8}'`` style flags."""
    if text is None:
        return None
    from attnas.errors import ConfigError
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{flag} must be a JSON object, e.g. '{{\"C\": 8}}': {e}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} must be a JSON object, e.g. '{{\"C\": 8}}'")
    return value


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".4f") -> str:
    """A plain-text table with aligned columns."""
    def fmt(v: Any) -> str:
        return format(v, floatfmt) if isinstance(v, float) else str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
              for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join([line.rstrip(), sep, *body])


def architecture_cell(arch: str | dict[str, str], where: str = ARCHITECTURE, width: int = 110) -> str:
    """An architecture for a terminal table.  A native string (NAS-Bench-201's, a DARTS genotype)
    is shown whole: it is what a researcher copies.  Choices without one are shown as JSON where
    that fits in ``width`` characters; else as how often each operation was chosen, most frequent
    first, as many as fit (the first always), and the file ``where`` that holds them all (a NOS
    cell has 36 choice points, a TrioNet network 14-16 layers of long candidate names)."""
    if isinstance(arch, str):
        return arch
    text = json.dumps(arch)
    if len(text) <= width:
        return text
    def others(n: int) -> str:
        return f", +{n} other operation{'s' if n > 1 else ''}" if n else ""

    ranked = Counter(map(str, arch.values())).most_common()  # ties keep the first-chosen order
    head, tail = f"{len(arch)} choices: ", f" (all in {where})"
    shown: list[str] = []
    for op, n in ranked:
        item = f"{op} x{n}"
        rest = others(len(ranked) - len(shown) - 1)
        if shown and len(head) + len(", ".join(shown + [item])) + len(rest) + len(tail) > width:
            break
        shown.append(item)
    return head + ", ".join(shown) + others(len(ranked) - len(shown)) + tail


def scores_table(candidates: dict[str, list[str]], scores: dict[str, list[float]],
                 chosen: dict[str, str] | None = None, label: str = "candidate strengths",
                 top: int = 5, full: int = 12, where: str = SCORES) -> str:
    """Per-choice-point scores of the candidates, headed by ``label`` (what the numbers are:
    strengths, softmax(alpha), sampling frequencies, ...); '*' marks the candidate the derived
    architecture ``chosen`` took there (not necessarily the largest number: single-path methods
    choose by evolution, and a cell rule may pick per node).  A choice point whose chosen
    operation is not among the scored candidates (an edge left out) gets a note instead.

    A choice point with at most ``full`` candidates (NAS-Bench-201's 5, DARTS's 8, NOS's 11) shows
    them all, in the space's order; one with more (TrioNet's layers have 72) shows its ``top``
    highest scores, largest first, plus the chosen one where it is not among them, and says how
    many more are in ``where``: a row stays readable in a terminal."""
    top = max(top, 1)
    rows = []
    for key, cands in candidates.items():
        s = scores.get(key, [])
        pick = chosen.get(key) if chosen else None
        pairs = list(zip(cands, s))
        scored = dict(pairs)
        shown = pairs
        if len(pairs) > max(full, top):
            # largest first, NaN last; the sort is stable: ties keep the space's order
            shown = sorted(pairs, key=lambda cv: (math.isnan(cv[1]), -cv[1]))[:top]
            if pick in scored and pick not in dict(shown):
                shown.append((pick, scored[pick]))
        cells = [f"{c}={v:.3f}{'*' if pick == c else ' '}" for c, v in shown]
        if len(shown) < len(pairs):
            cells.append(f"(+{len(pairs) - len(shown)} more in {where})")
        if pick is not None and pick not in scored:   # an edge left out, or a candidate without a score
            cells.append(f"(chosen: {pick})")
        rows.append([key, "  ".join(cells)])
    return table(["choice point", f"{label} (* = chosen)"], rows)


def margins_table(margins: dict[str, dict[str, Any]]) -> str:
    """IT-NAS selection margins: winner, runner-up, margin +- bootstrap std, share of resamples won."""
    rows = [[key, m["top1"], m["top2"], f"{m['margin']:.4f} ± {m['margin_std']:.4f}",
             f"{100 * m['win_rate']:.0f}%", f"{m.get('epoch_agreement', 1.0) * m.get('epochs_compared', 0):.0f}"
             f"/{m.get('epochs_compared', 0)}", "yes" if m["separated"] else "NO"]
            for key, m in margins.items()]
    return table(["choice point", "chosen (Eq. 6)", "runner-up", "margin ± bootstrap std", "bootstrap wins",
                  "same winner, last epochs", "separated"], rows)


def margin_warnings(margins: dict[str, dict[str, Any]]) -> list[str]:
    """One warning line per choice point whose winner is not separated from the runner-up."""
    return [f"attnas: warning: {key}: '{m['top1']}' is not separated from '{m['top2']}' "
            f"(margin {m['margin']:.4f} ± {m['margin_std']:.4f}; it wins {100 * m['win_rate']:.0f}% "
            f"of the bootstrap resamples of {m['batches']} validation batches and was the winner in "
            f"{m.get('epoch_agreement', 1.0) * m.get('epochs_compared', 0):.0f} of the last "
            f"{m.get('epochs_compared', 0)} epochs)"
            for key, m in margins.items() if not m["separated"]]
