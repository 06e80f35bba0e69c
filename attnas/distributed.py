"""Data-parallel training under ``torchrun`` (Gloo on CPU, NCCL on GPU).

Launched with ``torchrun --nproc_per_node N -m attnas.cli.main search|train ...``
(``WORLD_SIZE`` > 1 in the environment), ``attnas search`` and ``attnas train``
run one process per device, all with the same model, optimizer and strategy
state.  Without torchrun every function here is a no-op, so a single process
computes exactly what it computed before.

Design (why not ``DistributedDataParallel``): a supernet leaves many
parameters unused in a step (single-path sampling, frozen alphas in a DARTS
weight step, the second-order DARTS step that sets ``alpha.grad`` by hand),
which DDP's bucketed reducer handles only with ``find_unused_parameters`` and
one backward per step.  Instead, gradients are averaged explicitly:

* :func:`sync_grads` all-reduces (averages) the ``.grad`` of the given
  parameters in one flat buffer.  The strategies call it right after their
  backward pass and before gradient clipping, so clipping sees the gradient
  of the global batch.
* :func:`attach` adds a step pre-hook to every optimizer of a task that
  averages whatever gradients of its parameters were not synced yet
  (architecture parameters, IT-NAS indicator transformers -- part of
  ``model.net`` --, EnTranNAS-DST thresholds, any strategy that never calls
  :func:`sync_grads`), and a post-hook that forgets them again.  So every
  trainable parameter is updated with identical gradients on every process.
  A parameter without a gradient on every process keeps ``grad = None``
  (SGD then leaves it alone, as single-path training needs).

Data: every process builds the same global batch (same order, same
augmentation draws, as in a single-process run) and keeps its contiguous
slice (:func:`shard`); the gradients are averaged weighted by slice size, so
the update is that of the global batch -- up to batch normalisation, whose
batch statistics are per process (no SyncBatchNorm: the search supernets
normalise with batch statistics only, and running statistics of retrained
networks are averaged over processes at the end of every epoch by
:func:`average_buffers`).  Evaluation passes split whole batches round-robin
over the processes (:func:`shard_batches`) and sum the counts, so they equal
the single-process numbers.

Candidate evaluation (the evolutionary search): every process holds the same model and data, so
:func:`map_items` hands each process every world_size-th candidate and gathers
the scores everywhere; all processes then take the same next step.

Single-path sampling: every process seeds the strategy's RNG with the same
seed, so all draw the same path each step; the engine checks after every
epoch that the whole task state (model, optimizers, strategy RNG) hashes the
same on every process (:func:`check_same`) and stops with an error otherwise.
Only rank 0 writes files and prints.
"""
from __future__ import annotations

import atexit
import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.distributed as dist

from attnas.errors import AttnasError, ConfigError
from attnas.jsonio import dumps as json_dumps

#: environment variable: a folder where every rank writes ``<kind>-rank<r>.json``
#: (hashes of its final state) at the end of a search or training (tests)
DEBUG_DUMP_ENV = "ATTNAS_DEBUG_DUMP"


class _State:
    device: torch.device = torch.device("cpu")  # where collectives run (cuda for NCCL)
    shard_weight: float = 1.0                   # (local samples * world) / global samples
    synced: set[int] = set()                    # ids of parameters whose grad is averaged


_state = _State()


def requested() -> bool:
    """True when launched by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def init(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun (Gloo on CPU, NCCL on CUDA);
    return the device this process uses (``cuda:LOCAL_RANK`` for a CUDA run)."""
    if not requested():
        return device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not is_distributed():
        if not dist.is_available():
            raise ConfigError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
        backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "gloo" and not dist.is_gloo_available():
            raise ConfigError("distributed CPU training needs the Gloo backend, not in this PyTorch build")
        dist.init_process_group(backend=backend)
        atexit.register(_shutdown)
    _state.device = device if device.type == "cuda" else torch.device("cpu")
    return device


def _shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ----- data -------------------------------------------------------------------------
def shard(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """This process's contiguous slice of a global batch (every tensor split the same
    way); records the slice's share for :func:`sync_grads`.  Single process: unchanged."""
    if not is_distributed():
        return tensors
    w, r = world_size(), rank()
    pre = getattr(tensors[0], "attnas_slice", None)
    if pre is not None:  # streamed data: the images are already this process's slice (attnas.data.stream)
        lo, hi, n, _ = pre
        _state.shard_weight = (hi - lo) * w / n
        return local_pair(*tensors)
    n = len(tensors[0])
    if n < w:
        raise ConfigError(f"a batch of {n} images cannot be split over {w} processes; "
                          f"use a --batch-size of at least {w}")
    lo, hi = r * n // w, (r + 1) * n // w
    _state.shard_weight = (hi - lo) * w / n
    return tuple(t[lo:hi] for t in tensors)


def local_pair(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``tensors`` made consistent when the first is a streamed batch that holds only this
    process's slice (:class:`attnas.data.stream.LocalSlice`): the others are cut to the same
    samples.  Unlike :func:`shard` it leaves whole batches whole and does not touch the gradient
    weight (passes that train nothing: BN recalibration, selection)."""
    pre = getattr(tensors[0], "attnas_slice", None)
    if pre is None:
        return tensors
    return (tensors[0].as_subclass(torch.Tensor),) + tuple(slice_rows(t, pre) for t in tensors[1:])


def slice_rows(t: torch.Tensor, part: tuple[int, int, int, tuple[int, ...] | None]) -> torch.Tensor:
    """The rows of a whole-global-batch tensor ``t`` that a process's streamed slice ``part``
    (``attnas_slice``: ``lo, hi, n, keep``) holds: ``t[lo:hi]``, then the decoded ones."""
    lo, hi, _, keep = part
    return t[lo:hi] if keep is None else t[lo:hi][list(keep)]


def shard_batches(batches: Iterable[Any]) -> Iterator[Any]:
    """Whole batches round-robin over the processes (evaluation passes)."""
    if not is_distributed():
        yield from batches
        return
    w, r = world_size(), rank()
    for i, b in enumerate(batches):
        if i % w == r:
            yield b


def map_items(fn: Callable[[Any], Any], items: Sequence[Any]) -> tuple[list[Any], list[int]]:
    """``[fn(x) for x in items]`` with the items split round-robin over the processes
    (candidate evaluation: every process holds the same model and data, each scores
    its share); the results are gathered on every process in the order of ``items``.
    Also returns how many items each process computed.  Single process: a plain map."""
    items = list(items)
    if not is_distributed():
        return [fn(x) for x in items], [len(items)]
    w, r = world_size(), rank()
    mine = {i: fn(items[i]) for i in range(r, len(items), w)}
    gathered: list[Any] = [None] * w
    dist.all_gather_object(gathered, mine)
    merged: dict[int, Any] = {}
    for part in gathered:
        merged.update(part)
    return [merged[i] for i in range(len(items))], [len(part) for part in gathered]


def sum_values(values: Sequence[float]) -> list[float]:
    """Elementwise sum of ``values`` over the processes (float64)."""
    if not is_distributed():
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=_state.device)
    dist.all_reduce(t)
    return t.tolist()


def average_dict(d: dict[str, float]) -> dict[str, float]:
    """Per-key mean of ``d`` over the processes (every process has the same keys)."""
    if not is_distributed() or not d:
        return d
    keys = sorted(d)
    total = sum_values([float(d[k]) for k in keys])
    return {**d, **{k: v / world_size() for k, v in zip(keys, total)}}


# ----- gradients --------------------------------------------------------------------
def _all_reduce_mean(tensors: list[torch.Tensor]) -> None:
    """In place: each tensor := sum over processes of (shard weight * tensor) / world."""
    by_kind: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for t in tensors:
        by_kind.setdefault((t.dtype, t.device), []).append(t)
    w, sw = world_size(), _state.shard_weight
    for (_, device), group in by_kind.items():
        flat = torch.cat([t.reshape(-1) for t in group])
        if flat.device != _state.device:
            flat = flat.to(_state.device)
        if sw != 1.0:
            flat.mul_(sw)
        dist.all_reduce(flat)
        flat.div_(w)
        flat = flat.to(device)
        offset = 0
        for t in group:
            k = t.numel()
            t.copy_(flat[offset:offset + k].view_as(t))
            offset += k


def average_tensors(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Gradients computed by ``torch.autograd.grad`` averaged over the processes (in place)."""
    if is_distributed() and tensors:
        _all_reduce_mean(list(tensors))
    return tensors


def mark_synced(params: Iterable[torch.nn.Parameter]) -> None:
    """Declare the gradients of ``params`` already averaged (set from averaged tensors)."""
    if is_distributed():
        _state.synced.update(id(p) for p in params)


def sync_grads(params: Iterable[torch.nn.Parameter]) -> None:
    """Average the ``.grad`` of ``params`` over the processes (weighted by shard size).
    Gradients already averaged since their optimizer's last step are left alone.
    Single process: no-op."""
    if not is_distributed():
        return
    seen: set[int] = set()
    todo = []
    for p in params:
        if id(p) in seen or id(p) in _state.synced or not p.requires_grad:
            continue
        seen.add(id(p))
        todo.append(p)
    if not todo:
        return
    has = torch.tensor([p.grad is not None for p in todo], dtype=torch.float32, device=_state.device)
    dist.all_reduce(has)
    chosen = []
    for p, h in zip(todo, has.tolist()):
        if h == 0:
            continue  # no gradient anywhere: stays None
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        chosen.append(p)
    if chosen:
        _all_reduce_mean([p.grad for p in chosen])
    _state.synced.update(id(p) for p in chosen)


def begin_step() -> None:
    """Forget which gradients were averaged (the tasks call it before every training step)."""
    _state.synced.clear()


def _params_of(opt: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
    return [p for g in opt.param_groups for p in g["params"]]


def _pre_step(opt, args, kwargs) -> None:
    sync_grads(_params_of(opt))


def _post_step(opt, args, kwargs) -> None:
    for p in _params_of(opt):
        _state.synced.discard(id(p))


def attach(optimizers: Iterable[Any]) -> None:
    """Average gradients before every step of these optimizers (others in the list are ignored)."""
    if not is_distributed():
        return
    for opt in optimizers:
        if isinstance(opt, torch.optim.Optimizer) and not getattr(opt, "_attnas_ddp", False):
            opt.register_step_pre_hook(_pre_step)
            opt.register_step_post_hook(_post_step)
            opt._attnas_ddp = True


@torch.no_grad()
def broadcast_module(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every process (start of a run)."""
    if not is_distributed():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        buf = t.data if t.device == _state.device else t.data.to(_state.device)
        dist.broadcast(buf, src=0)
        if buf is not t.data:
            t.data.copy_(buf)


@torch.no_grad()
def average_buffers(module: torch.nn.Module) -> None:
    """Average floating-point buffers (BN running statistics, recorded attention) over
    the processes; other buffers (counters) are taken from rank 0."""
    if not is_distributed():
        return
    floats = [b for b in module.buffers() if b.is_floating_point()]
    if floats:
        saved, _state.shard_weight = _state.shard_weight, 1.0
        try:
            _all_reduce_mean(floats)
        finally:
            _state.shard_weight = saved
    for b in module.buffers():
        if not b.is_floating_point():
            buf = b if b.device == _state.device else b.to(_state.device)
            dist.broadcast(buf, src=0)
            if buf is not b:
                b.copy_(buf)


# ----- consistency checks -------------------------------------------------------------
def state_hash(obj: Any) -> str:
    """A content hash of a (nested) state dict: tensors by value, everything else by repr."""
    h = hashlib.sha256()

    def walk(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(o, dict):
            h.update(b"{")
            for k in sorted(o, key=repr):
                h.update(repr(k).encode())
                walk(o[k])
            h.update(b"}")
        elif isinstance(o, (list, tuple)):
            h.update(b"[")
            for v in o:
                walk(v)
            h.update(b"]")
        else:
            h.update(repr(o).encode())

    walk(obj)
    return h.hexdigest()


def check_same(obj: Any, what: str) -> None:
    """Stop with an error when ``obj`` differs between processes."""
    if not is_distributed():
        return
    digests: list[Any] = [None] * world_size()
    dist.all_gather_object(digests, state_hash(obj))
    if len(set(digests)) > 1:
        raise AttnasError(f"distributed run diverged: {what} differs between processes "
                          f"(hashes {[d[:12] for d in digests]})")


def debug_dump(kind: str, model: torch.nn.Module, extra: dict[str, Any] | None = None) -> None:
    """With ``$ATTNAS_DEBUG_DUMP`` set, write ``<dir>/<kind>-rank<r>.json``: hashes of every
    parameter and buffer of ``model`` (and of ``extra``), for comparing processes."""
    folder = os.environ.get(DEBUG_DUMP_ENV)
    if not folder:
        return
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    rec = {"rank": rank(), "world_size": world_size(),
           "tensors": {k: state_hash(v) for k, v in state.items()},
           "all": state_hash(state)}
    arch = getattr(model, "arch", None)
    if isinstance(arch, torch.nn.Module):
        rec["arch"] = state_hash(arch.state_dict())
        rec["arch_params"] = {k: v.detach().cpu().reshape(-1).tolist() for k, v in arch.named_parameters()}
    for k, v in (extra or {}).items():
        rec[k] = state_hash(v)
    (out / f"{kind}-rank{rank()}.json").write_text(json_dumps(rec, indent=1))


def resolve_device(name: str) -> torch.device:
    """The device named by ``--device``: "auto" (CUDA when available), "cpu", "cuda[:N]"."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'; expected auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but no CUDA device is available")
    return dev
