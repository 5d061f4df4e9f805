"""Pipelined fused-recurrent forward of ``ramnet::pdma_scan`` (CUDA), selected with ``RAMNET_SCAN=pipelined``.

The fused-recurrent forward (``triton_scan.py``) waits, every token, for the gather of that token's rows, which
can only start after the previous token's stores (a dependent global round trip per token). Here the gather of
token t+1's rows is issued at the start of token t, before token t's stores, so it overlaps token t's work. Those
rows can be stale exactly where token t writes; token t's new rows are still in registers, so at token t+1 they
replace the stale rows by slot match (``tl.gather``; a token's K write slots are distinct, so a row matches at most
one). The barrier at the end of each token orders its stores before the gathers of token t+2.

Same arguments, outputs and saved rows as ``triton_scan._scan_fwd_kernel``, packed sequences included.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .triton_scan import _lanes, _span, _token_inputs
from .triton_step import pdma_read_rows, pdma_write_rows


@triton.jit
def _gather_rows(S_base, z_base, idx, live_k, offs_d, mask_d, DV, z_other):
    mask = live_k[:, None] & mask_d[None, :]
    S = tl.load(S_base + idx[:, None] * DV + offs_d[None, :], mask=mask, other=0.0)
    z = tl.load(z_base + idx, mask=live_k, other=z_other)
    return S, z


@triton.jit
def _patch(S, z, idx, prev_idx, prev_S, prev_z, offs_k, BLOCK_D: tl.constexpr):
    """Rows ``S, z`` of slots ``idx`` with the rows of ``prev_idx`` (the previous token's writes, -1 where none)
    replaced by ``prev_S, prev_z``."""
    match = idx[:, None] == prev_idx[None, :]                                          # [K, K_prev]
    hit = tl.sum(match.to(tl.int32), axis=1) > 0
    src = tl.sum(tl.where(match, offs_k[None, :], 0), axis=1)                          # the matching prev row
    S_prev = tl.gather(prev_S, tl.broadcast_to(src[:, None], [src.shape[0], BLOCK_D]), axis=0)
    z_prev = tl.gather(prev_z, src, axis=0)
    return tl.where(hit[:, None], S_prev, S), tl.where(hit, z_prev, z)


@triton.jit
def _scan_fwd_pipelined_kernel(v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, S_ptr, z_ptr, o_ptr, sw_ptr, sr_ptr,
                               cu_ptr, T, H, M, K, DV, gamma, eps, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                               SAVE: tl.constexpr, HAS_CU: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    b, h, start, end = _span(pid, cu_ptr, T, H, HAS_CU)
    offs_k, offs_d, mask_k, mask_d, mask_kd = _lanes(K, DV, BLOCK_K, BLOCK_D)
    S_base = S_ptr + pid * M * DV
    z_base = z_ptr + pid * M
    tok0 = (b * T + start) * H + h
    v, widx, w, ridx, r = _token_inputs(v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, tok0, start < end, K, DV, offs_k,
                                  offs_d, mask_k, mask_d)
    v_n, widx_n, w_n, ridx_n, r_n = _token_inputs(v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, tok0 + H, start + 1 < end,
                                            K, DV, offs_k, offs_d, mask_k, mask_d)
    live0 = mask_k & (start < end)
    S_w, z_w = _gather_rows(S_base, z_base, widx, live0, offs_d, mask_d, DV, 0.0)
    S_r, z_r = _gather_rows(S_base, z_base, ridx, live0, offs_d, mask_d, DV, 1.0)
    prev_idx = tl.full([BLOCK_K], -1, tl.int64)
    prev_S = tl.zeros([BLOCK_K, BLOCK_D], tl.float32)
    prev_z = tl.zeros([BLOCK_K], tl.float32)
    for t in tl.range(start, end):
        tok = (b * T + t) * H + h
        # token t+1's rows, issued before token t's stores (stale where token t writes: patched next iteration)
        live_n = mask_k & (t + 1 < end)
        S_wn, z_wn = _gather_rows(S_base, z_base, widx_n, live_n, offs_d, mask_d, DV, 0.0)
        S_rn, z_rn = _gather_rows(S_base, z_base, ridx_n, live_n, offs_d, mask_d, DV, 1.0)
        v_nn, widx_nn, w_nn, ridx_nn, r_nn = _token_inputs(v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, tok + 2 * H,
                                                     t + 2 < end, K, DV, offs_k, offs_d, mask_k, mask_d)
        S_w, z_w = _patch(S_w, z_w, widx, prev_idx, prev_S, prev_z, offs_k, BLOCK_D)
        S_r, z_r = _patch(S_r, z_r, ridx, prev_idx, prev_S, prev_z, offs_k, BLOCK_D)
        S_new, z_new, a = pdma_write_rows(v, w, S_w, z_w, gamma)
        tl.store(S_base + widx[:, None] * DV + offs_d[None, :], S_new, mask=mask_kd)
        tl.store(z_base + widx, z_new, mask=mask_k)
        o, S_rp, z_rp = pdma_read_rows(v, widx, w, a, ridx, r, S_r, z_r, eps, mask_k)
        if SAVE:  # the rows the backward needs: pre-write write set, post-write read set
            ev = (tok * K + offs_k) * (DV + 1)
            tl.store(sw_ptr + ev[:, None] + offs_d[None, :], S_w, mask=mask_kd)
            tl.store(sw_ptr + ev + DV, z_w, mask=mask_k)
            tl.store(sr_ptr + ev[:, None] + offs_d[None, :], S_rp, mask=mask_kd)
            tl.store(sr_ptr + ev + DV, z_rp, mask=mask_k)
        tl.store(o_ptr + tok * DV + offs_d, o.to(o_ptr.dtype.element_ty), mask=mask_d)
        prev_idx = tl.where(mask_k, widx, -1)
        prev_S = S_new
        prev_z = z_new
        v, widx, w, ridx, r = v_n, widx_n, w_n, ridx_n, r_n
        v_n, widx_n, w_n, ridx_n, r_n = v_nn, widx_nn, w_nn, ridx_nn, r_nn
        S_w, z_w, S_r, z_r = S_wn, z_wn, S_rn, z_rn
        tl.debug_barrier()  # this token's stores before the gathers of token t+2 (issued next iteration)


def launch_pipelined(args, S, z, o, saved, cu, T, H, M, K, DV, gamma, eps, save: bool, has_cu: bool, grid: int,
                     num_warps: int = 4):
    """Launch with ``triton_scan._launch_fwd``'s prepared buffers (it owns the allocation and the dtype rules)."""
    _scan_fwd_pipelined_kernel[(grid,)](*args, S, z, o, *saved, cu, T, H, M, K, DV, float(gamma), float(eps),
                                        BLOCK_K=triton.next_power_of_2(K), BLOCK_D=triton.next_power_of_2(DV),
                                        SAVE=save, HAS_CU=has_cu, num_warps=num_warps)
