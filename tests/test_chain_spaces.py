"""Chain spaces: ProxylessNAS (ImageNet / CIFAR, SE) and NAS-Bench-Macro; export with inherited weights."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from attnas.arch import Architecture, layer_key
from attnas.spaces.io import load_architecture
from attnas.errors import ArchitectureError, ConfigError, ShapeError
from attnas.ops.mobile import InvertedResidual, Shortcut, SqueezeExcite, build_mobile_op
from attnas.profile import count_params
from attnas.search.evolution import recalibrate_bn
from attnas.search.export import export_subnet, supernet_key_map
from attnas.spaces.base import ChoiceBlock
from attnas.spaces.chain import channels_last_safe
from attnas.spaces.registry import get_space, space_names
from attnas.strategies.base import get_strategy
from attnas.strategies.random_search import activate

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_PROXYLESS = {"variant": "cifar", "width_mult": 0.25}


def data_dir() -> Path:
    env = os.environ.get("ATTNAS_DATA_DIR")
    if env:
        return Path(env)
    fallback = REPO_ROOT.parent / "shared" / "data"
    if fallback.is_dir():
        return fallback
    pytest.skip("no data folder: set ATTNAS_DATA_DIR to compare with NAS-Bench-Macro")


# --------------------------------------------------------------------------- ProxylessNAS


def test_proxyless_layout() -> None:
    space = get_space("proxyless")
    assert {"proxyless", "macro"} <= set(space_names())
    pts = space.choice_points()
    assert len(pts) == 21
    assert [p.key for p in pts] == [layer_key(i) for i in range(21)]
    assert all(p.group == p.key for p in pts)
    blocks = {"mb3_k3", "mb6_k3", "mb3_k5", "mb6_k5", "mb3_k7", "mb6_k7"}
    firsts = [0, 4, 8, 12, 16, 20]  # first layer of each of the 6 stages (4,4,4,4,4,1)
    for i, p in enumerate(pts):
        assert set(p.candidates) == (blocks if i in firsts else blocks | {"skip"})
    specs = space.layer_specs()
    assert [specs[i].C_out for i in firsts] == [24, 40, 80, 96, 192, 320]
    assert [specs[i].stride for i in firsts] == [2, 2, 2, 1, 2, 1]
    assert all(s.stride == 1 and s.C_in == s.C_out for i, s in enumerate(specs) if i not in firsts)
    assert space.total_stride() == 32
    cifar = get_space("proxyless", variant="cifar")
    assert [cifar.layer_specs()[i].stride for i in firsts] == [1, 2, 2, 1, 2, 1]
    assert cifar.total_stride() == 8


def test_proxyless_networks_run_and_check_input() -> None:
    space = get_space("proxyless", width_mult=0.25)
    arch = space.sample(random.Random(0))
    net = space.build_network(arch, 7, 3, 64)
    assert net(torch.randn(2, 3, 64, 64)).shape == (2, 7)
    with pytest.raises(ShapeError, match="at least 32x32"):
        space.build_network(arch, 7, 3, 16)
    # the CIFAR variant takes 32x32 (and ends at 4x4)
    cifar = get_space("proxyless", **TINY_PROXYLESS)
    net = cifar.build_network(arch, 10, 3, 32)
    assert net.features(torch.randn(1, 3, 32, 32)).shape[-1] == 4


def test_proxyless_skip_and_se() -> None:
    space = get_space("proxyless", **TINY_PROXYLESS)
    pts = space.choice_points()
    all_skip = Architecture("proxyless", {p.key: "skip" if "skip" in p.candidates else "mb3_k3" for p in pts})
    net = space.build_network(all_skip, 10, 3, 32)
    assert sum(isinstance(m, nn.Identity) for m in net.layers) == 15
    bad = Architecture("proxyless", {**all_skip.choices, layer_key(4): "skip"})
    with pytest.raises(ArchitectureError, match="not a candidate"):
        space.build_network(bad, 10, 3, 32)
    with pytest.raises(ArchitectureError, match="cannot replace"):
        build_mobile_op("skip", 16, 24, 2)
    se_space = get_space("proxyless", se=True, **TINY_PROXYLESS)
    full = Architecture("proxyless", {p.key: "mb6_k5" for p in pts})
    se_net = se_space.build_network(full, 10, 3, 32)
    n_blocks = sum(isinstance(m, InvertedResidual) for m in se_net.modules())
    assert n_blocks == 22  # 21 searchable + the fixed first block
    assert sum(isinstance(m, SqueezeExcite) for m in se_net.modules()) == n_blocks
    assert count_params(se_net) > count_params(space.build_network(full, 10, 3, 32))


def test_proxyless_native_and_options() -> None:
    space = get_space("proxyless")
    arch = space.sample(random.Random(3))
    native = space.to_native(arch)
    assert native.count(",") == 20
    assert space.parse_native(native) == arch
    assert load_architecture(native) == arch  # guessed as proxyless
    with pytest.raises(ArchitectureError, match="21 comma-separated"):
        space.parse_native("mb3_k3,mb6_k5")
    with pytest.raises(ArchitectureError, match="unknown choice"):
        space.parse_native(",".join(["mb9_k9"] * 21))
    with pytest.raises(ConfigError, match="variant"):
        get_space("proxyless", variant="mnist")
    with pytest.raises(ConfigError, match="width_mult"):
        get_space("proxyless", width_mult=0)
    with pytest.raises(ConfigError, match="bad option"):
        get_space("proxyless", depth=3)
    with pytest.raises(ConfigError, match="dropout"):
        space.build_network(arch, 10, 3, 224, dropout=1.5)


# --------------------------------------------------------------------------- NAS-Bench-Macro


def test_macro_layout_and_identity_projection() -> None:
    space = get_space("macro")
    pts = space.choice_points()
    assert len(pts) == 8 and all(p.candidates == ("identity", "mb3_k3", "mb6_k5") for p in pts)
    specs = space.layer_specs()
    assert [(s.C_in, s.C_out, s.stride) for s in specs] == [
        (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 128, 1),
        (128, 256, 2), (256, 256, 1), (256, 256, 1)]
    net = space.build_network(space.parse_native("00000000"), 10, 3, 32)
    projections = [i for i, m in enumerate(net.layers) if isinstance(m, Shortcut) and m.proj is not None]
    assert projections == [0, 2, 5]  # a stage's first identity is a 1x1 stride-2 conv + BN
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    x = torch.randn(1, 64, 8, 8)
    assert torch.equal(net.layers[1](x), x)


def test_channels_last_layout_and_fallback() -> None:
    net = get_space("macro").build_network(get_space("macro").parse_native("12012012"), 10, 3, 32)
    assert net.channels_last
    assert net.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    feats = net.features(torch.randn(2, 3, 32, 32))
    assert feats.is_contiguous(memory_format=torch.channels_last)
    # strided 1x1 convolutions with < 8 input channels stay NCHW (oneDNN NHWC backward bug)
    tiny = get_space("macro", C=4, head=16)
    assert not tiny.build_network(tiny.parse_native("00000000"), 10, 3, 8).channels_last
    assert not channels_last_safe(nn.Conv2d(4, 8, 1, stride=2))
    assert channels_last_safe(nn.Conv2d(4, 8, 1, stride=1)) and channels_last_safe(nn.Conv2d(8, 8, 1, stride=2))


def test_macro_native_notation() -> None:
    space = get_space("macro")
    arch = space.parse_native("11111221")
    assert arch.choices[layer_key(5)] == "mb6_k5" and arch.choices[layer_key(0)] == "mb3_k3"
    assert space.to_native(arch) == "11111221"
    assert load_architecture("01201201") == space.parse_native("01201201")
    for bad in ("1111122", "11111223", "abcdefgh"):
        with pytest.raises(ArchitectureError, match="NAS-Bench-Macro"):
            space.parse_native(bad)


def test_macro_params_match_table() -> None:
    table = json.loads((data_dir() / "nasbench_macro" / "nas-bench-macro_cifar10.json").read_text())
    space = get_space("macro")
    for key in ("00000000", "11111221", "22222222", "02120110", "20021102"):
        assert count_params(space.build_network(space.parse_native(key), 10, 3, 32)) == table[key]["params"]


# --------------------------------------------------------------------------- supernets and export


@pytest.mark.parametrize("method", ["spos", "darts"])
def test_chain_supernet_under_mixers(method: str) -> None:
    space = get_space("proxyless", **TINY_PROXYLESS)
    strategy = get_strategy(method, space)
    model = strategy.build(10, 3, 8)
    blocks = [m for m in model.net.modules() if isinstance(m, ChoiceBlock)]
    assert len(blocks) == 21
    if method == "spos":
        activate(model, space.sample(random.Random(0)), strategy.points)
    out = model(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 10)
    out.sum().backward()


def test_export_matches_routed_supernet() -> None:
    torch.manual_seed(0)
    space = get_space("macro", C=8, head=32)
    strategy = get_strategy("spos", space)
    model = strategy.build(10, 3, 16)
    # train BN statistics a little, then recalibrate on the path
    arch = space.parse_native("20112012")
    activate(model, arch, strategy.points)
    batches = [(torch.randn(8, 3, 16, 16), torch.zeros(8, dtype=torch.long)) for _ in range(3)]
    recalibrate_bn(model, batches)
    net = export_subnet(space, model, arch, 10, 3, 16)
    key_map = supernet_key_map(model.net, arch, net)
    assert key_map["layers.0.depthwise.0.weight"] == "layers.0.ops.2.depthwise.0.weight"
    assert key_map["stem.0.weight"] == "stem.0.weight"
    model.eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(net(x), model(x), atol=1e-5)
    # BN statistics recomputed in the exported network give the same as in the supernet
    net2 = export_subnet(space, model, arch, 10, 3, 16, bn_batches=batches)
    with torch.no_grad():
        assert torch.allclose(net2(x), model(x), atol=1e-5)
