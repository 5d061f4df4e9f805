"""TensorRT path. The TensorRT-independent parts (shape functions, attribute marshalling, the ONNX nodes carrying
plugin_namespace) run on CPU; plugin registration needs TensorRT and skips with the reason."""
import numpy as np
import pytest
import torch

from ramnet.export import tensorrt as T
from ramnet.export.tensorrt_contract import (address_output_shapes, from_plugin_attrs, mark_for_tensorrt,
                                             node_attrs, pdma_scan_output_shapes, to_plugin_attrs)

NO_TRT = "TensorRT cannot be installed here (PyPI has only stubs that download from pypi.nvidia.com; see README)"


@pytest.mark.parametrize("lead,U,d_p,K", [((3,), 5, 4, 8), ((2, 7, 3), 3, 5, 1), ((1,), 2, 2, 4), ((), 1, 6, 6)])
def test_address_shapes_match_the_fake_impl(lead, U, d_p, K):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        w, i = torch.ops.ramnet.address(torch.empty(*lead, U * d_p), U, K, 1.0)
    assert address_output_shapes(lead + (U * d_p,), U, K) == (tuple(w.shape), tuple(i.shape))


def test_address_shapes_refuse_bad_geometry_and_pass_symbols():
    with pytest.raises(ValueError, match="top_k"):
        address_output_shapes((2, 8), 2, 17)
    with pytest.raises(ValueError, match="num_factors"):
        address_output_shapes((2, 9), 2, 1)
    assert address_output_shapes(("B", "W"), 2, 3) == (("B", 3), ("B", 3))


def test_pdma_scan_shapes_match_the_fake_impl():
    from torch._subclasses.fake_tensor import FakeTensorMode

    B, T_, H, dv, M, K = 2, 5, 3, 7, 16, 4
    with FakeTensorMode():
        idx, w = torch.empty(B, T_, H, K, dtype=torch.int64), torch.empty(B, T_, H, K)
        o, S, z = torch.ops.ramnet.pdma_scan(torch.empty(B, T_, H, dv), idx, w, idx, w, torch.empty(B, H, M, dv),
                                             torch.empty(B, H, M), None, 1.0, 1e-6, 1e-3)
    assert pdma_scan_output_shapes((B, T_, H, dv), (B, T_, H, K), (B, H, M, dv), (B, H, M)) == \
        (tuple(o.shape), tuple(S.shape), tuple(z.shape))
    with pytest.raises(ValueError, match="PdmaScan needs"):
        pdma_scan_output_shapes((B, T_, dv), (B, T_, H, K), (B, H, M, dv), (B, H, M))


def test_attribute_marshalling_round_trips_and_refuses_bad_types():
    attrs = {"num_factors": 5, "top_k": 8, "tau": 0.5}
    fields = to_plugin_attrs("Address", attrs)
    assert fields["top_k"].dtype == np.int64 and fields["tau"].dtype == np.float32 and fields["tau"].shape == (1,)
    assert from_plugin_attrs("Address", fields) == attrs
    assert from_plugin_attrs("PdmaScan", to_plugin_attrs("PdmaScan", {"gamma": 1, "eps": 1e-6})) == \
        pytest.approx({"gamma": 1.0, "eps": 1e-6})
    with pytest.raises(TypeError, match="top_k must be an int"):
        to_plugin_attrs("Address", {"num_factors": 5, "top_k": 8.0, "tau": 1.0})
    with pytest.raises(ValueError, match="takes attributes"):
        to_plugin_attrs("Address", {"num_factors": 5})
    with pytest.raises(ValueError, match="unknown ramnet op"):
        to_plugin_attrs("ReadOnly", {})


def test_onnx_nodes_carry_plugin_namespace(tmp_path):
    pytest.importorskip("onnxscript", reason="needs the [onnx] extra")
    import onnx

    from ramnet import RamNetConfig, RamNetForCausalLM
    from ramnet.export.onnx import to_onnx

    model = RamNetForCausalLM(RamNetConfig.from_name("tiny"))
    original = onnx.load(str(to_onnx(model, tmp_path / "p.onnx", flavor="custom", graph="prefill")))
    marked = mark_for_tensorrt(original)
    nodes = [n for n in marked.graph.node if n.domain == "ramnet"]
    assert {n.op_type for n in nodes} == {"Address", "PdmaScan"} and len(nodes) == 3 * model.config.n_layers
    for node in nodes:
        extra = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert extra["plugin_namespace"] == b"ramnet" and extra["plugin_version"] == b"1"
        to_plugin_attrs(node.op_type, node_attrs(node))  # the contract's attributes survive
    assert not any(a.name == "plugin_namespace" for n in original.graph.node for a in n.attribute)  # a copy
    assert mark_for_tensorrt(marked) == marked  # idempotent


def test_import_is_guarded_without_tensorrt():
    if T.available():
        pytest.skip("TensorRT is installed: the guard is not exercised")
    with pytest.raises(ImportError, match="TensorRT is not installed"):
        T.register_plugins()
    with pytest.raises(ImportError, match="torch-tensorrt"):
        T.register_converters()


def test_plugins_register_with_tensorrt():
    pytest.importorskip("tensorrt", reason=NO_TRT)
    T.register_plugins()
