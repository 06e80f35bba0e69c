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
