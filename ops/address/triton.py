"""Triton forward of ``ramnet::address``: per-factor log-softmax and the exact beam Top-K fused in one program per
row. The beam merge selects the K best of the ``K * d_p`` candidates, either with a bitonic ``tl.topk`` over
packed int64 keys (``merge="topk"``, the default: value bits in the high half, ``~index`` in the low half, so
one integer compare orders by value and breaks ties to the lower index) or by pairwise rank (``merge="rank"``,
kept for A/B timing). Which geometries it takes is the ``TritonAddress`` backend's ``supports``
(``backends.py``).

Order: weight descending, ties to the lower flat index (the same rule as ``naive.py``).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

_NEG = tl.constexpr(-1.0e30)
_LOW32 = tl.constexpr(0xFFFFFFFF)
_ABS31 = tl.constexpr(0x7FFFFFFF)


@triton.jit
def _ordered_bits(x):
    """fp32 -> int32 with the same order (flip the magnitude bits of negatives); an involution."""
    bits = x.to(tl.int32, bitcast=True)
    return bits ^ ((bits >> 31) & _ABS31)


@triton.jit
def _merge_topk(cand_val, cand_idx, BLOCK_K: tl.constexpr):
    """The BLOCK_K best candidates, value descending, ties to the lower index: one bitonic top-k over int64 keys."""
    key = (_ordered_bits(cand_val).to(tl.int64) << 32) | (_LOW32 - cand_idx)
    top = tl.topk(key, BLOCK_K)
    beam_idx = _LOW32 - (top & _LOW32)
    beam_val = _ordered_bits((top >> 32).to(tl.int32)).to(tl.float32, bitcast=True)
    return beam_val, beam_idx


@triton.jit
def beam_topk_row(x_row_ptr, K, M, inv_tau, U: tl.constexpr, P: tl.constexpr,
                  BLOCK_U: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr, TOPK_MERGE: tl.constexpr):
    """Beam Top-K of one row ``x [U * P]``: returns ``(log weights [BLOCK_K], flat indices [BLOCK_K], has_nan)``.
    Shared by the address kernel and the fused decode kernel."""
    offs_u = tl.arange(0, BLOCK_U)
    offs_p = tl.arange(0, BLOCK_P)
    mask_up = (offs_u[:, None] < U) & (offs_p[None, :] < P)
    x = tl.load(x_row_ptr + offs_u[:, None] * P + offs_p[None, :], mask=mask_up, other=0.0).to(tl.float32)
    has_nan = tl.max(tl.max((x != x).to(tl.int32), axis=1), axis=0) > 0  # NaN in, NaN weights out (policy)
    x = tl.where(mask_up, x * inv_tau, float("-inf"))
    x_max = tl.max(x, axis=1)
    lse = x_max + tl.log(tl.sum(tl.exp(x - x_max[:, None]), axis=1))
    logp = tl.where(mask_up, x - lse[:, None], _NEG)                       # [BLOCK_U, BLOCK_P]

    offs_k = tl.arange(0, BLOCK_K)
    N: tl.constexpr = BLOCK_K * BLOCK_P
    beam_val = tl.where(offs_k == 0, 0.0, _NEG)                            # the empty prefix, probability 1
    beam_idx = tl.zeros([BLOCK_K], dtype=tl.int64)
    stride = 1
    for u in tl.static_range(U):
        lp = tl.sum(tl.where(offs_u[:, None] == u, logp, 0.0), axis=0)     # factor u, [BLOCK_P]
        lp = tl.where(offs_p < P, lp, _NEG)
        cand_val = tl.reshape(beam_val[:, None] + lp[None, :], [N])
        cand_idx = tl.reshape(beam_idx[:, None] + stride * offs_p[None, :].to(tl.int64), [N])
        pos = tl.arange(0, N)
        invalid = cand_val < -1.0e29
        cand_val = tl.where(invalid, _NEG, cand_val)
        cand_idx = tl.where(invalid, M + pos.to(tl.int64), cand_idx)      # unique keys, ranked after every valid one
        if TOPK_MERGE and BLOCK_K > 1:  # (tl.topk reduces k=1 to a scalar; the rank path is tiny there)
            beam_val, beam_idx = _merge_topk(cand_val, cand_idx, BLOCK_K)
        else:
            better = (cand_val[None, :] > cand_val[:, None]) | \
                     ((cand_val[None, :] == cand_val[:, None]) & (cand_idx[None, :] < cand_idx[:, None]))
            rank = tl.sum(better.to(tl.int32), axis=1)                     # [N], a permutation of 0..N-1
            sel = rank[None, :] == offs_k[:, None]                         # [BLOCK_K, N]
            beam_val = tl.max(tl.where(sel, cand_val[None, :], _NEG), axis=1)
            beam_idx = tl.max(tl.where(sel, cand_idx[None, :], -1), axis=1)
        stride = stride * P
    beam_idx = tl.minimum(tl.maximum(beam_idx, 0), M - 1)                  # valid slots even for NaN inputs
    return beam_val, beam_idx, has_nan


@triton.jit
def _address_fwd_kernel(x_ptr, w_ptr, idx_ptr, n_rows, K, M, inv_tau, U: tl.constexpr, P: tl.constexpr,
                        BLOCK_U: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
                        TOPK_MERGE: tl.constexpr, ROWS: tl.constexpr):
    """``ROWS`` consecutive rows per program, unrolled: independent rows whose instructions the compiler can
    interleave (one row is a few dozen numbers, too little to hide latency alone)."""
    offs_k = tl.arange(0, BLOCK_K)
    mask_k = offs_k < K
    for i in tl.static_range(ROWS):
        row = tl.program_id(0).to(tl.int64) * ROWS + i
        live = row < n_rows
        safe = tl.where(live, row, 0)  # a past-the-end row reads row 0 and stores nothing
        beam_val, beam_idx, has_nan = beam_topk_row(x_ptr + safe * U * P, K, M, inv_tau, U, P, BLOCK_U, BLOCK_P,
                                                    BLOCK_K, TOPK_MERGE)
        weights = tl.where(has_nan, float("nan"), tl.exp(beam_val))
        tl.store(w_ptr + row * K + offs_k, weights.to(w_ptr.dtype.element_ty), mask=mask_k & live)
        tl.store(idx_ptr + row * K + offs_k, beam_idx, mask=mask_k & live)


def address_triton(x: torch.Tensor, num_factors: int, top_k: int, tau: float, *, merge: str = "topk",
                   num_warps: int = 1, rows_per_program: int = 1):
    """``x [..., U * d_p]`` -> ``(weights [..., K] in x.dtype, indices int64 [..., K])`` (the op's output order).
    The geometry must be one ``TritonAddress.supports``."""
    d_p = x.shape[-1] // num_factors
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    n = rows.shape[0]
    weights = torch.empty(n, top_k, dtype=x.dtype, device=x.device)
    indices = torch.empty(n, top_k, dtype=torch.int64, device=x.device)
    if n:
        _address_fwd_kernel[(triton.cdiv(n, rows_per_program),)](
            rows, weights, indices, n, top_k, d_p**num_factors, 1.0 / tau, U=num_factors, P=d_p,
            BLOCK_U=triton.next_power_of_2(num_factors), BLOCK_P=triton.next_power_of_2(d_p),
            BLOCK_K=triton.next_power_of_2(top_k), TOPK_MERGE=merge == "topk", ROWS=rows_per_program,
            num_warps=num_warps)
    shape = x.shape[:-1] + (top_k,)
    return weights.view(shape), indices.view(shape)
