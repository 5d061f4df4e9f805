"""State bounds (``runtime/state_checks.py``): every runner refuses a corrupt or overflowing state (NaN, Inf, an
``S`` too large for its ``z``, ``z`` above ``max(1, 1/gamma)`` or below 0, an overflowing conv state) with an error
naming the input and the allowed range; every state a model can write passes, for every ``gamma``; and a state at
its bound still gives finite logits. AOTI: ``tests/runtime/test_aoti.py`` (it reuses that file's compiled
packages)."""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime_extensions", reason="needs the [onnx] extra")

from onnx import TensorProto, helper, save  # noqa: E402

from ramnet import RamNetConfig, RamNetForCausalLM  # noqa: E402
from ramnet.export.onnx import state_names, to_onnx  # noqa: E402
from ramnet.runtime.ort import OrtGenerator, RamnetNodeError, run, session  # noqa: E402
from ramnet.runtime.ort_pyops import pdma_scan_impl  # noqa: E402
from ramnet.runtime.state_checks import Z_MAX_COUNT, StateError, check_named_states, z_max  # noqa: E402

from .state_cases import BAD_STATES, at_bound, corrupt  # noqa: E402

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny", short_conv=True)).eval()
    work = tmp_path_factory.mktemp("bounds")
    paths = {(f, g): to_onnx(model, work / f"{f}-{g}.onnx", flavor=f, graph=g)
             for f in ("custom", "standard") for g in ("prefill", "decode")}
    return model, paths


def legit_feeds(model, batch=2, prompt=40):
    """Decode feeds carrying the states of a real prefill (what the runners must accept)."""
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _, states = model(ids, return_states=True)
    flat = [t.numpy() for layer in states for t in layer if t is not None]
    return {"token": np.zeros(batch, np.int64), "position": np.full(batch, prompt, np.int64),
            **dict(zip(state_names(model.config), flat))}


@pytest.mark.parametrize("flavor", ["custom", "standard"])
def test_ort_run_refuses_out_of_range_states(exported, flavor):
    model, paths = exported
    sess = session(paths[flavor, "decode"])
    feeds = legit_feeds(model)
    assert np.isfinite(run(sess, feeds)["logits"]).all()
    out = run(sess, at_bound(feeds))  # the largest accepted states still give finite results
    assert all(np.isfinite(v).all() for v in out.values())
    for name, kind, value, message in BAD_STATES:
        with pytest.raises(StateError, match=message) as caught:
            run(sess, corrupt(feeds, name, kind, value))
        assert caught.value.name == name and isinstance(caught.value, ValueError)


def test_custom_node_names_the_state_when_unchecked(exported):
    """Fed unchecked, an overflowing state is refused by the first ``PdmaScan`` node that reads it, by name, and
    its error comes first (before any follow-on error of later nodes); the standard flavour cannot check inside the
    graph, so unchecked it gives NaN: that is what ``check=False`` means."""
    model, paths = exported
    feeds = legit_feeds(model)
    for name, kind, value, _ in BAD_STATES:
        if name.startswith("conv"):
            continue  # the conv runs in standard ops in both flavours
        with pytest.raises(RamnetNodeError) as caught:
            run(session(paths["custom", "decode"]), corrupt(feeds, name, kind, value), check=False)
        first = str(caught.value).split("; ramnet::")[0]
        assert f"'{name[0]}0'" in first and ("out of range" in first or "corrupt" in first), first
    logits = run(session(paths["standard", "decode"]), corrupt(feeds, "S_0", "fill", 3e38), check=False)["logits"]
    assert not np.isfinite(logits).all()  # why the runner checks: this is what an unchecked overflow gives


class CorruptPrefill:
    """A prefill session whose ``S_0`` output overflows (as a prefill with broken weights would give)."""

    def __init__(self, sess):
        self.sess = sess

    def __getattr__(self, name):
        return getattr(self.sess, name)

    def run(self, names, feeds, *args):
        outputs = self.sess.run(names, feeds, *args)
        outputs[names.index("S_0")] = np.full_like(outputs[names.index("S_0")], 3e38)
        return outputs


@pytest.mark.parametrize("flavor", ["custom", "standard"])
def test_ort_generator_refuses_an_overflowing_first_decode_feed(exported, flavor):
    model, paths = exported
    gen = OrtGenerator(paths[flavor, "prefill"], paths[flavor, "decode"])
    prompt = torch.randint(0, model.config.vocab_size, (2, 5), generator=torch.Generator().manual_seed(2))
    assert torch.equal(gen.generate(prompt, 3), model.generate(prompt, 3))
    gen.prefill = CorruptPrefill(gen.prefill)
    with pytest.raises(StateError, match=r"'S_0' is out of range: \|S\| must be <= 1e\+08"):
        gen.generate(prompt, 3)


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 1.0, 3.0])
def test_every_written_state_is_inside_the_bounds(gamma):
    """The bounds hold for every state the recurrence can write, for every gamma, through the real kernel:
    adversarial writes (a long run of tiny weights, which drives z to its fixed point near 1/gamma for gamma < 1,
    then weights near 0 and near 1 mixed) of large values. A bound of 1 on z would be wrong for gamma < 1: the test
    checks that z does get near 1/gamma there."""
    rng = np.random.default_rng(int(gamma * 100))
    B, T, H, M, dv, K = 1, 1200, 2, 2, 3, 1
    S, z = np.zeros((B, H, M, dv), np.float32), np.full((B, H, M), 1 / M, np.float32)
    for phase in ("tiny", "mixed"):
        idx = rng.integers(0, M, (B, T, H, K)).astype(np.int64)
        w = 0.01 + 0.03 * rng.random((B, T, H, K))
        if phase == "mixed":
            w = np.where(rng.random(w.shape) < 0.5, w, 1 - 1e-3 * rng.random(w.shape))
        v = (rng.standard_normal((B, T, H, dv)) * 1e3).astype(np.float32)            # |v| up to ~4e3
        _, S, z = pdma_scan_impl(v, idx, w.astype(np.float32), idx, w.astype(np.float32), S, z, gamma, 1e-6)
        check_named_states({"S_0": S, "z_0": z}, gamma=gamma)                      # must not raise
        assert float(np.abs(S).max()) <= float(np.abs(v).max()) * float(z.max()) * 1.001
        if phase == "tiny" and 0 < gamma < 1:
            assert float(z.max()) > 0.8 / gamma  # z really exceeds 1: the bound must be max(1, 1/gamma)
            with pytest.raises(StateError, match="'z_0' is out of range"):
                check_named_states({"S_0": S, "z_0": z}, gamma=1.0)
        if phase == "tiny" and gamma == 0:
            assert float(z.max()) > 1 and z_max(0) == Z_MAX_COUNT  # a count of writes


def test_z_bound_follows_gamma():
    assert z_max(None) == z_max(1.0) == z_max(3.0) == pytest.approx(1.001)
    assert z_max(0.5) == pytest.approx(2.002) and z_max(0.0) == Z_MAX_COUNT


def scan_graph(path, gamma: float, metadata: dict | None = None, op="PdmaScan"):
    """A one-node graph with the decode feed names (``S_0``, ``z_0``), so ``run`` checks them as states."""
    f, i = TensorProto.FLOAT, TensorProto.INT64
    names = ["v", "wi", "ww", "ri", "rw", "S_0", "z_0"]
    types = [f, i, f, i, f, f, f]
    shapes = [["B", "T", "H", "dv"]] + [["B", "T", "H", "K"]] * 4 + [["B", "H", "M", "dv"], ["B", "H", "M"]]
    if op == "PdmaScan":
        nodes = [helper.make_node("PdmaScan", names, ["o", "S", "z"], domain="ramnet", gamma=gamma, eps=1e-6)]
    else:  # standard ops only: the state passes through
        nodes = [helper.make_node("Identity", ["S_0"], ["S"]), helper.make_node("Identity", ["z_0"], ["z"])]
    inputs = [helper.make_tensor_value_info(n, t, d) for n, t, d in zip(names, types, shapes)]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(n, f, None) for n in ("S", "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ramnet", 1)])
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    save(model, str(path))
    return path


def scan_feeds(z_value: float):
    rng = np.random.default_rng(0)
    idx = np.stack([rng.permutation(16)[:3] for _ in range(12)]).reshape(2, 3, 2, 3).astype(np.int64)
    w = rng.random((2, 3, 2, 3)).astype(np.float32)
    return {"v": rng.standard_normal((2, 3, 2, 4)).astype(np.float32), "wi": idx, "ww": w, "ri": idx, "rw": w,
            "S_0": np.zeros((2, 2, 16, 4), np.float32), "z_0": np.full((2, 2, 16), z_value, np.float32)}


def test_z_bound_uses_the_graphs_gamma(tmp_path):
    """gamma from the custom graph's PdmaScan attribute, from ``ramnet_config`` metadata, or given to ``session``;
    a graph that records none is checked as gamma = 1 and the message says how to give it."""
    half = session(scan_graph(tmp_path / "half.onnx", 0.5))
    run(half, scan_feeds(1.5))                                              # <= 1/0.5: a state of this model
    with pytest.raises(StateError, match=r"z must be in \[0, 2.002\].*gamma = 0.5, the graph's PdmaScan attribute"):
        run(half, scan_feeds(2.5))
    with pytest.raises(RamnetNodeError, match=r"'z0' is out of range: z must be in \[0, 2.002\]"):
        run(half, scan_feeds(2.5), check=False)                             # the node checks with its own gamma
    one = session(scan_graph(tmp_path / "one.onnx", 1.0))
    with pytest.raises(StateError, match=r"z must be in \[0, 1.001\]"):
        run(one, scan_feeds(1.5))
    plain = scan_graph(tmp_path / "plain.onnx", 1.0, op="Identity")
    with pytest.raises(StateError, match=r"gamma = unknown, taken as 1: this graph does not record its gamma"):
        run(session(plain), scan_feeds(1.5))
    run(session(plain, gamma=0.5), scan_feeds(1.5))
    meta = scan_graph(tmp_path / "meta.onnx", 1.0, {"ramnet_config": json.dumps({"gamma": 0.5})}, op="Identity")
    run(session(meta), scan_feeds(1.5))
    with pytest.raises(StateError, match="from the graph's ramnet_config metadata"):
        run(session(meta), scan_feeds(2.5))
    with pytest.raises(ValueError, match="gamma must be finite and in"):
        session(plain, gamma=-1.0)


@pytest.mark.parametrize("flavor", ["standard", "custom"])
def test_exported_graphs_carry_the_config_so_gamma_below_1_states_pass(flavor, tmp_path):
    """A gamma < 1 model's z may exceed 1; its graphs record gamma, so a real state is not refused."""
    import json

    import onnx
    import torch

    from ramnet import RamNetConfig, RamNetForCausalLM
    from ramnet.export.onnx import to_onnx
    from ramnet.runtime.ort import run, session

    torch.manual_seed(0)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny", gamma=0.5)).eval()
    prefill = to_onnx(model, tmp_path / "p.onnx", flavor=flavor, graph="prefill")
    meta = {p.key: p.value for p in onnx.load(str(prefill), load_external_data=False).metadata_props}
    assert json.loads(meta["ramnet_config"])["gamma"] == 0.5
    decode = session(to_onnx(model, tmp_path / "d.onnx", flavor=flavor, graph="decode"))
    ids = torch.randint(0, 128, (2, 40))
    out = run(session(prefill), {"input_ids": ids.numpy()})
    names = [i.name for i in decode.get_inputs() if i.name not in ("token", "position")]
    feeds = {"token": ids[:, 0].numpy(), "position": torch.full((2,), 40).numpy(), **{n: out[n] for n in names}}
    assert set(run(decode, feeds)) >= {"logits"}
