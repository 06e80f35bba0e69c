"""Tabular benchmark look-ups (attnas.benchmarks) and ``attnas query``.

Real-data tests read $ATTNAS_DATA_DIR (else <repo>/../shared/data) and skip
when the folder is absent; the format checks run on small hand-made files.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from attnas.arch import Architecture
from attnas.spaces.io import save_architecture
from attnas.benchmarks import (BenchmarkFileError, Darts214, MacroBench, NB101Sample, NB201Bench,
                               genotype_to_architecture, nb201_index, parse_genotype, prune_nb101)
from attnas.benchmarks.nb201 import NB201_SIZE, _canonical_natives
from attnas.cli.main import main
from attnas.errors import ArchitectureError, AttnasError, DataFileNotFound
from attnas.spaces.nb201 import NB201Space

REPO = Path(__file__).resolve().parents[1]
BEST_C10 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def _data_dir() -> Path | None:
    env = os.environ.get("ATTNAS_DATA_DIR")
    if env and Path(env).is_dir():
        return Path(env)
    p = REPO.parent / "shared" / "data"
    return p if p.is_dir() else None


DATA = _data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="benchmark data folder not found "
                                                     "(set ATTNAS_DATA_DIR or provide <repo>/../shared/data)")


# ----------------------------------------------------------------------------- NAS-Bench-201
def test_nb201_canonical_index_roundtrip() -> None:
    natives = _canonical_natives()
    assert len(natives) == NB201_SIZE == len(set(natives))
    for n in (0, 1, 4, 5, 777, NB201_SIZE - 1):
        assert nb201_index(natives[n]) == n
        assert nb201_index(NB201Space.parse_native(natives[n])) == n
    assert natives[0] == "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@needs_data
def test_nb201_query_known_optimum() -> None:
    b = NB201Bench(DATA)
    r = b.query(BEST_C10)
    assert r["arch"] == BEST_C10
    assert r["cifar10"]["test_acc"] == pytest.approx(94.3733, abs=1e-3)
    assert r["cifar10"]["val_acc"] == pytest.approx(91.6067, abs=1e-3)
    assert set(r) == {"arch", "index", "cifar10", "cifar100", "ImageNet16-120"}
    # the published NB201 v1.1 optima (README)
    assert b.best("cifar10")["accuracy"] == pytest.approx(94.37, abs=0.01)
    assert b.best("cifar10", "val")["accuracy"] == pytest.approx(91.61, abs=0.01)
    assert b.best("cifar100")["accuracy"] == pytest.approx(73.51, abs=0.01)
    assert b.best("ImageNet16-120")["accuracy"] == pytest.approx(47.31, abs=0.01)
    # Architecture input == string input; bulk arrays agree with single look-ups
    arch = NB201Space.parse_native(BEST_C10)
    assert b.query(arch) == r
    assert b.accuracies("cifar100", "test")[r["index"]] == r["cifar100"]["test_acc"]
    assert len(b.accuracies()) == NB201_SIZE and np.isfinite(b.accuracies("ImageNet16-120", "val")).all()


@needs_data
def test_nb201_table_is_cached_per_process() -> None:
    b1, b2 = NB201Bench(DATA), NB201Bench(DATA)
    assert b1._table("cifar10")[0] is b2._table("cifar10")[0]


@needs_data
def test_nb201_bad_architectures() -> None:
    b = NB201Bench(DATA)
    with pytest.raises(ArchitectureError, match="not a NAS-Bench-201 cell string"):
        b.query("|nor_conv_3x3~0|+|none~0|")
    with pytest.raises(ArchitectureError, match="unknown operation 'conv_7x7'"):
        b.query("|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(ArchitectureError, match="space 'darts'"):
        b.query(Architecture("darts", {}))


def test_nb201_missing_data_folder(tmp_path: Path) -> None:
    with pytest.raises(DataFileNotFound, match="nasbench201_cifar10.json"):
        NB201Bench(tmp_path).query(BEST_C10)


def test_nb201_file_that_does_not_match_the_space(tmp_path: Path) -> None:
    d = tmp_path / "nasbench201"
    d.mkdir()
    rec = {"val_acc_200": 1.0, "test_acc_200": 1.0, "rank": 1}
    (d / "nasbench201_cifar10.json").write_text(json.dumps({"|conv~0|+|x~0|": rec}))
    with pytest.raises(BenchmarkFileError, match="does not match the nb201 space"):
        NB201Bench(tmp_path).query(BEST_C10)
    (d / "nasbench201_cifar10.json").write_text(json.dumps({BEST_C10: rec}))
    with pytest.raises(BenchmarkFileError, match="covers 1 of the 15625"):
        NB201Bench(tmp_path).query(BEST_C10)


# ----------------------------------------------------------------------------- NAS-Bench-Macro
@needs_data
def test_macro_query() -> None:
    m = MacroBench(DATA)
    r = m.query("11111221")
    assert r["mean_acc"] == pytest.approx(92.30, abs=0.01)
    assert r["params"] == 2181386 and r["of"] == 6561
    assert len(r["test_acc"]) == 3 and r["mean_acc"] == pytest.approx(np.mean(r["test_acc"]), abs=1e-4)
    ranks = m.array("rank")
    acc = m.array("mean_acc")
    assert ranks.min() == 1 and m.best()["rank"] == 1 and m.best()["mean_acc"] == acc.max()
    assert (acc > r["mean_acc"]).sum() + 1 == r["rank"]  # competition rank


@needs_data
@pytest.mark.parametrize("bad", ["1111122", "111112213", "11111231", "abcdefgh", ""])
def test_macro_malformed_string(bad: str) -> None:
    with pytest.raises(ArchitectureError, match="not a NAS-Bench-Macro architecture"):
        MacroBench(DATA).query(bad)


def test_macro_file_that_does_not_match(tmp_path: Path) -> None:
    d = tmp_path / "nasbench_macro"
    d.mkdir()
    (d / "nas-bench-macro_cifar10.json").write_text(json.dumps({"0123": {"mean_acc": 1}}))
    with pytest.raises(BenchmarkFileError, match="does not match the macro space"):
        MacroBench(tmp_path).query("00000000")


# ----------------------------------------------------------------------------- NAS-Bench-101
def test_prune_nb101_removes_dead_vertices() -> None:
    a = np.zeros((7, 7), dtype=int)
    a[0, 1] = a[1, 6] = 1          # input -> conv -> output
    a[0, 2] = 1                    # vertex 2: a sink that is not the output (dead)
    a[3, 6] = 1                    # vertex 3: a source that is not the input (dead)
    ops = ["input", "conv3x3-bn-relu", "maxpool3x3", "conv1x1-bn-relu", "maxpool3x3", "maxpool3x3", "output"]
    pa, pops = prune_nb101(a, ops)  # vertices 4, 5 are isolated
    assert pops == ("input", "conv3x3-bn-relu", "output")
    assert pa.tolist() == [[0, 1, 0], [0, 0, 1], [0, 0, 0]]
    with pytest.raises(ArchitectureError, match="no path from the input"):
        prune_nb101(np.zeros((3, 3), dtype=int), ["input", "maxpool3x3", "output"])
    with pytest.raises(ArchitectureError, match="upper triangular"):
        prune_nb101(np.tril(np.ones((3, 3), dtype=int)), ["input", "maxpool3x3", "output"])


@needs_data
def test_nb101_sample_decoding() -> None:
    s = NB101Sample(DATA)
    assert len(s) == 500
    sizes = [r.num_nodes for r in s.records]
    assert min(sizes) >= 2 and max(sizes) <= 7 and sizes.count(7) < 500  # padding detected
    for r in s.records:
        assert r.ops[0] == "input" and r.ops[-1] == "output"
        assert r.adjacency.shape == (r.num_nodes, r.num_nodes) and int(r.adjacency.sum()) <= 9
        assert r.raw_adjacency.shape == (7, 7)
    acc = s.accuracies()
    assert 73 < acc.min() and acc.max() < 95


# ----------------------------------------------------------------------------- DARTS-214
GENO = ("Genotype(normal=[[('max_pool_3x3', 0), ('skip_connect', 1)], [('sep_conv_3x3', 2), ('sep_conv_5x5', 0)], "
        "[('sep_conv_3x3', 1), ('max_pool_3x3', 0)], [('sep_conv_5x5', 0), ('max_pool_3x3', 2)]], "
        "normal_concat=range(2, 6), reduce=[[('sep_conv_5x5', 1), ('avg_pool_3x3', 0)], [('skip_connect', 0), "
        "('dil_conv_3x3', 2)], [('avg_pool_3x3', 1), ('dil_conv_3x3', 2)], [('skip_connect', 1), "
        "('sep_conv_3x3', 3)]], reduce_concat=range(2, 6))")


def test_parse_genotype_grouped_and_flat() -> None:
    g = parse_genotype(GENO)
    assert len(g.normal) == 8 and g.normal[2] == ("sep_conv_3x3", 2) and g.reduce_concat == (2, 3, 4, 5)
    flat = ("Genotype(normal=" + repr(list(g.normal)) + ", normal_concat=[2, 3, 4, 5], reduce="
            + repr(list(g.reduce)) + ", reduce_concat=range(2, 6))")
    assert parse_genotype(flat) == g
    arch = genotype_to_architecture(g)
    assert arch.space == "darts" and len(arch.choices) == 28
    assert arch.choices["normal:2->3"] == "sep_conv_3x3" and arch.choices["normal:1->3"] == "none"
    assert sum(op != "none" for op in arch.choices.values()) == 16
    with pytest.raises(ArchitectureError, match="cannot parse DARTS genotype"):
        parse_genotype("Genotype(normal=[('sep_conv_3x3', 0)]")
    with pytest.raises(ArchitectureError, match="takes input 0 twice"):
        genotype_to_architecture(GENO.replace("('skip_connect', 1)", "('skip_connect', 0)", 1))


@needs_data
def test_darts214_records() -> None:
    d = Darts214(DATA)
    assert len(d) == 214
    assert d[0].test_acc == pytest.approx(97.06)
    normal, reduce = d.cells(0)
    assert normal[0] == ("max_pool_3x3", 0) and len(reduce) == 8
    acc = d.accuracies()
    assert 96.1 < min(acc) and max(acc) < 97.6


# ----------------------------------------------------------------------------- CLI
@needs_data
def test_cli_query_nb201_json_last_line(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(["query", "--bench", "nb201", "--arch", BEST_C10, "--data-dir", str(DATA), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    res = json.loads(out[-1])
    assert res["cifar10"]["test_acc"] == pytest.approx(94.3733, abs=1e-3)
    assert any("ImageNet16-120" in line for line in out[:-1])  # the table
    path = tmp_path / "a.json"
    save_architecture(NB201Space.parse_native(BEST_C10), path)
    assert main(["query", "--bench", "nb201", "--arch", str(path), "--data-dir", str(DATA), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["index"] == res["index"]


@needs_data
def test_cli_query_macro(capsys: pytest.CaptureFixture) -> None:
    assert main(["query", "--bench", "macro", "--arch", "11111221", "--data-dir", str(DATA), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["arch"] == "11111221" and res["rank"] >= 1 and res["flops"] > 0


@needs_data
def test_cli_query_macro_architecture_file(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    from attnas.errors import ConfigError
    from attnas.spaces.registry import get_space_class

    try:
        cls = get_space_class("macro")
    except ConfigError:
        pytest.skip("no 'macro' chain space registered")
    path = tmp_path / "m.json"
    save_architecture(cls.parse_native("11111221"), path)
    assert main(["query", "--bench", "macro", "--arch", str(path), "--data-dir", str(DATA), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["arch"] == "11111221"
    assert MacroBench(DATA).query(cls.parse_native("11111221"))["params"] == 2181386


def test_cli_query_errors(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert main(["query", "--bench", "macro", "--arch", "1234", "--data-dir", str(tmp_path)]) == 2
    assert "not a NAS-Bench-Macro architecture" in capsys.readouterr().err
    assert main(["query", "--bench", "nb999", "--arch", "x"]) == 2
    assert "unknown benchmark 'nb999'" in capsys.readouterr().err
    assert main(["query", "--bench", "nb201", "--arch", BEST_C10, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnas: error:") and "nasbench201_cifar10.json" in err and len(err.splitlines()) == 1
    assert issubclass(BenchmarkFileError, AttnasError)


# ----------------------------------------------------------------------------- benchmarks keyed by space
def test_benchmark_registry_is_keyed_by_space(tmp_path: Path) -> None:
    from attnas.benchmarks.registry import benchmark_for, benchmark_spaces

    assert {"nb201", "macro"} <= set(benchmark_spaces())
    assert benchmark_for("darts", DATA) is None                  # no table for the space
    assert benchmark_for("nb201", tmp_path) is None              # table absent: no look-up, no error
    if DATA is None:
        pytest.skip("benchmark data folder not found")
    rec = benchmark_for("macro", DATA)("11111221")
    assert rec["bench_cifar10_test_acc"] == pytest.approx(92.30, abs=0.01) and rec["bench_cifar10_rank"] >= 1
    assert benchmark_for("nb201", DATA)(BEST_C10)["bench_cifar10_test_acc"] > 94


@needs_data
def test_macro_search_tracks_its_trajectory_and_evolve_looks_up_nb201(tmp_path: Path) -> None:
    """Every space with a table gets per-epoch look-ups in search and a final one in evolve."""
    base = ["--dataset", "synthetic:3,16,10,64,32", "--epochs", "1", "--batch-size", "16", "--quiet",
            "--data-dir", str(DATA)]
    assert main(["search", "--space", "macro", "--method", "itnas", "--method-options", '{"warmup": 0}',
                 *base, "--out", str(tmp_path / "m")]) == 0
    rec = json.loads((tmp_path / "m" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 80 < rec["bench_cifar10_test_acc"] < 94
    res = json.loads((tmp_path / "m" / "result.json").read_text())
    assert res["benchmark"]["bench_cifar10_test_acc"] == MacroBench(DATA).query(res["architecture"])["mean_acc"]
    assert main(["search", "--space", "nb201", "--method", "spos", "--space-options", '{"C": 4, "N": 1}',
                 "--method-options", '{"population": 4, "generations": 1, "top_k": 2, "mutations": 2, '
                 '"crossovers": 2}', *base, "--out", str(tmp_path / "n")]) == 0
    assert main(["evolve", str(tmp_path / "n"), "--out", str(tmp_path / "n" / "ev"), "--quiet"]) == 0
    ev = json.loads((tmp_path / "n" / "ev" / "evolution.json").read_text())
    assert 0 < ev["benchmark"]["bench_cifar10_test_acc"] <= 100
