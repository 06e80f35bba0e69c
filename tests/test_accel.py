"""``attnas train --amp`` / ``--compile`` (attnas.training.accel): mixed precision and compiled forward."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from attnas.cli.main import main
from attnas.errors import ConfigError
from attnas.spaces.registry import get_space
from attnas.training.accel import Accelerator

ARCH = "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|"
TRAIN = ["train", "--arch", ARCH, "--space-options", '{"C": 8, "N": 1}', "--dataset", "synthetic:3,8,4,64,32",
         "--epochs", "1", "--batch-size", "16", "--quiet"]


def _net():
    space = get_space("nb201", C=8, N=1)
    return space.build_network(space.parse_native(ARCH), 4, 3, 8)


def test_amp_runs_the_forward_in_bfloat16_on_cpu():
    net = _net()
    acc = Accelerator(net, torch.device("cpu"), amp=True)
    seen = []
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with acc.autocast():
        out = acc.run(torch.randn(2, 3, 8, 8))
    assert seen == [torch.bfloat16] and out.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in net.parameters())  # weights stay float32
    assert acc.scaler is None and acc.describe() == {"amp": "bfloat16", "compile": None}


def test_cli_train_amp_and_compile(tmp_path: Path, capsys):
    runs = {}
    for name, extra in (("eager", []), ("amp", ["--amp"]), ("compiled", ["--compile", "aot_eager"])):
        assert main([*TRAIN, "--out", str(tmp_path / name), "--json", *extra]) == 0
        runs[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        m = json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[0])
        runs[name]["train_loss"] = m["train_loss"]
    assert runs["amp"]["amp"] == "bfloat16" and runs["compiled"]["compile"] == "aot_eager"
    assert runs["eager"]["amp"] is None and runs["eager"]["compile"] is None
    # the compiled forward computes the eager one: the same first-epoch loss
    assert runs["compiled"]["train_loss"] == pytest.approx(runs["eager"]["train_loss"], rel=1e-4)
    # bfloat16 changes the numbers a little, not the training
    assert runs["amp"]["train_loss"] == pytest.approx(runs["eager"]["train_loss"], rel=0.05)
    cfg = json.loads((tmp_path / "amp" / "config.json").read_text())
    assert cfg["amp"] is True and cfg["compile"] is None


def test_unknown_compile_backend_is_a_one_line_error(tmp_path: Path, capsys):
    with pytest.raises(ConfigError, match="--compile no_such_backend"):
        Accelerator(_net(), torch.device("cpu"), compile_backend="no_such_backend").run(torch.randn(2, 3, 8, 8))
    assert main([*TRAIN, "--out", str(tmp_path / "bad"), "--compile", "no_such_backend"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "--compile no_such_backend" in err[-1] and "Traceback" not in "\n".join(err)


def test_cli_search_amp_is_recorded_and_kept_on_resume(tmp_path: Path, capsys):
    """``attnas search --amp``: the search step runs under bfloat16 autocast on CPU (the supernet's
    weights stay float32), config.json records it and ``--resume`` keeps it."""
    search = ["search", "--space", "nb201", "--method", "darts", "--space-options", '{"C": 4, "N": 1}',
              "--dataset", "synthetic:3,8,4,64,32", "--epochs", "2", "--batch-size", "16", "--quiet", "--json"]
    runs = {}
    for name, extra in (("eager", []), ("amp", ["--amp"])):
        assert main([*search, "--out", str(tmp_path / name), *extra, "--stop-after", "1"]) == 0
        capsys.readouterr()
        assert main(["search", "--resume", str(tmp_path / name), "--quiet", "--json"]) == 0
        runs[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert runs["amp"]["amp"] == "bfloat16" and runs["eager"]["amp"] is None
    assert json.loads((tmp_path / "amp" / "config.json").read_text())["amp"] is True
    loss = {n: [json.loads(l)["train_loss"] for l in (tmp_path / n / "metrics.jsonl").read_text().splitlines()]
            for n in runs}
    # bfloat16 changes the numbers a little (so it really ran), not the training
    assert loss["amp"] != loss["eager"] and loss["amp"] == pytest.approx(loss["eager"], rel=0.05)
    assert main(["search", "--resume", str(tmp_path / "amp"), "--amp"]) == 2  # a new-run option


@pytest.mark.parametrize("method, space_name, space_options, method_options", [
    ("darts-2nd", "nb201", {"C": 4, "N": 1}, {}),
    ("trionet", "trionet", {"layout": "cifar", "depths": [1, 1], "width": 8, "heads": [1, 2]},
     {"weights": {"weight_decay": 0.5}}),  # a decay large enough to see
])
def test_loss_scaling_leaves_a_search_step_unchanged(method, space_name, space_options, method_options):
    """Under float16 loss scaling (``attnas search --amp`` on CUDA; here a CPU GradScaler with
    autocast off, so every number stays float32 and a power-of-two scale is exact) a search step
    moves every parameter as without it: the gradient a phase sets itself (DARTS's second-order
    alpha gradient, never scaled) and the decay a strategy adds after backward (TrioNet's
    biggest-path decay) are not divided by the scale."""
    from attnas.strategies.base import get_strategy
    from attnas.training.step import StepExecutor

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 8, 8, generator=gen), torch.randint(0, 4, (8,), generator=gen)
    x2, y2 = torch.randn(8, 3, 8, 8, generator=gen), torch.randint(0, 4, (8,), generator=gen)

    def after_one_step(scale: float | None) -> list[torch.Tensor]:
        torch.manual_seed(0)
        st = get_strategy(method, get_space(space_name, **space_options), method_options)
        model = st.build(4, 3, 8)
        opt = st.optimizers(model, 10, 5)
        accel = Accelerator(model, torch.device("cpu"))
        if scale is not None:
            accel.scaler = torch.amp.GradScaler("cpu", init_scale=scale)
        StepExecutor(st, model, opt, accel)({"weights": (x, y), "arch": (x2, y2)}, 0, 0)
        return [p.detach().clone() for p in model.parameters()]

    plain, scaled = after_one_step(None), after_one_step(2.0 ** 12)
    for a, b in zip(plain, scaled):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
