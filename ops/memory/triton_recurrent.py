"""Recurrent Triton kernels of ``ramnet::pdma_scan`` (the ``recurrent`` scan backend): an exact fused-recurrent
forward and backward.

One program per (batch, head) walks the sequence; per token it gathers the K written and K read rows of the
head's state (global memory, L2-resident for M * d_v * 4 bytes per head), updates and stores the written rows
and computes the read from the pre-step rows plus the same update where read and write slots coincide, so that
no row is re-read after being stored within a step. A CTA barrier ends each step.

Backward re-runs the forward saving, per token, the pre-write rows of the write set and the post-write rows of
the read set, then walks the sequence in reverse with gradient accumulators ``dS [M, d_v]``, ``dz [M]`` that start
at the final-state gradients and end as the initial-state gradients. The decay derivative is the proxy one.

This is parallel over (batch, head) only; the ``segment`` backend is parallel over slots too and runs first
where it fits (``backends.py``; measurements in docs/DECISIONS.md and docs/BENCHMARKS.md).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .layout import saved_rows_buffer
from .triton_decay import decay, proxy_decay_grad
from .triton_layout import event_rows, load_row, store_row
from .triton_step import pdma_update_read


@triton.jit
def _span(pid, cu_ptr, T, H, HAS_CU: tl.constexpr):
    """``(batch row, head, first token, end token)`` of state ``pid``; packed sequences read ``cu_seqlens``."""
    n = pid // H
    h = pid % H
    if HAS_CU:
        start = tl.load(cu_ptr + n)
        end = tl.load(cu_ptr + n + 1)
        b = n * 0
    else:
        start = n * 0
        end = start + T
        b = n
    return b, h, start, end


@triton.jit
def _lanes(K, DV, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    """Slot and value-column offsets with their masks (the tile every PDMA program works on)."""
    offs_k = tl.arange(0, BLOCK_K)
    offs_d = tl.arange(0, BLOCK_D)
    mask_k = offs_k < K
    mask_d = offs_d < DV
    return offs_k, offs_d, mask_k, mask_d, mask_k[:, None] & mask_d[None, :]


@triton.jit
def _token_inputs(v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, tok, live, K, DV, offs_k, offs_d, mask_k, mask_d):
    """A token's state-independent inputs; loaded one token ahead so they are in flight during the gathers."""
    mk = mask_k & live
    v = tl.load(v_ptr + tok * DV + offs_d, mask=mask_d & live, other=0.0).to(tl.float32)
    widx = tl.load(widx_ptr + tok * K + offs_k, mask=mk, other=0)
    w = tl.load(ww_ptr + tok * K + offs_k, mask=mk, other=0.0).to(tl.float32)
    ridx = tl.load(ridx_ptr + tok * K + offs_k, mask=mk, other=0)
    r = tl.load(rw_ptr + tok * K + offs_k, mask=mk, other=0.0).to(tl.float32)
    return v, widx, w, ridx, r


@triton.jit
def _saved_rows(go_ptr, sw_ptr, swz_ptr, sr_ptr, srz_ptr, tok, live, K, DV, offs_k, offs_d, mask_k, mask_d):
    """A token's output gradient and the rows its forward saved (pre-write write set, post-write read set)."""
    mk = mask_k & live
    mkd = mk[:, None] & mask_d[None, :]
    go = tl.load(go_ptr + tok * DV + offs_d, mask=mask_d & live, other=0.0).to(tl.float32)
    w_rows, w_z = event_rows(sw_ptr, swz_ptr, tok * K + offs_k, DV, offs_d)
    r_rows, r_z = event_rows(sr_ptr, srz_ptr, tok * K + offs_k, DV, offs_d)
    S_old = load_row(w_rows, mkd)
    z_old = tl.load(w_z, mask=mk, other=0.0)
    S_r = load_row(r_rows, mkd)
    z_r = tl.load(r_z, mask=mk, other=1.0)
    return go, S_old, z_old, S_r, z_r


@triton.jit
def _scan_fwd_kernel(v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, S_ptr, z_ptr, o_ptr, sw_ptr, swz_ptr, sr_ptr, srz_ptr,
                     cu_ptr,
                     T, H, M, K, DV, gamma, eps,
                     BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, SAVE: tl.constexpr, HAS_CU: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)   # state (sequence, head): batch row, or packed sequence with cu_seqlens
    b, h, start, end = _span(pid, cu_ptr, T, H, HAS_CU)
    offs_k, offs_d, mask_k, mask_d, mask_kd = _lanes(K, DV, BLOCK_K, BLOCK_D)
    S_base = S_ptr + pid * M * DV
    z_base = z_ptr + pid * M
    v, widx, w, ridx, r = _token_inputs(v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, (b * T + start) * H + h,
                                        start < end, K, DV, offs_k, offs_d, mask_k, mask_d)
    for t in tl.range(start, end):
        tok = (b * T + t) * H + h                      # row of [B, T, H, ...]
        v_n, widx_n, w_n, ridx_n, r_n = _token_inputs(v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, tok + H,
                                                      t + 1 < end, K, DV, offs_k, offs_d, mask_k, mask_d)
        o, S_w, z_w, S_r, z_r = pdma_update_read(v, widx, w, ridx, r, S_base, z_base, DV, gamma, eps, offs_d,
                                                 mask_k, mask_d)
        if SAVE:
            w_rows, w_z = event_rows(sw_ptr, swz_ptr, tok * K + offs_k, DV, offs_d)
            r_rows, r_z = event_rows(sr_ptr, srz_ptr, tok * K + offs_k, DV, offs_d)
            store_row(w_rows, S_w, mask_kd)
            tl.store(w_z, z_w, mask=mask_k)
            store_row(r_rows, S_r, mask_kd)
            tl.store(r_z, z_r, mask=mask_k)
        tl.store(o_ptr + tok * DV + offs_d, o.to(o_ptr.dtype.element_ty), mask=mask_d)
        v, widx, w, ridx, r = v_n, widx_n, w_n, ridx_n, r_n
        tl.debug_barrier()  # the next token may gather rows stored by other threads of this program


@triton.jit
def _scan_bwd_kernel(go_ptr, v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, sw_ptr, swz_ptr, sr_ptr, srz_ptr, gS_ptr,
                     gz_ptr, dv_ptr, dww_ptr, drw_ptr, cu_ptr, T, H, M, K, DV, gamma, eps, proxy_eps,
                     BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, HAS_CU: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    b, h, start, end = _span(pid, cu_ptr, T, H, HAS_CU)
    offs_k, offs_d, mask_k, mask_d, mask_kd = _lanes(K, DV, BLOCK_K, BLOCK_D)
    gS_base = gS_ptr + pid * M * DV
    gz_base = gz_ptr + pid * M
    last = (b * T + end - 1) * H + h
    v, widx, w, ridx, r = _token_inputs(v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, last, start < end, K, DV,
                                        offs_k, offs_d, mask_k, mask_d)
    go, S_old, z_old, S_r, z_r = _saved_rows(go_ptr, sw_ptr, swz_ptr, sr_ptr, srz_ptr, last, start < end, K, DV,
                                             offs_k, offs_d, mask_k, mask_d)
    for i in tl.range(start, end):
        t = end - 1 - (i - start)
        tok = (b * T + t) * H + h
        more = t - 1 >= start
        v_n, widx_n, w_n, ridx_n, r_n = _token_inputs(v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, tok - H, more, K,
                                                      DV, offs_k, offs_d, mask_k, mask_d)
        go_n, S_old_n, z_old_n, S_r_n, z_r_n = _saved_rows(go_ptr, sw_ptr, swz_ptr, sr_ptr, srz_ptr, tok - H, more,
                                                           K, DV, offs_k, offs_d, mask_k, mask_d)
        # read: o = sum_j r_j S_j / (z_j + eps)
        denom = z_r + eps
        dot = tl.sum(go[None, :] * S_r, axis=1)
        tl.store(drw_ptr + tok * K + offs_k, (dot / denom).to(drw_ptr.dtype.element_ty), mask=mask_k)
        gS_read = tl.where(mask_kd, (r / denom)[:, None] * go[None, :], 0.0)
        gz_read = tl.where(mask_k, -r * dot / (denom * denom), 0.0)
        # accumulators before this step's stores
        G_w = tl.load(gS_base + widx[:, None] * DV + offs_d[None, :], mask=mask_kd, other=0.0)
        Gz_w = tl.load(gz_base + widx, mask=mask_k, other=0.0)
        G_r = tl.load(gS_base + ridx[:, None] * DV + offs_d[None, :], mask=mask_kd, other=0.0)
        Gz_r = tl.load(gz_base + ridx, mask=mask_k, other=0.0)
        tl.debug_barrier()  # all accumulator loads of this step before any of its stores (slots can coincide)
        match = (widx[:, None] == ridx[None, :]) & mask_k[None, :] & mask_k[:, None]   # [write, read]
        G = G_w + tl.sum(tl.where(match[:, :, None], gS_read[None, :, :], 0.0), axis=1)
        Gz = Gz_w + tl.sum(tl.where(match, gz_read[None, :], 0.0), axis=1)
        a = decay(w, gamma)
        dproxy = proxy_decay_grad(w, gamma, proxy_eps)
        d_a = tl.sum(G * S_old, axis=1) + Gz * z_old
        d_w = tl.sum(G * v[None, :], axis=1) + Gz + d_a * dproxy
        tl.store(dww_ptr + tok * K + offs_k, d_w.to(dww_ptr.dtype.element_ty), mask=mask_k)
        d_v = tl.sum(tl.where(mask_k[:, None], w[:, None] * G, 0.0), axis=0)
        tl.store(dv_ptr + tok * DV + offs_d, d_v.to(dv_ptr.dtype.element_ty), mask=mask_d)
        hit_r = tl.sum(match.to(tl.int32), axis=0) > 0                                   # read slot also written
        keep_r = mask_k & (hit_r == 0)
        tl.store(gS_base + ridx[:, None] * DV + offs_d[None, :], G_r + gS_read,
                 mask=keep_r[:, None] & mask_d[None, :])
        tl.store(gz_base + ridx, Gz_r + gz_read, mask=keep_r)
        tl.store(gS_base + widx[:, None] * DV + offs_d[None, :], a[:, None] * G, mask=mask_kd)
        tl.store(gz_base + widx, a * Gz, mask=mask_k)
        v, widx, w, ridx, r = v_n, widx_n, w_n, ridx_n, r_n
        go, S_old, z_old, S_r, z_r = go_n, S_old_n, z_old_n, S_r_n, z_r_n
        tl.debug_barrier()


def recurrent_forward(a, save: bool, num_warps: int = 4):
    """Run the forward kernel on ``a`` (a ``ScanArgs``). Returns ``(o, S fp32, z fp32, [saved write rows, saved
    read rows])``; the rows (``layout.py``) are allocated only when ``save``."""
    B, T, H, DV = a.v.shape
    K, M = a.write_idx.shape[-1], a.S0.shape[2]
    args = [t.contiguous() for t in (a.v, a.write_idx, a.write_w, a.read_idx, a.read_w)]
    S = a.S0.detach().to(torch.float32).contiguous().clone()
    z = a.z0.detach().to(torch.float32).contiguous().clone()
    o = torch.empty(B, T, H, DV, dtype=a.v.dtype, device=a.v.device)
    saved = [saved_rows_buffer(B * T * H * K, DV, a.v.device, save) for _ in range(2)]
    cu = a.cu_seqlens.to(torch.int64).contiguous() if a.cu_seqlens is not None else S
    _scan_fwd_kernel[(a.S0.shape[0] * H,)](*args, S, z, o, *saved[0], *saved[1], cu, T, H, M, K, DV, float(a.gamma),
                                           float(a.eps),
                                           BLOCK_K=triton.next_power_of_2(K), BLOCK_D=triton.next_power_of_2(DV),
                                           SAVE=save, HAS_CU=a.cu_seqlens is not None, num_warps=num_warps)
    return o, S, z, saved


def recurrent_backward(a, grad_o, gS, gz, saved, num_warps: int = 4):
    """The backward kernel over the rows a ``recurrent_forward(save=True)`` stored. ``gS, gz`` (fp32, contiguous):
    final-state gradients in, initial-state gradients out (in place). Returns ``(dv, d_write_w, d_read_w)``."""
    B, T, H, DV = a.v.shape
    K, M = a.write_idx.shape[-1], a.S0.shape[2]
    d_v = torch.empty_like(a.v, memory_format=torch.contiguous_format)
    d_ww = torch.empty(a.write_w.shape, dtype=a.write_w.dtype, device=a.v.device)
    d_rw = torch.empty(a.read_w.shape, dtype=a.read_w.dtype, device=a.v.device)
    args = [t.contiguous() for t in (grad_o, a.v, a.write_idx, a.write_w, a.read_idx, a.read_w)]
    cu = a.cu_seqlens.to(torch.int64).contiguous() if a.cu_seqlens is not None else gS
    _scan_bwd_kernel[(a.S0.shape[0] * H,)](*args, *saved[0], *saved[1], gS, gz, d_v, d_ww, d_rw, cu, T, H, M, K, DV,
                                           float(a.gamma), float(a.eps), float(a.proxy_eps),
                                           BLOCK_K=triton.next_power_of_2(K), BLOCK_D=triton.next_power_of_2(DV),
                                           HAS_CU=a.cu_seqlens is not None, num_warps=num_warps)
    return d_v, d_ww, d_rw
