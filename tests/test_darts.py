"""DARTS: the softmax mixture, the first- and second-order architecture steps, random search."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from attnas.spaces.registry import get_space
from attnas.strategies.base import get_strategy
from attnas.strategies.darts import param_name
from attnas.training.step import search_step

TINY_NB201 = {"C": 4, "N": 1}


def _batch(n=8, size=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g, dtype=dtype), torch.randint(0, 4, (n,), generator=g)


def test_softmax_mixture_equals_weighted_sum_of_candidates():
    space = get_space("nb201", **TINY_NB201)
    st = get_strategy("darts", space, {"recompute": "none"})
    model = st.build(4, 3, 8)
    block = next(m for m in model.net.modules() if m.__class__.__name__ == "ChoiceBlock")
    with torch.no_grad():
        model.arch.alphas[param_name(block.point.key)].copy_(torch.tensor([0.3, -1.0, 2.0, 0.5, 0.1]))
    x = torch.randn(2, 4, 8, 8)
    w = F.softmax(torch.tensor([0.3, -1.0, 2.0, 0.5, 0.1]), -1)
    expected = sum(w[i] * op(x) for i, op in enumerate(block.ops))  # 'none' included explicitly
    assert torch.allclose(block(x), expected, atol=1e-6)


def test_recompute_gives_identical_gradients():
    space = get_space("nb201", **TINY_NB201)
    grads = []
    for policy in ("none", "all"):
        torch.manual_seed(0)
        st = get_strategy("darts", space, {"recompute": policy})
        model = st.build(4, 3, 8)
        x, y = _batch()
        F.cross_entropy(model(x), y).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_first_order_step_updates_alpha_from_architecture_batch_only():
    space = get_space("nb201", **TINY_NB201)
    st = get_strategy("darts", space)
    torch.manual_seed(0)
    model = st.build(4, 3, 8)
    opt = st.optimizers(model, 10, 5)
    before = {k: v.detach().clone() for k, v in model.arch.alphas.items()}
    w_before = [p.detach().clone() for p in model.net.parameters()]
    m = search_step(st, model, opt, _batch(seed=1), _batch(seed=2), 0, 0)
    assert set(m) == {"loss", "acc", "arch_loss"}
    assert any(not torch.equal(before[k], v) for k, v in model.arch.alphas.items())
    assert any(not torch.equal(a, b) for a, b in zip(w_before, model.net.parameters()))
    assert all(p.requires_grad for p in model.parameters())  # freezing is undone


def _smooth_activations(module: torch.nn.Module) -> None:
    """ReLU -> Softplus: finite differences of gradients are only accurate for a smooth
    loss (across a ReLU kink the gradient jumps, and the DARTS finite difference picks
    up jump/eps terms that the exact second derivative, zero a.e., does not have)."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.ReLU):
            setattr(module, name, torch.nn.Softplus(beta=4.0))
        else:
            _smooth_activations(child)


def test_second_order_gradient_matches_exact_unrolled_gradient():
    """Eq. 7-8: the finite-difference Hessian-vector product approximates the exact
    gradient of L_val(w - xi * grad_w L_train(w, alpha), alpha) w.r.t. alpha."""
    torch.manual_seed(0)
    space = get_space("nb201", **TINY_NB201)
    st = get_strategy("darts-2nd", space, {"recompute": "none", "weights": {"weight_decay": 3e-4}})
    model = st.build(4, 3, 8).double()
    _smooth_activations(model)
    with torch.no_grad():
        for a in model.arch.parameters():
            a.normal_(0, 0.5)
    opt = st.optimizers(model, 10, 5)
    xi = opt["weights"].param_groups[0]["lr"]
    bw, ba = _batch(seed=3, dtype=torch.float64), _batch(seed=4, dtype=torch.float64)

    st._unrolled_step(model, opt["weights"], bw, ba)
    approx = torch.cat([a.grad.flatten() for a in model.arch.parameters()])
    model.arch.zero_grad()

    names = [n for n, _ in model.net.named_parameters()]
    w = list(model.net.parameters())
    g = torch.autograd.grad(F.cross_entropy(model(bw[0]), bw[1]), w, create_graph=True)
    unrolled = {n: p - xi * (gi + 3e-4 * p) for n, p, gi in zip(names, w, g)}
    loss_val = F.cross_entropy(functional_call(model.net, unrolled, (ba[0],)), ba[1])
    exact = torch.cat([t.flatten() for t in torch.autograd.grad(loss_val, list(model.arch.parameters()))])

    cos = F.cosine_similarity(approx, exact, dim=0)
    assert cos > 0.999
    assert (approx - exact).norm() / exact.norm() < 0.02


def test_second_order_differs_from_first_order():
    torch.manual_seed(0)
    space = get_space("nb201", **TINY_NB201)
    grads = {}
    for method in ("darts", "darts-2nd"):
        torch.manual_seed(0)
        st = get_strategy(method, space, {"recompute": "none"})
        model = st.build(4, 3, 8)
        opt = st.optimizers(model, 10, 5)
        opt["arch"].step = lambda: None  # keep alpha.grad for inspection
        search_step(st, model, opt, _batch(seed=5), _batch(seed=6), 0, 0)
        grads[method] = torch.cat([a.grad.flatten() for a in model.arch.parameters()])
    assert not torch.allclose(grads["darts"], grads["darts-2nd"])


def test_random_search_trains_sampled_paths_and_picks_best_on_validation():
    space = get_space("nb201", **TINY_NB201)
    st = get_strategy("random", space, {"num_samples": 5, "eval_batches": 1})
    st.seed(0)
    model = st.build(4, 3, 8)
    opt = st.optimizers(model, 10, 5)
    search_step(st, model, opt, _batch(seed=1), _batch(seed=2), 0, 0)
    arch = st.derive(model, context=[_batch(seed=7)])
    space.validate(arch)
    assert 0.0 <= arch.meta["supernet_val_acc"] <= 1.0
    # reproducible by seed
    st2 = get_strategy("random", space, {"num_samples": 5, "eval_batches": 1})
    st2.seed(0)
    rng = random.Random(0)
    assert [st2.space.sample(st2.rng) for _ in range(3)] == [space.sample(rng) for _ in range(3)]


def test_unknown_method_and_option_are_clear_errors():
    from attnas.errors import ConfigError
    space = get_space("nb201", **TINY_NB201)
    with pytest.raises(ConfigError, match="unknown method 'dartz'"):
        get_strategy("dartz", space)
    with pytest.raises(ConfigError, match="unknown option 'lr'"):
        get_strategy("darts", space, {"lr": 0.1})
