"""The CPU memory pool (attnas.ops.cpu_pool): contents kept, pages reused, memory bounded."""
from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
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
