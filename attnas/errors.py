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


class CheckpointError(AttnasError):
    """A checkpoint or weights file that is unreadable, unsafe to load (it would run code
    when unpickled), not an attnas checkpoint, or of the other kind of run."""


class RunFolderError(AttnasError):
    """A run folder that is in use by another process (locked), not empty where a new run
    would overwrite it, or not a run of the expected kind."""


class TrainingDiverged(AttnasError):
    """A non-finite training loss (or non-finite weights): the run stops, its last good
    checkpoint is kept.  Like every AttnasError the CLI reports it on one line, exit 2."""
