"""Segment-walk backward of ``ramnet::pdma_scan`` (the ``segment`` scan backend): one program per (state, slot)
walks its events in reverse time order (``triton_segment.py`` sorts them) with the gradient of the slot's row in
registers. It starts from the final-state gradient; a read adds ``r go / (z + eps)`` (and its ``z`` term) and
stores ``d read_w``; a write stores ``d write_w`` (the proxy decay derivative on the saved pre-write row, as the
other kernels), adds ``w G`` to its token's ``dv`` and multiplies the gradient by the decay. What is left is the
initial-state gradient.

``dv`` sums K writes of a token from K programs, so it is accumulated with fp32 atomics: like ``index_add_`` on
CUDA, its last bits can differ from run to run. Under ``torch.use_deterministic_algorithms`` each write stores its
term in a row of its own instead (``B T H K d_v`` fp32, K times ``dv``'s memory), and ``torch.sum`` adds the K rows
in a fixed order: the same inputs then give the same bits, as the forward's deterministic read rows do.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_decay import decay, proxy_decay_grad
from .triton_layout import event_row, load_row


@triton.jit
def _segment_bwd_kernel(go_ptr, v_ptr, ww_ptr, rw_ptr, wkey_ptr, word_ptr, wb_ptr, rkey_ptr, rord_ptr, rb_ptr,
                        sw_ptr, swz_ptr, sr_ptr, srz_ptr, S0_ptr, z0_ptr, gS_ptr, gz_ptr, dv_ptr, dww_ptr, drw_ptr,
                        K, DV, gamma, eps, proxy_eps, BLOCK_D: tl.constexpr, DERIVE_READS: tl.constexpr,
                        DV_PER_WRITE: tl.constexpr):
    g = tl.program_id(0).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < DV
    G = tl.load(gS_ptr + g * DV + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    Gz = tl.load(gz_ptr + g).to(tl.float32)
    w_begin = tl.load(wb_ptr + g)
    r_begin = tl.load(rb_ptr + g)
    r_end = tl.load(rb_ptr + g + 1)
    iw = tl.load(wb_ptr + g + 1) - 1
    kw = tl.load(wkey_ptr + iw, mask=iw >= w_begin, other=-2)  # -2: below the final pass's read sentinel
    if DERIVE_READS:  # the row a read saw is the row after the latest write at or before it (or S0)
        S0_row = tl.load(S0_ptr + g * DV + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        z0_row = tl.load(z0_ptr + g).to(tl.float32)
        S_seen = S0_row
        z_seen = z0_row
        seen_iw = w_begin - 2  # no write yet: the first read derives its row
    for j in tl.range(0, r_end - r_begin + 1):  # reads in reverse; the extra pass takes the writes before them
        ir = r_end - 1 - j
        kr = tl.load(rkey_ptr + ir, mask=ir >= r_begin, other=-1)
        while kw > kr:  # writes after this read's token (keys order (segment, time); same token: write first)
            e = tl.load(word_ptr + iw)
            w = tl.load(ww_ptr + e).to(tl.float32)
            v = tl.load(v_ptr + (e // K) * DV + offs_d, mask=mask_d, other=0.0).to(tl.float32)
            row, row_z = event_row(sw_ptr, swz_ptr, e, DV, offs_d)
            S_pre = load_row(row, mask_d)
            z_pre = tl.load(row_z)
            dproxy = proxy_decay_grad(w, gamma, proxy_eps)
            d_a = tl.sum(G * S_pre, axis=0) + Gz * z_pre
            d_w = tl.sum(G * v, axis=0) + Gz + d_a * dproxy
            tl.store(dww_ptr + e, d_w.to(dww_ptr.dtype.element_ty))
            if DV_PER_WRITE:  # one row per write event: each is stored once, summed over K afterwards
                tl.store(dv_ptr + e * DV + offs_d, w * G, mask=mask_d)
            else:
                tl.atomic_add(dv_ptr + (e // K) * DV + offs_d, w * G, mask=mask_d)
            a = decay(w, gamma)
            G = a * G
            Gz = a * Gz
            iw -= 1
            kw = tl.load(wkey_ptr + iw, mask=iw >= w_begin, other=-2)
        if ir >= r_begin:
            er = tl.load(rord_ptr + ir)
            r = tl.load(rw_ptr + er).to(tl.float32)
            go = tl.load(go_ptr + (er // K) * DV + offs_d, mask=mask_d, other=0.0).to(tl.float32)
            if DERIVE_READS:
                if iw != seen_iw:  # reads between the same two writes share the row
                    has_w = iw >= w_begin
                    e_w = tl.load(word_ptr + iw, mask=has_w, other=0)
                    w_w = tl.load(ww_ptr + e_w, mask=has_w, other=0.0).to(tl.float32)
                    v_w = tl.load(v_ptr + (e_w // K) * DV + offs_d, mask=mask_d & has_w, other=0.0).to(tl.float32)
                    pre, pre_z = event_row(sw_ptr, swz_ptr, e_w, DV, offs_d)
                    a_w = decay(w_w, gamma)
                    S_seen = tl.where(has_w, a_w * load_row(pre, mask_d & has_w) + w_w * v_w, S0_row)
                    z_seen = tl.where(has_w, a_w * tl.load(pre_z, mask=has_w, other=0.0) + w_w, z0_row)
                    seen_iw = iw
                S_r = S_seen
                denom = z_seen + eps
            else:
                row, row_z = event_row(sr_ptr, srz_ptr, er, DV, offs_d)
                S_r = load_row(row, mask_d)
                denom = tl.load(row_z) + eps
            dot = tl.sum(go * S_r, axis=0)
            tl.store(drw_ptr + er, (dot / denom).to(drw_ptr.dtype.element_ty))
            G += (r / denom) * go
            Gz += -r * dot / (denom * denom)
    tl.store(gS_ptr + g * DV + offs_d, G, mask=mask_d)  # in place: the final-state gradient becomes dS0
    tl.store(gz_ptr + g, Gz)


def launch_segment_bwd(grad_o, v, write_w, read_w, plan, saved_w, saved_r, gS, gz, d_ww, d_rw, gamma, eps,
                       proxy_eps, num_warps: int = 1, initial_state=None, deterministic: bool | None = None):
    """Gradients into ``gS, gz`` (fp32, in place: final-state gradients in, initial-state gradients out),
    ``d_ww, d_rw``; returns ``dv`` in fp32 (the caller casts it after freeing the saved rows: by default the two
    copies of ``dv`` and the rows never coexist). ``saved_r=None``: derive each read's row from the saved
    write rows and ``initial_state = (S0, z0)`` (``launch_write_rows``) instead of reading saved read rows.
    ``deterministic`` (default: ``torch.are_deterministic_algorithms_enabled()``): sum ``dv`` without atomics, from a
    ``B T H K d_v`` fp32 buffer that does coexist with the rows (``SegmentScan.saved_row_bytes`` counts it)."""
    derive = saved_r is None
    if derive and initial_state is None:
        raise ValueError("deriving the read rows needs the initial state (S0, z0)")
    S0, z0 = initial_state if derive else (gS, gz)  # unread placeholders when the read rows are saved
    (wkey, word, wb), (rkey, rord, rb) = plan
    B, T, H, DV = v.shape
    K = write_w.shape[-1]
    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    # zeros: a write event that no program visits (none today) must add nothing, as with the atomics
    dv = torch.zeros(B, T, H, K if deterministic else 1, DV, dtype=torch.float32, device=v.device)
    _segment_bwd_kernel[(wb.numel() - 1,)](grad_o.contiguous(), v.contiguous(), write_w.contiguous(),
                                           read_w.contiguous(), wkey, word, wb, rkey, rord, rb, *saved_w,
                                           *(saved_w if derive else saved_r), S0.contiguous(), z0.contiguous(),
                                           gS, gz, dv, d_ww, d_rw, K, DV, float(gamma), float(eps),
                                           float(proxy_eps), BLOCK_D=max(triton.next_power_of_2(DV), 16),
                                           DERIVE_READS=derive, DV_PER_WRITE=deterministic,
                                           num_warps=num_warps)
    return dv.sum(3) if deterministic else dv.squeeze(3)
