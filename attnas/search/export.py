"""Export a derived architecture with the weights it inherits from the supernet.

A space's stand-alone network (``build_network``) has the module tree of its
supernet (``build_supernet``) with every ChoiceBlock replaced by the chosen
candidate, so the weights map by name: ``<block path>.ops.<j>.<rest>`` in the supernet is
``<block path>.<rest>`` in the network, j the index of the chosen candidate.
Batch-norm running statistics are copied too, so after a BN recalibration of
the routed supernet (:func:`attnas.search.evolution.recalibrate_bn`) the
exported network computes exactly what the supernet computes on that path.
Cell spaces whose stand-alone network has affine batch norms where the
supernet's are affine-free (DARTS, NAS-Bench-201) get identity scale and shift
there (:func:`inherit_path`); any other missing or mis-shaped weight is an error.
"""
from __future__ import annotations

import inspect
from typing import Any, Iterable

import torch
import torch.nn as nn

from attnas.arch import Architecture
from attnas.errors import ArchitectureError
from attnas.spaces.base import ChoiceBlock, SearchSpace


def supernet_key_map(supernet: nn.Module, arch: Architecture, network: nn.Module) -> dict[str, str]:
    """``network`` state-dict key -> the supernet key it inherits from."""
    blocks = {name: m for name, m in supernet.named_modules() if isinstance(m, ChoiceBlock)}
    out = {}
    for key in network.state_dict():
        parts = key.split(".")
        mapped = key
        for cut in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:cut])
            block = blocks.get(prefix)
            if block is not None:
                op = arch.choices.get(block.point.key)
                if op is None or op not in block.point.candidates:
                    raise ArchitectureError(f"architecture has no valid choice for '{block.point.key}'")
                idx = block.point.candidates.index(op)
                mapped = ".".join([prefix, "ops", str(idx)] + parts[cut:])
                break
        out[key] = mapped
    return out


def inherit_weights(supernet: nn.Module, arch: Architecture, network: nn.Module) -> nn.Module:
    """Copy the weights (and BN statistics) of ``arch``'s path of ``supernet`` into ``network``."""
    src = supernet.state_dict()
    mapping = supernet_key_map(supernet, arch, network)
    state = {}
    for key, value in network.state_dict().items():
        skey = mapping[key]
        if skey not in src:
            raise ArchitectureError(f"cannot inherit '{key}': the supernet has no '{skey}' "
                                    "(the network's layout differs from the supernet's)")
        if src[skey].shape != value.shape:
            raise ArchitectureError(f"cannot inherit '{key}': shape {tuple(value.shape)} in the network, "
                                    f"{tuple(src[skey].shape)} in the supernet")
        state[key] = src[skey].detach().clone()
    network.load_state_dict(state, strict=True)
    return network


def _is_bn_affine_or_stat(network: nn.Module, key: str) -> bool:
    mod_name, _, leaf = key.rpartition(".")
    mod = network.get_submodule(mod_name) if mod_name else network
    return isinstance(mod, nn.modules.batchnorm._BatchNorm) and leaf in (
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def inherit_path(space: SearchSpace, supernet: nn.Module, arch: Architecture, network: nn.Module) -> list[str]:
    """Copy ``arch``'s path of ``supernet`` into ``network`` (the space's own mapping when it
    has one, e.g. TrioNet's sliced weights).  Batch-norm parameters and statistics the
    affine-free supernet lacks keep their identity initialisation; returns those keys.
    Anything else missing or mis-shaped raises :class:`ArchitectureError`."""
    net_module = getattr(supernet, "net", supernet)
    own = getattr(space, "inherit_weights", None)
    if own is not None:
        own(net_module, arch, network)
        return []
    if not any(isinstance(m, ChoiceBlock) for m in net_module.modules()):
        raise ArchitectureError(f"this supernet ({type(net_module).__name__}) has no per-choice-point candidate "
                                "weights (EnTranNAS: operations shared by all edges of a source node, on a C/4 "
                                "bottleneck)")
    mapping = supernet_key_map(net_module, arch, network)
    src = net_module.state_dict()
    state, identity = {}, []
    for key, value in network.state_dict().items():
        skey = mapping[key]
        if skey in src and src[skey].shape == value.shape:
            state[key] = src[skey].detach().clone()
        elif skey not in src and _is_bn_affine_or_stat(network, key):
            state[key] = value  # identity scale / shift, default statistics (recomputed later)
            identity.append(key)
        elif skey in src:
            raise ArchitectureError(f"'{key}' has shape {tuple(value.shape)} in the network, "
                                    f"{tuple(src[skey].shape)} in the supernet")
        else:
            raise ArchitectureError(f"the supernet has no '{skey}' for the network's '{key}' (its layout differs)")
    network.load_state_dict(state, strict=True)
    return identity


def supernet_network_options(space: SearchSpace, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """Network options (``given`` completed) that give the stand-alone network the supernet's
    layout: the space's ``C`` and ``layers`` where ``build_network`` takes them (DARTS evaluates
    20 cells of C=36 by default, its supernet has the space's 8 of C=16), no auxiliary head, and
    the supernet's CIFAR stem whatever the image size (no ImageNet stem)."""
    opts = dict(given or {})
    params = inspect.signature(space.build_network).parameters
    for name in ("C", "layers"):
        if name not in opts and name in params and hasattr(space, name):
            opts[name] = getattr(space, name)
    for name in ("auxiliary", "imagenet"):
        if name not in opts and name in params:
            opts[name] = False
    return opts


def export_subnet(space: SearchSpace, supernet: nn.Module, arch: Architecture, num_classes: int,
                  in_channels: int, image_size: int,
                  bn_batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
                  network_options: dict[str, Any] | None = None) -> nn.Module:
    """The stand-alone network of ``arch`` with inherited weights; with ``bn_batches`` its
    BN statistics are then recomputed on them.  ``supernet`` is the SuperNet's ``net``
    (a :class:`attnas.strategies.base.SuperNet` is unwrapped); the network has the
    supernet's layout (:func:`supernet_network_options`, ``network_options`` added)."""
    from attnas.search.evolution import recalibrate_bn

    net_module = getattr(supernet, "net", supernet)
    device = next((p.device for p in net_module.parameters()), torch.device("cpu"))
    network = space.build_network(arch, num_classes, in_channels, image_size,
                                  **supernet_network_options(space, network_options)).to(device)
    inherit_path(space, net_module, arch, network)
    if bn_batches is not None:
        recalibrate_bn(network, bn_batches)
    network.eval()
    return network
