"""Per-operation Grad-CAM at one choice point of a trained supernet (IT-NAS Fig. 4).

IT-NAS shows, for a few images, where each candidate operation of one layer of the
trained chain supernet responds, next to the operation the indicator token chose.
Grad-CAM (Selvaraju et al., ICCV 2017, Eq. 1-2) applied to the output ``A_i`` of
candidate ``i`` of that choice point:

    alpha_{i,c} = mean_{h,w} d y_t / d A_{i,c,h,w}          (Eq. 1: channel weights)
    L_i         = ReLU( sum_c alpha_{i,c} A_{i,c} )          (Eq. 2: the map)

``y_t`` is the logit of the target class (the label when given, else the predicted
class).  All candidates are computed in ONE forward pass of the supernet in eval mode
with every candidate active (IT-NAS mixes them through the Lite-Transformer, DARTS through
softmax weights), so each ``A_i`` receives the gradient of its actual contribution to the
prediction -- a candidate the indicator weights down gets a weak map.  Maps are upsampled
bilinearly to the image size and scaled to [0, 1] per image and operation (the paper's
figure shows each map in its own colour scale); the raw maximum is kept as ``strength``.

Choices of ours: single-path supernets (SPOS, random) run one candidate per forward and
are refused (their ops never compete in one pass); ``none`` candidates have no map; a
choice point shared by several instances (cell spaces) uses instance ``instance``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnas.run_dir import ARCHITECTURE
from attnas.errors import ConfigError
from attnas.spaces.base import ChoiceBlock


@dataclass
class GradCAMResult:
    """Maps ``cams[op]`` of shape (N, H, W) in [0, 1], ``strength[op]`` (N,) raw maxima,
    the target classes and the images (N, C, H, W, for display)."""

    key: str
    ops: list[str]
    cams: dict[str, torch.Tensor]
    strength: dict[str, torch.Tensor]
    targets: torch.Tensor
    images: torch.Tensor
    chosen: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "ops": self.ops, "chosen": self.chosen,
                "targets": self.targets.tolist(), "images": int(self.images.shape[0]),
                "mean_strength": {o: float(s.mean()) for o, s in self.strength.items()}, **self.meta}


def choice_block(model: nn.Module, key: str, instance: int = 0) -> ChoiceBlock:
    blocks = [m for m in model.modules() if isinstance(m, ChoiceBlock) and m.point.key == key]
    if not blocks:
        keys = sorted({m.point.key for m in model.modules() if isinstance(m, ChoiceBlock)})
        raise ConfigError(f"no choice point '{key}' in this supernet; expected one of {keys}")
    if not 0 <= instance < len(blocks):
        raise ConfigError(f"choice point '{key}' has {len(blocks)} instance(s); got instance {instance}")
    return blocks[instance]


def per_operation_gradcam(model: nn.Module, key: str, x: torch.Tensor, targets: torch.Tensor | None = None,
                          instance: int = 0) -> GradCAMResult:
    """Grad-CAM of every candidate of choice point ``key`` on images ``x`` (module docstring)."""
    block = choice_block(model, key, instance)
    outputs: dict[int, torch.Tensor] = {}
    hooks = []
    for i, (name, op) in enumerate(zip(block.point.candidates, block.ops)):
        if name == "none":
            continue

        def keep(mod, inp, out, i=i):
            if isinstance(out, torch.Tensor) and out.requires_grad:
                out.retain_grad()
                outputs[i] = out
        hooks.append(op.register_forward_hook(keep))
    was = model.training
    arch_state = getattr(getattr(model, "arch", None), "active", None)
    model.eval()
    try:
        if arch_state is not None:
            model.arch.active = {}
        with torch.enable_grad():
            logits = model(x)
            logits = logits[0] if isinstance(logits, tuple) else logits
            t = logits.argmax(1) if targets is None else targets.to(logits.device)
            logits.gather(1, t[:, None]).sum().backward()
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
        model.zero_grad(set_to_none=True)
    missing = [block.point.candidates[i] for i, n in enumerate(block.point.candidates)
               if n != "none" and i not in outputs]
    if missing:
        raise ConfigError(f"candidates {missing} of '{key}' did not run in the forward pass: per-operation "
                          "Grad-CAM needs a supernet that runs every candidate (itnas, darts, entrannas), "
                          "not a single-path one")
    cams, strength = {}, {}
    for i, a in sorted(outputs.items()):
        g = a.grad if a.grad is not None else torch.zeros_like(a)
        alpha = g.mean(dim=(2, 3), keepdim=True)                          # Eq. 1
        cam = F.relu((alpha * a).sum(1, keepdim=True)).detach()           # Eq. 2
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).max(1).values
        cams[block.point.candidates[i]] = cam / peak.clamp_min(1e-12)[:, None, None]
        strength[block.point.candidates[i]] = peak
    ops = [block.point.candidates[i] for i in sorted(outputs)]
    return GradCAMResult(key, ops, cams, strength, t.detach().cpu(), x.detach().cpu())


def draw_gradcam(result: GradCAMResult, path: str | Path, class_names: Sequence[str] | None = None) -> Path:
    """Image grid: one row per image (the image, then each operation's map over it); the
    indicator's chosen operation is framed in red and starred."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, ops = result.images.shape[0], result.ops
    fig, axes = plt.subplots(n, len(ops) + 1, figsize=(1.6 * (len(ops) + 1), 1.6 * n + 0.6), squeeze=False)
    imgs = result.images.float()
    lo = imgs.flatten(1).min(1).values[:, None, None, None]
    hi = imgs.flatten(1).max(1).values[:, None, None, None]
    imgs = ((imgs - lo) / (hi - lo).clamp_min(1e-12)).permute(0, 2, 3, 1).numpy()
    for r in range(n):
        img = imgs[r] if imgs.shape[-1] == 3 else imgs[r][..., 0]
        cmap = None if imgs.shape[-1] == 3 else "gray"
        t = int(result.targets[r])
        axes[r][0].imshow(img, cmap=cmap)
        axes[r][0].set_title(class_names[t] if class_names else f"class {t}", fontsize=7)
        for c, op in enumerate(ops, start=1):
            ax = axes[r][c]
            ax.imshow(img, cmap=cmap)
            ax.imshow(result.cams[op][r].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if r == 0:
                ax.set_title(("* " if op == result.chosen else "") + op, fontsize=7,
                             color="red" if op == result.chosen else "black")
            if op == result.chosen:
                for s in ax.spines.values():
                    s.set_edgecolor("red")
                    s.set_linewidth(2.5)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Grad-CAM per operation at {result.key} (* = indicator's choice)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def gradcam_run(run_dir: str | Path, key: str | None = None, images: int = 4, instance: int = 0,
                use_labels: bool = True) -> GradCAMResult:
    """Grad-CAM at choice point ``key`` (default: the middle one) of a finished search run's
    supernet, on the first ``images`` validation images of its split."""
    import json

    from attnas.from_run import load_search_run

    loaded = load_search_run(run_dir, device="cpu")
    points = loaded.space.choice_points()
    key = key or points[len(points) // 2].key
    x_raw, y = next(iter(loaded.task.valid_batches.epoch(0)))
    x_raw, y = x_raw[:images], y[:images]
    if len(x_raw) < images:
        raise ConfigError(f"the validation split has only {len(x_raw)} images in a batch; asked for {images}")
    x = loaded.task.augment(x_raw.to(loaded.task.device), train=False)
    res = per_operation_gradcam(loaded.model, key, x, y if use_labels else None, instance)
    res.images = x.detach().cpu()
    arch_file = Path(run_dir) / ARCHITECTURE
    if arch_file.is_file():
        res.chosen = json.loads(arch_file.read_text())["choices"].get(key)
    res.meta.update({"run_dir": str(run_dir), "method": loaded.cfg.method, "space": loaded.cfg.space,
                     "epochs_done": loaded.epochs_done})
    res.meta["class_names"] = list(loaded.data.class_names)
    return res
