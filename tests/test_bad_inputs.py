"""Issue 14, second half: bad input is one line on stderr, exit status 2, and nothing written.

A table of bad command lines (every case of the issue plus more) goes through the in-process
CLI: each must exit 2 with exactly one stderr line starting ``attnas: error:``, no traceback,
and leave ``--out`` absent (or unchanged when it existed).  Hypothesis then throws malformed
architecture specs and option dicts at the Python API: each either is accepted (the run
reaches its first epoch, stubbed out here) or is an :class:`attnas.errors.AttnasError` raised
before anything is written.  Also: augmentation sizes follow the image size (item 6), long
phases show progress (item 8), and the smaller fixes of item 9.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest

from attnas.cli.main import main

SYN = "synthetic:3,8,4,64,32"
ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
SMALL = ["--space", "nb201", "--space-options", '{"C": 4, "N": 1}', "--dataset", SYN]
TRAIN = ["--arch", ARCH, "--space-options", '{"C": 4, "N": 1}', "--dataset", SYN]
SPOS = ["--space", "macro", "--space-options", '{"C": 4, "head": 16}', "--method", "spos",
        "--dataset", "synthetic:3,8,4,128,32", "--batch-size", "32"]
DARTS_GENOTYPE = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
                  "('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
                  "('sep_conv_3x3', 1)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
                  "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
                  "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")

#: files a case refers to by name ({NAME} in its argv); written into tmp_path
FILES = {
    "lr_str.json": {"method": "darts", "method_options": {"weights": {"lr": "abc"}}},
    "types.json": {"epochs": "ten"},
    "space_opts.json": {"space_options": 3},
    "unknown.json": {"epoch": 3},
    "list.json": [1, 2, 3],
    "bad.json": "{nope",
    "arch_list.json": [1, 2],
    "arch_choices.json": {"space": "nb201", "choices": {"cell:0->1": 3}},
    "arch_space.json": {"space": 7, "choices": {}},
    "arch_meta.json": {"space": "nb201", "native": ARCH, "meta": "x"},
    "arch_unknown_space.json": {"space": "nope", "choices": {}},
    "arch_other.json": {"space": "darts", "native": DARTS_GENOTYPE},
    "arch_missing.json": {"space": "nb201", "choices": {"cell:0->1": "nor_conv_3x3"}},
}

# (case id, argv, text the error line must contain)
CASES = [
    # --- item 7 of the issue
    ("train-epochs-0", ["train", *TRAIN, "--epochs", "0"], "--epochs must be a positive integer"),
    ("search-epochs-0", ["search", *SMALL, "--epochs", "0"], "--epochs must be a positive integer"),
    ("lr-negative", ["search", *SMALL, "--method", "darts", "--method-options", '{"weights": {"lr": -1}}'],
     "'weights.lr'"),
    ("lr-string-config", ["search", *SMALL, "--config", "{lr_str.json}"], "'weights.lr'"),
    ("lr-string-train", ["train", *TRAIN, "--options", '{"weights": {"lr": "fast"}}'], "'weights.lr'"),
    ("out-is-a-file", ["search", *SMALL, "--method", "darts", "--out", "{file}"], "is a file"),
    ("out-under-proc", ["search", *SMALL, "--method", "darts", "--batch-size", "16", "--out", "/proc/attnas-test/run"], "/proc/attnas-test"),
    ("out-under-dev-null", ["train", *TRAIN, "--out", "/dev/null/x"], "/dev/null/x"),
    ("arch-of-another-space", ["train", "--arch", "{arch_other.json}", "--space-options", '{"C": 4, "N": 1}',
                               "--dataset", SYN], "bad option for space 'darts'"),
    ("train-batch-negative", ["train", *TRAIN, "--batch-size", "-4"], "--batch-size must be a positive integer"),
    ("search-batch-zero", ["search", *SMALL, "--batch-size", "0"], "--batch-size must be a positive integer"),
    ("search-batch-huge", ["search", *SMALL, "--method", "darts", "--batch-size", "100000"], "batch size 100000"),
    ("stop-after-0", ["search", *SMALL, "--method", "darts", "--stop-after", "0"], "--stop-after"),
    ("train-stop-after-negative", ["train", *TRAIN, "--stop-after", "-1"], "--stop-after"),
    ("seed-not-integer", ["search", *SMALL, "--seed", "abc"], "--seed"),
    ("seed-float", ["train", *TRAIN, "--seed", "1.5"], "--seed"),
    ("seed-negative", ["search", *SMALL, "--seed", "-1"], "--seed must be an integer"),
    ("seed-huge", ["search", *SMALL, "--seed", str(2**70)], "--seed must be an integer"),
    ("image-size-0", ["search", *SMALL, "--image-size", "0"], "--image-size must be a positive integer"),
    ("image-size-huge", ["train", *TRAIN, "--image-size", "100000"], "--image-size must be at most"),
    ("train-subset-0", ["search", *SMALL, "--train-subset", "0"], "--train-subset must be a positive integer"),
    ("train-subset-too-big", ["search", "--space-options", '{"C": 4, "N": 1}', "--train-subset", "100000"],
     "larger than the"),
    ("test-subset-negative", ["train", *TRAIN, "--test-subset", "-3"], "--test-subset"),
    ("epochs-not-integer", ["train", *TRAIN, "--epochs", "ten"], "--epochs"),
    # --- unknown keys and wrong types in every kind of option
    ("unknown-method-option", ["search", *SMALL, "--method", "darts", "--method-options", '{"bogus": 1}'],
     "unknown option 'bogus'"),
    ("unknown-nested-option", ["search", *SMALL, "--method", "darts", "--method-options",
                               '{"weights": {"speed": 1}}'], "unknown option 'weights.speed'"),
    ("method-option-wrong-type", ["search", *SPOS, "--method-options", '{"population": 2.5}'], "'population'"),
    ("method-option-not-object", ["search", *SMALL, "--method", "darts", "--method-options", '{"weights": 5}'],
     "'weights'"),
    ("method-option-nan", ["search", *SMALL, "--method", "darts", "--method-options", '{"arch_lr": NaN}'],
     "'arch_lr'"),
    ("method-option-tuple-length", ["search", *SMALL, "--method", "darts", "--method-options",
                                    '{"arch_betas": [0.5]}'], "'arch_betas'"),
    ("evolution-population-0", ["search", *SPOS, "--method-options", '{"population": 0}'], "'population'"),
    ("train-portion-out-of-range", ["search", *SMALL, "--method", "darts", "--method-options",
                                    '{"train_portion": 1.5}'], "train_portion"),
    ("unknown-space-option", ["search", *SMALL[:2], "--space-options", '{"bogus": 1}', "--dataset", SYN],
     "unknown option(s) ['bogus']"),
    ("space-option-wrong-type", ["search", "--space", "nb201", "--space-options", '{"C": "big"}', "--dataset", SYN],
     "'C' must be a positive integer"),
    ("space-option-negative", ["train", "--arch", ARCH, "--space-options", '{"C": -3}', "--dataset", SYN],
     "'C' must be a positive integer"),
    ("space-options-not-object", ["search", "--space-options", "[1, 2]", "--dataset", SYN], "--space-options"),
    ("space-options-not-json", ["search", "--space-options", "{bad", "--dataset", SYN], "--space-options"),
    ("network-option-unknown", ["train", *TRAIN, "--network-options", '{"bogus": 1}'], "bogus"),
    ("retrain-option-unknown", ["train", *TRAIN, "--options", '{"cutot": 4}'], "unknown option 'cutot'"),
    ("config-wrong-type", ["search", "--config", "{types.json}"], "--epochs must be a positive integer"),
    ("config-space-options-not-object", ["search", "--config", "{space_opts.json}"], "--space-options"),
    ("config-unknown-key", ["search", "--config", "{unknown.json}"], "unknown option(s) ['epoch']"),
    ("config-not-a-mapping", ["train", *TRAIN, "--config", "{list.json}"], "must hold a mapping"),
    ("config-not-json", ["search", "--config", "{bad.json}"], "cannot parse config file"),
    ("config-missing", ["search", "--config", "/nonexistent/config.json"], "does not exist"),
    # --- malformed architectures
    ("arch-not-json", ["train", "--arch", "{bad.json}", "--dataset", SYN], "is not valid JSON"),
    ("arch-json-list", ["train", "--arch", "{arch_list.json}", "--dataset", SYN], "must be an object"),
    ("arch-choices-not-strings", ["train", "--arch", "{arch_choices.json}", "--dataset", SYN], "'choices'"),
    ("arch-space-not-a-name", ["train", "--arch", "{arch_space.json}", "--dataset", SYN], "'space'"),
    ("arch-meta-not-object", ["train", "--arch", "{arch_meta.json}", "--dataset", SYN], "'meta'"),
    ("arch-unknown-space", ["train", "--arch", "{arch_unknown_space.json}", "--dataset", SYN], "unknown space"),
    ("arch-missing-edges", ["train", "--arch", "{arch_missing.json}", "--dataset", SYN], "missing choice points"),
    ("arch-file-missing", ["train", "--arch", "/nonexistent/arch.json", "--dataset", SYN], "does not exist"),
    ("arch-string-garbage", ["train", "--arch", "not-an-architecture", "--dataset", SYN], "cannot tell the space"),
    ("arch-string-unknown-op", ["train", "--arch", ARCH.replace("nor_conv_1x1", "conv9"), "--dataset", SYN],
     "conv9"),
    ("arch-string-truncated", ["train", "--arch", ARCH[:30], "--dataset", SYN], "attnas: error:"),
    ("no-arch", ["train", "--dataset", SYN], "no architecture given"),
    # --- item 6: an explicit cutout that erases the 8x8 digits
    ("cutout-erases-image", ["train", "--arch", ARCH, "--space-options", '{"C": 4, "N": 1}',
                             "--options", '{"cutout": 8}'], "would erase the whole 8x8 image"),
    ("cutout-negative", ["train", *TRAIN, "--options", '{"cutout": -1}'], "'cutout'"),
    # --- item 9: --resume with run options, --data-dir that does not exist
    ("resume-with-space", ["search", "--resume", "{run}", "--space", "darts"], "--space cannot be given with --resume"),
    ("resume-with-epochs", ["search", "--resume", "{run}", "--epochs", "3"], "--epochs cannot be given with --resume"),
    ("train-resume-with-arch", ["train", "--resume", "{run}", "--arch", ARCH], "--arch cannot be given with --resume"),
    ("resume-not-a-run", ["search", "--resume", "/nonexistent/run"], "not a search run folder"),
    ("data-dir-missing", ["search", *SMALL, "--data-dir", "/nonexistent/data"], "/nonexistent/data"),
    ("train-data-dir-missing", ["train", *TRAIN, "--data-dir", "/nonexistent/data"], "/nonexistent/data"),
    # --- names and flags
    ("unknown-space", ["search", "--space", "nope", "--dataset", SYN], "unknown space 'nope'"),
    ("unknown-method", ["search", *SMALL, "--method", "nope"], "unknown method 'nope'"),
    ("unknown-dataset", ["search", *SMALL[:4], "--dataset", "nope"], "nope"),
    ("unknown-device", ["search", *SMALL, "--device", "tpu"], "unknown device 'tpu'"),
    ("unknown-flag", ["search", "--bogus"], "unrecognized arguments: --bogus"),
    ("unknown-command", ["nope"], "invalid choice: 'nope'"),
    ("query-data-dir-missing", ["query", "--bench", "nb201", "--arch", ARCH, "--data-dir", "/nonexistent/data"],
     "/nonexistent/data"),
    ("predict-train-size-not-integer", ["predict", "--train-size", "many"], "--train-size"),
]


def _materialise(argv: list[str], tmp_path: Path) -> list[str]:
    names = {"file": str(tmp_path / "a-file"), "run": str(tmp_path / "no-run-here")}
    for name, content in FILES.items():
        names[name] = str(tmp_path / name)
    return [names[a[1:-1]] if a.startswith("{") and a.endswith("}") and a[1:-1] in names else a for a in argv]


@pytest.fixture
def case_files(tmp_path: Path) -> Path:
    for name, content in FILES.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path


def _snapshot(path: Path):
    if not path.exists():
        return None
    if path.is_file():
        return path.read_bytes()
    return sorted((str(p.relative_to(path)), p.read_bytes() if p.is_file() else None) for p in path.rglob("*"))


@pytest.mark.parametrize("case, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, argv, expected, case_files, capsys, monkeypatch):
    monkeypatch.chdir(case_files)  # a default run folder (runs/...) would appear here
    argv = _materialise(argv, case_files)
    if argv[0] in ("search", "train") and "--out" not in argv and "--resume" not in argv:
        argv += ["--out", str(case_files / "out")]
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else case_files / "out"
    before = _snapshot(out)
    code = main(argv)
    stdout, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("attnas: error:"), err
    assert "Traceback" not in err + stdout
    assert expected in lines[0], lines[0]
    assert _snapshot(out) == before, f"{out} was written"
    assert not (case_files / "runs").exists()


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: attnas") and "search" in err and "evolve" in err


# ----- Hypothesis: malformed architectures and option dicts through the Python API ------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 12), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.sampled_from(["nor_conv_3x3", "none", "skip_connect", "darts", "nb201"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


class _Reached(Exception):
    """The run got past every check: its first epoch would start now (stubbed)."""


def _stub_engine(monkeypatch) -> None:
    from attnas.training import engine

    def run(self, task):
        raise _Reached()

    monkeypatch.setattr(engine.Engine, "run", run)


def _accepted_or_attnas_error(call, out: Path) -> None:
    from attnas.errors import AttnasError

    try:
        call()
    except _Reached:
        return  # a valid input: the run starts
    except AttnasError as e:
        assert str(e).strip(), "an error without a message"
        assert not out.exists(), f"rejected input left {sorted(p.name for p in out.iterdir())} in --out"
        return
    raise AssertionError("accepted input did not reach the first epoch")


NB201_KEYS = ["cell:0->1", "cell:0->2", "cell:1->2", "cell:0->3", "cell:1->3", "cell:2->3"]


def _edited(text: str) -> st.SearchStrategy[str]:
    """``text`` with a random slice replaced by random characters (a near-miss native string)."""
    n = len(text)
    return st.builds(lambda i, k, t: text[:i] + t + text[min(n, i + k):], st.integers(0, n), st.integers(0, 8),
                     st.text(alphabet="|+~_-0123456789()[],' abcnorvskipltm", max_size=8))


NATIVE = st.one_of(_edited(ARCH), _edited(DARTS_GENOTYPE), st.text(alphabet="0123", min_size=0, max_size=12),
                   st.text(max_size=30))
ARCH_SPECS = st.one_of(
    VALUES, NATIVE,
    st.fixed_dictionaries({"space": st.sampled_from(["nb201", "darts", "macro"]), "native": NATIVE}),
    st.fixed_dictionaries({"space": st.one_of(st.sampled_from(["nb201", "darts", "macro", "nope"]), SCALARS)},
                          optional={"choices": st.one_of(VALUES, st.dictionaries(
                              st.sampled_from(NB201_KEYS + ["x", "layer:0"]),
                              st.one_of(st.sampled_from(["nor_conv_3x3", "none", "avg_pool_3x3", "conv"]), SCALARS),
                              max_size=7)),
                                    "native": st.one_of(st.text(max_size=40), SCALARS,
                                                        st.just(ARCH), st.just(ARCH[:-5])),
                                    "meta": st.one_of(VALUES, st.fixed_dictionaries(
                                        {"space_options": st.dictionaries(st.sampled_from(["C", "N", "layers", "q"]),
                                                                          SCALARS, max_size=2)}))}))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=ARCH_SPECS, as_string=st.booleans(), space_options=st.sampled_from([{}, {"C": 2, "N": 1}]))
def test_malformed_architectures_fail_cleanly(spec, as_string, space_options, monkeypatch):
    from attnas.api import train
    from attnas.config import TrainConfig

    _stub_engine(monkeypatch)
    with tempfile.TemporaryDirectory() as d:
        if as_string and isinstance(spec, str) and spec.strip() and "\x00" not in spec:
            arch = spec
        else:
            arch = str(Path(d) / "arch.json")
            Path(arch).write_text(json.dumps(spec, allow_nan=True))
        out = Path(d) / "out"
        _accepted_or_attnas_error(lambda: train(TrainConfig(arch=arch, dataset=SYN, epochs=1, batch_size=16,
                                                            space_options=dict(space_options), out=str(out)),
                                                progress=False), out)


METHOD_KEYS = {"darts": ["epochs", "batch_size", "arch_lr", "arch_betas", "order", "train_portion", "recompute",
                         "weights", "unrolled_eps", "bogus"],
               "spos": ["population", "generations", "top_k", "mutation_prob", "lr_schedule", "fair", "flops_budget",
                        "bn_images", "eval_images", "weights", "train_portion"],
               "random": ["num_samples", "eval_batches", "train_portion", "weights"]}
WEIGHT_KEYS = ["lr", "lr_min", "momentum", "weight_decay", "grad_clip", "nope"]


@st.composite
def _search_inputs(draw):
    method = draw(st.sampled_from(sorted(METHOD_KEYS)))
    value = st.one_of(SCALARS, VALUES, st.dictionaries(st.sampled_from(WEIGHT_KEYS), SCALARS, max_size=3))
    options = draw(st.dictionaries(st.sampled_from(METHOD_KEYS[method]), value, max_size=3))
    space = draw(st.sampled_from(["nb201", "macro"]))
    space_keys = {"nb201": ["C", "N", "layers"], "macro": ["C", "head", "N"]}[space]
    space_options = draw(st.one_of(st.just({"C": 2, "N": 1} if space == "nb201" else {"C": 2, "head": 8}),
                                   st.dictionaries(st.sampled_from(space_keys), st.one_of(st.integers(-2, 3), SCALARS),
                                                   max_size=2)))
    batch = draw(st.one_of(st.none(), st.integers(-3, 40), st.just(10**9)))
    return method, options, space, space_options, batch


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inputs=_search_inputs())
def test_malformed_options_fail_cleanly(inputs, monkeypatch):
    from attnas.api import search
    from attnas.config import SearchConfig

    method, options, space, space_options, batch = inputs
    if space == "nb201" and isinstance(space_options.get("N"), int) and space_options.get("N", 0) > 1:
        space_options["N"] = 1  # keep a valid supernet small
    _stub_engine(monkeypatch)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        cfg = SearchConfig(space=space, method=method, dataset=SYN, epochs=1, batch_size=batch,
                           space_options=space_options, method_options=options, out=str(out))
        _accepted_or_attnas_error(lambda: search(cfg, progress=False), out)


# ----- item 6: augmentation sizes follow the image size -----------------------------------------------------

def test_augmentation_sizes_follow_the_image_size():
    from attnas.data.augment import crop_padding_for, default_augment, effective_cutout
    from attnas.data.datasets import load_dataset
    from attnas.errors import ConfigError

    assert [crop_padding_for(s) for s in (32, 8, 4)] == [4, 1, 0]
    assert effective_cutout(16, 32) == 16 and effective_cutout(16, 8) == 4 and effective_cutout(0, 8) == 0
    assert effective_cutout(3, 8, explicit=True) == 3
    with pytest.raises(ConfigError, match="erase"):
        effective_cutout(8, 8, explicit=True)
    aug = default_augment(load_dataset(SYN), cutout=16)  # 8x8 images
    assert (aug.crop_padding, aug.cutout) == (1, 4)


def test_retraining_on_small_images_uses_the_capped_cutout(tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["train", *TRAIN, "--epochs", "1", "--batch-size", "32", "--out", str(out), "--quiet"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["resolved_options"]["cutout"] == 4  # the preset's 16, capped at half the 8x8 side
    assert cfg["resolved_options"]["epochs"] == 1 and cfg["resolved_options"]["batch_size"] == 32  # item 9


# ----- item 8: progress of long phases; times include every phase ---------------------------------------

def test_evolution_states_its_budget_and_reports_every_generation():
    import random

    from attnas.presets import SPOSPreset
    from attnas.search.evolution import EvolutionSearch
    from attnas.spaces.registry import get_space

    space = get_space("macro", C=4, head=16)
    cfg = SPOSPreset(population=6, generations=3, top_k=2, mutations=2, crossovers=2)
    lines: list[str] = []
    res = EvolutionSearch(space, cfg, random.Random(0), lambda a: random.Random(str(a.choices)).random(),
                          log=lines.append).run()
    assert lines[0].startswith("evolution: population 6 x 3 generations") and "up to 24 candidates" in lines[0]
    assert "estimate for up to 24 candidates" in lines[1]
    gens = [ln for ln in lines if ln.startswith("evolution generation")]
    assert [g.split(":")[0] for g in gens] == [f"evolution generation {g}/3" for g in range(4)]
    assert all("candidates scored" in g and "best so far" in g and "elapsed" in g for g in gens)
    assert f"best so far {res.best_score:.4f}" in gens[-1]


def test_spos_search_shows_evolution_progress_and_counts_its_time(tmp_path, capsys):
    evo = ["--method-options", '{"population": 4, "generations": 2, "top_k": 2, "mutations": 2, "crossovers": 2}',
           "--epochs", "1"]
    out = tmp_path / "s"
    assert main(["search", *SPOS, *evo, "--out", str(out), "--json"]) == 0
    stdout, err = capsys.readouterr()
    assert "evolution: population 4 x 2 generations" in err and "evolution generation 2/2" in err
    result = json.loads(stdout.strip().splitlines()[-1])
    epochs = sum(json.loads(ln)["epoch_time_s"] for ln in (out / "metrics.jsonl").read_text().splitlines())
    assert result["selection_time_s"] > 0
    assert math.isclose(result["search_time_s"], epochs + result["selection_time_s"], abs_tol=0.02)
    # item 9: the table says what the numbers are, and '*' marks the derived architecture's choice
    arch = json.loads((out / "architecture.json").read_text())["choices"]
    assert "sampling frequencies" in stdout
    rows = [ln for ln in stdout.splitlines() if ln.startswith("layer:")]
    assert len(rows) == len(arch)
    for row in rows:
        key, *cells = row.split()
        assert [c.split("=")[0] for c in cells if c.endswith("*")] == [arch[key]]
    # --quiet: no progress at all
    assert main(["search", *SPOS, *evo, "--out", str(tmp_path / "q"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_predictor_training_reports_progress(monkeypatch):
    import random

    from attnas.predictors import train as ptrain
    from attnas.predictors.encoders import encoder_for
    from attnas.predictors.registry import get_predictor
    from attnas.spaces.registry import get_space

    monkeypatch.setattr(ptrain, "PROGRESS_EVERY_S", 0.0)
    space, rng = get_space("nb201"), random.Random(0)
    archs = [space.sample(rng) for _ in range(12)]
    model = get_predictor("mlp", encoder_for("nb201"), 0, epochs=1, min_steps=3)
    lines: list[str] = []
    model.log = lines.append
    model.fit(archs, [rng.random() for _ in archs])
    assert lines[0].startswith("mlp") or "training on 12 architectures" in lines[0]
    assert any("step 3/3" in ln for ln in lines)


# ----- item 9: learning rate of the epoch, resolved epochs --------------------------------------------------

def test_search_metrics_log_the_learning_rate_the_epoch_used(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["search", *SMALL, "--method", "darts", "--epochs", "2", "--batch-size", "16", "--out", str(out),
                 "--quiet"]) == 0
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    lr, lr_min = 0.025, 0.001  # the DARTS preset's cosine schedule over 2 epochs
    assert math.isclose(rows[0]["lr"], lr)
    assert math.isclose(rows[1]["lr"], lr_min + (lr - lr_min) * (1 + math.cos(math.pi / 2)) / 2)
    resolved = json.loads((out / "config.json").read_text())["resolved_method_options"]
    assert resolved["epochs"] == 2 and resolved["batch_size"] == 16


def test_readme_lists_every_command_space_and_method():
    from attnas.cli.main import COMMAND_MODULES
    from attnas.spaces.registry import space_names
    from attnas.strategies.base import strategy_names

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = [ln for ln in readme.splitlines() if ln.startswith("| `attnas")]
    listed = {ln.split("`")[1].split()[1] for ln in table if len(ln.split("`")[1].split()) > 1}
    missing = [m.rsplit(".", 1)[1] for m in COMMAND_MODULES if m.rsplit(".", 1)[1] not in listed]
    assert not missing, f"commands missing from the README's table: {missing}"
    assert not [n for n in space_names() if f"`{n}`" not in readme]
    assert not [n for n in strategy_names() if f"`{n}`" not in readme]
