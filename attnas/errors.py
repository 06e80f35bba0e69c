"""Errors that attnas raises for bad user input.

Every error a user can trigger with a flag, a file or a config is an
:class:`AttnasError`: the CLI prints its message on one line and exits with
status 2 instead of showing a traceback.
"""
from __future__ import annotations


class AttnasError(Exception):
    """Base class: a problem with the user's input, reported on one line."""


class ConfigError(AttnasError):
    """An unknown space, method, option or an invalid value."""


class ArchitectureError(AttnasError):
    """A malformed or invalid architecture (unknown op, missing edge, ...)."""


class DataFileNotFound(AttnasError):
    """A dataset or benchmark file is not where attnas looked for it."""


class ShapeError(AttnasError):
    """Input data whose shape a space or model cannot take."""
