"""Fused, memory-lean ``w * op(x)`` training kernels of the mixture (attnas.ops.fused)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from attnas.ops.primitives import NB201_OPS, Pool, ReLUConvBN, build_op, scaled_forward
from attnas.spaces.base import ChoiceBlock
from attnas.spaces.registry import get_space
from attnas.strategies.base import get_strategy
from attnas.strategies.darts import weighted_sum


def _pair(x):
    a = x.detach().clone().contiguous(memory_format=torch.channels_last).requires_grad_()
    return a, x.detach().clone().contiguous(memory_format=torch.channels_last).requires_grad_()


@pytest.mark.parametrize("kernel,stride,padding", [(1, 1, 0), (3, 1, 1), (3, 2, 1)])
@pytest.mark.parametrize("affine", [False, True])
def test_relu_conv_bn_scaled_matches_plain_modules(kernel, stride, padding, affine):
    torch.manual_seed(kernel + stride)
    op = ReLUConvBN(6, 10, kernel, stride, padding, affine).double()
    if affine:
        with torch.no_grad():
            op[2].weight.uniform_(0.5, 1.5), op[2].bias.uniform_(-0.5, 0.5)
    ref = copy.deepcopy(op)
    x1, x2 = _pair(torch.randn(4, 6, 9, 9, dtype=torch.float64))
    w1 = torch.tensor(0.37, dtype=torch.float64, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_()
    for _ in range(2):  # twice: the running statistics' second update too
        y1, y2 = scaled_forward(op, x1, w1), ref(x2) * w2
        assert y1.grad_fn.name() == "ReLUConvBNScaledBackward"
        g = torch.randn_like(y2)
        (y1 * g).sum().backward()
        (y2 * g).sum().backward()
        torch.testing.assert_close(y1, y2, rtol=0, atol=1e-12)
    for a, b in ((x1.grad, x2.grad), (w1.grad, w2.grad)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    for (n, a), b in zip(op.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-10, msg=n)
    for a, b in zip(op.buffers(), ref.buffers()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("stride", [1, 2])
def test_avg_pool_scaled_matches_avg_pool(stride):
    pool = Pool("avg", 5, 5, stride, False, bn_after=False)
    x1, x2 = _pair(torch.randn(3, 5, 9, 9, dtype=torch.float64))
    w1 = torch.tensor(-0.8, dtype=torch.float64, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_()
    y1 = scaled_forward(pool, x1, w1)
    y2 = F.avg_pool2d(x2, 3, stride, 1, count_include_pad=False) * w2
    assert y1.grad_fn.name() == "AvgPoolScaledBackward"
    g = torch.randn_like(y2)
    (y1 * g).sum().backward()
    (y2 * g).sum().backward()
    torch.testing.assert_close(y1, y2, rtol=0, atol=1e-13)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=1e-13)
    torch.testing.assert_close(w1.grad, w2.grad, rtol=0, atol=1e-12)


def test_plain_path_outside_training_with_gradients():
    op = ReLUConvBN(4, 4, 3, 1, 1, False)
    x, w = torch.randn(2, 4, 6, 6), torch.tensor(0.5, requires_grad=True)
    with torch.no_grad():
        assert scaled_forward(op, x, w).grad_fn is None
    op.eval()
    assert scaled_forward(op, x, w).grad_fn.name() == "MulBackward0"


def _saved_bytes(fn) -> int:
    sizes = {}

    def pack(t):
        sizes[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(sizes.values())


def test_fused_nb201_edge_keeps_two_maps_instead_of_seven():
    """The reason for the fused kernels: one NB201 mixture edge keeps x and the 3x3 conv's output
    (2 maps; the 1x1 conv's output is recomputed) where the plain modules keep 7 maps."""
    from attnas.spaces.nb201 import NB201_CANDIDATES
    from attnas.spaces.base import ChoicePoint
    point = ChoicePoint("e", NB201_CANDIDATES, "e")
    ops = [build_op(NB201_OPS, o, 16, 16, 1, False) for o in NB201_CANDIDATES]
    block = ChoiceBlock(point, ops, None)
    weights = F.softmax(torch.randn(5, requires_grad=True), -1)
    x = torch.randn(8, 16, 16, 16, requires_grad=True).contiguous(memory_format=torch.channels_last)
    one_map = x.numel() * 4
    fused = _saved_bytes(lambda: weighted_sum(x, block, weights))
    import attnas.strategies.darts as darts
    plain_sum = lambda: sum(op(x) * weights[i] for i, op in enumerate(block.ops) if i)  # noqa: E731
    plain = _saved_bytes(plain_sum)
    assert fused < 2.2 * one_map and plain > 6.5 * one_map, (fused / one_map, plain / one_map)
    assert darts.weighted_sum is weighted_sum


def test_recompute_auto_is_the_spaces_choice():
    nb = get_strategy("darts", get_space("nb201", C=4, N=1), {}).build(10, 3, 8)
    dt = get_strategy("darts", get_space("darts", C=4, layers=3), {}).build(10, 3, 8)
    blocks = lambda m: [b for b in m.net.modules() if isinstance(b, ChoiceBlock)]  # noqa: E731
    assert all(b.recompute_min_side is None for b in blocks(nb))
    assert all(b.recompute_min_side == 1 for b in blocks(dt))
    forced = get_strategy("darts", get_space("nb201", C=4, N=1), {"recompute": "all"}).build(10, 3, 8)
    assert all(b.recompute_min_side == 1 for b in blocks(forced))


def test_a_replaced_activation_takes_the_plain_modules():
    op = ReLUConvBN(4, 4, 3, 1, 1, False)
    op[0] = torch.nn.Softplus()
    x, w = torch.randn(2, 4, 6, 6), torch.tensor(0.5, requires_grad=True)
    assert scaled_forward(op, x, w).grad_fn.name() == "MulBackward0"


def test_second_derivatives_through_the_fused_kernels():
    """The backward passes are differentiable ATen operations: gradgradcheck in float64."""
    from attnas.ops.fused import AvgPoolScaled, ReLUConvBNScaled
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    gamma = torch.rand(4, dtype=torch.float64).add_(0.5).requires_grad_()
    beta = torch.randn(4, dtype=torch.float64, requires_grad=True)
    s = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    for keep in (True, False):
        fn = lambda x, w, g, b, s: ReLUConvBNScaled.apply(x, w, g, b, None, None, 0.0, 1e-5, s,  # noqa: E731
                                                          (1, 1), (1, 1), (1, 1), keep)
        assert torch.autograd.gradgradcheck(fn, (x, w, gamma, beta, s))
    recip = 1.0 / F.conv2d(torch.ones(1, 1, 5, 5, dtype=torch.float64), torch.ones(1, 1, 3, 3, dtype=torch.float64),
                           padding=1)
    assert torch.autograd.gradgradcheck(lambda x, s: AvgPoolScaled.apply(x, s, recip, 1), (x, s))
