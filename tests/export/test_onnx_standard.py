"""Standard-flavour ONNX (decode graph): only default-domain ops, runs in plain onnxruntime with no custom-op
library, and a decode loop carrying state through ORT equals eager."""
import numpy as np
import pytest
import torch

pytest.importorskip("onnxscript", reason="needs the [onnx] extra (onnx, onnxscript, onnxruntime)")
pytest.importorskip("onnxruntime", reason="needs the [onnx] extra (onnx, onnxscript, onnxruntime)")

import onnx  # noqa: E402

from ramnet import RamNetConfig, RamNetForCausalLM  # noqa: E402
from ramnet.export.onnx import state_names, to_onnx  # noqa: E402
from ramnet.runtime.ort import run, session  # noqa: E402


@pytest.mark.parametrize("overrides", [{}, {"short_conv": True}, {"top_k": 1}, {"top_k": 64, "gamma": 0.5}],
                         ids=["tiny", "conv", "K1", "K=M"])
def test_standard_decode_in_plain_ort_equals_eager(overrides, tmp_path):
    torch.manual_seed(1)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny", **overrides)).eval()
    path = to_onnx(model, tmp_path / "decode.onnx", flavor="standard", graph="decode")
    graph = onnx.load(str(path))
    assert {n.domain for n in graph.graph.node} <= {"", "ai.onnx"}
    assert {"TopK", "GatherElements", "ScatterElements"} <= {n.op_type for n in graph.graph.node}
    ids = torch.randint(0, model.config.vocab_size, (3, 10))
    with torch.no_grad():
        full = model(ids)
        _, states = model(ids[:, :6], return_states=True)
    names = state_names(model.config)
    carried = {n: t.numpy() for n, t in zip(names, [t for layer in states for t in layer if t is not None])}
    sess = session(path, custom_ops=False)  # plain onnxruntime: no extension library
    for t in range(6, 10):
        out = run(sess, {"token": ids[:, t].numpy(), "position": np.full(3, t, dtype=np.int64), **carried})
        np.testing.assert_allclose(out["logits"], full[:, t].numpy(), rtol=1e-4, atol=1e-5)
        carried = {n: out[n + "_out"] for n in names}


def test_standard_prefill_is_refused_with_a_reason(tmp_path):
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny"))
    with pytest.raises(NotImplementedError, match="decode' only"):
        to_onnx(model, tmp_path / "p.onnx", flavor="standard", graph="prefill")
