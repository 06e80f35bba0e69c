"""EnTranNAS and EnTranNAS-DST: engine/transit cells, feature sharing, Eq. 5 and Eq. 7-11, CLI."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from attnas.arch import Architecture, edge_key, parse_edge_key
from attnas.cli.main import main
from attnas.errors import ConfigError
from attnas.spaces.darts import CONCAT, DARTS_EDGES
from attnas.spaces.registry import get_space
from attnas.spaces.shared_cells import SharedCell, bottleneck_width, engine_indices
from attnas.strategies.base import get_strategy
from attnas.strategies.darts import param_name
from attnas.strategies.entrannas import beta_name, inputs_per_node, temperature
from attnas.training.step import search_step

SMALL = {"C": 4, "layers": 4}  # cells: normal, reduce, reduce, normal


def make(method: str, space: str = "darts", **options):
    torch.manual_seed(0)
    st = get_strategy(method, get_space(space, **SMALL), options)
    model = st.build(10, 3, 8)
    return st, model


def count_calls(cell: SharedCell) -> dict[tuple[int, str], int]:
    """Install hooks counting the calls of every shared operation of ``cell``."""
    calls: dict[tuple[int, str], int] = {}
    for i, ops in cell.ops.items():
        for name, op in ops.items():
            key = (int(i), name)
            calls[key] = 0

            def hook(mod, inp, out, key=key):
                calls[key] += 1
            op.register_forward_hook(hook)
    return calls


def derived_connections(arch: Architecture, cell: str) -> set[tuple[int, str]]:
    return {(i, op) for c, i, j, op in arch.edges(cell) if op != "none"}


@pytest.mark.parametrize("method", ["entrannas", "entrannas-dst"])
def test_transit_cells_compute_only_the_derived_connections(method):
    st, model = make(method, tau_schedule="constant", tau_max=0.002)  # spread p so DST prunes
    with torch.no_grad():  # make the architectures distinct from uniform
        for a in model.arch.alphas.values():
            a.copy_(torch.randn_like(a) * 1e-3)
    cells = [c.dag for c in model.net.cells]
    assert [c.role for c in cells] == ["engine", "engine", "transit", "transit"]
    hooks = [count_calls(c) for c in cells]
    model.train()
    model(torch.randn(4, 3, 8, 8))
    arch = st.derive(model)
    for cell, calls in zip(cells, hooks):
        used = {k for k, v in calls.items() if v}
        assert all(v <= 1 for v in calls.values())  # every shared feature computed at most once
        if cell.role == "transit":
            assert used == derived_connections(arch, cell.cell)
            assert cell.last_op_calls == len(used) < len(calls)
        elif method == "entrannas":  # softmax weights are never zero: the engine runs everything
            assert used == set(calls)


def test_feature_sharing_one_weight_and_one_feature_per_source_and_operation():
    st, model = make("entrannas")
    cell = model.net.cells[0].dag
    # one instance per (source node, operation): 5 sources x 7 non-none operations, not 14 edges x 7
    assert sorted(cell.ops) == ["0", "1", "2", "3", "4"]
    assert all(len(ops) == 7 for ops in cell.ops.values())
    # force sep_conv_3x3 from node 0 onto nodes 2, 3, 4, 5 (in the normal cell)
    with torch.no_grad():
        for i, j in DARTS_EDGES:
            a = model.arch.alphas[param_name(edge_key("normal", i, j))]
            a.zero_()
            if i == 0:
                a[4] = 5.0  # sep_conv_3x3
    arch = st.derive(model)
    assert all(arch.choices[edge_key("normal", 0, j)] == "sep_conv_3x3" for j in CONCAT)
    transit = model.net.cells[3].dag
    assert transit.cell == "normal" and transit.role == "transit"
    calls = count_calls(transit)
    model(torch.randn(2, 3, 8, 8))
    assert calls[(0, "sep_conv_3x3")] == 1  # used by 4 nodes, computed once
    # the bottleneck: operations see C/4 channels, nodes are restored to C
    assert cell.ops["0"]["sep_conv_3x3"][0][1].in_channels == bottleneck_width(4, 4, False) == 1
    assert cell.restore["2"][0].out_channels == 4
    assert bottleneck_width(16, 4, False) == 4 and bottleneck_width(8, 4, True) == 2
    assert bottleneck_width(12, 4, True) == 4  # odd widths rounded up in reduction cells


def test_gradients_reach_alpha_through_engine_cells_only():
    st, model = make("entrannas")
    model.train()
    F.cross_entropy(model(torch.randn(4, 3, 8, 8)), torch.randint(0, 10, (4,))).backward()
    grads = [a.grad for a in model.arch.alphas.values()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    # transit cells: only derived operations get a weight gradient
    transit = model.net.cells[3].dag
    arch = st.derive(model)
    used = derived_connections(arch, "normal")
    for i, ops in transit.ops.items():
        for name, op in ops.items():
            has = any(p.grad is not None and p.grad.abs().sum() > 0 for p in op.parameters())
            if list(op.parameters()):
                assert has == ((int(i), name) in used)


def test_temperature_schedules_eq5():
    assert temperature("linear", 10, 0.1, 0, 50) == 10
    assert temperature("linear", 10, 0.1, 49, 50) == pytest.approx(0.1)
    assert temperature("exponential", 10, 0.1, 25, 51) == pytest.approx(1.0)
    assert temperature("constant", 3, 0.1, 7, 50) == 3
    with pytest.raises(ConfigError, match="tau_schedule"):
        temperature("cosine", 1, 0.1, 0, 2)
    with pytest.raises(ConfigError, match="tau_schedule"):
        make("entrannas", tau_schedule="cosine")
    st, model = make("entrannas", tau_max=4.0, tau_min=1.0)
    opt = st.optimizers(model, 1, 4)
    batch = (torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,)))
    m = search_step(st, model, opt, batch, batch, 2, 0)
    assert m["tau"] == pytest.approx(2.0) and float(model.arch.tau) == pytest.approx(2.0)
    # scores are the tempered softmax, derivation is the DARTS rule on them (2 inputs per node)
    key = edge_key("normal", 0, 2)
    assert st.scores(model)[key] == pytest.approx(
        F.softmax(model.arch.alphas[param_name(key)] / 2.0, -1).tolist())
    arch = st.derive(model)
    assert arch == get_space("darts", **SMALL).derive(st.scores(model))
    assert inputs_per_node(arch) == {"normal": [2] * 4, "reduce": [2] * 4}


def test_dst_coefficients_follow_eq7_to_eq9():
    st, model = make("entrannas-dst", tau_schedule="constant", tau_max=1.0)
    with torch.no_grad():
        for a in model.arch.alphas.values():
            a.copy_(torch.randn_like(a))
        model.arch.betas[beta_name("normal", 3)].fill_(math.log(0.7 / 0.3))  # t = 0.7
    coef = st.scores(model)
    pts = [edge_key("normal", i, 3) for i in range(3)]
    p = [F.softmax(model.arch.alphas[param_name(k)][1:], -1) for k in pts]  # 'none' (index 0) left out
    m = torch.cat(p).max()
    for k, pk in zip(pts, p):
        q = F.relu(pk / m - 0.7)
        expect = (q / q.sum()) if q.sum() > 0 else q
        assert coef[k][0] == 0.0
        assert coef[k][1:] == pytest.approx(expect.tolist(), abs=1e-6)


@pytest.mark.parametrize("beta", [-20.0, 0.0, 3.0, 50.0])
def test_dst_keeps_at_least_one_input_per_node(beta):
    st, model = make("entrannas-dst", tau_schedule="constant", tau_max=0.5)
    with torch.no_grad():
        for a in model.arch.alphas.values():
            a.copy_(torch.randn_like(a) * 3)
        for b in model.arch.betas.values():
            b.fill_(beta)
    arch = st.derive(model)
    counts = inputs_per_node(arch)
    assert all(n >= 1 for c in counts.values() for n in c)
    if beta == 50.0:  # t -> 1: only the strongest connection survives
        assert counts == {"normal": [1] * 4, "reduce": [1] * 4}
    if beta == -20.0:  # t -> 0: every edge keeps an operation
        assert counts == {"normal": [2, 3, 4, 5], "reduce": [2, 3, 4, 5]}
    model(torch.randn(2, 3, 8, 8))  # the network runs with this plan


def test_dst_sparsity_penalty_eq11_enters_the_architecture_step():
    st, model = make("entrannas-dst", sparsity_lambda=1.0, arch_weight_decay=0.0)
    opt = st.optimizers(model, 1, 2)
    pen = st.sparsity_penalty(model.arch)
    assert float(pen.detach()) == pytest.approx(2 * math.log(2))  # t = 0.5 everywhere, two cell types
    batch = (torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,)))
    betas0 = {k: float(v.detach()) for k, v in model.arch.betas.items()}
    m = search_step(st, model, opt, batch, batch, 0, 0)
    assert m["sparsity_penalty"] == pytest.approx(2 * math.log(2))
    # d/d beta of lambda/4 * softplus(-beta) = -0.125 at beta = 0 (plus the validation part)
    assert all(float(model.arch.betas[k].detach()) > betas0[k] for k in betas0)  # thresholds rise


def test_flexible_topology_is_a_valid_architecture(tmp_path):
    """A DST result with 1..5 inputs per node validates, saves, builds and trains, and is drawn."""
    from attnas.spaces.io import load_architecture, save_architecture

    space = get_space("darts", **SMALL)
    choices = {edge_key(c, i, j): "none" for c in ("normal", "reduce") for i, j in DARTS_EDGES}
    for j in CONCAT:
        for i in range(j - 1 if j % 2 else j):  # nodes with 1..5 inputs
            choices[edge_key("normal", i, j)] = "sep_conv_3x3"
        choices[edge_key("reduce", 0, j)] = "max_pool_3x3"
    arch = Architecture("darts", choices)
    space.validate(arch)
    assert space.to_native(arch) is None
    save_architecture(arch, tmp_path / "a.json")
    assert load_architecture(tmp_path / "a.json") == arch
    net = space.build_network(arch, 10, 3, 8, C=4, layers=3, auxiliary=False)
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    assert main(["show", str(tmp_path / "a.json"), "-o", str(tmp_path / "a.png")]) == 0
    assert (tmp_path / "a.png").stat().st_size > 0


def test_engine_cell_configurations_table1():
    assert engine_indices("first", 8) == [0, 2]
    assert engine_indices("last", 8) == [5, 7]
    assert engine_indices("all", 5) == [0, 1, 2, 3, 4]
    assert engine_indices([0, 1, 2], 5) == [0, 1, 2]
    with pytest.raises(ConfigError, match="no reduce"):
        engine_indices([0, 1], 8)
    with pytest.raises(ConfigError, match="out of range"):
        engine_indices([0, 2, 9], 8)
    with pytest.raises(ConfigError, match="unknown engine_cells"):
        engine_indices("middle", 8)
    st, model = make("entrannas", engine_cells="all")
    assert all(c.dag.role == "engine" for c in model.net.cells)


def test_reduced_spaces_and_unsupported_spaces():
    for name in ("s2", "s3", "s4"):
        st, model = make("entrannas-dst", name)
        model(torch.randn(2, 3, 8, 8))
        arch = st.derive(model)
        get_space(name, **SMALL).validate(arch)
    with pytest.raises(ConfigError, match="DARTS-like"):
        get_strategy("entrannas", get_space("nb201", C=4, N=1), {})


def run_cli(argv, capsys):
    code = main(argv)
    out, _ = capsys.readouterr()
    return code, out


def test_cli_search_resumes_and_the_result_retrains(tmp_path, capsys):
    base = ["search", "--space", "darts", "--space-options", '{"C": 4, "layers": 3}', "--method", "entrannas-dst",
            "--dataset", "synthetic:3,8,4,64,16", "--batch-size", "32", "--epochs", "2", "--seed", "1",
            "--quiet"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli([*base, "--out", str(a)], capsys)[0] == 0
    code, out = run_cli([*base, "--out", str(b), "--stop-after", "1", "--json"], capsys)
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["status"] == "stopped"
    assert run_cli(["search", "--resume", str(b), "--quiet"], capsys)[0] == 0
    ja, jb = (json.loads((d / "architecture.json").read_text()) for d in (a, b))
    assert ja["choices"] == jb["choices"] and ja["meta"]["method"] == "entrannas-dst"
    assert json.loads((a / "scores.json").read_text()) == json.loads((b / "scores.json").read_text())
    code, out = run_cli(["train", "--arch", str(a / "architecture.json"), "--dataset", "synthetic:3,8,4,32,16",
                         "--epochs", "1", "--batch-size", "32", "--network-options",
                         '{"C": 4, "layers": 3, "auxiliary": false}', "--out", str(tmp_path / "t"),
                         "--quiet", "--json"], capsys)
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["status"] == "done"


@pytest.mark.parametrize("method", ["entrannas", "entrannas-dst"])
def test_one_search_step_runs_only_the_derived_subgraph_in_transit_cells(method):
    """Issue 16: in a whole search step (weight step and architecture step, the architecture
    changing in between) every transit cell runs exactly the candidate operations of the
    architecture derived at that forward, each once; engine cells run every candidate with a
    non-zero coefficient.  Counted with forward hooks on every candidate operation of every cell."""
    st, model = make(method, tau_schedule="constant", tau_max=0.002, beta_init=-1.0)
    with torch.no_grad():  # an architecture far from uniform, so DST prunes and derivations differ
        for a in model.arch.alphas.values():
            a.copy_(torch.randn_like(a) * 1e-3)
    cells = [c.dag for c in model.net.cells]
    assert [c.role for c in cells] == ["engine", "engine", "transit", "transit"]
    forwards: list[dict] = []  # per network forward: the derived architecture, engine coefficients, calls

    def start(module, inputs):
        with torch.no_grad():
            coef = st.scores(model)
        forwards.append({"arch": st.derive(model), "coef": coef,
                         "calls": [{(int(i), name): 0 for i, ops in c.ops.items() for name in ops} for c in cells]})
    model.net.register_forward_pre_hook(start)
    for idx, cell in enumerate(cells):
        for i, ops in cell.ops.items():
            for name, op in ops.items():
                def hook(mod, inp, out, idx=idx, key=(int(i), name)):
                    forwards[-1]["calls"][idx][key] += 1
                op.register_forward_hook(hook)
    opt = st.optimizers(model, 10, 1)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    before = {k: v.detach().clone() for k, v in model.arch.state_dict().items()}
    model.train()
    search_step(st, model, opt, (x, y), (x, y), 0, 0)
    assert any(not torch.equal(before[k], v) for k, v in model.arch.state_dict().items())  # alphas moved
    assert len(forwards) == 2  # the architecture step's forward, then the weight step's (first order)
    for fw in forwards:
        for cell, calls in zip(cells, fw["calls"]):
            assert all(v <= 1 for v in calls.values())  # a shared feature is computed at most once
            used = {k for k, v in calls.items() if v}
            if cell.role == "transit":
                assert used == derived_connections(fw["arch"], cell.cell)
                assert len(used) < len(calls)
            else:  # every candidate of a non-zero coefficient, nothing else
                want = {(parse_edge_key(p.key)[1], op) for p in st.points
                        if parse_edge_key(p.key)[0] == cell.cell
                        for op, v in zip(p.candidates, fw["coef"][p.key]) if op != "none" and v > 0}
                assert used == want
                if method == "entrannas":
                    assert used == set(calls)
                else:
                    assert len(used) < len(calls)
