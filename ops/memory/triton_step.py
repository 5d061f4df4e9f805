"""Triton decode step: the CUDA kernel of ``ramnet::pdma_step_`` (PDMA write then normalised read, in place).

One program per (batch, head): it loads the K written rows of ``S``/``z``, updates and stores them, and computes
the read from the *old* rows plus the same update applied where a read slot equals a written slot, so it never
re-reads what it just stored (no intra-program barrier, no race between programs: heads are disjoint).
Bytes moved per (token, head): ``K (d_v + 1)`` fp32 read + written for the write set and ``K (d_v + 1)`` read for
the read set. No M-sized work; no host synchronisation (CUDA-graph safe).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _pdma_step_kernel(v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, S_ptr, z_ptr, o_ptr, M, K, DV, gamma, eps,
                      BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    offs_k = tl.arange(0, BLOCK_K)
    offs_d = tl.arange(0, BLOCK_D)
    mask_k = offs_k < K
    mask_d = offs_d < DV
    mask_kd = mask_k[:, None] & mask_d[None, :]

    v = tl.load(v_ptr + bh * DV + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    widx = tl.load(widx_ptr + bh * K + offs_k, mask=mask_k, other=0)
    w = tl.load(ww_ptr + bh * K + offs_k, mask=mask_k, other=0.0).to(tl.float32)
    ridx = tl.load(ridx_ptr + bh * K + offs_k, mask=mask_k, other=0)
    r = tl.load(rw_ptr + bh * K + offs_k, mask=mask_k, other=0.0).to(tl.float32)
    # a = (1 - w) ** gamma with 0 ** 0 = 1 (gamma = 0 is a cumulative mean)
    a = tl.where(gamma == 0.0, 1.0, tl.exp2(gamma * tl.log2(1.0 - w)))

    S_base = S_ptr + bh * M * DV
    z_base = z_ptr + bh * M
    # read rows first (old values), then apply this token's write to them where slots coincide
    S_read = tl.load(S_base + ridx[:, None] * DV + offs_d[None, :], mask=mask_kd, other=0.0)
    z_read = tl.load(z_base + ridx, mask=mask_k, other=1.0)
    S_w = tl.load(S_base + widx[:, None] * DV + offs_d[None, :], mask=mask_kd, other=0.0)
    z_w = tl.load(z_base + widx, mask=mask_k, other=0.0)
    S_new = a[:, None] * S_w + w[:, None] * v[None, :]
    z_new = a * z_w + w
    tl.store(S_base + widx[:, None] * DV + offs_d[None, :], S_new, mask=mask_kd)
    tl.store(z_base + widx, z_new, mask=mask_k)

    match = (ridx[:, None] == widx[None, :]) & mask_k[None, :]          # [K_read, K_write]
    hit = tl.sum(match.to(tl.float32), axis=1)                          # 0 or 1
    a_r = tl.sum(tl.where(match, a[None, :], 0.0), axis=1) + (1.0 - hit)
    w_r = tl.sum(tl.where(match, w[None, :], 0.0), axis=1)
    S_read = a_r[:, None] * S_read + w_r[:, None] * v[None, :]
    z_read = a_r * z_read + w_r
    coef = tl.where(mask_k, r / (z_read + eps), 0.0)
    o = tl.sum(coef[:, None] * S_read, axis=0)
    tl.store(o_ptr + bh * DV + offs_d, o.to(o_ptr.dtype.element_ty), mask=mask_d)


def pdma_step_triton(v, write_idx, write_w, read_idx, read_w, S, z, gamma: float, eps: float) -> torch.Tensor:
    """Launch the decode kernel. Shapes as ``naive.pdma_step_inplace``; ``S``/``z`` must be contiguous."""
    B, H, DV = v.shape
    K = write_idx.shape[-1]
    M = S.shape[2]
    if not (S.is_contiguous() and z.is_contiguous()):
        raise ValueError("S and z must be contiguous for the in-place decode kernel")
    v, write_idx, write_w, read_idx, read_w = (t.contiguous() for t in (v, write_idx, write_w, read_idx, read_w))
    o = torch.empty_like(v)
    _pdma_step_kernel[(B * H,)](v, write_idx, write_w, read_idx, read_w, S, z, o, M, K, DV, float(gamma), float(eps),
                                BLOCK_K=triton.next_power_of_2(K), BLOCK_D=triton.next_power_of_2(DV))
    return o
