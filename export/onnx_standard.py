"""Standard-ONNX translations of the registered ops (opset 18): TopK, Gather(Elements), ScatterElements,
LogSoftmax and arithmetic only, so the graph runs in any ORT execution provider.

``Address`` is the beam Top-K unrolled over the U factors (all sizes static); the scan is the
``Loop`` over T of ``export/onnx_standard_scan.py`` (one iteration in the decode graph).
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
    """Decode (T = 1) and prefill alike: the ``Loop`` of ``pdma_scan_loop``, computed in the state dtype."""
    from .onnx_standard_scan import pdma_scan_loop

    if cu_seqlens is not None:
        raise NotImplementedError("export of packed sequences (cu_seqlens) is not supported")
    o, S1, z1 = pdma_scan_loop(op.CastLike(v, S0), write_idx, op.CastLike(write_w, S0), read_idx,
                               op.CastLike(read_w, S0), S0, z0, gamma=gamma, eps=eps)
    return op.CastLike(o, v), S1, z1


def standard_translation_table() -> dict:
    import torch

    return {torch.ops.ramnet.address.default: address_standard,
            torch.ops.ramnet.pdma_scan.default: pdma_scan_standard}
