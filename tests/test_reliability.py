"""Issue 14, reliability and security: files are loaded without running code, resume writes
into RUN_DIR, a run folder is locked, --out does not overwrite without --force, divergence
is an error, and all JSON attnas writes is strict."""
from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attnas.cli.main import main
from attnas.jsonio import dumps, finite

TINY = ["--space", "nb201", "--space-options", '{"C": 4, "N": 1}', "--dataset", "synthetic:3,8,4,256,64",
        "--batch-size", "32", "--quiet"]
ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
TRAIN = ["--arch", ARCH, "--space-options", '{"C": 4, "N": 1}', "--dataset", "synthetic:3,8,4,256,64",
         "--batch-size", "64", "--quiet"]


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *expected: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("attnas: error:"), err
    assert "Traceback" not in err
    for e in expected:
        assert e in lines[0], lines[0]
    return lines[0]


def strict_loads(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def assert_strict_json_files(folder: Path) -> int:
    """Every .json / .jsonl file under ``folder`` parses with a strict parser; returns how many."""
    n = 0
    for p in folder.rglob("*.json*"):
        if p.suffix == ".jsonl":
            for ln in p.read_text().splitlines():
                if ln.strip():
                    strict_loads(ln)
        else:
            strict_loads(p.read_text())
        n += 1
    return n


class Evil:
    """Unpickling this runs a command (creates ``path``)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch '{self.path}'",))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A search run and a training run, each stopped after 1 of 2 epochs (copy before changing)."""
    root = tmp_path_factory.mktemp("runs")
    assert main(["search", *TINY, "--method", "darts", "--epochs", "2", "--seed", "1", "--stop-after", "1",
                 "--out", str(root / "search")]) == 0
    assert main(["train", *TRAIN, "--epochs", "2", "--seed", "1", "--stop-after", "1",
                 "--out", str(root / "train")]) == 0
    return root


def copy_run(runs: Path, kind: str, dest: Path) -> Path:
    shutil.copytree(runs / kind, dest)
    (dest / ".lock").unlink(missing_ok=True)
    return dest


# ----- 1. loading never runs code -------------------------------------------------------------
def _evil_torch_file(path: Path, marker: Path, legacy: bool = False) -> None:
    payload = {"epoch": 0, "task": {"model": Evil(marker)}}
    if legacy:  # a bare pickle, not torch's zip format
        with open(path, "wb") as fh:
            pickle.dump(payload, fh)
    else:
        torch.save(payload, path)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "raw-pickle"])
@pytest.mark.parametrize("case", ["search-resume", "train-resume", "export-weights", "export-from-search",
                                  "export-from-train", "evolve", "gradcam"])
def test_malicious_pickle_is_refused(case, legacy, runs, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    if case == "train-resume":
        run = copy_run(runs, "train", tmp_path / "run")
        _evil_torch_file(run / "checkpoint.pt", marker, legacy)
        argv = ["train", "--resume", run, "--quiet"]
    elif case == "export-from-train":
        run = copy_run(runs, "train", tmp_path / "run")
        _evil_torch_file(run / "weights.pt", marker, legacy)
        argv = ["export", "--from-run", run, "--format", "torchscript", "-o", tmp_path / "m.pt"]
    elif case == "export-weights":
        _evil_torch_file(tmp_path / "w.pt", marker, legacy)
        argv = ["export", "--arch", ARCH, "--space-options", '{"C": 4, "N": 1}', "--weights", tmp_path / "w.pt",
                "--format", "torchscript", "-o", tmp_path / "m.pt"]
    else:
        run = copy_run(runs, "search", tmp_path / "run")
        _evil_torch_file(run / "checkpoint.pt", marker, legacy)
        argv = {"search-resume": ["search", "--resume", run, "--quiet"],
                "export-from-search": ["export", "--arch", ARCH, "--from-run", run, "--format", "torchscript",
                                       "-o", tmp_path / "m.pt"],
                "evolve": ["evolve", run, "--quiet"],
                "gradcam": ["analyze", "gradcam", run, "-o", tmp_path / "g.png"]}[case]
    code, _, err = run_cli(argv, capsys)
    assert not marker.exists(), "unpickling ran the command"
    line = assert_one_line_error(code, err)
    assert ("not a PyTorch checkpoint" if legacy else "refused to unpickle it") in line
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "g.png").exists()


def test_malicious_cifar_pickle_is_refused(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    with open(folder / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": Evil(marker), b"labels": [0]}, fh, protocol=2)
    code, _, err = run_cli(["search", "--dataset", "cifar10", "--data-dir", tmp_path / "data", "--epochs", "1",
                            "--out", tmp_path / "run", "--quiet"], capsys)
    assert not marker.exists(), "unpickling ran the command"
    assert_one_line_error(code, err, "data_batch_1", "refused")
    assert not (tmp_path / "run").exists()


def test_cifar_pickles_of_any_protocol_still_load(tmp_path):
    import numpy as np

    from attnas.data import datasets as ds

    rng = np.random.default_rng(0)
    batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": list(np.arange(4)),
             b"filenames": [b"a.png"] * 4, b"batch_label": b"training batch 1 of 5"}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        p = tmp_path / f"b{protocol}"
        p.write_bytes(pickle.dumps(batch, protocol=protocol))
        got = ds._unpickle(p)
        assert np.array_equal(got[b"data"], batch[b"data"]) and list(got[b"labels"]) == [0, 1, 2, 3]


# ----- bad checkpoint files: one line, exit 2 ---------------------------------------------------
def _random_bytes(run: Path, runs: Path) -> None:
    (run / "checkpoint.pt").write_bytes(os.urandom(4096))


def _dict_without_keys(run: Path, runs: Path) -> None:
    torch.save({"weights": torch.zeros(3), "step": 1}, run / "checkpoint.pt")


def _not_a_dict(run: Path, runs: Path) -> None:
    torch.save([torch.zeros(3)], run / "checkpoint.pt")


def _train_checkpoint(run: Path, runs: Path) -> None:
    shutil.copy(runs / "train" / "checkpoint.pt", run / "checkpoint.pt")


@pytest.mark.parametrize("kind, damage, expected", [
    ("search", _random_bytes, "not a PyTorch checkpoint"),
    ("search", _dict_without_keys, "is not an attnas checkpoint"),
    ("search", _not_a_dict, "is not an attnas checkpoint"),
    ("search", _train_checkpoint, "checkpoint of an 'attnas train' run"),
    ("train", _random_bytes, "not a PyTorch checkpoint"),
    ("train", _dict_without_keys, "is not an attnas checkpoint"),
], ids=["search-random-bytes", "search-dict-without-keys", "search-not-a-dict", "search-given-train-ckpt",
        "train-random-bytes", "train-dict-without-keys"])
def test_bad_checkpoint_is_a_one_line_error(kind, damage, expected, runs, tmp_path, capsys):
    run = copy_run(runs, kind, tmp_path / "run")
    damage(run, runs)
    code, _, err = run_cli([kind, "--resume", run, "--quiet"], capsys)
    assert_one_line_error(code, err, expected)


@pytest.mark.parametrize("command, kind, expected", [
    ("search", "train", "is a training run"),
    ("train", "search", "is a search run"),
])
def test_resume_of_the_other_kind_of_run(command, kind, expected, runs, tmp_path, capsys):
    run = copy_run(runs, kind, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    code, _, err = run_cli([command, "--resume", run, "--quiet"], capsys)
    assert_one_line_error(code, err, expected, f"attnas {kind} --resume")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"} == before


def test_weights_file_of_random_bytes(tmp_path, capsys):
    (tmp_path / "w.pt").write_bytes(os.urandom(2048))
    code, _, err = run_cli(["export", "--arch", ARCH, "--weights", tmp_path / "w.pt", "--format", "torchscript",
                            "-o", tmp_path / "m.pt"], capsys)
    assert_one_line_error(code, err, "weights file")


# ----- 2. --resume RUN_DIR writes into RUN_DIR ------------------------------------------------------
@pytest.mark.parametrize("kind", ["search", "train"])
def test_resume_writes_into_the_moved_run_folder(kind, tmp_path, capsys, monkeypatch):
    first, other = tmp_path / "first", tmp_path / "other"
    first.mkdir()
    other.mkdir()
    monkeypatch.chdir(first)
    base = [kind, *(TINY + ["--method", "darts"] if kind == "search" else TRAIN), "--epochs", "2", "--seed", "4"]
    assert run_cli([*base, "--out", "run", "--stop-after", "1"], capsys)[0] == 0  # relative --out
    assert json.loads((first / "run" / "config.json").read_text())["out"] == "run"
    moved = tmp_path / "moved" / "run"
    moved.parent.mkdir()
    shutil.move(str(first / "run"), moved)
    monkeypatch.chdir(other)  # neither the old place nor the run's folder
    code, out, _ = run_cli([kind, "--resume", "../moved/run", "--quiet", "--json"], capsys)
    assert code == 0
    res = json.loads(out.strip().splitlines()[-1])
    assert res["status"] == "done" and Path(res["run_dir"]).resolve() == moved.resolve()
    assert list(other.iterdir()) == [] and list(first.iterdir()) == []  # nothing written elsewhere
    assert len((moved / "metrics.jsonl").read_text().splitlines()) == 2
    assert (moved / "result.json").is_file()
    # and the result equals an uninterrupted run's
    monkeypatch.chdir(tmp_path)
    assert run_cli([*base, "--out", tmp_path / "ref"], capsys)[0] == 0
    strip = [{k: v for k, v in json.loads(ln).items() if k != "epoch_time_s"}
             for ln in (moved / "metrics.jsonl").read_text().splitlines()]
    ref = [{k: v for k, v in json.loads(ln).items() if k != "epoch_time_s"}
           for ln in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    assert strip == ref


# ----- 3. one process per run folder ----------------------------------------------------------------
def _hold_lock(folder: Path) -> subprocess.Popen:
    code = ("import sys, time\nfrom attnas.run_dir import RunLock\n"
            "RunLock(sys.argv[1]).acquire()\nprint('locked', flush=True)\ntime.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_locked_run_folder_is_refused(runs, tmp_path, capsys):
    run = copy_run(runs, "search", tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    holder = _hold_lock(run)
    try:
        code, _, err = run_cli(["search", "--resume", run, "--quiet"], capsys)
        assert_one_line_error(code, err, "in use by another attnas process", f"pid {holder.pid}")
        # --force does not let a new run take (or clear) a folder in use
        code, _, err = run_cli(["search", *TINY, "--method", "darts", "--epochs", "1", "--out", run, "--force"],
                               capsys)
        assert_one_line_error(code, err, f"pid {holder.pid}")
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"} == before
    finally:
        holder.kill()
        holder.wait()
    code, _, _ = run_cli(["search", "--resume", run, "--quiet"], capsys)
    assert code == 0 and (run / "architecture.json").is_file()


def test_lock_is_held_for_the_run_and_released_after(tmp_path):
    from attnas.errors import RunFolderError
    from attnas.run_dir import RunLock, open_run_dir

    lock = open_run_dir(tmp_path / "r", fresh=True)
    try:
        info = json.loads((tmp_path / "r" / ".lock").read_text())
        assert info["pid"] == os.getpid() and info["host"]
        with pytest.raises(RunFolderError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path / "r").acquire()
    finally:
        lock.release()
    assert not (tmp_path / "r" / ".lock").exists()  # removed when the run ends
    with RunLock(tmp_path / "r") as again:
        assert again.held


# ----- 4. --out does not overwrite without --force ---------------------------------------------
def test_out_refuses_a_non_empty_folder_unless_force(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    argv = ["search", *TINY, "--method", "darts", "--epochs", "1", "--out", out]
    code, _, err = run_cli(argv, capsys)
    assert_one_line_error(code, err, "not empty", "--force")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert run_cli([*argv, "--force"], capsys)[0] == 0
    assert (out / "architecture.json").is_file() and (out / "notes.txt").read_text() == "precious"


@pytest.mark.parametrize("kind", ["search", "train"])
def test_finished_run_without_checkpoint_is_not_overwritten(kind, tmp_path, capsys):
    out = tmp_path / "run"
    base = [kind, *(TINY + ["--method", "darts"] if kind == "search" else TRAIN), "--epochs", "1"]
    assert run_cli([*base, "--seed", "1", "--out", out], capsys)[0] == 0
    (out / "checkpoint.pt").unlink()
    result = (out / "result.json").read_text()
    code, _, err = run_cli([*base, "--seed", "2", "--out", out], capsys)
    assert_one_line_error(code, err, "already holds a run", "--force")
    assert (out / "result.json").read_text() == result
    assert run_cli([*base, "--seed", "2", "--out", out, "--force"], capsys)[0] == 0
    assert json.loads((out / "config.json").read_text())["seed"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


# ----- 5. divergence is an error; JSON is strict -----------------------------------------------------
@pytest.mark.parametrize("kind", ["search", "train"])
def test_huge_learning_rate_stops_with_an_error(kind, tmp_path, capsys):
    out = tmp_path / "run"
    if kind == "search":
        argv = ["search", *TINY, "--method", "darts", "--method-options", '{"weights": {"lr": 1e30}}']
    else:
        argv = ["train", *TRAIN, "--options", '{"weights": {"lr": 1e30}}']
    code, stdout, err = run_cli([*argv, "--epochs", "2", "--out", out, "--json"], capsys)
    line = assert_one_line_error(code, err, "training diverged at epoch 1/2 step ", "loss is nan")
    assert "no checkpoint was written" in line
    assert not (out / "checkpoint.pt").exists() and not (out / "result.json").exists()
    assert not (out / ("architecture.json" if kind == "search" else "weights.pt")).exists()
    assert stdout.strip() == ""
    assert_strict_json_files(out)


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    from attnas.training.checkpoint import load_checkpoint
    from attnas.training.tasks import SearchTask

    base = ["search", *TINY, "--method", "darts", "--epochs", "3", "--seed", "7"]
    assert run_cli([*base, "--out", tmp_path / "ref", "--stop-after", "1"], capsys)[0] == 0
    original = SearchTask.train_step

    def poisoned(self, batch, epoch, step):
        if epoch == 1 and step == 2:  # the weights blow up in the second epoch
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return original(self, batch, epoch, step)

    monkeypatch.setattr(SearchTask, "train_step", poisoned)
    out = tmp_path / "run"
    code, stdout, err = run_cli([*base, "--out", out, "--json"], capsys)
    line = assert_one_line_error(code, err, "training diverged at epoch 2/3 step 3/", "loss is nan",
                                 "keeps epoch 1/3")
    assert str(out / "checkpoint.pt") in line and stdout.strip() == ""
    good, ref = load_checkpoint(out / "checkpoint.pt", "search"), load_checkpoint(tmp_path / "ref" / "checkpoint.pt")
    assert good["epoch"] == 0
    for k, v in ref["task"]["model"].items():
        assert torch.equal(good["task"]["model"][k], v), k
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert assert_strict_json_files(out) >= 2
    # resuming (with the poison gone) continues from the good epoch and finishes
    monkeypatch.setattr(SearchTask, "train_step", original)
    assert run_cli(["search", "--resume", out, "--quiet"], capsys)[0] == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_non_finite_weights_without_a_nan_loss_are_not_checkpointed(tmp_path, capsys, monkeypatch):
    from attnas.training.tasks import RetrainTask

    original = RetrainTask.end_epoch

    def overflow(self, epoch):
        rec = original(self, epoch)
        if epoch == 1:
            with torch.no_grad():
                w = next(self.net.parameters())
                w[(0,) * w.dim()] = float("inf")
        return rec

    monkeypatch.setattr(RetrainTask, "end_epoch", overflow)
    out = tmp_path / "run"
    code, _, err = run_cli(["train", *TRAIN, "--epochs", "3", "--out", out], capsys)
    assert_one_line_error(code, err, "training diverged at epoch 2/3", "is not finite")
    from attnas.training.checkpoint import load_checkpoint
    assert load_checkpoint(out / "checkpoint.pt", "train")["epoch"] == 0


def test_json_output_is_strict():
    data = {"a": float("nan"), "b": [1.5, float("inf"), -float("inf")], "c": {"d": torch.tensor(float("nan"))},
            "e": (1, "x"), "f": True}
    text = dumps(data)
    assert strict_loads(text) == {"a": None, "b": [1.5, None, None], "c": {"d": None}, "e": [1, "x"], "f": True}
    import numpy as np
    assert finite(np.float32("nan")) is None and finite(np.float64(2.0)) == 2.0 and finite(np.int64(3)) == 3
    assert math.isnan(data["a"])  # the input is not changed


def test_written_json_of_a_run_is_strict(runs, tmp_path, capsys):
    run = copy_run(runs, "search", tmp_path / "run")
    code, stdout, _ = run_cli(["search", "--resume", run, "--quiet", "--json"], capsys)
    assert code == 0
    strict_loads(stdout.strip().splitlines()[-1])
    assert assert_strict_json_files(run) >= 5


@pytest.mark.parametrize("argv", [["evolve", "{run}", "--quiet"], ["analyze", "gradcam", "{run}"]],
                         ids=["evolve", "gradcam"])
def test_search_run_commands_on_a_training_run(argv, runs, capsys):
    code, _, err = run_cli([a.format(run=runs / "train") for a in argv], capsys)
    assert_one_line_error(code, err, "is a training run", "not a search run")


# ----- issue 14 leftovers: a file never chooses code to import; data folders stored absolute -----
EVIL_MODULE = "attnas_evil_teacher_mod"


def _evil_module(folder: Path, marker: Path) -> None:
    """A module whose import creates ``marker`` (and defines an nn.Module 'Net')."""
    (folder / f"{EVIL_MODULE}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nimport torch.nn as nn\n\n\nclass Net(nn.Linear):\n"
        f"    stages = ()\n")


@pytest.mark.parametrize("spec", ["os:system", f"{EVIL_MODULE}:Net", "subprocess:Popen", "attnas.nothing:Net"])
def test_teacher_class_named_by_a_file_is_not_imported(spec, tmp_path, capsys, monkeypatch):
    from attnas.errors import ConfigError
    from attnas.teacher import CifarResNet, load_teacher

    marker = tmp_path / "IMPORTED"
    _evil_module(tmp_path, marker)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, EVIL_MODULE, raising=False)
    net = CifarResNet(depth=8, width=2, num_classes=4)
    ckpt = tmp_path / "teacher.pt"
    torch.save({"teacher_class": spec, "teacher_options": {}, "teacher_stages": ["layer1"],
                "state_dict": net.state_dict()}, ckpt)
    with pytest.raises(ConfigError, match="not a registered attnas teacher class"):
        load_teacher(str(ckpt))
    # through the CLI: a search given the checkpoint, and a teacher run whose config names the class
    code, _, err = run_cli(["search", "--space", "nos", "--method", "nos", "--space-options",
                            '{"C": 2, "layers": 3}', "--dataset", "synthetic:3,8,4,8,4", "--epochs", "1",
                            "--batch-size", "4", "--teacher", ckpt, "--out", tmp_path / "s", "--quiet"], capsys)
    assert_one_line_error(code, err, "not a registered attnas teacher class", spec)
    run = tmp_path / "t"
    run.mkdir()
    (run / "teacher_config.json").write_text(dumps(
        {"teacher_class": spec, "teacher_options": {}, "stages": [], "options": {},
         "dataset": "synthetic:3,8,4,8,4", "data_dir": None, "epochs": 1, "batch_size": 4, "seed": 0,
         "out": str(run), "train_subset": None, "test_subset": None, "image_size": None, "device": "cpu"}))
    code, _, err = run_cli(["teacher", "train", "--resume", run, "--quiet"], capsys)
    assert_one_line_error(code, err, "not a registered attnas teacher class")
    code, _, err = run_cli(["teacher", "train", "--class", spec, "--out", tmp_path / "t2", "--epochs", "1",
                            "--dataset", "synthetic:3,8,4,8,4", "--quiet"], capsys)
    assert_one_line_error(code, err, "not a registered attnas teacher class")
    assert not marker.exists() and EVIL_MODULE not in sys.modules


def test_registered_teacher_class_is_usable(tmp_path):
    from attnas.teacher import TEACHER_CLASSES, CifarResNet, load_teacher, register_teacher, save_teacher

    class MyTeacher(CifarResNet):
        pass

    name = register_teacher(MyTeacher, "tests:MyTeacher")
    try:
        save_teacher(MyTeacher(depth=8, width=2, num_classes=3), tmp_path / "t.pt", name,
                     {"depth": 8, "width": 2, "num_classes": 3}, MyTeacher.stages)
        model, stages = load_teacher(str(tmp_path / "t.pt"))
        assert type(model) is MyTeacher and stages == list(MyTeacher.stages)
    finally:
        TEACHER_CLASSES.pop(name)


def _image_folder(root: Path, size: int = 8) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 4)):
        for cname in ("a", "b"):
            d = root / split / cname
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")


@pytest.mark.parametrize("kind", ["search", "train", "teacher"])
def test_relative_data_dir_is_stored_absolute(kind, tmp_path, capsys, monkeypatch):
    first, other = tmp_path / "first", tmp_path / "other"
    other.mkdir()
    _image_folder(first / "data" / "pets")
    monkeypatch.setenv("ATTNAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ATTNAS_DATA_DIR", raising=False)
    monkeypatch.chdir(first)
    data = ["--data-dir", "data", "--dataset", "imagefolder:pets", "--epochs", "2", "--batch-size", "8",
            "--stop-after", "1", "--out", "run", "--quiet"]
    if kind == "search":
        argv = ["search", "--space", "nb201", "--space-options", '{"C": 2, "N": 1}', "--method", "darts", *data]
    elif kind == "train":
        argv = ["train", "--arch", ARCH, "--space-options", '{"C": 2, "N": 1}', *data]
    else:
        argv = ["teacher", "train", "--teacher-options", '{"depth": 8, "width": 2}', *data]
    assert run_cli(argv, capsys)[0] == 0
    stored = json.loads((first / "run" / "config.json").read_text())["data_dir"]
    assert Path(stored).is_absolute() and Path(stored).resolve() == (first / "data").resolve()
    monkeypatch.chdir(other)  # no ./data here: a relative data_dir would not be found
    resume = ["teacher", "train"] if kind == "teacher" else [kind]
    code, out, err = run_cli([*resume, "--resume", first / "run", "--quiet", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["status"] == "done"
