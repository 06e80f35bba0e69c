"""``attnas report``: a self-contained HTML page per run (static checks; the headless-browser
check is ``bench/report_browser_check.py``)."""
from __future__ import annotations

import base64
import html.parser
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from attnas.cli.main import main

TINY = ["--space", "nb201", "--space-options", '{"C": 4, "N": 1}', "--dataset", "synthetic:3,8,4,64,16",
        "--batch-size", "32", "--quiet"]


class Page(html.parser.HTMLParser):
    """Tags, images, references and text of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.imgs: list[dict] = []
        self.refs: list[str] = []
        self.ids: list[str] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.rows_in: dict[str, int] = {}
        self.feed(text)
        self.close()
        assert not self.stack, f"unclosed elements: {self.stack}"

    VOID = {"meta", "img", "br", "hr", "input", "link"}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "img":
            self.imgs.append(a)
        for key in ("src", "href", "data", "action", "poster"):
            if a.get(key) is not None:
                self.refs.append(a[key])
        if tag == "section":
            self.ids.append(a.get("id", ""))
        if tag == "tr" and self.ids:
            self.rows_in[self.ids[-1]] = self.rows_in.get(self.ids[-1], 0) + 1

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)

    @property
    def all_text(self) -> str:
        return " ".join(self.text)


def decode_pngs(page: Page) -> list[tuple[int, int]]:
    sizes = []
    for img in page.imgs:
        m = re.fullmatch(r"data:image/png;base64,([A-Za-z0-9+/=]+)", img.get("src", ""))
        assert m, f"not an inline PNG: {img.get('src', '')[:50]}"
        raw = base64.b64decode(m.group(1), validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            assert im.format == "PNG"
            sizes.append(im.size)
        assert img.get("alt")
    return sizes


def cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    search, train = base / "search", base / "train"
    assert main(["search", *TINY, "--method", "itnas", "--epochs", "2", "--seed", "1", "--out", str(search)]) == 0
    assert main(["train", "--arch", str(search / "architecture.json"), "--dataset", "synthetic:3,8,4,64,16",
                 "--space-options", '{"C": 4, "N": 1}', "--epochs", "2", "--batch-size", "32", "--quiet",
                 "--out", str(train)]) == 0
    return {"search": search, "train": train}


def test_search_report_is_self_contained_with_curves_architecture_and_config(runs, tmp_path, capsys):
    out = tmp_path / "search.html"
    code, stdout, _ = cli(["report", str(runs["search"]), "-o", str(out), "--json"], capsys)
    assert code == 0
    res = json.loads(stdout.strip().splitlines()[-1])
    assert res["output"] == str(out) and res["kind"] == "search" and res["epochs"] == 2
    for sec in ("summary", "curves", "strengths", "architecture", "config", "epochs"):
        assert sec in res["sections"], sec
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<script" not in text
    page = Page(text)
    assert page.ids[:len(res["sections"])] == res["sections"]
    # every picture is an inline PNG that decodes; nothing refers to another file or a URL
    sizes = decode_pngs(page)
    assert len(sizes) == res["images"] >= 4 and all(w > 200 and h > 150 for w, h in sizes)
    assert all(r.startswith(("data:image/png;base64,", "#")) for r in page.refs)
    assert not re.search(r"https?://", text)
    arch = json.loads((runs["search"] / "architecture.json").read_text())
    words = page.all_text
    assert arch["native"] in words                                   # native string
    assert '"choices"' in words and "cell:0->1" in words              # architecture JSON
    assert "indicator-token attention" in words                      # what IT-NAS's strengths mean
    assert "resolved_method_options.weights.lr" in words and "itnas" in words  # flattened resolved config
    assert page.rows_in["epochs"] - 1 >= 2                            # one row per epoch (+ header)
    # the final-strength table marks the chosen op of every choice point
    assert text.count('class="chosen"') == len(arch["choices"])


def test_train_report_has_test_accuracy_and_no_strengths(runs, tmp_path, capsys):
    code, stdout, _ = cli(["report", str(runs["train"]), "--json"], capsys)
    assert code == 0
    res = json.loads(stdout.strip().splitlines()[-1])
    assert res["output"] == str(runs["train"] / "report.html") and res["kind"] == "train"
    assert "strengths" not in res["sections"] and "architecture" in res["sections"]
    page = Page(Path(res["output"]).read_text(encoding="utf-8"))
    decode_pngs(page)
    assert "final test_acc" in page.all_text and "parameters" in page.all_text


def test_benchmark_keys_and_unfinished_search(runs, tmp_path, capsys):
    """bench_* fields in metrics.jsonl give a benchmark section; a search without
    architecture.json / scores.json (still running) shows its last derived architecture."""
    run = tmp_path / "running"
    shutil.copytree(runs["search"], run)
    for name in ("architecture.json", "scores.json", "result.json"):
        (run / name).unlink()
    lines = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    for i, rec in enumerate(lines):
        rec.update({"bench_cifar10_test_acc": 90.0 + i, "bench_ImageNet16-120_val_acc": 40.5 + i,
                    "bench_cifar10_rank": 100 - i})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    code, stdout, _ = cli(["report", str(run), "-o", str(tmp_path / "r.html"), "--json"], capsys)
    assert code == 0
    res = json.loads(stdout.strip().splitlines()[-1])
    assert "benchmark" in res["sections"] and "architecture" in res["sections"]
    page = Page((tmp_path / "r.html").read_text(encoding="utf-8"))
    decode_pngs(page)
    words = page.all_text
    assert "ImageNet16-120" in words and "91" in words and "99" in words  # final look-up per dataset
    assert "search not finished" in words and lines[-1]["arch"] in words


@pytest.mark.parametrize("case", ["missing", "empty", "bad_output"])
def test_bad_input_is_one_line_error(tmp_path, capsys, case, runs):
    if case == "missing":
        argv = ["report", str(tmp_path / "nope")]
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        argv = ["report", str(tmp_path / "empty")]
    else:
        argv = ["report", str(runs["train"]), "-o", str(tmp_path / "no" / "dir" / "r.html")]
    code, out, err = cli(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnas: error: ")


TINY_EVOLUTION = '{"population": 4, "generations": 1, "top_k": 2, "mutations": 2, "crossovers": 2}'


@pytest.mark.parametrize("space,opts,method,meaning", [
    ("nb201", '{"C": 4, "N": 1}', "darts", "architecture weights softmax"),
    ("nb201", '{"C": 4, "N": 1}', "spos", "fraction of training passes"),
    ("darts", '{"C": 4, "layers": 3}', "entrannas-dst", "connection coefficients"),
])
def test_report_of_each_method_names_its_strengths(tmp_path, capsys, space, opts, method, meaning):
    run = tmp_path / method
    extra = ["--method-options", TINY_EVOLUTION] if method == "spos" else []
    assert main(["search", "--space", space, "--space-options", opts, "--method", method, "--dataset",
                 "synthetic:3,8,4,64,8", "--batch-size", "16", "--epochs", "1", "--quiet", *extra,
                 "--out", str(run)]) == 0
    code, stdout, _ = cli(["report", str(run), "--json"], capsys)
    assert code == 0
    res = json.loads(stdout.strip().splitlines()[-1])
    assert {"curves", "strengths", "architecture"} <= set(res["sections"])
    page = Page((run / "report.html").read_text(encoding="utf-8"))
    assert len(decode_pngs(page)) == res["images"]
    assert meaning in page.all_text
    arch = json.loads((run / "architecture.json").read_text())
    n_points = len(json.loads((run / "scores.json").read_text())["scores"])
    assert page.all_text.count(next(iter(arch["choices"]))) >= 2 and page.rows_in["strengths"] == n_points + 1
