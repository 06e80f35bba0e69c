"""Build and load the native libraries of :mod:`attnas.ops` (local/axial attention, depthwise
convolution, the CPU memory pool).

A library's source is compiled on first use into a per-user cache directory
(``$ATTNAS_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/attnas/kernels``, else
``~/.cache/attnas/kernels``), keyed by the source, the command line and the CPU, and loaded with
:mod:`ctypes` (a second or two once; later processes load the cached library).  Without a
compiler, on a failed build, or with the library's switch variable set to ``0``, the library is
unavailable and its users fall back to PyTorch (one warning says why).

* C kernels (``language="c"``): the system C compiler (``$CC``, else ``cc``), ``-O3
  -march=native`` then ``$ATTNAS_KERNEL_CFLAGS`` (e.g. ``-mno-avx512f``), OpenMP when available.  Why C through ``ctypes`` rather than a PyTorch C++
  extension: no build step at install time, no dependency on PyTorch's headers or a matching
  compiler ABI, and a pure-Python fallback that is always there.  CPU tensors of dtype float32 /
  float64 only (:func:`supports`).
* The one C++ library (``language="c++"``, :mod:`attnas.ops.cpu_pool`): it implements PyTorch's
  allocator interface, so it needs the headers PyTorch's wheels ship (``torch/include``), the
  C++ compiler (``$CXX``, else ``c++``) with PyTorch's C++ ABI, and links ``libc10``; still
  loaded with :mod:`ctypes` through a C interface.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable

import torch

#: the dtypes the kernels are generated for: C type and function-name suffix
DTYPES = {torch.float32: ("float", "f32"), torch.float64: ("double", "f64")}


def instantiate(template: str, prelude: str = "") -> str:
    """``prelude`` plus one copy of ``template`` per dtype: ``T`` the C type, ``TSIZE`` its size
    in bytes (for ``#if``), ``EXP`` its exp, and every ``_S(`` in a function name replaced by the
    dtype's suffix (``_f32(``, ``_f64(``)."""
    parts = [prelude]
    for (dtype, (ctype, suffix)), exp in zip(DTYPES.items(), ("expf", "exp")):
        parts.append(f"#define T {ctype}\n#define TSIZE {dtype.itemsize}\n#define EXP {exp}\n"
                     + template.replace("_S(", f"_{suffix}(") + "#undef T\n#undef TSIZE\n#undef EXP\n")
    return "".join(parts)


def supports(*tensors: torch.Tensor) -> bool:
    """The kernels handle these tensors: CPU, one float32/float64 dtype."""
    dtype = tensors[0].dtype
    return dtype in DTYPES and all(t.device.type == "cpu" and t.dtype == dtype for t in tensors)


def capturing_graph() -> bool:
    """True while TorchScript tracing, ONNX export or ``torch.compile`` records the forward:
    operators with an eager-only fast path (a C kernel, a fused autograd function) then use
    plain, portable tensor operations."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def cache_dir() -> Path:
    if os.environ.get("ATTNAS_KERNEL_CACHE"):
        return Path(os.environ["ATTNAS_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "attnas" / "kernels"


def _cpu_tag() -> str:
    try:  # -march=native: a library built on one CPU model must not load on another
        info = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({l for l in info if l.startswith(("model name", "flags"))}))
    except OSError:
        return platform.processor()


class CLibrary:
    """One lazily built C library: ``name`` (the cached file's prefix), its ``source``, a
    ``declare(lib)`` that sets the functions' ``argtypes``, and ``switch``, the environment
    variable that disables it when set to ``0``."""

    def __init__(self, name: str, source: Callable[[], str], declare: Callable[[ctypes.CDLL], None],
                 switch: str, what: str, language: str = "c") -> None:
        self.name, self.source, self.declare, self.switch, self.what = name, source, declare, switch, what
        self.language = language
        self._lock = threading.Lock()
        self._lib: ctypes.CDLL | None = None
        self._tried = False
        self.error: str | None = None

    def _variants(self) -> tuple[str, list[tuple[list[str], list[str]]]]:
        """The compiler, then (flags, trailing arguments) per build variant, the first that builds wins."""
        if self.language == "c++":
            cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
            if cxx is None:
                raise RuntimeError("no C++ compiler found (set $CXX)")
            root = Path(torch.__file__).parent
            abi = int(torch.compiled_with_cxx11_abi())
            flags = ["-O2", "-fPIC", "-shared", "-std=c++17", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
                     "-I", str(root / "include"), f"-DATTNAS_TORCH={torch.__version__}"]
            return cxx, [(flags, ["-L", str(root / "lib"), "-lc10", f"-Wl,-rpath,{root / 'lib'}"])]
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if cc is None:
            raise RuntimeError("no C compiler found (set $CC)")
        # $ATTNAS_KERNEL_CFLAGS after the defaults (a later -march wins): builds for other CPUs, tests
        flags = ["-O3", "-march=native", "-fPIC", "-shared", "-std=gnu99", "-fno-math-errno",
                 *shlex.split(os.environ.get("ATTNAS_KERNEL_CFLAGS", ""))]
        # OpenMP threads and libmvec's vector exp, then without them
        return cc, [(flags + extra, libs + ["-lm"]) for extra, libs in
                    ((["-fopenmp", "-DATTNAS_MVEC"], ["-lmvec"]), (["-fopenmp"], []), ([], []))]

    def build(self) -> ctypes.CDLL:
        """Compile (or load from the cache) and declare; raises on failure."""
        compiler, variants = self._variants()
        src = self.source()
        suffix = ".cpp" if self.language == "c++" else ".c"
        errors = []
        for flags, libs in variants:
            key = hashlib.sha256("\0".join([src, compiler, *flags, *libs, _cpu_tag(), sys.platform]).encode())
            path = cache_dir() / f"{self.name}_{key.hexdigest()[:20]}.so"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                    src_file, so_file = Path(tmp) / f"kernel{suffix}", Path(tmp) / "kernel.so"
                    src_file.write_text(src)
                    proc = subprocess.run([compiler, *flags, str(src_file), "-o", str(so_file), *libs],
                                          capture_output=True, text=True, check=False)
                    if proc.returncode:
                        errors.append(proc.stderr.strip()[-1000:])
                        continue
                    os.replace(so_file, path)  # atomic: concurrent processes see a whole library or none
            lib = ctypes.CDLL(str(path))
            self.declare(lib)
            return lib
        raise RuntimeError(f"{compiler} failed: {errors[-1]}")

    def get(self) -> ctypes.CDLL | None:
        """The library, built on first use; None (after one warning) when it cannot be."""
        if self._tried:
            return self._lib
        with self._lock:
            if not self._tried:
                try:
                    self._lib = self.build()
                except Exception as exc:  # noqa: BLE001 -- any failure means: use the PyTorch implementation
                    self.error = f"{type(exc).__name__}: {exc}"
                    warnings.warn(f"attnas: {self.what} unavailable ({self.error}); "
                                  "using the slower PyTorch implementation", RuntimeWarning, stacklevel=3)
                self._tried = True
        return self._lib

    def loaded(self) -> ctypes.CDLL | None:
        """The library if it was built or loaded already (never builds it)."""
        return self._lib

    def available(self) -> bool:
        """True when enabled (the switch variable unset or not ``0``) and built."""
        return os.environ.get(self.switch, "1") != "0" and self.get() is not None
