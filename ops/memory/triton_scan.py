"""Triton training kernels for ``ramnet::pdma_scan`` (CUDA): an exact fused-recurrent forward and backward.

One program per (batch, head) walks the sequence; per token it gathers the K written and K read rows of the
head's state (global memory, L2-resident for M * d_v * 4 bytes per head), updates and stores the written rows
and computes the read from the pre-step rows plus the same update where read and write slots coincide, so that
no row is re-read after being stored within a step. A CTA barrier ends each step.

Backward re-runs the forward saving, per token, the pre-write rows of the write set and the post-write rows of
the read set, then walks the sequence in reverse with gradient accumulators ``dS [M, d_v]``, ``dz [M]`` that start
at the final-state gradients and end as the initial-state gradients. The decay derivative is the proxy one.

This is parallel over (batch, head) only: the first Triton form, measured against the alternatives in
docs/DECISIONS.md and BENCHMARKS.md.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .scan_config import SCAN_FORWARD
from .triton_decay import decay, proxy_decay_grad
from .triton_step import pdma_update_read

# warps per (sequence, head) program (read at call time, so a benchmark can sweep them; see docs/DECISIONS.md)
FWD_WARPS = 4
BWD_WARPS = 4


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
def _saved_rows(go_ptr, sw_ptr, sr_ptr, tok, live, K, DV, offs_k, offs_d, mask_k, mask_d):
    """A token's output gradient and the rows its forward saved (pre-write write set, post-write read set)."""
    mk = mask_k & live
    mkd = mk[:, None] & mask_d[None, :]
    go = tl.load(go_ptr + tok * DV + offs_d, mask=mask_d & live, other=0.0).to(tl.float32)
    ev = (tok * K + offs_k) * (DV + 1)
    S_old = tl.load(sw_ptr + ev[:, None] + offs_d[None, :], mask=mkd, other=0.0)
    z_old = tl.load(sw_ptr + ev + DV, mask=mk, other=0.0)
    S_r = tl.load(sr_ptr + ev[:, None] + offs_d[None, :], mask=mkd, other=0.0)
    z_r = tl.load(sr_ptr + ev + DV, mask=mk, other=1.0)
    return go, S_old, z_old, S_r, z_r


@triton.jit
def _scan_fwd_kernel(v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, S_ptr, z_ptr, o_ptr, sw_ptr, sr_ptr, cu_ptr,
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
            ev = (tok * K + offs_k) * (DV + 1)
            tl.store(sw_ptr + ev[:, None] + offs_d[None, :], S_w, mask=mask_kd)
            tl.store(sw_ptr + ev + DV, z_w, mask=mask_k)
            tl.store(sr_ptr + ev[:, None] + offs_d[None, :], S_r, mask=mask_kd)
            tl.store(sr_ptr + ev + DV, z_r, mask=mask_k)
        tl.store(o_ptr + tok * DV + offs_d, o.to(o_ptr.dtype.element_ty), mask=mask_d)
        v, widx, w, ridx, r = v_n, widx_n, w_n, ridx_n, r_n
        tl.debug_barrier()  # the next token may gather rows stored by other threads of this program


@triton.jit
def _scan_bwd_kernel(go_ptr, v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, sw_ptr, sr_ptr, gS_ptr, gz_ptr,
                     dv_ptr, dww_ptr, drw_ptr, cu_ptr, T, H, M, K, DV, gamma, eps, proxy_eps,
                     BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, HAS_CU: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    b, h, start, end = _span(pid, cu_ptr, T, H, HAS_CU)
    offs_k, offs_d, mask_k, mask_d, mask_kd = _lanes(K, DV, BLOCK_K, BLOCK_D)
    gS_base = gS_ptr + pid * M * DV
    gz_base = gz_ptr + pid * M
    last = (b * T + end - 1) * H + h
    v, widx, w, ridx, r = _token_inputs(v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, last, start < end, K, DV,
                                        offs_k, offs_d, mask_k, mask_d)
    go, S_old, z_old, S_r, z_r = _saved_rows(go_ptr, sw_ptr, sr_ptr, last, start < end, K, DV, offs_k, offs_d,
                                             mask_k, mask_d)
    for i in tl.range(start, end):
        t = end - 1 - (i - start)
        tok = (b * T + t) * H + h
        more = t - 1 >= start
        v_n, widx_n, w_n, ridx_n, r_n = _token_inputs(v_ptr, widx_ptr, ww_ptr, ridx_ptr, rw_ptr, tok - H, more, K,
                                                      DV, offs_k, offs_d, mask_k, mask_d)
        go_n, S_old_n, z_old_n, S_r_n, z_r_n = _saved_rows(go_ptr, sw_ptr, sr_ptr, tok - H, more, K, DV, offs_k,
                                                           offs_d, mask_k, mask_d)
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


def _segment_fits(v, S0) -> bool:
    from .triton_segment import segment_fits

    return segment_fits(S0.shape[0], v.shape[2], S0.shape[2])


def _launch_fwd(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma, eps, save: bool, cu_seqlens=None):
    if SCAN_FORWARD == "segment" and _segment_fits(v, S0):
        from .triton_segment import launch_segment

        return launch_segment(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma, eps, save, cu_seqlens)[:4]
    if cu_seqlens is None and SCAN_FORWARD == "chunked":
        from .triton_chunked import launch_chunked

        return launch_chunked(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma, eps, save)
    B, T, H, DV = v.shape
    states = S0.shape[0]  # B, or the number of packed sequences
    K, M = write_idx.shape[-1], S0.shape[2]
    args = [t.contiguous() for t in (v, write_idx, write_w, read_idx, read_w)]
    S = S0.detach().to(torch.float32).contiguous().clone()
    z = z0.detach().to(torch.float32).contiguous().clone()
    o = torch.empty(B, T, H, DV, dtype=v.dtype, device=v.device)
    saved = [torch.empty(B * T * H * K * (DV + 1) if save else 1, dtype=torch.float32, device=v.device)
             for _ in range(2)]
    cu = cu_seqlens.to(torch.int64).contiguous() if cu_seqlens is not None else S
    _scan_fwd_kernel[(states * H,)](*args, S, z, o, *saved, cu, T, H, M, K, DV, float(gamma), float(eps),
                                    BLOCK_K=triton.next_power_of_2(K), BLOCK_D=triton.next_power_of_2(DV), SAVE=save,
                                    HAS_CU=cu_seqlens is not None, num_warps=FWD_WARPS)
    return o, S, z, saved


def pdma_scan_triton(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma: float, eps: float, cu_seqlens=None):
    """Forward: ``(o [B,T,H,dv] in v.dtype, S, z)`` in the state dtype (computed in fp32)."""
    o, S, z, _ = _launch_fwd(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma, eps, False, cu_seqlens)
    return o, S.to(S0.dtype), z.to(z0.dtype)


def pdma_scan_bwd_triton(grad_o, grad_S, grad_z, v, write_idx, write_w, read_idx, read_w, S0, z0,
                         gamma: float, eps: float, proxy_eps: float, cu_seqlens=None):
    """Backward: ``(dv, d_write_w, d_read_w, dS0, dz0)``, recomputing the forward with saved rows."""
    B, T, H, DV = v.shape
    K, M = write_idx.shape[-1], S0.shape[2]
    gS = grad_S.detach().to(torch.float32).contiguous().clone()
    gz = grad_z.detach().to(torch.float32).contiguous().clone()
    d_ww = torch.empty(write_w.shape, dtype=write_w.dtype, device=v.device)
    d_rw = torch.empty(read_w.shape, dtype=read_w.dtype, device=v.device)
    if SCAN_FORWARD == "segment" and _segment_fits(v, S0):
        from .triton_segment import launch_segment
        from .triton_segment_bwd import launch_segment_bwd

        _, _, _, (saved_w, saved_r), plan = launch_segment(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma,
                                                           eps, True, cu_seqlens)
        d_v = launch_segment_bwd(grad_o, v, write_w, read_w, plan, saved_w, saved_r, gS, gz, d_ww, d_rw, gamma, eps,
                                 proxy_eps)
        return d_v, d_ww, d_rw, gS.to(S0.dtype), gz.to(z0.dtype)
    _, _, _, (saved_w, saved_r) = _launch_fwd(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma, eps, True,
                                              cu_seqlens)
    d_v = torch.empty_like(v, memory_format=torch.contiguous_format)
    args = [t.contiguous() for t in (grad_o, v, write_idx, write_w, read_idx, read_w)]
    if cu_seqlens is None and SCAN_FORWARD == "chunked":
        from .triton_chunked_bwd import launch_chunked_bwd

        launch_chunked_bwd(grad_o, v, write_idx, write_w, read_idx, read_w, saved_w, saved_r, gS, gz, d_v, d_ww, d_rw,
                           gamma, eps, proxy_eps)
        return d_v, d_ww, d_rw, gS.to(S0.dtype), gz.to(z0.dtype)
    cu = cu_seqlens.to(torch.int64).contiguous() if cu_seqlens is not None else gS
    _scan_bwd_kernel[(S0.shape[0] * H,)](*args, saved_w, saved_r, gS, gz, d_v, d_ww, d_rw, cu, T, H, M, K, DV,
                                         float(gamma), float(eps), float(proxy_eps),
                                         BLOCK_K=triton.next_power_of_2(K), BLOCK_D=triton.next_power_of_2(DV),
                                         HAS_CU=cu_seqlens is not None, num_warps=BWD_WARPS)
    return d_v, d_ww, d_rw, gS.to(S0.dtype), gz.to(z0.dtype)
