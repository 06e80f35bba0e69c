"""TrioNet blocks: the stand-alone bottleneck block and the weight-sharing supernet block
(Pi et al., TrioNet, BMVC 2021, Sec. 3.2-3.5, Fig. 2 right, Alg. 1).

Block layout (ResNet bottleneck with the 3x3 convolution replaced by the searched spatial
operator, Sec. 3.2)::

    x -> conv1 1x1 (C_in -> mid) -> BN -> ReLU -> spatial op (mid -> d_v) -> BN -> ReLU
      -> conv3 1x1 (d_v -> C_out) -> BN (gamma = 0 at init, Appendix A) -> + shortcut(x) -> ReLU

``mid = C_out * e`` (e the expansion rate of Table 1); for the convolution ``d_v = mid``;
for the attention operators ``d_q = mid * qk_rate`` and ``d_v = mid * v_rate``.  The shortcut
is a 1x1 convolution + BN when the shape changes (stride 2 or new width), else the identity.

Supernet block (:class:`TrioSuperBlock`, Fig. 2 right): ``conv1``/``bn1``, ``conv3``/``bn3`` and
the shortcut are shared by the three operators; the three spatial operators are separate
parallel modules, each holding the weights of its largest configuration, from which every
elastic option of Table 1 takes a slice (weight sharing within an operator, OFA/BigNAS
style):

* widths: ``conv1`` gives the first ``mid`` channels (prefix); the convolution uses the
  first ``mid`` in/out channels and the centred ``k x k`` part of its 7x7 kernel (BigNAS
  centre cropping; OFA's kernel-transform matrices are not used);
* attention query/key and value channels under **Multi-Head Sharing** (Sec. 3.5, Alg. 1;
  ``sharing="multihead"``, the default): the largest weight's output channels are split into
  N groups (N the sampled number of heads), and head n takes the first ``s/N`` channels of
  group n -- channel ``n * C_max/N + i``, i < s/N (:func:`head_index`); with
  ``sharing="prefix"`` (the "default weight sharing" the paper ablates) the first s channels.
  The same index set selects the rows of the relative-position tables (their channels are
  query channels), the BN after the operator, the input columns of the axial width layer
  (the height layer's output) and the input columns of the shared ``conv3``, so every
  channel keeps one meaning across sub-networks;
* the local-attention relative table is cropped to the centred ``m x m`` offsets.

Batch norms are sliced the same way (:func:`sliced_batch_norm`): the running statistics of
the selected channels are updated in place, so BN recalibration
(:func:`attnas.search.evolution.recalibrate_bn`) of a routed supernet gives exactly the
statistics of that path.  :meth:`TrioSuperBlock.subnet_state` returns the stand-alone
:class:`TrioBlock`'s state dict cut from the supernet (export with inherited weights).

Elastic depth (Appendix A): a block past its stage's smallest depth is ``skippable``; a path
that skips it routes it to :data:`SKIPPED` and the block returns its input untouched (no
weight read, no BN statistic updated), as the stand-alone network has an ``nn.Identity``
there.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnas.errors import ArchitectureError, ConfigError
from attnas.ops.trio import (AxialAttention2d, ConvOp, LocalSelfAttention2d, _pool, axial_attention_1d,
                             local_attention)

SHARING_MODES = ("multihead", "prefix")
#: the routing index of a block that the active path leaves out ("none": skipped by elastic
#: depth) -- :data:`attnas.strategies.random_search.ABSENT`, which this layer cannot import
SKIPPED = -1


@dataclass(frozen=True)
class TrioOp:
    """One candidate of a TrioNet block: operator and its elastic options (Table 1)."""

    op: str                    # "conv" | "local" | "axial"
    e: float                   # expansion rate: mid = C_out * e
    k: int | None = None       # kernel size (conv, local)
    qk: float | None = None    # query/key channel rate (attention)
    v: float | None = None     # value channel rate (attention)
    heads: int | None = None   # number of heads (attention)

    def channels(self, C_out: int) -> tuple[int, int, int]:
        """``(mid, d_q, d_v)``; for the convolution ``d_q = 0`` and ``d_v = mid``."""
        mid = _exact(C_out * self.e, f"{C_out} x expansion {self.e:g}")
        if self.op == "conv":
            return mid, 0, mid
        return (mid, _exact(mid * self.qk, f"{mid} x query/key rate {self.qk:g}"),
                _exact(mid * self.v, f"{mid} x value rate {self.v:g}"))


def _exact(x: float, what: str) -> int:
    if abs(x - round(x)) > 1e-9 or round(x) < 1:
        raise ConfigError(f"TrioNet widths must be whole channel counts: {what} = {x:g}; "
                          "use a width divisible by 8 (space option 'width')")
    return int(round(x))


def head_index(s: int, heads: int, c_max: int, sharing: str = "multihead") -> torch.Tensor:
    """Output channels of a ``c_max``-wide weight that a sub-network with ``s`` channels in
    ``heads`` heads uses (Alg. 1): group n of ``c_max/heads`` channels gives its first
    ``s/heads``.  ``sharing="prefix"``: the first ``s`` channels."""
    if sharing == "prefix":
        return torch.arange(s)
    if c_max % heads or s % heads or s > c_max:
        raise ConfigError(f"multi-head sharing: cannot take {s} of {c_max} channels in {heads} heads")
    slot, per = c_max // heads, s // heads
    return (torch.arange(heads)[:, None] * slot + torch.arange(per)[None, :]).reshape(-1)


def sliced_batch_norm(x: torch.Tensor, bn: nn.BatchNorm2d, idx: torch.Tensor | None) -> torch.Tensor:
    """``bn`` restricted to channels ``idx`` (None: all), running statistics updated in place
    for those channels with ``bn``'s momentum (None: cumulative average, as nn.BatchNorm)."""
    if idx is None or len(idx) == bn.num_features and bool((idx == torch.arange(bn.num_features)).all()):
        return bn(x)
    w, b = bn.weight[idx], bn.bias[idx]
    use_batch = bn.training or bn.running_mean is None
    if not bn.track_running_stats or bn.running_mean is None:
        return F.batch_norm(x, None, None, w, b, True, 0.0, bn.eps)
    rm, rv = bn.running_mean[idx], bn.running_var[idx]
    if not bn.training:
        return F.batch_norm(x, rm, rv, w, b, False, 0.0, bn.eps)
    bn.num_batches_tracked.add_(1)
    momentum = (1.0 / float(bn.num_batches_tracked)) if bn.momentum is None else bn.momentum
    y = F.batch_norm(x, rm, rv, w, b, use_batch, momentum, bn.eps)
    with torch.no_grad():
        bn.running_mean[idx] = rm
        bn.running_var[idx] = rv
    return y


def _bn_slice(bn: nn.BatchNorm2d, idx: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"weight": bn.weight[idx], "bias": bn.bias[idx], "running_mean": bn.running_mean[idx],
            "running_var": bn.running_var[idx], "num_batches_tracked": bn.num_batches_tracked}


# --------------------------------------------------------------------------- stand-alone block


class TrioBlock(nn.Module):
    """The bottleneck block of one candidate (module docstring); ``span``: the axial relative
    tables' nominal axis length."""

    def __init__(self, C_in: int, C_out: int, stride: int, op: TrioOp, span: int) -> None:
        super().__init__()
        mid, dq, dv = op.channels(C_out)
        self.spec = op
        self.conv1 = nn.Conv2d(C_in, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        if op.op == "conv":
            self.op = ConvOp(mid, op.k, stride)
        elif op.op == "local":
            self.op = LocalSelfAttention2d(mid, dq, dv, op.heads, op.k, stride)
        elif op.op == "axial":
            self.op = AxialAttention2d(mid, dq, dv, op.heads, span, stride)
        else:
            raise ArchitectureError(f"unknown TrioNet operator '{op.op}'")
        self.bn2 = nn.BatchNorm2d(dv)
        self.conv3 = nn.Conv2d(dv, C_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(C_out)
        nn.init.zeros_(self.bn3.weight)  # gamma = 0 in the last BN of each block (Appendix A)
        self.shortcut = (nn.Sequential(nn.Conv2d(C_in, C_out, 1, stride, bias=False), nn.BatchNorm2d(C_out))
                         if stride != 1 or C_in != C_out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.op(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + self.shortcut(x))


# --------------------------------------------------------------------------- supernet block


class TrioSuperBlock(nn.Module):
    """Weight-sharing block of one layer (module docstring).

    ``options``: the candidates (parsed) of the layer; ``route``: a single-path mixer
    (:class:`attnas.strategies.random_search.SinglePathMixer`) whose ``arch.module.active[key]``
    is the index of the active candidate, or :data:`SKIPPED` when elastic depth skips the
    block (``skippable``: a block of unchanged shape past its stage's smallest depth) -- the
    block is then the identity and computes nothing.  ``sharing``: "multihead" (Alg. 1) or
    "prefix"."""

    def __init__(self, key: str, candidates: tuple[str, ...], options: tuple[TrioOp, ...], C_in: int,
                 C_out: int, stride: int, span: int, route: nn.Module, sharing: str = "multihead",
                 skippable: bool = False) -> None:
        super().__init__()
        if sharing not in SHARING_MODES:
            raise ConfigError(f"unknown weight sharing '{sharing}'; expected one of {list(SHARING_MODES)}")
        if skippable and (stride != 1 or C_in != C_out):
            raise ConfigError(f"{key}: a block that changes the stride or the width cannot be skipped")
        self.skippable = skippable
        self.key, self.candidates, self.options = key, candidates, options
        self.C_in, self.C_out, self.stride, self.span, self.sharing = C_in, C_out, stride, span, sharing
        self.mixer = route
        chans = [o.channels(C_out) for o in options]
        mid_max = max(c[0] for c in chans)
        self.conv1 = nn.Conv2d(C_in, mid_max, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_max)
        v_max = max(c[2] for c in chans)
        self.conv3 = nn.Conv2d(v_max, C_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(C_out)
        nn.init.zeros_(self.bn3.weight)
        self.shortcut = (nn.Sequential(nn.Conv2d(C_in, C_out, 1, stride, bias=False), nn.BatchNorm2d(C_out))
                         if stride != 1 or C_in != C_out else nn.Identity())
        self.max: dict[str, tuple[int, int, int, int]] = {}   # op -> (mid, d_q, d_v, k) maxima
        for name in ("conv", "local", "axial"):
            mine = [(o, c) for o, c in zip(options, chans) if o.op == name]
            if mine:
                self.max[name] = (max(c[0] for _, c in mine), max(c[1] for _, c in mine),
                                  max(c[2] for _, c in mine), max((o.k or 0) for o, _ in mine))
        if "conv" in self.max:
            m, _, _, k = self.max["conv"]
            self.conv_op = ConvOp(m, k, stride)
            self.conv_bn = nn.BatchNorm2d(m)
        if "local" in self.max:
            m, q, v, k = self.max["local"]
            self.local_op = LocalSelfAttention2d(m, q, v, 1, k, stride)
            self.local_bn = nn.BatchNorm2d(v)
        if "axial" in self.max:
            m, q, v, _ = self.max["axial"]
            self.axial_op = AxialAttention2d(m, q, v, 1, span, stride)
            self.axial_bn = nn.BatchNorm2d(v)

    # ----- slicing -------------------------------------------------------------
    def active_option(self) -> TrioOp | None:
        """The option the routed path runs, or None when elastic depth skips the block."""
        i = self.mixer.arch.module.active[self.key]
        if i == SKIPPED:
            if not self.skippable:
                raise ArchitectureError(f"{self.key} cannot be skipped (the first blocks of a stage always run)")
            return None
        return self.options[i]

    def indices(self, o: TrioOp) -> dict[str, torch.Tensor]:
        """Channel index sets of option ``o``: ``mid`` (prefix), ``q`` and ``v`` (Alg. 1 or prefix)."""
        mid, dq, dv = o.channels(self.C_out)
        out = {"mid": torch.arange(mid)}
        if o.op == "conv":
            out["v"] = torch.arange(mid)
        else:
            _, q_max, v_max, _ = self.max[o.op]
            out["q"] = head_index(dq, o.heads, q_max, self.sharing)
            out["v"] = head_index(dv, o.heads, v_max, self.sharing)
        return out

    def op_weights(self, o: TrioOp) -> dict[str, torch.Tensor]:
        """The spatial operator's weights of option ``o``, named as in the stand-alone ``TrioBlock.op``."""
        ix = self.indices(o)
        mid, q, v = ix["mid"], ix.get("q"), ix["v"]
        if o.op == "conv":
            c = (self.conv_op.kernel_size[0] - o.k) // 2
            return {"weight": self.conv_op.weight[: len(mid), : len(mid), c:c + o.k, c:c + o.k]}
        if o.op == "local":
            L, c = self.local_op, (self.local_op.kernel_size - o.k) // 2
            return {"q.weight": L.q.weight[q][:, mid], "k.weight": L.k.weight[q][:, mid],
                    "v.weight": L.v.weight[v][:, mid], "rel": L.rel[q][:, c:c + o.k, c:c + o.k]}
        A = self.axial_op
        return {"height.q.weight": A.height.q.weight[q][:, mid], "height.k.weight": A.height.k.weight[q][:, mid],
                "height.v.weight": A.height.v.weight[v][:, mid], "height.rel": A.height.rel[q],
                "width.q.weight": A.width.q.weight[q][:, v], "width.k.weight": A.width.k.weight[q][:, v],
                "width.v.weight": A.width.v.weight[v][:, v], "width.rel": A.width.rel[q]}

    def _op_bn(self, o: TrioOp) -> nn.BatchNorm2d:
        return {"conv": getattr(self, "conv_bn", None), "local": getattr(self, "local_bn", None),
                "axial": getattr(self, "axial_bn", None)}[o.op]

    # ----- forward ---------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.active_option()
        if o is None:  # skipped by elastic depth: the identity
            return x
        ix = self.indices(o)
        mid = len(ix["mid"])
        y = F.conv2d(x, self.conv1.weight[:mid])
        y = F.relu(sliced_batch_norm(y, self.bn1, ix["mid"]))
        w = self.op_weights(o)
        if o.op == "conv":
            y = F.conv2d(y, w["weight"], None, self.stride, o.k // 2)
        elif o.op == "local":
            y = local_attention(F.conv2d(y, w["q.weight"]), F.conv2d(y, w["k.weight"]),
                                F.conv2d(y, w["v.weight"]), w["rel"], o.heads)
            y = _pool(y, self.stride)
        else:
            y = axial_attention_1d(F.conv2d(y, w["height.q.weight"]), F.conv2d(y, w["height.k.weight"]),
                                   F.conv2d(y, w["height.v.weight"]), w["height.rel"], o.heads, "h")
            y = axial_attention_1d(F.conv2d(y, w["width.q.weight"]), F.conv2d(y, w["width.k.weight"]),
                                   F.conv2d(y, w["width.v.weight"]), w["width.rel"], o.heads, "w")
            y = _pool(y, self.stride)
        y = F.relu(sliced_batch_norm(y, self._op_bn(o), ix["v"]))
        y = F.conv2d(y, self.conv3.weight[:, ix["v"]])
        y = self.bn3(y)
        return F.relu(y + self.shortcut(x))

    # ----- the weights a path uses ----------------------------------------------
    def path_parameters(self, o: TrioOp) -> dict[str, torch.Tensor]:
        """The parameter slices option ``o``'s path computes with, as differentiable views of this
        block's parameters, named as in the stand-alone :class:`TrioBlock` (the same slices as
        :meth:`forward` and :meth:`subnet_state`)."""
        ix = self.indices(o)
        mid, v = ix["mid"], ix["v"]
        bn2 = self._op_bn(o)
        out = {"conv1.weight": self.conv1.weight[mid], "bn1.weight": self.bn1.weight[mid],
               "bn1.bias": self.bn1.bias[mid]}
        out.update({f"op.{k}": t for k, t in self.op_weights(o).items()})
        out.update({"bn2.weight": bn2.weight[v], "bn2.bias": bn2.bias[v], "conv3.weight": self.conv3.weight[:, v]})
        out.update({f"bn3.{k}": t for k, t in self.bn3.named_parameters()})
        out.update({f"shortcut.{k}": t for k, t in self.shortcut.named_parameters()})
        return out

    def usage_masks(self, o: TrioOp) -> dict[nn.Parameter, torch.Tensor]:
        """For every parameter of this block that option ``o``'s path uses: a 0/1 tensor of its
        shape, 1 exactly on the entries the path uses (its slices; e.g. the first ``mid`` rows of
        ``conv1``, the Alg. 1 head channels of the attention projections, the centred ``k x k``
        of the 7x7 kernel).  Found by differentiating the sum of :meth:`path_parameters`."""
        params = [p for p in self.parameters() if p.requires_grad]
        with torch.enable_grad():
            total = sum(t.sum() for t in self.path_parameters(o).values())
            grads = torch.autograd.grad(total, params, allow_unused=True)
        return {p: (g != 0).to(p.dtype) for p, g in zip(params, grads) if g is not None}

    # ----- export --------------------------------------------------------------
    @torch.no_grad()
    def subnet_state(self, o: TrioOp) -> dict[str, torch.Tensor]:
        """State dict of the stand-alone :class:`TrioBlock` of option ``o``, cut from this block."""
        ix = self.indices(o)
        mid = ix["mid"]
        state = {"conv1.weight": self.conv1.weight[mid]}
        state.update({f"bn1.{k}": v for k, v in _bn_slice(self.bn1, mid).items()})
        state.update({f"op.{k}": v for k, v in self.op_weights(o).items()})
        state.update({f"bn2.{k}": v for k, v in _bn_slice(self._op_bn(o), ix["v"]).items()})
        state["conv3.weight"] = self.conv3.weight[:, ix["v"]]
        state.update({f"bn3.{k}": v for k, v in self.bn3.state_dict().items()})
        state.update({f"shortcut.{k}": v for k, v in self.shortcut.state_dict().items()})
        return {k: v.detach().clone() for k, v in state.items()}

    def extra_repr(self) -> str:
        return (f"key={self.key!r}, {self.C_in}->{self.C_out}, stride={self.stride}, sharing={self.sharing}"
                + (", skippable" if self.skippable else ""))
