"""Chain search spaces: one choice point per layer of a single-path network.

:class:`ChainSpace` is the shared machinery (layer layout, supernet, stand-alone
network, additive FLOPs/parameter table); :class:`ProxylessSpace` is the
ProxylessNAS / MobileNetV2 space that IT-NAS and TNASP search, registered as
``"proxyless"``.  NAS-Bench-Macro is :mod:`attnas.spaces.macro`.

Networks are :class:`ChainNetwork`: ``stem`` -> ``layers`` (an ``nn.Sequential``
of the searchable layers) -> ``head`` -> global average pool -> dropout ->
``classifier``.  In the supernet ``layers[i]`` is a ChoiceBlock whose
``ops[j]`` is candidate j; in the stand-alone network ``layers[i]`` is the
chosen candidate itself, so weights map one to one (see
:func:`attnas.search.export.inherit_weights`).  Every candidate of a layer maps
the same input shape to the same output shape, so a layer's input does not
depend on the choices before it: FLOPs and parameters of a chain architecture
are a sum over layers (:meth:`ChainSpace.cost_table`).

ProxylessNAS layout (Cai et al., ICLR 2019, Sec. 4.2 and the reference code's
``ProxylessNASNets``; the MobileNetV2 backbone of Sandler et al. 2018):

* stem: 3x3 conv to 32 channels (stride 2 on ImageNet), BN, ReLU6, then a fixed
  MBConv with expansion 1, kernel 3, to 16 channels;
* 21 searchable layers in 6 stages of widths 24, 40, 80, 96, 192, 320 with
  4, 4, 4, 4, 4, 1 layers and first-layer strides 2, 2, 2, 1, 2, 1;
* candidates: inverted bottlenecks with kernel 3, 5, 7 x expansion 3, 6
  (``mb3_k3`` ... ``mb6_k7``) and, on every layer but the first of a stage,
  ``skip`` (the zero block of a residual layer: the layer is left out, which is
  ProxylessNAS' depth search); the first layer of a stage changes the shape, so
  it cannot be skipped;
* head: 1x1 conv to 1280 channels, BN, ReLU6, pooling, dropout, linear.

``variant="cifar"`` keeps the layout for 32x32 images with the usual CIFAR
adaptation of MobileNetV2 (stride 1 in the stem and in the first stage, so
the network downsamples 8x instead of 32x and ends at 4x4).  ``se=True`` adds
squeeze-and-excitation to every block (IT-NAS Table 6).  ``width_mult`` scales
every width (rounded to multiples of 8; the 1280 head only grows, as in
MobileNetV2).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn as nn

from attnas.arch import Architecture, layer_key
from attnas.errors import ArchitectureError, ConfigError, ShapeError
from attnas.ops.layout import as_layout, channels_last_safe, use_channels_last  # noqa: F401 (re-export)
from attnas.ops.mobile import InvertedResidual, build_mobile_op, make_divisible
from attnas.profile import Profile, count_macs, count_params
from attnas.spaces.base import ChoiceBlock, ChoicePoint, MixerFactory, SearchSpace, recomputed
from attnas.spaces.registry import register_space


@dataclass(frozen=True)
class ChainLayer:
    """One searchable layer: shape, stride and candidates."""

    index: int
    C_in: int
    C_out: int
    stride: int
    candidates: tuple[str, ...]
    stage: int


class ChainNetwork(nn.Module):
    """stem -> layers -> head -> pool -> dropout -> classifier.

    Weights and activations use the channels-last (NHWC) memory layout, in which
    depthwise-separable blocks run 1.3x (32x32) to 1.6x (224x224) faster on CPU
    (oneDNN kernels for every convolution; ``bench/spos_step_cost.py``); values are
    unchanged, and state dicts load into either layout.  Networks that would hit a oneDNN
    bug in that layout (:func:`attnas.ops.layout.channels_last_safe`) keep NCHW."""

    def __init__(self, stem: nn.Module, layers: list[nn.Module], head: nn.Module, head_channels: int,
                 num_classes: int, dropout: float = 0.0, channels_last: bool = True) -> None:
        super().__init__()
        self.stem = stem
        self.layers = nn.Sequential(*layers)
        self.head = head
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(head_channels, num_classes)
        self.channels_last = use_channels_last(self, channels_last)
        #: recompute the stem in the backward pass (``set_recompute(..., "all")``): at 224x224 a
        #: ProxylessNAS stem keeps four 64 x 32 x 112 x 112 maps, 0.4 GiB, through the whole
        #: backward pass; recomputing it cut a SPOS step's peak 2.34 -> 1.89 GiB (``bench/spos_step_cost.py``)
        self.recompute_stem = False

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = as_layout(x, self.channels_last)
        if self.recompute_stem and self.training and torch.is_grad_enabled():
            x = recomputed(self.stem, self.stem, x)
        else:
            x = self.stem(x)
        return self.head(self.layers(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(self.features(x)).flatten(1)))


@dataclass(frozen=True)
class ChainCosts:
    """Additive cost table of a chain space: fixed part + one entry per layer and candidate."""

    base: Profile
    layers: tuple[Mapping[str, Profile], ...]

    def of(self, arch: Architecture) -> Profile:
        macs, params = self.base.macs, self.base.params
        for i, table in enumerate(self.layers):
            p = table[arch.choices[layer_key(i)]]
            macs += p.macs
            params += p.params
        return Profile(macs, params)


class ChainSpace(SearchSpace):
    """Base of the chain spaces; subclasses define the layout."""

    #: activation of the blocks ("relu6" or "relu")
    activation: str = "relu6"
    se: bool = False

    # ----- layout (subclasses) -------------------------------------------------
    def layer_specs(self) -> list[ChainLayer]:  # pragma: no cover - abstract
        raise NotImplementedError

    def make_stem(self, in_channels: int) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def make_head(self) -> tuple[nn.Module, int]:  # pragma: no cover - abstract
        """The head module and its output width."""
        raise NotImplementedError

    def stem_stride(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def make_op(self, name: str, layer: ChainLayer) -> nn.Module:
        return build_mobile_op(name, layer.C_in, layer.C_out, layer.stride, se=self.se,
                               activation=self.activation)

    # ----- SearchSpace -----------------------------------------------------------
    def choice_points(self) -> list[ChoicePoint]:
        return [ChoicePoint(layer_key(L.index), L.candidates, layer_key(L.index)) for L in self.layer_specs()]

    def total_stride(self) -> int:
        s = self.stem_stride()
        for L in self.layer_specs():
            s *= L.stride
        return s

    def check_input(self, in_channels: int, image_size: int) -> None:
        if in_channels < 1:
            raise ShapeError(f"space '{self.name}' needs at least one input channel, got {in_channels}")
        need = self.total_stride()
        if image_size < need:
            raise ShapeError(f"space '{self.name}' downsamples {need}x, so it needs images of at least "
                             f"{need}x{need}, got {image_size}x{image_size}")

    def _network(self, layer_modules: list[nn.Module], num_classes: int, in_channels: int,
                 dropout: float = 0.0) -> ChainNetwork:
        head, width = self.make_head()
        return ChainNetwork(self.make_stem(in_channels), layer_modules, head, width, num_classes, dropout)

    def build_supernet(self, mixer_factory: MixerFactory, num_classes: int, in_channels: int,
                       image_size: int) -> nn.Module:
        self.check_input(in_channels, image_size)
        points = self.choice_points()
        blocks = [ChoiceBlock(p, [self.make_op(o, L) for o in p.candidates], mixer_factory(p))
                  for p, L in zip(points, self.layer_specs())]
        return self._network(blocks, num_classes, in_channels)

    def build_network(self, arch: Architecture, num_classes: int, in_channels: int,
                      image_size: int, dropout: float = 0.0, **options: Any) -> nn.Module:
        """The stand-alone network; ``dropout`` before the classifier (ProxylessNAS retrains with 0.1)."""
        if options:
            raise ConfigError(f"unknown network options for '{self.name}': {sorted(options)}; "
                              "expected only 'dropout'")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.validate(arch)
        self.check_input(in_channels, image_size)
        ops = [self.make_op(arch.choices[layer_key(L.index)], L) for L in self.layer_specs()]
        return self._network(ops, num_classes, in_channels, float(dropout))

    # ----- costs -----------------------------------------------------------------
    def cost_table(self, num_classes: int, in_channels: int, image_size: int) -> ChainCosts:
        """Per-layer, per-candidate MACs (FLOPs = 2 x MACs) and parameters (see :mod:`attnas.profile`); cached."""
        return _cost_table(self, num_classes, in_channels, image_size)

    def _cache_key(self) -> tuple:
        return (type(self).__name__, tuple(sorted(vars(self).items())))

    def __hash__(self) -> int:
        return hash(self._cache_key())

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._cache_key() == self._cache_key()


@functools.lru_cache(maxsize=16)
def _cost_table(space: ChainSpace, num_classes: int, in_channels: int, image_size: int) -> ChainCosts:
    space.check_input(in_channels, image_size)
    stem = space.make_stem(in_channels)
    base_macs, x = count_macs(stem, torch.zeros(1, in_channels, image_size, image_size))
    base_params = count_params(stem)
    tables = []
    for L in space.layer_specs():
        table, out = {}, None
        for name in L.candidates:
            op = space.make_op(name, L)
            f, y = count_macs(op, x)
            table[name] = Profile(f, count_params(op))
            if out is None:
                out = y
            elif tuple(y.shape) != tuple(out.shape):
                raise ShapeError(f"{layer_key(L.index)}: candidate '{name}' gives {tuple(y.shape)}, "
                                 f"others {tuple(out.shape)}")
        tables.append(table)
        x = out
    head, width = space.make_head()
    tail = nn.Sequential(head, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
    f, _ = count_macs(tail, x)
    return ChainCosts(Profile(base_macs + f, base_params + count_params(tail)), tuple(tables))


# --------------------------------------------------------------------------- ProxylessNAS

#: ProxylessNAS block candidates: kernel 3, 5, 7 x expansion 3, 6 (Cai et al. 2019, Sec. 4.2)
PROXYLESS_BLOCKS = ("mb3_k3", "mb6_k3", "mb3_k5", "mb6_k5", "mb3_k7", "mb6_k7")
PROXYLESS_SKIP = "skip"
#: (width, layers, first stride on ImageNet) per stage -- ProxylessNAS reference code / MobileNetV2
PROXYLESS_STAGES = ((24, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1))
PROXYLESS_STEM = 32
PROXYLESS_FIRST_BLOCK = 16
PROXYLESS_HEAD = 1280
PROXYLESS_VARIANTS = ("imagenet", "cifar")


def _proxyless_guess(text: str) -> bool:
    items = [t.strip() for t in text.split(",")]
    return len(items) == sum(n for _, n, _ in PROXYLESS_STAGES) and all(
        t in PROXYLESS_BLOCKS or t == PROXYLESS_SKIP for t in items)


@register_space("proxyless", native_guess=_proxyless_guess)
class ProxylessSpace(ChainSpace):
    """ProxylessNAS / MobileNetV2 chain space (module docstring).

    Options: ``variant`` ("imagenet" for 224x224 inputs, "cifar" for 32x32),
    ``se`` (squeeze-and-excitation in every block), ``width_mult``.
    Native notation: the 21 layer choices joined by commas, e.g.
    ``"mb6_k5,skip,mb3_k3,..."``.
    """

    activation = "relu6"

    def __init__(self, variant: str = "imagenet", se: bool = False, width_mult: float = 1.0) -> None:
        if variant not in PROXYLESS_VARIANTS:
            raise ConfigError(f"unknown proxyless variant '{variant}'; expected one of {list(PROXYLESS_VARIANTS)}")
        if not isinstance(se, bool):
            raise ConfigError(f"proxyless option 'se' must be true or false, got {se!r}")
        try:
            width_mult = float(width_mult)
        except (TypeError, ValueError):
            raise ConfigError(f"proxyless option 'width_mult' must be a number, got {width_mult!r}") from None
        if not 0.0 < width_mult <= 4.0:
            raise ConfigError(f"proxyless option 'width_mult' must be in (0, 4], got {width_mult}")
        self.variant, self.se, self.width_mult = variant, se, width_mult

    def _w(self, c: int) -> int:
        return make_divisible(c * self.width_mult, 8)

    def stem_stride(self) -> int:
        return 2 if self.variant == "imagenet" else 1

    def default_input(self) -> tuple[int, int, int]:
        """``(in_channels, image_size, num_classes)`` the variant is made for (ImageNet or CIFAR-10)."""
        return (3, 224, 1000) if self.variant == "imagenet" else (3, 32, 10)

    def layer_specs(self) -> list[ChainLayer]:
        specs, C_in, i = [], self._w(PROXYLESS_FIRST_BLOCK), 0
        for stage, (width, n, stride) in enumerate(PROXYLESS_STAGES):
            if self.variant == "cifar" and stage == 0:
                stride = 1
            C_out = self._w(width)
            for j in range(n):
                cands = PROXYLESS_BLOCKS if j == 0 else PROXYLESS_BLOCKS + (PROXYLESS_SKIP,)
                specs.append(ChainLayer(i, C_in, C_out, stride if j == 0 else 1, cands, stage))
                C_in, i = C_out, i + 1
        return specs

    def make_stem(self, in_channels: int) -> nn.Module:
        C = self._w(PROXYLESS_STEM)
        return nn.Sequential(
            nn.Conv2d(in_channels, C, 3, self.stem_stride(), 1, bias=False), nn.BatchNorm2d(C),
            nn.ReLU6(inplace=True),
            InvertedResidual(C, self._w(PROXYLESS_FIRST_BLOCK), 1, 1, 3, se=self.se, activation="relu6"))

    def make_head(self) -> tuple[nn.Module, int]:
        C_in = self._w(PROXYLESS_STAGES[-1][0])
        C = make_divisible(PROXYLESS_HEAD * self.width_mult, 8) if self.width_mult > 1.0 else PROXYLESS_HEAD
        return nn.Sequential(nn.Conv2d(C_in, C, 1, bias=False), nn.BatchNorm2d(C), nn.ReLU6(inplace=True)), C

    @classmethod
    def parse_native(cls, text: str) -> Architecture:
        """Parse ``"mb6_k5,skip,..."`` (21 comma-separated layer choices)."""
        items = [t.strip() for t in str(text).split(",")]
        n = sum(k for _, k, _ in PROXYLESS_STAGES)
        if len(items) != n:
            raise ArchitectureError(f"a proxyless architecture string has {n} comma-separated layer choices, "
                                    f"got {len(items)} in '{str(text)[:60]}'")
        for i, t in enumerate(items):
            if t not in PROXYLESS_BLOCKS and t != PROXYLESS_SKIP:
                raise ArchitectureError(f"layer {i}: unknown choice '{t}'; expected one of "
                                        f"{list(PROXYLESS_BLOCKS) + [PROXYLESS_SKIP]}")
        return Architecture("proxyless", {layer_key(i): t for i, t in enumerate(items)})

    @classmethod
    def to_native(cls, arch: Architecture) -> str:
        n = sum(k for _, k, _ in PROXYLESS_STAGES)
        return ",".join(arch.choices[layer_key(i)] for i in range(n))
