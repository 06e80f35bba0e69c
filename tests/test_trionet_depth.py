"""TrioNet elastic depth (issue 16; paper Appendix A: 1-2, 2-3, 3-6, 1-3 blocks per stage):
the depth choice points, sampling (hierarchical, sandwich), costs, skipped blocks, the
architecture string, the evolution under a FLOPs budget, the derived network, weight decay."""
from __future__ import annotations

import json
import random

import pytest
import torch
from scipy.stats import chisquare

from attnas.arch import Architecture
from attnas.cli.main import main as cli_main
from attnas.errors import ArchitectureError, ConfigError
from attnas.ops.trio_supernet import SKIPPED, TrioBlock, TrioSuperBlock
from attnas.profile import count_params, profile_architecture
from attnas.search.evolution import Constraint, EvolutionSearch, recalibrate_bn
from attnas.search.export import export_subnet
from attnas.spaces.io import resolve_architecture, save_architecture
from attnas.spaces.registry import get_space, guess_space_of_native
from attnas.spaces.trionet import PAPER_DEPTH_CHOICES, SKIP, depth_key, operator_of
from attnas.strategies.base import get_strategy
from attnas.strategies.random_search import ABSENT, activate

#: two stages, the second elastic over 1-3 blocks, the first over 1-2: 5 blocks at most
ELASTIC = {"layout": "cifar", "width": 8, "heads": [1, 2], "depth_choices": [[1, 2], [1, 2, 3]]}
SPOS_EVOLUTION = {"population": 8, "generations": 3, "top_k": 3, "mutations": 4, "crossovers": 4,
                  "mutation_prob": 0.3, "bn_images": 16, "eval_images": 32}
EVOLUTION = {**SPOS_EVOLUTION, "warmup_epochs": 0}


def _space(**opts):
    return get_space("trionet", **{**ELASTIC, **opts})


def _arch(space, depths, op="conv_k3_e0.125"):
    """Every block ``op``, stage s at depth ``depths[s]`` (the blocks past it "none")."""
    choices = {depth_key(s): str(d) for s, d in enumerate(depths)}
    choices.update({p.key: op for p in space.layer_points()})
    return space.conform(Architecture("trionet", choices))


def _depths(arch, stages=2):
    return tuple(int(arch.choices[depth_key(s)]) for s in range(stages))


# --------------------------------------------------------------------------- the space


def test_depth_choice_points_defaults_and_options() -> None:
    paper = get_space("trionet", layout="imagenet")
    assert paper.depth_choices == PAPER_DEPTH_CHOICES == ((1, 2), (2, 3), (3, 4, 5, 6), (1, 2, 3))
    assert paper.depths == (2, 3, 6, 3)
    points = paper.choice_points()
    assert [(p.key, p.candidates) for p in points[:4]] == [
        ("depth:0", ("1", "2")), ("depth:1", ("2", "3")), ("depth:2", ("3", "4", "5", "6")), ("depth:3", ("1", "2", "3"))]
    assert [p.key for p in points[4:]] == [f"layer:{i}" for i in range(14)]
    # skippable: past each stage's smallest depth -- never the first block of a stage
    assert paper.skippable() == {1, 4, 8, 9, 10, 12, 13}
    assert paper.cardinality()["architectures"] == paper.cardinality()["paper_elastic_depth_same_candidates"]
    fixed = get_space("trionet", layout="imagenet", elastic_depth=False)  # the former fixed-depth space
    assert not fixed.elastic and fixed.depths == (2, 3, 6, 3) and len(fixed.choice_points()) == 14
    # small: fixed by default (as before), 1-2 blocks per stage on request; explicit depths: fixed
    assert not get_space("trionet").elastic and get_space("trionet").depths == (1, 1, 1)
    small = get_space("trionet", elastic_depth=True)
    assert small.depth_choices == ((1, 2),) * 3 and small.depths == (2, 2, 2)
    assert not get_space("trionet", size="paper", depths=[1, 2, 4, 1]).elastic
    assert _space().depths == (2, 3) and _space().skippable() == {1, 3, 4}
    for opts, msg in [({"depth_choices": [[0, 1], [1]]}, "depth_choices"),
                      ({"depth_choices": [[1, 1], [1]]}, "depth_choices"),
                      ({"depth_choices": [[1, 2]], "depths": [2, 1]}, "stages"),
                      ({"depth_choices": [[1, 2], [1]], "depths": [1, 1]}, "maxima"),
                      ({"depth_choices": [[1, 2], [1]], "elastic_depth": False}, "elastic_depth"),
                      ({"depth_choices": None, "depths": [1, 2], "elastic_depth": True}, "needs 'depth_choices'"),
                      ({"elastic_depth": "yes"}, "true or false")]:
        with pytest.raises(ConfigError, match=msg):
            get_space("trionet", **{"width": 8, "heads": [1, 2], **opts})


def test_validation_of_depths_and_skipped_blocks() -> None:
    space = _space()
    space.validate(_arch(space, (1, 2)))
    bad = _arch(space, (1, 2))
    bad.choices["layer:1"] = "conv_k3_e0.125"  # past stage 0's depth 1, must be skipped
    with pytest.raises(ArchitectureError, match=r"stage 0 runs 1 block.*layer:1.*'none'"):
        space.validate(bad)
    bad = _arch(space, (2, 3))
    bad.choices["layer:3"] = SKIP  # within the depth
    with pytest.raises(ArchitectureError, match=r"layer:3.*an operation"):
        space.validate(bad)
    bad = _arch(space, (2, 3))
    bad.choices["layer:2"] = SKIP  # the first block of a stage is never skipped
    with pytest.raises(ArchitectureError, match="not a choice of 'layer:2'"):
        space.validate(bad)
    bad = _arch(space, (2, 3))
    bad.choices["depth:1"] = "4"
    with pytest.raises(ArchitectureError, match="depth:1"):
        space.validate(bad)
    no_depths = Architecture("trionet", {p.key: "conv_k3_e0.125" for p in space.layer_points()})
    with pytest.raises(ArchitectureError, match="elastic_depth"):
        space.validate(no_depths)
    with pytest.raises(ArchitectureError, match="cannot be skipped"):
        space.make_op(SKIP, space.layer_specs()[2])


# --------------------------------------------------------------------------- sampling


def test_sampled_depths_are_uniform_and_skip_the_blocks_past_them() -> None:
    space = _space()
    n = 1800
    for mode in ("hierarchical", "uniform"):
        strat = get_strategy("trionet", space, {"sampling": mode, "sandwich": False})
        strat.seed(1)
        archs = [strat.sample_paths()[0] for _ in range(n)]
        for s, choices in enumerate(space.depth_choices):
            drawn = [int(a.choices[depth_key(s)]) for a in archs]
            counts = [drawn.count(d) for d in choices]
            assert min(counts) > 0 and chisquare(counts).pvalue > 1e-3, (mode, s, counts)
        for a in archs[:200]:
            space.validate(a)  # exactly the blocks past each depth are "none"
    # hierarchical: among the blocks that run, each operator a third of the time
    strat = get_strategy("trionet", space, {"sandwich": False})
    ops = [operator_of(v) for a in (strat.sample_arch() for _ in range(600)) for v in a.choices.values()
           if v != SKIP and not v.isdigit()]
    assert chisquare([ops.count(o) for o in ("conv", "local", "axial")]).pvalue > 1e-3
    # the evolution's random candidates draw the depths uniformly too
    strat = get_strategy("trionet", space, EVOLUTION)
    evo = strat.evolution_class(space, strat.cfg, random.Random(0), lambda a: 0.0)
    drawn = [int(evo._random().choices["depth:1"]) for _ in range(900)]
    assert chisquare([drawn.count(d) for d in (1, 2, 3)]).pvalue > 1e-3


def test_sandwich_biggest_has_the_greatest_depths_and_smallest_the_least() -> None:
    space = _space()
    for mode in ("hierarchical", "uniform"):
        strat = get_strategy("trionet", space, {"sampling": mode, "sandwich_random": 3})
        for _ in range(20):
            small, big, *rest = strat.sample_paths()
            assert _depths(small) == (1, 1) and _depths(big) == (2, 3)
            assert [k for k, v in small.choices.items() if v == SKIP] == ["layer:1", "layer:3", "layer:4"]
            assert SKIP not in big.choices.values()
            for a in (small, big, *rest):
                space.validate(a)
    # the count of training passes per depth (the strategy's scores) sees the sandwich's extremes
    strat = get_strategy("trionet", space, {"sandwich_random": 0})
    for a in strat.sample_paths() * 5:
        strat._count(a)
    assert strat.scores(None)["depth:1"] == [0.5, 0.0, 0.5]


# --------------------------------------------------------------------------- costs


def test_flops_count_only_the_blocks_that_run() -> None:
    space = _space()
    table = space.cost_table(4, 3, 16)
    for op in ("conv_k3_e0.125", "local_k3_e0.25_qk0.5_v0.5_h2", "axial_e0.5_qk1_v1_h2"):
        for depths in [(2, 3), (1, 3), (2, 2), (2, 1), (1, 1)]:
            a = _arch(space, depths, op)
            assert table.of(a) == profile_architecture(space, a, 4, 3, 16)  # analytic == the built network
        # one stage shallower, strictly fewer FLOPs and parameters
        for deeper, shallower in [((2, 3), (1, 3)), ((2, 3), (2, 2)), ((2, 2), (2, 1)), ((1, 2), (1, 1))]:
            hi, lo = table.of(_arch(space, deeper, op)), table.of(_arch(space, shallower, op))
            assert lo.flops < hi.flops and lo.params < hi.params, (op, deeper, shallower)
    # hand count, 16x16 RGB, 4 classes, every block conv_k3_e0.125, depths (1, 2): stage 0 is 32 wide
    # (mid 4), stage 1 64 (mid 8); multiply-accumulates per image
    stem = 16 * 16 * 8 * 3 * 9                                       # 3x3 conv 3 -> 8
    s0_b0 = 16 * 16 * (8 * 4 + 4 * 4 * 9 + 4 * 32 + 8 * 32)           # conv1, 3x3, conv3, 1x1 shortcut 8 -> 32
    s1_b0 = 16 * 16 * 32 * 8 + 8 * 8 * (8 * 8 * 9 + 8 * 64 + 32 * 64)  # conv1 at 16x16; stride 2: 3x3, conv3, shortcut
    s1_b1 = 8 * 8 * (64 * 8 + 8 * 8 * 9 + 8 * 64)                    # conv1, 3x3, conv3; identity shortcut
    classifier = 64 * 4
    macs = stem + s0_b0 + s1_b0 + s1_b1 + classifier                  # stage 0's block 1, stage 1's block 2 skipped
    cost = profile_architecture(space, _arch(space, (1, 2)), 4, 3, 16)
    assert (cost.macs, cost.flops) == (macs, 2 * macs) == (567552, 1135104)


def test_paper_space_reaches_the_trionet_budgets_below_the_fixed_depth() -> None:
    """At 224x224 the paper's elastic space reaches below the fixed 14-block network's cheapest."""
    paper, fixed = get_space("trionet", layout="imagenet"), get_space("trionet", layout="imagenet",
                                                                        elastic_depth=False)
    cheapest = "conv_k3_e0.125"
    lo = paper.cost_table(1000, 3, 224).of(_arch(paper, (1, 2, 3, 1), cheapest))
    lo_fixed = fixed.cost_table(1000, 3, 224).of(Architecture("trionet", {p.key: cheapest
                                                                          for p in fixed.choice_points()}))
    assert lo.flops < 3e9 < lo_fixed.flops  # TrioNet-B's 3 B budget: now within the space


# --------------------------------------------------------------------------- supernet and derived network


def _supernet(space, **method_options):
    strat = get_strategy("trionet", space, method_options)
    torch.manual_seed(0)
    model = strat.build(4, 3, 16)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # the last BNs' gamma too (0 at init)
    return strat, model


def test_skipped_blocks_are_not_executed() -> None:
    space = _space()
    strat, model = _supernet(space)
    blocks = list(model.net.layers)
    assert all(isinstance(b, TrioSuperBlock) for b in blocks)
    assert [b.skippable for b in blocks] == [False, True, False, True, True]
    calls = [0] * len(blocks)
    for i, b in enumerate(blocks):  # bn3 runs once per forward of a block that computes
        b.bn3.register_forward_hook(lambda m, inp, out, i=i: calls.__setitem__(i, calls[i] + 1))
    arch = _arch(space, (1, 2))
    activate(model, arch, strat.points)
    assert model.arch.active["layer:1"] == ABSENT == SKIPPED
    x = torch.randn(2, 3, 16, 16)
    model.train()
    model.zero_grad(set_to_none=True)
    model(x).sum().backward()
    assert calls == [1, 0, 1, 1, 0]
    assert all(p.grad is None for i in (1, 4) for p in blocks[i].parameters())
    assert blocks[0].conv1.weight.grad is not None and blocks[3].conv1.weight.grad is not None
    # a path that runs a skipped block's neighbours only: the same as a supernet without those blocks
    trimmed = torch.nn.Sequential(model.net.stem, blocks[0], blocks[2], blocks[3])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.net.features(x), trimmed(x))
    # the stand-alone network: only the chosen blocks (identities elsewhere), and it computes the path
    model.train()
    recalibrate_bn(model, [(x, None)])
    net = export_subnet(space, model, arch, 4, 3, 16)
    runs = [0]
    for m in net.modules():
        if isinstance(m, TrioBlock):
            m.register_forward_hook(lambda *_: runs.__setitem__(0, runs[0] + 1))
    kinds = [type(m).__name__ for m in net.layers]
    assert kinds == ["TrioBlock", "Identity", "TrioBlock", "TrioBlock", "Identity"]
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=1e-5, atol=1e-5)
    assert runs[0] == 3


def test_derived_network_holds_only_its_chosen_blocks() -> None:
    space = _space()
    rng = random.Random(3)
    for _ in range(6):
        arch = space.sample(rng)
        net = space.build_network(arch, 4, 3, 16)
        specs = space.layer_specs()
        chosen = [space.make_op(arch.choices[f"layer:{L.index}"], L) for L in specs
                  if arch.choices[f"layer:{L.index}"] != SKIP]
        assert len(chosen) == sum(_depths(arch))
        assert count_params(net) == (count_params(net.stem) + count_params(net.classifier)
                                     + sum(count_params(b) for b in chosen))
        assert count_params(net) == space.cost_table(4, 3, 16).of(arch).params


def test_weight_decay_of_the_biggest_path_covers_every_block() -> None:
    space = _space()
    strat, model = _supernet(space, weights={"weight_decay": 0.1})
    small, big = strat.sample_paths()[:2]
    blocks = list(model.net.layers)

    def decayed(arch):
        ids = {id(p) for p, _ in strat.decay_targets(model, arch)}
        return [any(id(p) in ids for p in b.parameters()) for b in blocks]

    assert decayed(big) == [True] * 5          # the blocks the smaller paths skip included
    assert decayed(small) == [True, False, True, False, False]
    stem = {id(p) for p in model.net.stem.parameters()}
    assert stem <= {id(p) for p, _ in strat.decay_targets(model, small)}


# --------------------------------------------------------------------------- notation and files


def test_architecture_string_round_trip_with_depths(tmp_path) -> None:
    space = _space()
    a = _arch(space, (1, 2))
    a.choices["layer:3"] = "axial_e0.5_qk1_v1_h2"
    native = space.to_native(a)
    assert native == "conv_k3_e0.125,none|conv_k3_e0.125,axial_e0.5_qk1_v1_h2,none"
    assert space.parse_native(native) == a and guess_space_of_native(native) == "trionet"
    rng = random.Random(0)
    for _ in range(30):
        b = space.sample(rng)
        assert space.parse_native(space.to_native(b)) == b
    one = get_space("trionet", width=8, heads=[1, 2], depth_choices=[[1, 2]])  # one stage: a trailing "|"
    c = _arch(one, (1,))
    assert one.to_native(c) == "conv_k3_e0.125,none|" and one.parse_native("conv_k3_e0.125,none|") == c
    # architecture.json: choices, native and depths survive a file
    save_architecture(a, tmp_path / "a.json")
    saved = json.loads((tmp_path / "a.json").read_text())
    assert saved["choices"]["depth:1"] == "2" and saved["native"] == native
    assert resolve_architecture(str(tmp_path / "a.json"), validate=False) == a
    for bad, msg in [("none,conv_k3_e0.125|conv_k3_e0.125", "first block"),
                     ("conv_k3_e0.125,none,conv_k3_e0.125|conv_k3_e0.125", "past the stage's depth")]:
        with pytest.raises(ArchitectureError, match=msg):
            space.parse_native(bad)


# --------------------------------------------------------------------------- evolution


def test_evolution_mutates_and_crosses_depths_within_the_flops_budget() -> None:
    space = _space()
    table = space.cost_table(4, 3, 16)
    costs = sorted({table.of(space.sample(random.Random(i))).flops for i in range(200)})
    budget = costs[len(costs) // 3]
    for method, options in (("trionet", EVOLUTION), ("spos", SPOS_EVOLUTION)):
        strat = get_strategy(method, space, options)
        fitness = lambda a: table.of(a).flops / budget  # noqa: E731 - the deepest, widest within budget wins
        evo = strat.evolution_class(space, strat.cfg, random.Random(1), fitness,
                                    Constraint(space, 4, 3, 16, flops_budget=budget))
        result = evo.run()
        assert result.evaluated and all(table.of(a).flops <= budget for a in result.evaluated)
        for a in result.evaluated:
            space.validate(a)
        assert len({_depths(a) for a in result.evaluated}) >= 3  # several depths were tried
        assert table.of(result.best).flops <= budget and evo.rejected["constraint"] > 0
    # mutation and crossover change depths, and keep the children valid
    evo = EvolutionSearch(space, get_strategy("spos", space, {**SPOS_EVOLUTION, "mutation_prob": 1.0}).cfg,
                          random.Random(2), lambda a: 0.0)
    shallow, deep = _arch(space, (1, 1)), _arch(space, (2, 3), "axial_e0.5_qk1_v1_h2")
    children = [evo._mutate(shallow) for _ in range(30)]
    assert any(_depths(c) != (1, 1) for c in children)
    crosses = [evo._crossover(shallow, deep) for _ in range(30)]
    assert {_depths(c) for c in crosses} == {(1, 1), (1, 3), (2, 1), (2, 3)}
    for c in children + crosses:
        space.validate(c)
    for c in crosses:  # a block the child runs comes from the parent that runs it
        assert all(c.choices[f"layer:{i}"] == "axial_e0.5_qk1_v1_h2" for i in (1, 3, 4)
                   if c.choices[f"layer:{i}"] != SKIP)


def test_cli_search_evolve_profile_and_train_with_depths(tmp_path, capsys) -> None:
    opts = {**ELASTIC}
    run = tmp_path / "s"
    code = cli_main(["search", "--space", "trionet", "--method", "trionet", "--space-options", json.dumps(opts),
                     "--method-options", json.dumps(EVOLUTION), "--dataset", "synthetic:3,16,4,64,32",
                     "--epochs", "1", "--batch-size", "16", "--seed", "1", "--flops-budget", "1.6e6",
                     "--out", str(run), "--quiet"])
    assert code == 0
    # the run records the resolved elastic_depth, so a later change of default cannot reopen it
    # as another space; a TrioNet run recorded before elastic depth reopens at fixed depth
    from attnas.run_dir import read_run_config

    assert json.loads((run / "config.json").read_text())["space_options"]["elastic_depth"] is True
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text(json.dumps({"space": "trionet", "method": "trionet",
                                                    "space_options": {"size": "paper"}}))
    assert read_run_config(legacy, "search")["space_options"] == {"size": "paper", "elastic_depth": False}
    saved = json.loads((run / "architecture.json").read_text())
    space = _space()
    arch = space.parse_native(saved["native"])
    assert arch.choices == saved["choices"] and {"depth:0", "depth:1"} <= set(saved["choices"])
    assert saved["meta"]["flops"] == space.cost_table(4, 3, 16).of(arch).flops <= 1.6e6
    capsys.readouterr()
    assert cli_main(["evolve", str(run), "--flops-budget", "1.5e6", "--export", "--quiet", "--json"]) == 0
    evolved = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evolved["flops"] <= 1.5e6 and (run / "evolve" / "subnet.pt").exists()
    space.validate(space.parse_native(evolved["architecture"]))
    assert cli_main(["profile", "--arch", str(run / "architecture.json"), "--json"]) == 0
    prof = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert prof["flops"] == saved["meta"]["flops"]
    assert [r["choice"] for r in prof["layers"] if r["name"].startswith("layers.")] == \
        [v for k, v in arch.choices.items() if k.startswith("layer:") and v != SKIP]
    # TorchScript of the derived network with the weights it inherits from the elastic supernet
    assert cli_main(["export", "--from-run", str(run), "--format", "torchscript", "-o", str(tmp_path / "n.pt"),
                     "--json"]) == 0
    exported = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert exported["weights"] == "inherited" and exported["params"] == saved["meta"]["params"]
    assert exported["max_abs_diff"] <= exported["tolerance"]
    # the options the search was given are its options (the recorded elastic_depth resolved
    # from them); other ones are refused
    assert cli_main(["export", "--from-run", str(run), "--space-options", json.dumps(opts), "--format",
                     "torchscript", "-o", str(tmp_path / "n2.pt")]) == 0
    assert cli_main(["export", "--from-run", str(run), "--space-options", json.dumps({**opts, "width": 16}),
                     "--format", "torchscript", "-o", str(tmp_path / "n3.pt")]) == 2
    assert not (tmp_path / "n3.pt").exists()
    capsys.readouterr()
    code = cli_main(["train", "--arch", str(run / "architecture.json"), "--dataset", "synthetic:3,16,4,64,32",
                     "--epochs", "1", "--batch-size", "16", "--out", str(tmp_path / "t"), "--quiet"])
    assert code == 0
    state = torch.load(tmp_path / "t" / "weights.pt", weights_only=True)  # the trained network's state dict
    trained = {k.split(".")[1] for k in state if k.startswith("layers.")}
    assert trained == {k.split(":")[1] for k, v in arch.choices.items() if k.startswith("layer:") and v != SKIP}

