"""The benchmark scripts' ``--device`` option (issue 19: every setting runnable on a GPU)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

#: arguments a script needs besides ``--device`` to get as far as checking it
REQUIRED_ARGS = {"step_compare.py": ["--old", "."], "itnas_nb201.py": ["run"]}


@pytest.mark.parametrize("script", ["search_step.py", "spos_step_cost.py", "itnas_step_cost.py",
                                    "entrannas_step_cost.py", "nos_step_cost.py", "trionet_step_cost.py",
                                    "step_compare.py", "step_profile.py", "attention_ops.py", "depthwise_ops.py",
                                    "itnas_nb201.py", "spos_macro.py", "trionet_search.py", "nos_search.py",
                                    "entrannas_search.py", "nos_effect.py", "trionet_effect.py",
                                    "trionet_ablation.py", "guided_darts.py"])
def test_benchmarks_take_a_device(script):
    """The timers and the scripts that run searches or trainings take ``--device``; a device that
    is not there is one line, exit 2, before any work."""
    bench = Path(__file__).resolve().parents[1] / "bench" / script
    if script == "search_step.py":  # a tiny run on the CPU reports its device
        out = subprocess.run([sys.executable, str(bench), "--space", "nb201", "--space-options",
                              '{"C": 4, "N": 1}', "--batch", "4", "--steps", "1", "--warmup", "0",
                              "--threads", "1", "--device", "cpu"], capture_output=True, text=True, check=True)
        assert '"device": "cpu"' in out.stdout
        row = json.loads(out.stdout.strip().splitlines()[-1])  # and what ran it: the CPU's model name
        assert isinstance(row["cpu_model"], str) and row["cpu_model"] and row["cpus"] >= 1
    if torch.cuda.is_available():
        return
    proc = subprocess.run([sys.executable, str(bench), *REQUIRED_ARGS.get(script, []), "--device", "cuda"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "attnas: error: --device cuda: this PyTorch sees no CUDA device"]


def test_machine_reads_the_cpu_model_and_falls_back(monkeypatch):
    """``machine()`` takes the model name from /proc/cpuinfo, and falls back to the platform's
    name where there is none (ARM's cpuinfo, macOS without /proc) or the line is empty."""
    import builtins
    import io

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    try:
        from _device import machine
    finally:
        sys.path.pop(0)
    real_open = builtins.open
    texts = {"x86": "processor\t: 0\nmodel name\t: Example CPU 9000 @ 3.0GHz\nflags\t: avx\n",
             "arm": "processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n", "empty": "model name\t:\n"}

    def fake(text):
        return lambda path, *a, **k: io.StringIO(text) if path == "/proc/cpuinfo" else real_open(path, *a, **k)

    monkeypatch.setattr("platform.processor", lambda: "")
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    cpu = torch.device("cpu")
    monkeypatch.setattr(builtins, "open", fake(texts["x86"]))
    assert machine(cpu)["cpu_model"] == "Example CPU 9000 @ 3.0GHz"
    for kind in ("arm", "empty"):
        monkeypatch.setattr(builtins, "open", fake(texts[kind]))
        assert machine(cpu)["cpu_model"] == "aarch64"

    def missing(path, *a, **k):
        raise FileNotFoundError(path)
    monkeypatch.setattr(builtins, "open", missing)
    out = machine(cpu)
    assert out["cpu_model"] == "aarch64" and out["cpus"] >= 1 and "gpu" not in out
