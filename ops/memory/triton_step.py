"""Triton decode kernel of ``ramnet::ram_step_``: addresses + CAPE + PDMA write and read in one launch per layer,
and ``pdma_update_read``, the write-then-read step that the recurrent training scan shares.

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

from ..address.triton import beam_topk_row
from .triton_decay import decay


@triton.jit
def pdma_update_read(v, widx, w, ridx, r, S_base, z_base, DV, gamma, eps, offs_d, mask_k, mask_d):
    """Write ``v`` into the K rows ``widx`` with weights ``w``, then read rows ``ridx`` with weights ``r``.
    Reads use the pre-step rows plus this step's update where slots coincide (no re-read after store).
    Returns ``(o [BLOCK_D], pre-write rows S_w, z_w, post-write read rows S_r, z_r)``; the training scan saves
    the rows for its backward, decode ignores them."""
    mask_kd = mask_k[:, None] & mask_d[None, :]
    a = decay(w, gamma)
    S_read = tl.load(S_base + ridx[:, None] * DV + offs_d[None, :], mask=mask_kd, other=0.0)
    z_read = tl.load(z_base + ridx, mask=mask_k, other=1.0)
    S_w = tl.load(S_base + widx[:, None] * DV + offs_d[None, :], mask=mask_kd, other=0.0)
    z_w = tl.load(z_base + widx, mask=mask_k, other=0.0)
    # every thread must hold its pre-step rows before any thread stores: a read slot can equal a written slot,
    # and threads of one program are not ordered without a barrier
    tl.debug_barrier()
    tl.store(S_base + widx[:, None] * DV + offs_d[None, :], a[:, None] * S_w + w[:, None] * v[None, :], mask=mask_kd)
    tl.store(z_base + widx, a * z_w + w, mask=mask_k)
    match = (ridx[:, None] == widx[None, :]) & mask_k[None, :]          # [K_read, K_write]
    hit = tl.sum(match.to(tl.float32), axis=1)                          # 0 or 1
    a_r = tl.sum(tl.where(match, a[None, :], 0.0), axis=1) + (1.0 - hit)
    w_r = tl.sum(tl.where(match, w[None, :], 0.0), axis=1)
    S_read = a_r[:, None] * S_read + w_r[:, None] * v[None, :]
    z_read = a_r * z_read + w_r
    coef = tl.where(mask_k, r / (z_read + eps), 0.0)
    return tl.sum(coef[:, None] * S_read, axis=0), S_w, z_w, S_read, z_read


@triton.jit
def _ram_step_kernel(q_ptr, k_ptr, v_ptr, pos_ptr, cape_ptr, S_ptr, z_ptr, o_ptr, H, M, K, DV, gamma, eps, inv_tau,
                     U: tl.constexpr, P: tl.constexpr, BLOCK_U: tl.constexpr, BLOCK_P: tl.constexpr,
                     BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, TOPK_MERGE: tl.constexpr):
    """The whole decode token for one (batch, head): both addresses, the CAPE shift, the write and the read."""
    bh = tl.program_id(0).to(tl.int64)
    b = bh // H
    h = bh % H
    offs_k = tl.arange(0, BLOCK_K)
    offs_d = tl.arange(0, BLOCK_D)
    mask_k = offs_k < K
    mask_d = offs_d < DV
    wlog, widx, w_nan = beam_topk_row(k_ptr + bh * U * P, K, M, inv_tau, U, P, BLOCK_U, BLOCK_P, BLOCK_K, TOPK_MERGE)
    rlog, ridx, r_nan = beam_topk_row(q_ptr + bh * U * P, K, M, inv_tau, U, P, BLOCK_U, BLOCK_P, BLOCK_K, TOPK_MERGE)
    w = tl.where(w_nan, float("nan"), tl.exp(wlog))
    r = tl.where(r_nan, float("nan"), tl.exp(rlog))
    shift = tl.load(pos_ptr + b) % M                                    # positions are >= 0
    cape = tl.load(cape_ptr + h) != 0
    widx = tl.where(cape, (widx - shift + M) % M, widx)
    ridx = tl.where(cape, (ridx - shift + M) % M, ridx)
    v = tl.load(v_ptr + bh * DV + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    o, _, _, _, _ = pdma_update_read(v, widx, w, ridx, r, S_ptr + bh * M * DV, z_ptr + bh * M, DV, gamma, eps,
                                     offs_d, mask_k, mask_d)
    tl.store(o_ptr + bh * DV + offs_d, o.to(o_ptr.dtype.element_ty), mask=mask_d)


def fused_num_warps(programs: int) -> int:
    """4 warps while the grid is small (latency-bound), 2 once it fills the GPU (measured: docs/DECISIONS.md,
    decode warps)."""
    return 4 if programs < 1024 else 2


def ram_step_triton(q, k, v, S, z, position, cape, num_factors: int, top_k: int, gamma: float, tau: float,
                    eps: float, num_warps: int | None = None, merge: str = "topk") -> torch.Tensor:
    """One fused launch for a decode token: ``q, k [B,H,d_k]``, ``v [B,H,d_v]``, ``position`` int64 ``[B]``,
    ``cape`` bool ``[H]``; updates ``S [B,H,M,d_v]`` and ``z [B,H,M]`` in place and returns ``o [B,H,d_v]``."""
    B, H, DV = v.shape
    d_p = q.shape[-1] // num_factors
    M = S.shape[2]
    if not (S.is_contiguous() and z.is_contiguous()):
        raise ValueError("S and z must be contiguous for the in-place decode kernel")
    q, k, v, position = (t.contiguous() for t in (q, k, v, position))
    o = torch.empty_like(v)
    _ram_step_kernel[(B * H,)](q, k, v, position, cape.to(torch.int8), S, z, o, H, M, top_k, DV, float(gamma),
                               float(eps), 1.0 / tau, U=num_factors, P=d_p,
                               BLOCK_U=triton.next_power_of_2(num_factors), BLOCK_P=triton.next_power_of_2(d_p),
                               BLOCK_K=triton.next_power_of_2(top_k), BLOCK_D=triton.next_power_of_2(DV),
                               TOPK_MERGE=merge == "topk", num_warps=num_warps or fused_num_warps(B * H))
    return o
