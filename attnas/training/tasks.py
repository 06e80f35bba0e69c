"""The two tasks the engine runs: an architecture search and a retraining.

Under ``torchrun`` (:mod:`attnas.distributed`) every process builds the
same global batches and trains on its slice; evaluation splits whole batches
over the processes; floating-point buffers are averaged at the end of an epoch.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnas.data.augment import default_augment
from attnas.data.datasets import ImageData
from attnas.data.loader import make_batches, split_indices
from attnas.strategies.base import Strategy, SuperNet
from attnas.training.schedules import retrain_optimizer
from attnas.training.step import StepExecutor
from attnas import distributed


def _epoch_generator(seed: int, epoch: int, salt: int, position: Any = None) -> torch.Generator:
    """The generator of an epoch's random draws; ``position``: a state it had (resuming inside the epoch)."""
    gen = torch.Generator().manual_seed((seed * 7_919 + epoch * 104_729 + salt) % (2**63 - 1))
    if position is not None:
        gen.set_state(position)
    return gen


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, augment, device: torch.device) -> dict[str, float]:
    """Loss and accuracy of ``model`` over ``batches`` (normalisation only, eval mode).
    Distributed: each process evaluates every world_size-th batch; the sums are added up."""
    was_training = model.training
    model.eval()
    loss_sum, correct, total = 0.0, 0, 0
    for x, y in distributed.shard_batches(batches):
        x, y = augment(x.to(device), train=False), y.to(device)
        logits = model(x)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        total += len(y)
    model.train(was_training)
    if distributed.is_distributed():
        loss_sum, correct, total = distributed.sum_values([loss_sum, correct, total])
        correct, total = int(round(correct)), int(round(total))
    return {"loss": loss_sum / max(1, total), "acc": correct / max(1, total)}


class SearchTask:
    """Architecture search: executes the phases a strategy declares (:class:`Phase`).

    The training images are split into a weight split (``train_portion`` of the strategy) and
    an architecture/validation split.  Batches are built only for the splits the strategy's
    phases read: a single-level method (IT-NAS, SPOS, TrioNet, random) trains on every image
    of its weight split each epoch; a bi-level one (DARTS, NOS, EnTranNAS) pairs a weight
    batch with an architecture batch per step.  Each phase: zero the gradients of its
    optimizers, freeze every parameter it does not update, forward under autocast (per sampled
    path, gradients accumulated), backward, average the gradients over torchrun processes,
    clip, step.
    """

    def __init__(self, strategy: Strategy, model: SuperNet, data: ImageData, epochs: int,
                 batch_size: int, seed: int, device: torch.device,
                 on_epoch: Callable[[int, "SearchTask"], dict[str, Any]] | None = None,
                 amp: bool = False) -> None:
        from attnas.training.accel import Accelerator

        self.strategy, self.model, self.data = strategy, model.to(device), data
        self.seed, self.device, self.on_epoch = seed, device, on_epoch
        self.accel = Accelerator(self.model, device, amp)
        idx_w, idx_a = split_indices(len(data.train_y), strategy.train_portion, seed)
        self.splits = self.splits_read(strategy, epochs)
        self.split_batches = {
            "weights": make_batches(data, "train", idx_w, batch_size, True, seed, drop_last=True),
            "arch": make_batches(data, "train", idx_a, batch_size, True, seed + 1, drop_last=True)}
        self.valid_batches = make_batches(data, "train", idx_a, batch_size, False, seed)
        if any(len(self.split_batches[s]) == 0 for s in self.splits):
            from attnas.errors import ConfigError
            raise ConfigError(f"batch size {batch_size} is larger than each split of the "
                              f"{len(data.train_y)} training images; use a smaller --batch-size")
        self.augment = default_augment(data)
        self.opt = strategy.optimizers(model, self.steps_per_epoch(), epochs)
        self.executor = StepExecutor(strategy, self.model, self.opt, self.accel)
        self.last_arch = None
        if distributed.is_distributed():
            distributed.broadcast_module(self.model)
            distributed.attach(self.opt.values())

    @staticmethod
    def splits_read(strategy: Strategy, epochs: int) -> tuple[str, ...]:
        """The data splits the strategy's phases read over the run (weights first)."""
        read = {ph.split for e in range(max(1, epochs)) for ph in strategy.phases(e)}
        return tuple(s for s in ("weights", "arch") if s in read)

    @property
    def train_batches(self):
        """The weight split's batches."""
        return self.split_batches["weights"]

    def steps_per_epoch(self) -> int:
        return min(len(self.split_batches[s]) for s in self.splits)

    def _prep(self, batch, gen: torch.Generator):
        x, y = batch
        return self.augment(x.to(self.device), generator=gen), y.to(self.device)

    def batches(self, epoch: int, start: int = 0, position: Any = None):
        """The epoch's training steps from step ``start`` on (the engine's loop; ``position``: the
        augmentation generator's state at that step, from :meth:`position`)."""
        self._gen = _epoch_generator(self.seed, epoch, 1, position)
        return self._steps(epoch, True, start, self._gen)

    def position(self) -> torch.Tensor:
        """The augmentation generator's state in the engine's current epoch."""
        return self._gen.get_state()

    def _steps(self, epoch: int, shard: bool, start: int, gen: torch.Generator):
        """A dict split -> ``(x, y)`` per step, of the splits the phases read (augmented; under
        torchrun this process's slice of each global batch, or the whole global batches with
        ``shard=False``, e.g. for selection passes; a streamed training split decodes only this
        process's slice, so there ``shard=False`` gives that slice with its own labels)."""
        for batch in zip(*(self.split_batches[s].epoch_from(epoch, start) for s in self.splits)):
            step = {}
            for s, b in zip(self.splits, batch):
                b = self._prep(b, gen)
                step[s] = distributed.shard(*b) if shard and distributed.is_distributed() else distributed.local_pair(*b)
            yield step

    def weight_batches(self, epoch: int = 0, shard: bool = False):
        """The weight split's augmented batches of ``epoch`` (BN recalibration, training passes)."""
        return (b["weights"] for b in self._steps(epoch, shard, 0, _epoch_generator(self.seed, epoch, 1)))

    def train_step(self, batch: dict[str, Any], epoch: int, step: int) -> dict[str, float]:
        return self.executor(batch, epoch, step)

    def validation_batches(self):
        """Validation split batches, normalised, on the device (for selection passes)."""
        for x, y in self.valid_batches.epoch(0):
            yield self.augment(x.to(self.device), train=False), y.to(self.device)

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        distributed.average_buffers(self.model)
        lr = self.opt["weights"].param_groups[0]["lr"]  # the rate this epoch trained with (before the schedulers step)
        self.strategy.end_epoch(self.model, self.opt, epoch)
        rec: dict[str, Any] = {f"valid_{k}": v for k, v in
                               evaluate(self.model, self.valid_batches.epoch(0), self.augment,
                                        self.device).items()}
        rec["lr"] = lr
        if self.on_epoch is not None:
            rec.update(self.on_epoch(epoch, self))
        return rec

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(),
                "optim": {k: v.state_dict() for k, v in self.opt.items() if k != "schedulers"},
                "schedulers": [s.state_dict() for s in self.opt.get("schedulers", [])],
                "strategy": self.strategy.state_dict(), "accel": self.accel.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for k, v in state["optim"].items():
            self.opt[k].load_state_dict(v)
        for s, sd in zip(self.opt.get("schedulers", []), state["schedulers"]):
            s.load_state_dict(sd)
        self.strategy.load_state_dict(state["strategy"])
        self.accel.load_state_dict(state.get("accel", {}))


class RetrainTask:
    """Train a derived network on the whole training set (from scratch, or from the weights
    already in ``network``: ``attnas train --init-from``); test every epoch.

    ``cfg`` is a retraining recipe (:class:`attnas.presets.RetrainPreset`): SGD with the
    recipe's per-epoch schedule (:mod:`attnas.training.schedules`), Nesterov momentum if it says
    so, gradients clipped to ``weights.grad_clip`` (0: not clipped).  Networks with an auxiliary
    head return ``(logits, aux)`` in training mode; the loss is CE(logits) + ``auxiliary_weight``
    * CE(aux) (DARTS), both with the recipe's ``label_smoothing``.  Drop-path grows linearly
    from 0 to ``drop_path`` over the epochs.
    """

    def __init__(self, network: nn.Module, data: ImageData, cfg, epochs: int, batch_size: int,
                 seed: int, device: torch.device, amp: bool = False, compile_backend: str | None = None) -> None:
        from attnas.training.accel import Accelerator

        self.net, self.data, self.cfg, self.epochs = network.to(device), data, cfg, epochs
        self.accel = Accelerator(self.net, device, amp, compile_backend)
        self.seed, self.device = seed, device
        self.train_batches = make_batches(data, "train", None, batch_size, True, seed, drop_last=False)
        self.test_batches = make_batches(data, "test", None, max(batch_size, 256), False, seed)
        self.augment = default_augment(data, cutout=cfg.cutout)
        self.opt, self.sched = retrain_optimizer(self.net.parameters(), cfg, epochs)
        if distributed.is_distributed():
            distributed.broadcast_module(self.net)
            distributed.attach([self.opt])

    def steps_per_epoch(self) -> int:
        return len(self.train_batches)

    def batches(self, epoch: int, start: int = 0, position: Any = None):
        """The epoch's training batches from step ``start`` on (``position``: the augmentation
        generator's state at that step, from :meth:`position`)."""
        if hasattr(self.net, "set_drop_path"):
            self.net.set_drop_path(self.cfg.drop_path * epoch / max(1, self.epochs))
        self._gen = _epoch_generator(self.seed, epoch, 2, position)
        return self._batches(epoch, start, self._gen)

    def position(self) -> torch.Tensor:
        """The augmentation generator's state in the engine's current epoch."""
        return self._gen.get_state()

    def _batches(self, epoch: int, start: int, gen: torch.Generator):
        for x, y in self.train_batches.epoch_from(epoch, start):
            x, y = self.augment(x.to(self.device), generator=gen), y.to(self.device)
            if distributed.is_distributed():
                if len(y) < distributed.world_size():
                    continue  # a last partial batch too small to split over the processes
                x, y = distributed.shard(x, y)
            yield x, y

    def train_step(self, batch, epoch: int, step: int) -> dict[str, float]:
        x, y = batch
        self.net.train()
        distributed.begin_step()
        self.opt.zero_grad(set_to_none=True)
        with self.accel.autocast():
            out = self.accel.run(x)
            logits, aux = out if isinstance(out, tuple) else (out, None)
            smoothing = float(self.cfg.label_smoothing)
            loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
            if aux is not None:
                loss = loss + self.cfg.auxiliary_weight * F.cross_entropy(aux, y, label_smoothing=smoothing)

        def sync_and_clip() -> None:
            distributed.sync_grads(self.net.parameters())
            if self.cfg.weights.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.weights.grad_clip)

        self.accel.backward_and_step(loss, self.opt, sync_and_clip)
        return {"loss": float(loss.detach()), "acc": float((logits.argmax(1) == y).float().mean())}

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        distributed.average_buffers(self.net)
        rec = {"lr": self.opt.param_groups[0]["lr"]}
        self.sched.step()
        rec.update({f"test_{k}": v for k, v in
                    evaluate(self.net, self.test_batches.epoch(0), self.augment, self.device).items()})
        return rec

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.net.state_dict(), "optim": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "accel": self.accel.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optim"])
        self.sched.load_state_dict(state["sched"])
        self.accel.load_state_dict(state.get("accel", {}))
