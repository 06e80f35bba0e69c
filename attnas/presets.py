"""Paper hyper-parameters, one preset per method.

Every literal a method's paper fixes lives here, with its source; the
strategies read them from their config dataclass, and users override any
field with ``--config FILE`` (``method_options``) or ``--epochs`` /
``--batch-size``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from attnas.errors import ConfigError


@dataclass(frozen=True)
class WeightOptim:
    """SGD with a cosine schedule, as DARTS trains supernet weights (Liu et al. 2019, Sec. 3.1.1)."""

    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0


@dataclass(frozen=True)
class DartsPreset:
    """DARTS search (Liu et al., ICLR 2019, Sec. 3.1.1): 50 epochs, batch 64, Adam 3e-4 for alpha."""

    epochs: int = 50
    batch_size: int = 64
    weights: WeightOptim = field(default_factory=WeightOptim)
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    order: int = 1            # 1: first-order approximation, 2: unrolled (Eq. 7-8)
    unrolled_eps: float = 0.01  # finite-difference epsilon numerator (Eq. 8: eps = 0.01 / ||grad||)
    train_portion: float = 0.5  # half of the training set for w, half for alpha


@dataclass(frozen=True)
class RandomPreset:
    """Random search with weight sharing (Li & Talwalkar, UAI 2019): a uniformly sampled
    architecture trains the supernet each step; afterwards ``num_samples`` random
    architectures are scored on the validation split with inherited weights."""

    epochs: int = 50
    batch_size: int = 64
    weights: WeightOptim = field(default_factory=WeightOptim)
    num_samples: int = 100
    eval_batches: int = 10
    train_portion: float = 0.5


@dataclass(frozen=True)
class RetrainPreset:
    """DARTS evaluation training (Liu et al. 2019, Sec. 3.2): 600 epochs, batch 96, SGD 0.025,
    cosine, weight decay 3e-4, auxiliary weight 0.4, drop-path 0.2, cutout 16, grad clip 5."""

    epochs: int = 600
    batch_size: int = 96
    weights: WeightOptim = field(default_factory=lambda: WeightOptim(lr=0.025, lr_min=0.0,
                                                                     weight_decay=3e-4))
    auxiliary_weight: float = 0.4
    drop_path: float = 0.2
    cutout: int = 16


PRESETS: dict[str, Any] = {
    "darts": DartsPreset(),
    "darts-2nd": DartsPreset(order=2),
    "random": RandomPreset(),
    "retrain": RetrainPreset(),
}


def get_preset(method: str) -> Any:
    try:
        return PRESETS[method]
    except KeyError:
        raise ConfigError(f"unknown method '{method}'; expected one of {sorted(PRESETS)}") from None


def override(preset: Any, options: dict[str, Any]) -> Any:
    """``preset`` with fields replaced from ``options`` (nested dataclasses take dicts)."""
    known = {f.name: f for f in fields(preset)}
    changes = {}
    for key, value in options.items():
        if key not in known:
            raise ConfigError(f"unknown option '{key}' for {type(preset).__name__}; "
                              f"expected one of {sorted(known)}")
        current = getattr(preset, key)
        if hasattr(current, "__dataclass_fields__") and isinstance(value, dict):
            value = override(current, value)
        elif isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        changes[key] = value
    return replace(preset, **changes)


def to_dict(obj: Any) -> Any:
    """A preset as plain JSON-able data."""
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj
