"""SPOS / FairNAS training, evolutionary search with constraints, BN recalibration, CLI flow."""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from scipy.stats import chisquare

from attnas.arch import Architecture
from attnas.spaces.io import load_architecture
from attnas.cli.main import main as cli_main
from attnas.errors import ConfigError
from attnas.ops.mobile import InvertedResidual, bn_act_conv
from attnas.presets import get_preset
from attnas.profile import profile_architecture
from attnas.search.evolution import (Constraint, EvolutionSearch, SelectionContext, recalibrate_bn,
                                     take_images)
from attnas.spaces.registry import get_space
from attnas.strategies.base import get_strategy
from attnas.strategies.random_search import activate
from attnas.training.step import search_step

TINY_MACRO = {"C": 4, "head": 16}
TINY_EVOLUTION = {"population": 6, "generations": 2, "top_k": 3, "mutations": 3, "crossovers": 3,
                  "bn_images": 32, "eval_images": 64}


def _batches(n: int, size: int = 8, classes: int = 4, seed: int = 0, image: int = 8):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, image, image, generator=g), torch.randint(0, classes, (size,), generator=g))
            for _ in range(n)]


# --------------------------------------------------------------------------- sampling


def test_uniform_single_path_sampling() -> None:
    """Each step's path draws every layer's candidate uniformly (IT-NAS Eq. 2): chi-square per layer."""
    space = get_space("proxyless")
    strategy = get_strategy("spos", space)
    strategy.seed(0)
    n = 3000
    for _ in range(n):
        (arch,) = strategy.sample_paths()
        strategy._count(arch)
    for p in strategy.points:
        counts = strategy.counts[p.key]
        assert sum(counts) == n
        assert chisquare(counts).pvalue > 1e-3, (p.key, counts)
    freqs = strategy.scores(None)
    assert all(abs(sum(v) - 1) < 1e-9 for v in freqs.values())
    # pairs of layers are independent: joint counts of layers 1 and 2 are uniform over 7 x 7 cells
    strategy.seed(1)
    joint = [0] * 49
    for _ in range(4900):
        (arch,) = strategy.sample_paths()
        c1, c2 = (space.choice_points()[i].candidates.index(arch.choices[f"layer:{i}"]) for i in (1, 2))
        joint[7 * c1 + c2] += 1
    assert chisquare(joint).pvalue > 1e-3


def test_fairnas_strict_fairness() -> None:
    space = get_space("macro", **TINY_MACRO)
    strategy = get_strategy("fairnas", space)
    assert strategy.cfg.fair
    for step in range(1, 6):
        paths = strategy.sample_paths()
        assert len(paths) == 3
        for a in paths:
            strategy._count(a)
        # every candidate of every layer trained exactly once per step
        assert all(c == [step] * 3 for c in strategy.counts.values())
    # unequal candidate counts (ProxylessNAS: 6 or 7): each candidate once or twice per step
    prox = get_strategy("spos", get_space("proxyless"), {"fair": True})
    paths = prox.sample_paths()
    assert len(paths) == 7
    for p in prox.points:
        used = [sum(a.choices[p.key] == c for a in paths) for c in p.candidates]
        assert min(used) >= 1 and max(used) <= 2 and sum(used) == 7


def test_spos_step_trains_only_the_path() -> None:
    torch.manual_seed(0)
    space = get_space("macro", **TINY_MACRO)
    strategy = get_strategy("spos", space)
    strategy.seed(3)
    model = strategy.build(4, 3, 8)
    opt = strategy.optimizers(model, 10, 2)
    before = copy.deepcopy(model.net.state_dict())
    (x, y), = _batches(1)
    metrics = search_step(strategy, model, opt, (x, y), None, 0, 0)
    assert set(metrics) == {"loss", "acc"}
    active = {p.key: p.candidates[model.arch.active[p.key]] for p in strategy.points}
    after = model.net.state_dict()
    for i, p in enumerate(strategy.points):
        for j, cand in enumerate(p.candidates):
            keys = [k for k in after if k.startswith(f"layers.{i}.ops.{j}.") and k.endswith("weight")]
            changed = any(not torch.equal(before[k], after[k]) for k in keys)
            if cand == active[p.key] and keys:
                assert changed, (p.key, cand)
            else:
                assert not changed, (p.key, cand)
    assert sum(sum(c) for c in strategy.counts.values()) == len(strategy.points)


def test_fairnas_step_accumulates_paths_then_one_update() -> None:
    torch.manual_seed(0)
    space = get_space("macro", **TINY_MACRO)
    strategy = get_strategy("fairnas", space, {"weights": {"momentum": 0.0, "weight_decay": 0.0}})
    strategy.seed(5)
    model = strategy.build(4, 3, 8)
    ref = strategy.build(4, 3, 8)  # a twin with the same weights (deepcopy of a supernet crashed torch here)
    ref.load_state_dict(model.state_dict())
    opt = strategy.optimizers(model, 10, 2)
    lr = opt["weights"].param_groups[0]["lr"]
    (x, y), = _batches(1)
    rng_state = strategy.rng.getstate()
    search_step(strategy, model, opt, (x, y), None, 0, 0)
    strategy.rng.setstate(rng_state)
    paths = strategy.sample_paths()
    ref.train()
    for a in paths:  # gradients of the 3 paths summed, then one SGD step
        activate(ref, a, strategy.points)
        nn.functional.cross_entropy(ref(x), y).backward()
    with torch.no_grad():
        for p_ref, p in zip(ref.net.parameters(), model.net.parameters()):
            expected = p_ref - lr * p_ref.grad if p_ref.grad is not None else p_ref
            assert torch.allclose(p, expected, atol=1e-6)


def test_memory_efficient_block_matches_plain_modules() -> None:
    torch.manual_seed(1)
    # the depthwise backward on the C kernel (5x5: flipped-kernel input gradient; 7x7 stride 2:
    # C loops) and on oneDNN (3x3)
    for act, stride, kernel in (("relu6", 1, 5), ("relu", 1, 5), ("relu6", 2, 7), ("relu6", 1, 3)):
        block = InvertedResidual(8, 8, stride, 6, kernel, activation=act)
        block.depthwise[1].momentum = None  # cumulative average path of the BN update too
        plain = copy.deepcopy(block)
        plain.memory_efficient = False
        x = torch.randn(4, 8, 7, 7) * 3
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        g = torch.randn(4, 8, 7 // stride + stride - 1, 7 // stride + stride - 1)
        for _ in range(2):
            (block(x1) * g).sum().backward()
            (plain(x2) * g).sum().backward()
        assert torch.allclose(x1.grad, x2.grad, atol=1e-5)
        for (n, a), b in zip(block.named_parameters(), plain.parameters()):
            assert torch.allclose(a.grad, b.grad, atol=1e-5), n
        for a, b in zip(block.buffers(), plain.buffers()):
            assert torch.allclose(a.float(), b.float(), atol=1e-6)
    # the fused segment keeps only the BN input for backward
    bn, conv = nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    z = torch.randn(2, 8, 5, 5, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        bn_act_conv(bn, 6.0, conv, z)
    assert sum(1 for s in saved if s == z.shape) == 1


# --------------------------------------------------------------------------- BN recalibration


def test_recalibrate_bn_is_exact_average() -> None:
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5)
    net = nn.Sequential(conv, bn)
    bn.running_mean.fill_(7.0)
    batches = _batches(4)
    n = recalibrate_bn(net, batches)
    assert n == 32 and not net.training
    with torch.no_grad():
        feats = torch.cat([conv(x) for x, _ in batches])
    assert torch.allclose(bn.running_mean, feats.mean((0, 2, 3)), atol=1e-5)
    assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == 4
    assert sum(len(y) for _, y in take_images(batches, 20)) == 20


# --------------------------------------------------------------------------- evolution and constraint


def _evolution_cfg(**kw):
    return type(get_preset("spos"))(**{**vars(get_preset("spos")), **TINY_EVOLUTION, **kw})


def test_constraint_rejects_and_costs_match() -> None:
    space = get_space("macro")
    table_flops = {a: Constraint(space, 10, 3, 32).cost(space.parse_native(a)).macs
                   for a in ("00000000", "22222222")}
    assert table_flops["00000000"] == 7713280
    budget = 4e7
    con = Constraint(space, 10, 3, 32, flops_budget=budget, params_budget=2e6)
    rng = random.Random(0)
    for _ in range(50):
        a = space.sample(rng)
        cost = profile_architecture(space, a, 10, 3, 32)
        assert con.cost(a) == cost
        assert con.holds(a) == (cost.flops <= budget and cost.params <= 2e6)
        assert cost.flops == 2 * cost.macs
        # the same limit in multiply-accumulates (what SPOS and NAS-Bench-Macro call FLOPs)
        assert Constraint(space, 10, 3, 32, macs_budget=budget / 2, params_budget=2e6).holds(a) == con.holds(a)
    with pytest.raises(ConfigError, match="flops_budget"):
        Constraint(space, 10, 3, 32, flops_budget=-1)
    with pytest.raises(ConfigError, match="macs_budget"):
        Constraint(space, 10, 3, 32, macs_budget=0)


def test_evolution_respects_budget_and_finds_good_architecture() -> None:
    """With a known fitness (number of mb6_k5 layers) and a FLOPs budget, every evaluated
    architecture meets the budget and evolution beats the initial random population."""
    space = get_space("macro")
    budget = 6e7
    con = Constraint(space, 10, 3, 32, flops_budget=budget)
    seen: list[Architecture] = []

    def fitness(a: Architecture) -> float:
        seen.append(a)
        return sum(op == "mb6_k5" for op in a.choices.values()) + 0.01 * sum(op == "mb3_k3" for op in a.choices.values())

    cfg = _evolution_cfg(population=20, generations=8, top_k=5, mutations=10, crossovers=10)
    res = EvolutionSearch(space, cfg, random.Random(0), fitness, con).run()
    assert len(seen) == len(set(seen)) == len(res.evaluated)  # no architecture scored twice
    assert all(con.cost(a).flops <= budget for a in seen)
    assert res.history[-1]["best"] > res.history[0]["population_mean"]
    assert res.best_score == max(res.evaluated.values())
    assert len(res.history) == cfg.generations + 1
    # deterministic given the RNG seed, and a cached replay evaluates nothing new
    res2 = EvolutionSearch(space, cfg, random.Random(0), fitness, con).run()
    assert res2.best == res.best
    n = len(seen)
    res3 = EvolutionSearch(space, cfg, random.Random(0), fitness, con, evaluated=res.evaluated).run()
    assert len(seen) == n and res3.best == res.best
    # infeasible budget: a clear error
    with pytest.raises(ConfigError, match="raise the budget"):
        EvolutionSearch(space, cfg, random.Random(0), fitness, Constraint(space, 10, 3, 32, flops_budget=1e6)).run()


def test_tight_budget_population_is_moved_into_the_budget() -> None:
    """Under a budget that 30 of the 6,561 NAS-Bench-Macro networks meet (uniform draws find
    about one in 200), the initial population is still full, every member is within the budget
    and distinct, and a budget nothing meets is still a clear error.  A loose budget draws
    exactly as plain rejection sampling does."""
    space = get_space("macro")
    budget = 2e7
    con = Constraint(space, 10, 3, 32, macs_budget=budget)
    cfg = _evolution_cfg(population=20, generations=0, top_k=5, mutations=0, crossovers=0)
    search = EvolutionSearch(space, cfg, random.Random(0), lambda a: 0.0, con)
    plain = search._collect(20, search._random)
    assert len(plain) < 5  # rejection sampling alone comes up short
    res = EvolutionSearch(space, cfg, random.Random(0), lambda a: 0.0, con).run()
    assert len(res.evaluated) == 20 and all(con.cost(a).macs <= budget for a in res.evaluated)
    # (20 distinct networks of the 30 that fit: the moves do not collapse onto the cheapest one)
    # a budget with room: the same draws as rejection sampling alone
    loose = Constraint(space, 10, 3, 32, macs_budget=9e7)
    a = EvolutionSearch(space, cfg, random.Random(3), lambda a: 0.0, loose)
    b = EvolutionSearch(space, cfg, random.Random(3), lambda a: 0.0, loose)
    assert list(a.run().evaluated) == b._collect(20, b._random)
    with pytest.raises(ConfigError, match="raise the budget"):
        EvolutionSearch(space, cfg, random.Random(0), lambda a: 0.0,
                        Constraint(space, 10, 3, 32, macs_budget=5e6)).run()


def test_spos_derive_restores_supernet_state() -> None:
    torch.manual_seed(0)
    space = get_space("macro", **TINY_MACRO)
    strategy = get_strategy("spos", space, {**TINY_EVOLUTION, "flops_budget": 2e5})
    model = strategy.build(4, 3, 8)
    activate(model, space.parse_native("12012012"), strategy.points)
    state = copy.deepcopy(model.state_dict())
    valid, train = _batches(4, seed=1), _batches(4, seed=2)
    arch = strategy.derive(model, context=SelectionContext(valid, train))
    assert arch.meta["bn_recalibration"] == "train" and arch.meta["flops"] <= 2e5
    assert arch.meta["eval_images"] == 32 and arch.meta["bn_images"] == 32
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert space.to_native(Architecture("macro", {p.key: p.candidates[model.arch.active[p.key]]
                                                  for p in strategy.points})) == "12012012"
    # a plain iterable of validation batches works too (BN then recomputed on them)
    strategy.seed(0)
    arch2 = strategy.derive(model, context=iter(valid))
    assert arch2.meta["bn_recalibration"] == "validation"
    with pytest.raises(ConfigError, match="evolutionary search"):
        strategy.derive(model)


def test_spos_option_errors() -> None:
    space = get_space("macro")
    with pytest.raises(ConfigError, match="lr_schedule"):
        get_strategy("spos", space, {"lr_schedule": "step"})
    with pytest.raises(ConfigError, match="flops_budget"):
        get_strategy("spos", space, {"flops_budget": 0})
    with pytest.raises(ConfigError, match="unknown option 'flops_budget'"):
        get_strategy("darts", space, {"flops_budget": 1e7})


# --------------------------------------------------------------------------- CLI end to end


def _search_args(out: Path, *extra: str) -> list[str]:
    return ["search", "--space", "macro", "--method", "spos", "--dataset", "synthetic:3,8,4,256,64",
            "--epochs", "2", "--batch-size", "32", "--space-options", json.dumps(TINY_MACRO),
            "--method-options", json.dumps(TINY_EVOLUTION), "--flops-budget", "3e5", "--quiet",
            "--out", str(out), *extra]


def test_cli_search_resume_evolve_export(tmp_path: Path) -> None:
    full, part = tmp_path / "full", tmp_path / "part"
    assert cli_main(_search_args(full)) == 0
    # killed after one epoch, then resumed: the same supernet and the same architecture
    assert cli_main(_search_args(part, "--stop-after", "1")) == 0
    assert not (part / "architecture.json").exists()
    assert cli_main(["search", "--resume", str(part), "--quiet"]) == 0
    a_full = json.loads((full / "architecture.json").read_text())
    a_part = json.loads((part / "architecture.json").read_text())
    assert a_full["native"] == a_part["native"]
    assert a_full["meta"]["flops"] <= 3e5 and a_full["meta"]["flops_budget"] == 3e5
    cfg = json.loads((full / "config.json").read_text())
    assert cfg["method_options"]["flops_budget"] == 3e5
    # evolution on the saved supernet, with training batches for BN, budget and export
    out = tmp_path / "evo"
    args = ["evolve", str(full), "--out", str(out), "--flops-budget", "2.5e5", "--population", "5",
            "--generations", "1", "--top-k", "2", "--mutations", "2", "--crossovers", "2", "--seed", "1",
            "--export", "--quiet"]
    assert cli_main(args) == 0
    res = json.loads((out / "evolution.json").read_text())
    assert res["flops"] <= 2.5e5 and res["replayed"] == 0
    arch = load_architecture(str(out / "architecture.json"))
    assert arch.meta["bn_recalibration"] == "train"
    net = get_space("macro", **TINY_MACRO).build_network(arch, 4, 3, 8)
    net.load_state_dict(torch.load(out / "subnet.pt"))
    # rerun (as after a kill): the same draws, all scores replayed from evaluations.jsonl
    assert cli_main(args) == 0
    res2 = json.loads((out / "evolution.json").read_text())
    assert res2["architecture"] == res["architecture"] and res2["replayed"] == res2["evaluated"]
    # the derived architecture retrains from scratch
    assert cli_main(["train", "--arch", str(out / "architecture.json"), "--dataset", "synthetic:3,8,4,64,32",
                     "--epochs", "1", "--batch-size", "32", "--space-options", json.dumps(TINY_MACRO),
                     "--out", str(tmp_path / "train"), "--quiet"]) == 0
    assert (tmp_path / "train" / "result.json").exists()


def test_cli_evolve_export_on_a_cell_space(tmp_path: Path) -> None:
    """NAS-Bench-201's stand-alone cells have affine batch norms where the supernet's are
    affine-free: the export keeps identity scale/shift there and copies every other weight."""
    run = tmp_path / "run"
    assert cli_main(["search", "--space", "nb201", "--method", "spos", "--dataset", "synthetic:3,8,4,128,32",
                     "--epochs", "1", "--batch-size", "32", "--space-options", '{"C": 4, "N": 1}',
                     "--quiet", "--out", str(run)]) == 0
    out = tmp_path / "evo"
    assert cli_main(["evolve", str(run), "--out", str(out), "--population", "4", "--generations", "1",
                     "--top-k", "2", "--mutations", "1", "--crossovers", "1", "--export", "--quiet"]) == 0
    arch = load_architecture(str(out / "architecture.json"))
    net = get_space("nb201", C=4, N=1).build_network(arch, 4, 3, 8)
    state = torch.load(out / "subnet.pt")
    net.load_state_dict(state)
    from attnas.search.export import supernet_key_map
    from attnas.from_run import load_search_run

    supernet = load_search_run(run).model
    supernet = getattr(supernet, "net", supernet)
    mapping, src = supernet_key_map(supernet, arch, net), supernet.state_dict()
    convs = [k for k, v in state.items() if k.endswith(".weight") and v.dim() == 4]
    assert convs and all(torch.equal(state[k], src[mapping[k]]) for k in convs)  # inherited, not fresh
    identity = [k for k in state if mapping[k] not in src]
    assert identity and all(k.rsplit(".", 1)[-1] in ("weight", "bias", "running_mean", "running_var",
                                                     "num_batches_tracked") for k in identity)


def test_files_written_before_the_units_are_read_as_macs(tmp_path: Path) -> None:
    """Issue 16: costs and budgets used to be multiply-accumulates called "flops"; old
    architecture.json meta and old run configs keep their meaning (read as macs)."""
    from attnas.run_dir import read_run_config

    old = {"space": "macro", "native": "11111221",
           "meta": {"flops": 5e7, "params": 1e6, "flops_budget": 6e7, "params_budget": None}}
    (tmp_path / "a.json").write_text(json.dumps(old))
    meta = load_architecture(str(tmp_path / "a.json")).meta
    assert meta["macs"] == 5e7 and meta["flops"] == 1e8 and meta["macs_budget"] == 6e7
    assert meta["flops_budget"] is None and meta["params"] == 1e6
    new = {"space": "macro", "native": "11111221", "meta": {"flops": 1e8, "macs": 5e7}}
    (tmp_path / "b.json").write_text(json.dumps(new))
    assert load_architecture(str(tmp_path / "b.json")).meta == new["meta"]
    run = tmp_path / "run"
    run.mkdir()
    resolved = {k: v for k, v in vars(get_preset("spos")).items() if k not in ("weights", "macs_budget")}
    (run / "config.json").write_text(json.dumps(
        {"space": "macro", "method": "spos", "method_options": {"flops_budget": 3e5},
         "resolved_method_options": {**resolved, "flops_budget": 3e5}}))
    assert read_run_config(run, "search")["method_options"] == {"macs_budget": 3e5}
    (run / "config.json").write_text(json.dumps(
        {"space": "macro", "method": "spos", "method_options": {"flops_budget": 3e5},
         "resolved_method_options": {**resolved, "flops_budget": 3e5, "macs_budget": None}}))
    assert read_run_config(run, "search")["method_options"] == {"flops_budget": 3e5}


def test_spos_recompute_option_same_gradients_checkpointed_blocks() -> None:
    """``recompute: "all"`` checkpoints every choice block of the single-path supernet (less memory,
    docs/benchmarks.md) with the same loss and gradients as the default "none"; a bad policy is a
    ConfigError before training."""
    from attnas.spaces.base import ChoiceBlock
    space = get_space("proxyless", variant="cifar")
    arch = space.sample(random.Random(3))
    results = []
    for policy in ("none", "all"):
        torch.manual_seed(0)
        st = get_strategy("spos", space, {"recompute": policy})
        model = st.build(10, 3, 16)
        blocks = [m for m in model.modules() if isinstance(m, ChoiceBlock)]
        assert blocks and all(b.recompute_min_side == (1 if policy == "all" else None) for b in blocks)
        activate(model, arch, st.points)
        x, y = _batches(1, size=4, classes=10, image=16)[0]
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (l0, g0), (l1, g1) = results
    torch.testing.assert_close(l0, l1)
    assert len(g0) == len(g1) > 0
    for a, b in zip(g0, g1):
        torch.testing.assert_close(a, b)
    with pytest.raises(ConfigError, match="recompute"):
        get_strategy("spos", space, {"recompute": "sometimes"}).build(10, 3, 16)


def _seeded_macro_spos(recompute: str):
    """SPOS on NAS-Bench-Macro at 16x16 with the given recompute policy, seeded."""
    torch.manual_seed(0)
    st = get_strategy("spos", get_space("macro"), {"recompute": recompute})
    st.seed(0)
    return st, st.build(10, 3, 16)


def test_recomputed_blocks_update_batch_norm_statistics_once() -> None:
    """A checkpointed block (and, under "all", a chain network's stem) runs its forward twice;
    its batch norms' running statistics and counters must be those of one forward (as without
    recompute), not updated twice."""
    from attnas.training.step import search_step
    state = {}
    for policy in ("none", "all"):
        st, model = _seeded_macro_spos(policy)
        opt = st.optimizers(model, steps_per_epoch=10, epochs=1)
        x, y = torch.randn(6, 3, 16, 16), torch.randint(0, 10, (6,))
        for i in range(2):
            search_step(st, model, opt, (x, y), None, 0, i)
        state[policy] = {k: v for k, v in model.net.state_dict().items() if "running" in k or "batches" in k}
    assert any(v.sum() > 0 for k, v in state["none"].items() if "batches" in k and k.startswith("layers"))
    assert int(state["all"]["stem.1.num_batches_tracked"]) == 2  # the recomputed stem counted once per step
    for k, v in state["none"].items():
        torch.testing.assert_close(state["all"][k], v, rtol=1e-5, atol=1e-6, msg=k)


def test_recompute_all_checkpoints_the_chain_stem_with_the_same_gradients() -> None:
    grads = {}
    for policy in ("none", "all"):
        st, model = _seeded_macro_spos(policy)
        assert model.net.recompute_stem == (policy == "all")
        activate(model, st.sample_paths(model)[0], st.points)
        x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        grads[policy] = {n: p.grad.clone() for n, p in model.net.named_parameters() if p.grad is not None}
        stem_out = model.net.stem(x.contiguous(memory_format=torch.channels_last)).shape
        grads[policy + "_stem_saved"] = sum(1 for s in saved if s == stem_out)
    assert grads["all_stem_saved"] < grads["none_stem_saved"]
    for n, g in grads["none"].items():
        torch.testing.assert_close(grads["all"][n], g, rtol=1e-4, atol=1e-6, msg=n)


def test_recompute_auto_checkpoints_the_path_at_imagenet_scale_only() -> None:
    from attnas.strategies.spos import RECOMPUTE_MIN_IMAGE

    assert get_preset("spos").recompute == "auto"
    st = get_strategy("spos", get_space("macro"))
    for side, expected in ((32, "none"), (RECOMPUTE_MIN_IMAGE - 1, "none"), (RECOMPUTE_MIN_IMAGE, "all")):
        assert st.recompute_policy(side) == expected
    assert get_strategy("spos", get_space("macro"), {"recompute": "none"}).recompute_policy(224) == "none"
    small, large = st.build(10, 3, 32), st.build(10, 3, RECOMPUTE_MIN_IMAGE)
    blocks = lambda m: [b for b in m.modules() if hasattr(b, "recompute_min_side")]  # noqa: E731
    assert all(b.recompute_min_side is None for b in blocks(small)) and not small.net.recompute_stem
    assert all(b.recompute_min_side == 1 for b in blocks(large)) and large.net.recompute_stem


def test_in_place_batch_norm_backward_is_exact() -> None:
    """bn_backward_ (BNActConv's, written over the output gradient) against PyTorch's kernel,
    float64, both layouts."""
    from attnas.ops.mobile import bn_backward_

    torch.manual_seed(0)
    for layout in (torch.contiguous_format, torch.channels_last):
        z = (torch.randn(5, 6, 7, 9, dtype=torch.float64) * 3 + 1).contiguous(memory_format=layout)
        dy = torch.randn_like(z)
        gamma = torch.rand(6, dtype=torch.float64) + 0.5
        _, mean, invstd = torch.ops.aten.native_batch_norm(z, gamma, torch.zeros_like(gamma), None, None,
                                                           True, 0.1, 1e-5)
        ref = torch.ops.aten.native_batch_norm_backward(dy, z, gamma, None, None, mean, invstd, True, 1e-5,
                                                        [True, True, True])
        grad = dy.clone()
        grad_gamma, grad_beta = bn_backward_(grad, z, gamma, mean, invstd)
        for got, want in zip((grad, grad_gamma, grad_beta), ref):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_bn_act_conv_backward_holds_one_extra_map_and_a_block() -> None:
    """Its backward needs z (saved), the recomputed activation a, and one block of the input
    gradient (written into a); PyTorch's own order would hold a full-size input gradient next
    to a, and its BN backward two more maps.  Measured with the CPU pool's in-use peak."""
    from attnas.ops import cpu_pool
    from attnas.ops.mobile import GRAD_BLOCKS

    if not cpu_pool.supported():
        pytest.skip(f"CPU pool unavailable: {cpu_pool.LIBRARY.error}")
    torch.manual_seed(0)
    bn, conv = nn.BatchNorm2d(16), nn.Conv2d(16, 16, 5, padding=2, groups=16, bias=False)
    with cpu_pool.active():
        z = torch.randn(8, 16, 64, 64).contiguous(memory_format=torch.channels_last).requires_grad_()
        out = bn_act_conv(bn, 6.0, conv, z)
        grad_out = torch.randn_like(out)
        size = z.numel() * z.element_size()
        cpu_pool.reset_peak()
        base = cpu_pool.stats()["in_use"]
        out.backward(grad_out)
        extra = cpu_pool.stats()["peak"] - base
    assert size <= extra <= size * (1 + 1 / GRAD_BLOCKS) + (1 << 20), (extra, size)
