"""A memory pool for large CPU tensors: the CPU counterpart of PyTorch's CUDA caching allocator.

Why: on CPU, PyTorch allocates every tensor with glibc's ``malloc``, which hands a block of more
than 32 MB straight back to the kernel when it is freed.  A training step at ImageNet scale
allocates and frees many 50-300 MB maps (the SPOS supernet at 224x224, batch 64), so each new
map takes page faults on all its pages and the kernel zeroes them again: 1.3-2 million faults
and 1-2 s per step on the project's 2-core machine (``docs/benchmarks.md``, "Speed
against the peers").  Telling glibc to keep freed memory (``MALLOC_MMAP_MAX_=0``) removes the
faults but lets its heap fragment: 1.6x the memory.

What (:file:`cpu_pool.cpp`, C++ because it implements PyTorch's ``c10::Allocator``): tensors of
``min_block`` bytes (1 MiB) and more are mapped with ``mmap`` and, when freed, kept with their
pages.  A request takes the best-fitting free range; when none is large enough, the free ranges'
pages are *moved* (``mremap``, no zeroing, no faults) into a new address range, and pages are
mapped fresh only for what is still missing.  So the pool never holds more memory than the
largest in-use total it has seen -- the peak memory of a run does not grow -- and a repeated
step stops faulting after its first pass.  Smaller tensors go to PyTorch's allocator as before.
Values are unaffected (only where memory comes from changes).

Where: :func:`active` wraps :func:`attnas.api.search` and :func:`attnas.api.train` on CPU
devices; ``ATTNAS_CPU_POOL=0`` turns it off, and without a C++ compiler or PyTorch's headers it
stays off after one warning.  Freed memory stays with the process while the pool is installed
(as on CUDA); :func:`release` returns it.  Installs are counted holds: :func:`install` takes
one, :func:`uninstall` drops one, and the last to go puts the previous allocator back and
releases the memory, so nested and concurrent users (:func:`active` is one) share one pool and
none removes it from under another.  Tensors in the pool are not reported to
``torch.profiler``'s memory profile.  Linux only (``mremap``).
"""
from __future__ import annotations

import contextlib
import ctypes
import sys
from pathlib import Path
from typing import Iterator

import torch

from attnas.ops.ckernel import CLibrary

#: tensors of this many bytes and more are pooled (smaller ones stay with PyTorch's allocator)
MIN_BLOCK = 1 << 20
#: the pool unmaps its free memory when it holds this many kernel mappings (Linux allows 65530)
MAX_MAPPINGS = 16384
#: the order of ``attnas_pool_stats``'s values
STATS = ("in_use", "cached", "peak", "fit", "moved_allocations", "fresh", "moved", "releases",
         "mappings", "installed", "holders", "failed_moves", "page_size")


def _declare(lib: ctypes.CDLL) -> None:
    lib.attnas_pool_install.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    lib.attnas_pool_install.restype = ctypes.c_int
    lib.attnas_pool_uninstall.restype = ctypes.c_int
    lib.attnas_pool_stats.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.c_size_t]
    lib.attnas_pool_missing_cuts.restype = ctypes.c_long


LIBRARY = CLibrary("cpu_pool", lambda: Path(__file__).with_suffix(".cpp").read_text(), _declare,
                   "ATTNAS_CPU_POOL", "the CPU memory pool", language="c++")


def supported() -> bool:
    """Linux, enabled (``ATTNAS_CPU_POOL`` unset or not ``0``) and built."""
    return sys.platform.startswith("linux") and LIBRARY.available()


def install() -> bool:
    """Take a hold on the pool as PyTorch's CPU allocator (process-wide); True when the pool is
    installed and this call holds it -- whether it installed the pool or it already was -- and
    the caller then owes one :func:`uninstall`; False (no hold) when it is unavailable.  The
    first hold sets the pool's limits."""
    if not supported():
        return False
    return LIBRARY.get().attnas_pool_install(MIN_BLOCK, MAX_MAPPINGS) >= 0


def uninstall() -> bool:
    """Drop a hold taken by :func:`install`; the last one puts the previous allocator back (at
    its priority: a later ``SetCPUAllocator`` works as before) and unmaps the pool's free
    memory.  True when this call uninstalled the pool; False while other holds remain or when
    there was no hold."""
    lib = LIBRARY.loaded()
    return lib is not None and lib.attnas_pool_uninstall() == 1


def release() -> None:
    """Unmap the pool's free memory (the next large tensors fault their pages in again)."""
    if (lib := LIBRARY.loaded()) is not None:
        lib.attnas_pool_release()


def reset_peak() -> None:
    """Restart the in-use peak of :func:`stats` from the in-use total."""
    if (lib := LIBRARY.loaded()) is not None:
        lib.attnas_pool_reset_peak()


def stats() -> dict[str, int]:
    """Bytes ``in_use`` / ``cached`` (free, kept) / ``peak`` (in use, since :func:`reset_peak`),
    allocations served by one free range (``fit``) or by moving pages (``moved_allocations``),
    bytes mapped ``fresh`` and ``moved``, ``releases`` of all free memory, ``mappings`` (the
    addresses where a kernel mapping holding the pool's memory may begin: an upper bound on
    their number, at all times), ``installed`` (0/1), ``holders`` (:func:`install` holds),
    ``failed_moves`` (``mremap`` calls that failed, their blocks finished with fresh pages: 0
    unless the pool's bookkeeping slipped), ``page_size`` (the kernel's, what blocks are rounded
    to); all zero when the pool never loaded."""
    values = (ctypes.c_uint64 * len(STATS))()
    if (lib := LIBRARY.loaded()) is not None:
        lib.attnas_pool_stats(values, len(STATS))
    return dict(zip(STATS, (int(v) for v in values)))


def missing_cuts() -> int:
    """A check of the pool's bookkeeping (tests): the kernel mappings holding its memory, as
    ``/proc/self/maps`` lists them, that begin where the pool does not know one may -- where a
    move could cross a mapping boundary.  0 when all is well (or the pool never loaded); -1 when
    the maps cannot be read."""
    lib = LIBRARY.loaded()
    return 0 if lib is None else int(lib.attnas_pool_missing_cuts())


@contextlib.contextmanager
def active(device: torch.device | str = "cpu") -> Iterator[bool]:
    """The pool held (:func:`install`) for the block when ``device`` is a CPU (yields whether it
    is); the hold is dropped on the way out, so the last holder -- this block or another, nested,
    concurrent or a plain :func:`install` -- uninstalls the pool and returns its memory."""
    if torch.device(device).type != "cpu":
        yield False
        return
    on = install()
    try:
        yield on
    finally:
        if on:
            uninstall()
