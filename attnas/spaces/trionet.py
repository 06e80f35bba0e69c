"""TrioNet search space (Pi et al., TrioNet, BMVC 2021, Sec. 3.1-3.2, Table 1, Appendix A).

A ResNet-like bottleneck network whose every block's spatial operator is searched among
convolution, local self-attention and axial self-attention (:mod:`attnas.ops.trio`), each
with the elastic options of Table 1:

=================  ==========  ==========  ==========
operator           conv        local       axial
=================  ==========  ==========  ==========
expansion rate e   1/8, 1/4    1/4, 1/2    1/4, 1/2
kernel size        3, 5, 7     3, 5, 7     --
query/key rate     --          1/2, 1      1/2, 1
value rate         --          1/2, 1      1/2, 1
heads              --          4, 8        4, 8
candidates         6           48          16
=================  ==========  ==========  ==========

so 70 candidates per block.  A chain space (:class:`~attnas.spaces.chain.ChainSpace`): one
choice point ``layer:<i>`` per block; candidates are named

* ``conv_k{k}_e{e}`` -- e.g. ``conv_k3_e0.25`` (the ResNet bottleneck's 3x3 convolution);
* ``local_k{m}_e{e}_qk{r}_v{r}_h{N}`` -- e.g. ``local_k7_e0.25_qk1_v1_h8``;
* ``axial_e{e}_qk{r}_v{r}_h{N}`` -- e.g. ``axial_e0.25_qk0.5_v1_h8``;

rates written as decimals (``%g``).  :func:`parse_trio_op` parses and validates them.  The
block is :class:`attnas.ops.trio_supernet.TrioBlock` (``mid = C_out * e`` channels around the
spatial operator); the supernet block is :class:`~attnas.ops.trio_supernet.TrioSuperBlock`
(shared projections, three parallel weight-sliced operators, Multi-Head Sharing).

Layouts (``layout``):

* ``"imagenet"`` (224x224): ResNet stem (7x7 conv stride 2, BN, ReLU, 3x3 max-pool stride 2),
  four stages at 56, 28, 14, 7;
* ``"cifar"`` (32x32): 3x3 conv stride 1 stem, stages at 32, 16, 8, 4.

Stage s has ``depths[s]`` blocks of output width ``4 * width * 2^s`` (ResNet: width 64 ->
256, 512, 1024, 2048); the first block of stages 2-4 has stride 2.  Head: global average
pooling and a linear classifier.

**Elastic depth** (Appendix A: "four stages with 2,3,6,3 blocks in total.  The selected
number of blocks is 1,2 for the first stage, 2,3 for the second, 3,4,5,6 for the third and
1,2,3 for the last stage").  With depth choices (``depth_choices``, or the size's own with
``elastic_depth``) the space has one more choice point per stage, ``depth:<s>``, declared
with the layers (:meth:`TrioNetSpace.choice_points`, depths first) and whose candidates are
the allowed block counts (``"1"``, ``"2"``, ...); ``depths`` are then the maxima.  A stage
of depth d runs its first d blocks; the blocks past it are skipped -- the identity, their
``layer:<i>`` choice is ``"none"`` -- so the first block of a stage, which changes the
width and the stride, always runs (every choice is >= 1).  An architecture holds the depth
of every stage and ``"none"`` exactly at the skipped blocks
(:meth:`TrioNetSpace.validate_topology`; :meth:`TrioNetSpace.conform` makes a drawn one
so).  Costs, the stand-alone network and the exported weights count or hold only the
blocks that run: a skipped block is an ``nn.Identity`` in the stand-alone network (so
``layers.<i>`` is still ``layer:<i>``) and costs nothing in :meth:`TrioNetSpace.cost_table`.
Native notation: stages separated by ``|``, skipped blocks written ``none``, e.g.
``conv_k3_e0.25,none|...`` (stage 1 at depth 1 of 2; a one-stage space ends with ``|``).

Sizes (``size``; explicit ``depths`` / ``width`` override it):

* ``"paper"``: the paper's maximal depths (2, 3, 6, 3) at ``width`` 64 -- ResNet-50's
  widths, 14 blocks -- with the paper's elastic depths (1-2, 2-3, 3-6, 1-3 blocks, Appendix
  A; 7 to 14 blocks); the default of the ``imagenet`` layout.  The paper's space is
  ``{"layout": "imagenet"}`` (or ``{"size": "paper"}`` on the ``cifar`` stem);
  ``"elastic_depth": false`` keeps the fixed 14-block network;
* ``"small"`` (attnas's default for the ``cifar`` layout, issue 19): 3 stages of one block,
  ``width`` 32 (block outputs 128, 256, 512; 3 blocks, 70^3 architectures) -- the three
  stages of the CIFAR ResNets (He et al. 2016), sized for 8-32 px images and a CPU.  Fixed
  depth by default (one block per stage leaves nothing to skip, and the default search's
  results stay as they were); ``"elastic_depth": true`` makes it (1, 2) blocks per stage,
  depths (2, 2, 2): like the paper's, each stage between about half and all of its maximum
  (the paper: 7 of 14 blocks at the least), and the smallest sub-network is the fixed
  "small" network.
* explicit ``depths`` are a fixed-depth network unless ``depth_choices`` are given (e.g.
  ``{"depth_choices": [[1], [1, 2]]}``: depths (1, 2), the second stage elastic).

Why not the paper's four stages on small images: the cifar stem keeps the input size, so
four stages end at ``side / 8`` -- 1x1 for 8x8 digits.  Every block's last BN starts at
gamma = 0 (Appendix A), so at initialisation the network is the chain of stride-2 1x1
projection shortcuts, and a 1x1 stride-2 convolution reads only the top-left pixel of its
input: the 1x1 features depend on the top-left 3x3 corner of the image alone, which on
digits is blank (pixel (0, 0) has variance 0).  The shortcut's BN then normalises noise to
unit variance, the classifier fits it and the loss grows (2.4 -> 8.4 in 17 steps at the
paper size; a conv-only, no-sandwich width-16 network diverges as well, at any learning
rate tried, and the same network learns on 16x16 inputs or with 3 stages).  :meth:`check_input`
warns when the last stage would run at 1x1.
``heads`` replaces the heads options (4, 8) (tiny test networks cannot split 4 channels into
8 heads); ``operators`` restricts the operators (e.g. ``["conv"]``).

Axial relative tables are sized for the layout's nominal feature side (56 ... 7 or 32 ... 4)
and clip longer offsets, so the networks run at any input size (:mod:`attnas.ops.trio`).

Costs: :meth:`TrioNetSpace.cost_table` is the analytic per-block count
(:func:`block_cost`), equal to :mod:`attnas.profile`'s count of the stand-alone networks
(tested); attention matmuls are counted (``q.k``, ``q.r``, weighted values).  Units as the
paper's: FLOPs = 2 x MACs (the paper's ResNet-26 "4.7B FLOPs" is 2.34 G multiply-accumulates);
budgets (``--flops-budget``) and reports are in FLOPs, MACs are given beside them.

Stand-alone networks (:meth:`TrioNetSpace.standalone`, Table 2; :data:`PAPER_STANDALONE` and
:func:`paper_standalone` give the paper's three at 224x224): ResNet (``conv_k3_e0.25``, the
bottleneck's 3x3 convolution on a quarter of the block's output width), SASA-like local
attention (``local_k7_e0.25_qk1_v1_h8``, the same widths) and Axial-ResNet
(``axial_e0.5_qk0.5_v1_h8``).  Axial-DeepLab's blocks (its ``AxialBlock``, re-implemented in
PyTorch by TrioNet's first author) differ from the ResNet bottleneck: the attention runs on
**half** of the block's output width (expansion 2, not 4), queries/keys on half the value
channels, 8 heads; and its ``axial26s`` ("Axial-26" of Table 2) is the half-width model
(``s = 0.5``): stem width 32, block outputs 128, 256, 512, 1024 -- in this space
``width`` 32, ``depths`` (1, 2, 4, 1) with ``axial_e0.5_qk0.5_v1_h8`` in every block: 5.96 M
parameters, 3.35 B FLOPs (paper: 5.9 M, 3.5 B).  The 4 % of FLOPs left are positional terms:
attnas's axial layer keeps only Eq. 1's query term ``q.r`` (as its local attention does), while
Axial-DeepLab also has a value term (``sum_p softmax * r^v``, +0.18 B FLOPs -> 3.53 B) and a key
term (+0.09 B); the paper's re-trained models "remove some BN and positional encoding" without
saying which.  The former choice, ``axial_e0.25`` at ``width`` 64, has
Axial-26's attention widths but twice its block outputs (11.0 M parameters, 4.9 B FLOPs).
"""
from __future__ import annotations

import functools
import math
import re
from typing import Any, Callable

import torch
import torch.nn as nn

from attnas.arch import Architecture, layer_key
from attnas.errors import ArchitectureError, ConfigError
from attnas.ops.trio_supernet import SHARING_MODES, TrioBlock, TrioOp, TrioSuperBlock
from attnas.profile import Profile, count_macs, count_params
from attnas.spaces.base import ChoicePoint, MixerFactory
from attnas.spaces.chain import ChainCosts, ChainLayer, ChainNetwork, ChainSpace
from attnas.spaces.registry import register_space

OPERATORS = ("conv", "local", "axial")
#: Table 1 of the paper
CONV_EXPANSION = (1 / 8, 1 / 4)
CONV_KERNELS = (3, 5, 7)
ATTN_EXPANSION = (1 / 4, 1 / 2)
LOCAL_KERNELS = (3, 5, 7)
QK_RATES = (1 / 2, 1)
V_RATES = (1 / 2, 1)
HEADS = (4, 8)
#: the paper's maximal depths and its elastic depth choices per stage (Appendix A)
PAPER_DEPTHS = (2, 3, 6, 3)
PAPER_DEPTH_CHOICES = ((1, 2), (2, 3), (3, 4, 5, 6), (1, 2, 3))
PAPER_CARDINALITY = 7.2e25
LAYOUTS = {"imagenet": {"image": 224, "stem_stride": 4}, "cifar": {"image": 32, "stem_stride": 1}}
#: ``size`` presets (module docstring): the paper's network and attnas's small default; ``depths``
#: is the fixed-depth network, ``depth_choices`` the elastic depths (``elastic``: on by default)
SIZES = {"paper": {"width": 64, "depths": PAPER_DEPTHS, "depth_choices": PAPER_DEPTH_CHOICES, "elastic": True},
         "small": {"width": 32, "depths": (1, 1, 1), "depth_choices": ((1, 2), (1, 2), (1, 2)), "elastic": False}}
#: the choice of a block that elastic depth skips (the identity)
SKIP = "none"

_NUM = r"(\d+(?:\.\d+)?)"
_PATTERNS = {
    "conv": re.compile(rf"^conv_k(\d+)_e{_NUM}$"),
    "local": re.compile(rf"^local_k(\d+)_e{_NUM}_qk{_NUM}_v{_NUM}_h(\d+)$"),
    "axial": re.compile(rf"^axial_e{_NUM}_qk{_NUM}_v{_NUM}_h(\d+)$"),
}
NAME_HELP = ("expected 'conv_k<k>_e<e>', 'local_k<k>_e<e>_qk<r>_v<r>_h<heads>' or "
             "'axial_e<e>_qk<r>_v<r>_h<heads>', e.g. 'conv_k3_e0.25', 'local_k7_e0.5_qk1_v1_h8'")


def trio_name(o: TrioOp) -> str:
    """The candidate name of ``o`` (module docstring)."""
    if o.op == "conv":
        return f"conv_k{o.k}_e{o.e:g}"
    if o.op == "local":
        return f"local_k{o.k}_e{o.e:g}_qk{o.qk:g}_v{o.v:g}_h{o.heads}"
    return f"axial_e{o.e:g}_qk{o.qk:g}_v{o.v:g}_h{o.heads}"


@functools.lru_cache(maxsize=4096)
def parse_trio_op(name: str) -> TrioOp:
    """Parse a candidate name (syntax only; :meth:`TrioNetSpace.validate` checks Table 1)."""
    if not isinstance(name, str):
        raise ArchitectureError(f"TrioNet candidate must be a string, got {name!r}")
    for op, pat in _PATTERNS.items():
        m = pat.match(name.strip())
        if not m:
            continue
        g = m.groups()
        try:
            if op == "conv":
                out = TrioOp("conv", float(g[1]), k=int(g[0]))
            elif op == "local":
                out = TrioOp("local", float(g[1]), k=int(g[0]), qk=float(g[2]), v=float(g[3]), heads=int(g[4]))
            else:
                out = TrioOp("axial", float(g[0]), qk=float(g[1]), v=float(g[2]), heads=int(g[3]))
        except ValueError:
            break
        if out.k is not None and (out.k < 1 or out.k % 2 == 0):
            raise ArchitectureError(f"'{name}': kernel size must be odd, got {out.k}")
        if out.heads is not None and out.heads < 1:
            raise ArchitectureError(f"'{name}': number of heads must be >= 1")
        return out
    raise ArchitectureError(f"'{name}' is not a TrioNet candidate; {NAME_HELP}")


def operator_of(name: str) -> str:
    """``"conv"``, ``"local"`` or ``"axial"``."""
    return parse_trio_op(name).op


def table1_candidates(operators=OPERATORS, heads=HEADS) -> tuple[str, ...]:
    """The 6 + 48 + 16 candidates of Table 1 (``heads`` may replace (4, 8))."""
    out = []
    if "conv" in operators:
        out += [TrioOp("conv", e, k=k) for e in CONV_EXPANSION for k in CONV_KERNELS]
    if "local" in operators:
        out += [TrioOp("local", e, k=k, qk=q, v=v, heads=h) for e in ATTN_EXPANSION for k in LOCAL_KERNELS
                for q in QK_RATES for v in V_RATES for h in heads]
    if "axial" in operators:
        out += [TrioOp("axial", e, qk=q, v=v, heads=h) for e in ATTN_EXPANSION for q in QK_RATES
                for v in V_RATES for h in heads]
    return tuple(trio_name(o) for o in out)


def block_cost(C_in: int, C_out: int, stride: int, H: int, W: int, o: TrioOp, span: int) -> Profile:
    """Analytic MACs per image (FLOPs = 2 x MACs) and parameters of a :class:`TrioBlock` on an
    ``H x W`` input -- the :mod:`attnas.profile` convention, attention matmuls included."""
    mid, dq, dv = o.channels(C_out)
    Ho, Wo = -(-H // stride), -(-W // stride)
    macs = H * W * C_in * mid + Ho * Wo * dv * C_out
    params = C_in * mid + 2 * mid + 2 * dv + dv * C_out + 2 * C_out
    if stride != 1 or C_in != C_out:
        macs += Ho * Wo * C_in * C_out
        params += C_in * C_out + 2 * C_out
    if o.op == "conv":
        macs += Ho * Wo * mid * mid * o.k * o.k
        params += mid * mid * o.k * o.k
    elif o.op == "local":
        macs += H * W * (mid + o.k * o.k) * (2 * dq + dv)
        params += mid * (2 * dq + dv) + dq * o.k * o.k
    else:
        macs += H * W * (mid + H) * (2 * dq + dv) + H * W * (dv + W) * (2 * dq + dv)
        params += (mid + dv) * (2 * dq + dv) + 2 * dq * (2 * span - 1)
    return Profile(int(macs), int(params))


def depth_key(stage: int) -> str:
    """Key of the depth choice point of stage ``stage`` (elastic depth)."""
    return f"depth:{stage}"


def _is_trio_name(t: str) -> bool:
    return any(p.match(t) for p in _PATTERNS.values())


def _trio_guess(text: str) -> bool:
    items = [t.strip() for t in text.replace("|", ",").split(",") if t.strip()]
    return any(_is_trio_name(t) for t in items) and all(t == SKIP or _is_trio_name(t) for t in items)


def _depth_choices(value: Any, stages: int | None) -> tuple[tuple[int, ...], ...]:
    """``depth_choices`` checked: per stage, distinct positive block counts (sorted)."""
    ok = isinstance(value, (list, tuple)) and value and all(
        isinstance(c, (list, tuple)) and c and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                                                   for d in c) and len(set(c)) == len(c) for c in value)
    if not ok:
        raise ConfigError("trionet option 'depth_choices' must list, per stage, the distinct numbers of blocks "
                          f"(>= 1) it may have, e.g. [[1, 2], [2, 3], [3, 4, 5, 6], [1, 2, 3]]; got {value!r}")
    if stages is not None and len(value) != stages:
        raise ConfigError(f"trionet option 'depth_choices' has {len(value)} stages, 'depths' {stages}")
    return tuple(tuple(sorted(c)) for c in value)


@register_space("trionet", native_guess=_trio_guess)
class TrioNetSpace(ChainSpace):
    #: a weight-sliced supernet that runs one candidate per block: single-path methods only
    single_path_only = True

    """TrioNet space (module docstring).  Options: ``layout`` ("cifar" | "imagenet"),
    ``size`` ("small" | "paper"; default "paper" for the imagenet layout, "small" for cifar),
    ``depths`` (blocks per stage; "paper" (2, 3, 6, 3), "small" (1, 1, 1); with elastic depth
    the maxima), ``width`` (stem width and ResNet "planes" of the first stage; "paper" 64,
    "small" 32), ``heads`` (default (4, 8)), ``operators`` (default all three),
    ``elastic_depth`` (the size's depth choices: default on for "paper" -- the paper's 1-2,
    2-3, 3-6, 1-3 blocks --, off for "small" -- on: 1-2 blocks per stage --, off when
    ``depths`` are given), ``depth_choices`` (explicit per-stage block counts, e.g.
    ``[[1, 2], [2, 3]]``; elastic depth with ``depths`` their maxima).  Native notation: the
    layer choices joined by commas (elastic depth: stages joined by ``|``, skipped blocks
    ``none``)."""

    activation = "relu"
    min_image_size = 1

    def __init__(self, layout: str = "cifar", depths=None, width: int | None = None, heads=HEADS,
                 operators=OPERATORS, size: str | None = None, elastic_depth: bool | None = None,
                 depth_choices=None) -> None:
        if layout not in LAYOUTS:
            raise ConfigError(f"unknown trionet layout '{layout}'; expected one of {sorted(LAYOUTS)}")
        size = size if size is not None else ("paper" if layout == "imagenet" else "small")
        if size not in SIZES:
            raise ConfigError(f"unknown trionet size '{size}'; expected one of {sorted(SIZES)}")
        self.size = size
        if elastic_depth is not None and not isinstance(elastic_depth, bool):
            raise ConfigError(f"trionet option 'elastic_depth' must be true or false, got {elastic_depth!r}")
        if depth_choices is not None:
            if elastic_depth is False:
                raise ConfigError("trionet: 'depth_choices' are elastic depths; drop 'elastic_depth': false")
            depth_choices = _depth_choices(depth_choices, len(depths) if isinstance(depths, (list, tuple)) else None)
        elif elastic_depth if elastic_depth is not None else (depths is None and SIZES[size]["elastic"]):
            if depths is not None:
                raise ConfigError("trionet: 'elastic_depth' with explicit 'depths' needs 'depth_choices' "
                                  "(the block counts each stage may have)")
            depth_choices = SIZES[size]["depth_choices"]
        if depth_choices is not None:
            maxima = tuple(c[-1] for c in depth_choices)
            if depths is not None and tuple(depths) != maxima:
                raise ConfigError(f"trionet: 'depths' {list(depths)} are not the maxima of 'depth_choices' "
                                  f"{[list(c) for c in depth_choices]}")
            depths = maxima
        #: per stage, the block counts it may have (elastic depth); None = fixed depth
        self.depth_choices: tuple[tuple[int, ...], ...] | None = depth_choices
        depths = SIZES[size]["depths"] if depths is None else depths
        width = SIZES[size]["width"] if width is None else width
        depths = tuple(depths) if isinstance(depths, (list, tuple)) else depths
        if not isinstance(depths, tuple) or not depths or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in depths):
            raise ConfigError(f"trionet option 'depths' must be a list of positive integers, got {depths!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1 or width % 8:
            raise ConfigError(f"trionet option 'width' must be a positive multiple of 8, got {width!r}")
        heads = tuple(heads) if isinstance(heads, (list, tuple)) else heads
        if not isinstance(heads, tuple) or not heads or not all(
                isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in heads):
            raise ConfigError(f"trionet option 'heads' must be a list of positive integers, got {heads!r}")
        operators = tuple(operators) if isinstance(operators, (list, tuple)) else operators
        if not isinstance(operators, tuple) or not operators or any(o not in OPERATORS for o in operators):
            raise ConfigError(f"trionet option 'operators' must be a non-empty subset of {list(OPERATORS)}, "
                              f"got {operators!r}")
        self.layout, self.depths, self.width = layout, depths, width
        self.heads, self.operators = heads, tuple(o for o in OPERATORS if o in operators)
        self._candidates = table1_candidates(self.operators, self.heads)
        for L in self.layer_specs():  # every candidate must have whole, head-divisible widths
            for name in L.candidates:
                o = parse_trio_op(name)
                mid, dq, dv = o.channels(L.C_out)
                if o.op != "conv" and (dq % o.heads or dv % o.heads):
                    raise ConfigError(
                        f"trionet: '{name}' at {layer_key(L.index)} has {dq} query and {dv} value channels, "
                        f"not divisible into {o.heads} heads; raise 'width' or lower 'heads'")

    # ----- layout ----------------------------------------------------------------
    def stem_stride(self) -> int:
        return LAYOUTS[self.layout]["stem_stride"]

    def layer_specs(self) -> list[ChainLayer]:
        specs, C_in, i = [], self.width, 0
        for s, n in enumerate(self.depths):
            C_out = 4 * self.width * 2 ** s
            for j in range(n):
                specs.append(ChainLayer(i, C_in, C_out, 2 if (j == 0 and s > 0) else 1, self._candidates, s))
                C_in, i = C_out, i + 1
        return specs

    @property
    def elastic(self) -> bool:
        """Whether the space searches the depth of its stages (module docstring)."""
        return self.depth_choices is not None

    def stage_layers(self) -> list[list[int]]:
        """The layer indices of every stage, in order."""
        out: list[list[int]] = [[] for _ in self.depths]
        for L in self.layer_specs():
            out[L.stage].append(L.index)
        return out

    def skippable(self) -> frozenset[int]:
        """Indices of the layers elastic depth may skip: those past a stage's smallest depth."""
        if not self.elastic:
            return frozenset()
        return frozenset(i for layers, choices in zip(self.stage_layers(), self.depth_choices)
                         for i in layers[choices[0]:])

    def layer_points(self) -> list[ChoicePoint]:
        """The choice points of the blocks (``layer:<i>``), without the depths."""
        return super().choice_points()

    def depth_points(self) -> list[ChoicePoint]:
        """The depth choice points (``depth:<s>``, candidates ``"1"``, ``"2"``, ...); none at fixed depth."""
        if not self.elastic:
            return []
        return [ChoicePoint(depth_key(s), tuple(str(d) for d in c), depth_key(s))
                for s, c in enumerate(self.depth_choices)]

    def choice_points(self) -> list[ChoicePoint]:
        """The depth of every stage (elastic depth only), then every block's operator."""
        return self.depth_points() + self.layer_points()

    def depths_of(self, arch: Architecture) -> tuple[int, ...]:
        """The number of blocks each stage of ``arch`` runs (the maxima at fixed depth)."""
        if not self.elastic:
            return tuple(self.depths)
        return tuple(int(arch.choices[depth_key(s)]) for s in range(len(self.depths)))

    def nominal_sides(self) -> list[int]:
        """Input side of every block at the layout's nominal image size (224 or 32)."""
        side, out = LAYOUTS[self.layout]["image"] // self.stem_stride(), []
        for L in self.layer_specs():
            out.append(side)
            side = -(-side // L.stride)
        return out

    def check_input(self, in_channels: int, image_size: int) -> None:
        """As a chain space; warns when the last stage would run at 1x1 (module docstring:
        with gamma = 0 the network starts from one corner pixel and does not learn)."""
        super().check_input(in_channels, image_size)
        side = -(-image_size // self.stem_stride())
        for L in self.layer_specs():
            side = -(-side // L.stride)
        if side < 2 and len(self.depths) > 1:
            import warnings

            warnings.warn(f"trionet: {image_size}x{image_size} images leave {side}x{side} maps in the last of "
                          f"{len(self.depths)} stages; its stride-2 1x1 shortcuts read one corner pixel and the "
                          f"search may not learn -- use fewer stages (e.g. the default size 'small') or larger "
                          f"images", stacklevel=2)

    def default_input(self) -> tuple[int, int, int]:
        """``(in_channels, image_size, num_classes)`` the layout is made for (ImageNet or CIFAR-10)."""
        return (3, 224, 1000) if self.layout == "imagenet" else (3, 32, 10)

    def span(self, L: ChainLayer) -> int:
        """Nominal axis length of the axial relative tables of layer ``L``."""
        return self.nominal_sides()[L.index]

    def make_stem(self, in_channels: int) -> nn.Module:
        C = self.width
        if self.layout == "imagenet":
            return nn.Sequential(nn.Conv2d(in_channels, C, 7, 2, 3, bias=False), nn.BatchNorm2d(C),
                                 nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        return nn.Sequential(nn.Conv2d(in_channels, C, 3, 1, 1, bias=False), nn.BatchNorm2d(C), nn.ReLU(inplace=True))

    def make_head(self) -> tuple[nn.Module, int]:
        return nn.Identity(), 4 * self.width * 2 ** (len(self.depths) - 1)

    def make_op(self, name: str, layer: ChainLayer) -> nn.Module:
        """The block of candidate ``name``; a block elastic depth skips (``"none"``) is the identity."""
        if name == SKIP:
            if layer.index not in self.skippable():
                raise ArchitectureError(f"{layer_key(layer.index)} cannot be skipped (it is not past its "
                                        f"stage's smallest depth)")
            return nn.Identity()
        return TrioBlock(layer.C_in, layer.C_out, layer.stride, parse_trio_op(name), self.span(layer))

    def _network(self, layer_modules, num_classes, in_channels, dropout=0.0) -> ChainNetwork:
        head, width = self.make_head()
        # NCHW: the attention operators reshape their inputs; channels-last helps only convolutions
        return ChainNetwork(self.make_stem(in_channels), layer_modules, head, width, num_classes, dropout,
                            channels_last=False)

    # ----- supernet --------------------------------------------------------------
    def build_supernet(self, mixer_factory: MixerFactory, num_classes: int, in_channels: int,
                       image_size: int, sharing: str = "multihead") -> nn.Module:
        self.check_input(in_channels, image_size)
        blocks, skippable = [], self.skippable()
        for p, L in zip(self.layer_points(), self.layer_specs()):
            mixer = mixer_factory(p)
            blocks.append(TrioSuperBlock(p.key, p.candidates, tuple(parse_trio_op(c) for c in p.candidates),
                                         L.C_in, L.C_out, L.stride, self.span(L), mixer, sharing,
                                         skippable=L.index in skippable))
        return self._network(blocks, num_classes, in_channels)

    def inherit_weights(self, supernet: nn.Module, arch: Architecture, network: nn.Module) -> nn.Module:
        """Copy ``arch``'s weight slices (and BN statistics) from ``supernet`` into ``network``
        (the stand-alone network of ``arch``); used by :func:`attnas.search.export.export_subnet`."""
        self.validate(arch)
        sup = getattr(supernet, "net", supernet)
        state = {}
        for name, v in sup.state_dict().items():
            if not name.startswith("layers."):
                state[name] = v.detach().clone()
        for i, block in enumerate(sup.layers):
            if not isinstance(block, TrioSuperBlock):
                raise ArchitectureError("inherit_weights needs a TrioNet supernet")
            if arch.choices[block.key] == SKIP:  # the identity: no weights
                continue
            o = parse_trio_op(arch.choices[block.key])
            state.update({f"layers.{i}.{k}": v for k, v in block.subnet_state(o).items()})
        mine = network.state_dict()
        for k, v in mine.items():
            if k not in state or tuple(state[k].shape) != tuple(v.shape):
                raise ArchitectureError(f"cannot inherit '{k}': the supernet has "
                                        f"{tuple(state[k].shape) if k in state else 'no such weight'}, "
                                        f"the network {tuple(v.shape)}")
        network.load_state_dict({k: state[k] for k in mine}, strict=True)
        return network

    # ----- costs -------------------------------------------------------------------
    def cost_table(self, num_classes: int, in_channels: int, image_size: int) -> ChainCosts:
        """Analytic per-layer, per-candidate costs (:func:`block_cost`); cached."""
        return _trio_costs(self, num_classes, in_channels, image_size)

    def candidate_size(self, L: ChainLayer, name: str) -> tuple:
        """Sort key of a candidate's size at the nominal resolution: (MACs, params, heads) --
        the sandwich rule's smallest / biggest (:mod:`attnas.strategies.trionet`)."""
        side = self.nominal_sides()[L.index]
        o = parse_trio_op(name)
        c = block_cost(L.C_in, L.C_out, L.stride, side, side, o, self.span(L))
        return (c.macs, c.params, o.heads or 0)

    # ----- cardinality -------------------------------------------------------------
    def cardinality(self) -> dict[str, Any]:
        """Size of the space vs the paper's "roughly 7.2e25 models" (Sec. 3.2), which counts the
        elastic depths of Appendix A (1-2, 2-3, 3-6, 1-3 blocks) with 70 candidates per block.
        ``fixed_depth``: the networks of ``depths`` blocks; ``architectures``: this space's
        networks (with its elastic depths, if any)."""
        per_block = len(self._candidates)
        fixed = per_block ** sum(self.depths)
        elastic = 1
        for choices in PAPER_DEPTH_CHOICES:
            elastic *= sum(per_block ** d for d in choices)
        mine = fixed
        if self.elastic:
            mine = 1
            for choices in self.depth_choices:
                mine *= sum(per_block ** d for d in choices)
        counts = {op: sum(1 for c in self._candidates if operator_of(c) == op) for op in self.operators}
        return {"candidates_per_block": per_block, "per_operator": counts, "blocks": sum(self.depths),
                "depth_choices": [list(c) for c in self.depth_choices] if self.elastic else None,
                "architectures": mine, "architectures_log10": round(math.log10(mine), 2),
                "fixed_depth": fixed, "fixed_depth_log10": round(math.log10(fixed), 2),
                "paper_elastic_depth_same_candidates": elastic,
                "paper_elastic_depth_log10": round(math.log10(elastic), 2),
                "paper_reported": PAPER_CARDINALITY}

    def cardinality_report(self) -> str:
        c = self.cardinality()
        depth = (f"elastic depths {c['depth_choices']} (at most {c['blocks']} blocks) -> {c['architectures']:.3g} "
                 f"architectures (10^{c['architectures_log10']}); at the fixed depths {list(self.depths)} "
                 if self.elastic else f"{c['blocks']} blocks -> ")
        return (f"TrioNet space ({self.layout}, depths {list(self.depths)}): {c['candidates_per_block']} candidates "
                f"per block {c['per_operator']}, {depth}{c['fixed_depth']:.3g} architectures "
                f"(10^{c['fixed_depth_log10']}); with the paper's elastic depths (Appendix A) "
                f"{c['paper_elastic_depth_same_candidates']:.3g}; paper reports ~{PAPER_CARDINALITY:.2g}")

    def print_cardinality(self) -> None:
        """Print :meth:`cardinality_report` (the space's size vs the paper's order of magnitude)."""
        print(self.cardinality_report())

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **{k: v for k, v in self.cardinality().items()
                                         if k not in ("fixed_depth", "architectures",
                                                      "paper_elastic_depth_same_candidates")}}

    # ----- stand-alone networks ----------------------------------------------------
    def standalone(self, op: str) -> Architecture:
        """The stand-alone single-operator network of the space: ResNet (``conv_k3_e0.25``),
        SASA-like local attention (``local_k7_e0.25_qk1_v1_h<max>``) or Axial-ResNet
        (``axial_e0.5_qk0.5_v1_h<max>``: Axial-DeepLab's block, attention on half the output
        width, query/key = half the value channels; module docstring).  With ``width`` 64
        and ``depths`` (1, 2, 4, 1) at 224x224 the first two are Table 2's ResNet-26 and
        Local-26; Table 2's Axial-26 is the ``width`` 32 one (:func:`paper_standalone`).
        With elastic depth: every stage at its greatest depth."""
        h = max(self.heads)
        names = {"conv": "conv_k3_e0.25", "local": f"local_k7_e0.25_qk1_v1_h{h}",
                 "axial": f"axial_e0.5_qk0.5_v1_h{h}"}
        if op not in names or op not in self.operators:
            raise ConfigError(f"no stand-alone '{op}' network in this space; expected one of {list(self.operators)}")
        return Architecture(self.name, {**{p.key: p.candidates[-1] for p in self.depth_points()},
                                        **{p.key: names[op] for p in self.layer_points()}})

    # ----- elastic depth ------------------------------------------------------------
    def recorded_options(self) -> dict[str, Any]:
        """Whether the depth is elastic (the default of size "paper" became elastic on 2026-12-04:
        a run records it, and a search run recorded without it reopens at fixed depth,
        :func:`attnas.run_dir.legacy_space_options`)."""
        return {"elastic_depth": self.depth_choices is not None}

    def conform(self, arch: Architecture, fill: Callable[[str], str] | None = None) -> Architecture:
        """``arch`` with the blocks past each stage's depth set to ``"none"`` and those within it
        that are ``"none"`` given ``fill(key)`` (e.g. a fresh draw; after a mutation raised a
        depth).  At fixed depth, ``arch`` itself."""
        if not self.elastic:
            return arch
        choices = dict(arch.choices)
        for s, layers in enumerate(self.stage_layers()):
            d = int(choices[depth_key(s)])
            for j, i in enumerate(layers):
                k = layer_key(i)
                if j >= d:
                    choices[k] = SKIP
                elif choices[k] == SKIP:
                    if fill is None:
                        raise ArchitectureError(f"{k} runs at depth {d} of stage {s} but is 'none'")
                    choices[k] = fill(k)
        return Architecture(arch.space, choices, dict(arch.meta))

    def sample(self, rng) -> Architecture:
        """Uniform per choice point: every stage's depth, then every block's candidate (the
        blocks past the depth "none")."""
        if not self.elastic:
            return super().sample(rng)
        return self.conform(Architecture(self.name, {p.key: rng.choice(p.candidates) for p in self.choice_points()}))

    def derive(self, scores) -> Architecture:
        """The argmax of every choice point (depths included), the blocks past the depths "none"."""
        return self.conform(super().derive(scores))

    def validate_topology(self, arch: Architecture) -> None:
        """Elastic depth: every stage's depth is one of its choices, and exactly the blocks past
        it are ``"none"`` (the first block of a stage always runs)."""
        if not self.elastic:
            return
        for s, (layers, choices) in enumerate(zip(self.stage_layers(), self.depth_choices)):
            v = arch.choices.get(depth_key(s))
            if v not in tuple(str(d) for d in choices):
                raise ArchitectureError(f"{depth_key(s)} is {v!r}; stage {s} may have {list(choices)} blocks")
            d = int(v)
            for j, i in enumerate(layers):
                op = arch.choices.get(layer_key(i))
                if (op == SKIP) != (j >= d):
                    want = "'none' (skipped)" if j >= d else "an operation"
                    raise ArchitectureError(f"stage {s} runs {d} block(s): {layer_key(i)} (its block {j + 1}) must be "
                                            f"{want}, got {op!r}")

    # ----- notation ----------------------------------------------------------------
    @classmethod
    def parse_native(cls, text: str) -> Architecture:
        """Parse ``"conv_k3_e0.25,local_k7_e0.5_qk1_v1_h8,..."`` (one candidate per block), or
        with elastic depth ``"conv_k3_e0.25,none|..."`` (stages joined by ``|``, each its blocks
        with ``none`` for the skipped ones; a stage's depth is the number it runs)."""
        text = str(text)
        if "|" not in text:
            stages = [[t.strip() for t in text.split(",")]]
        else:
            stages = [[t.strip() for t in part.split(",")] for part in text.split("|")]
            if stages[-1] == [""] and len(stages) > 1:  # a one-stage space's trailing "|"
                stages.pop()
        choices, i = {}, 0
        for s, items in enumerate(stages):
            depth = next((j for j, t in enumerate(items) if t == SKIP), len(items))
            if "|" in text:
                if depth == 0:
                    raise ArchitectureError(f"stage {s}: its first block cannot be skipped ('none')")
                if any(t != SKIP for t in items[depth:]):
                    raise ArchitectureError(f"stage {s}: only the blocks past the stage's depth are 'none', "
                                            f"got {','.join(items)}")
                choices[depth_key(s)] = str(depth)
            for j, t in enumerate(items):
                if j < depth or "|" not in text:
                    try:
                        parse_trio_op(t)
                    except ArchitectureError as e:
                        raise ArchitectureError(f"layer {i + j}: {e}") from None
            choices.update({layer_key(i + j): t for j, t in enumerate(items)})
            i += len(items)
        return Architecture("trionet", dict(sorted(choices.items(), key=lambda kv: not kv[0].startswith("depth:"))))

    @classmethod
    def to_native(cls, arch: Architecture) -> str:
        """The layer choices joined by commas; with elastic depth (``depth:<s>`` choices) the
        stages joined by ``|``: each stage's ``depth`` blocks, then its skipped blocks (``none``)."""
        layers = [arch.choices[layer_key(i)] for i in range(sum(k.startswith("layer:") for k in arch.choices))]
        n_stages = sum(k.startswith("depth:") for k in arch.choices)
        if not n_stages:
            return ",".join(layers)
        stages, i = [], 0
        for s in range(n_stages):
            stage = layers[i:i + int(arch.choices[depth_key(s)])]
            i += len(stage)
            while i < len(layers) and layers[i] == SKIP:
                stage.append(SKIP)
                i += 1
            stages.append(",".join(stage))
        return "|".join(stages) + ("|" if n_stages == 1 else "")

    def options_of(self, op: str) -> str:
        """The elastic options of operator ``op`` in this space, e.g. ``"e 0.125/0.25, k 3/5/7"``."""
        mine = [parse_trio_op(c) for c in self._candidates if operator_of(c) == op]
        if not mine:
            return f"none (operators of this space: {list(self.operators)})"
        fields = (("e", "e"), ("k", "k"), ("qk", "qk"), ("v", "v"), ("heads", "h"))
        return ", ".join(f"{label} " + "/".join(f"{x:g}" for x in sorted({getattr(o, f) for o in mine}))
                         for f, label in fields if getattr(mine[0], f) is not None)

    def validate(self, arch: Architecture) -> None:
        """A point of this space: Table 1 candidates; with elastic depth the depths and the
        skipped blocks too (:meth:`validate_topology`)."""
        points = {p.key: p for p in self.choice_points()}
        layers = {p.key for p in self.layer_points()}
        skippable = {layer_key(i) for i in self.skippable()}
        for k, v in arch.choices.items():
            if k in layers and isinstance(v, str) and v not in self._candidates and v != SKIP:
                o = parse_trio_op(v)  # a malformed name gets the syntax message first
                if arch.space == self.name:
                    raise ArchitectureError(f"'{v}' at '{k}' is not a candidate of this TrioNet space (Table 1); "
                                            f"{o.op} takes {self.options_of(o.op)}")
        if not self.elastic:
            super().validate(arch)
            return
        if arch.space == self.name and not any(k.startswith("depth:") for k in arch.choices):
            raise ArchitectureError(f"the architecture has no stage depths ('depth:<s>'), this TrioNet space elastic "
                                    f"depths {[list(c) for c in self.depth_choices]}; an architecture of the fixed-"
                                    f"depth space needs the space option \"elastic_depth\": false")
        if arch.space != self.name or set(arch.choices) != set(points):
            super().validate(arch)  # raises: another space, missing or unknown choice points
        for k, v in arch.choices.items():
            if v not in points[k].candidates and not (v == SKIP and k in skippable):
                raise ArchitectureError(f"'{v}' is not a choice of '{k}' in this TrioNet space; expected one of "
                                        f"{list(points[k].candidates) + ([SKIP] if k in skippable else [])}")
        self.validate_topology(arch)


@functools.lru_cache(maxsize=16)
def _trio_costs(space: TrioNetSpace, num_classes: int, in_channels: int, image_size: int) -> ChainCosts:
    space.check_input(in_channels, image_size)
    stem = space.make_stem(in_channels)
    base_macs, x = count_macs(stem, torch.zeros(1, in_channels, image_size, image_size))
    H, W = int(x.shape[-2]), int(x.shape[-1])
    tables, skippable = [], space.skippable()
    for L in space.layer_specs():
        table = {name: block_cost(L.C_in, L.C_out, L.stride, H, W, parse_trio_op(name), space.span(L))
                 for name in L.candidates}
        if L.index in skippable:  # elastic depth: a skipped block is the identity
            table[SKIP] = Profile(0, 0)
        tables.append(table)
        H, W = -(-H // L.stride), -(-W // L.stride)
    _, width = space.make_head()
    base = Profile(base_macs + width * num_classes,
                   count_params(stem) + width * num_classes + num_classes)
    return ChainCosts(base, tuple(tables))


#: Table 2's stand-alone networks (ImageNet, 224x224, 1000 classes): space options, the block
#: every layer uses, and the paper's parameters and FLOPs (2 x MACs).  See the module docstring.
PAPER_STANDALONE: dict[str, dict[str, Any]] = {
    "resnet26": {"space_options": {"layout": "imagenet", "depths": [1, 2, 4, 1], "width": 64},
                 "block": "conv_k3_e0.25", "params": 13.7e6, "flops": 4.7e9},
    "local26": {"space_options": {"layout": "imagenet", "depths": [1, 2, 4, 1], "width": 64},
                "block": "local_k7_e0.25_qk1_v1_h8", "params": 10.3e6, "flops": 4.5e9},
    "axial26": {"space_options": {"layout": "imagenet", "depths": [1, 2, 4, 1], "width": 32},
                "block": "axial_e0.5_qk0.5_v1_h8", "params": 5.9e6, "flops": 3.5e9},
}


def paper_standalone(name: str) -> tuple[TrioNetSpace, Architecture]:
    """The space and architecture of Table 2's ``resnet26``, ``local26`` or ``axial26``."""
    if name not in PAPER_STANDALONE:
        raise ConfigError(f"unknown stand-alone network '{name}'; expected one of {sorted(PAPER_STANDALONE)}")
    rec = PAPER_STANDALONE[name]
    from attnas.spaces.registry import get_space

    space = get_space("trionet", **rec["space_options"])
    arch = Architecture(space.name, {p.key: rec["block"] for p in space.layer_points()},
                        meta={"space_options": dict(rec["space_options"]), "standalone": name})
    return space, arch


__all__ = ["TrioNetSpace", "PAPER_STANDALONE", "paper_standalone", "parse_trio_op", "trio_name", "operator_of", "table1_candidates", "block_cost",
           "SHARING_MODES", "SKIP", "depth_key", "PAPER_DEPTH_CHOICES"]
