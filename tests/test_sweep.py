"""``attnas sweep`` (grid of searches: local process pool, Ray; skip, resume, failures) and
``attnas leaderboard`` (tables, JSON, HTML page with the accuracy/search-time plot)."""
from __future__ import annotations

import base64
import contextlib
import html.parser
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from attnas.cli.main import main

SYN = "synthetic:3,8,4,64,32"
BASE = {"space": "nb201", "space_options": {"C": 4, "N": 1}, "dataset": SYN, "epochs": 1, "batch_size": 16}


def write_sweep(path: Path, base: dict, grid: dict, train: dict | None = None) -> Path:
    data = {"base": base, "grid": grid, **({"train": train} if train else {})}
    path.write_text(yaml.safe_dump(data))
    return path


def cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def events(sweep_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (sweep_dir / "runs.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """Two runs (random, darts) with retraining, two at a time in spawned processes."""
    tmp = tmp_path_factory.mktemp("sweep")
    spec = write_sweep(tmp / "grid.yaml", BASE, {"method": ["random", "darts"], "seed": [0]},
                       train={"epochs": 1, "batch_size": 16})
    out = tmp / "out"
    code, stdout, stderr = cli(["sweep", str(spec), "--out", str(out), "--jobs", "2", "--threads", "1", "--json"])
    return {"spec": spec, "out": out, "code": code, "stdout": stdout, "stderr": stderr}


def test_local_sweep_runs_every_grid_point(swept):
    out = swept["out"]
    assert swept["code"] == 0, swept["stderr"]
    summary = json.loads(swept["stdout"].strip().splitlines()[-1])
    assert summary["status"] == "done" and summary["finished"] == 2 and summary["failed"] == 0
    assert summary["jobs"] == 2 and summary["threads"] == 1 and summary["backend"] == "local"
    names = ["nb201-random-s0", "nb201-darts-s0"]
    for name in names:
        assert (out / name / "result.json").is_file() and (out / name / "train" / "result.json").is_file()
        assert (out / "logs" / f"{name}.log").is_file()
        assert json.loads((out / name / "config.json").read_text())["method"] == name.split("-")[1]
    plan = json.loads((out / "sweep.json").read_text())
    assert [r["name"] for r in plan["runs"]] == names
    assert plan["runs"][1]["values"] == {"method": "darts", "seed": 0}
    assert plan["runs"][1]["config"]["epochs"] == 1 and plan["runs"][1]["train"]["epochs"] == 1
    ev = events(out)
    assert sorted(e["run"] for e in ev if e["event"] == "done") == sorted(names)
    assert all(e["search"] == "new" and e["train"] == "new" for e in ev if e["event"] == "done")
    # progress on stderr: counts, elapsed time, and an estimate once a run has finished
    assert "sweep: finished" in swept["stderr"] and "2/2 done" in swept["stderr"]
    assert "elapsed" in swept["stderr"] and "left" in swept["stderr"]
    assert not (out / ".lock").exists()


def test_rerun_skips_finished_runs_and_dry_run_lists_them(swept):
    out = swept["out"]
    code, stdout, _ = cli(["sweep", str(swept["spec"]), "--out", str(out), "--dry-run"])
    assert code == 0 and stdout.count(" done ") == 2 and "nothing was run" in stdout
    code, stdout, stderr = cli(["sweep", str(swept["spec"]), "--out", str(out), "--quiet", "--json"])
    assert code == 0 and stderr == ""
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["skipped"] == 2 and summary["ran"] == 0
    assert [e["event"] for e in events(out)][-2:] == ["skipped", "skipped"]


def test_failed_run_is_recorded_and_tried_again(tmp_path):
    # passes the config checks (a positive batch size) but fails when the run starts: larger than the data split
    base = {k: v for k, v in BASE.items() if k != "batch_size"}
    spec = write_sweep(tmp_path / "grid.yaml", {**base, "method": "random"}, {"batch_size": [1000]})
    out = tmp_path / "out"
    for attempt in (1, 2):
        code, stdout, stderr = cli(["sweep", str(spec), "--out", str(out), "--threads", "1", "--json"])
        assert code == 2
        last = [ln for ln in stderr.splitlines() if ln.startswith("attnas: error:")]
        assert len(last) == 1 and "1 of 1 runs did not finish (nb201-random-s0)" in last[0]
        summary = json.loads(stdout.strip().splitlines()[-1])
        assert summary["status"] == "failed" and summary["failed"] == 1
        err = json.loads((out / "nb201-random-s0" / "error.json").read_text())
        assert "batch size 1000 is larger" in err["error"] and err["error_type"] == "ConfigError"
        assert "batch size 1000" in (out / "logs" / "nb201-random-s0.log").read_text()
        assert [e["event"] for e in events(out)].count("failed") == attempt


def _search(out: Path, method: str, seed: int, stop_after: int | None = None) -> None:
    from attnas import api
    from attnas.config import SearchConfig

    cfg = SearchConfig(**{**BASE, "epochs": 2}, method=method, seed=seed, out=str(out))
    api.search(cfg, progress=False, stop_after=stop_after)


def test_stopped_run_is_resumed_and_finished_run_skipped(tmp_path):
    out = tmp_path / "out"
    spec = write_sweep(tmp_path / "grid.yaml", {**BASE, "epochs": 2, "method": "random"}, {"seed": [0, 1]})
    _search(out / "nb201-random-s0", "random", 0)  # finished
    _search(out / "nb201-random-s1", "random", 1, stop_after=1)  # stopped after 1 of 2 epochs
    assert not (out / "nb201-random-s1" / "result.json").exists()
    before = (out / "nb201-random-s0" / "result.json").read_text()
    code, stdout, stderr = cli(["sweep", str(spec), "--out", str(out), "--threads", "1", "--json"])
    assert code == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["skipped"] == 1 and summary["ran"] == 1 and summary["resumed"] == 1
    ev = events(out)
    assert {e["run"]: e["event"] for e in ev if e["event"] != "started"} == {
        "nb201-random-s0": "skipped", "nb201-random-s1": "done"}
    assert next(e for e in ev if e["event"] == "done")["search"] == "resumed"
    assert (out / "nb201-random-s0" / "result.json").read_text() == before
    metrics = (out / "nb201-random-s1" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 2 and json.loads((out / "nb201-random-s1" / "result.json").read_text())["status"] == "done"
    # the leaderboard of a sweep without benchmark tables or retraining: the supernet's accuracy
    code, stdout, _ = cli(["leaderboard", str(out), "--json"])
    board = json.loads(stdout.strip().splitlines()[-1])
    (row,) = board["spaces"][0]["rows"]
    if row["measure"] == "supernet":  # (benchmark look-ups when $ATTNAS_DATA_DIR has the tables)
        assert row["runs"] == 2 and row["acc_std"] is not None and "supernet validation accuracy" in stdout


def test_sigterm_stops_the_sweep_and_the_run_it_started(tmp_path):
    """``kill PID`` of a sweep stops its worker too (as Ctrl-C does): the run's folder is free at
    once, not held by an orphan that runs on, and the stop is recorded."""
    from attnas.run_dir import RunLock

    spec = write_sweep(tmp_path / "grid.yaml", {**BASE, "epochs": 300, "method": "random"}, {"seed": [0]})
    out, run = tmp_path / "out", tmp_path / "out" / "nb201-random-s0"
    script = tmp_path / "sweep_cli.py"  # spawned workers re-import the main module: it needs the guard
    script.write_text("import sys\nfrom attnas.cli.main import main\n"
                      "if __name__ == '__main__':\n    sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, str(script), "sweep", str(spec), "--out", str(out), "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().strip()):
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "attnas: interrupted" in proc.stderr.read()
    RunLock(run).acquire().release()  # no orphan worker holds the run folder
    assert [e["event"] for e in events(out)][-1] == "interrupted"
    assert not (run / "result.json").exists()


def test_a_folder_holding_another_run_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "out"
    spec = write_sweep(tmp_path / "grid.yaml", {**BASE, "method": "random"}, {"seed": [0]})
    (out / "nb201-random-s0").mkdir(parents=True)
    (out / "nb201-random-s0" / "config.json").write_text(json.dumps({**BASE, "method": "random", "epochs": 5}))
    code, stdout, stderr = cli(["sweep", str(spec), "--out", str(out)])
    assert code == 2 and stdout == "" and len(stderr.strip().splitlines()) == 1
    assert "other settings" in stderr and "epochs: 5 there, 1 in the sweep" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["nb201-random-s0"]



def test_a_run_recorded_before_a_config_field_existed_is_the_same_run(tmp_path):
    """A finished run whose config.json predates a field (here amp and checkpoint_every) has that
    field's default: the sweep keeps it as its own finished run instead of refusing the folder."""
    out = tmp_path / "out"
    spec = write_sweep(tmp_path / "grid.yaml", {**BASE, "method": "random"}, {"seed": [0]})
    run = out / "nb201-random-s0"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({**BASE, "method": "random", "seed": 0, "device": "auto"}))
    (run / "result.json").write_text(json.dumps({"status": "done"}))
    code, stdout, stderr = cli(["sweep", str(spec), "--out", str(out), "--json"])
    assert code == 0, stderr
    assert json.loads(stdout.strip().splitlines()[-1])["skipped"] == 1
    # a recorded value that is not the default is still a different run
    (run / "config.json").write_text(json.dumps({**BASE, "method": "random", "seed": 0, "checkpoint_every": 3}))
    code, _, stderr = cli(["sweep", str(spec), "--out", str(out)])
    assert code == 2 and "checkpoint_every: 3 there, 0 in the sweep" in stderr

BAD = [
    ("top-key", {"base": BASE, "grid": {"seed": [0]}, "nope": 1}, "unknown key 'nope'"),
    ("base-key", {"base": {**BASE, "epoch": 3}, "grid": {"seed": [0]}}, "'base': unknown key 'epoch'"),
    ("grid-key", {"base": BASE, "grid": {"seeds": [0]}}, "'grid': unknown key 'seeds'"),
    ("empty-grid", {"base": BASE, "grid": {}}, "'grid' is empty"),
    ("no-grid", {"base": BASE}, "no 'grid'"),
    ("not-a-list", {"base": BASE, "grid": {"seed": 3}}, "grid 'seed' must be a non-empty list"),
    ("wrong-type", {"base": {**BASE, "epochs": None}, "grid": {"method": ["random"], "epochs": [1, "two"]}},
     "grid 'epochs' value \"two\": --epochs must be a positive integer"),
    ("base-type", {"base": {**BASE, "space_options": 3}, "grid": {"seed": [0]}}, "base: --space-options"),
    ("both", {"base": {**BASE, "seed": 1}, "grid": {"seed": [0]}}, "'seed' is in both 'base' and 'grid'"),
    ("out", {"base": {**BASE, "out": "x"}, "grid": {"seed": [0]}}, "'base' may not set 'out'"),
    ("method", {"base": BASE, "grid": {"method": ["random", "nope"]}}, "unknown method 'nope'"),
    ("option", {"base": BASE, "grid": {"method": ["darts"], "method_options.arch_lr": ["fast"]}}, "'arch_lr'"),
    ("train-key", {"base": BASE, "grid": {"seed": [0]}, "train": {"arch": "x"}}, "'train': unknown key 'arch'"),
    ("not-a-mapping", [1, 2], "must hold a mapping"),
]


@pytest.mark.parametrize("case,data,expected", BAD, ids=[c[0] for c in BAD])
def test_invalid_sweep_file_is_one_line_and_writes_nothing(tmp_path, case, data, expected):
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(data))
    code, stdout, stderr = cli(["sweep", str(spec), "--out", str(tmp_path / "out")])
    assert code == 2 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("attnas: error: ")
    assert expected in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags,expected", [
    (["--jobs", "0"], "--jobs must be a positive integer"),
    (["--jobs", "1000"], "more than the"),
    (["--address", "x:1"], "--address is the address of a Ray cluster"),
    (["--out", "{spec}"], "is a file"),
])
def test_bad_executor_settings(tmp_path, flags, expected):
    spec = write_sweep(tmp_path / "grid.yaml", BASE, {"seed": [0]})
    flags = [str(spec) if f == "{spec}" else f for f in flags]
    code, _, stderr = cli(["sweep", str(spec), "--out", str(tmp_path / "out"), *flags])
    assert code == 2 and expected in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_run_names_are_deterministic_and_unique():
    from attnas.sweeps.spec import plan_runs

    grid = {"method": ["itnas", "darts"], "epochs": [1, 2], "method_options": [{}, {"arch_lr": 0.001}],
            "seed": [0, 1]}
    runs = plan_runs({**BASE, "epochs": None}, grid, None)
    names = [r.name for r in runs]
    assert len(set(names)) == len(names) == 16
    assert names[0].startswith("nb201-itnas-e1-h") and names[0].endswith("-s0")
    assert names == [r.name for r in plan_runs({**BASE, "epochs": None}, grid, None)]
    assert [r.name for r in plan_runs(BASE, {"seed": [3]}, None)] == ["nb201-itnas-s3"]


# ----- leaderboard -----------------------------------------------------------------------------
class Page(html.parser.HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.imgs, self.refs, self.cells, self.tables = [], [], [], 0
        self._in_cell = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.imgs += [a] if tag == "img" else []
        self.refs += [a[k] for k in ("src", "href") if a.get(k)]
        self.tables += tag == "table"
        self._in_cell = tag in ("td", "th")

    def handle_data(self, data):
        if self._in_cell:
            self.cells.append(data.strip())


def test_leaderboard_table_json_and_html(swept, tmp_path):
    page_path = tmp_path / "board.html"
    code, stdout, stderr = cli(["leaderboard", str(swept["out"]), "-o", str(page_path), "--json"])
    assert code == 0, stderr
    board = json.loads(stdout.strip().splitlines()[-1])
    assert board["runs"] == 2 and [s["space"] for s in board["spaces"]] == ["nb201"]
    rows = {r["method"]: r for r in board["spaces"][0]["rows"]}
    assert set(rows) == {"random", "darts"}
    for r in rows.values():
        assert r["runs"] == 1 and r["acc_std"] is None and r["search_time_s_mean"] > 0
        # retrained test accuracy, unless the search looked the architecture up in a benchmark table
        assert r["measure"] in ("retrained", "benchmark") and 0 <= r["acc_mean"] <= 100
    text = stdout.split("{", 1)[0]
    assert "space nb201: 2 runs" in text and "found acc (%) mean ± std" in text and "search time (s) mean" in text
    assert re.search(r"^random\s+1\s+\d+\.\d\d ± n/a", text, re.MULTILINE)
    assert re.search(r"^darts\s+1\s", text, re.MULTILINE)
    page = Page(page_path.read_text())
    assert page.tables >= 1 and "random" in page.cells and "darts" in page.cells
    assert len(page.imgs) == 1 and board["html"]["images"] == 1
    raw = base64.b64decode(page.imgs[0]["src"].split(",", 1)[1], validate=True)
    assert page.imgs[0]["src"].startswith("data:image/png;base64,") and raw[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(ref.startswith(("data:", "#")) for ref in page.refs)


def _fake_run(folder: Path, method: str, seed: int, acc: float, time_s: float) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({**BASE, "method": method, "seed": seed, "dataset": "cifar10"}))
    (folder / "result.json").write_text(json.dumps({
        "status": "done", "method": method, "space": "nb201",
        "architecture": "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "valid_acc": 0.5, "search_time_s": time_s,
        "benchmark": {"bench_cifar10_test_acc": acc, "bench_cifar10_rank": 7, "bench_cifar100_test_acc": 1.0}}))


def test_leaderboard_uses_benchmark_accuracy_and_ranks_the_mean(tmp_path):
    from conftest import find_data_dir

    for seed, acc in enumerate((93.0, 94.0)):
        _fake_run(tmp_path / "runs" / f"a-s{seed}", "itnas", seed, acc, 10.0 + seed)
    _fake_run(tmp_path / "runs" / "deeper" / "b-s0", "darts", 0, 54.3, 5.0)
    (tmp_path / "runs" / "stopped").mkdir()
    (tmp_path / "runs" / "stopped" / "config.json").write_text(json.dumps({**BASE, "method": "darts"}))
    data = find_data_dir()
    extra = ["--data-dir", str(data)] if data else []
    code, stdout, stderr = cli(["leaderboard", str(tmp_path / "runs"), "--json", *extra])
    assert code == 0, stderr
    board = json.loads(stdout.strip().splitlines()[-1])
    itnas, darts = board["spaces"][0]["rows"]  # best mean first
    assert itnas["method"] == "itnas" and itnas["runs"] == 2 and itnas["acc_mean"] == pytest.approx(93.5)
    assert itnas["acc_std"] == pytest.approx(0.7071, abs=1e-4) and itnas["search_time_s_mean"] == pytest.approx(10.5)
    assert itnas["measure"] == "benchmark" and itnas["benchmark_dataset"] == "cifar10"
    assert darts["acc_mean"] == pytest.approx(54.3) and board["unfinished"] == [str(tmp_path / "runs" / "stopped")]
    assert "benchmark test accuracy (cifar10)" in stdout and "93.50 ± 0.71" in stdout
    if data and (data / "nasbench201" / "nasbench201_cifar10.json").is_file():
        assert itnas["space_size"] == 15625 and 1 <= itnas["rank_of_mean"] < darts["rank_of_mean"]
        assert f"{itnas['rank_of_mean']}/15625" in stdout



def test_leaderboard_variants_ignore_checkpointing_and_fields_a_run_predates(tmp_path):
    """Runs that differ only in how often they checkpointed, or that were recorded before a config
    field existed (its default then), are one row; a real difference (amp on) is another."""
    for seed in (0, 1, 2):
        _fake_run(tmp_path / "runs" / f"a-s{seed}", "itnas", seed, 93.0 + seed, 10.0)
    cfg = json.loads((tmp_path / "runs" / "a-s1" / "config.json").read_text())
    (tmp_path / "runs" / "a-s1" / "config.json").write_text(json.dumps({**cfg, "checkpoint_every": 5, "amp": False}))
    cfg = json.loads((tmp_path / "runs" / "a-s2" / "config.json").read_text())
    (tmp_path / "runs" / "a-s2" / "config.json").write_text(json.dumps({**cfg, "amp": True}))
    code, stdout, stderr = cli(["leaderboard", str(tmp_path / "runs"), "--json"])
    assert code == 0, stderr
    rows = json.loads(stdout.strip().splitlines()[-1])["spaces"][0]["rows"]
    assert sorted((r["runs"], r["variant"]) for r in rows) == [(1, "amp=true"), (2, "amp=false")]


def test_leaderboard_variants_are_per_method(tmp_path):
    """Options that only one method's runs have, shared by all of them (two sweeps into one folder,
    e.g. SPOS with shortened evolution beside IT-NAS), make no variant; options that differ between
    runs of the same method do."""
    for seed in (0, 1):
        _fake_run(tmp_path / "runs" / f"i-s{seed}", "itnas", seed, 93.0, 10.0)
        _fake_run(tmp_path / "runs" / f"s-s{seed}", "spos", seed, 92.0, 10.0)
        cfg = json.loads((tmp_path / "runs" / f"s-s{seed}" / "config.json").read_text())
        (tmp_path / "runs" / f"s-s{seed}" / "config.json").write_text(
            json.dumps({**cfg, "method_options": {"population": 20}}))
    _fake_run(tmp_path / "runs" / "s-s9", "spos", 9, 91.0, 10.0)
    code, stdout, stderr = cli(["leaderboard", str(tmp_path / "runs"), "--json"])
    assert code == 0, stderr
    rows = json.loads(stdout.strip().splitlines()[-1])["spaces"][0]["rows"]
    assert sorted((r["method"], r["runs"], r["variant"]) for r in rows) == [
        ("itnas", 2, ""), ("spos", 1, "method_options=null"), ("spos", 2, 'method_options={"population": 20}')]

@pytest.mark.parametrize("make,extra,expected", [
    (lambda p: p / "missing", [], "does not exist"),
    (lambda p: p, [], "no finished search run"),
    (lambda p: p, ["--data-dir", "/nonexistent/tables"], "data folder '/nonexistent/tables'"),
    (lambda p: p, ["-o", "/nonexistent/board.html"], "cannot write"),
])
def test_leaderboard_bad_input_is_one_line(tmp_path, make, extra, expected):
    code, stdout, stderr = cli(["leaderboard", str(make(tmp_path)), *extra])
    assert code == 2 and stdout == "" and expected in stderr and len(stderr.strip().splitlines()) == 1


# ----- ray -------------------------------------------------------------------------------------
def test_ray_backend_without_ray_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    spec = write_sweep(tmp_path / "grid.yaml", BASE, {"seed": [0]})
    code, stdout, stderr = cli(["sweep", str(spec), "--out", str(tmp_path / "out"), "--backend", "ray"])
    assert code == 2 and stdout == "" and "pip install 'attnas[ray]'" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_ray_sweep_runs_a_two_run_grid(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'attnas[ray]')")
    spec = write_sweep(tmp_path / "grid.yaml", {**BASE, "method": "random"}, {"seed": [0, 1]})
    out = tmp_path / "out"
    code, stdout, stderr = cli(["sweep", str(spec), "--out", str(out), "--backend", "ray", "--jobs", "2",
                                "--threads", "1", "--json"])
    assert code == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["backend"] == "ray" and summary["finished"] == 2
    assert all((out / f"nb201-random-s{s}" / "result.json").is_file() for s in (0, 1))
    assert {e["backend"] for e in events(out) if e["event"] == "started"} == {"ray"}


def test_leaderboard_ranks_macro_means_in_the_table(tmp_path):
    """NAS-Bench-Macro rows get the rank of their mean among the table's 6,561 architectures."""
    from conftest import find_data_dir

    data = find_data_dir()
    if not data or not (data / "nasbench_macro" / "nas-bench-macro_cifar10.json").is_file():
        pytest.skip("needs the NAS-Bench-Macro table (data folder)")
    from attnas.benchmarks.macro import MacroBench
    accs = MacroBench(data).array("mean_acc")
    for seed, acc in enumerate((91.0, 92.0)):
        folder = tmp_path / "runs" / f"m-s{seed}"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"space": "macro", "method": "spos", "seed": seed,
                                                        "dataset": "cifar10"}))
        (folder / "result.json").write_text(json.dumps({"status": "done", "method": "spos", "space": "macro",
                                                        "architecture": "01201201", "search_time_s": 1.0,
                                                        "benchmark": {"bench_cifar10_test_acc": acc}}))
    code, stdout, stderr = cli(["leaderboard", str(tmp_path / "runs"), "--json", "--data-dir", str(data)])
    assert code == 0, stderr
    (row,) = json.loads(stdout.strip().splitlines()[-1])["spaces"][0]["rows"]
    assert row["space_size"] == 6561 and row["rank_of_mean"] == 1 + int((accs > 91.5).sum())
