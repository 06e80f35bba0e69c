"""NOS: heterogeneous operations, operator cell, derivation, attention-guided search."""
from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F

from attnas.arch import Architecture, edge_key, parse_edge_key
from attnas.errors import ArchitectureError, ConfigError, ShapeError
from attnas.ops.attention_ops import (ATTENTION_OPS, DYNAMIC_OPS, FEATURE_OPS, NOS_OPS, CalibrationOp,
                                      ChannelAttention, DynamicKernel, HeteroTerms, SpatialAttention,
                                      apply_dynamic, build_nos_op, combine, sum_kernels)
from attnas.spaces.base import ChoiceBlock
from attnas.spaces.nos import FIRST_TIER, SECOND_TIER, NOSSpace, surrogate_node
from attnas.spaces.registry import get_space
from attnas.strategies.base import get_strategy
from attnas.strategies.darts import weighted_sum
from attnas.strategies.nos import at_loss, attention_map
from attnas.teacher import CifarResNet, StageHooks, load_teacher, save_teacher
from attnas.training.step import search_step


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ----- operations ------------------------------------------------------------------------------
def test_operation_set_has_eleven_ops_in_three_kinds():
    assert len(FEATURE_OPS) == 7 and len(ATTENTION_OPS) == 2 and len(DYNAMIC_OPS) == 2
    assert len(NOS_OPS) == 11 and "none" not in NOS_OPS


def test_attention_shapes_and_range():
    x = torch.randn(3, 8, 10, 10)
    a_c = ChannelAttention(8, 8)(x)
    assert a_c.shape == (3, 8, 1, 1) and bool(((a_c > 0) & (a_c < 1)).all())
    sa = SpatialAttention(8, stride=1)
    assert sa(x).shape == (3, 1, 10, 10)
    assert SpatialAttention(8, stride=2)(x).shape == (3, 1, 5, 5)
    # a reduction edge's attention fits the strided features
    feat = build_nos_op("sep_conv_3x3", 8, 2, True, False, False)(x).feature
    att = build_nos_op("att_spatial", 8, 2, True, False, False)(x).attention
    assert combine(HeteroTerms(feature=feat, attention=att)).shape == feat.shape


@pytest.mark.parametrize("k", [3, 5])
def test_dynamic_kernel_shape_normalised_and_per_sample(k):
    gen = DynamicKernel(8, 8, k)
    x = torch.randn(4, 8, 9, 9)
    d = gen(x)
    assert d.shape == (4, 8, k, k)
    assert torch.allclose(d.sum((2, 3)), torch.ones(4, 8), atol=1e-5)  # softmax over the taps
    assert (d[0] - d[1]).abs().max() > 1e-4  # a different kernel for each sample
    # the same sample gives the same kernel whatever its batch neighbours (eval-mode BN)
    gen.eval()
    assert torch.allclose(gen(x)[:1], gen(x[:1]), atol=1e-6)


def test_apply_dynamic_equals_loop_over_samples():
    x = torch.randn(3, 5, 7, 7)
    for k in (3, 5):
        d = torch.randn(3, 5, k, k)
        loop = torch.cat([F.conv2d(x[n:n + 1], d[n].unsqueeze(1), padding=k // 2, groups=5)
                          for n in range(3)])
        assert torch.allclose(apply_dynamic(x, d), loop, atol=1e-5)
    with pytest.raises(ShapeError):
        apply_dynamic(x, torch.randn(3, 5, 4, 4))


def test_kernels_are_summed_exactly():
    x = torch.randn(2, 4, 8, 8)
    d3, d5 = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 5, 5)
    assert torch.allclose(apply_dynamic(x, sum_kernels([d3, d5])),
                          apply_dynamic(x, d3) + apply_dynamic(x, d5), atol=1e-5)


def test_combine_is_eq3():
    f, a = torch.randn(2, 4, 6, 6), torch.rand(2, 1, 6, 6)
    d = torch.rand(2, 4, 3, 3)
    out = combine(HeteroTerms(feature=f, attention=a, kernels=[d]))
    assert torch.allclose(out, f + f * a + apply_dynamic(f, d), atol=1e-5)
    assert torch.equal(combine(HeteroTerms(feature=f)), f)
    with pytest.raises(ShapeError):
        combine(HeteroTerms(attention=a))


def test_mixture_weights_scale_the_right_terms():
    """Eq. 7 on a NOS edge: F = sum_f w_f o_f(x), A = sum_a w_a o_a(x), D = {w_d o_d(x)}."""
    from attnas.spaces.base import ChoicePoint, Mixer

    p = ChoicePoint("normal:0->2", NOS_OPS, "normal:2")
    ops = [build_nos_op(o, 4, 1, False, True, False) for o in NOS_OPS]
    for op in ops:
        op.eval()
    block = ChoiceBlock(p, ops, Mixer())
    w = torch.softmax(torch.randn(11), 0)
    x = torch.randn(2, 4, 6, 6)
    mixed = weighted_sum(x, block, w)
    outs = [op(x) for op in ops]
    f = sum(w[i] * outs[i].feature for i, o in enumerate(NOS_OPS) if o in FEATURE_OPS)
    a = sum(w[i] * outs[i].attention for i, o in enumerate(NOS_OPS) if o in ATTENTION_OPS)
    assert torch.allclose(mixed.feature, f, atol=1e-5)
    assert torch.allclose(mixed.attention, a, atol=1e-6)
    assert len(mixed.kernels) == 2
    i3 = NOS_OPS.index("dyn_conv_3x3")
    assert torch.allclose(mixed.kernels[0], w[i3] * outs[i3].kernels[0], atol=1e-6)
    # F ⊛ (w D) = w (F ⊛ D): the weight scales the dynamic-conv term of Eq. 3
    assert torch.allclose(apply_dynamic(f, mixed.kernels[0]), w[i3] * apply_dynamic(f, outs[i3].kernels[0]),
                          atol=1e-5)


def test_second_tier_calibration_acts_on_the_surrogate():
    op = build_nos_op("att_channel", 4, 1, True, False, second_tier=True)
    assert isinstance(op, CalibrationOp)
    x = torch.randn(2, 4, 5, 5)
    t = op(x)
    assert torch.equal(t.feature, x)
    assert torch.allclose(combine(t), x + x * op.op(x), atol=1e-6)
    assert build_nos_op("att_channel", 4, 1, True, False, second_tier=False)(x).feature is None


# ----- the cell space --------------------------------------------------------------------------
def test_space_has_18_edges_of_11_ops_per_cell_with_parseable_forward_keys():
    sp = get_space("nos", C=4, layers=3)
    pts = sp.choice_points()
    assert len(FIRST_TIER) == 14 and len(SECOND_TIER) == 4
    for cell in ("normal", "reduce"):
        cp = [p for p in pts if p.key.startswith(cell + ":")]
        assert len(cp) == 18 and all(p.candidates == NOS_OPS for p in cp)
        for p in cp:
            c, s, d = parse_edge_key(p.key)
            assert c == cell and s < d


def _scores(sp: NOSSpace, pick: dict[str, tuple[str, float]]) -> dict[str, list[float]]:
    out = {}
    for p in sp.choice_points():
        s = [0.01 * (i + 1) / 11 for i in range(11)]  # weak, mildly favouring dyn_conv_5x5
        if p.key in pick:
            op, v = pick[p.key]
            s[NOS_OPS.index(op)] = v
        out[p.key] = s
    return out


def test_derive_top2_with_a_feature_op_and_top1_second_tier():
    sp = get_space("nos", C=4, layers=3)
    # block 1 (surrogate 4): strongest are two attention ops; the feature op must enter
    pick = {"normal:0->4": ("att_spatial", 0.9), "normal:1->4": ("att_channel", 0.8),
            "normal:3->4": ("sep_conv_3x3", 0.5), "normal:4->5": ("dyn_conv_3x3", 0.7),
            # block 0: plain top-2 already has a feature op
            "normal:0->2": ("skip_connect", 0.6), "normal:1->2": ("att_channel", 0.95)}
    arch = sp.derive(_scores(sp, pick))
    c = arch.choices
    assert (c["normal:0->4"], c["normal:1->4"], c["normal:3->4"]) == ("att_spatial", "none", "sep_conv_3x3")
    assert c["normal:4->5"] == "dyn_conv_3x3"
    assert (c["normal:0->2"], c["normal:1->2"]) == ("skip_connect", "att_channel")
    for cell in ("normal", "reduce"):
        for m in range(4):
            ins = [k for k, v in c.items() if k.startswith(cell) and parse_edge_key(k)[2] == surrogate_node(m)
                   and v != "none"]
            assert len(ins) == 2 and any(c[k] in FEATURE_OPS for k in ins)
    sp.validate(arch)
    # when no edge's strongest op is a feature op, the best feature op of some edge is taken
    only_att = {edge_key("normal", s, d): ("att_channel", 0.9) for s, d in FIRST_TIER}
    arch2 = sp.derive(_scores(sp, only_att))
    for m in range(4):
        ops = [arch2.choices[edge_key("normal", s, d)] for s, d in FIRST_TIER if d == surrogate_node(m)]
        assert ops.count("att_channel") == 1 and sum(o in FEATURE_OPS for o in ops) == 1


def test_validate_rejects_blocks_without_feature_op_and_bad_ops():
    sp = get_space("nos", C=4, layers=3)
    arch = sp.sample(random.Random(0))
    sp.validate(arch)
    bad = Architecture("nos", {**arch.choices, "normal:0->2": "att_channel", "normal:1->2": "none"})
    with pytest.raises(ArchitectureError, match="no first-tier feature"):
        sp.validate(bad)
    with pytest.raises(ArchitectureError, match="not allowed"):
        sp.validate(Architecture("nos", {**arch.choices, "normal:2->3": "none"}))
    with pytest.raises(ConfigError):
        get_space("nos", layers=2)


def test_derived_networks_cifar_and_imagenet():
    sp = get_space("nos", C=4, layers=3)
    arch = sp.sample(random.Random(1))
    net = sp.build_network(arch, 10, 3, 16, C=4, layers=3, auxiliary=True)
    net.train()
    net.set_drop_path(0.2)
    logits, aux = net(torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 10) and aux.shape == (2, 10)
    net.eval()
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    inet = sp.build_network(arch, 7, 3, 64, C=4, layers=3, auxiliary=False, imagenet=True)
    assert inet.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    with pytest.raises(ConfigError):
        sp.build_network(arch, 10, 3, 16, bogus=1)


def test_supernet_runs_under_generic_mixers():
    """The NOS supernet is built from ChoiceBlocks: the DARTS softmax mixer (with activation
    checkpointing: same gradients) and the single-path mixer of random search / SPOS run on it."""
    from attnas.strategies.random_search import activate

    sp = get_space("nos", C=2, layers=3)
    x = torch.randn(2, 3, 8, 8)
    st = get_strategy("darts", sp, {"recompute": "none"})
    model = st.build(4, 3, 8)
    model(x).pow(2).sum().backward()
    g_plain = [p.grad.clone() for p in model.arch.parameters()]
    model.zero_grad()
    from attnas.spaces.base import set_recompute
    set_recompute(model.net, "all", 8)
    model(x).pow(2).sum().backward()
    assert all(torch.allclose(a, p.grad, atol=1e-5) for a, p in zip(g_plain, model.arch.parameters()))
    rs = get_strategy("random", sp)
    single = rs.build(4, 3, 8)
    # single-path mixers need an op on every edge ('none' is no candidate of the search)
    full = {k: ("sep_conv_3x3" if v == "none" else v) for k, v in sp.sample(random.Random(0)).choices.items()}
    activate(single, Architecture("nos", full), rs.points)
    assert single(x).shape == (2, 4)


# ----- attention transfer ------------------------------------------------------------------------
def test_attention_map_and_at_loss():
    f = torch.randn(2, 4, 8, 8, requires_grad=True)
    a = attention_map(f)
    assert a.shape == (2, 64) and torch.allclose(a.norm(dim=1), torch.ones(2))
    # scale invariant, equals Eq. 6's channel sum of squares
    assert torch.allclose(attention_map(3 * f), a, atol=1e-6)
    assert torch.allclose(a, F.normalize(f.pow(2).sum(1).flatten(1), dim=1))
    assert at_loss([f], [f.detach()]).item() == pytest.approx(0.0, abs=1e-7)
    g = torch.randn(2, 16, 4, 4)  # a teacher map of another size is pooled to the smaller one
    lat = at_loss([f, f], [g, f.detach()], "norm")
    xs, xt = attention_map(f, (4, 4)), attention_map(g)
    assert lat.item() == pytest.approx(0.5 * (xs - xt).norm(dim=1).mean().item(), rel=1e-5)
    lm = at_loss([f], [g], "mean_sq")
    assert lm.item() == pytest.approx(0.5 * (xs - xt).pow(2).mean().item(), rel=1e-5)
    lm.backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    with pytest.raises(ConfigError):
        at_loss([f], [g], "cosine")


def _teacher_file(tmp_path, num_classes=4):
    net = CifarResNet(depth=8, width=4, num_classes=num_classes)
    path = tmp_path / "teacher.pt"
    save_teacher(net, path, "attnas.teacher:CifarResNet", {"depth": 8, "width": 4, "num_classes": num_classes},
                 CifarResNet.stages)
    return net, path


def test_teacher_load_roundtrip_and_errors(tmp_path):
    net, path = _teacher_file(tmp_path)
    t, stages = load_teacher(str(path))
    assert stages == ["layer1", "layer2", "layer3"] and not t.training
    x = torch.randn(2, 3, 16, 16)
    net.eval()
    assert torch.allclose(t(x), net(x))
    hooks = StageHooks(t, stages)
    with hooks.capture():
        t(x)
    feats = hooks.pop()
    assert [f.shape[-1] for f in feats] == [16, 8, 4]
    t(x)  # outside capture nothing is kept
    with pytest.raises(ConfigError):
        hooks.pop()
    # a plain state dict with an explicit class
    torch.save(net.state_dict(), tmp_path / "plain.pt")
    load_teacher(str(tmp_path / "plain.pt"), "attnas.teacher:CifarResNet", {"depth": 8, "width": 4},
                 num_classes=4)
    with pytest.raises(ConfigError, match="cannot import"):
        load_teacher(str(path), "attnas.nothing:Net")
    with pytest.raises(ConfigError, match="no module"):
        load_teacher(str(path), stages=["layer9"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_teacher(str(tmp_path / "missing.pt"))
    with pytest.raises(ConfigError, match="does not fit"):
        load_teacher(str(path), options={"depth": 14})


def test_nos_step_adds_at_loss_at_both_levels(tmp_path):
    _, path = _teacher_file(tmp_path)
    sp = get_space("nos", C=2, layers=3)
    x, y = torch.randn(2, 3, 8, 8), torch.randint(0, 4, (2,))
    grads = {}
    for lam in (0.0, 1e3):
        st = get_strategy("nos", sp, {"teacher_checkpoint": str(path), "at_weight": lam})
        torch.manual_seed(5)
        model = st.build(4, 3, 8)
        loss, _, parts = st.loss(model, x, y)
        assert (("at_loss" in parts) == (lam > 0))
        model.zero_grad()
        loss.backward()
        grads[lam] = torch.cat([p.grad.flatten() for p in model.arch.parameters()])
        if lam > 0:
            assert loss.item() == pytest.approx(parts["loss"] + lam * parts["at_loss"], rel=1e-4)
            opt = st.optimizers(model, 10, 1)
            before = [p.detach().clone() for p in model.arch.parameters()]
            m = search_step(st, model, opt, (x, y), (x, y), 0, 0)
            assert {"loss", "acc", "arch_loss", "at_loss", "arch_at_loss"} <= set(m)
            assert any(not torch.equal(b, p) for b, p in zip(before, model.arch.parameters()))
    assert not torch.allclose(grads[0.0], grads[1e3])  # L_AT reaches the architecture (Eq. 9)
    with pytest.raises(ConfigError, match="first-order"):
        get_strategy("nos", sp, {"order": 2})
    with pytest.raises(ConfigError, match="teacher_checkpoint"):
        get_strategy("nos", sp, {"teacher": "attnas.teacher:CifarResNet"}).build(4, 3, 8)
    with pytest.raises(ConfigError, match="cell network"):
        get_strategy("nos", get_space("nb201", C=2, N=1)).build(4, 3, 8)


def test_cli_teacher_search_resume_train(tmp_path):
    from attnas.cli.main import main

    data = ["--dataset", "synthetic:3,8,4,8,4", "--quiet"]
    assert main(["teacher", "train", "--out", str(tmp_path / "t"), "--epochs", "1", "--batch-size", "8",
                 "--teacher-options", '{"depth": 8, "width": 2}'] + data) == 0
    search = ["search", "--space", "nos", "--method", "nos", "--out", str(tmp_path / "s"), "--epochs", "2",
              "--batch-size", "2", "--space-options", '{"C": 2, "layers": 3}',
              "--teacher", str(tmp_path / "t")] + data
    assert main(search + ["--stop-after", "1"]) == 0
    resolved = json.loads((tmp_path / "s" / "config.json").read_text())["resolved_method_options"]
    assert resolved["teacher_checkpoint"] == str(tmp_path / "t")
    assert not (tmp_path / "s" / "architecture.json").exists()
    assert main(["search", "--resume", str(tmp_path / "s"), "--quiet"]) == 0
    arch = json.loads((tmp_path / "s" / "architecture.json").read_text())
    assert arch["space"] == "nos" and len(arch["choices"]) == 36
    rows = [json.loads(line) for line in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and "train_at_loss" in rows[0]
    assert main(["train", "--arch", str(tmp_path / "s" / "architecture.json"), "--out", str(tmp_path / "r"),
                 "--epochs", "1", "--batch-size", "4", "--network-options",
                 '{"C": 2, "layers": 3}'] + data) == 0
    assert json.loads((tmp_path / "r" / "result.json").read_text())["status"] == "done"


@pytest.mark.parametrize("method", ["random", "spos"])
def test_single_path_methods_leave_unused_first_tier_edges_out(method):
    """A sampled NOS cell sets its unused first-tier edges to 'none', which is not a candidate:
    the single-path supernet leaves those edges out (no term), and only the sampled ops train."""
    from attnas.strategies.random_search import ABSENT, activate
    sp = get_space("nos", C=2, layers=3)
    st = get_strategy(method, sp, {})
    model = st.build(4, 3, 8)
    opt = st.optimizers(model, 2, 1)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))
    search_step(st, model, opt, (x, y), (x, y), 0, 0)
    arch = sp.sample(random.Random(1))
    activate(model, arch, sp.choice_points())
    assert sum(v == ABSENT for v in model.arch.active.values()) == 2 * (14 - 8)  # 6 unused per cell type
    assert model(x).shape == (4, 4)
    bad = Architecture("nos", {**arch.choices, next(iter(arch.choices)): "conv_9x9"})
    with pytest.raises(ArchitectureError, match="not a candidate"):
        activate(model, bad, sp.choice_points())


def _paper_dynamic_conv_loops(gen: DynamicKernel, x: torch.Tensor, feat: torch.Tensor, train: bool):
    """NOS Appendix A.1.2 ``DynamicF`` computed element by element in plain Python (float64), then
    the per-sample depth-wise convolution ``F ⊛ D`` (Fig. 1, Eq. 3) with 'same' zero padding:
    bottleneck B = ReLU(BN(conv_1(x))); mask M = softmax over the H*W positions of conv_2(x);
    latent L[c, t] = sum_p B[c, p] M[t, p] (t = one of the k*k taps, row-major); kernel
    D[o] = softmax over the taps of sum_c W3[o, c] L[c, t]."""
    import math

    N, C, H, W = x.shape
    k, mid = gen.k, gen.conv_1.out_channels
    X, Fm = x.tolist(), feat.tolist()
    W1 = gen.conv_1.weight[:, :, 0, 0].tolist()
    W2 = gen.conv_2.weight[:, :, 0, 0].tolist()
    W3 = gen.conv_3.weight[:, :, 0, 0].tolist()
    bn = gen.bn_1
    gamma = bn.weight.tolist() if bn.affine else [1.0] * mid
    beta = bn.bias.tolist() if bn.affine else [0.0] * mid
    pos = [(i, j) for i in range(H) for j in range(W)]
    z = [[[sum(W1[c][ci] * X[n][ci][i][j] for ci in range(C)) for (i, j) in pos] for c in range(mid)]
         for n in range(N)]
    if train:  # batch statistics over (N, H, W), biased variance
        cnt = N * H * W
        mean = [sum(z[n][c][p] for n in range(N) for p in range(H * W)) / cnt for c in range(mid)]
        var = [sum((z[n][c][p] - mean[c]) ** 2 for n in range(N) for p in range(H * W)) / cnt
               for c in range(mid)]
    else:
        mean, var = bn.running_mean.tolist(), bn.running_var.tolist()
    B = [[[max(0.0, gamma[c] * (z[n][c][p] - mean[c]) / math.sqrt(var[c] + bn.eps) + beta[c])
           for p in range(H * W)] for c in range(mid)] for n in range(N)]
    out = []
    kernels = []
    for n in range(N):
        logits = [[sum(W2[t][ci] * X[n][ci][i][j] for ci in range(C)) for (i, j) in pos] for t in range(k * k)]
        M = []
        for t in range(k * k):
            e = [math.exp(v - max(logits[t])) for v in logits[t]]
            M.append([v / sum(e) for v in e])
        L = [[sum(B[n][c][p] * M[t][p] for p in range(H * W)) for t in range(k * k)] for c in range(mid)]
        D = []
        for o in range(len(W3)):
            s = [sum(W3[o][c] * L[c][t] for c in range(mid)) for t in range(k * k)]
            e = [math.exp(v - max(s)) for v in s]
            D.append([[e[a * k + b] / sum(e) for b in range(k)] for a in range(k)])
        kernels.append(D)
        _, Cf, Hf, Wf = feat.shape
        r = k // 2
        out.append([[[sum(D[c][a][b] * Fm[n][c][i + a - r][j + b - r] for a in range(k) for b in range(k)
                          if 0 <= i + a - r < Hf and 0 <= j + b - r < Wf)
                      for j in range(Wf)] for i in range(Hf)] for c in range(Cf)])
    return torch.tensor(kernels, dtype=torch.float64), torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("k, train, affine", [(3, True, True), (5, False, True), (3, False, False)])
def test_dynamic_convolution_equals_the_papers_appendix_computation(k, train, affine):
    """Issue 16: the dynamic kernel and the dynamic convolution against Appendix A.1.2 computed by
    loops (not only shapes); C=16 with the paper's reduction r=8."""
    torch.manual_seed(k)
    C = 16
    gen = DynamicKernel(C, C, k, reduction=8, affine=affine).double()
    with torch.no_grad():
        if affine:
            gen.bn_1.weight.uniform_(0.5, 1.5)
            gen.bn_1.bias.uniform_(-0.2, 0.2)
        gen.bn_1.running_mean.uniform_(-0.5, 0.5)
        gen.bn_1.running_var.uniform_(0.5, 2.0)
    gen.train(train)
    x = torch.randn(2, C, 5, 6, dtype=torch.float64)
    kernels, conv = _paper_dynamic_conv_loops(gen, x, x, train)
    with torch.no_grad():
        d = gen(x)
        assert torch.allclose(d, kernels, atol=1e-10)
        assert torch.allclose(apply_dynamic(x, d), conv, atol=1e-10)
        # the whole second-tier operation: F_k = F_k' ⊕ F_k' ⊛ D_k (Eq. 5), one term of Eq. 3
        op = CalibrationOp("dynamic", gen, carry_input=True)
        assert torch.allclose(combine(op(x)), x + conv, atol=1e-10)
    # a reduction edge: the kernel comes from the input, the convolution acts on the strided features
    feat = torch.randn(2, C, 3, 3, dtype=torch.float64)
    gen.eval()
    _, conv_r = _paper_dynamic_conv_loops(gen, x, feat, False)
    with torch.no_grad():
        assert torch.allclose(apply_dynamic(feat, gen(x)), conv_r, atol=1e-10)


def test_default_search_on_digits_learns() -> None:
    """Issue 19: a 1-epoch NOS search (no teacher) with the default space (``size`` "small": 3
    cells, C 16) and preset on digits learns: the training loss falls and the supernet beats
    chance (0.1) on the validation split.  Seed 0, the only seed measured (docs/benchmarks.md)."""
    from conftest import one_default_search_epoch

    space = get_space("nos")
    assert (space.size, space.C, space.layers) == ("small", 16, 3)
    assert (get_space("nos", size="paper").C, get_space("nos", size="paper").layers) == (16, 8)
    losses, rec = one_default_search_epoch("nos", space)
    assert len(losses) == 11
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.2, losses
    assert rec["valid_acc"] > 0.3, rec
