"""The ImageNet evaluation network of the DARTS-style cell spaces (DARTS, S1-S4 and the
EnTranNAS results, NOS) and the PyramidNet teacher of NOS (issue 16).

Paper numbers: DARTS (Liu et al. 2019) Table 3 / NOS Table 3 -- DARTS (2nd order) on ImageNet
in the mobile setting: 14 cells, C=48, 4.7 M parameters, 574 M multiply-adds at 224x224.
NOS Sec. 4.2 / Table 2: the teacher is PyramidNet-110 (bottleneck, alpha 84), 2.5 M parameters.
PyramidNet (Han et al. 2017), CIFAR tables (also in the authors' README): e.g. PyramidNet-164
(bottleneck) alpha 48 / 84 / 270: 1.7 / 3.8 / 27.0 M parameters.
"""
from __future__ import annotations

import json
import random

import pytest
import torch

from attnas.arch import Architecture, edge_key
from attnas.cli.main import main
from attnas.errors import ConfigError
from attnas.profile import count_params, profile_architecture
from attnas.spaces.darts import (CELL_TYPES, DARTS_EDGES, EVAL_NETWORKS, IMAGENET_STEM_FROM, AuxiliaryHead,
                                 ImageNetStem)
from attnas.spaces.registry import get_space
from attnas.teacher import CifarResNet, PyramidNet, StageHooks, load_teacher

DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
            "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
            "('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), "
            "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
            "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))")


def params_without_auxiliary(net: torch.nn.Module) -> int:
    """What DARTS's ``count_parameters_in_MB`` reports: every parameter but the auxiliary head's."""
    return count_params(net) - (count_params(net.auxiliary_head) if net.auxiliary_head is not None else 0)


def test_darts_v2_imagenet_network_has_the_papers_size_and_cost():
    space = get_space("darts")
    arch = space.parse_native(DARTS_V2)
    net = space.build_network(arch, 1000, 3, 224)  # 224x224 images: the ImageNet network by default
    assert isinstance(net.stem, ImageNetStem) and len(net.cells) == 14
    assert net.stem.stem0[0].out_channels == 24 and net.stem.stem0[3].out_channels == 48  # C/2, C = 48
    assert params_without_auxiliary(net) == pytest.approx(4.7e6, rel=0.02)  # DARTS Table 3: 4.7 M
    cost = profile_architecture(space, arch, 1000, 3, 224)
    assert cost.params == count_params(net) and cost.flops == 2 * cost.macs
    # DARTS Table 3 reports 574 M multiply-adds with an unpublished counter; counting convolutions
    # and the classifier (attnas.profile) gives 530 M, as others measured on DARTS's own code
    # (523 M, quark0/darts issue 46).  It is within the mobile setting's 600 M either way.
    assert 0.9 * 574e6 < cost.macs < 600e6
    # the numbers docs/methods/darts.md gives, exactly: a change of the stem, cells or head shows here
    assert params_without_auxiliary(net) == 4_718_752 and cost.macs == pytest.approx(529.9e6, rel=1e-3)


def test_imagenet_network_layout_at_224():
    """Stride 8 before the cells (stem0 at 1/4, stem1 at 1/8), reductions at 1/3 and 2/3 of the
    depth, the auxiliary head on the 7x7 output of cell 2/3 * 14, global pooling; eval forward."""
    space = get_space("darts")
    net = space.build_network(space.parse_native(DARTS_V2), 1000, 3, 224, C=8).eval()
    shapes: dict[str, tuple] = {}
    net.stem.stem0.register_forward_hook(lambda m, i, o: shapes.__setitem__("s0", tuple(o.shape)))
    net.stem.stem1.register_forward_hook(lambda m, i, o: shapes.__setitem__("s1", tuple(o.shape)))
    for k, cell in enumerate(net.cells):
        cell.register_forward_hook(lambda m, i, o, k=k: shapes.__setitem__(k, tuple(o.shape)))
    with torch.no_grad():
        assert net(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    assert shapes["s0"] == (1, 8, 56, 56) and shapes["s1"] == (1, 8, 28, 28)
    assert net.cells[0].preprocess0.__class__.__name__ == "FactorizedReduce"  # c_{k-2} is at 1/4
    sides = [shapes[k][-1] for k in range(14)]
    assert sides == [28] * 4 + [14] * 5 + [7] * 5  # reduction cells 4 and 9 (14 // 3, 2 * 14 // 3)
    assert [shapes[k][1] for k in (0, 4, 9, 13)] == [4 * 8, 4 * 16, 4 * 32, 4 * 32]
    head = net.auxiliary_head
    assert net.aux_index == 9 and isinstance(head, AuxiliaryHead)
    pool = head.features[1]
    assert isinstance(pool, torch.nn.AvgPool2d) and pool.stride == 2  # DARTS's ImageNet head: 7 -> 2x2
    assert not any(isinstance(m, torch.nn.BatchNorm2d) and m.num_features == 768 for m in head.modules())


def test_training_forward_returns_the_auxiliary_logits_and_learns():
    """Training mode at 224x224 on a 3-cell C=4 network (a few M multiply-adds; the auxiliary
    head sees 7x7, its 5x5 / 2 pooling as in DARTS): logits and auxiliary logits, and one
    backward reaches the stem."""
    space = get_space("darts")
    net = space.build_network(space.parse_native(DARTS_V2), 7, 3, 224, C=4, layers=3)
    assert isinstance(net.stem, ImageNetStem) and isinstance(net.auxiliary_head.features[1], torch.nn.AvgPool2d)
    net.train()
    net.set_drop_path(0.1)
    logits, aux = net(torch.randn(2, 3, 224, 224))
    assert logits.shape == aux.shape == (2, 7)
    (logits.sum() + 0.4 * aux.sum()).backward()
    assert net.stem.stem0[0].weight.grad.abs().sum() > 0


def test_the_image_size_chooses_the_network_unless_given():
    space = get_space("darts")
    arch = space.parse_native(DARTS_V2)
    below = space.build_network(arch, 10, 3, IMAGENET_STEM_FROM - 1, C=4, layers=3)
    at = space.build_network(arch, 10, 3, IMAGENET_STEM_FROM, C=4, layers=3)
    assert not isinstance(below.stem, ImageNetStem) and isinstance(at.stem, ImageNetStem)
    cifar = space.build_network(arch, 10, 3, 32)
    assert len(cifar.cells) == EVAL_NETWORKS["cifar"][1] == 20 and cifar.stem[0].out_channels == 3 * 36
    forced = space.build_network(arch, 10, 3, 224, C=4, layers=3, imagenet=False)
    assert not isinstance(forced.stem, ImageNetStem)
    small = space.build_network(arch, 10, 3, 32, C=4, layers=3, imagenet=True).eval()
    assert isinstance(small.stem, ImageNetStem) and small(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(ConfigError, match="at least 32x32"):
        space.build_network(arch, 10, 3, 16, imagenet=True)
    with pytest.raises(ConfigError, match="true or false"):
        space.build_network(arch, 10, 3, 224, imagenet="yes")
    with pytest.raises(ConfigError, match="even C"):
        space.build_network(arch, 10, 3, 224, C=5, layers=3)


def test_nos_and_entrannas_architectures_use_the_same_imagenet_network():
    """One builder: a NOS cell and an EnTranNAS-DST cell (flexible topology: a node with three
    inputs, one with one) sit in the same stem, cell stack and heads as DARTS's."""
    nos = get_space("nos")
    net = nos.build_network(nos.sample(random.Random(0)), 10, 3, 224, C=4, layers=3).eval()
    assert isinstance(net.stem, ImageNetStem) and type(net.auxiliary_head) is AuxiliaryHead
    with torch.no_grad():
        assert net(torch.randn(1, 3, 224, 224)).shape == (1, 10)
    assert len(nos.build_network(nos.sample(random.Random(0)), 10, 3, 224).cells) == 14  # Sec. 4.3

    darts = get_space("darts")
    choices = {edge_key(c, i, j): "none" for c in CELL_TYPES for i, j in DARTS_EDGES}
    for c in CELL_TYPES:
        choices.update({edge_key(c, 0, 2): "sep_conv_3x3", edge_key(c, 1, 3): "max_pool_3x3",
                        edge_key(c, 0, 4): "skip_connect", edge_key(c, 1, 4): "dil_conv_3x3",
                        edge_key(c, 3, 4): "sep_conv_5x5", edge_key(c, 2, 5): "avg_pool_3x3"})
    flexible = Architecture("darts", choices)
    assert darts.to_native(flexible) is None  # not the two-inputs-per-node DARTS rule
    net = darts.build_network(flexible, 10, 3, 128, C=4, layers=3).eval()
    assert isinstance(net.stem, ImageNetStem)
    with torch.no_grad():
        assert net(torch.randn(1, 3, 128, 128)).shape == (1, 10)
    s2 = get_space("s2")  # the reduced spaces share it too
    assert isinstance(s2.build_network(s2.sample(random.Random(0)), 10, 3, 224, C=4, layers=3).stem,
                      ImageNetStem)


@pytest.mark.parametrize("options, paper, rel", [
    ({"depth": 110, "alpha": 84, "bottleneck": True}, 2.5e6, 0.03),     # NOS Table 2: the teacher
    ({"depth": 164, "alpha": 48, "bottleneck": True}, 1.7e6, 0.015),    # PyramidNet, bottleneck table
    ({"depth": 164, "alpha": 84, "bottleneck": True}, 3.8e6, 0.015),
    ({"depth": 164, "alpha": 270, "bottleneck": True}, 27.0e6, 0.015),
    # basic units: the table's 1.7 M / 28.3 M are 4.3 % / 0.7 % below the count of the
    # architecture as the authors' code builds it (also for their 110 / alpha 84: 3.8 M vs 3.9 M)
    ({"depth": 110, "alpha": 48, "bottleneck": False}, 1.7e6, 0.05),
    ({"depth": 110, "alpha": 270, "bottleneck": False}, 28.3e6, 0.05),
])
def test_pyramidnet_parameter_counts_match_the_papers(options, paper, rel):
    """PyramidNet (Han et al. 2017) Tables 4-5, as in the authors' README (CIFAR-10)."""
    assert count_params(PyramidNet(num_classes=10, **options)) == pytest.approx(paper, rel=rel)


def test_pyramidnet110_teacher_exposes_three_stages_at_the_proxy_resolutions():
    from attnas.strategies.nos import at_loss

    model, stages = load_teacher(None, "pyramidnet110", num_classes=10, in_channels=3)
    assert type(model) is PyramidNet and stages == ["layer1", "layer2", "layer3"]
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    hooks = StageHooks(model, stages)
    with torch.no_grad(), hooks.capture():
        logits = model(torch.randn(2, 3, 32, 32))
    feats = hooks.pop()
    assert logits.shape == (2, 10)
    # widths grow by 84 / 36 per unit from 16; bottleneck outputs are 4x: 4 * (16 + 28 k)
    assert [tuple(f.shape) for f in feats] == [(2, 176, 32, 32), (2, 288, 16, 16), (2, 400, 8, 8)]
    student = [torch.randn(2, 16, 32, 32, requires_grad=True), torch.randn(2, 32, 16, 16), torch.randn(2, 64, 8, 8)]
    loss = at_loss(student, feats)
    loss.backward()
    assert torch.isfinite(loss) and student[0].grad.abs().sum() > 0
    assert type(load_teacher(None, "resnet20", num_classes=10)[0]) is CifarResNet
    with pytest.raises(ConfigError, match="depth must be 9n\\+2"):
        PyramidNet(depth=110 + 1)


def test_cli_trains_the_imagenet_network_and_a_pyramidnet_teacher_guides_nos(tmp_path):
    """``attnas train --network-options '{"imagenet": true, ...}'`` end to end on 32x32 synthetic
    images; ``attnas teacher train --class pyramidnet110`` (a small PyramidNet) then guides a
    NOS search."""
    assert main(["train", "--arch", DARTS_V2, "--dataset", "synthetic:3,32,4,16,8", "--epochs", "1",
                 "--batch-size", "8", "--network-options", '{"imagenet": true, "C": 4, "layers": 3}',
                 "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert json.loads((tmp_path / "r" / "result.json").read_text())["status"] == "done"
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["network_options"]["imagenet"] is True

    data = ["--dataset", "synthetic:3,8,4,8,4", "--quiet"]
    assert main(["teacher", "train", "--class", "pyramidnet110", "--out", str(tmp_path / "t"), "--epochs", "1",
                 "--batch-size", "8", "--teacher-options", '{"depth": 11, "alpha": 6}'] + data) == 0
    model, stages = load_teacher(str(tmp_path / "t"))
    assert type(model) is PyramidNet and stages == ["layer1", "layer2", "layer3"]
    assert main(["search", "--space", "nos", "--method", "nos", "--out", str(tmp_path / "s"), "--epochs", "1",
                 "--batch-size", "4", "--space-options", '{"C": 2, "layers": 3}',
                 "--teacher", str(tmp_path / "t")] + data) == 0
    rows = [json.loads(line) for line in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    assert rows and rows[0]["train_at_loss"] > 0
