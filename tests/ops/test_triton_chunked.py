"""The experimental chunked scan forward (``RAMNET_SCAN=chunked``) against the float64 parallel reference, with
sequences that cross chunk boundaries, K = 1, K = M, gamma 0 and a written weight of exactly 1."""
import os

import pytest
import torch

from .memory_cases import scan_event_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("Triton on CPU needs TRITON_INTERPRET=1 before import (tests/conftest.py sets it)",
                allow_module_level=True)

# B, T, H, U, d_p, d_v, K, gamma, chunk
CASES = [(2, 7, 3, 2, 4, 5, 3, 1.0, 8), (1, 19, 2, 2, 2, 6, 4, 0.5, 8), (1, 11, 1, 2, 3, 3, 9, 2.0, 4),
         (2, 13, 2, 1, 2, 4, 1, 0.0, 8), (1, 17, 2, 3, 2, 16, 2, 1.0, 2)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_chunked_forward_matches_reference(case, dtype):
    from ramnet.ops.memory.naive import pdma_parallel
    from ramnet.ops.memory.triton_chunked import pdma_scan_chunked_triton

    B, T, H, U, d_p, d_v, K, gamma, chunk = case
    v, widx, ww, ridx, rw, S0, z0, _ = scan_event_inputs(B, T, H, U, d_p, d_v, K, seed=T * 5 + K)
    v = v.to(dtype)
    if K == 1:
        ww = torch.ones_like(ww)  # w = 1: the decay (1 - w)^gamma is 0 (a full overwrite)
    ref = pdma_parallel(v.double(), widx, ww.double(), ridx, rw.double(), S0.double(), z0.double(), gamma, 1e-6)
    on = lambda *ts: [t.to(DEVICE) for t in ts]
    got = pdma_scan_chunked_triton(*on(v, widx, ww.to(dtype), ridx, rw.to(dtype), S0, z0), gamma, 1e-6, chunk=chunk)
    tol = 2e-5 if dtype == torch.float32 else 3e-2
    for name, g, r in zip(["o", "S", "z"], got, ref):
        torch.testing.assert_close(g.cpu().double(), r, rtol=tol, atol=tol, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_chunked_backward_matches_reference(case, monkeypatch):
    """With RAMNET_SCAN=chunked the backward recomputes the forward chunked (saving the same rows as the recurrent
    one) and runs the chunked backward kernel: every gradient, the initial-state ones included, equals the
    float64 reference, with random upstream gradients on o, S and z."""
    from ramnet.ops.memory import triton_scan
    from ramnet.ops.memory.naive import pdma_parallel_backward

    monkeypatch.setattr(triton_scan, "SCAN_FORWARD", "chunked")
    B, T, H, U, d_p, d_v, K, gamma, _ = case
    v, widx, ww, ridx, rw, S0, z0, gen = scan_event_inputs(B, T, H, U, d_p, d_v, K, seed=T * 7 + K)
    if K == 1:
        ww = torch.ones_like(ww) * 0.999  # near a full overwrite: the proxy derivative must stay finite
    go, gS, gz = (torch.randn(t.shape, generator=gen) for t in (v, S0, z0))
    d64 = lambda *ts: [t.double() for t in ts]
    ref = pdma_parallel_backward(*d64(go, gS, gz, v), widx, ww.double(), ridx, rw.double(), *d64(S0, z0), gamma,
                                 1e-6, 1e-3)
    on = lambda *ts: [t.to(DEVICE) for t in ts]
    got = triton_scan.pdma_scan_bwd_triton(*on(go, gS, gz, v, widx, ww, ridx, rw, S0, z0), gamma, 1e-6, 1e-3)
    for name, g, r in zip(["dv", "dww", "drw", "dS0", "dz0"], got, ref):
        torch.testing.assert_close(g.cpu().double(), r, rtol=5e-5, atol=5e-5, msg=lambda m: f"{name}: {m}")
