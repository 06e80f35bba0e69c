"""``attnas`` command line: one sub-command per module in :data:`COMMAND_MODULES`.

A command module defines ``register(subparsers)``, which adds its parser and
sets ``func`` to a callable ``run(args) -> dict``.  The returned dict is the
command's result: with ``--json`` it is printed as one JSON object on the last
line of the output.  Any :class:`attnas.errors.AttnasError` becomes a one-line
``attnas: error: ...`` message and exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from attnas.errors import AttnasError
from attnas.jsonio import dumps as json_dumps

COMMAND_MODULES = [
    "attnas.cli.search",
    "attnas.cli.train",
    "attnas.cli.evolve",
    "attnas.cli.query",
    "attnas.cli.show",
    "attnas.cli.predict",
    "attnas.cli.guided",
    "attnas.cli.analyze",
    "attnas.cli.teacher",
    "attnas.cli.export",
    "attnas.cli.report",
    "attnas.cli.profile",
    "attnas.cli.sweep",
    "attnas.cli.leaderboard",
    "attnas.cli.data",
]


class UsageError(AttnasError):
    """A command line argparse rejects (unknown flag, a value of the wrong type, ...)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line, ``attnas: error: ...`` (exit status 2, via :func:`main`),
    instead of a usage block; sub-command parsers inherit the class."""

    def error(self, message: str):  # type: ignore[override]
        cmd = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        where = f"{cmd}: " if cmd else ""
        raise UsageError(f"{where}{' '.join(message.split())} (see: {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="attnas", description="Attention-driven neural architecture search.",
        epilog="'attnas search' with no options runs the embedded default (IT-NAS on digits); "
               "'attnas COMMAND --help' describes a command.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # command not built yet
                continue
            raise
        mod.register(sub)
    return parser


def add_json_flag(p: argparse.ArgumentParser) -> None:
    """The ``--json`` flag every result-printing command takes."""
    p.add_argument("--json", action="store_true",
                   help="print the result as one JSON object on the last line")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:  # no command: help on stderr, exit 2 (the embedded default job is 'attnas search')
        parser.print_help(sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):  # e.g. 'attnas analyze' without its analysis
            raise UsageError(f"'{' '.join(argv)}' needs a sub-command (see: attnas {' '.join(argv)} --help)")
        result = args.func(args)
    except AttnasError as e:
        message = " ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())  # always one line
        print(f"attnas: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnas: interrupted", file=sys.stderr)
        return 130
    if getattr(args, "json", False) and result is not None:
        print(json_dumps(result))  # strict JSON: non-finite floats are null
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
