"""The two tasks the engine runs: an architecture search and a retraining.

Under ``torchrun`` (:mod:`attnas.training.distributed`) every process builds the
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
from attnas.data.loader import Batches, split_indices
from attnas.strategies.base import Strategy, SuperNet, weight_optimizer
from attnas.training import distributed


def _epoch_generator(seed: int, epoch: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 7_919 + epoch * 104_729 + salt) % (2**63 - 1))


@torch.no_grad()
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
    """Architecture search: the training set split into a weight half and an
    architecture/validation half (``train_portion`` of the strategy's preset)."""

    def __init__(self, strategy: Strategy, model: SuperNet, data: ImageData, epochs: int,
                 batch_size: int, seed: int, device: torch.device,
                 on_epoch: Callable[[int, "SearchTask"], dict[str, Any]] | None = None) -> None:
        self.strategy, self.model, self.data = strategy, model.to(device), data
        self.seed, self.device, self.on_epoch = seed, device, on_epoch
        portion = getattr(strategy.cfg, "train_portion", 0.5)
        idx_w, idx_a = split_indices(len(data.train_y), portion, seed)
        self.train_batches = Batches(data.train_x, data.train_y, idx_w, batch_size, True, seed, drop_last=True)
        self.arch_batches = Batches(data.train_x, data.train_y, idx_a, batch_size, True, seed + 1,
                                    drop_last=True)
        self.valid_batches = Batches(data.train_x, data.train_y, idx_a, batch_size, False, seed)
        if len(self.train_batches) == 0 or len(self.arch_batches) == 0:
            from attnas.errors import ConfigError
            raise ConfigError(f"batch size {batch_size} is larger than each half of the "
                              f"{len(data.train_y)} training images; use a smaller --batch-size")
        self.augment = default_augment(data)
        self.opt = strategy.optimizers(model, self.steps_per_epoch(), epochs)
        self.last_arch = None
        if distributed.is_distributed():
            distributed.broadcast_module(self.model)
            distributed.attach(self.opt.values())

    def steps_per_epoch(self) -> int:
        return min(len(self.train_batches), len(self.arch_batches))

    def _prep(self, batch, gen: torch.Generator):
        x, y = batch
        return self.augment(x.to(self.device), generator=gen), y.to(self.device)

    def batches(self, epoch: int, shard: bool = True):
        """The epoch's (weight batch, architecture batch) pairs; under torchrun this process's
        slice of each, or the whole global batches with ``shard=False`` (selection passes)."""
        gen = _epoch_generator(self.seed, epoch, 1)
        for bw, ba in zip(self.train_batches.epoch(epoch), self.arch_batches.epoch(epoch)):
            bw, ba = self._prep(bw, gen), self._prep(ba, gen)
            if shard and distributed.is_distributed():  # this process's slice of the global batches
                bw, ba = distributed.shard(*bw), distributed.shard(*ba)
            yield bw, ba

    def train_step(self, batch, epoch: int, step: int) -> dict[str, float]:
        self.model.train()
        distributed.begin_step()
        return self.strategy.train_step(self.model, self.opt, batch[0], batch[1], epoch, step)

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
                "strategy": self.strategy.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for k, v in state["optim"].items():
            self.opt[k].load_state_dict(v)
        for s, sd in zip(self.opt.get("schedulers", []), state["schedulers"]):
            s.load_state_dict(sd)
        self.strategy.load_state_dict(state["strategy"])


class RetrainTask:
    """Train a derived network from scratch on the whole training set; test every epoch.

    Networks with an auxiliary head return ``(logits, aux)`` in training mode;
    the loss is CE(logits) + ``auxiliary_weight`` * CE(aux) (DARTS).  Drop-path
    grows linearly from 0 to ``drop_path`` over the epochs.
    """

    def __init__(self, network: nn.Module, data: ImageData, cfg, epochs: int, batch_size: int,
                 seed: int, device: torch.device, amp: bool = False, compile_backend: str | None = None) -> None:
        from attnas.training.accel import Accelerator

        self.net, self.data, self.cfg, self.epochs = network.to(device), data, cfg, epochs
        self.accel = Accelerator(self.net, device, amp, compile_backend)
        self.seed, self.device = seed, device
        self.train_batches = Batches(data.train_x, data.train_y, None, batch_size, True, seed, drop_last=False)
        self.test_batches = Batches(data.test_x, data.test_y, None, max(batch_size, 256), False, seed)
        self.augment = default_augment(data, cutout=cfg.cutout)
        opt, sched = weight_optimizer(self.net.parameters(), cfg.weights, len(self.train_batches), epochs)
        self.opt, self.sched = opt, sched
        if distributed.is_distributed():
            distributed.broadcast_module(self.net)
            distributed.attach([self.opt])

    def steps_per_epoch(self) -> int:
        return len(self.train_batches)

    def batches(self, epoch: int):
        if hasattr(self.net, "set_drop_path"):
            self.net.set_drop_path(self.cfg.drop_path * epoch / max(1, self.epochs))
        gen = _epoch_generator(self.seed, epoch, 2)
        for x, y in self.train_batches.epoch(epoch):
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
            loss = F.cross_entropy(logits, y)
            if aux is not None:
                loss = loss + self.cfg.auxiliary_weight * F.cross_entropy(aux, y)

        def sync_and_clip() -> None:
            distributed.sync_grads(self.net.parameters())
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
