"""Segment-walk forward of ``ramnet::pdma_scan`` (the ``segment`` scan backend, first in the table): parallel
over (state, slot) instead of (state) alone.

A slot's row changes only when a token writes it, so each (sequence, head, slot) is an independent scalar-gated
recurrence over its own write events, and a read of that slot at token t sees the row after the last write at or
before t. The events are sorted once by the key ``((state * M + slot) * T + t)`` (``torch.sort``, one per
direction), and ``searchsorted`` gives every (state, slot) its range of write and read events. One Triton program
per (state, slot) then walks its events in time order with the row in registers and applies the writes. When the
backward needs them, it stores each write's pre-write row and each read's post-write row at the event's index, in
the saved-row layout (``layout.py``), and a second kernel sums each token's K read rows into ``o``. Otherwise
each read adds its term of ``o`` with fp32 atomics (rows again under ``torch.use_deterministic_algorithms``).

So there are ``B * H * M`` programs, each of about ``2 T K / M`` events, instead of ``B * H`` programs of ``T``
dependent token steps. No M-sized work per token: the state is read and written once.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..common import sequence_ids
from .layout import saved_rows_buffer
from .segment_keys import INT32_KEYS_BELOW, SENTINELS
from .triton_decay import decay
from .triton_layout import event_row, event_rows, load_row, store_row

def state_ids(B: int, T: int, H: int, cu_seqlens, device) -> torch.Tensor:
    """``[B, T, H]`` int64: the state row (``sequence * H + head``) each token of each head updates."""
    heads = torch.arange(H, device=device).view(1, 1, H)
    if cu_seqlens is None:
        return torch.arange(B, device=device).view(B, 1, 1) * H + heads
    return sequence_ids(T, cu_seqlens.to(device)).view(1, T, 1) * H + heads


def key_base(B: int, T: int, H: int, M: int, cu_seqlens, device) -> torch.Tensor:
    """``[B, T, H, 1]`` int64: ``state * M * T + t``, so that the sort key of an event on ``slot`` is
    ``base + slot * T = ((state * M + slot) * T + t)``. Built from strided ``arange``s: few launches, since at
    small shapes the host's launch cost bounds the op."""
    time = torch.arange(T, device=device).view(1, T, 1, 1)
    if cu_seqlens is None:
        stride = H * M * T
        states = torch.arange(0, B * stride, stride, device=device).view(B, 1, 1, 1) + \
            torch.arange(0, stride, M * T, device=device).view(1, 1, H, 1)
    else:
        states = state_ids(B, T, H, cu_seqlens, device).unsqueeze(-1) * (M * T)
    return states + time


def sorted_events(idx: torch.Tensor, base: torch.Tensor, boundaries: torch.Tensor):
    """Sort the events of ``idx [B, T, H, K]`` by (state, slot, time) (``base``: :func:`key_base`). Returns
    ``(keys, order, bounds)``: sorted keys (``boundaries.dtype``), the event index (flat ``[B, T, H, K]``) of
    each, and ``bounds [n_segments + 1]`` (``searchsorted`` of ``boundaries = g * T``) so that segment
    ``g = state * M + slot`` owns sorted positions ``bounds[g]:bounds[g + 1]``."""
    keys, order = torch.sort(base.add(idx, alpha=idx.shape[1]).flatten().to(boundaries.dtype))
    return keys, order, torch.searchsorted(keys, boundaries)


@triton.jit
def _write(e, S, z, v_ptr, ww_ptr, sw_ptr, swz_ptr, K, DV, gamma, offs_d, mask_d, SAVE: tl.constexpr):
    """Apply write event ``e`` to the slot's row ``(S, z)``; with ``SAVE``, store the pre-write row first (the
    backward's). Returns the new ``(S, z)``."""
    w = tl.load(ww_ptr + e).to(tl.float32)
    v = tl.load(v_ptr + (e // K) * DV + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if SAVE:
        row, row_z = event_row(sw_ptr, swz_ptr, e, DV, offs_d)
        store_row(row, S, mask_d)
        tl.store(row_z, z)
    a = decay(w, gamma)
    return a * S + w * v, a * z + w


@triton.jit
def _segment_fwd_kernel(v_ptr, ww_ptr, wkey_ptr, word_ptr, wb_ptr, rkey_ptr, rord_ptr, rb_ptr, S0_ptr, z0_ptr,
                        S_ptr, z_ptr, sw_ptr, swz_ptr, sr_ptr, srz_ptr, rw_ptr, o_ptr, K, DV, gamma, eps,
                        BLOCK_D: tl.constexpr, SAVE: tl.constexpr, ROWS: tl.constexpr, NO_READ: tl.constexpr,
                        NO_WRITE: tl.constexpr):
    g = tl.program_id(0).to(tl.int64)  # segment = state * M + slot
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < DV
    S = tl.load(S0_ptr + g * DV + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    z = tl.load(z0_ptr + g).to(tl.float32)
    w_end = tl.load(wb_ptr + g + 1)
    r_begin = tl.load(rb_ptr + g)
    r_end = tl.load(rb_ptr + g + 1)
    iw = tl.load(wb_ptr + g)
    kw = tl.load(wkey_ptr + iw, mask=iw < w_end, other=NO_WRITE)
    for ir in tl.range(r_begin, r_end + 1):  # the extra pass applies the writes after the last read
        kr = tl.load(rkey_ptr + ir, mask=ir < r_end, other=NO_READ)
        while kw <= kr:  # writes at or before this read's token (keys order (segment, time))
            S, z = _write(tl.load(word_ptr + iw), S, z, v_ptr, ww_ptr, sw_ptr, swz_ptr, K, DV, gamma, offs_d, mask_d,
                          SAVE)
            iw += 1
            kw = tl.load(wkey_ptr + iw, mask=iw < w_end, other=NO_WRITE)
        if ir < r_end:
            er = tl.load(rord_ptr + ir)
            if ROWS:  # the post-write read row (the backward's, or summed into o by _read_out_kernel)
                row, row_z = event_row(sr_ptr, srz_ptr, er, DV, offs_d)
                store_row(row, S, mask_d)
                tl.store(row_z, z)
            else:  # this read's term of o, added in fp32 by each of the token's K read programs
                r = tl.load(rw_ptr + er).to(tl.float32)
                tl.atomic_add(o_ptr + (er // K) * DV + offs_d, (r / (z + eps)) * S, mask=mask_d)
    tl.store(S_ptr + g * DV + offs_d, S, mask=mask_d)
    tl.store(z_ptr + g, z)


@triton.jit
def _write_rows_kernel(v_ptr, ww_ptr, word_ptr, wb_ptr, S0_ptr, z0_ptr, sw_ptr, swz_ptr, K, DV, gamma,
                       BLOCK_D: tl.constexpr):
    """The backward's recompute when it derives the read rows (``SegmentScan(derive_read_rows=True)``): walk only
    the segment's writes and store each pre-write row. Half the events of the full walk, and no read rows."""
    g = tl.program_id(0).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < DV
    S = tl.load(S0_ptr + g * DV + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    z = tl.load(z0_ptr + g).to(tl.float32)
    for iw in tl.range(tl.load(wb_ptr + g), tl.load(wb_ptr + g + 1)):
        S, z = _write(tl.load(word_ptr + iw), S, z, v_ptr, ww_ptr, sw_ptr, swz_ptr, K, DV, gamma, offs_d, mask_d,
                      True)


@triton.jit
def _read_out_kernel(sr_ptr, srz_ptr, rw_ptr, o_ptr, K, DV, eps, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    """``o[tok] = sum_k r_k S_k / (z_k + eps)`` from the post-write read rows stored by the walk."""
    tok = tl.program_id(0).to(tl.int64)
    offs_k = tl.arange(0, BLOCK_K)
    offs_d = tl.arange(0, BLOCK_D)
    mask_k = offs_k < K
    mask_d = offs_d < DV
    rows, rows_z = event_rows(sr_ptr, srz_ptr, tok * K + offs_k, DV, offs_d)
    S = load_row(rows, mask_k[:, None] & mask_d[None, :])
    z = tl.load(rows_z, mask=mask_k, other=1.0)
    r = tl.load(rw_ptr + tok * K + offs_k, mask=mask_k, other=0.0).to(tl.float32)
    o = tl.sum((r / (z + eps))[:, None] * S, axis=0)
    tl.store(o_ptr + tok * DV + offs_d, o.to(o_ptr.dtype.element_ty), mask=mask_d)


def segment_plan(write_idx, read_idx, M: int, n_states: int, cu_seqlens=None,
                 int32_keys_below: int = INT32_KEYS_BELOW):
    """The sorted write and read events (:func:`sorted_events`) of one scan; the backward reuses them."""
    B, T, H, _ = write_idx.shape
    device = write_idx.device
    n_segments = n_states * H * M
    base = key_base(B, T, H, M, cu_seqlens, device)
    # int32 keys where they fit: a radix sort of half the bits
    dtype = torch.int32 if n_segments * T < int32_keys_below else torch.int64
    boundaries = torch.arange(0, (n_segments + 1) * T, T, dtype=dtype, device=device)
    return sorted_events(write_idx, base, boundaries), sorted_events(read_idx, base, boundaries)


def launch_segment(a, save: bool, *, num_warps: int = 1, atomic_read: bool = True,
                   int32_keys_below: int = INT32_KEYS_BELOW, rows_dtype: str = "fp32", output: bool = True):
    """Forward walk over ``a`` (a ``ScanArgs``): ``(o, S fp32, z fp32, [saved write rows, saved read rows], plan)``.
    ``atomic_read``: without saved rows, sum ``o`` with fp32 atomics instead of storing every read row (less
    memory and traffic; the rows are kept under ``torch.use_deterministic_algorithms``). ``output=False`` (the
    backward's recompute, which needs only the saved rows) skips the read-out of ``o`` and returns None for it."""
    B, T, H, DV = a.v.shape
    K, M = a.write_idx.shape[-1], a.S0.shape[2]
    plan = segment_plan(a.write_idx, a.read_idx, M, a.S0.shape[0], a.cu_seqlens, int32_keys_below)
    (wkey, word, wb), (rkey, rord, rb) = plan
    v, write_w, read_w = a.v.contiguous(), a.write_w.contiguous(), a.read_w.contiguous()
    S = torch.empty(a.S0.shape, dtype=torch.float32, device=v.device)
    z = torch.empty(a.z0.shape, dtype=torch.float32, device=v.device)
    events = B * T * H * K
    rows = save or not atomic_read or torch.are_deterministic_algorithms_enabled()
    sw = saved_rows_buffer(events, DV, v.device, save, rows_dtype)
    sr = saved_rows_buffer(events, DV, v.device, rows, rows_dtype)
    o_acc = torch.zeros(1 if rows else B * T * H * DV, dtype=torch.float32, device=v.device)
    block_d = max(triton.next_power_of_2(DV), 16)
    no_read, no_write = SENTINELS[wkey.dtype]
    _segment_fwd_kernel[(wb.numel() - 1,)](v, write_w, wkey, word, wb, rkey, rord, rb, a.S0.contiguous(),
                                           a.z0.contiguous(), S, z, *sw, *sr, read_w, o_acc, K, DV, float(a.gamma),
                                           float(a.eps), BLOCK_D=block_d, SAVE=save, ROWS=rows, NO_READ=no_read,
                                           NO_WRITE=no_write, num_warps=num_warps)
    if not rows:
        return o_acc.view(B, T, H, DV).to(v.dtype), S, z, [sw, sr], plan
    if not output:
        return None, S, z, [sw, sr], plan
    o = torch.empty(B, T, H, DV, dtype=v.dtype, device=v.device)
    _read_out_kernel[(B * T * H,)](*sr, read_w, o, K, DV, float(a.eps), BLOCK_K=triton.next_power_of_2(K),
                                   BLOCK_D=block_d)
    return o, S, z, [sw, sr], plan


def launch_write_rows(a, *, num_warps: int = 1, int32_keys_below: int = INT32_KEYS_BELOW, rows_dtype: str = "fp32"):
    """The pre-write rows of every write event of ``a`` (a ``ScanArgs``) and the plan: ``(saved write rows,
    plan)``. The backward that derives its read rows needs nothing else."""
    B, T, H, DV = a.v.shape
    K, M = a.write_idx.shape[-1], a.S0.shape[2]
    plan = segment_plan(a.write_idx, a.read_idx, M, a.S0.shape[0], a.cu_seqlens, int32_keys_below)
    (_, word, wb), _ = plan
    sw = saved_rows_buffer(B * T * H * K, DV, a.v.device, True, rows_dtype)
    _write_rows_kernel[(wb.numel() - 1,)](a.v.contiguous(), a.write_w.contiguous(), word, wb, a.S0.contiguous(),
                                          a.z0.contiguous(), *sw, K, DV, float(a.gamma),
                                          BLOCK_D=max(triton.next_power_of_2(DV), 16), num_warps=num_warps)
    return sw, plan
