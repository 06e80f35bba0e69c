"""The CPU memory pool (attnas.ops.cpu_pool): contents kept, pages reused, memory bounded."""
from __future__ import annotations

import contextlib
import ctypes
import os
import random
import resource
import subprocess
import sys
import textwrap
import traceback
import warnings

import pytest
import torch
import torch.nn as nn

from attnas.ops import cpu_pool

pytestmark = pytest.mark.skipif(not cpu_pool.supported(), reason=f"CPU pool unavailable: {cpu_pool.LIBRARY.error}")
MiB = 1 << 20


def _filled(n_bytes: int, value: float) -> torch.Tensor:
    return torch.full((n_bytes // 4,), value)


def _intact(live: dict[float, torch.Tensor]) -> bool:
    return all(bool((t == v).all()) for v, t in live.items())


def _block(t: torch.Tensor) -> tuple[int, int]:
    """A pooled tensor's block: [start, end), whole pages."""
    page = resource.getpagesize()
    return t.data_ptr(), t.data_ptr() + -(-t.untyped_storage().nbytes() // page) * page


def _kernel_mappings(blocks: list[tuple[int, int]]) -> int:
    """The kernel mappings (``/proc/self/maps``) that hold some of these blocks' bytes."""
    count = 0
    with open("/proc/self/maps") as maps:
        for line in maps:
            lo, hi = (int(x, 16) for x in line.split(None, 1)[0].split("-"))
            count += any(a < hi and lo < b for a, b in blocks)
    return count


def test_blocks_keep_their_contents_through_reuse_and_moves() -> None:
    rng = random.Random(0)
    start = cpu_pool.stats()["in_use"]  # pooled tensors of earlier tests may still be alive
    with cpu_pool.active() as on:
        assert on and cpu_pool.stats()["installed"] == 1
        before = cpu_pool.stats()
        live: dict[float, torch.Tensor] = {}
        value = 0.0
        for _ in range(6):
            for _ in range(12):  # sizes that do not repeat: best fits split ranges, misses move pages
                value += 1.0
                live[value] = _filled(rng.randrange(1, 9) * MiB + rng.randrange(0, 4096) * 4, value)
            for v in rng.sample(sorted(live), len(live) // 2):
                del live[v]
            assert _intact(live)  # no block ever overlapped another
            s = cpu_pool.stats()
            assert s["in_use"] + s["cached"] <= s["peak"]  # never more memory than the in-use peak
        value += 1.0
        big = _filled(40 * MiB, value)  # larger than any free range: built from moved pages
        after = cpu_pool.stats()
        assert after["moved_allocations"] > before["moved_allocations"] and after["moved"] > before["moved"]
        assert after["fit"] > before["fit"]
        assert bool((big == value).all()) and _intact(live)
        small = torch.ones(100)  # under MIN_BLOCK: PyTorch's own allocator, freed through the pool's deleter
        assert cpu_pool.stats()["in_use"] == after["in_use"]
        del small
    s = cpu_pool.stats()
    assert s["installed"] == 0 and s["cached"] == 0
    assert _intact(live)  # still readable once uninstalled
    live.clear()
    del big
    assert cpu_pool.stats()["in_use"] == start


def test_a_repeated_training_step_stops_taking_new_pages_and_values_do_not_change() -> None:
    def run(pool: bool) -> tuple[list[float], list[int]]:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                            nn.Conv2d(32, 32, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        x, y = torch.randn(16, 3, 48, 48), torch.randint(0, 10, (16,))
        losses, fresh = [], []
        with cpu_pool.active() if pool else contextlib.nullcontext():
            for _ in range(4):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(net(x), y)
                loss.backward()
                opt.step()
                losses.append(loss.item())
                fresh.append(cpu_pool.stats()["fresh"])
        return losses, fresh

    with_pool, fresh = run(True)
    without, _ = run(False)
    assert with_pool == without  # bit for bit: only where memory comes from changes
    assert fresh[0] > 4 * MiB and fresh[-1] == fresh[1]  # after the first step no page is new


def test_a_forked_child_gets_its_own_copy_of_the_pool() -> None:
    with cpu_pool.active():
        parent = _filled(8 * MiB, 1.0)
        pid = os.fork()
        if pid == 0:  # the child: allocate, free and write; exit 0 when all is consistent
            ok = bool((parent == 1.0).all())
            kids = [_filled(k * MiB, float(k)) for k in range(2, 7)]
            del kids[1::2]
            parent.fill_(5.0)
            ok = ok and all(bool((t == float(k)).all()) for t, k in zip(kids, (2, 4, 6)))
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert bool((parent == 1.0).all())  # the child's writes went to its copy


def test_off_for_other_devices_and_with_the_switch(monkeypatch) -> None:
    with cpu_pool.active("meta") as on:
        assert not on and cpu_pool.stats()["installed"] == 0
    monkeypatch.setenv("ATTNAS_CPU_POOL", "0")
    with cpu_pool.active() as on:
        assert not on and cpu_pool.stats()["installed"] == 0
    monkeypatch.delenv("ATTNAS_CPU_POOL")
    with cpu_pool.active() as outer, cpu_pool.active() as inner:  # nested: one pool
        assert outer and inner
        assert cpu_pool.stats()["installed"] == 1
    assert cpu_pool.stats()["installed"] == 0


def test_without_a_compiler_the_pool_stays_off_after_one_warning(tmp_path) -> None:
    code = ("import warnings; warnings.simplefilter('always')\n"
            "from attnas.ops import cpu_pool\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    with cpu_pool.active() as on:\n"
            "        print(on, len(w), str(w[0].message) if w else '')\n")
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "ATTNAS_KERNEL_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.startswith("False 1 attnas: the CPU memory pool unavailable"), out


def test_search_runs_inside_the_pool_and_leaves_it_uninstalled(tmp_path, monkeypatch) -> None:
    from attnas import api
    from attnas.config import SearchConfig

    seen = []
    inner = api._search_locked

    def spy(*args, **kwargs):
        seen.append(cpu_pool.stats()["installed"])
        return inner(*args, **kwargs)

    monkeypatch.setattr(api, "_search_locked", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api.search(SearchConfig(space="nb201", method="random", dataset="digits", epochs=1, batch_size=64,
                                train_subset=256, test_subset=64, space_options={"C": 4, "N": 1},
                                out=str(tmp_path / "run"), device="cpu"), progress=False)
    assert seen == [1] and cpu_pool.stats()["installed"] == 0


def test_too_many_mappings_return_the_free_memory_and_keep_contents() -> None:
    """Moving pages splits mappings; past the limit (Linux allows 65,530 per process) the pool
    unmaps its free memory instead of growing the count further."""
    lib = cpu_pool.LIBRARY.get()
    before = cpu_pool.stats()
    assert lib.attnas_pool_install(cpu_pool.MIN_BLOCK, 24) == 1  # a limit small enough to reach
    try:
        live, value = {}, 0.0
        for round_ in range(8):
            for k in range(6):  # fragment the free memory, then ask for more than any free range
                value += 1.0
                live[value] = _filled((k % 3 + 1) * MiB, value)
            for v in sorted(live)[::2]:
                del live[v]
            value += 1.0
            live[value] = _filled((10 + round_) * MiB, value)
            assert _intact(live)
        s = cpu_pool.stats()
        assert s["moved_allocations"] > before["moved_allocations"] and s["releases"] > before["releases"]
    finally:
        cpu_pool.uninstall()
    assert _intact(live)


def test_blocks_are_whole_pages_of_the_kernels_size() -> None:
    """16 KiB and 64 KiB pages exist (arm64, ppc64le): blocks are rounded to the real one."""
    page = resource.getpagesize()
    assert page == os.sysconf("SC_PAGE_SIZE")
    with cpu_pool.active():
        assert cpu_pool.stats()["page_size"] == page
        for n in (MiB + 4, 3 * MiB + page // 2, 2 * MiB + page):
            before = cpu_pool.stats()["in_use"]
            t = torch.empty(n, dtype=torch.uint8)
            assert t.data_ptr() % page == 0
            assert cpu_pool.stats()["in_use"] - before == -(-n // page) * page
            del t


def test_moves_never_fail_and_the_mappings_are_all_known() -> None:
    """Every move stays inside one kernel mapping (Linux before 6.17 refuses anything else; a
    failure would only show as fresh pages), and the pool knows every place a mapping of its
    memory begins -- checked against /proc/self/maps -- through moves and a release."""
    rng = random.Random(1)
    page = resource.getpagesize()
    with cpu_pool.active():
        before = cpu_pool.stats()
        live: dict[float, torch.Tensor] = {}
        value = 0.0
        for round_ in range(6):
            for _ in range(8):
                value += 1.0
                live[value] = _filled(rng.randrange(1, 7) * MiB + rng.randrange(0, 3) * page, value)
            for v in rng.sample(sorted(live), len(live) // 2):
                del live[v]
            if round_ == 3:
                cpu_pool.release()  # blocks cut from a mapping's middle lose the free bytes before them
            for _ in range(6):  # fits: blocks cut out of free ranges, some not at a mapping's start
                value += 1.0
                live[value] = _filled(MiB + rng.randrange(0, 3) * page, value)
            value += 1.0
            live[value] = _filled((12 + 4 * round_) * MiB, value)  # more than any free range: moves
            assert cpu_pool.missing_cuts() == 0
            assert cpu_pool.stats()["mappings"] >= _kernel_mappings([_block(t) for t in live.values()])
            assert _intact(live)
        after = cpu_pool.stats()
        assert after["moved_allocations"] > before["moved_allocations"] and after["moved"] > before["moved"]
        assert after["failed_moves"] == before["failed_moves"] == 0


def test_mappings_bound_the_kernels_after_a_release() -> None:
    """Blocks cut out of the middle of a mapping keep mappings of their own once the free bytes
    around them are unmapped: "mappings" counts them."""
    with cpu_pool.active():
        cpu_pool.release()
        first = _filled(8 * MiB, 0.0)  # one fresh mapping, free again at once ...
        del first
        blocks = [_filled(k * MiB, float(k)) for k in (1, 2, 1, 2)]  # ... cut into four blocks
        del blocks[2], blocks[0]
        cpu_pool.release()  # the 2 MiB blocks are left, each inside the old mapping, both after its start
        assert cpu_pool.stats()["cached"] == 0
        held = _kernel_mappings([_block(t) for t in blocks])
        assert held >= 2 and cpu_pool.stats()["mappings"] >= held
        assert cpu_pool.missing_cuts() == 0
        assert all(bool((t == 2.0).all()) for t in blocks)


def test_a_failed_move_is_counted_and_its_block_mapped_fresh() -> None:
    """A free range whose first page is gone (unmapped behind the pool's back here; on Linux
    before 6.17 a mapping boundary the pool missed does the same) cannot be moved: the stats
    say so, and the block gets fresh pages.  In a child: the pool is damaged on purpose."""
    page = resource.getpagesize()
    libc = ctypes.CDLL(None)
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            assert cpu_pool.install()
            cpu_pool.release()
            victim = _filled(8 * MiB, 1.0)  # mapped fresh: a mapping of its own
            addr = victim.data_ptr()
            del victim
            assert cpu_pool.missing_cuts() == 0
            assert libc.munmap(addr, page) == 0
            assert cpu_pool.missing_cuts() == 1  # the check sees the mapping now beginning a page in
            before = cpu_pool.stats()
            big = _filled(16 * MiB, 2.0)  # more than the free range: a move, which fails at once
            after = cpu_pool.stats()
            assert after["failed_moves"] == before["failed_moves"] + 1
            assert after["moved"] == before["moved"] and after["fresh"] == before["fresh"] + 16 * MiB
            assert after["moved_allocations"] == before["moved_allocations"] + 1
            assert big.min().item() == big.max().item() == 2.0  # no large temporary: it would get the broken range
            code = 0
        except BaseException:  # noqa: BLE001 -- the child reports through its exit status
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_installs_are_holds_and_only_the_last_uninstalls() -> None:
    with cpu_pool.active() as outer:
        with cpu_pool.active() as inner:
            assert outer and inner and cpu_pool.stats()["holders"] == 2
        assert cpu_pool.stats()["installed"] == 1  # the inner block left the outer one's pool
        assert cpu_pool.install()  # another user while active: one more hold ...
        assert not cpu_pool.uninstall()  # ... whose uninstall drops only that hold
        assert cpu_pool.stats()["installed"] == 1 and cpu_pool.stats()["holders"] == 1
    assert cpu_pool.stats()["installed"] == 0
    assert cpu_pool.install()  # a plain install with a block inside it
    try:
        with cpu_pool.active() as on:
            assert on
        assert cpu_pool.stats()["installed"] == 1
    finally:
        assert cpu_pool.uninstall()
    a, b = cpu_pool.active(), cpu_pool.active()  # concurrent blocks, left in the order entered
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    assert cpu_pool.stats()["installed"] == 1
    b.__exit__(None, None, None)
    assert cpu_pool.stats()["installed"] == 0
    assert not cpu_pool.uninstall() and cpu_pool.stats()["holders"] == 0  # no hold to drop: no effect


def test_uninstall_puts_the_allocator_back_and_install_works_again() -> None:
    with cpu_pool.active():
        base = cpu_pool.stats()["in_use"]
        t = torch.empty(4 * MiB, dtype=torch.uint8)
        assert cpu_pool.stats()["in_use"] == base + 4 * MiB
        del t
    base = cpu_pool.stats()["in_use"]
    t = torch.empty(4 * MiB, dtype=torch.uint8)  # PyTorch's allocator again
    assert cpu_pool.stats()["in_use"] == base
    del t
    assert cpu_pool.install()
    try:
        t = torch.empty(4 * MiB, dtype=torch.uint8)
        assert cpu_pool.stats()["in_use"] == base + 4 * MiB
        del t
    finally:
        assert cpu_pool.uninstall()


def test_uninstall_leaves_the_allocator_priority_as_it_was() -> None:
    """c10::SetCPUAllocator ignores a priority below the last one set: after the pool, a
    default-priority SetCPUAllocator (another library's) must still take effect.  In a fresh
    process, where nothing has raised the priority yet."""
    lib = os.path.join(os.path.dirname(torch.__file__), "lib", "libc10.so")
    names = ("_ZN3c1015GetCPUAllocatorEv", "_ZN3c1015SetCPUAllocatorEPNS_9AllocatorEh",
             "_ZN3c1028GetDefaultMobileCPUAllocatorEv")
    try:
        for name in names:
            getattr(ctypes.CDLL(lib), name)
    except (OSError, AttributeError) as exc:
        pytest.skip(f"c10's allocator registry not reachable with ctypes: {exc}")
    code = textwrap.dedent(f"""
        import ctypes
        import torch
        from attnas.ops import cpu_pool
        c10 = ctypes.CDLL({lib!r})
        get, set_, other = (getattr(c10, name) for name in {names!r})
        get.restype = other.restype = ctypes.c_void_p
        set_.argtypes = [ctypes.c_void_p, ctypes.c_uint8]

        def takes():  # a default-priority SetCPUAllocator takes effect (and is undone)
            before = get()
            set_(other(), 0)
            took = get() == other()
            set_(before, 0)
            return took and get() == before

        first = get()
        assert first != other() and takes()
        for _ in range(2):
            assert cpu_pool.install() and get() != first
            assert cpu_pool.uninstall() and get() == first
            assert takes()
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr[-2000:]
