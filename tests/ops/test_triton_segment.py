"""The segment-walk scan's own paths (``ops/memory/triton_segment.py``): event sorting, int64 keys, the
deterministic read-row forward, and the fall-back to the fused-recurrent kernels when the grid would be too big.
The main reference grid runs in ``test_triton_kernels.py`` and ``test_varlen.py`` (both scans)."""
import os

import pytest
import torch

from .memory_cases import scan_event_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("Triton on CPU needs TRITON_INTERPRET=1 before import (tests/conftest.py sets it)",
                allow_module_level=True)

CASE = (2, 9, 3, 2, 3, 5, 4, 0.7)  # B, T, H, U, d_p, d_v, K, gamma: M = 9, so slots repeat often


def _check_against_reference(seed=3):
    from ramnet.ops.memory import triton_scan
    from ramnet.ops.memory.naive import pdma_parallel, pdma_parallel_backward

    B, T, H, U, d_p, d_v, K, gamma = CASE
    v, widx, ww, ridx, rw, S0, z0, gen = scan_event_inputs(B, T, H, U, d_p, d_v, K, seed=seed)
    go, gS, gz = torch.randn(v.shape, generator=gen), torch.randn(S0.shape, generator=gen), torch.randn(z0.shape,
                                                                                                     generator=gen)
    d64 = lambda *ts: [t.double() for t in ts]
    ref = [*pdma_parallel(*d64(v), widx, ww.double(), ridx, rw.double(), *d64(S0, z0), gamma, 1e-6),
           *pdma_parallel_backward(*d64(go, gS, gz, v), widx, ww.double(), ridx, rw.double(), *d64(S0, z0), gamma,
                                   1e-6, 1e-3)]
    on = lambda *ts: [t.to(DEVICE) for t in ts]
    got = [*triton_scan.pdma_scan_triton(*on(v, widx, ww, ridx, rw, S0, z0), gamma, 1e-6),
           *triton_scan.pdma_scan_bwd_triton(*on(go, gS, gz, v, widx, ww, ridx, rw, S0, z0), gamma, 1e-6, 1e-3)]
    for name, g, r in zip(["o", "S", "z", "dv", "dww", "drw", "dS0", "dz0"], got, ref):
        torch.testing.assert_close(g.cpu().double(), r, rtol=2e-5, atol=2e-5, msg=lambda m: f"{name}: {m}")


@pytest.fixture
def segment(monkeypatch):
    from ramnet.ops.memory import triton_scan, triton_segment

    monkeypatch.setattr(triton_scan, "SCAN_FORWARD", "segment")
    return triton_segment


def test_sorted_events_partition_by_state_slot_time(segment):
    gen = torch.Generator().manual_seed(0)
    B, T, H, K, M = 2, 7, 3, 2, 5
    idx = torch.stack([torch.randperm(M, generator=gen)[:K] for _ in range(B * T * H)]).view(B, T, H, K)
    states = segment.state_ids(B, T, H, None, "cpu")
    keys, order, bounds = segment.sorted_events(idx, states, M, B * H * M)
    assert keys.dtype == torch.int32 and bool((keys[1:] > keys[:-1]).all())  # unique and increasing
    assert bounds[0] == 0 and bounds[-1] == keys.numel() and bool((bounds[1:] >= bounds[:-1]).all())
    b, t, h, k = torch.unravel_index(order, (B, T, H, K))
    segments = (b * H + h) * M + idx[b, t, h, k]
    for g in range(B * H * M):  # segment g owns exactly its events, in time order
        lo, hi = int(bounds[g]), int(bounds[g + 1])
        assert bool((segments[lo:hi] == g).all()) and bool((t[lo:hi][1:] > t[lo:hi][:-1]).all())
    assert int((segments == torch.arange(B * H * M).repeat_interleave(torch.diff(bounds))).sum()) == order.numel()


def test_int64_keys_match_reference(segment, monkeypatch):
    monkeypatch.setattr(segment, "INT32_KEYS_BELOW", 0)
    _check_against_reference()


def test_deterministic_read_rows_match_reference(segment, monkeypatch):
    monkeypatch.setattr(segment, "ATOMIC_READ", False)
    _check_against_reference()


def test_too_many_segments_falls_back_to_fused_recurrent(segment, monkeypatch):
    monkeypatch.setattr(segment, "MAX_SEGMENTS", 1)

    def refuse(*args, **kwargs):
        raise AssertionError("the segment walk ran past MAX_SEGMENTS")

    monkeypatch.setattr(segment, "launch_segment", refuse)
    _check_against_reference()
