"""Griffe extension for the documentation site: reStructuredText habits -> Markdown.

attnas's docstrings are written in a light reST flavour (Sphinx roles such as
``:class:`~attnas.spaces.base.Mixer```, ``Title::`` before literal blocks,
simple ``=====`` tables, ``>>>`` examples, underlined section titles).  MkDocs
renders docstrings as Markdown, so this extension rewrites them when griffe
loads the package -- the source files stay as they are:

* a role becomes an *optional* cross-reference: a link where the target is
  rendered somewhere on the site, plain code otherwise (never a warning);
* ``::`` at the end of a paragraph becomes ``:`` (the indented block after it is
  already a Markdown code block);
* ``>>>`` examples and simple reST tables become fenced code blocks;
* an underlined title becomes a bold line.

Loaded by ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""
from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE_RE = re.compile(r":(?:py:)?(?P<role>class|mod|func|meth|attr|data|obj|exc|const)"
                      r":`(?P<tilde>~?)(?P<target>[^`]+)`")
_TABLE_RULE_RE = re.compile(r"^\s*=+(\s+=+)+\s*$")
_LIST_RE = re.compile(r"^\s*([*+-]|\d+[.)])\s")
_FIELD_RE = re.compile(r"^([A-Za-z_][\w.]*):(\s+)(\S.*)$")
_UNDERLINE_RE = re.compile(r"^\s*([-=~^\"'`#*+])\1{2,}\s*$")


def _resolve(target: str, obj: griffe.Object, collection: Any) -> str:
    """The full path of ``target`` as written in ``obj``'s docstring (best guess)."""
    target = target.strip().rstrip("()")
    candidates = [target]
    scope: Any = obj
    while scope is not None:
        candidates.append(f"{scope.path}.{target}")
        scope = scope.parent
    for cand in candidates:
        try:
            found = collection[cand]
        except (KeyError, ValueError, AttributeError, griffe.AliasResolutionError,
                griffe.CyclicAliasError):
            continue
        return found.target_path if getattr(found, "is_alias", False) else cand
    return target


def _roles(text: str, obj: griffe.Object, collection: Any) -> str:
    def repl(m: re.Match) -> str:
        target = m["target"].strip()
        shown = target.rstrip("()").split(".")[-1] if m["tilde"] else target
        if m["role"] in ("func", "meth") and not shown.endswith("()"):
            shown += "()"
        ident = _resolve(target, obj, collection)
        return f'<autoref identifier="{ident}" optional><code>{shown}</code></autoref>'

    return _ROLE_RE.sub(repl, text)


def _blocks(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        # >>> examples (with their ... continuation and output lines) -> ```pycon
        if stripped.startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].strip())
                i += 1
            if out and out[-1].strip():
                out.append("")
            out += [indent + "```pycon", *(indent + b for b in block), indent + "```"]
            continue
        # simple reST table: three rule lines (top, under the header, bottom) -> ```text
        if _TABLE_RULE_RE.match(line):
            rules = [j for j in range(i, len(lines)) if _TABLE_RULE_RE.match(lines[j])]
            if len(rules) >= 3 and all(lines[j].strip() for j in range(i, rules[2] + 1)):
                indent = line[: len(line) - len(line.lstrip())]
                if out and out[-1].strip():
                    out.append("")
                out += [indent + "```text", *lines[i: rules[2] + 1], indent + "```"]
                i = rules[2] + 1
                continue
        # aligned "name:   text" lines (a field list) -> a bullet list
        if _FIELD_RE.match(line):
            j, items = i, []
            while j < len(lines) and lines[j].strip():
                m = _FIELD_RE.match(lines[j])
                if m:
                    items.append([f"- `{m[1]}`: {m[3]}", len(m[2]) >= 2])
                elif lines[j].startswith(" ") and items:
                    items[-1][0] += "\n  " + lines[j].strip()
                else:
                    break
                j += 1
            if len(items) >= 2 and any(aligned for _, aligned in items) and (
                    j == len(lines) or not lines[j].strip()):
                if out and out[-1].strip():
                    out.append("")
                out += [text for text, _ in items]
                i = j
                continue
        # reST definition list (a term line, its definition indented below) -> def_list
        if (stripped and not line.startswith(" ") and (not out or not out[-1].strip())
                and not _LIST_RE.match(line) and i + 1 < len(lines)
                and lines[i + 1].startswith("  ") and lines[i + 1].strip()
                and not _UNDERLINE_RE.match(lines[i + 1])):
            j = i + 1
            body = []
            while j < len(lines) and lines[j].startswith("  ") and lines[j].strip():
                body.append(lines[j].strip())
                j += 1
            out += [line, ":   " + body[0], *body[1:]]
            i = j
            continue
        # underlined title -> bold line
        if (stripped and i + 1 < len(lines) and _UNDERLINE_RE.match(lines[i + 1])
                and not _UNDERLINE_RE.match(line) and not line.startswith(" ")):
            if out and out[-1].strip():
                out.append("")
            out += [f"**{stripped}**", ""]
            i += 2
            continue
        # "Title::" before an indented literal block -> "Title:"
        if line.rstrip().endswith("::"):
            line = line.rstrip()[:-1]
            if line.strip() == ":":
                line = ""
        out.append(line)
        i += 1
    return "\n".join(out)


_CODE_SPAN_RE = re.compile(r"(`+)(?:.+?)\1")
_INTRAWORD_STAR_RE = re.compile(r"(?<=[\w)\]])\*(?=[\w(\[])")
_LT_RE = re.compile(r"<(?!/?(?:autoref|code)\b)")


def _escape_prose(text: str) -> str:
    """Outside code: ``c*h*w`` is a product, not emphasis; ``<cell>`` is text, not HTML."""
    out = []
    fence = False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fence = not fence
        if fence or line.startswith("    ") or line.lstrip().startswith("```"):
            out.append(line)
            continue
        parts, last = [], 0
        for m in _CODE_SPAN_RE.finditer(line):
            parts.append(_LT_RE.sub("&lt;", _INTRAWORD_STAR_RE.sub(r"\\*", line[last:m.start()])))
            parts.append(m.group(0))
            last = m.end()
        parts.append(_LT_RE.sub("&lt;", _INTRAWORD_STAR_RE.sub(r"\\*", line[last:])))
        out.append("".join(parts))
    return "\n".join(out)


def convert(text: str, obj: griffe.Object, collection: Any) -> str:
    """One docstring, reST habits -> Markdown."""
    return _roles(_escape_prose(_blocks(text)), obj, collection)


class RestDocstrings(griffe.Extension):
    """Rewrite every docstring of the loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        collection = loader.modules_collection
        seen: set[int] = set()

        def walk(obj: griffe.Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = convert(obj.docstring.value, obj, collection)
            for member in obj.members.values():
                if not member.is_alias:
                    walk(member)

        walk(pkg)
