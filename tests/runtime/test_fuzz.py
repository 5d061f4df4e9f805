"""Fuzz: malformed feeds, malformed ``ramnet`` node inputs and malformed models, through the ORT runner and the
PyOp implementations. Every case must end in a clear Python error (or, for a valid-but-odd input, a result), never
a crash, a hang or an out-of-bounds read. Over 1,000 cases in all, seeded."""
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime_extensions", reason="needs the [onnx] extra")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from ramnet import RamNetConfig, RamNetForCausalLM  # noqa: E402
from ramnet.export.onnx import example_states, state_names, to_onnx  # noqa: E402
from ramnet.runtime.ort import run, session  # noqa: E402
from ramnet.runtime.ort_pyops import address_impl, pdma_scan_impl, register, take_errors  # noqa: E402

CLEAR = (ValueError, TypeError)


@pytest.fixture(scope="module")
def decode_sessions(tmp_path_factory):
    torch.manual_seed(0)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny")).eval()
    work = tmp_path_factory.mktemp("fuzz")
    return model, [session(to_onnx(model, work / f"{f}.onnx", flavor=f, graph="decode")) for f in ("custom", "standard")]


def good_feeds(model, batch=2):
    names = state_names(model.config)
    states = {n: t.numpy() for n, t in zip(names, example_states(model, batch))}
    return {"token": np.zeros(batch, np.int64), "position": np.zeros(batch, np.int64), **states}


def mutate(feeds: dict, rng: np.random.Generator, vocab: int) -> dict:
    feeds = dict(feeds)
    name = list(feeds)[rng.integers(len(feeds))]
    kind = rng.integers(12)
    x = feeds[name]
    if kind == 0:
        feeds[name] = x.astype(np.float64 if x.dtype != np.float64 else np.int64)
    elif kind == 1:
        feeds[name] = x[None] if rng.random() < 0.5 else x.reshape(-1)[:1].reshape(()) if x.ndim == 1 else x[0]
    elif kind == 2 and x.ndim >= 2:
        axis = int(rng.integers(1, x.ndim))
        feeds[name] = np.concatenate([x, x], axis=axis)
    elif kind == 3:
        feeds[name] = np.concatenate([x, x[:1]], axis=0)                      # batch mismatch
    elif kind == 4:
        feeds["token"] = np.array([0, int(rng.choice([-1, vocab, vocab + 7, 2**40, -2**62]))], np.int64)
    elif kind == 5:
        feeds["position"] = np.array([0, -int(rng.integers(1, 1000))], np.int64)
    elif kind == 6:
        s = [n for n in feeds if n.startswith("S_")][rng.integers(2)]
        bad = feeds[s].copy()
        bad.reshape(-1)[rng.integers(bad.size)] = rng.choice([np.nan, np.inf, -np.inf])
        feeds[s] = bad
    elif kind == 7:
        z = [n for n in feeds if n.startswith("z_")][rng.integers(2)]
        bad = feeds[z].copy()
        bad.reshape(-1)[rng.integers(bad.size)] = -float(rng.random()) - 1e-3
        feeds[z] = bad
    elif kind == 8:
        del feeds[name]
    elif kind == 9:
        feeds["extra_input"] = np.zeros(2, np.float32)
    elif kind == 10:
        feeds[name] = x.tolist()
    else:
        feeds = {k: v[:0] for k, v in feeds.items()}                           # empty batch
    return feeds


def test_fuzz_runner_feeds(decode_sessions):
    model, sessions = decode_sessions
    rng = np.random.default_rng(0)
    base = good_feeds(model)
    cases = 0
    for sess in sessions:
        assert np.isfinite(run(sess, base)["logits"]).all()
        for _ in range(400):
            bad = mutate(base, rng, model.config.vocab_size)
            if bad.keys() == base.keys() and all(
                    isinstance(bad[k], np.ndarray) and bad[k].dtype == base[k].dtype and bad[k].shape == base[k].shape
                    and np.array_equal(bad[k], base[k]) for k in base):
                continue  # the mutation was a no-op (e.g. rank change on a 1-D input)
            with pytest.raises(CLEAR):
                run(sess, bad)
            cases += 1
    assert cases >= 700


def random_pdma_inputs(rng, B=2, T=3, H=2, M=16, dv=4, K=3):
    idx = np.stack([rng.permutation(M)[:K] for _ in range(B * T * H)]).reshape(B, T, H, K).astype(np.int64)
    w = rng.random((B, T, H, K)).astype(np.float32)
    return [rng.standard_normal((B, T, H, dv)).astype(np.float32), idx, w, idx.copy(), w.copy(),
            np.zeros((B, H, M, dv), np.float32), np.full((B, H, M), 1.0 / M, np.float32)]


def test_fuzz_pyop_implementations():
    rng = np.random.default_rng(1)
    good = random_pdma_inputs(rng)
    o, S, z = pdma_scan_impl(*good, 1.0, 1e-6)
    assert o.shape == (2, 3, 2, 4) and np.isfinite(S).all()
    cases = 0
    for i in range(300):
        args = [a.copy() for a in good]
        j = int(rng.integers(7))
        kind = i % 6
        if kind == 0 and j in (1, 3):
            args[j].reshape(-1)[rng.integers(args[j].size)] = rng.choice([-1, 16, 17, 2**40, -2**62])
        elif kind == 1:
            args[j] = args[j][..., :-1] if args[j].ndim else args[j]
        elif kind == 2:
            args[j] = args[j].astype(np.int32 if args[j].dtype.kind == "f" else np.float32)
        elif kind == 3 and j in (2, 4, 5, 6):  # NaN in v is allowed: it propagates, by policy
            args[j].reshape(-1)[0] = np.nan
        elif kind == 4:
            args[1][..., 1] = args[1][..., 0]                                          # duplicate write slots
        else:
            args[j] = args[j][None]
        with pytest.raises(CLEAR):
            pdma_scan_impl(*args, float(rng.choice([1.0, -1.0, np.nan])) if kind == 5 else 1.0, 1e-6)
        cases += 1
    for _ in range(150):
        x = rng.standard_normal((3, int(rng.integers(0, 13)))).astype(np.float32)
        U, K, tau = int(rng.integers(-1, 7)), int(rng.integers(-2, 100)), float(rng.choice([1.0, 0.0, -1.0, np.inf]))
        try:
            w, idx = address_impl(x, U, K, tau)
        except CLEAR:
            cases += 1
            continue
        d_p = x.shape[-1] // U
        assert idx.min() >= 0 and idx.max() < d_p**U and np.isfinite(w).all()  # accepted only when valid
        cases += 1
    assert cases >= 400


def pdma_model(M=16, K=3, dv=4, H=2):
    f, i = TensorProto.FLOAT, TensorProto.INT64
    inputs = [helper.make_tensor_value_info("v", f, ["B", "T", H, dv]),
              helper.make_tensor_value_info("wi", i, ["B", "T", H, K]),
              helper.make_tensor_value_info("ww", f, ["B", "T", H, K]),
              helper.make_tensor_value_info("ri", i, ["B", "T", H, K]),
              helper.make_tensor_value_info("rw", f, ["B", "T", H, K]),
              helper.make_tensor_value_info("S0", f, ["B", H, M, dv]),
              helper.make_tensor_value_info("z0", f, ["B", H, M])]
    outputs = [helper.make_tensor_value_info(n, f, None) for n in ("o", "S", "z")]
    node = helper.make_node("PdmaScan", ["v", "wi", "ww", "ri", "rw", "S0", "z0"], ["o", "S", "z"], domain="ramnet",
                            gamma=1.0, eps=1e-6)
    graph = helper.make_graph([node], "pdma", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ramnet", 1)])


def test_fuzz_malformed_node_inputs_through_ort():
    """Out-of-range slots fed straight into a ramnet node inside ORT: a clean ORT error, no crash."""
    options = ort.SessionOptions()
    options.register_custom_ops_library(register())
    sess = ort.InferenceSession(pdma_model().SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    names = ["v", "wi", "ww", "ri", "rw", "S0", "z0"]
    good = dict(zip(names, random_pdma_inputs(rng)))
    assert sess.run(None, good)[0].shape == (2, 3, 2, 4)
    for _ in range(200):
        feeds = {k: v.copy() for k, v in good.items()}
        key = str(rng.choice(["wi", "ri"]))
        feeds[key].reshape(-1)[rng.integers(feeds[key].size)] = int(rng.choice([-5, 16, 1000, 2**50]))
        o, S, z = sess.run(None, feeds)           # the PyOp cannot raise inside ORT: it records the error
        assert np.isnan(o).all() and any("slots in" in e for e in take_errors())


def test_fuzz_malformed_address_models():
    """Address nodes whose attributes do not fit their input (top_k > M, U not dividing the width, tau <= 0)."""
    options = ort.SessionOptions()
    options.register_custom_ops_library(register())
    rng = np.random.default_rng(3)
    for _ in range(40):
        width, U = int(rng.integers(2, 12)), int(rng.integers(1, 5))
        K, tau = int(rng.integers(1, 300)), float(rng.choice([1.0, 0.0, -2.0]))
        node = helper.make_node("Address", ["x"], ["w", "i"], domain="ramnet", num_factors=U, top_k=K, tau=tau)
        graph = helper.make_graph([node], "a", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, width])],
                                  [helper.make_tensor_value_info("w", TensorProto.FLOAT, None),
                                   helper.make_tensor_value_info("i", TensorProto.INT64, None)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ramnet", 1)])
        sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        valid = width % U == 0 and width // U >= 2 and K <= (width // U) ** U and tau > 0
        x = rng.standard_normal((2, width)).astype(np.float32)
        if valid:
            w, i = sess.run(None, {"x": x})
            assert i.min() >= 0 and i.max() < (width // U) ** U
        else:
            w, i = sess.run(None, {"x": x})
            errors = take_errors()
            assert errors and any(word in errors[0] for word in ("num_factors", "top_k", "d_p", "tau")), errors
            assert np.isnan(w).all() and (i == 0).all()  # NaN weights, valid indices
    assert not take_errors()


def test_runner_raises_recorded_node_errors(tmp_path):
    """Through ``runtime.ort.run`` a node error is a clear exception (here: a custom graph fed a corrupt S)."""
    from ramnet.runtime.ort import RamnetNodeError

    options = ort.SessionOptions()
    options.register_custom_ops_library(register())
    path = tmp_path / "pdma.onnx"
    onnx.save(pdma_model(), str(path))
    sess = session(path)
    feeds = dict(zip(["v", "wi", "ww", "ri", "rw", "S0", "z0"], random_pdma_inputs(np.random.default_rng(4))))
    feeds["ri"][0, 0, 0, 0] = 10**6
    with pytest.raises(RamnetNodeError, match="read_idx must hold slots in"):
        run(sess, feeds)
