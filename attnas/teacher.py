"""Teachers for attention-guided search (NOS, Sec. 3.3): loading and stage features.

A teacher is a PyTorch model class named ``"package.module:Class"`` from the registry of
teacher classes (:data:`TEACHER_CLASSES`; :func:`register_teacher` adds one from Python code --
a name read from a file or a flag never chooses code to import), its constructor options and a
checkpoint; the stages whose outputs are matched are named
by their module names (``model.get_submodule(name)``), read with forward hooks
(:class:`StageHooks`).  ``attnas teacher train`` (:mod:`attnas.cli.teacher`) trains the
built-in :class:`CifarResNet` with the library's engine and writes a self-describing
checkpoint (``teacher.pt``: class, options, stages and weights), so that
``teacher_checkpoint`` alone is enough to use it.

Two teachers are built in: :class:`CifarResNet` (ResNet-20 by default: cheap, for small
budgets) and :class:`PyramidNet` (PyramidNet-110, bottleneck, alpha 84: the paper's teacher,
NOS Sec. 4.2 / Appendix A.2.1; registered as ``pyramidnet110`` too).  Pretrained weights cannot
be downloaded here: either is trained locally with ``attnas teacher train``.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnas.errors import ConfigError

#: what ``attnas teacher train`` writes into its run folder
TEACHER_FILE = "teacher.pt"


# ----- a small CIFAR ResNet (He et al. 2016, Sec. 4.2) ----------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, C_in: int, C_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(C_in, C_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(C_out)
        self.conv2 = nn.Conv2d(C_out, C_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(C_out)
        self.shortcut = (nn.Sequential() if stride == 1 and C_in == C_out else
                         nn.Sequential(nn.Conv2d(C_in, C_out, 1, stride, bias=False), nn.BatchNorm2d(C_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for CIFAR: 3 stages (``layer1``..``layer3``) of n basic blocks with widths
    w, 2w, 4w at full, 1/2 and 1/4 resolution -- the same three resolutions as the stages of the
    NOS / DARTS proxy network, so the attention maps align (Fig. 3)."""

    stages = ("layer1", "layer2", "layer3")

    def __init__(self, depth: int = 20, width: int = 16, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"CifarResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, ...), got {depth}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        layers, C = [], width
        for i, C_out in enumerate((width, 2 * width, 4 * width)):
            blocks = [BasicBlock(C, C_out, 1 if i == 0 else 2)] + [BasicBlock(C_out, C_out, 1)
                                                                   for _ in range(n - 1)]
            layers.append(nn.Sequential(*blocks))
            C = C_out
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# ----- PyramidNet (Han et al., CVPR 2017) --------------------------------------------------------
class _PyramidalUnit(nn.Module):
    """A pyramidal residual unit (Han et al. Fig. 6 (d)/(e)): BN-conv3x3-BN-ReLU-conv3x3-BN (basic)
    or BN-conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1-BN (bottleneck, output ``4 * planes``), no
    ReLU after the addition; the shortcut is the identity (2x2 average pooling when the unit
    halves the resolution) with its missing channels zero-padded (Sec. 3.2)."""

    def __init__(self, C_in: int, planes: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        self.C_out = 4 * planes if bottleneck else planes
        if bottleneck:
            layers = [nn.BatchNorm2d(C_in), nn.Conv2d(C_in, planes, 1, bias=False),
                      nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
                      nn.Conv2d(planes, planes, 3, stride, 1, bias=False),
                      nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
                      nn.Conv2d(planes, self.C_out, 1, bias=False), nn.BatchNorm2d(self.C_out)]
        else:
            layers = [nn.BatchNorm2d(C_in), nn.Conv2d(C_in, planes, 3, stride, 1, bias=False),
                      nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
                      nn.Conv2d(planes, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes)]
        self.residual = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if stride > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        shortcut = x if self.pool is None else self.pool(x)
        missing = out.shape[1] - shortcut.shape[1]
        if missing:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, missing))  # zero channels after x's
        return out + shortcut


class PyramidNet(nn.Module):
    """Additive PyramidNet for CIFAR (Han et al., CVPR 2017, Eq. 2): a 3x3 stem of 16 channels,
    then three stages (``layer1``..``layer3``, full, 1/2 and 1/4 resolution -- those of the
    NOS / DARTS proxy's stages) of n units each, whose widths grow linearly by ``alpha / 3n``
    per unit from 16 to ``16 + alpha`` (times 4 at the output of bottleneck units); BN-ReLU,
    global pooling and the classifier after the last stage.  ``depth`` = 6n + 2 (basic units)
    or 9n + 2 (bottleneck units).  The defaults are the NOS teacher (Sec. 4.2):
    PyramidNet-110, bottleneck, alpha 84."""

    stages = ("layer1", "layer2", "layer3")

    def __init__(self, depth: int = 110, alpha: float = 84, bottleneck: bool = True, num_classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        per_unit = 9 if bottleneck else 6
        if (depth - 2) % per_unit or depth < per_unit + 2:
            raise ConfigError(f"PyramidNet depth must be {per_unit}n+2 with n >= 1 for "
                              f"{'bottleneck' if bottleneck else 'basic'} units, got {depth}")
        if alpha < 0:
            raise ConfigError(f"PyramidNet alpha must be >= 0, got {alpha}")
        n = (depth - 2) // per_unit
        step = alpha / (3 * n)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16))
        C, width, stage_modules = 16, 16.0, []
        for i in range(3):
            units = []
            for j in range(n):
                width += step
                units.append(_PyramidalUnit(C, int(round(width)), 2 if i > 0 and j == 0 else 1, bottleneck))
                C = units[-1].C_out
            stage_modules.append(nn.Sequential(*units))
        self.layer1, self.layer2, self.layer3 = stage_modules
        self.head = nn.Sequential(nn.BatchNorm2d(C), nn.ReLU(inplace=True))
        self.fc = nn.Linear(C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# ----- loading -----------------------------------------------------------------------------------
#: The teacher classes a name may refer to (``"module:Class"`` -> class).  A teacher checkpoint,
#: a run's ``teacher_config.json`` / ``config.json`` and the ``--class`` / ``teacher`` options only
#: *name* a class; nothing outside this registry is ever imported for them (issue 14: a file from
#: a user must not choose code to run).  Add your own with :func:`register_teacher`.
TEACHER_CLASSES: dict[str, type] = {"attnas.teacher:CifarResNet": CifarResNet,
                                    "attnas.teacher:PyramidNet": PyramidNet,
                                    # short names: the class with its default options
                                    "resnet20": CifarResNet, "pyramidnet110": PyramidNet}


def register_teacher(cls: type, name: str | None = None) -> str:
    """Allow ``cls`` (an ``nn.Module`` subclass) as a teacher class under ``name`` (default
    ``"cls.__module__:cls.__qualname__"``); returns the name.  Call it from your own Python code
    before :func:`load_teacher` / :func:`attnas.cli.teacher.train_teacher` name that class."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(f"teacher class {cls!r} is not an nn.Module subclass")
    name = name or f"{cls.__module__}:{cls.__qualname__}"
    TEACHER_CLASSES[name] = cls
    return name


def import_class(spec: str) -> type:
    """The registered teacher class named ``spec`` (``"package.module:Class"`` or a short name
    such as ``"pyramidnet110"``); a ConfigError for any other name, without importing anything
    (see :data:`TEACHER_CLASSES`)."""
    if not isinstance(spec, str):
        raise ConfigError(f"teacher class {str(spec)[:200]!r} must be given as 'package.module:Class'")
    cls = TEACHER_CLASSES.get(spec)
    if cls is None:
        raise ConfigError(f"cannot import teacher class {spec[:200]!r}: not a registered attnas teacher class "
                          f"(known: {', '.join(sorted(TEACHER_CLASSES))}; Python code can add one with "
                          f"attnas.teacher.register_teacher)")
    return cls


def instantiate(cls: type, options: dict[str, Any], num_classes: int | None = None,
                in_channels: int | None = None) -> nn.Module:
    """``cls(**options)``, filling ``num_classes`` / ``in_channels`` when the constructor takes
    them and ``options`` does not give them."""
    opts = dict(options)
    params = inspect.signature(cls).parameters
    if num_classes is not None and "num_classes" in params and "num_classes" not in opts:
        opts["num_classes"] = num_classes
    if in_channels is not None and "in_channels" in params and "in_channels" not in opts:
        opts["in_channels"] = in_channels
    try:
        return cls(**opts)
    except TypeError as e:
        raise ConfigError(f"cannot build teacher {cls.__name__}({opts}): {e}") from None


def _state_dict_of(obj: Any) -> dict[str, torch.Tensor]:
    """The weights inside a checkpoint: a plain state dict, ``{"state_dict": ...}``,
    ``{"model": ...}`` or an attnas engine checkpoint ``{"task": {"model": ...}}``."""
    if isinstance(obj, dict):
        for path in (("state_dict",), ("model",), ("task", "model")):
            cur = obj
            for p in path:
                cur = cur.get(p) if isinstance(cur, dict) else None
            if isinstance(cur, dict):
                return cur
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise ConfigError("teacher checkpoint holds no state dict (expected a state dict, or one under "
                      "'state_dict', 'model' or 'task.model')")


def load_teacher(checkpoint: str | None, cls_spec: str | None = None, options: dict[str, Any] | None = None,
                 stages: Sequence[str] | None = None, num_classes: int | None = None,
                 in_channels: int | None = None) -> tuple[nn.Module, list[str]]:
    """The teacher model (eval mode, no gradients) and its stage names.

    Class, options and stages default to those recorded in a checkpoint written by
    ``attnas teacher train``; arguments given here win.  ``checkpoint`` None builds the class
    with random weights (tests only)."""
    saved: dict[str, Any] = {}
    state = None
    if checkpoint is not None:
        path = Path(checkpoint)
        if path.is_dir():
            path = path / TEACHER_FILE
        if not path.is_file():
            raise ConfigError(f"teacher checkpoint '{checkpoint}' does not exist")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 -- any unpickling failure is a bad file
            raise ConfigError(f"cannot read teacher checkpoint '{path}': {e}") from None
        if isinstance(obj, dict) and "teacher_class" in obj:
            saved = obj
        state = _state_dict_of(obj)
    spec = cls_spec or saved.get("teacher_class")
    if not spec:
        raise ConfigError("no teacher class: give 'teacher' ('module:Class') or a checkpoint written by "
                          "'attnas teacher train'")
    opts = {**saved.get("teacher_options", {}), **(options or {})}
    model = instantiate(import_class(spec), opts, num_classes, in_channels)
    if state is not None:
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ConfigError(f"teacher checkpoint does not fit {spec}: missing {list(missing)[:3]}, "
                              f"unexpected {list(unexpected)[:3]}")
    names = list(stages or saved.get("teacher_stages") or getattr(model, "stages", ()) or ())
    if not names:
        raise ConfigError("no teacher stages: give 'teacher_stages' (module names, e.g. "
                          "['layer1', 'layer2', 'layer3'])")
    for n in names:
        try:
            model.get_submodule(n)
        except AttributeError:
            raise ConfigError(f"teacher {spec} has no module '{n}' (a stage name)") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, names


def save_teacher(model: nn.Module, path: str | Path, cls_spec: str, options: dict[str, Any],
                 stages: Sequence[str]) -> None:
    """Write a self-describing teacher checkpoint (read by :func:`load_teacher`)."""
    torch.save({"teacher_class": cls_spec, "teacher_options": dict(options),
                "teacher_stages": list(stages), "state_dict": model.state_dict()}, path)


class StageHooks:
    """Collect the outputs of named sub-modules during a forward pass.

    >>> hooks = StageHooks(model, ["layer1", "layer2"]); model(x); feats = hooks.pop()
    Only active inside ``with hooks.capture():`` so evaluation passes store nothing.
    """

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        self.names = list(names)
        self._out: dict[str, torch.Tensor] = {}
        self._on = False
        self._handles = []
        for n in self.names:
            self._handles.append(model.get_submodule(n).register_forward_hook(self._hook(n)))

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if self._on:
                self._out[name] = output[0] if isinstance(output, tuple) else output
        return hook

    def capture(self):
        hooks = self

        class _Ctx:
            def __enter__(self_inner):
                hooks._out, hooks._on = {}, True
                return hooks

            def __exit__(self_inner, *exc):
                hooks._on = False
                return False

        return _Ctx()

    def pop(self) -> list[torch.Tensor]:
        missing = [n for n in self.names if n not in self._out]
        if missing:
            raise ConfigError(f"stages {missing} produced no output in the forward pass")
        out = [self._out[n] for n in self.names]
        self._out = {}
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
