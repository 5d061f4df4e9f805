"""Standard-flavour ONNX (prefill and decode graphs): only default-domain ops, runs in plain onnxruntime with no custom-op
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


def all_nodes(graph):
    """Every node, including those inside Loop/If/Scan bodies."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from all_nodes(attr.g)


GATE_CONV = {"write_gate": True, "short_conv": True, "write_gate_conv": True}


def _model(overrides):
    """A ``tiny`` model; with ``write_gate_conv`` its gate channels get random conv weights (at init they are the
    identity, which would not tell a graph that drops them)."""
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny", **overrides)).eval()
    if overrides.get("write_gate_conv"):
        with torch.no_grad():
            for block in model.blocks:
                block.mixer.conv.weight[-model.config.n_heads:].normal_()
    return model


@pytest.mark.parametrize("overrides", [{}, {"short_conv": True}, {"top_k": 1}, {"top_k": 64, "gamma": 0.5},
                                       {"write_gate": True}, GATE_CONV],
                         ids=["tiny", "conv", "K1", "K=M", "gate", "gate-conv"])
def test_standard_decode_in_plain_ort_equals_eager(overrides, tmp_path):
    torch.manual_seed(1)
    model = _model(overrides)
    path = to_onnx(model, tmp_path / "decode.onnx", flavor="standard", graph="decode")
    graph = onnx.load(str(path))
    assert {n.domain for n in all_nodes(graph.graph)} <= {"", "ai.onnx"}
    assert {"TopK", "GatherElements", "ScatterElements"} <= {n.op_type for n in all_nodes(graph.graph)}
    ids = torch.randint(0, model.config.vocab_size, (3, 10))
    with torch.no_grad():
        full = model(ids)
        _, states = model(ids[:, :6], return_states=True)
    names = state_names(model.config)
    carried = {n: t.numpy() for n, t in zip(names, [t for layer in states for t in layer if t is not None])}
    sess = session(path, custom_ops=False)  # plain onnxruntime: no extension library
    for t in range(6, 10):
        feeds = {"token": ids[:, t].numpy(), "position": np.full(3, t, dtype=np.int64), **carried}
        out = run(sess, feeds, io_binding=t % 2 == 0)  # IOBinding (on CPU here) and plain run alike
        np.testing.assert_allclose(out["logits"], full[:, t].numpy(), rtol=1e-4, atol=1e-5)
        carried = {n: out[n + "_out"] for n in names}


@pytest.mark.parametrize("overrides", [{}, {"short_conv": True}, {"top_k": 64, "gamma": 0.5}, {"write_gate": True},
                                       GATE_CONV], ids=["tiny", "conv", "K=M", "gate", "gate-conv"])
def test_standard_prefill_in_plain_ort_equals_eager(overrides, tmp_path):
    torch.manual_seed(2)
    model = _model(overrides)
    path = to_onnx(model, tmp_path / "prefill.onnx", flavor="standard", graph="prefill")
    graph = onnx.load(str(path))
    assert not graph.functions
    assert {n.domain for n in all_nodes(graph.graph)} <= {"", "ai.onnx"}
    assert {o.domain for o in graph.opset_import} <= {"", "ai.onnx"}
    assert "Loop" in {n.op_type for n in graph.graph.node}
    onnx.checker.check_model(graph, full_check=True)
    sess = session(path, custom_ops=False)
    for batch, length in ((3, 9), (1, 1), (2, 17)):  # dynamic batch and length, T = 1 included
        ids = torch.randint(0, model.config.vocab_size, (batch, length))
        with torch.no_grad():
            logits, states = model(ids, return_states=True)
        out = run(sess, {"input_ids": ids.numpy()})
        np.testing.assert_allclose(out["logits"], logits.numpy(), rtol=1e-4, atol=1e-5)
        flat = [t for layer in states for t in layer if t is not None]
        for name, ref in zip(state_names(model.config), flat):
            np.testing.assert_allclose(out[name], ref.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
