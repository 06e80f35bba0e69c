"""The documentation site: `mkdocs build --strict` passes, and every space and method has its page.

The build needs the ``docs`` extra (``make docs`` installs it); without mkdocs the build test
is skipped.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    warnings = [line for line in log.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert not warnings, "\n".join(warnings)
    # the pages are there and mkdocstrings rendered the docstrings into them
    for page, needle in [("index.html", "attnas"),
                         ("guide/index.html", "Stop and resume"),
                         ("methods/itnas/index.html", "ITNASPreset"),
                         ("methods/tnasp/index.html", "TNASPConfig"),
                         ("spaces/index.html", "NB201Space"),
                         ("benchmarks/index.html", "benchmarks"),
                         ("design/index.html", "design"),
                         ("reference/api/index.html", "resume_search"),
                         ("reference/engine/index.html", "Engine")]:
        text = (site / page).read_text(encoding="utf-8")
        assert needle in text, f"{page} lacks {needle!r}"
    api = (site / "reference/spaces_base/index.html").read_text(encoding="utf-8")
    assert ":class:" not in api and ":meth:" not in api, "reST roles leaked into the rendered docstrings"


def test_every_space_and_method_is_documented():
    from attnas.presets import PRESETS
    from attnas.spaces.registry import space_names
    from attnas.strategies.base import strategy_names

    spaces = (DOCS / "spaces.md").read_text(encoding="utf-8")
    missing = [n for n in space_names() if f"`{n}`" not in spaces]
    assert not missing, f"spaces without an entry in docs/spaces.md: {missing}"
    methods = (DOCS / "methods" / "index.md").read_text(encoding="utf-8")
    missing = [n for n in strategy_names() if f"`{n}`" not in methods]
    assert not missing, f"methods without an entry in docs/methods/index.md: {missing}"
    pages = "".join(p.read_text(encoding="utf-8") for p in (DOCS / "methods").glob("*.md"))
    missing = sorted({type(p).__name__ for p in PRESETS.values()} - set(re.findall(r"attnas\.presets\.(\w+)", pages)))
    assert not missing, f"presets not rendered on any method page: {missing}"
