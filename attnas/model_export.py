"""Export a derived network to TorchScript or ONNX, checked against PyTorch.

:func:`load_network` builds the stand-alone network of an architecture
(``space.build_network``) with weights from one of three sources:

* ``inherited`` -- a search run (``attnas search``): its supernet is restored
  from ``checkpoint.pt`` (:func:`attnas.from_run.load_search_run`) and
  the chosen path's weights are copied into the network
  (:mod:`attnas.search.export`).  Cell spaces search with affine-free batch
  norm while their stand-alone networks have affine BN: those BN scales and
  shifts start at the identity (1, 0), which computes the same as the
  affine-free BN; every BN's running statistics are then recomputed on
  training batches of the run's own split (``--bn-images``), since a
  supernet's statistics (or its batch statistics) describe no single path.
  The network is built with the supernet's width and depth (DARTS-like
  spaces: ``C`` and ``layers`` of the search, no auxiliary head).
* ``retrained`` -- a training run (``attnas train``): ``weights.pt`` when the
  run finished, else the network of its last ``checkpoint.pt``; the network
  is built with the run's ``space_options`` and ``network_options``.
* ``file`` -- a state dict (``weights.pt``, ``subnet.pt`` of ``attnas evolve
  --export``) or a training checkpoint given with ``--weights``.
* ``fresh`` -- no weights: the network's own initialisation under ``seed``.

:func:`export_network` writes the model and runs it against the PyTorch model
on the same random inputs (two batch sizes: the batch dimension is dynamic,
the image size is fixed to the one exported), and raises
:class:`attnas.errors.AttnasError` when the largest absolute difference
exceeds the tolerance.

* **TorchScript** is written with :func:`torch.jit.trace` (``torch.jit.script``
  cannot compile the cell DAGs, whose ``forward`` takes ``*inputs``).  A trace
  records the operations run on the example input: Python branches on tensor
  values would be frozen.  The spaces only branch on shapes (e.g. odd spatial
  sizes in ``FactorizedReduce``), which are fixed by the exported image size;
  a network whose trace disagrees with PyTorch on a second batch size is
  reported as not traceable, with the tracer's warnings.
* **ONNX** needs the optional packages ``onnx`` and ``onnxruntime``
  (``pip install 'attnas[export]'``).  The default exporter is PyTorch's
  TorchScript-based one (``torch.onnx.export(..., dynamo=False)``: seconds per
  network); ``exporter="dynamo"`` uses the ``torch.export`` exporter, which
  also needs ``onnxscript`` and is much slower on cell networks (about 40 s
  for a 3-cell DARTS network on one CPU thread).
"""
from __future__ import annotations

import inspect
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from attnas.arch import Architecture
from attnas.spaces.io import resolve_architecture
from attnas.errors import AttnasError, ConfigError

FORMATS = ("torchscript", "onnx")
ONNX_EXPORTERS = ("torchscript", "dynamo")
#: (in_channels, image_size, num_classes) of a fresh network when nothing says otherwise
DEFAULT_DIMS = (3, 32, 10)


@dataclass
class LoadedNetwork:
    """A stand-alone network ready to export, and where it came from."""

    network: nn.Module
    arch: Architecture
    weights: str                      # inherited | retrained | file | fresh
    source: str | None                # the run folder or file the weights came from
    in_channels: int
    image_size: int
    num_classes: int
    space_options: dict[str, Any] = field(default_factory=dict)
    network_options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def params(self) -> int:
        return sum(p.numel() for n, p in self.network.named_parameters() if "auxiliary" not in n)


# ---------------------------------------------------------------------------
# run folders and architectures
def _read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read '{path}': {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"'{path}' is not a JSON object")
    return d


def run_kind(run_dir: str | os.PathLike) -> str:
    """``search`` or ``train`` for a run folder (from its ``config.json``); a ConfigError otherwise."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"run folder '{run}' does not exist")
    if not (run / "config.json").is_file():
        raise ConfigError(f"'{run}' is not a run folder: it has no config.json")
    cfg = _read_json(run / "config.json")
    if "method" in cfg and "space" in cfg:
        return "search"
    if "arch" in cfg:
        return "train"
    raise ConfigError(f"'{run}/config.json' is neither a search nor a training run's config")


def _state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The network state dict in a weights file: a plain state dict, or a training
    checkpoint (``{"task": {"model": ...}}``)."""
    if isinstance(obj, dict) and isinstance(obj.get("task"), dict) and "model" in obj["task"]:
        obj = obj["task"]["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"'{path}' holds no network weights (expected a state dict such as weights.pt, "
                          "or a training run's checkpoint.pt)")
    if any(k.startswith("arch.") for k in obj) and any(k.startswith("net.") for k in obj):
        raise ConfigError(f"'{path}' is a search run's supernet checkpoint: export with --from-run RUN_DIR "
                          "to inherit its weights")
    return obj


def load_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from attnas.training.checkpoint import safe_torch_load

    p = Path(path)
    obj = safe_torch_load(p, "weights file")  # tensors and plain data only: never runs code
    return _state_dict_of(obj, p)


def _load_state(network: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:300]
        raise ConfigError(f"the weights in '{source}' do not fit the network built for this architecture "
                          f"(different space, network options or data dimensions?): {first}") from None


def dataset_dims(dataset: str, data_dir: str | None = None, image_size: int | None = None,
                 **subsets: Any) -> tuple[int, int, int]:
    """``(in_channels, image_size, num_classes)`` of a dataset (loaded, so cached data is reused)."""
    from attnas.data.datasets import load_dataset

    try:
        data = load_dataset(dataset, data_dir, image_size=image_size,
                            **{k: v for k, v in subsets.items() if v is not None})
    except AttnasError as e:
        raise ConfigError(f"cannot load dataset '{dataset}' to learn the network's input size ({e}); "
                          "pass --in-channels, --image-size and --num-classes") from None
    return data.in_channels, data.image_size, data.num_classes


def _accepts(fn, name: str) -> bool:
    params = inspect.signature(fn).parameters
    return name in params


def _supernet_network_options(space, given: dict[str, Any]) -> dict[str, Any]:
    """Network options that give the stand-alone network the supernet's layout."""
    opts = dict(given)
    for name in ("C", "layers"):
        if name not in opts and _accepts(space.build_network, name) and hasattr(space, name):
            opts[name] = getattr(space, name)
    if "auxiliary" not in opts and _accepts(space.build_network, "auxiliary"):
        opts["auxiliary"] = False
    return opts


def inherit_from_supernet(space, supernet: nn.Module, arch: Architecture, network: nn.Module) -> list[str]:
    """:func:`attnas.search.export.inherit_path` with a user-facing error: copy ``arch``'s path
    of ``supernet`` into ``network``; returns the BN keys left at identity."""
    from attnas.search.export import inherit_path

    try:
        return inherit_path(space, supernet, arch, network)
    except AttnasError as e:
        raise ConfigError(f"cannot inherit the supernet's weights for space '{arch.space}': {e}; export "
                          "retrained weights with --from-run TRAIN_RUN, or fresh ones with --fresh") from None


# ---------------------------------------------------------------------------
def load_network(arch_spec: str | None = None, *, weights: str | None = None, from_run: str | None = None,
                 fresh: bool = False, space: str | None = None, space_options: dict[str, Any] | None = None,
                 network_options: dict[str, Any] | None = None, in_channels: int | None = None,
                 image_size: int | None = None, num_classes: int | None = None,
                 bn_images: int = 256, seed: int = 0) -> LoadedNetwork:
    """The stand-alone network to export (see the module docstring for the weight sources).

    ``arch_spec`` (file, native string or run folder) may be left out when
    ``from_run`` is given (the run's ``architecture.json``); a run folder given
    as ``arch_spec`` with neither ``weights`` nor ``from_run`` supplies its
    weights too, unless ``fresh``."""
    from attnas.spaces.registry import get_space

    if weights and from_run:
        raise ConfigError("give either --weights CKPT or --from-run RUN_DIR, not both")
    if fresh and (weights or from_run):
        raise ConfigError("--fresh exports the network's initial weights: leave out --weights / --from-run")
    if arch_spec is None and from_run is None:
        raise ConfigError("no architecture given: pass --arch FILE_OR_RUN_DIR (or --from-run RUN_DIR)")
    if arch_spec is not None and from_run is None and weights is None and not fresh:
        try:
            if Path(arch_spec).is_dir():
                if (Path(arch_spec) / "subnet.pt").is_file() and not (Path(arch_spec) / "config.json").is_file():
                    weights = str(Path(arch_spec) / "subnet.pt")  # an `attnas evolve --export` folder
                else:
                    from_run = arch_spec
        except OSError:
            pass
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"weights file '{weights}' does not exist")
    kind = run_kind(from_run) if from_run is not None else None
    arch = resolve_architecture(arch_spec if arch_spec is not None else str(from_run), space)
    torch.manual_seed(seed)
    notes: list[str] = []
    dims_given = (in_channels, image_size, num_classes)

    if kind == "search":
        from attnas.search.evolution import recalibrate_bn, take_images
        from attnas.from_run import load_search_run

        loaded = load_search_run(from_run, device="cpu")
        if loaded.cfg.space != arch.space:
            raise ConfigError(f"the architecture is of space '{arch.space}' but run '{from_run}' searched "
                              f"'{loaded.cfg.space}'")
        if any(v is not None for v in dims_given):
            want = (loaded.data.in_channels, loaded.data.image_size, loaded.data.num_classes)
            if any(g is not None and g != w for g, w in zip(dims_given, want)):
                raise ConfigError(f"inherited weights fix the input to {want[0]} channels, {want[1]}x{want[1]} "
                                  f"images and {want[2]} classes (the run's data); leave out "
                                  "--in-channels/--image-size/--num-classes")
        if space_options is not None and dict(space_options) != dict(loaded.cfg.space_options):
            raise ConfigError(f"inherited weights fix the space options to the run's "
                              f"{json.dumps(loaded.cfg.space_options)}; leave out --space-options")
        sp = loaded.space
        sp.validate(arch)
        net_opts = _supernet_network_options(sp, network_options or {})
        try:
            network = sp.build_network(arch, loaded.data.num_classes, loaded.data.in_channels,
                                       loaded.data.image_size, **net_opts)
        except TypeError as e:
            raise ConfigError(f"bad network option for space '{arch.space}': {e}") from None
        identity = inherit_from_supernet(sp, loaded.model, arch, network)
        batches = take_images(loaded.task.weight_batches(0), bn_images)
        n = recalibrate_bn(network, batches) if batches else 0
        if identity:
            notes.append(f"{len(identity)} batch-norm tensors the affine-free supernet lacks start at identity")
        notes.append(f"batch-norm statistics recomputed on {n} training images of the run's split")
        return LoadedNetwork(network.eval(), arch, "inherited", str(from_run), loaded.data.in_channels,
                             loaded.data.image_size, loaded.data.num_classes, dict(loaded.cfg.space_options),
                             net_opts, notes)

    run_cfg: dict[str, Any] = {}
    state = None
    source = None
    if kind == "train":
        run = Path(from_run)
        run_cfg = _read_json(run / "config.json")
        if (run / "weights.pt").is_file():
            state, source = load_weights_file(run / "weights.pt"), str(run / "weights.pt")
        elif (run / "checkpoint.pt").is_file():
            state, source = load_weights_file(run / "checkpoint.pt"), str(run / "checkpoint.pt")
            notes.append("training not finished: weights of its last checkpoint")
        else:
            raise ConfigError(f"training run '{run}' has no weights yet (neither weights.pt nor checkpoint.pt)")
    elif weights is not None:
        state, source = load_weights_file(weights), str(weights)

    meta = arch.meta if isinstance(arch.meta, dict) else {}
    sp_opts = space_options if space_options is not None else (
        run_cfg.get("space_options") if kind == "train" else meta.get("space_options")) or {}
    net_opts = network_options if network_options is not None else (run_cfg.get("network_options") or {})
    sp = get_space(arch.space, data_dir=run_cfg.get("data_dir"), **sp_opts)
    sp.validate(arch)
    if all(v is not None for v in dims_given):
        dims = dims_given
    else:
        dataset = run_cfg.get("dataset") or meta.get("dataset")
        if dataset:
            found = dataset_dims(str(dataset), run_cfg.get("data_dir"), run_cfg.get("image_size"),
                                 train_subset=run_cfg.get("train_subset"), test_subset=run_cfg.get("test_subset"))
        else:
            found = DEFAULT_DIMS
            notes.append("input size not recorded: CIFAR-10 defaults (3 channels, 32x32, 10 classes)")
        dims = tuple(g if g is not None else f for g, f in zip(dims_given, found))
    c, s, k = (int(v) for v in dims)
    if min(c, s, k) < 1:
        raise ConfigError(f"in_channels, image_size and num_classes must be positive, got {c}, {s}, {k}")
    try:
        network = sp.build_network(arch, k, c, s, **net_opts)
    except TypeError as e:
        raise ConfigError(f"bad network option for space '{arch.space}': {e}") from None
    if state is not None:
        _load_state(network, state, source)
    label = "retrained" if kind == "train" else "file" if state is not None else "fresh"
    if label == "fresh":
        notes.append(f"fresh weights (the network's initialisation, seed {seed})")
    return LoadedNetwork(network.eval(), arch, label, source or (str(from_run) if from_run else None),
                         c, s, k, dict(sp_opts), dict(net_opts), notes)


# ---------------------------------------------------------------------------
@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    tolerance: float
    batch_sizes: tuple[int, ...]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    size_bytes: int
    tracer_warnings: list[str] = field(default_factory=list)
    exporter: str | None = None
    stochastic: bool = False   # random operations: compared under the same RNG seed

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.path), "format": self.format, "max_abs_diff": self.max_abs_diff,
                "tolerance": self.tolerance, "batch_sizes": list(self.batch_sizes),
                "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
                "size_bytes": self.size_bytes, "tracer_warnings": self.tracer_warnings,
                "exporter": self.exporter, "stochastic": self.stochastic}


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise AttnasError(f"the network returns {type(out).__name__}, not a tensor of logits")
    return out


def require_onnx(exporter: str = "torchscript"):
    """Import ``onnx`` and ``onnxruntime`` (and ``onnxscript`` for the dynamo exporter),
    or raise a one-line error naming the extra to install."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as e:
        raise ConfigError(f"ONNX export needs the packages onnx and onnxruntime ({e.name} is not installed): "
                          "pip install 'attnas[export]'") from None
    if exporter == "dynamo":
        try:
            import onnxscript  # noqa: F401
        except ImportError:
            raise ConfigError("the dynamo ONNX exporter needs onnxscript: pip install onnxscript") from None
    return onnxruntime


def _tmp_path(out: Path) -> Path:
    return out.with_name(out.name + ".tmp")


class _CapturedOutput:
    """Redirect the process's stdout and stderr file descriptors to a temporary file (the
    exporters' C++ code prints whole graphs there when they fail); ``text`` holds it after."""

    def __enter__(self):
        import sys
        import tempfile

        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, ValueError):
                pass
        self.file = tempfile.TemporaryFile(mode="w+b")
        self.saved = []
        for fd in (1, 2):
            try:
                self.saved.append((fd, os.dup(fd)))
                os.dup2(self.file.fileno(), fd)
            except OSError:
                pass
        self.text = ""
        return self

    def __exit__(self, *exc):
        import sys

        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, ValueError):
                pass
        for fd, saved in self.saved:
            os.dup2(saved, fd)
            os.close(saved)
        self.file.seek(0)
        self.text = self.file.read().decode("utf-8", "replace")
        self.file.close()
        return False


def _python_function(e: BaseException) -> str | None:
    import re

    m = re.search(r"Could not export Python function call '([^']+)'", str(e))
    return m.group(1) if m else None


def _python_function_in_trace(network: nn.Module, x: torch.Tensor) -> str | None:
    """Why an ONNX export failed, when a TorchScript trace names it (a Python autograd function)."""
    try:
        with warnings.catch_warnings(), _CapturedOutput(), torch.no_grad():
            warnings.simplefilter("ignore")
            import io

            torch.jit.save(torch.jit.trace(network, (x,), check_trace=False), io.BytesIO())
    except Exception as e:  # noqa: BLE001
        return _python_function(e)
    return None


def _first_line(e: BaseException, limit: int = 300) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    for ln in lines[1:3]:  # TorchScript interpreter errors put the reason after a header line
        if len(text) < 80:
            text += " " + ln
    return text.split("[Caused by")[0].strip()[:limit]


def export_network(network: nn.Module, in_channels: int, image_size: int, out: str | os.PathLike,
                   fmt: str, tolerance: float = 1e-4, batch_size: int | None = None,
                   seed: int = 0, exporter: str = "torchscript", opset: int = 17,
                   label: str = "") -> ExportResult:
    """Write ``network`` (eval mode) as TorchScript or ONNX to ``out`` and check the written
    model against PyTorch on random inputs; raise when the largest absolute difference
    exceeds ``tolerance * max(1, max |logit|)``.

    ``batch_size`` None: the batch dimension is dynamic (checked on batches of 2 and 3);
    an int: the model is exported for that batch size only (checked on two inputs of it),
    for networks whose operations fold the batch into a shape (NOS' per-sample dynamic
    convolution kernels)."""
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch size must be positive, got {batch_size}")
    batch_sizes = (2, 3) if batch_size is None else (batch_size, batch_size)
    dynamic = batch_size is None
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}'; expected one of {list(FORMATS)}")
    if exporter not in ONNX_EXPORTERS:
        raise ConfigError(f"unknown ONNX exporter '{exporter}'; expected one of {list(ONNX_EXPORTERS)}")
    if tolerance <= 0:
        raise ConfigError(f"tolerance must be positive, got {tolerance}")
    ort = require_onnx(exporter) if fmt == "onnx" else None
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"'{out}' is a folder: give the file to write with -o")
    if not out.parent.exists():
        raise ConfigError(f"cannot write '{out}': folder '{out.parent}' does not exist")
    network = network.eval()
    gen = torch.Generator().manual_seed(seed)
    inputs = [torch.randn(b, in_channels, image_size, image_size, generator=gen) for b in batch_sizes]
    what = f"space '{label}'" if label else "the network"

    def run_seeded(model, xs):
        """Outputs with the global RNG seeded the same before each input (random operations,
        e.g. S4's noise, then draw the same numbers in PyTorch and in TorchScript)."""
        outs_ = []
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            for i, x in enumerate(xs):
                torch.manual_seed(seed + 1000 + i)
                outs_.append(_logits(model(x)).detach())
        return outs_

    refs = run_seeded(network, inputs)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed + 7)
        stochastic = not torch.equal(_logits(network(inputs[0])), refs[0])
    if stochastic and fmt == "onnx":
        raise AttnasError(f"{what} is stochastic in eval mode (two runs on the same input differ, e.g. S4's "
                          "'noise' operation): ONNX Runtime draws its own random numbers, so the export cannot "
                          "be checked against PyTorch; export it to torchscript")
    tmp = _tmp_path(out)
    tracer_msgs: list[str] = []
    failure = None
    with warnings.catch_warnings(record=True) as caught, _CapturedOutput():
        warnings.simplefilter("always")
        try:
            if fmt == "torchscript":
                with torch.no_grad():
                    traced = torch.jit.trace(network, (inputs[0],), check_trace=False)
                torch.jit.save(traced, str(tmp))
            elif exporter == "torchscript":
                torch.onnx.export(network, (inputs[0],), str(tmp), dynamo=False, input_names=["input"],
                                  output_names=["logits"], opset_version=opset,
                                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic
                                  else None)
            else:
                torch.onnx.export(network, (inputs[0],), str(tmp), dynamo=True, input_names=["input"],
                                  output_names=["logits"], external_data=False,
                                  dynamic_shapes=({0: torch.export.Dim("batch")},) if dynamic else None)
        except AttnasError:
            raise
        except Exception as e:  # noqa: BLE001 - the exporters raise many kinds; report the reason
            failure = e
    if failure is not None:
        tmp.unlink(missing_ok=True)
        reason = f"{type(failure).__name__}: {_first_line(failure)}"
        python_fn = _python_function(failure) or (_python_function_in_trace(network, inputs[0])
                                                   if fmt == "onnx" else None)
        if python_fn:
            reason = (f"it calls the Python autograd function '{python_fn}', which tracing cannot record "
                      f"({reason})")
        elif dynamic and "unknown shape" in str(failure):
            reason += " -- export for one fixed batch size with --batch-size N"
        raise AttnasError(f"{what} cannot be exported to {fmt}: {reason}")
    for w in caught:
        if issubclass(w.category, torch.jit.TracerWarning):
            msg = " ".join(str(w.message).split())[:160]
            if msg not in tracer_msgs:
                tracer_msgs.append(msg)
    # run the written file, not the in-memory object
    diffs = []
    try:
        if fmt == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: still the loader
                loaded = torch.jit.load(str(tmp), map_location="cpu")
            with torch.no_grad():
                outs = run_seeded(loaded, inputs)
        else:
            sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            outs = [torch.from_numpy(sess.run(None, {name: x.numpy()})[0]) for x in inputs]
    except Exception as e:  # noqa: BLE001
        tmp.unlink(missing_ok=True)
        hint = (" -- the network folds the batch size into a shape; export for one fixed batch size "
                "with --batch-size N" if dynamic else "")
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        reason = (lines[-1] if lines else "")[:200]
        raise AttnasError(f"the exported {fmt} model of {what} does not run on batch sizes "
                          f"{sorted(set(batch_sizes))}: {type(e).__name__}: {reason}{hint}") from None
    for ref, got in zip(refs, outs):
        if tuple(got.shape) != tuple(ref.shape):
            tmp.unlink(missing_ok=True)
            raise AttnasError(f"the exported {fmt} model of {what} gives shape {tuple(got.shape)}, PyTorch "
                              f"{tuple(ref.shape)}: it is not valid for other batch sizes"
                              + (" (export for one fixed batch size with --batch-size N)" if dynamic else ""))
        diffs.append(float((got.float() - ref.float()).abs().max()))
    max_diff = max(diffs)
    scale = max(1.0, max(float(r.abs().max()) for r in refs))
    if not max_diff <= tolerance * scale:
        tmp.unlink(missing_ok=True)
        reason = (f"; the trace froze data-dependent control flow: {tracer_msgs[0]}" if tracer_msgs else "")
        raise AttnasError(f"the exported {fmt} model of {what} differs from PyTorch: max abs difference "
                          f"{max_diff:.3g} > tolerance {tolerance:g} x {scale:.3g}{reason}")
    os.replace(tmp, out)
    return ExportResult(out, fmt, max_diff, tolerance, tuple(sorted(set(batch_sizes))),
                        (-1 if dynamic else batch_size, in_channels, image_size, image_size), (-1 if dynamic else batch_size, int(refs[0].shape[-1])),
                        out.stat().st_size, tracer_msgs, exporter if fmt == "onnx" else None, stochastic)
