"""The ``ramnet`` ONNX domain: node schemas that are the plugin contract (TensorRT ``plugin_namespace="ramnet"``,
a native ORT library) and the onnxscript translations of the registered ops into them."""
from __future__ import annotations

import onnx.defs as D
import onnxscript

from ramnet.ops.constants import NAMESPACE

DOMAIN = NAMESPACE
VERSION = 1
_F = D.OpSchema.FormalParameter
_A = D.OpSchema.Attribute
_FLOATS = ["tensor(float)", "tensor(float16)", "tensor(bfloat16)", "tensor(double)"]
_STATE = ["tensor(float)", "tensor(double)"]

SCHEMAS = {
    "Address": D.OpSchema(
        "Address", DOMAIN, VERSION,
        doc="Product softmax over num_factors chunks of x's last dim and exact Top-K; weights descending.",
        inputs=[_F("x", "T")], outputs=[_F("weights", "T"), _F("indices", "tensor(int64)")],
        type_constraints=[("T", _FLOATS, "")],
        attributes=[_A("num_factors", D.OpSchema.AttrType.INT, "U"), _A("top_k", D.OpSchema.AttrType.INT, "K"),
                    _A("tau", D.OpSchema.AttrType.FLOAT, "temperature")]),
    "PdmaScan": D.OpSchema(
        "PdmaScan", DOMAIN, VERSION,
        doc="PDMA write + normalised read over a sequence, from given (CAPE-shifted) addresses.",
        inputs=[_F("v", "T"), _F("write_idx", "tensor(int64)"), _F("write_w", "T"), _F("read_idx", "tensor(int64)"),
                _F("read_w", "T"), _F("S0", "S"), _F("z0", "S")],
        outputs=[_F("o", "T"), _F("S", "S"), _F("z", "S")],
        type_constraints=[("T", _FLOATS, ""), ("S", _STATE, "")],
        attributes=[_A("gamma", D.OpSchema.AttrType.FLOAT, "decay exponent"),
                    _A("eps", D.OpSchema.AttrType.FLOAT, "read normaliser")]),
}


def register_schemas() -> None:
    """Register the domain's schemas with onnx (idempotent): onnxscript needs them to build the nodes."""
    for name, schema in SCHEMAS.items():
        if not D.has(name, DOMAIN):
            D.register_schema(schema)


register_schemas()
_opset = onnxscript.values.Opset(DOMAIN, VERSION)


def address_onnx(x, num_factors: int, top_k: int, tau: float):
    return _opset.Address(x, num_factors=num_factors, top_k=top_k, tau=tau)


def pdma_scan_onnx(v, write_idx, write_w, read_idx, read_w, S0, z0, cu_seqlens, gamma: float, eps: float,
                   proxy_eps: float):
    if cu_seqlens is not None:
        raise NotImplementedError("export of packed sequences (cu_seqlens) is not supported")
    return _opset.PdmaScan(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma=gamma, eps=eps)


def custom_translation_table() -> dict:
    import torch

    return {torch.ops.ramnet.address.default: address_onnx, torch.ops.ramnet.pdma_scan.default: pdma_scan_onnx}
