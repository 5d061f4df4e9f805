"""Chunked Triton forward of ``ramnet::pdma_scan`` (dense batches): the design in docs/DECISIONS.md ("Chunked
training scan"), **experimental**. Selected with ``RAMNET_SCAN=chunked`` (with its backward,
``triton_chunked_bwd.py``). Tested compiled on the H100 too, but slower there than the fused-recurrent kernels
(``triton_scan.py``), which stay the default: at C >= 4 ptxas spills heavily (``benchmarks/sass_stats.py``), and
at C = 2 the ``[E, E]`` work costs more than the token-steps it saves (measurements in docs/DECISIONS.md).

One program per (batch, head) walks the sequence in chunks of C tokens. For the chunk's E = C*K write and read
events it computes, relative to the state at the chunk start:

- per write event ``e``, the cumulative log-decay ``Lw(e)`` over the writes to the same slot up to ``e``'s token
  (a same-slot, not-later ``[E, E]`` mask times ``log a``); per read event ``r``, ``Lr(r)`` likewise;
- the rows a read sees: ``exp(Lr) S0[slot] + (mask * exp(Lr - Lw) * w) @ V`` (``Lr - Lw <= 0``: no overflow);
- the chunk-end rows of each written slot, from its last write event, by the same formula; they are scattered
  back (the slots of last events are distinct) after a barrier, so the next chunk gathers them.

So C dependent global round trips become one, at the cost of ``[E, E]`` masks and two ``[E, E] @ [E, d_v]`` dots.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

CHUNK = 8  # tokens per chunk (read at call time, so a benchmark can sweep it)
_LOG_FLOOR = tl.constexpr(1.0e-30)  # (1 - w) floor: log stays finite at w = 1; exp(gamma * log(1e-30)) ~ 0


@triton.jit
def _chunk_rows(S_base, z_base, slots, mask_e, offs_d, mask_d, DV, L, C_mat, V_ev):
    """``exp(L) S0[slots] + C_mat @ V_ev`` and the matching ``z`` (rows of the state a set of events sees)."""
    S0 = tl.load(S_base + slots[:, None] * DV + offs_d[None, :], mask=mask_e[:, None] & mask_d[None, :], other=0.0)
    z0 = tl.load(z_base + slots, mask=mask_e, other=0.0)
    scale = tl.exp(L)
    S = scale[:, None] * S0 + tl.dot(C_mat, V_ev, input_precision="ieee")
    z = scale * z0 + tl.sum(C_mat, axis=1)
    return S, z


@triton.jit
def chunk_events(v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, b, h, t0, T, H, K, DV, gamma,
                 BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    """A chunk's E = C*K events (shared by the forward and the backward): token rows, flat event offsets, slots,
    weights, values, masks and log-decays. ``M_ww[e, s]`` / ``M_rw[r, s]``: write ``s`` hits the same slot at a
    token not later than event e / r; ``Lw`` / ``Lr`` the cumulative log-decay each event sees."""
    E: tl.constexpr = BLOCK_C * BLOCK_K
    offs_c = tl.arange(0, BLOCK_C)
    offs_k = tl.arange(0, BLOCK_K)
    offs_d = tl.arange(0, BLOCK_D)
    t_ev = tl.reshape(offs_c[:, None] + 0 * offs_k[None, :], [E])           # token (within chunk) of each event
    live_c = t0 + offs_c < T
    tok = (b * T + t0 + offs_c) * H + h                                      # rows of [B, T, H, ...]
    mk2 = live_c[:, None] & (offs_k[None, :] < K)
    at = tok[:, None] * K + offs_k[None, :]
    ws = tl.reshape(tl.load(widx_ptr + at, mask=mk2, other=0), [E])
    w = tl.reshape(tl.load(ww_ptr + at, mask=mk2, other=0.0).to(tl.float32), [E])
    rs = tl.reshape(tl.load(ridx_ptr + at, mask=mk2, other=0), [E])
    r = tl.reshape(tl.load(rw_ptr + at, mask=mk2, other=0.0).to(tl.float32), [E])
    me = tl.reshape(mk2, [E])
    live_d = live_c[:, None] & (offs_d[None, :] < DV)
    V = tl.load(v_ptr + tok[:, None] * DV + offs_d[None, :], mask=live_d, other=0.0).to(tl.float32)   # [C, D]
    V_ev = tl.reshape(V[:, None, :] + tl.zeros([BLOCK_C, BLOCK_K, BLOCK_D], tl.float32), [E, BLOCK_D])
    la = tl.where(me, gamma * tl.log(tl.maximum(1.0 - w, _LOG_FLOOR)), 0.0)
    earlier = t_ev[None, :] <= t_ev[:, None]
    same_w = (ws[:, None] == ws[None, :]) & me[None, :]
    M_ww = same_w & earlier
    M_rw = (rs[:, None] == ws[None, :]) & earlier & me[None, :]
    Lw = tl.sum(tl.where(M_ww, la[None, :], 0.0), axis=1)
    Lr = tl.sum(tl.where(M_rw, la[None, :], 0.0), axis=1)
    last = me & (tl.sum((same_w & (t_ev[None, :] > t_ev[:, None])).to(tl.int32), axis=1) == 0)  # final write/slot
    ev = tl.reshape(at, [E])
    return (tok, live_d, ev, ws, w, rs, r, me, V_ev, la, M_ww, M_rw, Lw, Lr, last,
            M_ww & (t_ev[None, :] < t_ev[:, None]))


@triton.jit
def _scan_fwd_chunked_kernel(v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, S_ptr, z_ptr, o_ptr, sw_ptr, sr_ptr,
                             T, H, M, K, DV, gamma, eps, BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr,
                             BLOCK_D: tl.constexpr, SAVE: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    b = pid // H
    h = pid % H
    S_base = S_ptr + pid * M * DV
    z_base = z_ptr + pid * M
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < DV
    for t0 in tl.range(0, T, BLOCK_C):
        tok, live_d, ev, ws, w, rs, r, me, V_ev, la, M_ww, M_rw, Lw, Lr, last, strictly_earlier = chunk_events(
            v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, b, h, t0, T, H, K, DV, gamma, BLOCK_C, BLOCK_K, BLOCK_D)
        C_rw = tl.where(M_rw, tl.exp(Lr[:, None] - Lw[None, :]) * w[None, :], 0.0)
        S_r, z_r = _chunk_rows(S_base, z_base, rs, me, offs_d, mask_d, DV, Lr, C_rw, V_ev)
        coef = tl.where(me, r / (z_r + eps), 0.0)
        o = tl.sum(tl.reshape(coef[:, None] * S_r, [BLOCK_C, BLOCK_K, BLOCK_D]), axis=1)   # [C, D]
        tl.store(o_ptr + tok[:, None] * DV + offs_d[None, :], o.to(o_ptr.dtype.element_ty), mask=live_d)
        C_ww = tl.where(M_ww, tl.exp(Lw[:, None] - Lw[None, :]) * w[None, :], 0.0)
        S_w, z_w = _chunk_rows(S_base, z_base, ws, me, offs_d, mask_d, DV, Lw, C_ww, V_ev)
        if SAVE:  # the rows the backward needs (triton_scan.py's layout): pre-write write set, post-write read set
            Lx = Lw - la                                                     # log-decay before the event's own write
            C_wx = tl.where(strictly_earlier, tl.exp(Lx[:, None] - Lw[None, :]) * w[None, :], 0.0)
            S_x, z_x = _chunk_rows(S_base, z_base, ws, me, offs_d, mask_d, DV, Lx, C_wx, V_ev)
            row = ev * (DV + 1)
            me_d = me[:, None] & mask_d[None, :]
            tl.store(sw_ptr + row[:, None] + offs_d[None, :], S_x, mask=me_d)
            tl.store(sw_ptr + row + DV, z_x, mask=me)
            tl.store(sr_ptr + row[:, None] + offs_d[None, :], S_r, mask=me_d)
            tl.store(sr_ptr + row + DV, z_r, mask=me)
        tl.debug_barrier()  # every gather of the chunk-start rows is done before any row is overwritten
        tl.store(S_base + ws[:, None] * DV + offs_d[None, :], S_w, mask=last[:, None] & mask_d[None, :])
        tl.store(z_base + ws, z_w, mask=last)
        tl.debug_barrier()  # the next chunk gathers rows stored by other threads


def block_sizes(K: int, DV: int, chunk: int):
    """``(BLOCK_C, BLOCK_K, BLOCK_D)``: tl.dot needs every dimension >= 16 (events ``BLOCK_C * BLOCK_K``, d_v)."""
    block_k = max(triton.next_power_of_2(K), 2)
    block_c = max(triton.next_power_of_2(chunk), 16 // block_k if block_k < 16 else 1)
    return block_c, block_k, max(triton.next_power_of_2(DV), 16)


def pdma_scan_chunked_triton(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma: float, eps: float,
                             chunk: int | None = None, num_warps: int = 4):
    """Forward ``(o [B,T,H,dv] in v.dtype, S, z)`` like ``pdma_scan_triton``; dense batches only (no cu_seqlens)."""
    o, S, z, _ = launch_chunked(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma, eps, False, chunk, num_warps)
    return o, S.to(S0.dtype), z.to(z0.dtype)


def launch_chunked(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma, eps, save: bool,
                   chunk: int | None = None, num_warps: int = 4):
    """``(o, S fp32, z fp32, saved rows)`` as ``triton_scan._launch_fwd`` returns them (its backward reads them)."""
    B, T, H, DV = v.shape
    K, M = write_idx.shape[-1], S0.shape[2]
    block_c, BLOCK_K, BLOCK_D = block_sizes(K, DV, chunk or CHUNK)
    S = S0.detach().to(torch.float32).contiguous().clone()
    z = z0.detach().to(torch.float32).contiguous().clone()
    o = torch.empty(B, T, H, DV, dtype=v.dtype, device=v.device)
    args = [t.contiguous() for t in (v, write_idx, write_w, read_idx, read_w)]
    saved = [torch.empty(B * T * H * K * (DV + 1) if save else 1, dtype=torch.float32, device=v.device)
             for _ in range(2)]
    _scan_fwd_chunked_kernel[(B * H,)](*args, S, z, o, *saved, T, H, M, K, DV, float(gamma), float(eps),
                                       BLOCK_C=block_c, BLOCK_K=BLOCK_K, BLOCK_D=BLOCK_D,
                                       SAVE=save, num_warps=num_warps)
    return o, S, z, saved
