"""Chunked Triton backward of ``ramnet::pdma_scan`` (dense batches), **experimental** like the chunked forward
(``RAMNET_SCAN=chunked``; tested on CPU and GPU, slower than the default on the H100).

It walks the chunks in reverse with gradient accumulators ``gS [M, d_v]``, ``gz [M]`` that hold the gradient of the
state at the chunk's end. Per chunk, with the chunk's masks and log-decays recomputed (``triton_chunked.py``) and the
rows the forward saved (pre-write write set ``S_old``, post-write read set ``S_r``):

- ``G_e``, the total gradient of the row right after write ``e``, is ``A_rw^T @ dS_r + A_end^T @ gS[slot]`` where
  ``A_rw[r, e] = [same slot, t_e <= t_r] exp(Lr - Lw_e)`` and ``A_end[e', e]`` the same from each slot's last write
  ``e'`` to the chunk end; every factor is ``<= 1``, and nothing divides by a decay.
- ``dv = sum_k w G``, ``dw = <G, v> + Gz + proxy'(w) (<G, S_old> + Gz z_old)`` (the paper's proxy derivative).
- The chunk-start gradient of a slot: ``exp(L_last) gS_end`` if the chunk writes it (else ``gS_end``), plus
  ``sum exp(Lr) dS_r`` over the chunk's reads of it; written back once per slot (a last write, or the first read of
  an unwritten slot), after a barrier.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_chunked import chunk_events
from .triton_decay import proxy_decay_grad


@triton.jit
def _scan_bwd_chunked_kernel(go_ptr, v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, sw_ptr, sr_ptr, gS_ptr, gz_ptr,
                             dv_ptr, dww_ptr, drw_ptr, T, H, M, K, DV, gamma, eps, proxy_eps,
                             BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    b = pid // H
    h = pid % H
    gS_base = gS_ptr + pid * M * DV
    gz_base = gz_ptr + pid * M
    E: tl.constexpr = BLOCK_C * BLOCK_K
    offs_d = tl.arange(0, BLOCK_D)
    offs_e = tl.arange(0, E)
    mask_d = offs_d < DV
    n_chunks = tl.cdiv(T, BLOCK_C)
    for i in tl.range(0, n_chunks):
        t0 = (n_chunks - 1 - i) * BLOCK_C
        tok, live_d, ev, ws, w, rs, r, me, V_ev, la, M_ww, M_rw, Lw, Lr, last, _ = chunk_events(
            v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, b, h, t0, T, H, K, DV, gamma, BLOCK_C, BLOCK_K, BLOCK_D)
        me_d = me[:, None] & mask_d[None, :]
        GO = tl.load(go_ptr + tok[:, None] * DV + offs_d[None, :], mask=live_d, other=0.0).to(tl.float32)
        GO_ev = tl.reshape(GO[:, None, :] + tl.zeros([BLOCK_C, BLOCK_K, BLOCK_D], tl.float32), [E, BLOCK_D])
        row = ev * (DV + 1)
        S_old = tl.load(sw_ptr + row[:, None] + offs_d[None, :], mask=me_d, other=0.0)
        z_old = tl.load(sw_ptr + row + DV, mask=me, other=0.0)
        S_r = tl.load(sr_ptr + row[:, None] + offs_d[None, :], mask=me_d, other=0.0)
        z_r = tl.load(sr_ptr + row + DV, mask=me, other=1.0)
        # read: o = sum_k r S_r / (z_r + eps)
        denom = z_r + eps
        dcoef = tl.sum(GO_ev * S_r, axis=1)
        tl.store(drw_ptr + ev, (dcoef / denom).to(drw_ptr.dtype.element_ty), mask=me)
        dS_r = tl.where(me_d, (r / denom)[:, None] * GO_ev, 0.0)
        dz_r = tl.where(me, -r * dcoef / (denom * denom), 0.0)
        # the end-of-chunk gradients of the written slots (read before any store of this chunk)
        gE = tl.load(gS_base + ws[:, None] * DV + offs_d[None, :], mask=last[:, None] & mask_d[None, :], other=0.0)
        gzE = tl.load(gz_base + ws, mask=last, other=0.0)
        A_rw = tl.where(M_rw, tl.exp(Lr[:, None] - Lw[None, :]), 0.0)                        # [read r, write e]
        A_end = tl.where(M_ww & last[:, None], tl.exp(Lw[:, None] - Lw[None, :]), 0.0)   # [last e2, e]
        G = tl.dot(A_rw.trans(), dS_r, input_precision="ieee") + tl.dot(A_end.trans(), gE, input_precision="ieee")
        Gz = tl.sum(A_rw * dz_r[:, None], axis=0) + tl.sum(A_end * gzE[:, None], axis=0)
        dproxy = proxy_decay_grad(w, gamma, proxy_eps)
        d_w = tl.sum(G * V_ev, axis=1) + Gz + (tl.sum(G * S_old, axis=1) + Gz * z_old) * dproxy
        tl.store(dww_ptr + ev, d_w.to(dww_ptr.dtype.element_ty), mask=me)
        d_v = tl.sum(tl.reshape(w[:, None] * G, [BLOCK_C, BLOCK_K, BLOCK_D]), axis=1)
        tl.store(dv_ptr + tok[:, None] * DV + offs_d[None, :], d_v.to(dv_ptr.dtype.element_ty), mask=live_d)
        # chunk-start gradients: once per slot (its last write, or the first read of a slot the chunk does not write)
        c_r = tl.exp(Lr)[:, None] * dS_r
        cz_r = tl.exp(Lr) * dz_r
        same_wr = (ws[:, None] == rs[None, :]) & me[:, None] & me[None, :]                    # [write e, read r]
        written_r = tl.sum(same_wr.to(tl.int32), axis=0) > 0
        same_rr = (rs[:, None] == rs[None, :]) & me[:, None] & me[None, :]
        first_r = me & ~written_r & (tl.sum((same_rr & (offs_e[None, :] < offs_e[:, None])).to(tl.int32), axis=1) == 0)
        g_prev = tl.load(gS_base + rs[:, None] * DV + offs_d[None, :], mask=first_r[:, None] & mask_d[None, :],
                         other=0.0)
        gz_prev = tl.load(gz_base + rs, mask=first_r, other=0.0)
        start_w = tl.exp(Lw)[:, None] * gE + tl.dot(same_wr.to(tl.float32), c_r, input_precision="ieee")
        startz_w = tl.exp(Lw) * gzE + tl.sum(tl.where(same_wr, cz_r[None, :], 0.0), axis=1)
        start_r = g_prev + tl.dot(same_rr.to(tl.float32), c_r, input_precision="ieee")
        startz_r = gz_prev + tl.sum(tl.where(same_rr, cz_r[None, :], 0.0), axis=1)
        tl.debug_barrier()  # every accumulator load of this chunk before any store
        tl.store(gS_base + ws[:, None] * DV + offs_d[None, :], start_w, mask=last[:, None] & mask_d[None, :])
        tl.store(gz_base + ws, startz_w, mask=last)
        tl.store(gS_base + rs[:, None] * DV + offs_d[None, :], start_r, mask=first_r[:, None] & mask_d[None, :])
        tl.store(gz_base + rs, startz_r, mask=first_r)
        tl.debug_barrier()  # the previous chunk loads what this one stored


def launch_chunked_bwd(go, v, write_idx, write_w, read_idx, read_w, saved_w, saved_r, gS, gz, d_v, d_ww, d_rw,
                       gamma, eps, proxy_eps, chunk: int | None = None, num_warps: int = 4):
    """Fill ``d_v, d_ww, d_rw`` and turn ``gS, gz`` (fp32, final-state gradients) into the initial-state ones."""
    from . import triton_chunked

    B, T, H, DV = v.shape
    K, M = write_idx.shape[-1], gS.shape[2]
    BLOCK_C, BLOCK_K, BLOCK_D = triton_chunked.block_sizes(K, DV, chunk or triton_chunked.CHUNK)
    args = [t.contiguous() for t in (go, v, write_idx, write_w, read_idx, read_w)]
    _scan_bwd_chunked_kernel[(B * H,)](*args, saved_w, saved_r, gS, gz, d_v, d_ww, d_rw, T, H, M, K, DV,
                                       float(gamma), float(eps), float(proxy_eps), BLOCK_C=BLOCK_C, BLOCK_K=BLOCK_K,
                                       BLOCK_D=BLOCK_D, num_warps=num_warps)
