"""End-to-end: the CLI contract, resume after a stop or a kill, clear one-line errors."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnas.cli.main import main

TINY = ["--space", "nb201", "--space-options", '{"C": 4, "N": 1}', "--dataset", "synthetic:3,8,4,256,64",
        "--batch-size", "32", "--quiet"]


def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def comparable_metrics(run: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("epoch_time_s")
    return rows


def test_search_writes_run_folder_and_json(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["search", *TINY, "--method", "darts", "--epochs", "2", "--seed", "1",
                               "--out", str(out), "--json"], capsys)
    assert code == 0
    result = last_json(stdout)
    assert result["status"] == "done" and result["epochs_done"] == 2
    for name in ("architecture.json", "metrics.jsonl", "checkpoint.pt", "config.json", "scores.json"):
        assert (out / name).exists(), name
    arch = json.loads((out / "architecture.json").read_text())
    assert arch["space"] == "nb201" and arch["native"].count("~") == 6
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["resolved_method_options"]["arch_lr"] == 3e-4  # the preset, resolved
    assert "choice point" in stdout  # the scores table is printed
    assert not list(out.glob("*.tmp"))  # atomic writes leave no temporaries


@pytest.mark.parametrize("method", ["darts", "random"])
def test_stopped_search_resumes_to_the_same_result(tmp_path, capsys, method):
    a, b = tmp_path / "a", tmp_path / "b"
    base = ["search", *TINY, "--method", method, "--epochs", "3", "--seed", "3"]
    assert run_cli([*base, "--out", str(a)], capsys)[0] == 0
    code, stdout, _ = run_cli([*base, "--out", str(b), "--stop-after", "1", "--json"], capsys)
    assert code == 0 and last_json(stdout)["status"] == "stopped"
    assert not (b / "architecture.json").exists()
    assert run_cli(["search", "--resume", str(b), "--quiet"], capsys)[0] == 0
    assert json.loads((a / "architecture.json").read_text()) == json.loads((b / "architecture.json").read_text())
    assert json.loads((a / "scores.json").read_text()) == json.loads((b / "scores.json").read_text())
    assert comparable_metrics(a) == comparable_metrics(b)


KILL_CASES = {
    "darts": TINY,
    "itnas": TINY,
    "entrannas-dst": ["--space", "darts", "--space-options", '{"C": 4, "layers": 3}',
                      "--dataset", "synthetic:3,8,4,128,32", "--batch-size", "32", "--quiet"],
    "spos": ["--space", "macro", "--space-options", '{"C": 4, "head": 16}',
             "--method-options", '{"population": 4, "generations": 1, "top_k": 2, "mutations": 2, "crossovers": 2}',
             "--dataset", "synthetic:3,8,4,128,32", "--batch-size", "32", "--quiet"],
    "trionet": ["--space", "trionet", "--space-options", '{"layout": "cifar", "depths": [1, 1], "width": 8, "heads": [1, 2]}',
                "--method-options", '{"population": 4, "generations": 1, "top_k": 2, "mutations": 2, "crossovers": 2, '
                                    '"bn_images": 32, "eval_images": 32, "warmup_epochs": 1}',
                "--dataset", "synthetic:3,16,4,64,32", "--batch-size", "16", "--quiet"],
}


@pytest.mark.parametrize("method", list(KILL_CASES))
def test_killed_search_resumes(tmp_path, capsys, method):
    """SIGKILL a search process after its first checkpoint; --resume finishes it identically."""
    ref, run = tmp_path / "ref", tmp_path / "killed"
    base = ["search", *KILL_CASES[method], "--method", method, "--epochs", "3", "--seed", "5"]
    assert run_cli([*base, "--out", str(ref)], capsys)[0] == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "attnas.cli.main", *base, "--out", str(run)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "checkpoint.pt").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / "checkpoint.pt").exists()
    assert run_cli(["search", "--resume", str(run), "--quiet"], capsys)[0] == 0
    assert json.loads((ref / "architecture.json").read_text()) == json.loads((run / "architecture.json").read_text())
    assert comparable_metrics(ref) == comparable_metrics(run)


def test_train_retrains_and_resumes(tmp_path, capsys):
    arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    base = ["train", "--arch", arch, "--space-options", '{"C": 4, "N": 1}', "--dataset", "synthetic:3,8,4,256,64",
            "--epochs", "2", "--batch-size", "64", "--seed", "2", "--quiet"]
    code, stdout, _ = run_cli([*base, "--out", str(tmp_path / "a"), "--json"], capsys)
    assert code == 0
    res = last_json(stdout)
    assert res["status"] == "done" and 0.0 <= res["test_acc"] <= 1.0 and res["params"] > 0
    assert (tmp_path / "a" / "weights.pt").exists()
    assert run_cli([*base, "--out", str(tmp_path / "b"), "--stop-after", "1"], capsys)[0] == 0
    assert run_cli(["train", "--resume", str(tmp_path / "b"), "--quiet"], capsys)[0] == 0
    assert comparable_metrics(tmp_path / "a") == comparable_metrics(tmp_path / "b")


def test_existing_run_folder_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "r"
    assert run_cli(["search", *TINY, "--method", "darts", "--epochs", "1", "--out", str(out)], capsys)[0] == 0
    code, _, err = run_cli(["search", *TINY, "--method", "darts", "--epochs", "1", "--out", str(out)], capsys)
    assert code == 2 and "--resume" in err


@pytest.mark.parametrize("argv, expected", [
    (["search", "--space", "nope"], "unknown space 'nope'"),
    (["search", "--method", "nope", "--dataset", "synthetic:3,8,4"], "unknown method 'nope'"),
    (["search", "--dataset", "cifar10", "--data-dir", "/nonexistent/data"], "/nonexistent/data"),
    (["search", "--dataset", "synthetic:3,2,4"], "at least 4x4, got 2x2"),
    (["search", "--space-options", "{bad"], "--space-options must be a JSON object"),
    (["search", "--space", "nb201", "--space-options", '{"depth": 3}', "--dataset", "synthetic:3,8,4"],
     "bad option for space 'nb201'"),
    (["train", "--arch", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"], "unknown operation 'conv'"),
    (["search", "--resume", "/nonexistent/run"], "not a search run folder"),
])
def test_bad_input_is_a_one_line_error(argv, expected, capsys, tmp_path):
    code, _, err = run_cli([*argv, "--quiet"] if argv[0] in ("search", "train") else argv, capsys)
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("attnas: error:"), err
    assert expected in lines[0]


def test_malformed_architecture_file(tmp_path, capsys):
    bad = tmp_path / "arch.json"
    bad.write_text(json.dumps({"space": "nb201", "choices": {"cell:0->1": "nor_conv_3x3"}}))
    code, _, err = run_cli(["train", "--arch", str(bad), "--quiet"], capsys)
    assert code == 2 and "missing choice points" in err and len(err.strip().splitlines()) == 1


def test_search_query_retrain_pipeline(tmp_path, capsys, data_dir):
    """Issue 2's user story: search on NAS-Bench-201, look the result up, retrain it."""
    from conftest import require_data
    require_data(data_dir, "nasbench201/nasbench201_cifar10.json")
    run = tmp_path / "search"
    code, stdout, _ = run_cli(["search", *TINY, "--method", "darts", "--epochs", "2", "--out", str(run),
                               "--data-dir", str(data_dir), "--json"], capsys)
    assert code == 0
    res = last_json(stdout)
    # the benchmark accuracy of the derived cell is tracked per epoch and reported at the end
    assert 0 < res["benchmark"]["bench_cifar10_test_acc"] <= 100
    rows = comparable_metrics(run)
    assert all("bench_cifar10_test_acc" in r for r in rows)
    code, stdout, _ = run_cli(["query", "--bench", "nb201", "--arch", str(run / "architecture.json"),
                               "--data-dir", str(data_dir), "--json"], capsys)
    assert code == 0
    q = last_json(stdout)
    assert q["cifar10"]["test_acc"] == res["benchmark"]["bench_cifar10_test_acc"]
    assert set(q) >= {"cifar10", "cifar100", "ImageNet16-120"}
    code, stdout, _ = run_cli(["train", "--arch", str(run / "architecture.json"), "--space-options",
                               '{"C": 4, "N": 1}', "--dataset", "synthetic:3,8,4,256,64", "--epochs", "1",
                               "--out", str(tmp_path / "train"), "--quiet", "--json"], capsys)
    assert code == 0 and last_json(stdout)["status"] == "done"


def test_no_argument_search_is_the_embedded_itnas_default(tmp_path, capsys, monkeypatch):
    """``attnas search`` alone = IT-NAS on NAS-Bench-201 (C=8, N=1) over digits, 10 epochs; any
    scale-defining option turns the embedded scale off (then the preset decides)."""
    from attnas.config import embedded_default_applies

    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(["search", "--stop-after", "1", "--quiet"], capsys)
    assert code == 0 and "continue with: attnas search --resume" in out
    run = next((tmp_path / "runs").iterdir())
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["space"], cfg["method"], cfg["dataset"], cfg["epochs"]) == ("nb201", "itnas", "digits", 10)
    assert cfg["space_options"] == {"C": 8, "N": 1}
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert embedded_default_applies(space=None, dataset=None, epochs=None, space_options=None, config=None)
    assert not embedded_default_applies(space="darts")
    assert not embedded_default_applies(epochs=3)


def test_scores_table_shortens_long_rows_and_keeps_the_chosen_candidate():
    """TrioNet's layers score 72 candidates: a row shows the highest scores, largest first, and
    the chosen one even when its score is low, and says how many more are in scores.json."""
    from attnas.cli.common import scores_table
    cands = [f"op{i}" for i in range(72)]
    scores = [i / 100 for i in range(72)]                       # op71 highest
    out = scores_table({"layer:0": cands, "layer:1": cands[:3]}, {"layer:0": scores, "layer:1": [0.2, 0.5, 0.3]},
                       {"layer:0": "op2", "layer:1": "op1"}, top=4, full=3, where="run/scores.json")
    row0, row1 = out.splitlines()[2:]
    shown = [c.split("=")[0] for c in row0.split()[1:] if "=" in c]
    assert shown == ["op71", "op70", "op69", "op68", "op2"]     # top 4 by score, then the chosen one
    assert "op2=0.020*" in row0 and "(+67 more in run/scores.json)" in row0
    assert "op0=0.200   op1=0.500*  op2=0.300" in row1 and "more in" not in row1   # short rows unchanged
    assert max(len(line) for line in out.splitlines()) < 200


def test_scores_table_long_rows_with_nan_and_unscored_candidates():
    """NaN scores sort last; a chosen candidate without a score (fewer scores than candidates)
    is named in a note."""
    import math

    from attnas.cli.common import scores_table
    cands = [f"o{i}" for i in range(8)]
    row = scores_table({"x": cands}, {"x": [0.1, math.nan, 0.9, 0.3, 0.8, 0.7]}, {"x": "o7"},
                       top=3, full=3).splitlines()[2]
    shown = [c.split("=")[0] for c in row.split()[1:] if "=" in c]
    assert shown == ["o2", "o4", "o5"] and "(+3 more in scores.json)" in row and "(chosen: o7)" in row


def test_scores_table_shows_every_candidate_of_a_darts_or_nos_edge():
    """Rows of up to 12 candidates (NOS's edges have 11) are shown whole, in the space's order."""
    from attnas.cli.common import scores_table
    cands = [f"o{i}" for i in range(11)]
    row = scores_table({"e": cands}, {"e": [i / 10 for i in range(11)]}, {"e": "o3"}).splitlines()[2]
    assert [c.split("=")[0] for c in row.split()[1:]] == cands and "more in" not in row


def test_architecture_cell_summarises_long_choices_and_keeps_native_strings():
    """The search summary's architecture cell: a native string (a genotype) whole, short choices as
    JSON, and choices whose JSON is too wide (a NOS cell's 36 edges) as operation counts, most
    frequent first, that fit the width and name the file that holds them all."""
    from attnas.cli.common import architecture_cell
    genotype = "Genotype(normal=[('sep_conv_3x3', 0)] * 8, ...)" * 4
    assert architecture_cell(genotype) == genotype
    assert architecture_cell({"e0": "conv", "e1": "skip"}) == '{"e0": "conv", "e1": "skip"}'
    ops = ["none"] * 12 + ["max_pool_3x3"] * 8 + [f"{chr(ord('z') - i)}_op" for i in range(16)]
    choices = {f"normal:{i}": op for i, op in enumerate(ops)}
    cell = architecture_cell(choices, where="run/architecture.json", width=110)
    assert cell.startswith("36 choices: none x12, max_pool_3x3 x8, z_op x1, y_op x1")  # ties: first chosen first
    assert cell.endswith("other operations (all in run/architecture.json)") and len(cell) <= 110
    shown = cell.split(": ", 1)[1].split(", +")[0].split(", ")
    others = int(cell.split(", +")[1].split()[0])
    assert len(shown) + others == 18  # every operation is either named or counted
    wide = architecture_cell(choices, width=300)   # the JSON is wider; every count fits
    assert "other operation" not in wide and len(re.findall(r" x\d+", wide)) == 18
    two = architecture_cell({f"edge{i}": "sep_conv_3x3" if i else "skip_connect" for i in range(12)}, width=60)
    assert two == "12 choices: sep_conv_3x3 x11, +1 other operation (all in architecture.json)"


def test_search_summary_of_a_nos_cell_stays_narrow(tmp_path, capsys):
    """A NOS search (no native string: 36 choices) printed its architecture as JSON, and every
    row of the summary table was padded to its width (over 1,000 characters)."""
    code, out, _ = run_cli(["search", "--space", "nos", "--method", "nos", "--space-options",
                            '{"C": 2, "layers": 3}', "--dataset", "synthetic:3,8,4,8,4", "--epochs", "1",
                            "--batch-size", "4", "--out", str(tmp_path / "s"), "--quiet", "--json"], capsys)
    assert code == 0
    lines = out.strip().splitlines()[:-1]   # the last line is the JSON result
    arch_row = next(ln for ln in lines if ln.startswith("architecture"))
    assert "36 choices: " in arch_row and "architecture.json" in arch_row
    assert max(len(ln) for ln in lines) <= 300   # the widest rows: 11 candidates' scores per edge
    assert all(ln == ln.rstrip() for ln in lines)
