"""Custom-flavour ONNX: the graph holds exactly the ``ramnet`` nodes, and ORT (with the PyOp implementations)
equals eager for prefill and for a decode loop with state carried across calls."""
import numpy as np
import pytest
import torch

pytest.importorskip("onnxscript", reason="needs the [onnx] extra (onnx, onnxscript, onnxruntime)")
pytest.importorskip("onnxruntime_extensions", reason="needs onnxruntime-extensions for the ramnet PyOps")

import onnx  # noqa: E402

from ramnet import RamNetConfig, RamNetForCausalLM  # noqa: E402
from ramnet.export.onnx import state_names, to_onnx  # noqa: E402
from ramnet.runtime.ort import run, session  # noqa: E402


@pytest.fixture(scope="module", params=[{}, {"short_conv": True}], ids=["tiny", "tiny-conv"])
def exported(request, tmp_path_factory):
    torch.manual_seed(0)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny", **request.param)).eval()
    out = tmp_path_factory.mktemp("onnx")
    return model, {g: to_onnx(model, out / f"{g}.onnx", flavor="custom", graph=g) for g in ("prefill", "decode")}


def test_graph_holds_exactly_the_ramnet_nodes(exported):
    model, paths = exported
    for path in paths.values():
        nodes = onnx.load(str(path)).graph.node
        custom = sorted({(n.domain, n.op_type) for n in nodes if n.domain not in ("", "ai.onnx")})
        assert custom == [("ramnet", "Address"), ("ramnet", "PdmaScan")]
        counts = {op: sum(n.op_type == op for n in nodes) for op in ("Address", "PdmaScan")}
        assert counts == {"Address": 2 * model.config.n_layers, "PdmaScan": model.config.n_layers}


def test_ort_prefill_then_decode_equals_eager(exported):
    model, paths = exported
    ids = torch.randint(0, model.config.vocab_size, (3, 11))
    with torch.no_grad():
        full = model(ids)
        ref_logits, states = model(ids[:, :7], return_states=True)
    prefill = run(session(paths["prefill"]), {"input_ids": ids[:, :7].numpy()})
    np.testing.assert_allclose(prefill["logits"], ref_logits.numpy(), rtol=1e-4, atol=1e-5)
    names = state_names(model.config)
    carried = {n: prefill[n] for n in names}
    flat_ref = [t for layer in states for t in layer if t is not None]
    for n, ref in zip(names, flat_ref):
        np.testing.assert_allclose(carried[n], ref.numpy(), rtol=1e-4, atol=1e-6)
    decode = session(paths["decode"])
    for t in range(7, 11):  # a different batch size than at export, and state carried through ORT only
        out = run(decode, {"token": ids[:, t].numpy(), "position": np.full(3, t, dtype=np.int64), **carried})
        np.testing.assert_allclose(out["logits"], full[:, t].numpy(), rtol=1e-4, atol=1e-5)
        carried = {n: out[n + "_out"] for n in names}


def test_runner_rejects_wrong_inputs(exported):
    _, paths = exported
    with pytest.raises(ValueError, match="inputs must be exactly"):
        run(session(paths["prefill"]), {"tokens": np.zeros((1, 3), dtype=np.int64)})


def test_bad_export_arguments(exported, tmp_path):
    model, _ = exported
    with pytest.raises(ValueError, match="flavor must be one of"):
        to_onnx(model, tmp_path / "x.onnx", flavor="fast")
    with pytest.raises(ValueError, match="graph must be one of"):
        to_onnx(model, tmp_path / "x.onnx", flavor="custom", graph="train")
    with pytest.raises(TypeError, match="model must be a RamNetForCausalLM"):
        to_onnx(torch.nn.Linear(2, 2), tmp_path / "x.onnx", flavor="custom")
    with pytest.raises(ValueError, match=r"opset must be an int in \[18, "):
        to_onnx(model, tmp_path / "x.onnx", flavor="custom", opset=17)
    with pytest.raises(ValueError, match=r"opset must be an int in \[18, "):
        to_onnx(model, tmp_path / "x.onnx", flavor="custom", opset=99)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        to_onnx(model, tmp_path, flavor="custom")
