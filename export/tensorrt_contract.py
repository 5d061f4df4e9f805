"""The TensorRT-independent half of the TensorRT path, tested on CPU: output-shape functions, attribute
marshalling, and the ONNX rewrite that points the ``ramnet`` nodes at TensorRT plugins.

The contract (the same as the ONNX custom domain, ``export/onnx_schemas.py``):

- ``ramnet::Address(x [..., U*d_p]; num_factors, top_k, tau) -> weights [..., K] (x's dtype), indices int64 [..., K]``
- ``ramnet::PdmaScan(v [B,T,H,dv], write_idx, write_w, read_idx, read_w [B,T,H,K], S0 [B,H,M,dv], z0 [B,H,M];
  gamma, eps) -> o [B,T,H,dv] (v's dtype), S [B,H,M,dv], z [B,H,M] (state dtype)``

TensorRT's ONNX parser looks up an unknown node in the plugin registry by ``op_type``, ``plugin_namespace`` and
``plugin_version`` (onnx-tensorrt's plugin fallback); ``mark_for_tensorrt`` adds the last two. Unverified here:
TensorRT cannot be installed on any machine of this project (README, "TensorRT").
"""
from __future__ import annotations

from ramnet.ops.constants import NAMESPACE

import numpy as np

PLUGIN_NAMESPACE = NAMESPACE  # one name: torch.library namespace, ONNX domain, plugin namespace
PLUGIN_VERSION = "1"
ATTRIBUTES = {"Address": {"num_factors": int, "top_k": int, "tau": float},
              "PdmaScan": {"gamma": float, "eps": float}}


def address_output_shapes(x_shape, num_factors: int, top_k: int):
    """``x [..., U*d_p] -> ([..., K], [..., K])``. Symbolic dims pass through (TensorRT's ``ShapeExpr``)."""
    if len(x_shape) < 1:
        raise ValueError(f"Address input x must have rank >= 1, got shape {tuple(x_shape)}")
    width = x_shape[-1]
    if isinstance(width, int):
        if num_factors < 1 or width % num_factors or width // num_factors < 2:
            raise ValueError(f"num_factors={num_factors} must divide x's last dim ({width}) into factors of >= 2")
        if not 1 <= top_k <= (width // num_factors) ** num_factors:
            raise ValueError(f"top_k must be in [1, {(width // num_factors) ** num_factors}], got {top_k}")
    out = tuple(x_shape[:-1]) + (top_k,)
    return out, out


def pdma_scan_output_shapes(v_shape, write_idx_shape, S0_shape, z0_shape):
    """``(o, S, z)`` shapes: ``v``'s, ``S0``'s and ``z0``'s (the scan is shape-preserving)."""
    if len(v_shape) != 4 or len(write_idx_shape) != 4 or len(S0_shape) != 4 or len(z0_shape) != 3:
        raise ValueError("PdmaScan needs v [B,T,H,dv], write_idx [B,T,H,K], S0 [B,H,M,dv], z0 [B,H,M]; got "
                         f"{tuple(v_shape)}, {tuple(write_idx_shape)}, {tuple(S0_shape)}, {tuple(z0_shape)}")
    return tuple(v_shape), tuple(S0_shape), tuple(z0_shape)


def to_plugin_attrs(op_type: str, attrs: dict) -> dict:
    """Node attributes -> TensorRT QDP attribute values (ints and floats as 1-element numpy arrays, the encoding
    TensorRT plugin fields use; ``tensorrt.plugin`` accepts no lists)."""
    spec = ATTRIBUTES.get(op_type)
    if spec is None:
        raise ValueError(f"unknown ramnet op {op_type!r}; known: {sorted(ATTRIBUTES)}")
    if set(attrs) != set(spec):
        raise ValueError(f"ramnet::{op_type} takes attributes {sorted(spec)}, got {sorted(attrs)}")
    out = {}
    for name, kind in spec.items():
        value = attrs[name]
        if kind is int and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
            raise TypeError(f"ramnet::{op_type} attribute {name} must be an int, got {type(value).__name__}")
        if kind is float and not isinstance(value, (int, float, np.floating)):
            raise TypeError(f"ramnet::{op_type} attribute {name} must be a float, got {type(value).__name__}")
        out[name] = np.array([value], dtype=np.int64 if kind is int else np.float32)
    return out


def from_plugin_attrs(op_type: str, fields: dict) -> dict:
    """The inverse of ``to_plugin_attrs``: plugin fields -> Python ints and floats."""
    spec = ATTRIBUTES[op_type]
    return {name: kind(np.asarray(fields[name]).reshape(-1)[0]) for name, kind in spec.items()}


def node_attrs(node) -> dict:
    """An ONNX ``ramnet`` node's attributes as Python values."""
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute
            if a.name not in ("plugin_namespace", "plugin_version")}


def mark_for_tensorrt(model):
    """Return a copy of a custom-flavour ONNX model whose ``ramnet`` nodes carry ``plugin_namespace="ramnet"``
    and ``plugin_version="1"``, so that TensorRT's ONNX parser resolves them to the registered plugins."""
    import onnx

    marked = onnx.ModelProto()
    marked.CopyFrom(model)
    for node in marked.graph.node:
        if node.domain != PLUGIN_NAMESPACE:
            continue
        to_plugin_attrs(node.op_type, node_attrs(node))  # validates the contract
        kept = [a for a in node.attribute if a.name not in ("plugin_namespace", "plugin_version")]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.extend([onnx.helper.make_attribute("plugin_namespace", PLUGIN_NAMESPACE),
                               onnx.helper.make_attribute("plugin_version", PLUGIN_VERSION)])
    return marked
