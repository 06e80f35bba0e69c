"""``attnas export``: derived networks as TorchScript / ONNX with inherited, retrained or fresh
weights, checked against PyTorch; every space; clear one-line errors."""
from __future__ import annotations

import json
import random
import sys

import pytest
import torch

from attnas.arch import Architecture
from attnas.cli.main import main
from attnas.errors import AttnasError
from attnas.model_export import export_network, inherit_from_supernet, load_network
from attnas.spaces.registry import get_space

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

TINY = ["--space", "nb201", "--space-options", '{"C": 4, "N": 1}', "--dataset", "synthetic:3,8,4,64,16",
        "--batch-size", "16", "--quiet"]
TINY_DARTS_NET = {"C": 4, "layers": 3, "auxiliary": False}


def cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    search, train = base / "search", base / "train"
    assert main(["search", *TINY, "--method", "darts", "--epochs", "1", "--seed", "2", "--out", str(search)]) == 0
    assert main(["train", "--arch", str(search / "architecture.json"), "--dataset", "synthetic:3,8,4,64,16",
                 "--space-options", '{"C": 4, "N": 1}', "--epochs", "1", "--batch-size", "16", "--quiet",
                 "--out", str(train)]) == 0
    return {"search": search, "train": train}


def test_inherited_weights_are_the_supernet_path(runs):
    from attnas.search.export import supernet_key_map
    from attnas.from_run import load_search_run

    loaded = load_network(str(runs["search"]))          # a run folder as --arch: its own weights
    assert loaded.weights == "inherited" and (loaded.in_channels, loaded.image_size, loaded.num_classes) == (3, 8, 4)
    sup = load_search_run(runs["search"], device="cpu").model.net
    src = sup.state_dict()
    mapping = supernet_key_map(sup, loaded.arch, loaded.network)
    convs = [k for k, v in loaded.network.state_dict().items() if v.dim() == 4]
    assert convs
    for k in convs:                                     # every convolution comes from the supernet's path
        assert torch.equal(loaded.network.state_dict()[k], src[mapping[k]]), k
    fresh = load_network(str(runs["search"]), fresh=True)
    assert fresh.weights == "fresh"
    assert any(not torch.equal(fresh.network.state_dict()[k], loaded.network.state_dict()[k]) for k in convs)
    # BN statistics were recomputed on the run's images (not the 0 / 1 defaults)
    bn_means = [v for k, v in loaded.network.state_dict().items() if k.endswith("running_mean")]
    assert bn_means and any(v.abs().sum() > 0 for v in bn_means)


def test_cli_torchscript_of_a_search_run_matches_pytorch(runs, tmp_path, capsys):
    out = tmp_path / "net.pt"
    code, stdout, _ = cli(["export", "--arch", str(runs["search"]), "--format", "torchscript", "-o", str(out),
                           "--json"], capsys)
    assert code == 0
    res = last_json(stdout)
    assert res["weights"] == "inherited" and res["format"] == "torchscript" and res["output"] == str(out)
    assert res["max_abs_diff"] <= res["tolerance"] and "max abs diff" in stdout
    # independently: the file runs any batch size and computes what the PyTorch network computes
    ts = torch.jit.load(str(out))
    net = load_network(str(runs["search"])).network
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(ts(x), net(x), atol=1e-5)


def test_cli_onnx_of_a_train_run_has_the_retrained_weights(runs, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    out = tmp_path / "net.onnx"
    code, stdout, _ = cli(["export", "--from-run", str(runs["train"]), "--format", "onnx", "-o", str(out),
                           "--json"], capsys)
    assert code == 0
    res = last_json(stdout)
    assert res["weights"] == "retrained" and res["weights_source"].endswith("weights.pt")
    assert res["max_abs_diff"] <= 1e-4
    space = get_space("nb201", C=4, N=1)
    arch = load_network(str(runs["train"])).arch
    net = space.build_network(arch, 4, 3, 8)
    net.load_state_dict(torch.load(runs["train"] / "weights.pt"))
    net.eval()
    x = torch.randn(4, 3, 8, 8)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert abs(torch.from_numpy(got) - net(x)).max() < 1e-4
    # the same weights given as a file, and fresh weights, for the architecture file
    code, stdout, _ = cli(["export", "--arch", str(runs["train"] / "architecture.json"), "--weights",
                           str(runs["train"] / "weights.pt"), "--format", "torchscript",
                           "-o", str(tmp_path / "w.pt"), "--json"], capsys)
    assert code == 0 and last_json(stdout)["weights"] == "file"
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(tmp_path / "w.pt"))(x), net(x), atol=1e-5)


def _flexible(space) -> Architecture:
    """Every edge active (an EnTranNAS-DST flexible topology: any number of inputs per node)."""
    return Architecture(space.name, {p.key: next(c for c in p.candidates if c != "none")
                                     for p in space.choice_points()})


SPACES = [  # name, space options, network options, image size, architecture, batch size
    ("nb201", {"C": 4, "N": 1}, {}, 8, "sample", None),
    ("darts", {"C": 4, "layers": 3}, TINY_DARTS_NET, 8, "sample", None),
    ("darts", {"C": 4, "layers": 3}, TINY_DARTS_NET, 8, "flexible", None),   # EnTranNAS-DST topology
    ("s1", {"C": 4, "layers": 3}, TINY_DARTS_NET, 8, "derive", None),
    ("s2", {"C": 4, "layers": 3}, TINY_DARTS_NET, 8, "derive", None),
    ("s3", {"C": 4, "layers": 3}, TINY_DARTS_NET, 8, "derive", None),
    ("s4", {"C": 4, "layers": 3}, TINY_DARTS_NET, 8, "noise", None),        # random 'noise' operation
    ("proxyless", {"variant": "cifar", "width_mult": 0.25}, {}, 16, "sample", None),
    ("macro", {}, {}, 16, "sample", None),
    ("nos", {"C": 4, "layers": 3}, TINY_DARTS_NET, 8, "sample", 2),  # dynamic kernels fold the batch in
    # local + axial attention (seed 3): the local window's graph form (no Python autograd function)
    ("trionet", {"layout": "cifar", "depths": [1, 1], "width": 8, "heads": [1, 2]}, {}, 16, "sample", None),
]


@pytest.mark.parametrize("name,opts,net_opts,size,how,batch", SPACES,
                         ids=[f"{s[0]}-{s[4]}" for s in SPACES])
def test_every_space_exports_and_matches_pytorch(tmp_path, name, opts, net_opts, size, how, batch):
    if name == "s1":
        from conftest import find_data_dir
        d = find_data_dir()
        if d is None or not (d / "reduced_spaces" / "robust_darts_s1_s4.json").is_file():
            pytest.skip("S1 needs reduced_spaces/robust_darts_s1_s4.json (set ATTNAS_DATA_DIR)")
        opts = {**opts, "data_dir": str(d)}
    space = get_space(name, **opts)
    rng = random.Random(3)
    if how == "flexible":
        arch = _flexible(space)
    elif how == "derive":  # DARTS rule: unused edges are 'none' even where 'none' is no candidate
        arch = space.derive({p.key: [rng.random() for _ in p.candidates] for p in space.choice_points()})
    elif how == "noise":
        arch = space.derive({p.key: [float(c == "noise") + rng.random() / 10 for c in p.candidates]
                             for p in space.choice_points()})
        assert "noise" in arch.choices.values()
    else:
        arch = space.sample(rng)
    torch.manual_seed(0)
    net = space.build_network(arch, 4, 3, size, **net_opts)
    formats = ["torchscript"]
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        formats.append("onnx")
    except ImportError:
        pass
    for fmt in formats:
        out = tmp_path / f"{name}.{fmt}"
        if how == "noise" and fmt == "onnx":  # ONNX Runtime draws its own noise: nothing to compare
            with pytest.raises(AttnasError, match="stochastic"):
                export_network(net, 3, size, out, fmt, label=name)
            assert not out.exists()
            continue
        res = export_network(net, 3, size, out, fmt, batch_size=batch, label=name)
        assert out.is_file() and res.max_abs_diff <= 1e-4 and res.output_shape[-1] == 4
        assert res.batch_sizes == ((2, 3) if batch is None else (batch,))
        assert res.stochastic == (how == "noise")
    if batch is not None:  # any batch size is refused with the reason and the way out
        with pytest.raises(AttnasError, match="--batch-size"):
            export_network(net, 3, size, tmp_path / "dyn.pt", "torchscript", label=name)


def test_entrannas_supernet_cannot_give_weights():
    """EnTranNAS shares operations across edges: no per-edge weights to inherit -- a clear error."""
    from attnas.strategies.base import get_strategy

    space = get_space("darts", C=4, layers=3)
    st = get_strategy("entrannas", space, {})
    sup = st.build(4, 3, 8)
    arch = space.sample(random.Random(0))
    net = space.build_network(arch, 4, 3, 8, **TINY_DARTS_NET)
    with pytest.raises(AttnasError, match="no per-choice-point candidate weights"):
        inherit_from_supernet(space, sup, arch, net)


@pytest.mark.parametrize("case", ["no_run", "not_a_run", "no_weights_file", "bad_weights", "supernet_ckpt",
                                  "format", "no_arch", "no_onnx", "mismatch"])
def test_bad_input_is_one_line_error(runs, tmp_path, capsys, monkeypatch, case):
    arch = str(runs["train"] / "architecture.json")
    o = ["-o", str(tmp_path / "m.pt")]
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "empty").mkdir()
    argv = {
        "no_run": ["export", "--from-run", str(tmp_path / "nope"), "--format", "torchscript", *o],
        "not_a_run": ["export", "--arch", arch, "--from-run", str(tmp_path / "empty"), "--format", "torchscript",
                      *o],
        "no_weights_file": ["export", "--arch", arch, "--weights", str(tmp_path / "w.pt"), "--format",
                            "torchscript", *o],
        "bad_weights": ["export", "--arch", arch, "--weights", str(tmp_path / "junk.pt"), "--format",
                        "torchscript", *o],
        "supernet_ckpt": ["export", "--arch", arch, "--weights", str(runs["search"] / "checkpoint.pt"),
                          "--format", "torchscript", *o],
        "format": ["export", "--arch", arch, "--format", "tflite", *o],
        "no_arch": ["export", "--format", "torchscript", *o],
        "no_onnx": ["export", "--arch", arch, "--format", "onnx", *o],
        "mismatch": ["export", "--arch", arch, "--weights", str(runs["train"] / "weights.pt"), "--num-classes",
                     "7", "--image-size", "8", "--in-channels", "3", "--format", "torchscript", *o],
    }[case]
    if case == "no_onnx":
        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    code, out, err = cli(argv, capsys)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnas: error: "), err
    expect = {"no_run": "does not exist", "not_a_run": "no config.json", "no_weights_file": "does not exist",
              "bad_weights": "cannot read weights", "supernet_ckpt": "--from-run", "format": "unknown export format",
              "no_arch": "no architecture", "no_onnx": "attnas[export]", "mismatch": "do not fit"}[case]
    assert expect in lines[0]
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.pt.tmp").exists()
