"""``cu_seqlens``: N packed sequences equal N separate calls (outputs, final states and every gradient)."""
import os

import pytest
import torch

import ramnet.ops as R

from .memory_cases import make_inputs, scan_backend

CU = [[0, 5, 5, 12, 20], [0, 20], [0, 1, 2, 3, 20]]


def _packed_vs_separate(cu, device, dtype, tol):
    T, H, U, d_p, d_v, K = cu[-1], 2, 2, 4, 5, 3
    q, k, v, _ = make_inputs(1, T, H, U, d_p, d_v, seed=len(cu), dtype=dtype)
    N = len(cu) - 1
    gen = torch.Generator().manual_seed(0)
    sd = torch.float64 if dtype == torch.float64 else torch.float32
    S0, z0 = torch.randn(N, H, 16, d_v, generator=gen, dtype=sd), torch.rand(N, H, 16, generator=gen, dtype=sd) + 0.1
    kw = dict(num_factors=U, top_k=K, gamma=0.8, cape=torch.tensor([True, False], device=device), offset=2,
              output_final_state=True)
    leaves = [t.to(device).requires_grad_() for t in (q, k, v, S0, z0)]
    o, (S, z) = R.ram_attention(*leaves[:3], initial_state=tuple(leaves[3:]),
                                cu_seqlens=torch.tensor(cu, device=device), **kw)
    go = torch.randn(o.shape, generator=gen, dtype=o.dtype).to(device)
    gS, gz = torch.randn(S.shape, generator=gen).to(device, S.dtype), torch.randn(z.shape, generator=gen).to(device, z.dtype)
    grads = torch.autograd.grad((o, S, z), leaves, (go, gS, gz))
    for n in range(N):
        a, b = cu[n], cu[n + 1]
        sl = [t[:, a:b].detach().clone().requires_grad_() for t in leaves[:3]]
        st = [t[n:n + 1].detach().clone().requires_grad_() for t in leaves[3:]]
        if b == a:  # an empty sequence passes its state through
            torch.testing.assert_close(S[n], st[0][0], rtol=tol, atol=tol)
            continue
        o_n, (S_n, z_n) = R.ram_attention(*sl, initial_state=tuple(st), **kw)
        torch.testing.assert_close(o[:, a:b], o_n, rtol=tol, atol=tol)
        torch.testing.assert_close(S[n:n + 1], S_n, rtol=tol, atol=tol)
        torch.testing.assert_close(z[n:n + 1], z_n, rtol=tol, atol=tol)
        g_n = torch.autograd.grad((o_n, S_n, z_n), sl + st, (go[:, a:b], gS[n:n + 1], gz[n:n + 1]))
        for i, (full, part) in enumerate(zip(grads, g_n)):  # q, k, v slice time; S0, z0 slice sequences
            got = full[:, a:b] if i < 3 else full[n:n + 1]
            torch.testing.assert_close(got, part, rtol=tol, atol=tol)


@pytest.mark.parametrize("cu", CU, ids=lambda c: "-".join(map(str, c)))
def test_packed_equals_separate_cpu_float64(cu):
    _packed_vs_separate(cu, "cpu", torch.float64, 1e-10)


@pytest.mark.gpu
@pytest.mark.parametrize("cu", CU, ids=lambda c: "-".join(map(str, c)))
def test_packed_equals_separate_cuda_triton(cu):
    _packed_vs_separate(cu, "cuda", torch.float32, 1e-4)


@pytest.mark.parametrize("scan", ["recurrent", "segment", "segment-saved", "segment-heads"])
def test_triton_scan_kernel_varlen_under_interpreter(scan):
    """The Triton scan kernels (fused-recurrent and segment-walk) with cu_seqlens (interpreter on CPU, compiled on a
    GPU); the empty middle sequence checks that nothing leaks across sequence boundaries."""
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs TRITON_INTERPRET=1 on CPU")
    from ramnet.ops.address.naive import address_naive
    from ramnet.ops.memory.backends import SCAN, ScanArgs, ScanProblem
    from ramnet.ops.memory.naive import pdma_parallel, pdma_parallel_backward

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    cu = torch.tensor([0, 3, 3, 9])
    q, k, v, _ = make_inputs(1, 9, 2, 2, 3, 4, seed=1, dtype=torch.float32)
    widx, ww = address_naive(k, 2, 3)
    ridx, rw = address_naive(q, 2, 3)
    S0, z0 = torch.randn(3, 2, 9, 4), torch.rand(3, 2, 9) + 0.1
    go, gS, gz = torch.randn_like(v), torch.randn_like(S0), torch.randn_like(z0)
    ref = [*pdma_parallel(v, widx, ww, ridx, rw, S0, z0, 0.7, 1e-6, cu),
           *pdma_parallel_backward(go, gS, gz, v, widx, ww, ridx, rw, S0, z0, 0.7, 1e-6, 1e-3, cu)]
    on = lambda *ts: [t.to(dev) for t in ts]
    args = ScanArgs(*on(v, widx, ww, ridx, rw, S0, z0), cu.to(dev), 0.7, 1e-6, 1e-3)
    backend, problem = scan_backend(scan), ScanProblem.of(args)
    got = [*backend.forward(problem, args), *backend.backward(problem, args, *on(go, gS, gz))]
    for a, b in zip(got, ref):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cu,match", [([0, 5, 3, 20], "non-decreasing"), ([1, 20], "non-decreasing"),
                                      ([0, 19], "from 0 to T=20"), ([0], "at least 2")])
def test_bad_cu_seqlens(cu, match):
    q, k, v, _ = make_inputs(1, 20, 2, 2, 4, 5, dtype=torch.float32)
    with pytest.raises(ValueError, match=match):
        R.ram_attention(q, k, v, num_factors=2, top_k=3, cu_seqlens=torch.tensor(cu))


def test_cu_seqlens_needs_batch_one():
    q, k, v, _ = make_inputs(2, 20, 2, 2, 4, 5, dtype=torch.float32)
    with pytest.raises(ValueError, match="batch size 1"):
        R.ram_attention(q, k, v, num_factors=2, top_k=3, cu_seqlens=torch.tensor([0, 20]))


def test_opcheck_with_cu_seqlens():
    q, k, v, _ = make_inputs(1, 12, 2, 2, 3, 4, seed=2, dtype=torch.float32)
    ww, widx = torch.ops.ramnet.address(k, 2, 3, 1.0)
    rw, ridx = torch.ops.ramnet.address(q, 2, 3, 1.0)
    S0, z0 = R.initial_state(3, 2, 9, 4)
    args = (v.requires_grad_(), widx, ww.requires_grad_(), ridx, rw, S0.requires_grad_(), z0, torch.tensor([0, 4, 4, 12]),
            0.9, 1e-6, 1e-3)
    assert set(torch.library.opcheck(torch.ops.ramnet.pdma_scan.default, args).values()) == {"SUCCESS"}
