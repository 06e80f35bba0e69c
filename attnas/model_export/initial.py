"""Initial weights of a retraining: ``attnas train --init-from RUN_OR_WEIGHTS``.

TrioNet fine-tunes the searched sub-network from the weights it has in the supernet (Appendix A,
small datasets).  The source is one of

* a search run folder -- the architecture's path of its supernet, materialised exactly as
  ``attnas export --from-run`` does (:func:`attnas.model_export.load.load_network`: weights
  copied from ``checkpoint.pt``, batch-norm statistics recomputed on the run's training split),
  with the supernet's layout: the retraining takes the run's space options and the supernet's
  network options (width, depth, no auxiliary head);
* a training run folder -- its ``weights.pt`` (else its last checkpoint), with its options;
* a weights file -- a state dict (``weights.pt``, ``subnet.pt`` of ``attnas evolve
  --export``) or a training checkpoint; a search run's ``checkpoint.pt`` stands for its folder.

Every file is read by :func:`attnas.training.checkpoint.safe_torch_load` (tensors and plain data
only, never code).  The weights must fit the network exactly: a parameter or buffer whose shape
differs, or that one side lacks, is a :class:`ConfigError` naming them -- nothing is skipped, so
a fine-tuned network never silently mixes inherited and fresh weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from attnas.errors import ConfigError
from attnas.model_export.load import load_network, load_weights_file, run_kind
from attnas.run_dir import CHECKPOINT, CONFIG

#: names listed per kind of mismatch in the error
SHOWN = 3


@dataclass
class InitialWeights:
    """The state dict a retraining starts from, and what it fixes of the network."""

    state: dict[str, torch.Tensor]
    weights: str                                   # inherited | retrained | file
    source: str
    #: the space / network options the weights were made for (None: a weights file, which fixes none)
    space_options: dict[str, Any] | None = None
    network_options: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """What ``config.json`` records about it."""
        return {"source": self.source, "weights": self.weights, "notes": list(self.notes)}


def _run_folder_of(path: Path) -> Path | None:
    """The run folder ``path`` stands for: itself, or the folder of a search run's checkpoint."""
    if path.is_dir():
        return path
    if path.name == CHECKPOINT and (path.parent / CONFIG).is_file() and run_kind(path.parent) == "search":
        return path.parent
    return None


def initial_weights(source: str, arch_spec: str, space_options: dict[str, Any] | None = None,
                    network_options: dict[str, Any] | None = None) -> InitialWeights:
    """The weights ``source`` (module docstring) holds for the architecture ``arch_spec``;
    ``space_options`` / ``network_options``: the user's (None: not given)."""
    path = Path(source)
    try:
        exists = path.exists()
    except OSError:
        exists = False
    if not exists:
        raise ConfigError(f"--init-from '{source}' does not exist (expected a search or training run folder, "
                          "or a weights file)")
    run = _run_folder_of(path)
    if run is None:
        return InitialWeights(load_weights_file(path), "file", str(path))
    loaded = load_network(arch_spec, from_run=str(run), space_options=space_options,
                          network_options=network_options)
    state = {k: v.detach().clone() for k, v in loaded.network.state_dict().items()}
    return InitialWeights(state, loaded.weights, str(run), dict(loaded.space_options),
                          dict(loaded.network_options), list(loaded.notes))


def _listed(names: list[str]) -> str:
    more = f" (+{len(names) - SHOWN} more)" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def load_initial_weights(network: nn.Module, init: InitialWeights) -> None:
    """Copy ``init.state`` into ``network``; a ConfigError if any tensor does not fit."""
    own = network.state_dict()
    missing = [k for k in own if k not in init.state]
    unexpected = [k for k in init.state if k not in own]
    misshaped = [f"{k} {tuple(init.state[k].shape)} there, {tuple(v.shape)} here" for k, v in own.items()
                 if k in init.state and init.state[k].shape != v.shape]
    problems = [f"{label}: {_listed(names)}" for label, names in
                (("shapes differ", misshaped), ("not in the weights", missing), ("not in the network", unexpected))
                if names]
    if problems:
        raise ConfigError(f"the weights of --init-from '{init.source}' do not fit the network built for this "
                          f"architecture (other space or network options, or data of other channels, size or "
                          f"classes?): {'; '.join(problems)}")
    network.load_state_dict(init.state)
