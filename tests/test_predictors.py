"""TNASP, the MLP/GCN baselines, self-evolution, encoders and predictor-guided search.

Fast: tiny networks and step counts; real-data tests skip when the data folder is absent.
"""
from __future__ import annotations

import itertools
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from attnas.arch import Architecture, layer_key
from attnas.cli.main import main
from attnas.errors import ArchitectureError, AttnasError, ConfigError, DataFileNotFound
from attnas.predictors import (ChainEncoder, EncodedBatch, NB101Encoder, SelfEvolution, SelfEvolutionConfig,
                               TNASPNet, encoder_for, get_predictor, lagrangian, normalized_laplacian,
                               positional_encoding)
from attnas.predictors.guided_search import (SearchResult, mutate, predictor_guided_search, random_search,
                                             regularized_evolution)
from attnas.predictors.tnasp import TNASPConfig
from attnas.predictors.train import override
from attnas.spaces.base import ChoicePoint, SearchSpace
from attnas.spaces.nb201 import NB201Space
from attnas.spaces.registry import get_space, space_names

REPO = Path(__file__).resolve().parents[1]
TINY = {"d_model": 32, "d_ff": 64, "mlp_hidden": 32, "epochs": 1, "min_steps": 150, "batch_size": 32}
TINY_BASE = {"epochs": 1, "min_steps": 150, "batch_size": 32}


def _data_dir() -> Path | None:
    env = os.environ.get("ATTNAS_DATA_DIR")
    if env and Path(env).is_dir():
        return Path(env)
    p = REPO.parent / "shared" / "data"
    return p if p.is_dir() else None


DATA = _data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="benchmark data folder not found "
                                                     "(set ATTNAS_DATA_DIR or provide <repo>/../shared/data)")


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class ToyChain(SearchSpace):
    """A tiny chain space (keys layer:i), not registered: 5 layers x 3 operations = 243 architectures."""

    name = "toychain"
    OPS = ("id", "conv3", "conv5")

    def __init__(self, layers: int = 5) -> None:
        self.layers = layers

    def choice_points(self) -> list[ChoicePoint]:
        return [ChoicePoint(layer_key(i), self.OPS, layer_key(i)) for i in range(self.layers)]

    def build_supernet(self, mixer_factory, num_classes, in_channels, image_size):  # pragma: no cover
        raise NotImplementedError("test space: encoding only")

    def build_network(self, arch, num_classes, in_channels, image_size, **options):  # pragma: no cover
        raise NotImplementedError("test space: encoding only")

    def all(self) -> list[Architecture]:
        return [Architecture(self.name, {layer_key(i): o for i, o in enumerate(ops)})
                for ops in itertools.product(self.OPS, repeat=self.layers)]


def toy_score(a: Architecture) -> float:
    """Deeper layers matter more; conv5 after conv3 gets a bonus (an interaction)."""
    ops = [a.choices[layer_key(i)] for i in range(5)]
    val = {"id": 0.0, "conv3": 1.0, "conv5": 1.6}
    s = sum((i + 1) * val[o] for i, o in enumerate(ops))
    s += sum(1.5 for x, y in zip(ops, ops[1:]) if (x, y) == ("conv3", "conv5"))
    return 80.0 + s


# ----------------------------------------------------------------------------- Laplacian
def test_normalized_laplacian_on_a_hand_made_graph() -> None:
    # directed path 0 -> 1 -> 2 plus an isolated vertex 3
    a = np.zeros((4, 4))
    a[0, 1] = a[1, 2] = 1
    lap = normalized_laplacian(a)
    r = 1 / np.sqrt(2)
    expected = np.array([[1, -r, 0, 0], [-r, 1, -r, 0], [0, -r, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(lap, expected, atol=1e-12)
    assert np.allclose(lap, lap.T)                      # symmetrised
    lap3 = lap[:3, :3]
    w, v = np.linalg.eigh(lap3)
    np.testing.assert_allclose(w, [0.0, 1.0, 2.0], atol=1e-12)  # path graph P3 spectrum, in [0, 2]
    d_half = np.sqrt([1, 2, 1])
    np.testing.assert_allclose(lap3 @ d_half, 0.0, atol=1e-12)  # D^{1/2} 1 spans the kernel
    # direction is irrelevant (symmetrised), positional rows are zero for the isolated vertex
    np.testing.assert_allclose(normalized_laplacian(a.T), lap)
    pe = positional_encoding(a[None], np.array([4]), "laplacian")[0]
    np.testing.assert_allclose(pe, expected, atol=1e-6)
    eig = positional_encoding(a[None], np.array([3]), "laplacian_eig")[0]
    assert np.all(eig[3] == 0) and np.all(eig[:, 3] == 0)
    np.testing.assert_allclose(np.abs(eig[:3, :3].T @ eig[:3, :3]), np.eye(3), atol=1e-6)  # orthonormal
    assert np.all(positional_encoding(a[None], np.array([4]), "none") == 0)
    with pytest.raises(ConfigError, match="unknown positional encoding"):
        positional_encoding(a[None], np.array([4]), "sinusoid")


# ----------------------------------------------------------------------------- encoders
def test_nb201_subdivision_graph() -> None:
    enc = encoder_for("nb201")
    arch = NB201Space.parse_native("|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|")
    g = enc.graph(arch)
    assert g.tokens == ["input", "nor_conv_3x3", "node", "none", "avg_pool_3x3", "node",
                        "skip_connect", "nor_conv_3x3", "none", "output"]
    a = g.adjacency
    assert np.all(np.tril(a) == 0)                       # topological token order
    assert a[0, 1] == a[1, 2] == 1                        # node0 -> edge(0->1) -> node1
    assert a[3].sum() == 0 and a[:, 3].sum() == 0         # 'none' edge: a token, but not wired
    assert a[8].sum() == 0 and a[:, 8].sum() == 0
    assert a[7, 9] == 1 and a[5, 7] == 0 and a[2, 7] == 1  # edge 1->3 fed by node1, feeds the output
    b = enc.encode([arch])
    lap = normalized_laplacian(a)
    np.testing.assert_allclose(b.pos[0].numpy(), lap, atol=1e-6)  # PE = rows of L
    assert b.mask.all() and b.ops.shape == (1, 10)


def test_every_registered_space_is_encodable() -> None:
    rng = random.Random(0)
    covered = []
    for name in space_names():
        try:
            space = get_space(name, data_dir=str(DATA)) if DATA else get_space(name)
        except (ConfigError, DataFileNotFound):
            try:
                space = get_space(name)
            except (ConfigError, DataFileNotFound):
                continue  # needs a data file that is absent
        enc = encoder_for(space)
        archs = [space.sample(rng) for _ in range(3)]
        b = enc.encode(archs)
        net = TNASPNet(enc, TNASPConfig(**{k: v for k, v in TINY.items() if k in ("d_model", "d_ff", "mlp_hidden")}))
        assert net(b).shape == (3,)
        covered.append(name)
    assert "nb201" in covered and "darts" in covered
    assert len(covered) >= len(space_names()) - 1, covered  # at most S1 skipped (needs its data file)


def test_chain_encoder_on_a_fake_chain_space() -> None:
    space = ToyChain()
    enc = encoder_for(space)
    assert isinstance(enc, ChainEncoder) and enc.max_tokens == 5 and set(enc.vocab) == set(ToyChain.OPS)
    g = enc.graph(space.all()[5])
    assert g.adjacency[0, 1] == 1 and g.adjacency.sum() == 4  # a path
    with pytest.raises(ArchitectureError, match="not a candidate of 'layer:2'"):
        enc.encode([Architecture("toychain", {**space.all()[0].choices, "layer:2": "conv7"})])


def test_tnasp_auto_readout_flattens_chains_and_large_graph_sets() -> None:
    """readout "auto": a chain's token slots are its layers, so TNASP keeps them apart (flatten) at
    any training size; graph encodings pool by mean below flatten_min_train architectures."""
    chain = ToyChain()
    archs = chain.all()[:12]
    y = np.linspace(80.0, 90.0, len(archs))
    p = get_predictor("tnasp", encoder_for(chain), 0, epochs=1, min_steps=2)
    assert encoder_for(chain).positional_slots and p.fit(archs, y).readout == "flatten"
    enc = encoder_for("nb201")
    cells = [NB201Space.parse_native(s) for s in (
        "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|none~1|nor_conv_3x3~2|",
        "|skip_connect~0|+|nor_conv_3x3~0|none~1|+|nor_conv_1x1~0|none~1|none~2|")]
    assert not enc.positional_slots
    small = get_predictor("tnasp", enc, 0, epochs=1, min_steps=2)
    assert small.fit(cells, [70.0, 80.0, 90.0]).readout == "mean"
    big = get_predictor("tnasp", enc, 0, epochs=1, min_steps=2, flatten_min_train=3)
    assert big.fit(cells, [70.0, 80.0, 90.0]).readout == "flatten"


def test_darts_genotype_encoding() -> None:
    from attnas.benchmarks.darts214 import genotype_to_architecture

    geno = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
            "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
            "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
            "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")  # DARTS-V2
    enc = encoder_for("darts")
    b = enc.encode([genotype_to_architecture(geno)])
    assert enc.num_segments == 2 and b.ops.shape == (1, 42)
    assert set(b.seg[0].tolist()) == {0, 1}
    adj = b.adj[0]
    assert float(adj[:21, 21:].sum()) == 0.0       # the two cells are separate graphs
    out = 20                                       # normal cell's output token: fed by the 4 intermediate nodes
    assert enc.vocab[int(b.ops[0, out]) - 1] == "output" and float(adj[:, out].sum()) == 4.0
    assert float(adj.sum()) == 2 * (2 * 8 + 4)     # 8 wired edges per cell (2 graph edges each) + 4 concat


def test_nb101_padding_is_masked() -> None:
    # input -> conv3x3 -> output, plus vertices that NAS-Bench-101 prunes (dead ends / isolated)
    raw = np.zeros((7, 7), dtype=int)
    raw[0, 1] = raw[1, 6] = raw[0, 6] = 1
    raw[0, 2] = 1                 # dead end
    raw[3, 6] = 1                 # not reachable from the input
    raw_ops = ["input", "conv3x3-bn-relu", "maxpool3x3", "conv1x1-bn-relu", "maxpool3x3", "conv3x3-bn-relu", "output"]
    small = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    small_ops = ["input", "conv3x3-bn-relu", "output"]
    enc = NB101Encoder()
    b_raw, b_small = enc.encode([(raw, raw_ops)]), enc.encode([(small, small_ops)])
    for f in ("ops", "adj", "mask", "pos"):
        assert torch.equal(getattr(b_raw, f), getattr(b_small, f))
    assert b_raw.mask[0].tolist() == [True] * 3 + [False] * 4
    other = (np.triu(np.ones((5, 5), dtype=int), 1), ["input", "maxpool3x3", "conv1x1-bn-relu", "maxpool3x3", "output"])
    batch = enc.encode([(raw, raw_ops), other])
    y = [90.0, 85.0]
    for name, extra in (("tnasp", {}), ("tnasp", {"readout": "flatten"}), ("gcn", {}), ("mlp", {})):
        p = get_predictor(name, enc, 0, epochs=1, min_steps=3, **extra)
        p.fit(batch, y)
        ref = p.predict(enc.encode([(small, small_ops)]))
        assert p.predict(enc.encode([(raw, raw_ops)])) == pytest.approx(ref, abs=1e-6)
        if name != "mlp":  # garbage in the padded slots cannot leak into the prediction
            g = EncodedBatch(b_small.ops.clone(), b_small.adj.clone(), b_small.mask, b_small.seg, b_small.pos.clone())
            g.ops[0, 3:] = 3
            g.pos[0, 3:] = torch.randn(4, 7)
            g.adj[0, 3:, 3:] = 1.0
            assert p.predict(g) == pytest.approx(ref, abs=1e-5)
    with pytest.raises(ArchitectureError, match="no path from the input"):
        enc.encode([(np.zeros((3, 3), dtype=int), ["input", "maxpool3x3", "output"])])


def test_malformed_architectures_give_clear_errors() -> None:
    enc = encoder_for("nb201")
    good = NB201Space.parse_native("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    with pytest.raises(ArchitectureError, match="not a candidate of 'cell:0->1'"):
        enc.encode([Architecture("nb201", {**good.choices, "cell:0->1": "conv_9x9"})])
    with pytest.raises(ArchitectureError, match="missing"):
        enc.encode([Architecture("nb201", {"cell:0->1": "none"})])
    with pytest.raises(ArchitectureError, match="space 'darts'"):
        enc.encode([Architecture("darts", dict(good.choices))])
    with pytest.raises(ArchitectureError):
        enc.encode(["|nope|"])
    with pytest.raises(ConfigError, match="unknown predictor"):
        get_predictor("xgboost", enc)
    with pytest.raises(ConfigError, match="unknown option"):
        get_predictor("tnasp", enc, 0, layers=4)


# ----------------------------------------------------------------------------- training
def test_standardization_statistics_come_from_the_training_data() -> None:
    space = ToyChain()
    archs = space.all()[:40]
    y = np.array([toy_score(a) for a in archs])
    p = get_predictor("mlp", encoder_for(space), 0, epochs=1, min_steps=5)
    p.fit(archs, y)
    assert p.y_mean == pytest.approx(y.mean()) and p.y_std == pytest.approx(y.std())
    p.fit(archs, y * 2 + 7)  # refit: new statistics, nothing cached from before
    assert p.y_mean == pytest.approx(2 * y.mean() + 7) and p.y_std == pytest.approx(2 * y.std())
    assert np.all(np.abs(p.predict(archs) - p.y_mean) < 10 * p.y_std)  # accuracy units, not standardized


@pytest.mark.parametrize("name", ["tnasp", "gcn", "mlp"])
def test_predictor_learns_a_toy_ranking(name: str) -> None:
    space = ToyChain()
    archs = space.all()
    y = np.array([toy_score(a) for a in archs])
    tr = np.random.default_rng(0).permutation(len(archs))[:60]
    p = get_predictor(name, encoder_for(space), 0, **(TINY if name == "tnasp" else TINY_BASE))
    p.fit([archs[i] for i in tr], y[tr])
    tau = kendalltau(p.predict(archs), y)[0]
    assert tau > 0.5, f"{name}: tau {tau:.3f}"


def test_results_are_reproducible_by_seed() -> None:
    space = ToyChain()
    archs = space.all()[:50]
    y = [toy_score(a) for a in archs]
    enc = encoder_for(space)
    small = {**TINY, "min_steps": 20}
    p1 = get_predictor("tnasp", enc, 3, **small).fit(archs, y).predict(archs)
    p2 = get_predictor("tnasp", enc, 3, **small).fit(archs, y).predict(archs)
    p3 = get_predictor("tnasp", enc, 4, **small).fit(archs, y).predict(archs)
    np.testing.assert_array_equal(p1, p2)
    assert not np.allclose(p1, p3)


def test_positional_encoding_switch() -> None:
    enc = encoder_for("nb201", pe="none")
    net = TNASPNet(enc, TNASPConfig(pe="none", d_model=32, d_ff=64, mlp_hidden=32)).eval()
    assert net.pos_proj is None
    arch = NB201Space.parse_native("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|")
    b = enc.encode([arch])
    b2 = EncodedBatch(b.ops, b.adj, b.mask, b.seg, torch.randn_like(b.pos))
    assert torch.equal(net(b), net(b2))  # positions ignored when switched off
    net_on = TNASPNet(encoder_for("nb201"), TNASPConfig(d_model=32, d_ff=64, mlp_hidden=32)).eval()
    assert not torch.equal(net_on(b), net_on(b2))


def test_unused_edge_tokens_can_be_masked() -> None:
    """none_tokens="mask": the 20 unused ('none') edge tokens of a DARTS genotype neither attend,
    nor are attended to, nor are read out; with "keep" they are ordinary tokens."""
    from attnas.benchmarks.darts214 import genotype_to_architecture

    geno = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
            "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
            "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
            "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")
    enc = encoder_for("darts")
    assert enc.vocab[enc.unused_token_id - 1] == "none"
    assert encoder_for("nb101").unused_token_id == -1 and encoder_for(ToyChain()).unused_token_id == -1
    b = enc.encode([genotype_to_architecture(geno)])
    unused = b.ops[0] == enc.unused_token_id
    assert int(unused.sum()) == 2 * (14 - 8)  # 14 candidate edges per cell, 8 used
    small = {"d_model": 32, "d_ff": 64, "mlp_hidden": 32}
    masked = TNASPNet(enc, TNASPConfig(none_tokens="mask", **small)).eval()
    assert masked.token_mask(b)[0].tolist() == (~unused).tolist()
    # an unused token whose inputs change (segment flipped, a made-up position) changes nothing when masked
    seg2 = torch.where(unused[None], 1 - b.seg, b.seg)
    pos2 = b.pos.clone()
    pos2[0, unused] = torch.randn(int(unused.sum()), pos2.shape[-1])
    b2 = EncodedBatch(b.ops, b.adj, b.mask, seg2, pos2)
    assert torch.equal(masked(b), masked(b2))
    kept = TNASPNet(enc, TNASPConfig(none_tokens="keep", **small)).eval()
    assert not torch.equal(kept(b), kept(b2))
    with pytest.raises(ConfigError, match="none_tokens"):
        get_predictor("tnasp", enc, 0, none_tokens="drop")


# ----------------------------------------------------------------------------- self-evolution
def test_lagrangian_gradients_follow_eq_11_to_13() -> None:
    V = 4
    f_v = torch.tensor([0.5, -0.2, 1.0, 0.0])
    ybar = torch.tensor([0.0, 0.0, 0.0, 0.0], requires_grad=True)
    yhats = torch.tensor([[1.0, 1.0, 1.0, 1.0], [-1.0, 0.0, 0.0, 0.0]])
    errors = torch.tensor([0.5, 2.0])
    lam = torch.tensor([0.8, -0.3], requires_grad=True)
    alpha = 0.7
    L = lagrangian(torch.zeros(3), torch.zeros(3), f_v, ybar, lam, yhats, errors, alpha)
    L.backward()
    # ∂L/∂λ_t = (1/T) (mean_j (ŷ_j^t - ȳ_j)^2 - e^t): λ grows where the constraint distance is too large
    viol = (yhats - ybar.detach()).pow(2).mean(1) - errors
    np.testing.assert_allclose(lam.grad.numpy(), (viol / 2).numpy(), atol=1e-6)
    assert lam.grad[0] > 0 and lam.grad[1] < 0
    # ∂L/∂ȳ_j = -2α/V (f(v_j) - ȳ_j) + (1/T) Σ_t λ_t (2/V) (ȳ_j - ŷ_j^t)
    expect = -2 * alpha / V * (f_v - ybar.detach()) + (lam.detach()[:, None] * 2 / V * (ybar.detach() - yhats)).mean(0)
    np.testing.assert_allclose(ybar.grad.numpy(), expect.numpy(), atol=1e-6)
    # Eq. 12 descends: with λ = 0 the step moves ȳ towards f(v); with λ_t > 0 towards ŷ^t, λ_t < 0 away from it
    y0 = torch.zeros(V, requires_grad=True)
    lagrangian(torch.zeros(1), torch.zeros(1), f_v, y0, torch.zeros(1), yhats[:1], errors[:1], alpha).backward()
    assert torch.all(torch.sign(-y0.grad) == torch.sign(f_v - 0.0))
    for sign in (1.0, -1.0):
        y1 = torch.zeros(V, requires_grad=True)
        lagrangian(torch.zeros(1), torch.zeros(1), torch.zeros(V), y1, torch.tensor([sign]), yhats[:1],
                   errors[:1], 0.0).backward()
        assert torch.all(torch.sign(-y1.grad) == sign * torch.sign(yhats[0] - 0.0))


def test_self_evolution_updates_and_changes_predictions() -> None:
    space = ToyChain()
    archs = space.all()
    y = np.array([toy_score(a) for a in archs])
    perm = np.random.default_rng(1).permutation(len(archs))
    tr, va = perm[:40], perm[40:80]
    enc = encoder_for(space)
    p = get_predictor("mlp", enc, 0, **TINY_BASE)
    p.fit([archs[i] for i in tr], y[tr])
    before = p.predict(archs)
    # one round, one minimax iteration: ȳ starts at ŷ^(1), so the constraint violation is -e^(1)
    # and Eq. 13 gives λ = η_λ * (0 - e^(1)) / 1 < 0
    cfg = SelfEvolutionConfig(rounds=1, steps=1, lr_lambda=0.5)
    se = SelfEvolution(p, cfg).evolve([archs[i] for i in tr], y[tr], [archs[i] for i in va], y[va])
    assert len(se.errors) == 1 and se.errors[0] > 0
    assert se.lambdas[0] == pytest.approx(-0.5 * se.errors[0], rel=1e-5)
    se2 = SelfEvolution(p, SelfEvolutionConfig(rounds=3, steps=20)).evolve(
        [archs[i] for i in tr], y[tr], [archs[i] for i in va], y[va])
    assert len(se2.errors) == 3 and len(se2.lambdas) == 3 and se2.ybar.shape == (40,)
    after = p.predict(archs)
    assert not np.allclose(before, after)
    with pytest.raises(ConfigError, match="trained predictor"):
        SelfEvolution(get_predictor("mlp", enc)).evolve(archs[:5], y[:5], archs[5:9], y[5:9])


def test_self_evolution_constraint_set_and_ybar_init() -> None:
    space = ToyChain()
    archs = space.all()
    y = np.array([toy_score(a) for a in archs])
    perm = np.random.default_rng(2).permutation(len(archs))
    tr, va = perm[:40], perm[40:80]
    Xt, Xv = [archs[i] for i in tr], [archs[i] for i in va]
    enc = encoder_for(space)
    p = get_predictor("mlp", enc, 0, **TINY_BASE)
    p.fit(Xt, y[tr])
    state = {k: v.clone() for k, v in p.net.state_dict().items()}
    assert SelfEvolutionConfig().constraints == "all" and SelfEvolutionConfig().ybar_init == "prediction"

    def evolve(**kw):
        p.net.load_state_dict(state)
        return SelfEvolution(p, SelfEvolutionConfig(**kw)).evolve(Xt, y[tr], Xv, y[va])

    # "latest": each round has one multiplier, starting at 0; with one step per round round 1's λ is
    # η_λ (0 - e^(1)) and is not updated again, while "all" keeps updating it in round 2
    kw = {"rounds": 2, "steps": 1, "lr_lambda": 0.5}
    latest, every = evolve(constraints="latest", **kw), evolve(**kw)
    assert len(latest.lambdas) == 2 and len(every.lambdas) == 2
    assert latest.lambdas[0] == pytest.approx(-0.5 * latest.errors[0], rel=1e-5)
    assert every.lambdas[0] != pytest.approx(-0.5 * every.errors[0], rel=1e-3)
    # round 2's multiplier: "latest" sees the full violation, "all" half of it (the 1/t of Eq. 10)
    assert latest.lambdas[1] == pytest.approx(2 * every.lambdas[1], rel=1e-4)
    # "sphere": ȳ starts on the first constraint's sphere (violation 0), and stays there with η_ȳ = 0
    p.net.load_state_dict(state)
    yhat1 = p.predict_standardized(Xv)
    sph = evolve(ybar_init="sphere", rounds=1, steps=1, lr_ybar=0.0)
    assert float((sph.ybar - yhat1).pow(2).mean()) == pytest.approx(sph.errors[0], rel=1e-4)
    assert sph.lambdas[0] == pytest.approx(0.0, abs=1e-5)
    pred = evolve(rounds=1, steps=1, lr_ybar=0.0)
    assert torch.equal(pred.ybar, yhat1)
    for bad in ({"constraints": "some"}, {"ybar_init": "labels"}):
        with pytest.raises(ConfigError, match="self-evolution"):
            SelfEvolutionConfig(**bad)
        with pytest.raises(ConfigError):
            override(SelfEvolutionConfig(), bad)


# ----------------------------------------------------------------------------- guided search
def test_guided_search_beats_random_on_a_toy_table() -> None:
    space = ToyChain()
    archs = space.all()
    table = {tuple(sorted(a.choices.items())): toy_score(a) for a in archs}
    best = max(table.values())

    def evaluate(a: Architecture) -> float:
        return table[tuple(sorted(a.choices.items()))]

    enc = encoder_for(space)
    encoded = enc.encode(archs)
    guided, rand = [], []
    for seed in range(4):
        mk = lambda r, s=seed: get_predictor("mlp", enc, s * 100 + r, epochs=1, min_steps=20)
        g = predictor_guided_search(evaluate, mk, budget=60, candidates=archs, initial=10, batch=5, seed=seed,
                                    encoded=encoded)
        r = random_search(evaluate, 243, candidates=archs, seed=seed)
        guided.append(g.evaluations_to_reach(best) or 61)
        rand.append(r.evaluations_to_reach(best))
        assert g.best_curve == sorted(g.best_curve) and len(set(map(str, g.archs))) == len(g.archs)
    assert np.mean(guided) < np.mean(rand), (guided, rand)
    assert max(guided) <= 60  # found within the budget every time (random needs 122 on average)


def test_guided_search_on_sampled_pools_and_evolution() -> None:
    space = ToyChain()
    mk = lambda r: get_predictor("mlp", encoder_for(space), r, epochs=1, min_steps=20)
    res = predictor_guided_search(toy_score, mk, budget=25, space=space, initial=10, batch=5, pool_size=50, seed=0)
    assert len(res.scores) == 25 and res.predictor_fits == 3
    ev = regularized_evolution(toy_score, 40, space, population=10, sample=3, seed=0)
    assert len(ev.scores) == 40 and ev.best()[1] == max(ev.scores)
    child = mutate(space.all()[0], space, random.Random(0))
    assert sum(child.choices[k] != space.all()[0].choices[k] for k in child.choices) == 1
    best = max(toy_score(a) for a in space.all())
    rs = random_search(toy_score, 243, candidates=space.all(), seed=1, stop=lambda res: max(res.scores) >= best)
    assert rs.scores[-1] == best and rs.evaluations_to_reach(best) == len(rs.scores) < 243  # stop rule
    r = SearchResult("x", ["a", "b", "c"], [1.0, 3.0, 2.0])
    assert r.best_curve == [1.0, 3.0, 3.0] and r.evaluations_to_reach(2.5) == 2
    assert r.evaluations_to_reach(1.5, values=[0.0, 0.0, 9.0]) is None  # incumbents a, b, b report 0.0
    with pytest.raises(ConfigError):
        predictor_guided_search(toy_score, mk, budget=5, space=space, candidates=[1])


# ----------------------------------------------------------------------------- CLI / API on real data
@needs_data
def test_cli_predict_json_last_line(capsys: pytest.CaptureFixture) -> None:
    opts = json.dumps({"epochs": 1, "min_steps": 15, "d_model": 16, "d_ff": 32, "mlp_hidden": 16})
    rc = main(["predict", "--bench", "nb201", "--train-size", "30", "--seed", "1", "--self-evolution",
               "--options", opts, "--se-options", '{"rounds": 2, "steps": 2}', "--data-dir", str(DATA), "--json"])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    res = json.loads(lines[-1])
    assert res["train_size"] == 30 and res["seed"] == 1 and -1 <= res["kendall_tau"] <= 1
    assert res["evaluated_on"] == 15625 and res["val_size"] == 200 and "kendall_tau_base" in res
    assert any("Kendall tau" in line for line in lines[:-1])


@needs_data
def test_cli_predict_errors(capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", "--bench", "nb201", "--train-size", "15500", "--data-dir", str(DATA)]) == 2
    assert "exceeds the 15625 architectures" in capsys.readouterr().err
    assert main(["predict", "--bench", "nb201", "--train-size", "20", "--predictor", "svm",
                 "--data-dir", str(DATA)]) == 2
    assert "unknown predictor 'svm'" in capsys.readouterr().err


@needs_data
def test_cli_guided_search_reports_incumbents(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``attnas guided``: 30 look-ups (10 random, 2 predictor rounds of 10); the incumbent curve never
    gets worse, the evaluations file is consistent with the table, the seed reproduces the run."""
    from attnas.benchmarks.nb201 import NB201Bench, nb201_index
    from attnas.spaces.nb201 import NB201Space

    opts = json.dumps({"epochs": 2, "min_steps": 20, "d_model": 16, "d_ff": 32, "mlp_hidden": 16})
    argv = ["guided", "--budget", "30", "--initial", "10", "--batch", "10", "--seed", "2", "--options", opts,
            "--data-dir", str(DATA), "--json"]
    assert main([*argv, "--out", str(tmp_path / "g.json")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["evaluations"] == 30 and res["predictor_fits"] == 2
    assert [c["evaluations"] for c in res["curve"]] == [10, 20, 30]
    vals = [c["val_acc"] for c in res["curve"]]
    assert vals == sorted(vals) and vals[-1] == res["best_val_acc"]
    evaluated = json.loads((tmp_path / "g.json").read_text())["evaluated"]
    test = NB201Bench(str(DATA)).accuracies("cifar10", "test")
    assert len({e["arch"] for e in evaluated}) == 30
    for e in evaluated[:3]:
        assert e["test_acc"] == pytest.approx(float(test[nb201_index(NB201Space.parse_native(e["arch"]))]))
    assert max(e["val_acc"] for e in evaluated) == res["best_val_acc"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["best_arch"] == res["best_arch"]
    assert main(["guided", "--budget", "5", "--initial", "10", "--data-dir", str(DATA)]) == 2
    assert "smaller than --initial" in capsys.readouterr().err


@needs_data
def test_predict_api_on_nb101_and_darts() -> None:
    from attnas.predictors import run_kendall

    for bench, n in (("nb101", 100), ("darts", 50)):
        r = run_kendall(bench, train_size=n, seed=0, predictor="gcn", data_dir=str(DATA),
                        overrides={"epochs": 1, "min_steps": 10})
        assert r["evaluated_on"] == {"nb101": 400, "darts": 164}[bench] and np.isfinite(r["kendall_tau"])
        # NAS-Bench-101: the slides' Table 1 protocol, 100 training and 200 validation architectures
        assert r["val_size"] == {"nb101": 200, "darts": 50}[bench]


def test_missing_data_folder_is_a_clear_error(tmp_path: Path) -> None:
    from attnas.predictors import run_kendall

    with pytest.raises(AttnasError, match="nasbench101"):
        run_kendall("nb101", train_size=10, data_dir=str(tmp_path))


def test_training_evaluator_checks_its_options(tmp_path: Path) -> None:
    from attnas.predictors import TrainingEvaluator

    with pytest.raises(ConfigError, match="unknown training option"):
        TrainingEvaluator(out_root=str(tmp_path), learning_rate=0.1)
    ev = TrainingEvaluator(out_root=str(tmp_path), dataset="synthetic:3,8,4", epochs=1)
    assert ev.train_options == {"dataset": "synthetic:3,8,4", "epochs": 1} and ev.out_root == tmp_path


# ----------------------------------------------------------------------------- registry
@pytest.fixture
def isolated_predictors(monkeypatch):
    """Registrations made by a test do not outlive it."""
    import attnas.predictors.registry as registry

    registry.predictor_names()
    monkeypatch.setattr(registry, "_PREDICTORS", dict(registry._PREDICTORS))


def test_registry_lists_the_builtin_predictors() -> None:
    from attnas.predictors import GCNPredictor, MLPPredictor, TNASP, predictor_names

    assert {"tnasp", "mlp", "gcn"} <= set(predictor_names())
    enc = encoder_for("nb201")
    for name, cls in (("tnasp", TNASP), ("mlp", MLPPredictor), ("gcn", GCNPredictor)):
        p = get_predictor(name, enc, 5, epochs=2)
        assert type(p) is cls and p.name == name and p.seed == 5 and p.config.epochs == 2
    assert type(get_predictor("TNASP", enc)) is TNASP  # names are case-insensitive, as before


def test_unknown_predictor_is_a_one_line_error_listing_the_names() -> None:
    from attnas.predictors import predictor_names

    with pytest.raises(ConfigError) as e:
        get_predictor("xgboost", encoder_for("nb201"))
    msg = str(e.value)
    assert "\n" not in msg and "unknown predictor 'xgboost'" in msg
    assert all(name in msg for name in predictor_names())
    with pytest.raises(ConfigError, match="unknown option"):  # a seed among the options is a preset field
        get_predictor("mlp", encoder_for("nb201"), 0, seed=3)


def test_a_predictor_registered_elsewhere_can_be_fetched(isolated_predictors) -> None:
    from dataclasses import dataclass

    import attnas.predictors.registry as registry
    from attnas.predictors import FitConfig, NeuralPredictor, predictor_names, register_predictor

    @dataclass
    class MeanConfig(FitConfig):
        width: int = 4

    @register_predictor("mean-of-ops", preset=MeanConfig())
    class MeanPredictor(NeuralPredictor):
        def __init__(self, encoder, config: MeanConfig | None = None, seed: int = 0) -> None:
            self.config = config or MeanConfig()
            super().__init__(encoder, lambda enc: torch.nn.Linear(1, 1), self.config, seed, "mean-of-ops")

    assert "mean-of-ops" in predictor_names()
    p = get_predictor("mean-of-ops", encoder_for("nb201"), 1, width=8)
    assert isinstance(p, MeanPredictor) and p.config.width == 8 and p.config.epochs == MeanConfig().epochs
    with pytest.raises(ConfigError, match="already registered"):
        register_predictor("mean-of-ops", preset=MeanConfig())(type("Other", (MeanPredictor,), {}))
    assert "mean-of-ops" in registry._PREDICTORS  # the fixture restores the registry afterwards


def test_no_import_cycle_inside_predictors() -> None:
    """Module-level and function-level imports between the modules of attnas.predictors form no
    cycle (the registry finds the built-in predictors by module name, as the space registry does)."""
    import ast

    pkg = REPO / "attnas" / "predictors"
    graph: dict[str, set[str]] = {}
    for f in pkg.glob("*.py"):
        if f.stem == "__init__":
            continue
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("attnas.predictors."):
                deps.add(node.module.split(".")[2])
        graph[f.stem] = deps - {f.stem}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for d in graph.get(start, ()):
            if d == goal or (d not in seen and reaches(d, goal, seen | {d})):
                return True
        return False

    assert not [m for m in graph if reaches(m, m, {m})]
