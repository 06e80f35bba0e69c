"""FLOPs and parameter counter (attnas.profile): hand-computed counts and NAS-Bench-Macro's table."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from attnas.arch import Architecture, layer_key
from attnas.ops.mobile import InvertedResidual, SqueezeExcite
from attnas.profile import count_flops, count_macs, count_params, profile, profile_architecture
from attnas.spaces.registry import get_space

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    env = os.environ.get("ATTNAS_DATA_DIR")
    if env:
        return Path(env)
    fallback = REPO_ROOT.parent / "shared" / "data"
    if fallback.is_dir():
        return fallback
    pytest.skip("no data folder: set ATTNAS_DATA_DIR to run the NAS-Bench-Macro checks")


def test_tiny_network_hand_counted() -> None:
    # conv 3->8, 3x3, stride 2, pad 1 on 8x8 -> 4x4; BN; ReLU; depthwise 3x3 on 8 ch; pool; linear 8->5
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    conv1 = 4 * 4 * 8 * 3 * 3 * 3          # 3456 MACs
    dw = 4 * 4 * 8 * 1 * 3 * 3             # 1152 MACs (bias excluded)
    fc = 8 * 5                             # 40 MACs
    params = 8 * 3 * 9 + 2 * 8 + (8 * 9 + 8) + (8 * 5 + 5)  # conv, BN affine, dw + bias, linear + bias
    p = profile(net, 3, 8)
    assert p.macs == conv1 + dw + fc == 4648
    assert p.flops == 2 * 4648  # FLOPs = 2 x MACs
    assert p.params == params == 357
    assert p.to_dict() == {"flops": 9296, "macs": 4648, "params": 357}
    # a batch gives the per-image count; BN running stats are buffers, not parameters
    macs, out = count_macs(net, torch.zeros(5, 3, 8, 8))
    assert macs == 4648 and out.shape == (1, 5)
    assert count_flops(net, torch.zeros(1, 3, 8, 8))[0] == 9296


def test_inverted_residual_hand_counted() -> None:
    # C_in 16 -> C_out 16, expansion 6 (hidden 96), kernel 5, stride 1 on 10x10, with SE
    block = InvertedResidual(16, 16, 1, expansion=6, kernel=5, se=True)
    hw = 10 * 10
    se_mid = 24  # make_divisible(96 / 4, 8)
    expected_flops = hw * 16 * 96 + hw * 96 * 25 + (96 * se_mid + se_mid * 96) + hw * 96 * 16
    expected_params = (16 * 96 + 2 * 96) + (96 * 25 + 2 * 96) + (96 * se_mid + se_mid + se_mid * 96 + 96) \
        + (96 * 16 + 2 * 16)
    macs, out = count_macs(block, torch.zeros(1, 16, 10, 10))
    assert macs == expected_flops
    assert count_params(block) == expected_params
    assert out.shape == (1, 16, 10, 10) and block.use_residual
    assert isinstance(block.se, SqueezeExcite)


def test_shared_parameters_counted_once() -> None:
    lin = nn.Linear(4, 4)
    assert count_params(nn.Sequential(lin, lin)) == 20


def test_macro_matches_benchmark_table() -> None:
    """Parameters and MACs of NAS-Bench-Macro networks equal the table's params and flops (its
    "flops" are multiply-accumulates)."""
    table = json.loads((data_dir() / "nasbench_macro" / "nas-bench-macro_cifar10.json").read_text())
    space = get_space("macro")
    keys = ["00000000", "11111111", "22222222", "11111221"] + random.Random(0).sample(sorted(table), 4)
    costs = space.cost_table(10, 3, 32)
    for key in keys:
        arch = space.parse_native(key)
        p = profile_architecture(space, arch, 10, 3, 32)
        assert p.params == table[key]["params"], key
        assert p.macs == table[key]["flops"], key
        assert costs.of(arch) == p, key


@pytest.mark.parametrize("name,options,size", [("proxyless", {"variant": "cifar", "se": True}, 32),
                                               ("macro", {}, 32)])
def test_cost_table_equals_direct_count(name, options, size) -> None:
    space = get_space(name, **options)
    costs = space.cost_table(10, 3, size)
    rng = random.Random(1)
    for _ in range(3):
        arch = space.sample(rng)
        assert costs.of(arch) == profile_architecture(space, arch, 10, 3, size)


def test_proxyless_cost_is_additive_over_layers() -> None:
    space = get_space("proxyless", variant="cifar")
    costs = space.cost_table(10, 3, 32)
    pts = space.choice_points()
    base = Architecture("proxyless", {p.key: "mb3_k3" for p in pts})
    bigger = Architecture("proxyless", {**base.choices, layer_key(5): "mb6_k7"})
    skipped = Architecture("proxyless", {**base.choices, layer_key(5): "skip"})
    d_big = costs.of(bigger).macs - costs.of(base).macs
    d_skip = costs.of(base).macs - costs.of(skipped).macs
    # layer 5: 40 -> 40 channels, stride 1, at 16x16 (CIFAR variant: stage 1 is strided)
    hw = 16 * 16
    mb3_k3 = hw * 40 * 120 + hw * 120 * 9 + hw * 120 * 40
    mb6_k7 = hw * 40 * 240 + hw * 240 * 49 + hw * 240 * 40
    assert d_skip == mb3_k3
    assert d_big == mb6_k7 - mb3_k3


def test_flops_are_twice_the_macs_as_in_the_trionet_paper(capsys) -> None:
    """Issue 16: a ResNet-26 (TrioNet space, stand-alone conv, 224x224, 1000 classes) has the
    paper's 4.7 B FLOPs and 13.7 M parameters; FLOPs = 2 x MACs; ``attnas profile`` prints a row
    per layer and a parseable --json line."""
    from attnas.cli.main import main

    arch = ",".join(["conv_k3_e0.25"] * 8)
    code = main(["profile", "--arch", arch, "--space", "trionet", "--space-options",
                 '{"layout": "imagenet", "depths": [1, 2, 4, 1], "width": 64}', "--image-size", "224",
                 "--num-classes", "1000", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    res = json.loads(out[-1])
    assert res["flops"] == 2 * res["macs"] and res["input"] == [3, 224, 224]
    assert 4.6e9 < res["flops"] < 4.8e9 and 13.6e6 < res["params"] < 13.8e6  # paper: 4.7 B, 13.7 M
    names = [r["name"] for r in res["layers"]]
    assert names == ["stem"] + [f"layers.{i}" for i in range(8)] + ["classifier"]
    assert sum(r["macs"] for r in res["layers"]) == res["macs"]
    assert sum(r["params"] for r in res["layers"]) == res["params"]
    assert all(r["flops"] == 2 * r["macs"] for r in res["layers"])
    assert res["layers"][1]["choice"] == "conv_k3_e0.25"
    text = "\n".join(out[:-1])
    assert "FLOPs = 2 x MACs" in text and "layers.7" in text and "total" in text and "4.685 G" in text
    # the input line says which sizes were given and where the others came from
    assert "3x224x224 input (given, the rest from the space's nominal input), 1000 classes" in text


def test_profile_of_a_run_folder_and_errors(tmp_path, capsys) -> None:
    from attnas.spaces.io import save_architecture
    from attnas.cli.main import main

    space = get_space("macro")
    arch = space.parse_native("11111221")
    arch.meta["dataset"] = "synthetic:3,8,4,16,8"
    run = tmp_path / "run"
    run.mkdir()
    save_architecture(arch, run / "architecture.json")
    assert main(["profile", "--arch", str(run), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    want = profile_architecture(space, arch, 4, 3, 8)
    assert (res["macs"], res["params"], res["input"], res["num_classes"]) == (want.macs, want.params, [3, 8, 8], 4)
    assert res["layers"][1]["choice"] == "mb3_k3"
    assert main(["profile", "--arch", "11111221", "--image-size", "0"]) == 2
    assert main(["profile", "--arch", str(tmp_path / "nothing.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("attnas: error:") for e in err)
