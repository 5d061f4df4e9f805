"""The PDMA scan in standard ONNX ops: ``pdma_scan_loop``, an onnxscript *script* function whose ``for`` becomes
a ``Loop`` over T that carries ``S, z`` (each iteration: one token's write, then its normalised read).

The exporter adds it as a local function and inlines it, so the saved graph holds only standard-domain nodes.
(The token step is written inside the loop rather than as a second function: the exporter does not keep a
function that is called only from a ``Loop`` body.) Design and the alternatives: docs/DECISIONS.md ("Standard
ONNX prefill"). Shapes: ``v [B,T,H,dv]``, ``*_idx / *_w [B,T,H,K]``, ``S [B,H,M,dv]``, ``z [B,H,M]``.
"""
from __future__ import annotations

import onnxscript
from onnxscript import FLOAT, INT64
from onnxscript import opset18 as op

STD_FUNCTIONS = onnxscript.values.Opset("ramnet.standard", 1)  # a local-function domain, inlined on export


@onnxscript.script(STD_FUNCTIONS, default_opset=op)
def pdma_scan_loop(v: FLOAT, write_idx: INT64, write_w: FLOAT, read_idx: INT64, read_w: FLOAT, S0: FLOAT,
                   z0: FLOAT, gamma: float, eps: float) -> tuple[FLOAT, FLOAT, FLOAT]:
    """Token-serial scan (``Loop`` over T). Returns ``(o [B,T,H,dv], S_T, z_T)``; all inputs in the state dtype."""
    axis1 = op.Constant(value_ints=[1])
    last = op.Constant(value_ints=[-1])
    g = op.CastLike(op.Constant(value_float=gamma), S0)
    e = op.CastLike(op.Constant(value_float=eps), S0)
    T = op.Squeeze(op.Shape(v, start=1, end=2))
    S = S0
    z = z0
    o = op.Slice(v, op.Constant(value_ints=[0]), op.Constant(value_ints=[0]), axis1)   # [B, 0, H, dv]
    for t in range(T):
        at = op.Reshape(t, axis1)
        v_t = op.Gather(v, at, axis=1)                                                  # [B, 1, H, dv]
        wi = op.Squeeze(op.Gather(write_idx, at, axis=1), axis1)                        # [B, H, K]
        w = op.Squeeze(op.Gather(write_w, at, axis=1), axis1)
        ri = op.Squeeze(op.Gather(read_idx, at, axis=1), axis1)
        r = op.Squeeze(op.Gather(read_w, at, axis=1), axis1)
        a = op.Pow(op.Sub(op.CastLike(1.0, w), w), g)                                   # (1 - w)^gamma
        rows_shape = op.Concat(op.Shape(wi), op.Shape(v, start=3), axis=0)              # [B, H, K, dv]
        wi_rows = op.Expand(op.Unsqueeze(wi, last), rows_shape)
        ri_rows = op.Expand(op.Unsqueeze(ri, last), rows_shape)
        vv = op.Transpose(v_t, perm=[0, 2, 1, 3])                                       # [B, H, 1, dv]
        S_rows = op.Add(op.Mul(op.Unsqueeze(a, last), op.GatherElements(S, wi_rows, axis=2)),
                        op.Mul(op.Unsqueeze(w, last), vv))
        S = op.ScatterElements(S, wi_rows, S_rows, axis=2)     # the K write slots of a token are distinct
        z = op.ScatterElements(z, wi, op.Add(op.Mul(a, op.GatherElements(z, wi, axis=2)), w), axis=2)
        coef = op.Unsqueeze(op.Div(r, op.Add(op.GatherElements(z, ri, axis=2), e)), last)
        o_t = op.ReduceSum(op.Mul(coef, op.GatherElements(S, ri_rows, axis=2)), op.Constant(value_ints=[2]),
                           keepdims=1)                                                  # [B, H, 1, dv]
        o = op.Concat(o, op.Transpose(o_t, perm=[0, 2, 1, 3]), axis=1)
    return o, S, z
