"""Search spaces: choice points, notation, networks that match the papers."""
from __future__ import annotations

import random

import pytest
import torch

from attnas.arch import Architecture
from attnas.spaces.io import load_architecture, save_architecture
from attnas.errors import ArchitectureError, ConfigError, ShapeError
from attnas.spaces.registry import get_space, space_names

DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
            "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
            "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
            "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
            "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[4, 5, 6])")
ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in net.named_parameters() if "auxiliary" not in n)


def test_registry_lists_cell_spaces_and_rejects_unknown():
    assert {"darts", "nb201", "s2", "s3", "s4", "s1"} <= set(space_names())
    with pytest.raises(ConfigError, match="unknown space 'nope'"):
        get_space("nope")


def test_nb201_choice_points_and_string_roundtrip():
    s = get_space("nb201")
    pts = s.choice_points()
    assert len(pts) == 6 and all(len(p.candidates) == 5 for p in pts)
    arch = s.parse_native(ALL_3X3)
    assert s.to_native(arch) == ALL_3X3
    assert arch.choices["cell:1->3"] == "nor_conv_3x3"


@pytest.mark.parametrize("bad, msg", [
    ("|nor_conv_3x3~0|+|none~0|", "3 '\\+'-separated nodes"),
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown operation 'conv'"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "bad edge"),
])
def test_nb201_malformed_strings(bad, msg):
    with pytest.raises(ArchitectureError, match=msg):
        get_space("nb201").parse_native(bad)


def test_nb201_network_matches_benchmark_parameter_counts():
    # NAS-Bench-201 (Dong & Yang 2020): parameters range from 0.07 MB (all none) to 1.53 MB (all conv 3x3)
    s = get_space("nb201")
    big = s.build_network(s.parse_native(ALL_3X3), 10, 3, 32)
    empty = s.build_network(s.parse_native("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"), 10, 3, 32)
    assert n_params(big) == 1_531_546
    assert n_params(empty) == 73_306
    assert big(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_darts_v2_genotype_parses_and_builds_the_published_network():
    d = get_space("darts")
    arch = d.parse_native(DARTS_V2)
    assert sum(op != "none" for op in arch.choices.values()) == 16
    net = d.build_network(arch, 10, 3, 32)
    assert n_params(net) == 3_349_342  # DARTS (2nd order) evaluation network: 3.3M parameters
    net.train()
    logits, aux = net(torch.randn(2, 3, 32, 32))
    assert logits.shape == aux.shape == (2, 10)
    # the native string round-trips (with range(2, 6) as concat)
    assert d.parse_native(d.to_native(arch)) == arch


def test_darts_derivation_rule_two_strongest_non_none_edges_per_node():
    d = get_space("darts")
    scores = {}
    for p in d.choice_points():
        s = [0.0] * len(p.candidates)
        s[0] = 0.9  # 'none' strongest everywhere: must be ignored
        s[p.candidates.index("sep_conv_3x3")] = 0.1
        scores[p.key] = s
    # node 5 of the normal cell: make edges from 3 and 4 strongest with different ops
    scores["normal:3->5"][d.choice_points()[0].candidates.index("dil_conv_5x5")] = 0.5
    scores["normal:4->5"][d.choice_points()[0].candidates.index("max_pool_3x3")] = 0.4
    arch = d.derive(scores)
    d.validate(arch)
    into5 = {k: v for k, v in arch.choices.items() if k.startswith("normal:") and k.endswith("->5") and v != "none"}
    assert into5 == {"normal:3->5": "dil_conv_5x5", "normal:4->5": "max_pool_3x3"}
    for c in ("normal", "reduce"):
        for j in range(2, 6):
            assert sum(1 for k, v in arch.choices.items() if k.startswith(c + ":") and k.endswith(f"->{j}") and v != "none") == 2


def test_flexible_topology_is_a_valid_darts_architecture():
    d = get_space("darts")
    arch = d.sample(random.Random(1))
    arch.choices["normal:0->5"] = "sep_conv_3x3"
    arch.choices["normal:1->5"] = "skip_connect"
    arch.choices["normal:2->5"] = "avg_pool_3x3"  # node 5 may now have 3+ inputs
    d.validate(arch)
    assert d.to_native(arch) is None  # not expressible as a DARTS Genotype
    net = d.build_network(arch, 10, 3, 16, C=8, layers=3, auxiliary=False)
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    for k in [k for k in arch.choices if k.startswith("reduce:") and k.endswith("->3")]:
        arch.choices[k] = "none"
    with pytest.raises(ArchitectureError, match="node 3 of the reduce cell has no input"):
        d.validate(arch)


def test_validation_names_the_problem():
    s = get_space("nb201")
    good = s.parse_native(ALL_3X3)
    bad_op = Architecture("nb201", {**good.choices, "cell:0->1": "sep_conv_3x3"})
    with pytest.raises(ArchitectureError, match="'sep_conv_3x3' is not a candidate of 'cell:0->1'"):
        s.validate(bad_op)
    missing = Architecture("nb201", {k: v for k, v in good.choices.items() if k != "cell:2->3"})
    with pytest.raises(ArchitectureError, match="missing choice points \\['cell:2->3'\\]"):
        s.validate(missing)


def test_reduced_spaces_candidates(data_dir):
    assert {p.candidates for p in get_space("s2").choice_points()} == {("skip_connect", "sep_conv_3x3")}
    assert {p.candidates for p in get_space("s3").choice_points()} == {("none", "skip_connect", "sep_conv_3x3")}
    assert {p.candidates for p in get_space("s4").choice_points()} == {("noise", "sep_conv_3x3")}
    s1 = get_space("s1", data_dir=str(data_dir))
    cands = [p.candidates for p in s1.choice_points()]
    assert len(cands) == 28 and all(len(c) == 2 for c in cands)
    assert cands[0] == ("skip_connect", "dil_conv_3x3")


def test_s1_without_data_names_the_file():
    from attnas.errors import DataFileNotFound
    with pytest.raises(DataFileNotFound, match="reduced_spaces/robust_darts_s1_s4.json"):
        get_space("s1", data_dir="/nonexistent")


def test_noise_op_is_input_independent_gaussian():
    from attnas.ops.primitives import build_op, darts_ops
    op = build_op(darts_ops(True), "noise", 4, 4, 2, False)
    out = op(torch.ones(256, 4, 8, 8))
    assert out.shape == (256, 4, 4, 4)
    assert abs(out.mean().item()) < 0.05 and abs(out.std().item() - 1) < 0.05


def test_image_too_small_for_space():
    with pytest.raises(ShapeError, match="at least 4x4"):
        get_space("nb201").check_input(3, 2)


def test_architecture_json_roundtrip(tmp_path):
    s = get_space("nb201")
    arch = s.parse_native(ALL_3X3)
    save_architecture(arch, tmp_path / "a.json")
    assert load_architecture(tmp_path / "a.json") == arch
    assert load_architecture(ALL_3X3) == arch  # native strings are recognised
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ArchitectureError, match="not valid JSON"):
        load_architecture(tmp_path / "bad.json")
    (tmp_path / "nospace.json").write_text('{"choices": {}}')
    with pytest.raises(ArchitectureError, match="'space' field"):
        load_architecture(tmp_path / "nospace.json")


@pytest.mark.parametrize("shape", [(2, 3, 7, 5), (4, 8, 32, 32), (1, 2, 1, 1), (2, 4, 2, 3)])
@pytest.mark.parametrize("stride", [1, 2])
def test_avg_pool_3x3_matches_pytorch_avg_pool(shape, stride):
    """The depthwise-convolution average pool computes nn.AvgPool2d(3, stride, 1, count_include_pad=False),
    values and input gradients, at even, odd and tiny sizes."""
    import torch.nn.functional as F

    from attnas.ops.primitives import AvgPool3x3

    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    ref = F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    out = AvgPool3x3(stride)(x)
    assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-12)
    g = torch.randn_like(ref)
    (ga,) = torch.autograd.grad(ref, x, g)
    (gb,) = torch.autograd.grad(out, x, g)
    assert torch.allclose(ga, gb, atol=1e-12)


@pytest.mark.parametrize("space_name,options", [("darts", {"C": 8, "layers": 3}), ("nb201", {"C": 8, "N": 1})])
def test_channels_last_layout_computes_what_nchw_computes(space_name, options):
    """Cell networks run channels-last (oneDNN NHWC kernels, :mod:`attnas.ops.layout`): the same
    logits and the same weight and architecture gradients as the NCHW layout."""
    import copy

    from attnas.strategies.base import get_strategy

    torch.manual_seed(0)
    space = get_space(space_name, **options)
    model = get_strategy("darts", space, {"recompute": "none"}).build(10, 3, 16)
    assert model.net.channels_last
    nchw = copy.deepcopy(model)
    nchw.net.to(memory_format=torch.contiguous_format)
    nchw.net.channels_last = False
    x, y = torch.randn(6, 3, 16, 16), torch.randint(0, 10, (6,))
    outs = []
    for m in (model, nchw):
        m.train()
        loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        outs.append((loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}))
    (l_cl, g_cl), (l_cf, g_cf) = outs
    assert torch.allclose(l_cl, l_cf, atol=1e-5)
    assert g_cl.keys() == g_cf.keys() and any("alpha" in k for k in g_cl)
    for k in g_cl:
        assert torch.allclose(g_cl[k], g_cf[k], atol=1e-4, rtol=1e-3), k
