"""Data-parallel runs under torchrun (2 CPU processes, Gloo on loopback) and TensorBoard logging.

Every rank writes hashes of its final state when ``$ATTNAS_DEBUG_DUMP`` is set
(:func:`attnas.distributed.debug_dump`); the processes must end with
identical parameters, buffers and architecture state.  One launch only (it
starts three Python processes that import torch, ~15 s on a loaded 2-core
machine): ``tests/ddp_worker.py`` runs several ``python -m attnas.cli.main``
commands in one process group.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

from attnas import api
from attnas.cli.main import main
from attnas.config import SearchConfig
from attnas.errors import ConfigError

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with the Gloo backend is not available")

ROOT = Path(__file__).resolve().parents[1]
SPACE = ["--space", "nb201", "--space-options", '{"C": 4, "N": 1}']
DATA = ["--dataset", "synthetic:3,8,4,128,32", "--batch-size", "16"]
ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"


def _torchrun(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env_extra or {})}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def _same_on_both_ranks(folder: Path, kind: str) -> dict:
    r0 = json.loads((folder / f"{kind}-rank0.json").read_text())
    r1 = json.loads((folder / f"{kind}-rank1.json").read_text())
    assert (r0["rank"], r1["rank"], r0["world_size"]) == (0, 1, 2)
    assert r0["tensors"] == r1["tensors"]          # every parameter and buffer, bit for bit
    assert r0["all"] == r1["all"]
    for key in ("arch", "arch_params", "strategy"):
        assert r0.get(key) == r1.get(key), key
    return r0


def _metrics(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]


def test_torchrun_search_and_train(tmp_path):
    """One torchrun launch (2 processes) runs, through ``python -m attnas.cli.main`` semantics:
    a DARTS search stopped after one epoch (then resumed here in ONE process), the resumption
    of an IT-NAS run started here in one process, DARTS 2nd order with uneven shards (batch 15
    over 2 processes) and a checkpoint after every step (the processes average their running
    metric sums for it), SPOS single-path sampling, an evolutionary search whose candidates are
    split over the processes, and a retraining.  Every job must end with
    identical parameters, buffers and architecture state on both ranks; rank 0 alone writes
    and prints."""
    itnas = tmp_path / "itnas"
    res = api.search(SearchConfig(space="nb201", method="itnas", dataset="synthetic:3,8,4,128,32",
                                  epochs=2, batch_size=16, space_options={"C": 4, "N": 1},
                                  out=str(itnas)), progress=False, stop_after=1)
    assert res["status"] == "stopped"
    darts = tmp_path / "darts"
    common = [*SPACE, "--dataset", "synthetic:3,8,4,128,32", "--epochs", "1", "--quiet"]
    spos_opts = json.dumps({"population": 4, "generations": 1, "top_k": 2, "mutations": 2,
                            "crossovers": 2, "bn_images": 32})
    jobs = [
        ["darts", ["search", *SPACE, "--method", "darts", *DATA, "--epochs", "2", "--stop-after", "1",
                   "--out", str(darts), "--quiet", "--json"]],
        ["itnas", ["search", "--resume", str(itnas), "--quiet"]],
        ["darts2", ["search", "--method", "darts-2nd", *common, "--batch-size", "15", "--checkpoint-every", "1",
                    "--out", str(tmp_path / "darts2")]],
        ["spos", ["search", "--method", "spos", "--method-options", spos_opts, *common,
                  "--batch-size", "16", "--out", str(tmp_path / "spos")]],
        ["evolve", ["evolve", str(tmp_path / "spos"), "--out", str(tmp_path / "spos" / "evolve2"),
                    "--population", "4", "--generations", "2", "--seed", "3", "--quiet"]],
        ["train", ["train", "--arch", ARCH, "--space-options", '{"C": 4, "N": 1}',
                   "--dataset", "synthetic:3,8,4,100,32", "--epochs", "1", "--batch-size", "16",
                   "--out", str(tmp_path / "train"), "--quiet"]],
    ]
    dump = tmp_path / "dump"
    proc = _torchrun([str(ROOT / "tests" / "ddp_worker.py"), str(dump), json.dumps(jobs)], tmp_path)
    for name, kind in (("darts", "search"), ("itnas", "search"), ("darts2", "search"),
                       ("spos", "search"), ("train", "train")):
        r0 = _same_on_both_ranks(dump / name, kind)
        if name.startswith("darts"):
            assert r0["arch_params"]  # the alphas were compared
    # rank 0 alone prints and writes; one folder per run
    assert proc.stdout.count("search stopped after 1/2 epochs") == 1
    assert len([ln for ln in proc.stdout.splitlines() if ln.startswith("{")]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["darts", "darts2", "dump", "itnas", "spos", "train"]
    assert sorted(p.name for p in darts.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl"]
    (m0,) = _metrics(darts)
    assert m0["epoch"] == 0 and m0["world_size"] == 2
    # 1 process -> 2 processes
    m = _metrics(itnas)
    assert [r["epoch"] for r in m] == [0, 1] and "world_size" not in m[0] and m[1]["world_size"] == 2
    for name in ("itnas", "darts2", "spos"):
        assert (tmp_path / name / "architecture.json").is_file(), name
    assert (tmp_path / "train" / "weights.pt").is_file()
    # evolution: candidates split over the 2 processes, the result of one process
    spos_arch = json.loads((tmp_path / "spos" / "architecture.json").read_text())["meta"]
    assert len(spos_arch["evaluated_per_process"]) == 2 and min(spos_arch["evaluated_per_process"]) > 0
    assert sum(spos_arch["evaluated_per_process"]) == spos_arch["evaluated"]
    two = json.loads((tmp_path / "spos" / "evolve2" / "evolution.json").read_text())
    assert two["processes"] == 2 and min(two["evaluated_per_process"]) > 0
    evaluations = (tmp_path / "spos" / "evolve2" / "evaluations.jsonl").read_text().splitlines()
    assert len(evaluations) == 1 + two["evaluated"]  # header + one line per candidate, written once
    assert main(["evolve", str(tmp_path / "spos"), "--out", str(tmp_path / "spos" / "evolve1"), "--population",
                 "4", "--generations", "2", "--seed", "3", "--quiet"]) == 0
    one = json.loads((tmp_path / "spos" / "evolve1" / "evolution.json").read_text())
    assert one["processes"] == 1 and one["evaluated_per_process"] == [one["evaluated"]]
    for key in ("architecture", "supernet_val_acc", "top", "history", "evaluated"):
        assert one[key] == two[key], key
    # 2 processes -> 1 process
    res = api.resume_search(darts, progress=False)
    assert res["status"] == "done" and res["epochs_done"] == 2
    assert (darts / "architecture.json").is_file()
    assert [r["epoch"] for r in _metrics(darts)] == [0, 1] and "world_size" not in _metrics(darts)[1]


def test_tensorboard_logging(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    args = ["search", *SPACE, "--method", "darts", *DATA, "--epochs", "2", "--out", str(run), "--quiet"]
    assert main([*args, "--stop-after", "1", "--tensorboard"]) == 0
    assert main(["search", "--resume", str(run), "--quiet"]) == 0  # keeps logging
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in ("train_loss", "train_acc", "train_arch_loss", "valid_loss", "valid_acc", "lr",
                "epoch_time_s", "scores/cell.0-1/0"):
        assert tag in tags, tag
    steps = [e.step for e in acc.Scalars("valid_acc")]
    assert steps == [0, 1]
    logged = [e.value for e in acc.Scalars("valid_acc")]
    assert logged == pytest.approx([m["valid_acc"] for m in _metrics(run)])


def test_tensorboard_missing_is_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    from attnas.training.engine import require_tensorboard
    with pytest.raises(ConfigError, match=r"pip install 'attnas\[tensorboard\]'"):
        require_tensorboard()
    code = main(["train", "--arch", ARCH, "--space-options", '{"C": 4, "N": 1}', *DATA,
                 "--epochs", "1", "--out", str(tmp_path / "t"), "--quiet", "--tensorboard"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("attnas: error: --tensorboard needs")
