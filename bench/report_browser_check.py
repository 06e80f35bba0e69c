"""Check ``attnas report`` pages in a real headless browser (Chromium).

For each run folder (given as arguments, or tiny runs made here: DARTS,
IT-NAS, SPOS on NAS-Bench-201, EnTranNAS-DST on the DARTS space, a
retraining, and -- when the NAS-Bench-201 tables are found -- a DARTS search
with benchmark look-ups), the report is written and checked:

* statically: the HTML parses (``html.parser``), every ``<img>`` is a
  ``data:image/png;base64`` URI that decodes as a PNG (Pillow), and no
  element refers to an external file or URL (``src``/``href`` other than
  ``data:`` or ``#anchor``);
* in Chromium (``--headless``, network blocked): a copy of the page with a
  probe script appended is loaded with ``--dump-dom``; the probe writes into
  the title how many images the browser decoded (``naturalWidth > 0``) and
  the page height; every image must have decoded;
* a screenshot (PNG) of the page must not be blank: at least 3% non-white
  pixels and more than 50 distinct colours; a PDF print must be written.

Usage::

    .venv/bin/python bench/report_browser_check.py [RUN_DIR ...] [--out DIR] [--data-dir DIR]

Results: one JSON object per report on stdout and in
``bench/results/report_browser_check.jsonl``; screenshots and PDFs in
``--out`` (default: a temporary folder, kept).  Exit status 1 when a check
fails, 2 when no Chromium is found.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import html.parser
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
TINY_NB201 = ["--space", "nb201", "--space-options", '{"C": 4, "N": 1}', "--dataset", "synthetic:3,8,4,128,32",
              "--batch-size", "32", "--quiet", "--epochs", "3"]
TINY_DARTS = ["--space", "darts", "--space-options", '{"C": 4, "layers": 3}', "--dataset",
              "synthetic:3,8,4,64,16", "--batch-size", "32", "--quiet", "--epochs", "2"]
PROBE = ("<script>window.addEventListener('load',function(){var im=Array.prototype.slice.call(document.images);"
         "var ok=im.filter(function(i){return i.complete&&i.naturalWidth>0;});"
         "document.title='IMGCHECK '+im.length+' '+ok.length+' '+document.documentElement.scrollHeight;});"
         "</script>")


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def attnas(*argv: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([PY, "-m", "attnas.cli.main", *argv, "--json"], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"attnas {' '.join(argv)} failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_runs(work: Path, data_dir: str | None) -> list[Path]:
    runs = []
    for method in ("darts", "itnas", "spos"):
        out = work / f"nb201-{method}"
        attnas("search", *TINY_NB201, "--method", method, "--out", str(out))
        runs.append(out)
    out = work / "darts-entrannas-dst"
    attnas("search", *TINY_DARTS, "--method", "entrannas-dst", "--out", str(out))
    runs.append(out)
    out = work / "nb201-train"
    attnas("train", "--arch", str(runs[1] / "architecture.json"), "--dataset", "synthetic:3,8,4,64,16",
           "--space-options", '{"C": 4, "N": 1}', "--epochs", "3", "--batch-size", "32", "--quiet",
           "--out", str(out))
    runs.append(out)
    if data_dir and (Path(data_dir) / "nasbench201" / "nasbench201_cifar10.json").is_file():
        out = work / "nb201-darts-bench"
        attnas("search", *TINY_NB201, "--method", "darts", "--data-dir", data_dir, "--out", str(out))
        runs.append(out)
    return runs


class _Collector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.imgs: list[str] = []
        self.refs: list[tuple[str, str, str]] = []
        self.tags = 0

    def handle_starttag(self, tag, attrs):
        self.tags += 1
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        for key in ("src", "href", "data", "poster", "action"):
            if a.get(key) is not None:
                self.refs.append((tag, key, a[key]))


def static_check(path: Path) -> dict:
    from PIL import Image

    text = path.read_text(encoding="utf-8")
    p = _Collector()
    p.feed(text)
    p.close()
    sizes = []
    for src in p.imgs:
        m = re.fullmatch(r"data:image/png;base64,([A-Za-z0-9+/=]+)", src)
        assert m, f"image is not an inline PNG: {src[:60]}"
        raw = base64.b64decode(m.group(1), validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n", "image data is not a PNG"
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            assert im.format == "PNG"
            sizes.append(im.size)
    external = [r for r in p.refs if not (r[2].startswith("data:") or r[2].startswith("#"))]
    assert not external, f"external references: {external[:3]}"
    assert not re.search(r"url\((?!['\"]?data:)", text), "CSS refers to an external url()"
    return {"tags": p.tags, "images": len(p.imgs), "image_sizes": sizes, "bytes": len(text.encode())}


def browser_check(browser: str, page: Path, out_dir: Path) -> dict:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-extensions"]
    probe = page.with_name(page.stem + ".probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = subprocess.run([browser, *flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    m = re.search(r"<title>IMGCHECK (\d+) (\d+) (\d+)</title>", dom.stdout)
    assert m, f"the probe did not run in the browser (rc {dom.returncode}): {dom.stderr.strip()[-300:]}"
    n_img, n_ok, height = (int(g) for g in m.groups())
    assert n_img > 0 and n_ok == n_img, f"the browser decoded {n_ok} of {n_img} images"
    probe.unlink()
    shot = out_dir / (page.stem + ".png")
    height = min(max(height, 800), 16000)
    subprocess.run([browser, *flags, f"--window-size=1300,{height}", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, text=True, timeout=120)
    assert shot.is_file(), "no screenshot written"
    from PIL import Image
    import numpy as np

    with Image.open(shot) as im:
        arr = np.asarray(im.convert("RGB"))
    nonwhite = float((arr.min(axis=2) < 245).mean())
    colours = len(np.unique(arr.reshape(-1, 3)[:: max(1, arr.shape[0] * arr.shape[1] // 200000)], axis=0))
    assert nonwhite > 0.03 and colours > 50, f"blank-looking screenshot: {nonwhite:.3f} non-white, {colours} colours"
    pdf = out_dir / (page.stem + ".pdf")
    subprocess.run([browser, *flags, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri()],
                   capture_output=True, text=True, timeout=120)
    assert pdf.is_file() and pdf.read_bytes()[:5] == b"%PDF-", "no PDF written"
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf.read_bytes()))
    return {"browser_images": n_img, "browser_images_decoded": n_ok, "page_height_px": height,
            "screenshot": str(shot), "screenshot_px": [int(arr.shape[1]), int(arr.shape[0])],
            "nonwhite_fraction": round(nonwhite, 4), "colours": colours, "pdf": str(pdf),
            "pdf_pages": pages, "pdf_bytes": pdf.stat().st_size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", help="run folders (default: tiny runs made here)")
    ap.add_argument("--out", help="folder for reports, screenshots and PDFs (default: a temporary folder)")
    ap.add_argument("--data-dir", default=os.environ.get("ATTNAS_DATA_DIR") or str(REPO.parent / "shared" / "data"))
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/results")
    args = ap.parse_args()
    browser = chromium()
    if browser is None:
        print("no chromium found (apt-get install -y chromium); static checks only are in tests/test_report.py",
              file=sys.stderr)
        return 2
    version = subprocess.run([browser, "--version"], capture_output=True, text=True).stdout.strip()
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="attnas-report-check-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [Path(r) for r in args.runs] or make_runs(out_dir / "runs", args.data_dir)
    failures = 0
    records = []
    for run in runs:
        rec: dict = {"run": str(run), "browser": version}
        t0 = time.time()
        try:
            rep = attnas("report", str(run), "-o", str(out_dir / f"{run.name}.html"))
            rec.update({"sections": rep["sections"], "report_s": round(time.time() - t0, 2)})
            page = Path(rep["output"])
            rec.update(static_check(page))
            t1 = time.time()
            rec.update(browser_check(browser, page, out_dir))
            rec["browser_s"] = round(time.time() - t1, 2)
            rec["ok"] = True
        except (AssertionError, RuntimeError, subprocess.TimeoutExpired, binascii.Error) as e:
            rec.update({"ok": False, "error": f"{type(e).__name__}: {e}"})
            failures += 1
        rec.pop("image_sizes", None)
        print(json.dumps(rec))
        records.append(rec)
    if not args.no_record:
        res = REPO / "bench" / "results" / "report_browser_check.jsonl"
        with open(res, "a") as f:
            for rec in records:
                f.write(json.dumps({**rec, "date": time.strftime("%Y-%m-%d")}) + "\n")
    print(f"{len(records) - failures}/{len(records)} reports passed; files in {out_dir}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
