"""The depthwise-convolution backward pass (attnas.ops.depthwise) against F.conv2d."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from attnas.ops import depthwise
from attnas.ops.depthwise import DepthwiseConv2d, DepthwiseConv2dFunction, conv_backward, depthwise_conv2d
from attnas.ops.mobile import InvertedResidual
from attnas.ops.primitives import DilConv, SepConv

pytestmark = pytest.mark.skipif(not depthwise.LIBRARY.available(), reason="no C compiler for the kernel")

# (channels, side, kernel, stride, padding, dilation): odd and even sides, channel counts below,
# at and above the 16-channel register block, 'same' and other paddings, strides and dilations
CASES = [(5, 7, 5, 1, 2, 1), (16, 8, 5, 1, 2, 1), (16, 9, 3, 1, 2, 2), (20, 9, 5, 1, 4, 2),
         (33, 10, 7, 1, 3, 1), (17, 9, 5, 2, 2, 1), (24, 8, 3, 2, 2, 2), (8, 6, 5, 1, 0, 1),
         (6, 7, 5, 1, 4, 2), (3, 4, 7, 2, 3, 1)]


def _reference(x, w, s, p, d, g):
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    y = F.conv2d(x2, w2, None, s, p, d, x.shape[1])
    gx, gw = torch.autograd.grad(y, (x2, w2), g)
    return y, gx, gw


@pytest.mark.parametrize("C,side,k,s,p,d", CASES)
@pytest.mark.parametrize("channels_last", [True, False])
def test_values_and_gradients_match_conv2d(C, side, k, s, p, d, channels_last):
    torch.manual_seed(C + k)
    x = torch.randn(3, C, side, side, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    w = torch.randn(C, 1, k, k, dtype=torch.float64, requires_grad=True)
    y = depthwise_conv2d(x, w, s, p, d, C)
    assert y.grad_fn.name() == "DepthwiseConv2dFunctionBackward"
    g = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, w), g)
    y_ref, gx_ref, gw_ref = _reference(x, w, s, p, d, g)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(gx, gx_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(gw, gw_ref, rtol=0, atol=1e-11)
    # one gradient at a time (the kernel's need_x / need_w switches)
    for need_x, need_w in ((True, False), (False, True)):
        a, b = conv_backward(g, x.detach(), w.detach(), s, p, d, C, need_x, need_w)
        assert (a is None) != need_x and (b is None) != need_w
        if need_x:
            torch.testing.assert_close(a, gx_ref, rtol=0, atol=1e-12)
        else:
            torch.testing.assert_close(b, gw_ref, rtol=0, atol=1e-11)


def test_gradcheck_float64():
    x = torch.randn(2, 18, 6, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(18, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    for s, p, d in ((1, 2, 1), (2, 4, 2)):
        assert torch.autograd.gradcheck(lambda a, b: DepthwiseConv2dFunction.apply(a, b, s, p, d), (x, w))


def test_float32_and_the_cases_left_to_onednn(monkeypatch):
    x = torch.randn(4, 16, 12, 12).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(16, 1, 5, 5, requires_grad=True)
    y = depthwise_conv2d(x, w, 1, 4, 2, 16)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, w), g)
    ref = _reference(x, w, 1, 4, 2, g)[1:]
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    # the undilated 3x3 (oneDNN is fast there), grouped or dense convolutions: plain F.conv2d
    assert depthwise.use_kernel(x, torch.randn(16, 1, 3, 3), 1, 1, 1, 16) is None
    assert depthwise.use_kernel(x, torch.randn(16, 2, 5, 5), 1, 2, 1, 8) is None
    assert depthwise.use_kernel(x, torch.randn(16, 1, 5, 3), 1, 2, 1, 16) is None
    assert depthwise.use_kernel(x, w, (1, 2), 2, 1, 16) is None
    assert depthwise.use_kernel(x.half(), w.half(), 1, 2, 1, 16) is None
    assert depthwise.use_kernel(x, w, 1, 2, 1, 16) == (1, 2, 1)
    monkeypatch.setenv("ATTNAS_DEPTHWISE_KERNEL", "0")
    assert depthwise.use_kernel(x, w, 1, 2, 1, 16) is None
    assert depthwise_conv2d(x, w, 1, 2, 1, 16).grad_fn.name() != "DepthwiseConv2dFunctionBackward"


def test_modules_keep_their_state_dict_and_match_plain_conv():
    conv = DepthwiseConv2d(12, 5, 2, 4, 2)
    assert list(conv.state_dict()) == ["weight"] and conv.weight.shape == (12, 1, 5, 5)
    plain = torch.nn.Conv2d(12, 12, 5, 2, 4, dilation=2, groups=12, bias=False)
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(2, 12, 11, 11, requires_grad=True)
    torch.testing.assert_close(conv(x), plain(x))
    for module in (DilConv(8, 8, 5, 1, 4, 2), SepConv(8, 8, 5, 2, 2), InvertedResidual(8, 16, 2, 3, 7)):
        keys = list(module.state_dict())
        assert all("groups" not in k for k in keys) and any(k.endswith("weight") for k in keys)
        ref = copy.deepcopy(module)
        for m in ref.modules():  # the same network on plain convolutions
            if isinstance(m, DepthwiseConv2d):
                m.forward = lambda t, m=m: F.conv2d(t, m.weight, None, m.stride, m.padding, m.dilation, m.groups)
        if isinstance(ref, InvertedResidual):
            ref.memory_efficient = module.memory_efficient = False
        x = torch.randn(4, 8, 9, 9, dtype=torch.float64)
        module.double(), ref.double()
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        g = torch.randn_like(module(x))
        (module(x1) * g).sum().backward()
        (ref(x2) * g).sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=1e-10)
        for (n, a), b in zip(module.named_parameters(), ref.parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-10, msg=n)


def test_autocast_takes_pytorch_convolution():
    conv = DepthwiseConv2d(16, 5, 1, 2)
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.dtype == torch.bfloat16 and y.grad_fn.name() != "DepthwiseConv2dFunctionBackward"
    y.float().sum().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()




_TEAM_SCRIPT = """
import torch, torch.nn.functional as F
from attnas.ops import depthwise
torch.manual_seed(0)
x = torch.randn(3, 20, 9, 9, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
w = torch.randn(20, 1, 5, 5, dtype=torch.float64)
g = torch.randn(3, 20, 5, 5, dtype=torch.float64)
ref = torch.ops.aten.convolution_backward(g, x, w, None, [2, 2], [2, 2], [1, 1], False, [0, 0], 20,
                                          [False, True, False])[1]
torch.get_num_threads = lambda: 4   # ask for 4 threads; OMP_THREAD_LIMIT=1 grants one
worst = 0.0
for _ in range(5):  # fresh allocations that may hold old values
    junk = torch.full((4, 5000), 7.0, dtype=torch.float64)
    del junk
    gw = depthwise.kernel_backward(g, x, w, 2, 2, 1, need_x=False)[1]
    worst = max(worst, float((gw - ref).abs().max()))
print(worst)
"""


def test_weight_gradient_does_not_depend_on_the_thread_team():
    """Every per-thread partial sum is zeroed whatever team OpenMP grants: asking for 4 threads
    under a 1-thread limit gives the same weight gradient (the sum adds all 4 rows)."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    out = subprocess.run([sys.executable, "-c", _TEAM_SCRIPT], capture_output=True, text=True, env=env, check=True)
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-11
