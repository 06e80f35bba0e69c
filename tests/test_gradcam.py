"""Per-operation Grad-CAM (IT-NAS Fig. 4): the formula, and the command on a trained chain supernet."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from attnas.analysis.gradcam import per_operation_gradcam
from attnas.cli.main import main
from attnas.errors import ConfigError
from attnas.spaces.base import ChoiceBlock, ChoicePoint, Mixer


class SumMixer(Mixer):
    def forward(self, x, block):
        return sum(op(x) for op in block.ops)


class FirstOnly(Mixer):
    def forward(self, x, block):
        return block.ops[0](x)


def _toy(mixer):
    p = ChoicePoint("layer:0", ("a", "b", "none"), "layer:0")
    block = ChoiceBlock(p, [nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(2, 3, 1), nn.Conv2d(2, 3, 1)], mixer)
    return nn.Sequential(block, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))


def test_maps_follow_gradcam_eq_1_2():
    torch.manual_seed(0)
    net = _toy(SumMixer())
    x = torch.randn(3, 2, 6, 6)
    res = per_operation_gradcam(net, "layer:0", x)
    assert res.ops == ["a", "b"]                                   # 'none' has no map
    block = net[0]
    t = net(x).argmax(1)
    a = block.ops[0](x)
    out = net[1:](a + block.ops[1](x) + block.ops[2](x))
    g, = torch.autograd.grad(out.gather(1, t[:, None]).sum(), a)
    cam = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))   # Eq. 1-2, no upsampling needed at 6x6
    cam = cam / cam.flatten(1).max(1).values[:, None, None].clamp_min(1e-12)
    assert torch.allclose(res.cams["a"], cam, atol=1e-5)
    assert torch.equal(res.targets, t)
    assert float(res.cams["b"].max()) <= 1.0 + 1e-6 and res.cams["b"].shape == (3, 6, 6)


def test_single_path_supernets_and_bad_keys_are_refused():
    net = _toy(FirstOnly())
    with pytest.raises(ConfigError, match="single-path"):
        per_operation_gradcam(net, "layer:0", torch.randn(2, 2, 6, 6))
    with pytest.raises(ConfigError, match="no choice point 'layer:9'"):
        per_operation_gradcam(net, "layer:9", torch.randn(2, 2, 6, 6))


def test_gradcam_command_on_an_itnas_chain_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["search", "--space", "macro", "--space-options", '{"C": 4, "head": 16}', "--method", "itnas",
                 "--dataset", "synthetic:3,8,4,128,32", "--epochs", "1", "--batch-size", "16",
                 "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    png = tmp_path / "cam.png"
    assert main(["analyze", "gradcam", str(run), "--layer", "layer:2", "--images", "3", "-o", str(png),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    chosen = json.loads((run / "architecture.json").read_text())["choices"]["layer:2"]
    assert res["key"] == "layer:2" and res["chosen"] == chosen and res["images"] == 3
    assert set(res["ops"]) == {"identity", "mb3_k3", "mb6_k5"} and png.stat().st_size > 5000
    assert main(["analyze", "gradcam", str(run), "--layer", "layer:99"]) == 2
