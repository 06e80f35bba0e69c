"""The report of one run folder: :func:`build_report` (the HTML and a summary) and
:func:`write_report` (the file)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnas.report.markup import check_html_path, esc, page, write_page
from attnas.report.run_data import collect_run
from attnas.report.sections import SECTIONS


@dataclass
class ReportResult:
    """What :func:`write_report` wrote."""

    path: Path
    kind: str
    sections: list[str]
    images: int
    size_bytes: int
    epochs: int
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"output": str(self.path), "kind": self.kind, "sections": self.sections, "images": self.images,
                "size_bytes": self.size_bytes, "epochs": self.epochs, "warnings": self.warnings}


def build_report(run_dir: str | os.PathLike, title: str | None = None) -> tuple[str, dict[str, Any]]:
    """The report's HTML and a summary ``{"kind", "sections", "images", "epochs", "warnings"}``."""
    d = collect_run(run_dir)
    sections = [s for make in SECTIONS for s in make(d)]
    heading = title or f"attnas {d.kind} report: {d.run.name}"
    sub = " · ".join(esc(x) for x in (d.space, d.method, d.config.get("dataset")) if x)
    doc = page(heading, sub, [(s.id, s.title, s.html) for s in sections], d.warnings)
    summary = {"kind": d.kind, "sections": [s.id for s in sections], "images": sum(s.images for s in sections),
               "epochs": len(d.metrics), "warnings": d.warnings}
    return doc, summary


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                 title: str | None = None) -> ReportResult:
    """Write the HTML report of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``)."""
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    if out is not None:  # a bad -o fails before the (slow) pictures are drawn
        check_html_path(path)
    doc, summary = build_report(run_dir, title)
    size = write_page(path, doc)
    return ReportResult(path, summary["kind"], summary["sections"], summary["images"], size,
                        summary["epochs"], summary["warnings"])
