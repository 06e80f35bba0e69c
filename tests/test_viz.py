"""Tests of attnas.viz (architecture drawings, run curves) and ``attnas show``.

The run folders here are written by hand in the format of
:mod:`attnas.training.engine` / :func:`attnas.api.search` (metrics.jsonl,
scores.json, architecture.json, config.json) so the tests stay fast.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnas.arch import Architecture, edge_key
from attnas.spaces.io import save_architecture
from attnas.cli.main import main
from attnas.errors import ArchitectureError, AttnasError, ConfigError
from attnas.spaces.registry import get_space, get_space_class
from attnas.viz import (DARTS_CELL, NB201_CELL, CellInfo, CellLayout, ChainLayout, cell_info_for_space,
                        draw_architecture, infer_cell_info, layout_architecture, op_family, plot_run)

DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
            "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
            "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
            "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
            "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[4, 5, 6])")
NB201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
NB201_WITH_NONE = "|none~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|nor_conv_1x1~1|none~2|"


def darts_v2() -> Architecture:
    return get_space_class("darts").parse_native(DARTS_V2)


def nb201(text: str = NB201) -> Architecture:
    return get_space_class("nb201").parse_native(text)


def assert_readable(panel: CellLayout) -> None:
    """No two labels overlap and no label covers a node."""
    boxes = [e.label_box for e in panel.op_edges()]
    assert all(b is not None for b in boxes)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            overlap = not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])
            assert not overlap, f"labels overlap in cell {panel.cell}: {a} {b}"
        for n in panel.nodes:
            cx = min(max(n.x, a[0]), a[2])
            cy = min(max(n.y, a[1]), a[3])
            assert (cx - n.x) ** 2 + (cy - n.y) ** 2 >= 0.3 ** 2 - 1e-9, f"label on node {n.id}"


def png_stats(path: Path) -> tuple[tuple[int, int], float]:
    with Image.open(path) as im:
        arr = np.asarray(im.convert("L"), dtype=float)
        return im.size, float(arr.std())


# ---------------------------------------------------------------------------
# cells
def test_darts_v2_layout_labels_every_edge_without_overlap():
    arch = darts_v2()
    panels = layout_architecture(arch)
    assert [p.cell for p in panels] == ["normal", "reduce"]
    for p in panels:
        active = sorted(op for _, _, _, op in arch.edges(p.cell) if op != "none")
        assert sorted(p.labels()) == active and len(active) == 8
        assert p.info == DARTS_CELL
        kinds = Counter(n.kind for n in p.nodes)
        assert kinds == {"input": 2, "node": 4, "output": 1}
        # the concat output is fed by every intermediate node, without operation
        concat = [e for e in p.edges if e.kind == "concat"]
        assert sorted(e.src for e in concat) == [2, 3, 4, 5]
        assert_readable(p)
    labels = {n.id: n.label for n in panels[0].nodes}
    assert labels[0] == "$c_{k-2}$" and labels[1] == "$c_{k-1}$" and labels[6] == "$c_{k}$"


def test_nb201_layout_input_output_and_none_edges():
    (p,) = layout_architecture(nb201())
    assert p.cell == "cell" and p.info == NB201_CELL and len(p.op_edges()) == 6
    assert [n.kind for n in p.nodes] == ["input", "node", "node", "output"]
    assert not [e for e in p.edges if e.kind == "concat"]
    assert_readable(p)
    (q,) = layout_architecture(nb201(NB201_WITH_NONE))
    assert sorted(q.labels()) == ["avg_pool_3x3", "nor_conv_1x1", "nor_conv_1x1"]
    assert q.node(1).kind == "empty"  # node 1 has no incoming operation: drawn dashed


def test_png_written_and_non_trivial(tmp_path):
    out = tmp_path / "cell.png"
    d = draw_architecture(darts_v2(), out, title="DARTS V2")
    assert d.path == out and out.stat().st_size > 20_000
    size, std = png_stats(out)
    assert size == d.size_px and size[0] > 1000 and size[1] > 800
    assert std > 10  # not a blank image
    assert d.edge_counts() == {"normal": 8, "reduce": 8}
    assert set(d.families) == {"conv", "pool", "skip"}


def test_svg_and_pdf_contain_every_label(tmp_path):
    arch = darts_v2()
    d = draw_architecture(arch, tmp_path / "cell.svg")
    svg = (tmp_path / "cell.svg").read_text()
    assert "<svg" in svg
    # matplotlib writes each text as a comment before its glyph paths
    drawn = Counter(re.findall(r"<!-- ([a-z0-9_]+) -->", svg))
    ops = Counter(op for op in arch.choices.values() if op != "none")
    for op, n in ops.items():
        assert drawn[op] == n, op
    assert sum(d.edge_counts().values()) == sum(ops.values())
    draw_architecture(nb201(), tmp_path / "cell.pdf")
    assert (tmp_path / "cell.pdf").read_bytes()[:5] == b"%PDF-"


def test_flexible_topology_every_edge_drawn():
    """EnTranNAS-DST style: any number of inputs per node (here all 14 edges)."""
    space = get_space("darts")
    ops = ["sep_conv_3x3", "max_pool_3x3", "skip_connect", "dil_conv_5x5", "avg_pool_3x3"]
    choices = {p.key: ops[i % len(ops)] for i, p in enumerate(space.choice_points())}
    choices[edge_key("reduce", 0, 5)] = "none"
    arch = Architecture("darts", choices)
    space.validate(arch)
    panels = layout_architecture(arch)
    assert {p.cell: len(p.op_edges()) for p in panels} == {"normal": 14, "reduce": 13}
    for p in panels:
        assert_readable(p)
        assert len({(e.src, e.dst) for e in p.op_edges()}) == len(p.op_edges())


def test_unknown_cell_space_is_inferred():
    choices = {"c:0->3": "conv_3x3", "c:1->3": "self_attention", "c:2->3": "max_pool",
               "c:0->4": "identity", "c:3->4": "mystery_op", "c:2->4": "none"}
    arch = Architecture("fake_cell", choices)
    assert cell_info_for_space("fake_cell") is None
    info = infer_cell_info([(0, 3), (1, 3), (2, 3), (0, 4), (3, 4), (2, 4)])
    assert info.n_inputs == 3 and info.output == "concat"
    (p,) = layout_architecture(arch)
    assert [n.kind for n in p.nodes] == ["input"] * 3 + ["node", "node", "output"]
    assert sorted(e.family for e in p.op_edges()) == sorted(["conv", "attention", "pool", "skip", "other"])
    assert_readable(p)
    # one input: the last node is the output (NAS-Bench-201 convention)
    (q,) = layout_architecture(Architecture("fake_cell", {"c:0->1": "conv", "c:1->2": "conv"}))
    assert q.info.output == "last" and q.nodes[-1].kind == "output"
    # an explicit CellInfo overrides the inference
    (r,) = layout_architecture(arch, info=CellInfo(3, "last"))
    assert r.nodes[-1].kind == "output" and not [e for e in r.edges if e.kind == "concat"]


def test_chain_drawn_in_layer_order_with_skips_faded(tmp_path):
    ops = ["mb3_k3", "mb6_k5", "skip", "mb3_k7", "identity"]
    arch = Architecture("fake_chain", {f"layer:{i}": ops[i % 5] for i in range(12)})
    d = draw_architecture(arch, tmp_path / "chain.png", title="chain")
    (p,) = d.panels
    assert isinstance(p, ChainLayout) and d.cells == ["chain"]
    assert [b.key for b in p.boxes] == [f"layer:{i}" for i in range(12)]  # layer:10 after layer:9
    assert [b.faded for b in p.boxes] == [ops[i % 5] in ("skip", "identity") for i in range(12)]
    assert len({round(b.y, 6) for b in p.boxes}) == 2  # wrapped after 8 boxes
    size, std = png_stats(tmp_path / "chain.png")
    assert size == d.size_px and std > 5


def test_op_families():
    assert op_family("sep_conv_3x3") == "conv" and op_family("mb6_k5") == "conv"
    assert op_family("max_pool_3x3") == "pool" and op_family("avg_pool_3x3") == "pool"
    assert op_family("skip_connect") == "skip" and op_family("identity") == "skip"
    assert op_family("mhsa") == "attention" and op_family("self_attention") == "attention"
    assert op_family("noise") == "other"


def test_drawing_errors(tmp_path):
    with pytest.raises(ConfigError, match="unsupported picture format"):
        draw_architecture(nb201(), tmp_path / "cell.jpg")
    with pytest.raises(ConfigError, match="does not exist"):
        draw_architecture(nb201(), tmp_path / "missing" / "cell.png")
    with pytest.raises(ArchitectureError, match="does not go forward"):
        layout_architecture(Architecture("fake_cell", {"c:2->1": "conv"}))
    with pytest.raises(ArchitectureError, match="not an edge key"):
        layout_architecture(Architecture("fake_cell", {"c:0->x": "conv"}))
    with pytest.raises(ArchitectureError, match="no choices"):
        layout_architecture(Architecture("fake_cell", {}))


# ---------------------------------------------------------------------------
# run folders
def make_run(run: Path, epochs: int = 3, finished: bool = True) -> Architecture:
    """A search run folder as attnas.api.search writes it (nb201, DARTS)."""
    space = get_space("nb201", C=4, N=1)
    points = space.choice_points()
    rng = np.random.default_rng(0)
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"space": "nb201", "method": "darts",
                                                 "space_options": {"C": 4, "N": 1}}))
    lines = []
    for ep in range(epochs):
        scores = {p.key: list(rng.dirichlet(np.ones(len(p.candidates)))) for p in points}
        arch = space.derive(scores)
        lines.append(json.dumps({"epoch": ep, "train_loss": 2.3 - 0.2 * ep, "train_acc": 0.1 + 0.1 * ep,
                                 "valid_loss": 2.2 - 0.2 * ep, "valid_acc": 0.2 + 0.1 * ep,
                                 "scores": scores, "arch": space.to_native(arch),
                                 "bench_index": 100 + ep, "epoch_time_s": 1.0}))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if finished:
        arch.meta.update({"method": "darts", "space_options": {"C": 4, "N": 1}})
        save_architecture(arch, run / "architecture.json")
        (run / "scores.json").write_text(json.dumps(
            {"candidates": {p.key: list(p.candidates) for p in points}, "scores": scores}))
    return arch


def test_plot_run_draws_curves_and_scores(tmp_path):
    make_run(tmp_path / "run")
    d = plot_run(tmp_path / "run", tmp_path / "curves.png", dpi=60)
    assert d.epochs == 3
    assert d.loss_series == ["train_loss", "valid_loss"]
    assert d.acc_series == ["train_acc", "valid_acc"]
    assert d.choice_points == [p.key for p in get_space("nb201").choice_points()]
    size, std = png_stats(tmp_path / "curves.png")
    assert size == d.size_px and std > 10
    with pytest.raises(ConfigError, match="not a run folder"):
        plot_run(tmp_path, tmp_path / "x.png")


def test_cli_show_run_folder_json(tmp_path, capsys):
    arch = make_run(tmp_path / "run")
    out = tmp_path / "cell.png"
    assert main(["show", str(tmp_path / "run"), "-o", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    curves = tmp_path / "cell_curves.png"
    assert res["output"] == [str(out), str(curves)] and res["curves"] == str(curves)
    assert res["space"] == "nb201" and res["cells"] == ["cell"]
    assert res["edges"] == {"cell": len(arch.active())}
    assert out.stat().st_size > 5000 and curves.stat().st_size > 20_000


def test_cli_show_unfinished_run_draws_last_epoch(tmp_path, capsys):
    make_run(tmp_path / "run", epochs=2, finished=False)
    assert main(["show", str(tmp_path / "run"), "--no-curves", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["output"] == [str(tmp_path / "run" / "architecture.png")] and "curves" not in res
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    expected = get_space_class("nb201").parse_native(last["arch"])
    assert res["edges"] == {"cell": len(expected.active())}


def test_cli_show_native_strings_and_files(tmp_path, capsys):
    assert main(["show", DARTS_V2, "-o", str(tmp_path / "v2.svg"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res == {"output": [str(tmp_path / "v2.svg")], "space": "darts", "cells": ["normal", "reduce"],
                   "edges": {"normal": 8, "reduce": 8}, "architecture": str(tmp_path / "v2.svg"),
                   "size_px": res["size_px"]}
    # a text file with a native string, and a JSON file (picture beside it by default)
    (tmp_path / "a.txt").write_text(NB201 + "\n")
    assert main(["show", str(tmp_path / "a.txt"), "-o", str(tmp_path / "a.png")]) == 0
    save_architecture(nb201(), tmp_path / "arch.json")
    assert main(["show", str(tmp_path / "arch.json")]) == 0
    assert (tmp_path / "a.png").is_file() and (tmp_path / "arch.png").is_file()


@pytest.mark.parametrize("spec, out, message", [
    (NB201, "x.jpg", "unsupported picture format '.jpg'"),
    ("missing/arch.json", "x.png", "does not exist"),
    ("not-an-architecture", "x.png", "neither a file nor a run folder"),
    ("|nor_conv_3x3~0|+|bad|", "x.png", "not a NAS-Bench-201 cell string"),
])
def test_cli_show_errors_are_one_line(tmp_path, capsys, spec, out, message):
    assert main(["show", spec, "-o", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnas: error:") and message in err and "\n" not in err


def test_cli_show_malformed_json_architecture(tmp_path, capsys):
    (tmp_path / "bad.json").write_text(json.dumps({"space": "nb201", "choices": {"cell:0->1": "conv"}}))
    assert main(["show", str(tmp_path / "bad.json"), "-o", str(tmp_path / "x.png")]) == 2
    assert "does not match space 'nb201'" in capsys.readouterr().err
    with pytest.raises(AttnasError):
        from attnas.spaces.io import resolve_architecture
        resolve_architecture(str(tmp_path / "bad.json"))


def test_registered_chain_space_draws(tmp_path, capsys):
    """A chain space of the library (NAS-Bench-Macro, native digits) through the CLI."""
    from attnas.spaces.registry import space_names
    if "macro" not in space_names():
        pytest.skip("the macro chain space is not registered in this checkout")
    assert main(["show", "01201221", "-o", str(tmp_path / "m.png"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["space"] == "macro" and res["cells"] == ["chain"] and res["edges"] == {"chain": 8}


def test_nos_cell_concatenates_only_its_inner_nodes():
    """NOS cells output the concatenation of the inner nodes 3, 5, 7, 9 (not the surrogate nodes
    2, 4, 6, 8): the drawing's concat edges say so."""
    import random

    from attnas.spaces.registry import get_space

    space = get_space("nos", C=4, layers=3)
    panels = layout_architecture(space.sample(random.Random(0)))
    for p in panels:
        concat_src = sorted(e.src for e in p.edges if e.kind == "concat")
        assert concat_src == [3, 5, 7, 9], p
