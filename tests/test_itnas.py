"""IT-NAS: the Lite-Transformer mixer (Eq. 3-4), mono-level training (Eq. 5), selection (Eq. 6),
single-path sampling for chain spaces, checkpoint/resume, the CLI, and ranking consistency."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from attnas.arch import layer_key
from attnas.spaces.io import architecture_from_dict
from attnas.errors import ConfigError
from attnas.ops.primitives import Noise
from attnas.spaces.base import ChoiceBlock, ChoicePoint, SearchSpace
from attnas.spaces.registry import get_space
from attnas.strategies.base import get_strategy
from attnas.strategies.itnas import IndicatorMixer, LiteTransformer, indicator_mixers
from attnas.training.step import search_step

TINY_NB201 = {"C": 4, "N": 1}
TINY_DARTS = {"C": 4, "layers": 3}


def _batch(n=8, size=8, seed=0, classes=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, classes, (n,), generator=g)


def _perturbed_layer(n=4, c=6, seed=0, spatial=(5, 4), **kw) -> LiteTransformer:
    torch.manual_seed(seed)
    lt = LiteTransformer(n, c, spatial, **kw).double()
    with torch.no_grad():
        for p in lt.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return lt


def _literal_layer(lt: LiteTransformer, maps: list[torch.Tensor | None], positions: torch.Tensor):
    """The layer computed token by token on full feature maps: tokens T_j (IT first, position codes
    added; a 'none' candidate is the zero map), keys/query from each token's descriptor (per-channel
    spatial mean, projections onto the spatial patterns, RMS), Eq. 3-4 attention of the IT query
    over all n+1 keys, Z_it = sum_j a_j v_j with v = 0 for 'none', X_1 = T_0 + Z_it,
    Y = LN(X_1) over c*h*w, out = LN(Y + FFN(Y))."""
    ref = next(m for m in maps if m is not None)
    N, c, H, W = ref.shape
    T = [(lt.it + lt.pos[0]).view(1, c, 1, 1).expand(N, c, H, W)]
    T += [(torch.zeros_like(ref) if m is None else m) + lt.pos[p].view(1, c, 1, 1)
          for m, p in zip(maps, positions)]
    is_op = [True] + [m is not None for m in maps]

    def phi(t, p=None, center=False):
        """Descriptor of token t = O + p; ``center``: the content (O) parts minus their batch mean."""
        mean = t.mean((2, 3))
        proj = [(t * b).mean((2, 3)) for b in lt.patterns]               # <T_c, B_r> / hw
        rms = torch.sqrt(t.square().mean((2, 3)) + lt.eps)
        if center:
            mean = mean - mean.mean(0, keepdim=True) + p
            proj = [q - q.mean(0, keepdim=True) + p * b.mean() for q, b in zip(proj, lt.patterns)]
            rms = rms - rms.mean(0, keepdim=True) + torch.sqrt(p.square() + lt.eps)
        pieces = [mean, torch.stack(proj, -1).flatten(1) if proj else t.new_zeros(t.shape[0], 0)]
        if lt.use_rms:
            pieces.append(rms)
        return torch.cat(pieces, dim=1)

    codes = [lt.pos[0]] + [lt.pos[p] for p in positions]
    phis = [phi(T[0])] + [phi(t, code.view(1, c), lt.center) for t, code in zip(T[1:], codes[1:])]
    q = lt.query(phis[0])
    K = torch.stack([lt.key(f) for f in phis], 1)
    a = torch.softmax((K * q[:, None, :]).sum(-1) / math.sqrt(lt.qk_dim), -1)
    content = [T[0]] + [t - (code.view(1, c, 1, 1) if not lt.value_codes else 0) for t, code in zip(T[1:], codes[1:])]
    V = [lt.v_scale.view(1, c, 1, 1) * t + lt.v_bias.view(1, c, 1, 1) if op else torch.zeros_like(t)
         for t, op in zip(content, is_op)]
    x1 = T[0] + sum(a[:, j].view(N, 1, 1, 1) * V[j] for j in range(len(T)))
    if lt.output_norm == "none":
        return x1 + lt.ffn2(F.gelu(lt.ffn1(x1.mean((2, 3))))).view(N, c, 1, 1), a
    y = F.layer_norm(x1, x1.shape[1:], eps=lt.eps) * lt.ln1_weight.view(1, c, 1, 1) + lt.ln1_bias.view(1, c, 1, 1)
    x2 = y + lt.ffn2(F.gelu(lt.ffn1(y.mean((2, 3))))).view(N, c, 1, 1)
    out = F.layer_norm(x2, x2.shape[1:], eps=lt.eps) * lt.ln2_weight.view(1, c, 1, 1) + lt.ln2_bias.view(1, c, 1, 1)
    return out, a


# ----- the Lite-Transformer layer (Eq. 3-4) ----------------------------------------------------

@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("rms,patterns,center,value_codes,output_norm", [
    (False, 3, True, True, "post"), (True, 3, True, True, "post"), (False, 3, False, True, "post"),
    (True, 0, False, True, "post"), (False, 3, True, False, "post"), (False, 3, True, True, "none"),
    (True, 3, False, True, "none")])
def test_layer_equals_literal_token_computation_forward_and_backward(layout, rms, patterns, center, value_codes,
                                                                     output_norm):
    lt = _perturbed_layer(rms=rms, patterns=patterns, center=center, value_codes=value_codes,
                          output_norm=output_norm)
    g = torch.Generator().manual_seed(1)
    base = [(torch.randn(3, 6, 5, 4, generator=g, dtype=torch.float64) * s + m).contiguous(memory_format=layout)
            for s, m in ((1.0, 0.5), (2.0, -1.0), (0.5, 0.0))]
    positions = torch.tensor([1, 2, 3, 4])
    maps = [b.clone().requires_grad_() for b in base]
    out, a = lt(maps + [None], positions, maps[0].shape)          # 4th candidate: 'none' (zeros)
    w = torch.randn(out.shape, generator=g, dtype=torch.float64)
    (out * w).sum().backward()
    fused_maps = [m.grad.clone() for m in maps]
    fused_params = [p.grad.clone() for p in lt.parameters()]
    lt.zero_grad()
    ref_maps = [b.clone().requires_grad_() for b in base]
    ref, a_ref = _literal_layer(lt, ref_maps + [None], positions)
    (ref * w).sum().backward()
    assert torch.allclose(out, ref, atol=1e-10) and torch.allclose(a, a_ref, atol=1e-12)
    for f, m in zip(fused_maps, ref_maps):
        assert torch.allclose(f, m.grad, atol=1e-10)
    for f, p in zip(fused_params, lt.parameters()):
        ref_grad = torch.zeros_like(p) if p.grad is None else p.grad   # unused LN weights ('none' norm): zero
        assert p.numel() == 0 or torch.allclose(f, ref_grad, atol=1e-9)


def test_indicator_row_is_a_distribution_and_drives_the_output():
    lt = _perturbed_layer(spatial=(4, 4))
    g = torch.Generator().manual_seed(2)
    maps = [torch.randn(2, 6, 4, 4, generator=g, dtype=torch.float64) for _ in range(4)]
    positions = torch.tensor([1, 2, 3, 4])
    out, a = lt(maps, positions, maps[0].shape)
    assert a.shape == (2, 5) and bool((a >= 0).all())
    assert torch.allclose(a.sum(1), torch.ones(2, dtype=torch.float64))       # over IT + n candidates
    assert torch.allclose(a[:, 1:].sum(1), 1 - a[:, 0])                       # a[1:] of Eq. 6
    # moving the position code (hence the key) of candidate 2 changes its weight, and the output
    with torch.no_grad():
        lt.pos[2].add_(torch.randn(6, generator=g, dtype=torch.float64))
    out2, a2 = lt(maps, positions, maps[0].shape)
    assert (a2[:, 2] - a[:, 2]).abs().min() > 1e-3
    assert (out2 - out).abs().max() > 1e-3
    # the output follows the attended candidate: all weight on candidate i -> a function of O_i only
    outs = []
    for i in range(4):
        forced = torch.zeros(2, 5, dtype=torch.float64)
        forced[:, i + 1] = 1.0
        lt.attention = lambda desc, proj, sq, pos, f=forced: f
        o, _ = lt(maps, positions, maps[0].shape)
        changed = [m.clone() for m in maps]
        changed[(i + 1) % 4] += 1.0
        o_other, _ = lt(changed, positions, maps[0].shape)
        assert torch.allclose(o, o_other)                  # a_j = 0: candidate j does not matter
        outs.append(o)
    del lt.attention
    assert all((outs[i] - outs[j]).abs().max() > 1e-3 for i in range(4) for j in range(i))


def _keys(lt: LiteTransformer, maps, positions):
    """The key vectors of the candidate tokens, computed the way the layer computes them."""
    HW = maps[0].shape[2] * maps[0].shape[3]
    desc = torch.stack([m.mean((2, 3)) for m in maps], 1)
    proj = torch.stack([torch.einsum("nchw,shw->ncs", m, lt.patterns) / HW for m in maps], 1)
    sq = torch.stack([m.square().mean((2, 3)) for m in maps], 1)
    _, phi = lt.descriptors(desc, proj, sq, positions)
    return lt.key(phi)


def test_equal_moments_different_spatial_content_get_different_keys():
    """The key is a (factorised) linear map of the whole token, not of its moments: a map and its
    spatial permutations have identical per-channel mean and RMS but different keys.  With the
    spatial patterns switched off (``patterns=0``) and the energy term on, the key is a function
    of the moments alone and cannot tell them apart."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 6, 8, 8, generator=g, dtype=torch.float64)
    variants = [x, x.flip(-1), x.transpose(-1, -2), torch.roll(x, 3, dims=-2)]
    for v in variants:                                       # same per-channel moments
        assert torch.allclose(v.mean((2, 3)), x.mean((2, 3))) and torch.allclose(v.square().mean((2, 3)),
                                                                                 x.square().mean((2, 3)))
    positions = torch.tensor([1, 1, 1, 1])                   # same position code: only content differs
    lt = _perturbed_layer(spatial=(8, 8), center=False)
    k = _keys(lt, variants, positions)
    assert min((k[:, i] - k[:, j]).abs().max() for i in range(4) for j in range(i)) > 1e-3
    moments_only = _perturbed_layer(spatial=(8, 8), patterns=0, rms=True, center=False)
    k0 = _keys(moments_only, variants, positions)
    assert max((k0[:, i] - k0[:, j]).abs().max() for i in range(4) for j in range(i)) < 1e-10


def test_centred_keys_drop_what_is_systematic_in_the_content():
    """``center=True``: a constant offset shared by the batch (e.g. the non-zero channel means a skip
    connection carries) does not move the key; per-sample content still does."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 6, 4, 4, generator=g, dtype=torch.float64)
    offset = torch.randn(1, 6, 1, 1, generator=g, dtype=torch.float64) * 3
    pos = torch.tensor([1])
    lt = _perturbed_layer(spatial=(4, 4), center=True)
    assert torch.allclose(_keys(lt, [x], pos), _keys(lt, [x + offset], pos))
    assert (_keys(lt, [x], pos) - _keys(lt, [x.flip(-1)], pos)).abs().max() > 1e-3
    uncentred = _perturbed_layer(spatial=(4, 4), center=False)
    assert (_keys(uncentred, [x], pos) - _keys(uncentred, [x + offset], pos)).abs().max() > 1e-3


def test_none_token_is_no_operation():
    """'none': exact zeros, key of its position code alone, value 0 -- so the output does not
    depend on its position code except through the attention, and attention moved onto it is
    withdrawn from the operations (the output moves towards the IT's constant token)."""
    lt = _perturbed_layer(n=2, c=3, spatial=(4, 4)).float()
    positions = torch.tensor([1, 2])
    x = torch.randn(2, 3, 4, 4)
    out, a = lt([x, None], positions, x.shape)
    out_z, a_z = lt([x, torch.zeros_like(x)], positions, x.shape)
    assert torch.allclose(a, a_z, atol=1e-6)                  # same key as a zero map...
    assert not torch.allclose(out, out_z, atol=1e-4)          # ...but a zero map's value is its code, none's is 0
    fixed = a.detach().clone()
    lt.attention = lambda desc, proj, sq, pos: fixed
    with torch.no_grad():
        lt.pos[2].add_(1.0)                                    # move the none token's code, attention fixed
    out_moved, _ = lt([x, None], positions, x.shape)
    assert torch.allclose(out, out_moved, atol=1e-6)
    # all attention on none: nothing of the operations is left, the output is a constant map
    to_none = torch.tensor([[0.0, 0.0, 1.0]] * 2)
    lt.attention = lambda desc, proj, sq, pos: to_none
    o_none, _ = lt([x, None], positions, x.shape)
    o_none2, _ = lt([x * 3 + 1, None], positions, x.shape)
    del lt.attention
    assert torch.allclose(o_none, o_none2, atol=1e-6)
    assert torch.allclose(o_none, o_none.mean((2, 3), keepdim=True).expand_as(o_none), atol=1e-6)
    out_none, _ = lt([None, None], positions, x.shape)  # every token 'none': still a feature map
    assert out_none.shape == x.shape and torch.isfinite(out_none).all()


# ----- the strategy: supernets, mono-level training (Eq. 5) ----------------------------------

@pytest.mark.parametrize("space,opts,size", [("nb201", TINY_NB201, 8), ("darts", TINY_DARTS, 8), ("s3", TINY_DARTS, 8)])
def test_supernet_blocks_output_feature_maps_and_own_one_transformer(space, opts, size):
    st = get_strategy("itnas", get_space(space, **opts))
    model = st.build(4, 3, size)
    blocks = [m for m in model.net.modules() if isinstance(m, ChoiceBlock)]
    mixers = indicator_mixers(model)
    assert len(mixers) == len(blocks) and all(isinstance(b.mixer, IndicatorMixer) for b in blocks)
    assert all(m.transformer is not None for m in mixers)                  # sized at build time
    shapes = {}
    hooks = [b.register_forward_hook(lambda mod, inp, out, b=b: shapes.__setitem__(id(b), (inp[0].shape, out.shape)))
             for b in blocks]
    logits = model(_batch(size=size)[0])
    for h in hooks:
        h.remove()
    assert logits.shape == (8, 4)
    for b in blocks:
        in_shape, out_shape = shapes[id(b)]
        assert len(out_shape) == 4 and out_shape[1] == b.mixer.transformer.channels
        ref = b.ops[-1](torch.zeros(in_shape))                             # a candidate's output shape
        assert out_shape == ref.shape                                     # strided reduction edges too


@pytest.mark.parametrize("optim", ["adam", "sgd"])
def test_mono_level_step_trains_supernet_and_transformers_from_one_backward(optim):
    """Eq. 5: one training batch, one forward and backward, both parameter sets updated in that
    step; no architecture parameters and no architecture batch.  "adam": the transformer
    weights get DARTS's architecture optimizer; "sgd": one SGD for everything."""
    st = get_strategy("itnas", get_space("nb201", **TINY_NB201), {"transformer_optim": optim, "warmup": 0})
    torch.manual_seed(0)
    model = st.build(4, 3, 8)
    opt = st.optimizers(model, 10, 5)
    assert len(list(model.arch.parameters())) == 0
    t_params = [p for m in indicator_mixers(model) for p in m.transformer.parameters()]
    in_w = {id(p) for g in opt["weights"].param_groups for p in g["params"]}
    if optim == "sgd":
        assert set(opt) == {"weights", "schedulers"} and all(id(p) in in_w for p in t_params)
    else:
        assert set(opt) == {"weights", "transformer", "schedulers"}
        assert isinstance(opt["transformer"], torch.optim.Adam)
        in_t = {id(p) for g in opt["transformer"].param_groups for p in g["params"]}
        assert in_t == {id(p) for p in t_params} and not (in_t & in_w)
    before = [p.detach().clone() for p in t_params]
    conv_before = [p.detach().clone() for n, p in model.net.named_parameters() if "transformer" not in n]
    calls = []
    h = model.register_forward_hook(lambda *a: calls.append(1))
    m = search_step(st, model, opt, _batch(seed=1), None, 0, 0)              # no architecture batch needed
    h.remove()
    assert set(m) == {"loss", "acc"} and len(calls) == 1                    # one forward pass
    assert sum(not torch.equal(a, p) for a, p in zip(before, t_params)) > len(t_params) // 2
    assert any(not torch.equal(a, p) for a, p, in zip(
        conv_before, [p for n, p in model.net.named_parameters() if "transformer" not in n]))


def test_scores_average_the_instances_and_training_rows_reset_each_epoch():
    st = get_strategy("itnas", get_space("nb201", C=4, N=2))
    model = st.build(4, 3, 8)
    opt = st.optimizers(model, 10, 5)
    for step in range(2):
        search_step(st, model, opt, _batch(seed=step), None, 0, step)
    mixers = indicator_mixers(model)
    assert all(float(m.train_count[0]) == 16 for m in mixers)              # 2 steps x 8 images, once each
    scores = st.scores(model)
    for key, s in scores.items():
        rows = [m.mean_row("train") for m in mixers if m.key == key]
        assert len(rows) == 6                                              # 3 stages x N=2 cells
        assert s == pytest.approx([sum(r[j] for r in rows) / 6 for j in range(1, 6)])
    search_step(st, model, opt, _batch(seed=5), None, 1, 0)                   # new epoch: running average restarts
    assert all(float(m.train_count[0]) == 8 for m in mixers)
    arch = st.derive(model)                                                 # per-epoch derive: no data pass
    assert arch.meta["selection"] == "training running average"


def test_recomputed_blocks_record_one_row_per_step():
    st = get_strategy("itnas", get_space("nb201", **TINY_NB201), {"recompute": "all"})
    model = st.build(4, 3, 8)
    opt = st.optimizers(model, 10, 5)
    search_step(st, model, opt, _batch(), None, 0, 0)
    assert all(float(m.train_count[0]) == 8 for m in indicator_mixers(model))


def test_recompute_is_exact_and_recomputes_each_block_once(monkeypatch):
    """Activation checkpointing of IT blocks: same gradients as without, and each checkpointed
    block runs its forward once more in the backward pass (not once per autograd.grad call of
    the layer's backward: the checkpoint's hooks must not pack the layer's small graph)."""
    from attnas.ops import lite_transformer as lt
    calls = []
    forward = lt._ITLayerFunction.forward

    def counted(ctx, layer, *args):
        calls.append(layer)
        return forward(ctx, layer, *args)

    monkeypatch.setattr(lt._ITLayerFunction, "forward", staticmethod(counted))
    grads = []
    for policy in ("none", "all"):
        torch.manual_seed(0)
        st = get_strategy("itnas", get_space("nb201", **TINY_NB201), {"recompute": policy, "warmup": 0})
        model = st.build(4, 3, 8)
        calls.clear()
        x, y = _batch()
        F.cross_entropy(model(x), y).backward()
        blocks = len(indicator_mixers(model))
        assert len(calls) == blocks * (2 if policy == "all" else 1)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_selection_pass_eq6_and_darts_two_inputs_rule():
    space = get_space("darts", **TINY_DARTS)
    st = get_strategy("itnas", space, {"warmup": 0})   # the first step trains the attention
    torch.manual_seed(0)
    model = st.build(4, 3, 8)
    opt = st.optimizers(model, 10, 5)
    search_step(st, model, opt, _batch(seed=1), None, 0, 0)
    val = [_batch(n=6, seed=10 + i) for i in range(3)]
    arch = st.derive(model, context=iter(val))
    assert arch.meta["selection"] == "validation pass (Eq. 6)" and arch.meta["selection_images"] == 18
    mixers = indicator_mixers(model)
    assert all(float(m.select_count[0]) == 18 for m in mixers)
    scores = st.scores(model)                                               # now the validation averages
    for key, s in scores.items():
        rows = [m.mean_row("select") for m in mixers if m.key == key]
        assert s == pytest.approx([sum(r[j] for r in rows) / len(rows) for j in range(1, len(rows[0]))])
        assert arch.meta["attention"][key]["tokens"][0] == "IT"
    # DARTS rule: two inputs per node, edges ranked by their strongest non-none attention weight
    points = {p.key: p for p in space.choice_points()}
    for group in {p.group for p in points.values()}:
        keys = [k for k, p in points.items() if p.group == group]
        strength = {k: max(v for o, v in zip(points[k].candidates, scores[k]) if o != "none") for k in keys}
        kept = sorted(keys, key=lambda k: -strength[k])[:2]
        assert {k for k in keys if arch.choices[k] != "none"} == set(kept)
        for k in kept:
            best = max((v, o) for o, v in zip(points[k].candidates, scores[k]) if o != "none")[1]
            assert arch.choices[k] == best
    search_step(st, model, opt, _batch(seed=2), None, 0, 1)                   # training again: back to train rows
    assert not bool(model.arch.selected)


# ----- single-path sampling (chain spaces) ------------------------------------------------------

class ToyChain(SearchSpace):
    """Two searchable layers of a chain, candidates skip / noise / conv (like a chain space's
    ``layer:<i>`` points with a skip candidate)."""

    name = "toychain"

    def __init__(self, C: int = 8) -> None:
        self.C = C

    def choice_points(self):
        return [ChoicePoint(layer_key(i), ("skip", "noise", "conv"), layer_key(i)) for i in range(2)]

    def _op(self, name: str) -> nn.Module:
        if name == "skip":
            return nn.Identity()
        if name == "noise":
            return Noise(self.C, 1)
        return nn.Sequential(nn.ReLU(), nn.Conv2d(self.C, self.C, 3, padding=1, bias=False),
                             nn.BatchNorm2d(self.C, affine=False))

    def build_supernet(self, mixer_factory, num_classes, in_channels, image_size):
        blocks = [ChoiceBlock(p, [self._op(o) for o in p.candidates], mixer_factory(p))
                  for p in self.choice_points()]
        return nn.Sequential(nn.Conv2d(in_channels, self.C, 3, padding=1), *blocks,
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(self.C, num_classes))

    def build_network(self, arch, num_classes, in_channels, image_size, **options):  # pragma: no cover
        raise NotImplementedError


@pytest.mark.parametrize("k", [1, 2])
def test_chain_space_trains_sampled_paths_and_selects_over_all_candidates(k):
    st = get_strategy("itnas", ToyChain(), {"recompute": "none", "chain": {"sample_k": k}})  # count each forward once
    assert st.sampling == "uniform"                                          # auto: chain keys
    model = st.build(4, 3, 8)
    opt = st.optimizers(model, 10, 5)
    calls: dict[int, int] = {}
    blocks = [m for m in model.net.modules() if isinstance(m, ChoiceBlock)]
    for b in blocks:
        for op in b.ops:
            op.register_forward_hook(lambda mod, i, o: calls.__setitem__(id(mod), calls.get(id(mod), 0) + 1))
    for step in range(6):
        calls.clear()
        search_step(st, model, opt, _batch(seed=step), None, 0, step)
        assert all(sum(calls.get(id(op), 0) for op in b.ops) == k for b in blocks)   # k paths per step
    for m in indicator_mixers(model):
        c = m.train_count.tolist()
        assert c[0] == 48 and sum(c[1:]) == 48 * k                          # IT always, k candidates per step
    arch = st.derive(model, context=[_batch(seed=9)])
    for key, rec in arch.meta["attention"].items():                          # all n+1 tokens at selection
        assert len(rec["mean"]) == 4 and sum(rec["mean"]) == pytest.approx(1.0, abs=1e-5)
        assert arch.choices[key] == ("skip", "noise", "conv")[max(range(3), key=lambda i: rec["mean"][i + 1])]


def test_sampled_pairs_teach_the_indicator_to_rank_all_candidates():
    """Chain-space training with two sampled candidates per layer (``chain.sample_k=2``): the IT learns to
    rank the useless 'noise' block below the others, although no step runs all candidates.

    Per layer the softmax often saturates (two candidates at ~1e-5, where their order is noise), so
    the ranking is checked on the attention averaged over 3 seeds x 2 layers; the selection itself
    must never pick 'noise'.  A untrained (or unlearning) indicator gives 1/3 each."""
    means = []
    for seed in range(3):
        torch.manual_seed(seed)
        st = get_strategy("itnas", ToyChain(), {"recompute": "none", "transformer_lr": 3e-3, "transformer_optim": "adam",
                                                "chain": {"weights": {"lr": 0.1}, "sample_k": 2}})
        st.seed(seed)
        model = st.build(4, 3, 8)
        opt = st.optimizers(model, 100, 1)
        g = torch.Generator().manual_seed(seed)
        protos = torch.randn(4, 3, 8, 8, generator=g)

        def batch(n=32):
            y = torch.randint(0, 4, (n,), generator=g)
            return protos[y] + 0.5 * torch.randn(n, 3, 8, 8, generator=g), y

        for step in range(100):
            search_step(st, model, opt, batch(), None, 0, step)
        arch = st.derive(model, context=[batch(64)])
        for key, rec in arch.meta["attention"].items():
            assert arch.choices[key] != "noise", (seed, key, rec["mean"])
            means.append(rec["mean"][1:])
    skip, noise, conv = torch.tensor(means).mean(0).tolist()
    assert noise < 0.5 * min(skip, conv), (skip, noise, conv)


def test_single_path_attention_is_a_logit_against_the_indicator_token():
    """With one sampled candidate the row is [a_0, a_i] = softmax(s_0, s_i): a_i compares candidate i
    with the IT's own score, a reference shared by all candidates, so weights learnt on different
    steps are comparable (module docstring)."""
    lt = _perturbed_layer(n=3, c=4, spatial=(3, 3), center=False)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    _, full = lt([x, x + 1, x - 1], torch.tensor([1, 2, 3]), x.shape)
    for i, m in enumerate([x, x + 1, x - 1]):
        _, single = lt([m], torch.tensor([i + 1]), x.shape)
        s = torch.log(full)                                                  # logits up to a shared constant
        expected = torch.sigmoid(s[:, i + 1] - s[:, 0])
        assert torch.allclose(single[:, 1], expected)


def test_chain_space_macro_builds_and_forwards():
    st = get_strategy("itnas", get_space("macro", C=4, head=8))
    model = st.build(10, 3, 8)
    assert st.sampling == "uniform" and len(indicator_mixers(model)) == 8
    opt = st.optimizers(model, 10, 5)
    search_step(st, model, opt, _batch(n=4, classes=10), None, 0, 0)
    arch = st.derive(model, context=[_batch(n=4, classes=10)])
    assert set(arch.choices) == {layer_key(i) for i in range(8)}


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError):
        get_strategy("itnas", get_space("nb201", **TINY_NB201), {"sampling": "sometimes"})
    with pytest.raises(ConfigError):
        get_strategy("itnas", get_space("nb201", **TINY_NB201), {"sample_k": 0})
    with pytest.raises(ConfigError):
        get_strategy("itnas", get_space("nb201", **TINY_NB201), {"heads": 2})


# ----- runs: CLI, resume ---------------------------------------------------------------------

SYN = "synthetic:3,8,4,32,8"


def _search(out: Path, *extra: str) -> int:
    from attnas.cli.main import main

    return main(["search", "--method", "itnas", "--dataset", SYN, "--batch-size", "8", "--quiet",
                 "--out", str(out), *extra])


@pytest.mark.parametrize("space,opts", [("nb201", TINY_NB201), ("darts", TINY_DARTS)])
def test_cli_search_writes_architecture_scores_and_attention(tmp_path, monkeypatch, capsys, space, opts):
    monkeypatch.delenv("ATTNAS_DATA_DIR", raising=False)
    out = tmp_path / space
    assert _search(out, "--space", space, "--epochs", "1", "--space-options", json.dumps(opts)) == 0
    printed = capsys.readouterr().out
    assert "candidate strengths" in printed
    arch = json.loads((out / "architecture.json").read_text())
    scores = json.loads((out / "scores.json").read_text())
    assert arch["meta"]["method"] == "itnas" and arch["meta"]["selection"] == "validation pass (Eq. 6)"
    assert set(arch["meta"]["attention"]) == set(scores["scores"]) == set(arch["choices"])
    for key, rec in arch["meta"]["attention"].items():
        assert rec["mean"][1:] == pytest.approx(scores["scores"][key], abs=1e-5)
    get_space(space, **opts).validate(architecture_from_dict(arch))


@pytest.mark.parametrize("space", ["s1", "s2", "s3", "s4"])
def test_reduced_spaces_search_and_derive(space, request):
    opts = dict(TINY_DARTS)
    if space == "s1":
        opts["data_dir"] = str(request.getfixturevalue("data_dir"))
    sp = get_space(space, **opts)
    st = get_strategy("itnas", sp)
    model = st.build(4, 3, 8)
    opt = st.optimizers(model, 1, 1)
    search_step(st, model, opt, _batch(n=4), None, 0, 0)
    arch = st.derive(model, context=[_batch(n=4, seed=1)])
    assert arch.meta["selection_images"] == 4
    points = {p.key: p for p in sp.choice_points()}
    for group in {p.group for p in points.values()}:      # DARTS rule: two inputs per node
        kept = [k for k, p in points.items() if p.group == group and arch.choices[k] != "none"]
        assert len(kept) == 2 and all(arch.choices[k] in points[k].candidates for k in kept)


def test_resume_after_stop_gives_the_same_architecture_and_scores(tmp_path, monkeypatch):
    monkeypatch.delenv("ATTNAS_DATA_DIR", raising=False)
    opts = ["--space", "nb201", "--epochs", "2", "--space-options", json.dumps(TINY_NB201), "--seed", "3"]
    assert _search(tmp_path / "a", *opts) == 0
    assert _search(tmp_path / "b", *opts, "--stop-after", "1") == 0
    assert not (tmp_path / "b" / "architecture.json").exists()
    from attnas.cli.main import main
    assert main(["search", "--resume", str(tmp_path / "b"), "--quiet"]) == 0
    for name in ("architecture.json", "scores.json"):
        a = json.loads((tmp_path / "a" / name).read_text())
        b = json.loads((tmp_path / "b" / name).read_text())
        assert a == b, name
    ma = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [m["scores"] for m in ma] == [m["scores"] for m in mb]


# ----- ranking consistency (Sec. 4.3, A.7) ------------------------------------------------------

class _FakeBench:
    """An NB201Bench stand-in: accuracy of canonical index n is a fixed function of its digits."""

    def __init__(self):
        from attnas.benchmarks.nb201 import NB201_SIZE
        import numpy as np
        g = np.random.default_rng(0)
        self.acc = g.uniform(10, 90, NB201_SIZE)

    def accuracies(self, dataset="cifar10", split="test"):
        return self.acc


def test_best_acc_is_the_maximum_over_cells_with_that_operation_on_that_edge():
    from attnas.analysis.ranking import best_acc_table
    from attnas.benchmarks.nb201 import nb201_all_architectures

    bench = _FakeBench()
    best = best_acc_table(bench)
    archs = nb201_all_architectures()
    brute: dict[str, dict[str, float]] = {}
    for n, a in enumerate(archs):
        for key, op in a.choices.items():
            brute.setdefault(key, {}).setdefault(op, -1.0)
            brute[key][op] = max(brute[key][op], float(bench.acc[n]))
    assert best == brute


def test_kendall_tau_and_consistency_of_runs(tmp_path):
    from attnas.analysis.ranking import kendall_tau, ranking_consistency

    assert kendall_tau([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert kendall_tau([3, 2, 1], [10, 20, 30]) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau([0.2] * 3, [1, 2, 3]))
    bench = _FakeBench()
    from attnas.analysis.ranking import best_acc_table
    best = best_acc_table(bench)
    cands = {k: list(v) for k, v in best.items()}
    for name, method, sign in (("good", "itnas", 1.0), ("bad", "darts", -1.0)):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"space": "nb201", "method": method, "seed": 0}))
        scores = {k: [sign * best[k][o] for o in cands[k]] for k in cands}
        (d / "scores.json").write_text(json.dumps({"candidates": cands, "scores": scores}))
    rep = ranking_consistency([tmp_path / "good", tmp_path / "bad"], bench)
    assert all(mu == pytest.approx(1.0) for mu, _ in rep.tau("itnas").values())
    assert all(mu == pytest.approx(-1.0) for mu, _ in rep.tau("darts").values())
    with pytest.raises(ConfigError):
        ranking_consistency([tmp_path / "missing"], bench)


def test_analyze_ranking_command_prints_the_table(tmp_path, capsys, data_dir):
    from attnas.cli.main import main

    (tmp_path / "r").mkdir()
    from attnas.spaces.nb201 import NB201_CANDIDATES
    space = get_space("nb201")
    cands = {p.key: list(NB201_CANDIDATES) for p in space.choice_points()}
    scores = {k: [0.1, 0.3, 0.2, 0.25, 0.15] for k in cands}
    (tmp_path / "r" / "config.json").write_text(json.dumps({"space": "nb201", "method": "itnas", "seed": 0}))
    (tmp_path / "r" / "scores.json").write_text(json.dumps({"candidates": cands, "scores": scores}))
    assert main(["analyze", "ranking", str(tmp_path / "r"), "--data-dir", str(data_dir), "--detail", "--json"]) == 0
    out = capsys.readouterr().out
    assert "Edge_6" in out and "itnas tau" in out and "best_acc" in out
    res = json.loads(out.strip().splitlines()[-1])
    assert set(res["methods"]["itnas"]["tau"]) == set(cands)
    assert max(max(v.values()) for v in res["best_acc"].values()) == pytest.approx(94.37, abs=0.01)


# ----- selection by operation quality, and its noise ---------------------------------------------

class StripesCell(SearchSpace):
    """One NAS-Bench-201 edge between a 1x1 stem and a BN-ReLU-GAP classifier.  The task
    (horizontal vs vertical stripes, random phase, noise) has identical per-pixel statistics in
    both classes, so anything pointwise or linear before the global pooling (skip, 1x1
    convolution, 3x3 average pooling, none) cannot solve it: only the spatial convolution can."""

    name = "stripescell"
    OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

    def __init__(self, C: int = 8) -> None:
        self.C = C

    def choice_points(self):
        return [ChoicePoint("cell:0->1", self.OPS, "cell:0->1")]

    def build_supernet(self, mixer_factory, num_classes, in_channels, image_size):
        from attnas.ops.primitives import NB201_OPS, build_op
        p = self.choice_points()[0]
        block = ChoiceBlock(p, [build_op(NB201_OPS, o, self.C, self.C, 1, False) for o in p.candidates],
                            mixer_factory(p))
        return nn.Sequential(nn.Conv2d(in_channels, self.C, 1), nn.BatchNorm2d(self.C), block,
                             nn.BatchNorm2d(self.C), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(self.C, num_classes))

    def build_network(self, arch, num_classes, in_channels, image_size, **options):  # pragma: no cover
        raise NotImplementedError


def _stripes(n: int, g: torch.Generator, size: int = 8):
    y = torch.randint(0, 2, (n,), generator=g)
    phase = torch.randint(0, 2, (n,), generator=g)
    pattern = ((torch.arange(size)[None, :] + phase[:, None]) % 2).float() * 2 - 1
    rows = pattern[:, :, None].expand(n, size, size)
    cols = pattern[:, None, :].expand(n, size, size)
    x = torch.where(y[:, None, None] == 0, rows, cols)[:, None].expand(n, 3, size, size)
    return x + 0.5 * torch.randn(n, 3, size, size, generator=g), y


def _search_stripes(seed: int, steps: int = 150, options=None):
    torch.manual_seed(seed)
    st = get_strategy("itnas", StripesCell(), {"recompute": "none", **(options or {})})
    st.seed(seed)
    model = st.build(2, 3, 8)
    opt = st.optimizers(model, steps, 1)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        search_step(st, model, opt, _stripes(32, g), None, 0, step)
    return st, model, st.derive(model, context=[_stripes(32, g) for _ in range(4)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_only_a_spatial_convolution_solves_it_and_the_indicator_picks_it(seed):
    """Selection by operation quality: a random pick finds the convolution with p = 1/5 per seed."""
    st, model, arch = _search_stripes(seed)
    assert arch.choices["cell:0->1"] == "nor_conv_3x3", arch.meta["attention"]
    m = arch.meta["margins"]["cell:0->1"]
    assert m["top1"] == "nor_conv_3x3" and m["margin"] > 0 and m["batches"] == 4


def test_margins_bootstrap_the_validation_batches():
    """The winner's margin over the runner-up, with a bootstrap over the validation batches: a
    winner that loses in some resamples is not separated; identical per-batch rows give zero noise."""
    st, model, arch = _search_stripes(0, steps=20)
    mixer = indicator_mixers(model)[0]
    margins = st.margins(model)["cell:0->1"]
    rows = torch.stack([r / c for r, c in mixer.select_batches])[:, 1:]    # per-batch mean rows
    full = (sum(r for r, _ in mixer.select_batches) / sum(c for _, c in mixer.select_batches))[1:]
    assert margins["top1"] == StripesCell.OPS[int(full.argmax())]
    assert margins["margin"] == pytest.approx(float(full.sort(descending=True).values[0] - full.sort(descending=True).values[1]))
    assert 0 <= margins["win_rate"] <= 1 and margins["margin_std"] >= 0
    assert margins["separated"] == (margins["win_rate"] >= 0.95)
    # the same batch four times: every resample is the full sample
    mixer.select_batches = [mixer.select_batches[0]] * 4
    same = st.margins(model)["cell:0->1"]
    assert same["margin_std"] == pytest.approx(0.0, abs=1e-12) and same["win_rate"] == 1.0
    # two batches that disagree on the winner: not separated
    r0, c0 = mixer.select_batches[0]
    order = torch.argsort(r0[1:], descending=True) + 1
    swapped = r0.clone()
    swapped[order[0]], swapped[order[1]] = r0[order[1]] + 1e-3 * c0, r0[order[0]]
    mixer.select_batches = [(r0, c0), (swapped, c0)] * 3
    assert not st.margins(model)["cell:0->1"]["separated"]
    assert rows.shape[1] == len(StripesCell.OPS)


def test_chain_spaces_follow_the_papers_one_shot_protocol():
    """Chain spaces: two uniformly sampled candidates per layer per step (k = 1 did not train the
    NAS-Bench-Macro supernet: presets.ITNASChainProtocol), 80/20 train/selection split (10 % / 2.5 % of
    ImageNet), the ImageNet SGD settings scaled to batch 64; cell spaces keep the DARTS ones."""
    chain = get_strategy("itnas", ToyChain())
    assert chain.sampling == "uniform" and chain.cfg.sample_k == 2 and chain.cfg.train_portion == 0.8
    assert chain.cfg.weights.lr == pytest.approx(0.25 * 64 / 512) and chain.cfg.weights.weight_decay == 4e-5
    cell = get_strategy("itnas", get_space("nb201", **TINY_NB201))
    assert cell.sampling == "all" and cell.cfg.train_portion == 0.5 and cell.cfg.weights.lr == 0.025
    custom = get_strategy("itnas", ToyChain(), {"chain": {"sample_k": 1, "train_portion": 0.5}})
    assert custom.cfg.sample_k == 1 and custom.cfg.train_portion == 0.5
    with pytest.raises(ConfigError):
        get_strategy("itnas", ToyChain(), {"chain": {"sample_k": 0}})


def test_zero_key_starts_every_candidate_at_the_same_attention():
    """``zero_key``: at initialisation the attention is uniform over the IT and the candidates,
    whatever their (unit-scale) position codes and contents; with a random key it is not."""
    g = torch.Generator().manual_seed(5)
    maps = [torch.randn(3, 6, 4, 4, generator=g) * (i + 1) for i in range(4)]
    positions = torch.tensor([1, 2, 3, 4])
    torch.manual_seed(0)
    _, a = LiteTransformer(4, 6, (4, 4))(maps, positions, maps[0].shape)
    assert torch.allclose(a, torch.full_like(a, 1 / 5))
    torch.manual_seed(0)
    _, a_rand = LiteTransformer(4, 6, (4, 4), zero_key=False)(maps, positions, maps[0].shape)
    assert (a_rand - 1 / 5).abs().max() > 0.02


def test_bi_level_option_updates_the_transformer_on_the_architecture_batch():
    """``update="bi"`` (a documented departure): the transformer step sees only the architecture
    batch, the weight step only the training batch."""
    st = get_strategy("itnas", get_space("nb201", **TINY_NB201), {"update": "bi", "transformer_optim": "adam"})
    torch.manual_seed(0)
    model = st.build(4, 3, 8)
    opt = st.optimizers(model, 10, 5)
    t_params = st.transformer_parameters(model)
    before = [p.detach().clone() for p in t_params]
    seen = []
    h = model.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].data_ptr()))
    bw, ba = _batch(seed=1), _batch(seed=2)
    m = search_step(st, model, opt, bw, ba, 0, 0)
    h.remove()
    assert seen == [ba[0].data_ptr(), bw[0].data_ptr()] and "arch_loss" in m
    assert sum(not torch.equal(a, p) for a, p in zip(before, t_params)) > len(t_params) // 2
    # the same transformer step as a lone Adam step on the architecture batch's gradient
    torch.manual_seed(0)
    ref = st.build(4, 3, 8)
    ropt = st.optimizers(ref, 10, 5)
    rt = st.transformer_parameters(ref)
    F.cross_entropy(ref(ba[0]), ba[1]).backward()
    ropt["transformer"].step()
    assert all(torch.allclose(a, b) for a, b in zip(rt, t_params))
    with pytest.raises(ConfigError):
        get_strategy("itnas", get_space("nb201", **TINY_NB201), {"update": "bi", "transformer_optim": "sgd"})


def _code_logits(lt: LiteTransformer, n: int) -> torch.Tensor:
    """The candidates' attention logits at zero (batch-centred) content: the position-code terms."""
    c, s = lt.channels, lt.n_patterns
    phi0, phi = lt.descriptors(torch.zeros(1, n, c), torch.zeros(1, n, c, s), torch.zeros(1, n, c),
                               torch.arange(1, n + 1))
    return lt.key(phi[0]).matmul(lt.query(phi0)) / math.sqrt(lt.qk_dim)


@pytest.mark.parametrize("pos_init", ["orthogonal", "normal"])
def test_orthogonal_codes_learn_each_candidates_logit_on_its_own(pos_init):
    """``pos_init="orthogonal"``: a gradient step that favours one candidate moves that
    candidate's logit only (its code's key term is uncoupled from the others'), as the paper's
    near-orthogonal codes in d = c*h*w dimensions do; i.i.d. codes in c = 8 dimensions couple
    the candidates (the step moves every logit)."""
    n, c = 5, 8
    torch.manual_seed(3)
    lt = LiteTransformer(n, c, (4, 4), pos_init=pos_init)
    pos = lt.pos.detach()
    norms = pos.norm(dim=1)
    if pos_init == "orthogonal":
        assert torch.allclose(pos @ pos.t(), torch.diag(norms.square()), atol=1e-4)
        assert torch.allclose(norms, torch.full_like(norms, math.sqrt(c)), atol=1e-4)
    before = _code_logits(lt, n).detach()
    _code_logits(lt, n)[2].backward()                 # a loss that favours candidate 3 only
    with torch.no_grad():
        lt.key.weight.add_(lt.key.weight.grad, alpha=1.0)
    moved = (_code_logits(lt, n).detach() - before).abs()
    others = torch.cat([moved[:2], moved[3:]])
    assert moved[2] > 0.2
    if pos_init == "orthogonal":
        assert others.max() < 1e-4 * moved[2]
    else:
        assert others.max() > 0.05 * moved[2]


def test_orthogonal_codes_need_a_known_init():
    with pytest.raises(ValueError):
        LiteTransformer(4, 6, (4, 4), pos_init="uniform")


@pytest.mark.parametrize("optim", ["sgd", "adam"])
def test_warmup_epochs_train_the_supernet_under_uniform_attention(optim):
    """``warmup_epochs`` (a departure, off by default): in the first epochs only the supernet
    weights move and the attention stays uniform; afterwards the transformer trains as usual."""
    st = get_strategy("itnas", get_space("nb201", **TINY_NB201), {"warmup": 0.2, "transformer_optim": optim})
    torch.manual_seed(0)
    model = st.build(4, 3, 8)
    opt = st.optimizers(model, 10, 5)                                   # 5 epochs: 1 of warm-up
    assert st.warmup_epochs == 1
    t_params = [p for m in indicator_mixers(model) for p in m.transformer.parameters()]
    net_params = [p for n, p in model.net.named_parameters() if "transformer" not in n]
    before_t = [p.detach().clone() for p in t_params]
    before_w = [p.detach().clone() for p in net_params]
    for step in range(2):
        search_step(st, model, opt, _batch(seed=step), None, 0, step)     # epoch 0: warm-up
    assert all(torch.equal(a, p) for a, p in zip(before_t, t_params))
    assert any(not torch.equal(a, p) for a, p in zip(before_w, net_params))
    search_step(st, model, opt, _batch(seed=5), None, 1, 0)               # epoch 1: the transformer trains
    assert sum(not torch.equal(a, p) for a, p in zip(before_t, t_params)) > len(t_params) // 2
    with pytest.raises(ConfigError):
        get_strategy("itnas", get_space("nb201", **TINY_NB201), {"warmup": 1.0})


def test_transformer_ramp_scales_the_first_updates_after_the_warmup():
    """``transformer_ramp`` (a departure, 0.2 in the preset): after the warm-up the transformer's
    SGD updates rise linearly, step by step, to full size; the supernet's are not scaled.  The
    first step's update of a zero-initialised key projection is exactly 1/ramp_steps of the
    unramped one (momentum buffers start empty, no weight decay on a zero tensor)."""
    updates = {}
    for ramp in (0.0, 0.4):
        st = get_strategy("itnas", get_space("nb201", **TINY_NB201),
                          {"warmup": 0.2, "transformer_ramp": ramp, "transformer_optim": "sgd"})
        torch.manual_seed(0)
        model = st.build(4, 3, 8)
        opt = st.optimizers(model, 10, 5)                 # 10 steps x 5 epochs: 1 of warm-up, ramp 2 epochs
        keys = [m.transformer.key.weight for m in indicator_mixers(model)]
        conv = next(p for n, p in model.net.named_parameters() if "transformer" not in n and p.dim() == 4)
        before_k, before_c = [k.detach().clone() for k in keys], conv.detach().clone()
        search_step(st, model, opt, _batch(seed=1), None, 1, 0)   # the first step after the warm-up
        updates[ramp] = ([k.detach() - b for k, b in zip(keys, before_k)], conv.detach() - before_c)
        if ramp:
            assert st.ramp_steps == 20 and st._ramp == pytest.approx(1 / 20)
            st.begin_step(model, 2, 9)
            assert st._ramp == pytest.approx(20 / 20)         # full from step 20 of the ramp on
            st.begin_step(model, 0, 3)
            assert st._ramp == 1.0                            # warm-up: not scaled (not trained)
    full, ramped = updates[0.0], updates[0.4]
    assert any(float(d.abs().sum()) > 0 for d in full[0])
    for d_full, d_ramp in zip(full[0], ramped[0]):
        assert torch.allclose(d_ramp, d_full / 20, atol=1e-9)
    assert torch.allclose(ramped[1], full[1])                 # the supernet's step is the same
    adam = get_strategy("itnas", get_space("nb201", **TINY_NB201), {"transformer_ramp": 0.2, "transformer_optim": "adam"})
    adam.optimizers(adam.build(4, 3, 8), 10, 5)
    assert adam.ramp_steps == 0 and get_strategy("itnas", get_space("nb201", **TINY_NB201)).cfg.transformer_ramp == 0.2
    with pytest.raises(ConfigError, match="transformer_ramp"):
        get_strategy("itnas", get_space("nb201", **TINY_NB201), {"transformer_ramp": 1.5})


def test_warmup_epochs_derive_no_architecture(tmp_path, monkeypatch):
    """The per-epoch trajectory has no architecture for warm-up epochs (uniform attention picks
    nothing); the epochs after it and the final result do."""
    monkeypatch.delenv("ATTNAS_DATA_DIR", raising=False)
    out = tmp_path / "w"
    assert _search(out, "--space", "nb201", "--epochs", "2", "--space-options", json.dumps(TINY_NB201),
                   "--method-options", '{"warmup": 0.5}') == 0
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert "arch" not in rows[0] and "arch" in rows[1]
    assert json.loads((out / "architecture.json").read_text())["choices"]
