"""Standard-ONNX translations of the registered ops (opset 18): TopK, Gather(Elements), ScatterElements,
LogSoftmax and arithmetic only, so the graph runs in any ORT execution provider.

Built so far: ``Address`` (the beam Top-K unrolled over the U factors, all sizes static) and the T = 1 case of
the scan (the decode graph). The prefill scan (a Loop or chunked form over T) is not built yet.
"""
from __future__ import annotations

from onnxscript import opset18 as op


def _ints(values):
    return op.Constant(value_ints=list(values))


def address_standard(x, num_factors: int, top_k: int, tau: float):
    rank = len(x.shape)
    d_p = int(x.shape[-1]) // num_factors
    keep = [0] * (rank - 1)                                           # Reshape: 0 copies the input dim
    logp = op.LogSoftmax(op.Div(op.Reshape(x, _ints(keep + [num_factors, d_p])), op.CastLike(tau, x)), axis=-1)
    factor = lambda u: op.Gather(logp, op.Constant(value_int=u), axis=rank - 1)  # [..., d_p]
    size = min(top_k, d_p)
    beam_val, beam_idx = op.TopK(factor(0), _ints([size]), axis=-1, largest=1, sorted=1)
    stride = d_p
    for u in range(1, num_factors):
        cand = op.Reshape(op.Add(op.Unsqueeze(beam_val, _ints([-1])), op.Unsqueeze(factor(u), _ints([-2]))),
                          _ints(keep + [size * d_p]))
        offsets = op.Constant(value_ints=[stride * j for j in range(d_p)])
        cand_idx = op.Reshape(op.Add(op.Unsqueeze(beam_idx, _ints([-1])), offsets), _ints(keep + [size * d_p]))
        size = min(top_k, size * d_p)
        beam_val, pos = op.TopK(cand, _ints([size]), axis=-1, largest=1, sorted=1)
        beam_idx = op.GatherElements(cand_idx, pos, axis=-1)
        stride *= d_p
    return op.CastLike(op.Exp(beam_val), x), beam_idx


def pdma_scan_standard(v, write_idx, write_w, read_idx, read_w, S0, z0, cu_seqlens, gamma: float, eps: float,
                       proxy_eps: float):
    if cu_seqlens is not None or v.shape[1] != 1:
        raise NotImplementedError("standard ONNX flavour: only the decode graph (T = 1) is built; the prefill "
                                  "scan (Loop or chunked form) is not built yet")
    one = _ints([1])
    wi, ri = op.Squeeze(write_idx, one), op.Squeeze(read_idx, one)                     # [B, H, K]
    w = op.CastLike(op.Squeeze(write_w, one), S0)
    r = op.CastLike(op.Squeeze(read_w, one), S0)
    vv = op.Unsqueeze(op.CastLike(op.Squeeze(v, one), S0), _ints([2]))                 # [B, H, 1, dv]
    a = op.Pow(op.Sub(op.CastLike(1.0, w), w), op.CastLike(gamma, w))
    last = _ints([-1])
    rows_shape = op.Concat(op.Shape(wi), _ints([int(v.shape[-1])]), axis=0)
    wi_rows = op.Expand(op.Unsqueeze(wi, last), rows_shape)
    ri_rows = op.Expand(op.Unsqueeze(ri, last), rows_shape)
    S_rows = op.Add(op.Mul(op.Unsqueeze(a, last), op.GatherElements(S0, wi_rows, axis=2)),
                    op.Mul(op.Unsqueeze(w, last), vv))
    S1 = op.ScatterElements(S0, wi_rows, S_rows, axis=2)
    z1 = op.ScatterElements(z0, wi, op.Add(op.Mul(a, op.GatherElements(z0, wi, axis=2)), w), axis=2)
    denom = op.Add(op.GatherElements(z1, ri, axis=2), op.CastLike(eps, z1))
    coef = op.Unsqueeze(op.Div(r, denom), last)
    o = op.ReduceSum(op.Mul(coef, op.GatherElements(S1, ri_rows, axis=2)), _ints([2]), keepdims=0)  # [B, H, dv]
    return op.CastLike(op.Unsqueeze(o, one), v), S1, z1


def standard_translation_table() -> dict:
    import torch

    return {torch.ops.ramnet.address.default: address_standard,
            torch.ops.ramnet.pdma_scan.default: pdma_scan_standard}
