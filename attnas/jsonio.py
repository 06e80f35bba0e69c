"""Strict JSON out: every JSON attnas writes or prints parses with any JSON parser.

Python's :func:`json.dumps` writes ``NaN``, ``Infinity`` and ``-Infinity`` for
non-finite floats, which are not JSON.  :func:`finite` replaces them (anywhere in
nested dicts, lists and tuples; numpy scalars and 0-d tensors included) by
``None`` (``null``), and :func:`dumps` then serialises with ``allow_nan=False``.

>>> dumps({"loss": float("nan"), "acc": [1.0, float("inf")]})
'{"loss": null, "acc": [1.0, null]}'
"""
from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (containers copied, not changed)."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    item = getattr(obj, "item", None)  # numpy scalars, 0-d numpy arrays and tensors
    if callable(item) and getattr(obj, "ndim", 0) == 0 and getattr(obj, "shape", ()) in ((), None):
        try:
            v = item()
        except (TypeError, ValueError, RuntimeError):
            return obj
        if isinstance(v, (bool, int, float, str)):
            return finite(v)
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """:func:`json.dumps` of :func:`finite` ``(obj)`` with ``allow_nan=False``; other objects
    are written as ``str(obj)`` unless ``default`` is given."""
    kwargs.setdefault("default", str)
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
