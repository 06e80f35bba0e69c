"""Where attnas finds dataset and benchmark files.

The data folder is laid out like the project's ``shared/data`` folder::

    DATA_DIR/nasbench201/nasbench201_cifar10.json
    DATA_DIR/nasbench_macro/nas-bench-macro_cifar10.json
    DATA_DIR/cifar10/cifar10_jpg_yoongikim.zip
    ...

It is given by ``--data-dir`` or the environment variable ``ATTNAS_DATA_DIR``;
nothing is hard-coded.
"""
from __future__ import annotations

import os
from pathlib import Path

from attnas.errors import DataFileNotFound

ENV_VAR = "ATTNAS_DATA_DIR"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The data folder: the explicit argument, else ``$ATTNAS_DATA_DIR``, else None."""
    if data_dir:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else None


def folder_candidates(option: str, data_dir: str | os.PathLike | None) -> list[Path]:
    """Where a dataset folder named ``option`` may be: the path itself, and for a relative path
    the same path inside the data folder."""
    path = Path(option).expanduser()
    root = resolve_data_dir(data_dir)
    return [path] + ([root / path] if not path.is_absolute() and root is not None else [])


def check_data_dir(data_dir: str | os.PathLike | None, flag: str = "--data-dir") -> None:
    """A data folder given explicitly must exist: a one-line :class:`DataFileNotFound` instead of
    benchmark look-ups that are silently left out (``$ATTNAS_DATA_DIR`` is not checked here)."""
    if data_dir is None or str(data_dir) == "":
        return
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise DataFileNotFound(f"data folder '{data_dir}' given by {flag} {what}")


def require_file(relative: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                 what: str = "data file") -> Path:
    """Return ``DATA_DIR/relative`` or raise a one-line error naming both.

    ``relative`` may be a tuple of alternatives joined by ``|``; the first that
    exists is returned.
    """
    root = resolve_data_dir(data_dir)
    candidates = str(relative).split("|")
    if root is None:
        raise DataFileNotFound(
            f"{what} '{candidates[0]}' needs a data folder: pass --data-dir PATH "
            f"or set {ENV_VAR} (looked in: nothing given)")
    for rel in candidates:
        path = root / rel
        if path.exists():
            return path
    raise DataFileNotFound(
        f"{what} not found: expected '{candidates[0]}' under data folder '{root}' "
        f"(looked for {', '.join(str(root / c) for c in candidates)})")


def absolute_data_dir(data_dir: str | os.PathLike | None) -> str | None:
    """``data_dir`` made absolute (``~`` expanded) against the current directory, for a new run's
    ``config.json``: a resume from another working directory then reads the same folder.
    None stays None (``$ATTNAS_DATA_DIR`` is read when the data is loaded)."""
    if data_dir is None or str(data_dir) == "":
        return None if data_dir is None else str(data_dir)
    return str(Path(data_dir).expanduser().absolute())


def absolute_dataset(dataset: str | None) -> str | None:
    """``imagefolder:PATH`` with a relative PATH that exists under the current directory made
    absolute (same reason as :func:`absolute_data_dir`); other names unchanged (a relative PATH
    that does not exist here is looked up under the data folder when loading)."""
    if not isinstance(dataset, str) or not dataset.startswith("imagefolder:"):
        return dataset
    path = Path(dataset.partition(":")[2]).expanduser()
    if path.is_absolute() or not path.exists():
        return dataset
    return f"imagefolder:{path.absolute()}"
