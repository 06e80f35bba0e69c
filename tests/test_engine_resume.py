"""Checkpoints inside an epoch (``--checkpoint-every STEPS``): a run killed in the middle of an
epoch resumes at the step after its last checkpoint and ends exactly as the uninterrupted run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from attnas.cli.main import main

DATA = ["--dataset", "synthetic:3,8,4,256,64", "--quiet"]
SEARCH = ["search", "--space", "nb201", "--space-options", '{"C": 4, "N": 1}', "--batch-size", "32", *DATA]
DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
            "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
            "('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), "
            "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
            "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))")
# the DARTS evaluation network: drop-path draws from the global generator, cutout from the task's
TRAIN = ["train", "--arch", DARTS_V2, "--network-options", '{"C": 4, "layers": 3}', "--batch-size", "32",
         "--options", '{"drop_path": 0.3, "cutout": 4}', *DATA]


class Killed(BaseException):
    """Stands for SIGKILL: nothing of the run's own error handling sees it."""


def _cli(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _metrics(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(ln).items() if k != "epoch_time_s"}
            for ln in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from attnas.training.checkpoint import load_checkpoint
    return load_checkpoint(run / "checkpoint.pt")["task"]["model"]


@pytest.mark.parametrize("command", [
    [*SEARCH, "--method", "itnas", "--method-options", '{"warmup": 0}'],  # attention trains in epoch 2
    [*SEARCH, "--method", "darts"],                                      # weight + architecture batches
    [*SEARCH, "--method", "spos"],                                       # the strategy's own path draws
    TRAIN,                                                               # retraining: cutout, drop-path
], ids=["itnas", "darts", "spos", "train"])
def test_kill_inside_an_epoch_resumes_at_the_step(command, tmp_path, capsys, monkeypatch):
    from attnas.training.checkpoint import load_checkpoint
    from attnas.training.tasks import RetrainTask, SearchTask

    base = [*command, "--epochs", "3", "--seed", "3"]
    assert _cli([*base, "--out", tmp_path / "ref"], capsys)[0] == 0

    cls = SearchTask if command[0] == "search" else RetrainTask
    original = cls.train_step

    def killed_at_epoch_2_step_4(self, batch, epoch, step):
        if epoch == 1 and step == 3:
            raise Killed()
        return original(self, batch, epoch, step)

    monkeypatch.setattr(cls, "train_step", killed_at_epoch_2_step_4)
    run = tmp_path / "run"
    with pytest.raises(Killed):
        _cli([*base, "--out", run, "--checkpoint-every", "2"], capsys)
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["epoch"] == 0 and state["partial"]["step"] == 2      # after steps 1-2 of epoch 2
    assert len(_metrics(run)) == 1
    monkeypatch.setattr(cls, "train_step", original)

    steps = []

    def counted(self, batch, epoch, step):
        steps.append((epoch, step))
        return original(self, batch, epoch, step)

    monkeypatch.setattr(cls, "train_step", counted)
    code, _, err = _cli([command[0], "--resume", run, "--quiet"], capsys)
    assert code == 0, err
    assert steps[0] == (1, 2)                                         # not the start of epoch 2
    assert _metrics(run) == _metrics(tmp_path / "ref")                # every metric of every epoch
    ref = _weights(tmp_path / "ref")
    got = _weights(run)
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    assert json.loads((run / "config.json").read_text())["checkpoint_every"] == 2


def test_inside_checkpoint_of_the_first_epoch(tmp_path, capsys, monkeypatch):
    """A checkpoint inside epoch 1 has no complete epoch before it; it loads and resumes."""
    from attnas.training.checkpoint import load_checkpoint
    from attnas.training.tasks import SearchTask

    base = [*SEARCH, "--method", "darts", "--epochs", "1", "--seed", "1"]
    original = SearchTask.train_step

    def killed(self, batch, epoch, step):
        if step == 2:
            raise Killed()
        return original(self, batch, epoch, step)

    monkeypatch.setattr(SearchTask, "train_step", killed)
    with pytest.raises(Killed):
        _cli([*base, "--out", tmp_path / "run", "--checkpoint-every", "1"], capsys)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt", "search")
    assert state["epoch"] == -1 and state["partial"]["step"] == 2
    monkeypatch.setattr(SearchTask, "train_step", original)
    assert _cli(["search", "--resume", tmp_path / "run", "--quiet"], capsys)[0] == 0
    assert _cli([*base, "--out", tmp_path / "ref"], capsys)[0] == 0
    assert _metrics(tmp_path / "run") == _metrics(tmp_path / "ref")


@pytest.mark.parametrize("value", ["-1", "x"])
def test_bad_checkpoint_every_is_a_one_line_error(value, tmp_path, capsys):
    code, out, err = _cli([*SEARCH, "--method", "darts", "--epochs", "1", "--out", tmp_path / "run",
                           "--checkpoint-every", value], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("attnas: error:") and "checkpoint-every" in err
    assert not (tmp_path / "run").exists()


def test_divergence_names_the_checkpoint_inside_the_epoch(tmp_path, capsys, monkeypatch):
    from attnas.training.tasks import SearchTask

    original = SearchTask.train_step

    def poisoned(self, batch, epoch, step):
        if epoch == 1 and step == 3:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return original(self, batch, epoch, step)

    monkeypatch.setattr(SearchTask, "train_step", poisoned)
    code, out, err = _cli([*SEARCH, "--method", "darts", "--epochs", "3", "--out", tmp_path / "run",
                           "--checkpoint-every", "2"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "training diverged at epoch 2/3" in err and "keeps epoch 2/3, step 2, the last good one" in err
