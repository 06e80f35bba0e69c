"""HTML pieces of the run report (and of the sweep leaderboard page): escaping, number
formatting, tables, inline pictures, the stylesheet and the page around the sections."""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
from pathlib import Path
from typing import Any

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3b57;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px 0;font-size:22px} header p{margin:0;opacity:.85;font-size:13px}
nav{padding:8px 28px;background:#e9eef3;font-size:13px} nav a{margin-right:14px;color:#1f3b57}
main{padding:8px 28px 40px 28px;max-width:1400px}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px 18px;margin:16px 0}
h2{font-size:18px;margin:4px 0 10px 0;color:#1f3b57}
p.note{color:#555;font-size:13px;margin:4px 0 10px 0}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border:1px solid #d5d5d5;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f6} td.num{text-align:right}
table.kv td:first-child{font-weight:600;white-space:nowrap}
.chosen{background:#fde7d9;font-weight:700}
img{max-width:100%;height:auto;display:block;margin:8px 0;border:1px solid #eee}
pre{background:#f5f5f5;border:1px solid #e2e2e2;padding:8px;overflow-x:auto;font-size:12px;white-space:pre-wrap;word-break:break-all}
.scroll{overflow-x:auto}
"""


def esc(v: Any) -> str:
    """``v`` as text escaped for HTML (quotes included)."""
    return html.escape(str(v), quote=True)


def fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.4e}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, default=str)
    return str(v)


def table(headers: list[str], rows: list[list[Any]], cls: str = "", raw_cols: tuple[int, ...] = ()) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for r in rows:
        cells = "".join(f"<td>{c if i in raw_cols else esc(fmt(c))}</td>" for i, c in enumerate(r))
        body.append(f"<tr>{cells}</tr>")
    return (f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>' + "".join(body)
            + "</tbody></table>")


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def compact_json(obj: Any, indent: int = 0) -> str:
    """Indented JSON with lists of scalars kept on one line."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f'{pad}  {json.dumps(str(k))}: {compact_json(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, list):
        if all(not isinstance(v, (dict, list)) for v in obj):
            return "[" + ", ".join(json.dumps(round(v, 6) if isinstance(v, float) else v, default=str)
                                   for v in obj) + "]"
        return "[\n" + ",\n".join(f"{pad}  {compact_json(v, indent + 1)}" for v in obj) + f"\n{pad}]"
    return json.dumps(obj, default=str)


def flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted.key, value)`` of every leaf of a nested dict."""
    out: list[tuple[str, Any]] = []
    if isinstance(d, dict) and d:
        for k, v in d.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        out.append((prefix, d))
    return out


def page(heading: str, subtitle: str, sections: list[tuple[str, str, str]], warnings: list[str]) -> str:
    """The whole HTML document: header, a link per section, the warnings, the sections
    (``(id, title, html)``)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{sid}">{esc(t)}</a>' for sid, t, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{esc(t)}</h2>{h}</section>' for sid, t, h in sections)
    if warnings:
        body = ('<section id="warnings"><h2>Warnings</h2><ul>'
                + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul></section>" + body)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(heading)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(heading)}</h1><p>{subtitle} · generated {esc(stamp)} by attnas report</p></header>"
            f"<nav>{nav}</nav><main>{body}</main></body></html>\n")


def check_html_path(path: Path) -> None:
    """A page can be written to ``path``: not a folder, its folder exists (checked before the
    slow pictures are drawn)."""
    from attnas.errors import ConfigError

    if path.is_dir():
        raise ConfigError(f"'{path}' is a folder: give the HTML file to write with -o")
    if not path.parent.exists():
        raise ConfigError(f"cannot write '{path}': folder '{path.parent}' does not exist")


def write_page(path: Path, doc: str) -> int:
    """Write the HTML ``doc`` to ``path`` atomically; its size in bytes."""
    from attnas.errors import ConfigError

    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(doc, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise ConfigError(f"cannot write '{path}': {e}") from None
    return path.stat().st_size
