"""The Triton kernels against the PyTorch references. On CPU they run under TRITON_INTERPRET=1 (set by conftest)
at tiny fp32/fp16 shapes; on a GPU the same tests run compiled."""
import os

import pytest
import torch

from ramnet.ops.address.naive import address_naive, factor_log_probs, weights_at

from .memory_cases import scan_backend, scan_event_inputs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("Triton on CPU needs TRITON_INTERPRET=1 before import (tests/conftest.py sets it)",
                allow_module_level=True)

ADDRESS_CASES = [(1, 4, 3), (2, 4, 5), (3, 3, 27), (5, 4, 8), (4, 2, 16), (2, 8, 16), (6, 2, 1), (3, 5, 7),
                 (4, 4, 32)]  # the full 128-candidate tile: the K=32 rows of the MQAR sweeps


@pytest.mark.parametrize("rows", [1, 3, 4])
def test_address_kernel_rows_per_program_equal_one_row_per_program(rows):
    """``rows_per_program`` only regroups rows into programs: bit-identical outputs, also for a row count that is
    not a multiple (the last program's extra rows store nothing)."""
    from ramnet.ops.address.triton import address_triton

    x = torch.randn(7, 12, generator=torch.Generator().manual_seed(rows)).to(DEVICE)
    w1, i1 = address_triton(x, 3, 4, 1.0)
    w, i = address_triton(x, 3, 4, 1.0, rows_per_program=rows)
    assert torch.equal(w, w1) and torch.equal(i, i1)


def test_rows_per_program_knob_is_checked():
    from ramnet.ops.address.backends import TritonAddress

    with pytest.raises(ValueError, match=r"rows_per_program must be an int in \[1, 16\]"):
        TritonAddress(rows_per_program=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("U,d_p,K", ADDRESS_CASES, ids=[f"U{u}-dp{p}-K{k}" for u, p, k in ADDRESS_CASES])
def test_address_kernel_matches_reference(U, d_p, K, dtype):
    from ramnet.ops.address.triton import address_triton

    gen = torch.Generator().manual_seed(U * 31 + K)
    x = (torch.randn(3, 2, U * d_p, generator=gen) * 2).to(dtype)
    w, idx = address_triton(x.to(DEVICE), U, K, 0.9)
    idx_ref, w_ref = address_naive(x.float(), U, K, 0.9)
    assert idx.shape == idx_ref.shape and w.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 2e-3
    # sorted weights agree; indices agree except where two products are equal within rounding (a near-tie may
    # order either way), and then the kernel's weight must still be the true product weight of its own slot
    torch.testing.assert_close(w.cpu().float(), w_ref, rtol=tol, atol=tol)
    true_w = weights_at(factor_log_probs(x.float(), U, 0.9), idx.cpu())
    torch.testing.assert_close(w.cpu().float(), true_w, rtol=tol, atol=tol)
    differs = idx.cpu() != idx_ref
    w_ext = address_naive(x.float(), U, min(K + 1, d_p**U), 0.9)[1]  # include the first weight left out
    gaps = w_ext[..., :-1] - w_ext[..., 1:]
    near_tie = (gaps.min(-1).values < tol) if gaps.shape[-1] else torch.zeros(w_ext.shape[:-1], dtype=torch.bool)
    assert (~differs.any(-1) | near_tie).all(), "indices differ away from near-ties"


def test_triton_address_backend_refuses_geometries_beyond_its_tile():
    from ramnet.ops.address.backends import AddressProblem, TritonAddress

    problem = AddressProblem("cuda", torch.float32, num_factors=2, d_p=8, top_k=32, num_slots=64)
    assert "exceed the register tile 128" in TritonAddress().supports(problem)
    assert TritonAddress().supports(AddressProblem("cuda", torch.float32, 2, 8, 8, 64)) is None
    assert "fp64" in TritonAddress().supports(AddressProblem("cuda", torch.float64, 2, 8, 8, 64))
    assert "32-bit" in TritonAddress().supports(AddressProblem("cuda", torch.float32, 16, 4, 4, 4**16))


def test_address_kernel_tie_rule_and_nan_policy():
    from ramnet.ops.address.triton import address_triton

    w, idx = address_triton(torch.zeros(2, 12, device=DEVICE), 3, 6, 1.0)
    assert idx.cpu().tolist() == [[0, 1, 2, 3, 4, 5]] * 2
    x = torch.randn(2, 12)
    x[0, 3] = float("nan")
    w, idx = address_triton(x.to(DEVICE), 3, 4, 1.0)
    assert ((idx >= 0) & (idx < 64)).all() and torch.isnan(w[0]).all() and torch.isfinite(w[1]).all()


SCAN_CASES = [(2, 7, 3, 2, 4, 5, 3, 1.0), (1, 9, 2, 2, 2, 6, 4, 0.5), (1, 5, 1, 2, 3, 3, 9, 2.0), (2, 6, 2, 1, 2, 4, 1, 0.0)]


@pytest.mark.parametrize("scan", ["recurrent", "segment", "segment-saved", "segment-heads"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", SCAN_CASES, ids=["-".join(map(str, c)) for c in SCAN_CASES])
def test_scan_kernels_match_reference(case, dtype, scan):
    """Fused-recurrent and segment-walk backends, forward and backward, against the float64 parallel form, with
    random grads on every output (the final state included). The backends are called directly: on CPU their
    ``supports`` refuses (no CUDA), and the interpreter runs their kernels here."""
    from ramnet.ops.memory.backends import SCAN, ScanArgs, ScanProblem
    from ramnet.ops.memory.naive import pdma_parallel, pdma_parallel_backward

    B, T, H, U, d_p, d_v, K, gamma = case
    v, widx, ww, ridx, rw, S0, z0, gen = scan_event_inputs(B, T, H, U, d_p, d_v, K, seed=T * 3 + K)
    v = v.to(dtype)
    go, gS, gz = torch.randn(B, T, H, d_v, generator=gen), torch.randn(S0.shape, generator=gen), torch.randn(z0.shape, generator=gen)
    d64 = lambda *ts: [t.double() for t in ts]
    ref_fwd = pdma_parallel(*d64(v), widx, ww.double(), ridx, rw.double(), *d64(S0, z0), gamma, 1e-6)
    ref_bwd = pdma_parallel_backward(*d64(go, gS, gz, v), widx, ww.double(), ridx, rw.double(), *d64(S0, z0),
                                     gamma, 1e-6, 1e-3)
    on = lambda *ts: [t.to(DEVICE) for t in ts]
    args = ScanArgs(*on(v, widx, ww.to(dtype), ridx, rw.to(dtype), S0, z0), None, gamma, 1e-6, 1e-3)
    backend, problem = scan_backend(scan), ScanProblem.of(args)
    got_fwd = backend.forward(problem, args)
    got_bwd = backend.backward(problem, args, *on(go.to(dtype), gS, gz))
    tol = 2e-5 if dtype == torch.float32 else 3e-2
    for name, got, ref in zip(["o", "S", "z", "dv", "dww", "drw", "dS0", "dz0"], [*got_fwd, *got_bwd], [*ref_fwd, *ref_bwd]):
        torch.testing.assert_close(got.cpu().double(), ref, rtol=tol, atol=tol, msg=lambda m: f"{name}: {m}")


FUSED_CASES = [(2, 3, 2, 4, 5, 3), (1, 2, 3, 3, 60, 27), (3, 1, 5, 4, 7, 8), (2, 2, 2, 4, 16, 1)]


@pytest.mark.parametrize("case", FUSED_CASES, ids=["-".join(map(str, c)) for c in FUSED_CASES])
def test_fused_decode_kernel_matches_reference(case):
    """One launch per token (addresses + CAPE + PDMA) against the composition of the references."""
    from ramnet.ops.memory.triton_step import ram_step_triton
    from ramnet.ops.step_op import ram_step_reference

    B, H, U, d_p, d_v, K = case
    M = d_p**U
    gen = torch.Generator().manual_seed(B * 11 + K)
    q, k = (torch.randn(B, H, U * d_p, generator=gen) * 2 for _ in range(2))
    v = torch.randn(B, H, d_v, generator=gen)
    S, z = torch.randn(B, H, M, d_v, generator=gen), torch.rand(B, H, M, generator=gen) + 0.1
    position = torch.arange(B) * 7 + M - 2  # positions past M exercise the modular shift
    cape = torch.arange(H) % 2 == 0
    S_ref, z_ref = S.clone(), z.clone()
    o_ref = ram_step_reference(q, k, v, S_ref, z_ref, position, cape, U, K, 0.7, 0.9, 1e-6)
    S_k, z_k = S.to(DEVICE), z.to(DEVICE)
    o = ram_step_triton(*(t.to(DEVICE) for t in (q, k, v)), S_k, z_k, position.to(DEVICE), cape.to(DEVICE),
                        U, K, 0.7, 0.9, 1e-6)
    torch.testing.assert_close(o.cpu(), o_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(S_k.cpu(), S_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(z_k.cpu(), z_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("U,d_p,K", ADDRESS_CASES, ids=[f"U{u}-dp{p}-K{k}" for u, p, k in ADDRESS_CASES])
def test_address_backward_kernel_matches_reference(U, d_p, K, dtype):
    from ramnet.ops.address.naive import address_backward_naive
    from ramnet.ops.address.triton_bwd import address_backward_triton

    gen = torch.Generator().manual_seed(U * 17 + K)
    x = (torch.randn(3, 2, U * d_p, generator=gen) * 2).to(dtype)
    idx, w = address_naive(x.float(), U, K, 0.7)
    grad_w = torch.randn(w.shape, generator=gen)
    got = address_backward_triton(grad_w.to(dtype).to(DEVICE), x.to(DEVICE), idx.to(DEVICE), w.to(dtype).to(DEVICE),
                                  U, 0.7)
    ref = address_backward_naive(grad_w.to(dtype).double(), x.double(), idx, w.to(dtype).double(), U, 0.7)
    assert got.shape == x.shape and got.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 3e-3
    torch.testing.assert_close(got.cpu().double(), ref, rtol=tol, atol=tol)
