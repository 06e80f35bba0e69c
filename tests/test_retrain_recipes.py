"""Per-method retraining recipes, learning-rate schedules and fine-tuning from inherited weights
(``attnas train --recipe`` / ``--options`` / ``--init-from``)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from attnas.cli.main import main
from attnas.presets import RETRAIN_RECIPES, override, retrain_recipe
from attnas.spaces.io import load_architecture, save_architecture
from attnas.training.schedules import retrain_optimizer

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
SYN = "synthetic:3,8,4,64,32"
SPACE = ["--space-options", '{"C": 4, "N": 1}']
#: a training of the tiny nb201 network on 64 synthetic images, without an --arch
TINY = [*SPACE, "--dataset", SYN, "--batch-size", "32", "--seed", "3", "--quiet"]


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def config_of(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def metrics_of(run: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("epoch_time_s")
    return rows


def arch_file(tmp_path: Path, method: str | None, name: str = "arch.json") -> Path:
    """The nb201 architecture ARCH as an architecture.json found by ``method``."""
    arch = load_architecture(ARCH, space="nb201")
    if method is not None:
        arch.meta["method"] = method
    path = tmp_path / name
    save_architecture(arch, path)
    return path


def lrs(options: dict, epochs: int) -> list[float]:
    """The learning rate each epoch of a run of ``epochs`` trains with."""
    cfg = override(retrain_recipe("darts"), options)
    opt, sched = retrain_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg, epochs)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


# ----- schedules -------------------------------------------------------------------------------
@pytest.mark.parametrize("options, epochs, expected", [
    # warm-up: epoch e < w at lr (e+1)/(w+1), then linear decay to lr_min over the other 5 epochs
    ({"lr_schedule": "linear", "warmup_epochs": 2, "weights": {"lr": 1.0, "lr_min": 0.0}}, 7,
     [1 / 3, 2 / 3, 1.0, 0.8, 0.6, 0.4, 0.2]),
    ({"lr_schedule": "linear", "weights": {"lr": 1.0, "lr_min": 0.1}}, 5, [1.0, 0.82, 0.64, 0.46, 0.28]),
    # step: halved every 2 epochs after the warm-up
    ({"lr_schedule": "step", "warmup_epochs": 2, "step_size": 2, "step_gamma": 0.5, "weights": {"lr": 1.0}}, 7,
     [1 / 3, 2 / 3, 1.0, 1.0, 0.5, 0.5, 0.25]),
    ({"lr_schedule": "step", "step_size": 3, "step_gamma": 0.1, "weights": {"lr": 0.5}}, 7,
     [0.5, 0.5, 0.5, 0.05, 0.05, 0.05, 0.005]),
    # cosine after 3 warm-up epochs: 0.5 (1 + cos(pi t / 4)) for the 4 others
    ({"warmup_epochs": 3, "weights": {"lr": 1.0, "lr_min": 0.0}}, 7,
     [0.25, 0.5, 0.75] + [0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)]),
    # a run shorter than its warm-up warms up over all but its last epoch
    ({"warmup_epochs": 10, "weights": {"lr": 1.0}}, 3, [1 / 3, 2 / 3, 1.0]),
])
def test_schedule_values(options, epochs, expected):
    assert lrs(options, epochs) == pytest.approx(expected, abs=1e-12)


def test_the_darts_default_is_still_plain_cosine():
    """The default recipe keeps the schedule (and the checkpoint layout) of before."""
    cfg = retrain_recipe("darts")
    opt, sched = retrain_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg, 4)
    assert type(sched) is torch.optim.lr_scheduler.CosineAnnealingLR
    assert not opt.param_groups[0]["nesterov"]
    assert lrs({}, 4) == pytest.approx([0.025 * 0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)])


@pytest.mark.parametrize("options", [
    {"lr_schedule": "step", "warmup_epochs": 2, "step_size": 2, "step_gamma": 0.5},
    {"lr_schedule": "linear", "warmup_epochs": 3, "weights": {"lr_min": 0.001}},
])
def test_schedule_state_resumes_exactly(options, tmp_path):
    """Optimizer and scheduler saved after 3 epochs, written and read as the engine does (tensors
    and plain data only), then loaded into new ones: the same rates as an uninterrupted run."""
    from attnas.training.checkpoint import atomic_torch_save, safe_torch_load

    cfg = override(retrain_recipe("darts"), options)
    opt, sched = retrain_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg, 8)
    for _ in range(3):
        opt.step()
        sched.step()
    atomic_torch_save({"optim": opt.state_dict(), "sched": sched.state_dict()}, tmp_path / "state.pt")
    state = safe_torch_load(tmp_path / "state.pt")
    opt2, sched2 = retrain_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg, 8)
    opt2.load_state_dict(state["optim"])
    sched2.load_state_dict(state["sched"])
    rest = []
    for _ in range(5):
        rest.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert rest == pytest.approx(lrs(options, 8)[3:], abs=0)


def test_nesterov_and_label_smoothing_reach_the_step():
    """The trionet recipe's Nesterov SGD and label smoothing 0.1 are what a training step uses."""
    from attnas.data.datasets import load_dataset
    from attnas.spaces.registry import get_space
    from attnas.training.tasks import RetrainTask

    data = load_dataset(SYN, None, seed=0)
    space = get_space("nb201", C=4, N=1)
    torch.manual_seed(0)
    net = space.build_network(load_architecture(ARCH, space="nb201"), data.num_classes, data.in_channels,
                              data.image_size)
    cfg = retrain_recipe("trionet")
    task = RetrainTask(net, data, cfg, 2, 32, 0, torch.device("cpu"))
    assert task.opt.param_groups[0]["nesterov"] and task.opt.param_groups[0]["momentum"] == 0.9
    assert task.opt.param_groups[0]["lr"] == pytest.approx(0.025 / 2)  # first of 1 warm-up epoch (2-epoch run)
    x, y = next(iter(task.batches(0)))
    with torch.no_grad():
        task.net.train()
        logits = task.net(x)
        smoothed = float(F.cross_entropy(logits, y, label_smoothing=0.1))
        plain = float(F.cross_entropy(logits, y))
    loss = task.train_step((x, y), 0, 0)["loss"]
    assert loss == pytest.approx(smoothed, rel=1e-5) and abs(smoothed - plain) > 1e-4


# ----- recipes: by method, by name, overridden, resumed -----------------------------------------------
@pytest.mark.parametrize("method, flags, recipe, lr", [
    (None, [], "darts", 0.025),
    ("itnas", [], "darts", 0.025),                  # a method without a recipe of its own
    ("nos", [], "nos", 0.25),
    ("trionet", [], "trionet", 0.025),
    ("trionet", ["--recipe", "nos-imagenet"], "nos-imagenet", 0.25),
    ("nos", ["--recipe", "nos-cifar100", "--options", '{"weights": {"lr": 0.1}, "lr_schedule": "step"}'],
     "nos-cifar100", 0.1),
])
def test_recipe_follows_the_method_or_the_flag(method, flags, recipe, lr, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(["train", "--arch", arch_file(tmp_path, method), *TINY, "--epochs", "1",
                                 *flags, "--out", out, "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["recipe"] == recipe
    cfg = config_of(out)
    resolved = cfg["resolved_options"]
    expected = override(RETRAIN_RECIPES[recipe], json.loads(flags[flags.index("--options") + 1])
                        if "--options" in flags else {})
    assert cfg["recipe"] == recipe and resolved["weights"]["lr"] == lr
    for name in ("lr_schedule", "warmup_epochs", "nesterov", "label_smoothing", "drop_path"):  # cutout: scaled to 8x8
        assert resolved[name] == getattr(expected, name), name
    assert resolved["weights"]["weight_decay"] == expected.weights.weight_decay


def test_a_run_folder_names_its_method(tmp_path, capsys):
    """--arch RUN_DIR: the architecture.json of the folder, and the recipe of its method."""
    run = tmp_path / "search"
    run.mkdir()
    arch_file(run, "trionet", "architecture.json")
    out = tmp_path / "train"
    assert run_cli(["train", "--arch", run, *TINY, "--epochs", "1", "--out", out], capsys)[0] == 0
    cfg = config_of(out)
    assert cfg["recipe"] == "trionet" and cfg["resolved_options"]["nesterov"] is True


def test_step_schedule_with_warmup_resumes_exactly(tmp_path, capsys):
    """A run stopped after 1 of 4 epochs and resumed gives the metrics of an uninterrupted one,
    learning rates included (warm-up 2, then halved every epoch)."""
    options = '{"lr_schedule": "step", "warmup_epochs": 2, "step_size": 1, "step_gamma": 0.5}'
    base = ["train", "--arch", arch_file(tmp_path, "nos"), *TINY, "--epochs", "4", "--options", options]
    assert run_cli([*base, "--out", tmp_path / "a"], capsys)[0] == 0
    assert run_cli([*base, "--out", tmp_path / "b", "--stop-after", "1"], capsys)[0] == 0
    assert run_cli(["train", "--resume", tmp_path / "b", "--quiet"], capsys)[0] == 0
    full, resumed = metrics_of(tmp_path / "a"), metrics_of(tmp_path / "b")
    assert full == resumed
    assert [m["lr"] for m in full] == pytest.approx([0.25 / 3, 0.25 * 2 / 3, 0.25, 0.125])
    assert config_of(tmp_path / "b")["recipe"] == "nos"


def test_a_run_recorded_before_the_recipes_resumes_with_darts(tmp_path, capsys):
    """A config.json without "recipe" is a run of the DARTS recipe, whatever its method."""
    run = tmp_path / "old"
    argv = ["train", "--arch", arch_file(tmp_path, "trionet"), *TINY, "--epochs", "2", "--recipe", "darts",
            "--out", run, "--stop-after", "1"]
    assert run_cli(argv, capsys)[0] == 0
    cfg = config_of(run)
    del cfg["recipe"]
    (run / "config.json").write_text(json.dumps(cfg))
    assert run_cli(["train", "--resume", run, "--quiet"], capsys)[0] == 0
    assert config_of(run)["recipe"] == "darts" and len(metrics_of(run)) == 2


def test_help_names_every_recipe(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for name in RETRAIN_RECIPES:
        assert f"  {name} " in text, name
    for word in ("--init-from", "--recipe", "lr_schedule", "warmup_epochs", "step_gamma", "label_smoothing"):
        assert word in text, word


# ----- --init-from ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def search_run(tmp_path_factory) -> Path:
    """A finished one-epoch DARTS search of the tiny nb201 supernet."""
    run = tmp_path_factory.mktemp("init") / "search"
    code = main(["search", "--space", "nb201", *SPACE, "--dataset", SYN, "--method", "darts", "--epochs", "1",
                 "--batch-size", "16", "--seed", "1", "--quiet", "--out", str(run)])
    assert code == 0
    return run


def inherited_state(search_run: Path) -> dict[str, torch.Tensor]:
    """The architecture's weights of the supernet, as ``attnas export --from-run`` materialises them."""
    from attnas.model_export.load import load_network

    return load_network(str(search_run), from_run=str(search_run)).network.state_dict()


FROZEN = '{"weights": {"lr": 0.0}}'  # lr 0: the convolutions keep the weights they start from


def conv_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.endswith(".weight") and v.dim() == 4}


@pytest.mark.parametrize("source", ["run", "checkpoint", "weights-file"])
def test_init_from_loads_the_inherited_weights(source, search_run, tmp_path, capsys):
    inherited = inherited_state(search_run)
    given = {"run": search_run, "checkpoint": search_run / "checkpoint.pt"}.get(source)
    if source == "weights-file":
        given = tmp_path / "subnet.pt"
        torch.save(inherited, given)
    out = tmp_path / "tuned"
    code, _, err = run_cli(["train", "--arch", search_run, "--init-from", given, *TINY, "--epochs", "1",
                            "--options", FROZEN, "--out", out], capsys)
    assert code == 0, err
    trained = torch.load(out / "weights.pt", weights_only=True)
    convs = conv_weights(inherited)
    assert len(convs) >= 3
    for k, v in convs.items():
        assert torch.equal(trained[k], v), k
    # a training from fresh weights (same seed) starts elsewhere
    fresh = tmp_path / "fresh"
    assert run_cli(["train", "--arch", search_run, *TINY, "--epochs", "1", "--options", FROZEN,
                    "--out", fresh], capsys)[0] == 0
    fresh_w = torch.load(fresh / "weights.pt", weights_only=True)
    assert not all(torch.equal(fresh_w[k], v) for k, v in convs.items())
    init = config_of(out)["resolved_options"]["init"]
    assert init["weights"] == ("file" if source == "weights-file" else "inherited")


def test_init_from_a_run_alone_fine_tunes_its_architecture(search_run, tmp_path, capsys):
    """Without --arch the run's own architecture; the resumed run keeps the record of its start."""
    out = tmp_path / "tuned"
    argv = ["train", "--init-from", search_run, *TINY, "--epochs", "2", "--out", out, "--stop-after", "1"]
    assert run_cli(argv, capsys)[0] == 0
    assert config_of(out)["arch"] == str(search_run)
    assert run_cli(["train", "--resume", out, "--quiet"], capsys)[0] == 0
    cfg = config_of(out)
    assert cfg["recipe"] == "darts"
    assert cfg["space_options"] == {"C": 4, "N": 1}
    assert cfg["resolved_options"]["init"]["source"] == str(search_run)
    assert len(metrics_of(out)) == 2


def test_a_trionet_fine_tune_takes_the_finetune_recipe(search_run, tmp_path, capsys):
    weights = tmp_path / "w.pt"
    torch.save(inherited_state(search_run), weights)
    arch = load_architecture(search_run / "architecture.json")
    arch.meta["method"] = "trionet"
    save_architecture(arch, tmp_path / "arch.json")
    out = tmp_path / "tuned"
    code, _, err = run_cli(["train", "--arch", tmp_path / "arch.json", "--init-from", weights, *TINY,
                            "--epochs", "1", "--out", out], capsys)
    assert code == 0, err
    cfg = config_of(out)
    assert cfg["recipe"] == "trionet-finetune" and cfg["resolved_options"]["weights"]["lr"] == 5e-4


class NotWeights:
    """Pickled by reference: a weights-only load must refuse to import it."""


@pytest.mark.parametrize("case, argv, expected", [
    ("missing", ["--init-from", "{tmp}/nope.pt"], "does not exist"),
    ("other-width", ["--init-from", "{wide.pt}"], "shapes differ"),
    ("code-in-pickle", ["--init-from", "{code.pt}"], "refused to unpickle"),
    ("not-weights", ["--init-from", "{text.pt}"], "not a PyTorch checkpoint"),
    ("space-options-clash", ["--init-from", "{run}", "--space-options", '{"C": 8, "N": 1}'],
     "inherited weights fix the space options"),
    ("unknown-recipe", ["--recipe", "adam"], "unknown recipe 'adam'"),
    ("unknown-schedule", ["--options", '{"lr_schedule": "exponential"}'], "unknown lr_schedule 'exponential'"),
    ("step-size-0", ["--options", '{"lr_schedule": "step", "step_size": 0}'], "'step_size'"),
    ("smoothing-1", ["--options", '{"label_smoothing": 1.0}'], "'label_smoothing'"),
    ("nesterov-without-momentum", ["--options", '{"nesterov": true, "weights": {"momentum": 0}}'], "'nesterov'"),
    ("lr-min-above-lr", ["--options", '{"weights": {"lr": 0.01, "lr_min": 0.1}}'], "'weights.lr_min'"),
    ("warmup-negative", ["--options", '{"warmup_epochs": -1}'], "'warmup_epochs'"),
])
def test_bad_recipe_or_init_is_one_line_and_writes_nothing(case, argv, expected, search_run, tmp_path, capsys,
                                                           monkeypatch):
    from attnas.spaces.registry import get_space

    monkeypatch.chdir(tmp_path)
    wide = get_space("nb201", C=8, N=1).build_network(load_architecture(ARCH, space="nb201"), 4, 3, 8)
    torch.save(wide.state_dict(), tmp_path / "wide.pt")
    torch.save({"model": NotWeights()}, tmp_path / "code.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    names = {"{tmp}": str(tmp_path), "{run}": str(search_run), "{wide.pt}": str(tmp_path / "wide.pt"),
             "{code.pt}": str(tmp_path / "code.pt"), "{text.pt}": str(tmp_path / "text.pt")}
    argv = [next((a.replace(k, v) for k, v in names.items() if k in a), a) for a in argv]
    arch = ["--arch", ARCH] if "--space-options" in argv else ["--arch", ARCH, *SPACE]
    out = tmp_path / "out"
    code, stdout, err = run_cli(["train", *arch, "--dataset", SYN, "--epochs", "1", "--quiet", *argv,
                                 "--out", out], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("attnas: error:"), err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err + stdout
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_init_from_cannot_be_given_with_resume(tmp_path, capsys):
    code, _, err = run_cli(["train", "--resume", tmp_path, "--init-from", tmp_path], capsys)
    assert code == 2 and "--init-from cannot be given with --resume" in err


def test_trionet_fine_tunes_a_searched_sub_network_from_its_supernet(tmp_path, capsys):
    """TrioNet's small-dataset recipe end to end: search, then ``attnas train --init-from RUN``
    fine-tunes the winner from its supernet weights with the trionet-finetune recipe."""
    space = {"layout": "cifar", "depths": [1, 1], "width": 8, "heads": [1, 2]}
    evolution = {"population": 4, "generations": 1, "top_k": 2, "mutations": 2, "crossovers": 2,
                 "bn_images": 32, "eval_images": 32, "warmup_epochs": 0}
    data = ["--dataset", "synthetic:3,16,4,64,32", "--batch-size", "16", "--seed", "1", "--quiet"]
    run = tmp_path / "search"
    assert run_cli(["search", "--space", "trionet", "--method", "trionet", "--space-options", json.dumps(space),
                    "--method-options", json.dumps(evolution), "--epochs", "1", *data, "--out", run], capsys)[0] == 0
    out = tmp_path / "tuned"
    code, _, err = run_cli(["train", "--init-from", run, "--epochs", "1", "--options", FROZEN, *data,
                            "--out", out], capsys)
    assert code == 0, err
    cfg = config_of(out)
    assert cfg["recipe"] == "trionet-finetune" and cfg["space_options"] == {**space, "elastic_depth": False}  # as the search recorded them
    assert cfg["resolved_options"]["nesterov"] is True and cfg["resolved_options"]["label_smoothing"] == 0.1
    trained = torch.load(out / "weights.pt", weights_only=True)
    convs = conv_weights(inherited_state(run))
    assert convs and all(torch.equal(trained[k], v) for k, v in convs.items())


def test_a_fine_tune_killed_before_its_first_checkpoint_resumes_from_the_initial_weights(search_run, tmp_path,
                                                                                         capsys, monkeypatch):
    """Killed during epoch 1 (config.json written, no checkpoint.pt yet): the resumed run starts
    again from --init-from's weights, not from fresh ones, even from another working directory."""
    weights = tmp_path / "subnet.pt"
    inherited = inherited_state(search_run)
    torch.save(inherited, weights)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "tuned"
    argv = ["train", "--arch", search_run, "--init-from", "subnet.pt", *TINY, "--epochs", "2",
            "--options", FROZEN, "--out", out, "--stop-after", "1"]
    assert run_cli(argv, capsys)[0] == 0
    (out / "checkpoint.pt").unlink()  # as if killed before the first epoch ended
    (out / "metrics.jsonl").write_text("")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = run_cli(["train", "--resume", out, "--quiet"], capsys)
    assert code == 0, err
    trained = torch.load(out / "weights.pt", weights_only=True)
    convs = conv_weights(inherited)
    assert convs and all(torch.equal(trained[k], v) for k, v in convs.items())
    assert len(metrics_of(out)) == 2


@pytest.mark.parametrize("options, expected", [
    ('{"lr_schedule": "exponential"}', "unknown lr_schedule 'exponential'"),
    ('{"nesterov": true, "weights": {"momentum": 0}}', "'nesterov'"),
    ('{"weights": {"lr": 0.01, "lr_min": 0.1}}', "'weights.lr_min'"),
])
def test_a_teacher_with_a_bad_schedule_is_one_line_and_writes_nothing(options, expected, tmp_path, capsys):
    """attnas teacher train is trained by the retraining task: its schedule is checked before the
    run folder is written."""
    out = tmp_path / "teacher"
    code, stdout, err = run_cli(["teacher", "train", "--dataset", SYN, "--epochs", "1", "--quiet",
                                 "--options", options, "--out", out], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("attnas: error:"), err
    assert expected in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("method", [None, ["trionet"], {"name": "nos"}, 3])
def test_a_method_that_is_not_a_name_takes_the_darts_recipe(method):
    """An architecture file's meta "method" is whatever JSON holds: anything but a name is darts."""
    from attnas.presets import recipe_for_method

    assert recipe_for_method(method) == recipe_for_method(method, fine_tune=True) == "darts"


@pytest.mark.parametrize("method, dataset, fine_tune, recipe", [
    ("nos", "cifar10", False, "nos"),
    ("nos", "cifar100", False, "nos-cifar100"),
    ("nos", "imagefolder:/data/imagenet", False, "nos-imagenet"),
    ("nos", "stream:shards:/data/imagenet-shards", False, "nos-imagenet"),
    ("darts", "shards:/data/imagenet-shards", False, "darts-imagenet"),
    ("itnas", "memory:imagefolder:/data/flowers", False, "darts-imagenet"),   # a method without its own
    (None, "cifar100", False, "darts"),                                       # DARTS has no CIFAR-100 recipe
    ("trionet", "imagefolder:/data/imagenet", False, "trionet"),              # TrioNet's own is ImageNet's
    ("trionet", "imagefolder:/data/pets", True, "trionet-finetune"),
    ("nos", None, False, "nos"),
])
def test_recipe_follows_the_kind_of_data(method, dataset, fine_tune, recipe):
    from attnas.data.datasets import dataset_family
    from attnas.presets import recipe_for_method

    assert recipe_for_method(method, fine_tune=fine_tune, family=dataset_family(dataset)) == recipe


def test_darts_imagenet_recipe_is_the_papers(tmp_path):
    """DARTS's ImageNet schedule: lr 0.1 x 0.97 after every epoch (the step schedule with step 1)."""
    from attnas.training.schedules import retrain_optimizer

    cfg = RETRAIN_RECIPES["darts-imagenet"]
    assert (cfg.epochs, cfg.batch_size, cfg.weights.weight_decay, cfg.label_smoothing) == (250, 128, 3e-5, 0.1)
    opt, sched = retrain_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg, cfg.epochs)
    lrs = []
    for _ in range(3):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1, 0.097, 0.1 * 0.97 ** 2])


def test_an_image_folder_retraining_takes_the_imagenet_recipe(tmp_path, capsys):
    """End to end: a NOS architecture retrained on an image folder records the NOS ImageNet recipe."""
    from PIL import Image

    root = tmp_path / "folder"
    for split in ("train", "test"):
        for c in range(2):
            (root / split / f"c{c}").mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (12, 12), (40 * c + 10 * i, 90, 200 - 30 * c)).save(root / split / f"c{c}" / f"{i}.png")
    out = tmp_path / "run"
    code, stdout, err = run_cli(["train", "--arch", arch_file(tmp_path, "nos"), *TINY[:2], "--dataset",
                                 f"imagefolder:{root}", "--image-size", "8", "--batch-size", "4", "--epochs", "1",
                                 "--out", out, "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["recipe"] == "nos-imagenet"
    assert config_of(out)["resolved_options"]["lr_schedule"] == "linear"
