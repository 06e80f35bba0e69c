"""Predictor-guided search in the DARTS and ProxylessNAS spaces (issue 16): pools of sampled
architectures, their encodings, the supernet (inherited weights) and training evaluators,
``attnas guided --space ...`` end to end, and its errors."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from attnas.cli.main import main
from attnas.predictors import (InheritedWeightsEvaluator, encoder_for, get_predictor, predictor_guided_search,
                               random_search, sample_pool)
from attnas.spaces.io import resolve_architecture
from attnas.spaces.registry import get_space

SYN = "synthetic:3,8,4,64,32"
DARTS_TINY = {"C": 4, "layers": 3}
PROXYLESS_TINY = {"variant": "cifar", "width_mult": 0.25}
TINY_TNASP = json.dumps({"epochs": 2, "min_steps": 20, "d_model": 16, "d_ff": 32, "mlp_hidden": 16})
#: a known score of an architecture: a weight per operation, summed over the normal cell / every layer
OP_WEIGHT = {"sep_conv_3x3": 1.0, "sep_conv_5x5": 0.7, "dil_conv_3x3": 0.4, "dil_conv_5x5": 0.2,
             "max_pool_3x3": -0.3, "avg_pool_3x3": -0.3, "skip_connect": -0.5, "none": 0.0,
             "mb3_k3": 0.1, "mb3_k5": 0.2, "mb3_k7": 0.3, "mb6_k3": 0.5, "mb6_k5": 0.7, "mb6_k7": 1.0, "skip": -1.0}


def known_score(arch) -> float:
    return sum(OP_WEIGHT[op] for key, op in arch.choices.items() if not key.startswith("reduce:"))


def _search(out: Path, *argv: str) -> Path:
    assert main(["search", "--dataset", SYN, "--epochs", "1", "--batch-size", "16", "--quiet",
                 "--out", str(out), *argv]) == 0
    return out


@pytest.fixture(scope="module")
def darts_run(tmp_path_factory) -> Path:
    """A one-epoch DARTS search of a 3-cell, C=4 supernet on synthetic images."""
    return _search(tmp_path_factory.mktemp("darts") / "run", "--space", "darts", "--method", "darts",
                   "--space-options", json.dumps(DARTS_TINY))


@pytest.fixture(scope="module")
def proxyless_run(tmp_path_factory) -> Path:
    """A one-epoch SPOS search of a quarter-width CIFAR ProxylessNAS supernet (tiny evolution)."""
    return _search(tmp_path_factory.mktemp("proxyless") / "run", "--space", "proxyless", "--method", "spos",
                   "--space-options", json.dumps(PROXYLESS_TINY), "--method-options",
                   '{"population": 4, "generations": 1, "top_k": 2, "mutations": 2, "crossovers": 2}')


def _json_result(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


# ----- encodings and pools -----------------------------------------------------------------------
def test_pools_are_seeded_distinct_and_encode_one_to_one() -> None:
    for name, options, tokens in (("darts", DARTS_TINY, 42), ("proxyless", PROXYLESS_TINY, 21)):
        space = get_space(name, **options)
        pool = sample_pool(space, 150, seed=3)
        assert pool == sample_pool(space, 150, seed=3) and pool != sample_pool(space, 150, seed=4)
        assert len({tuple(sorted(a.choices.items())) for a in pool}) == 150
        for a in pool[:20]:
            space.validate(a)
        enc = encoder_for(space)
        batch = enc.encode(pool)
        assert batch.ops.shape == (150, tokens)
        rows = {(batch.ops[i].numpy().tobytes(), batch.adj[i].numpy().tobytes()) for i in range(150)}
        assert len(rows) == 150  # different architectures, different encodings
        # the space's size options leave the encoding alone (a supernet run's space encodes like the default)
        assert np.array_equal(encoder_for(name).encode(pool).ops.numpy(), batch.ops.numpy())
    chain = encoder_for("proxyless").graph(sample_pool(get_space("proxyless"), 1, 0)[0])
    assert chain.adjacency.sum() == 20 and all(chain.adjacency[i, i + 1] == 1 for i in range(20))  # a path


@pytest.mark.parametrize("space_name", ["darts", "proxyless"])
def test_guided_search_beats_random_sampling_at_equal_evaluations(space_name: str) -> None:
    """With a score that is a known function of the architecture, TNASP-guided search finds
    higher-ranked architectures of the pool than random sampling with the same 30 evaluations."""
    space = get_space(space_name)
    enc = encoder_for(space)
    guided_rank, random_rank = [], []
    for seed in range(3):
        pool = sample_pool(space, 200, seed)
        ranked = sorted((known_score(a) for a in pool), reverse=True)
        g = predictor_guided_search(
            known_score, lambda r, s=seed: get_predictor("tnasp", enc, 100 * s + r, **json.loads(TINY_TNASP)),
            30, candidates=pool, initial=10, batch=10, seed=seed, encoded=enc.encode(pool))
        r = random_search(known_score, 30, candidates=pool, seed=seed)
        assert len(g.scores) == len(r.scores) == 30 and g.predictor_fits == 2
        guided_rank.append(1 + sum(s > max(g.scores) for s in ranked))
        random_rank.append(1 + sum(s > max(r.scores) for s in ranked))
    assert np.mean(guided_rank) < np.mean(random_rank), (guided_rank, random_rank)
    assert max(guided_rank) <= 5, guided_rank  # in the top 5 of 200 every time


# ----- the supernet evaluator --------------------------------------------------------------------
def test_inherited_weights_score_is_the_spos_fitness(proxyless_run: Path) -> None:
    """On a single-path supernet the inherited-weight network scores what the routed supernet
    scores in SPOS evolution (same BN-recalibration and validation images)."""
    from attnas.search.evolution import SupernetEvaluator
    from attnas.strategies.random_search import activate

    ev = InheritedWeightsEvaluator(proxyless_run, "proxyless", bn_images=32)
    info = ev.describe()
    assert info["supernet_method"] == "spos" and info["bn_images"] == 32 and info["eval_images"] > 0
    model, points = ev.model, ev.space.choice_points()
    routed = SupernetEvaluator(model, lambda a: activate(model, a, points), ev.valid, ev.bn)
    for arch in sample_pool(ev.space, 4, seed=1):
        assert ev(arch) == pytest.approx(routed(arch), abs=1e-9)


def test_cli_darts_supernet_guided_search_end_to_end(darts_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "guided" / "g.json"
    argv = ["guided", "--space", "darts", "--evaluator", "supernet", "--supernet", str(darts_run),
            "--pool", "60", "--budget", "12", "--initial", "6", "--batch", "3", "--bn-images", "32",
            "--options", TINY_TNASP, "--seed", "1", "--quiet", "--json"]
    assert main([*argv, "--out", str(out)]) == 0
    res = _json_result(capsys)
    assert res["space"] == "darts" and res["evaluator"] == "supernet" and res["supernet_method"] == "darts"
    assert res["evaluations"] == 12 and res["predictor_fits"] == 2 and res["pool"] == 60
    assert [c["evaluations"] for c in res["curve"]] == [6, 9, 12]
    scores = [c["score"] for c in res["curve"]]
    assert scores == sorted(scores) and scores[-1] == res["best_score"]
    evaluated = json.loads(out.read_text())["evaluated"]
    assert len(evaluated) == 12 and max(e["score"] for e in evaluated) == res["best_score"]
    assert evaluated[res["found_at"] - 1]["score"] == res["best_score"]
    # the reported scores are the evaluator's, and the final architecture is a file attnas train takes
    best = resolve_architecture(res["architecture"])
    assert res["architecture"] == str(out.parent / "architecture.json") and best.space == "darts"
    assert get_space("darts").to_native(best) == res["best_arch"]
    assert best.meta["method"] == "predictor-guided" and best.meta["supernet"] == str(darts_run)
    ev = InheritedWeightsEvaluator(darts_run, bn_images=32)
    assert ev(best) == pytest.approx(res["best_score"])
    assert main(["train", "--arch", res["architecture"], "--dataset", SYN, "--epochs", "1", "--batch-size", "16",
                 "--network-options", json.dumps({**DARTS_TINY, "auxiliary": False}),
                 "--out", str(tmp_path / "retrain"), "--quiet", "--json"]) == 0
    assert _json_result(capsys)["space"] == "darts"
    assert main(argv) == 0  # the seed reproduces the search
    assert _json_result(capsys)["best_arch"] == res["best_arch"]


def test_cli_proxyless_supernet_path(proxyless_run: Path, tmp_path: Path, capsys) -> None:
    """--supernet alone picks the supernet evaluator; the run's space (CIFAR variant) is searched."""
    arch_file = tmp_path / "best.json"
    assert main(["guided", "--space", "proxyless", "--supernet", str(proxyless_run), "--pool", "40",
                 "--budget", "8", "--initial", "4", "--batch", "4", "--bn-images", "32", "--predictor", "mlp",
                 "--options", '{"epochs": 2, "min_steps": 10}', "--arch-out", str(arch_file), "--json"]) == 0
    res = _json_result(capsys)
    assert res["evaluator"] == "supernet" and res["space_options"] == PROXYLESS_TINY
    assert res["evaluations"] == 8 and res["predictor_fits"] == 1
    assert res["best_arch"].count(",") == 20  # 21 layer choices, the native notation
    best = resolve_architecture(str(arch_file))
    assert best.space == "proxyless" and best.meta["score"] == res["best_score"]


def test_cli_train_evaluator(tmp_path: Path, capsys) -> None:
    """--evaluator train: each candidate trained from scratch (one epoch here), one run folder each."""
    runs = tmp_path / "runs"
    assert main(["guided", "--space", "darts", "--evaluator", "train", "--space-options", json.dumps(DARTS_TINY),
                 "--dataset", SYN, "--train-options",
                 json.dumps({"epochs": 1, "batch_size": 32, "network_options": {**DARTS_TINY, "auxiliary": False}}),
                 "--pool", "20", "--budget", "3", "--initial", "2", "--batch", "1", "--predictor", "mlp",
                 "--options", '{"epochs": 1, "min_steps": 5}', "--runs-dir", str(runs), "--quiet", "--json"]) == 0
    res = _json_result(capsys)
    assert res["evaluator"] == "train" and res["evaluations"] == 3 and res["training"]["dataset"] == SYN
    folders = sorted(runs.glob("eval-*"))
    assert len(folders) == 3
    scores = [json.loads((f / "score.json").read_text())["score"] for f in folders]
    assert max(scores) == res["best_score"]


# ----- errors: one line, exit 2, nothing written ---------------------------------------------------
ERRORS = [
    ("no-evaluator", ["--space", "darts"], "no complete table"),
    ("supernet-missing", ["--space", "darts", "--evaluator", "supernet"], "needs --supernet RUN_DIR"),
    ("not-a-run", ["--space", "darts", "--supernet", "{tmp}/nothing"], "not a search run folder"),
    ("no-checkpoint", ["--space", "darts", "--supernet", "{config_only}"], "has no checkpoint.pt"),
    ("space-mismatch", ["--space", "proxyless", "--supernet", "{darts}"], "searched space 'darts', not 'proxyless'"),
    ("bench-not-a-table", ["--bench", "darts"], "--bench takes a benchmark"),
    ("lookup-without-table", ["--space", "darts", "--evaluator", "lookup"], "needs a complete table"),
    ("budget-over-pool", ["--space", "darts", "--supernet", "{darts}", "--pool", "5", "--budget", "10",
                          "--initial", "2"], "exceeds --pool 5"),
    ("pool-with-lookup", ["--pool", "50"], "only apply to a pool"),
    ("supernet-with-train", ["--space", "darts", "--evaluator", "train", "--supernet", "{darts}"],
     "only apply to --evaluator supernet"),
    ("dataset-with-supernet", ["--space", "darts", "--supernet", "{darts}", "--dataset", SYN], "fixes the dataset"),
    ("train-arch-option", ["--space", "darts", "--evaluator", "train", "--train-options", '{"arch": "x"}'],
     "set by the evaluator"),
    ("train-bad-epochs", ["--space", "darts", "--evaluator", "train", "--train-options", '{"epochs": 0}'],
     "--epochs must be a positive integer"),
    ("bad-predictor", ["--space", "darts", "--supernet", "{darts}", "--predictor", "svm"], "unknown predictor"),
    ("initial-1", ["--space", "darts", "--supernet", "{darts}", "--initial", "1"], "--initial must be at least 2"),
    ("out-is-a-folder", ["--space", "darts", "--supernet", "{darts}", "--out", "{tmp}"], "is a folder"),
]


@pytest.mark.parametrize("case, argv, expected", ERRORS, ids=[c[0] for c in ERRORS])
def test_cli_errors_are_one_line_and_write_nothing(case, argv, expected, darts_run: Path, tmp_path: Path,
                                                   capsys) -> None:
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    (config_only / "config.json").write_text((darts_run / "config.json").read_text())
    names = {"tmp": str(tmp_path), "darts": str(darts_run), "config_only": str(config_only)}
    for name, value in names.items():
        argv = [a.replace("{" + name + "}", value) for a in argv]
    out = tmp_path / "out" / "g.json"
    if "--out" not in argv:
        argv += ["--out", str(out)]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["guided", *argv]) == 2
    stdout, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnas: error:") and expected in lines[0], err
    assert "Traceback" not in err + stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not out.parent.exists()


def test_cli_rejects_a_supernet_without_candidate_weights(tmp_path: Path, capsys) -> None:
    """EnTranNAS shares operations across a node's edges: no path to inherit, said before any search."""
    run = _search(tmp_path / "entrannas", "--space", "darts", "--method", "entrannas",
                  "--space-options", json.dumps({"C": 8, "layers": 3}))
    out = tmp_path / "out" / "g.json"
    assert main(["guided", "--space", "darts", "--supernet", str(run), "--pool", "20", "--budget", "6",
                 "--initial", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no per-choice-point candidate weights" in err[0] and not out.parent.exists()


def test_python_api_checks_the_supernet_run(darts_run: Path) -> None:
    from attnas.errors import ConfigError

    with pytest.raises(ConfigError, match="bn_images"):
        InheritedWeightsEvaluator(darts_run, bn_images=-1)
    ev = InheritedWeightsEvaluator(darts_run, "darts", bn_images=16, eval_images=8)
    assert ev.describe()["eval_images"] == 8 and ev.describe()["bn_images"] == 16
    arch = get_space("darts").sample(random.Random(5))
    assert ev(arch) == ev(arch) and 0.0 <= ev(arch) <= 1.0  # deterministic: BN recomputed the same way


def test_cli_supernet_alone_searches_the_runs_space(darts_run: Path, capsys) -> None:
    """--supernet without --space: the space the run searched (not the nb201 default of look-ups)."""
    assert main(["guided", "--supernet", str(darts_run), "--pool", "20", "--budget", "4", "--initial", "2",
                 "--batch", "2", "--bn-images", "16", "--eval-images", "16", "--predictor", "mlp",
                 "--options", '{"epochs": 1, "min_steps": 5}', "--quiet", "--json"]) == 0
    res = _json_result(capsys)
    assert res["space"] == "darts" and res["evaluator"] == "supernet" and res["evaluations"] == 4


def test_cli_train_evaluator_space_options_in_train_options(tmp_path: Path, capsys) -> None:
    """The space options given inside --train-options are the pool's too (a 2-stage TrioNet here:
    a pool of the default 3-stage space would not fit the training)."""
    space = {"depths": [1, 1], "width": 8, "heads": [1, 2]}
    assert main(["guided", "--space", "trionet", "--evaluator", "train", "--dataset", SYN, "--train-options",
                 json.dumps({"epochs": 1, "batch_size": 32, "space_options": space}),
                 "--pool", "10", "--budget", "2", "--initial", "2", "--batch", "1", "--predictor", "mlp",
                 "--options", '{"epochs": 1, "min_steps": 5}', "--quiet", "--json"]) == 0
    res = _json_result(capsys)
    assert res["evaluations"] == 2 and res["best_arch"].count(",") == 1  # two blocks
