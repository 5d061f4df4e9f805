"""ramnet.ops.address: beam Top-K equals brute force; gradients; no M-sized tensors; tie rule; NaN policy."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import ramnet.ops as R
from ramnet.ops.address.naive import address_bruteforce, factor_log_probs, weights_at

GRID = [(U, d_p) for U in range(1, 7) for d_p in range(2, 9) if d_p**U <= 300_000]


def k_values(M):
    return sorted({1, min(M, 3), min(M, 64), max(1, min(M, 64) // 2 + 1)})


@pytest.mark.parametrize("U,d_p", GRID, ids=[f"U{u}-dp{d}" for u, d in GRID])
def test_beam_equals_bruteforce(U, d_p):
    M = d_p**U
    gen = torch.Generator().manual_seed(U * 100 + d_p)
    rows = 6 if M < 50_000 else 2
    x = torch.randn(rows, U * d_p, generator=gen, dtype=torch.float64) * 2
    for K in k_values(M):
        idx, w = R.address(x, num_factors=U, top_k=K)
        idx_b, w_b = address_bruteforce(x, U, K)
        assert torch.equal(idx, idx_b), f"K={K}"
        torch.testing.assert_close(w, w_b, rtol=1e-12, atol=0)
        assert (w[..., :-1] >= w[..., 1:]).all(), "weights must be in descending order"


def test_leading_dims_and_tau():
    x = torch.randn(2, 3, 5, 12, dtype=torch.float64)
    idx, w = R.address(x, num_factors=3, top_k=5, tau=0.7)
    idx_b, w_b = address_bruteforce(x, 3, 5, 0.7)
    assert idx.shape == (2, 3, 5, 5) and idx.dtype == torch.int64
    assert torch.equal(idx, idx_b)
    torch.testing.assert_close(w, w_b)


@pytest.mark.parametrize("U,d_p,K", [(1, 8, 3), (2, 4, 5), (3, 3, 27), (5, 4, 8)])
def test_gradcheck_into_every_factor(U, d_p, K):
    x = torch.randn(3, U * d_p, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: R.address(t, num_factors=U, top_k=K, tau=0.9)[1], (x,))
    # every factor softmax receives gradient
    R.address(x, num_factors=U, top_k=K)[1].sum().backward()
    per_factor = x.grad.view(3, U, d_p).abs().sum((0, 2))
    assert (per_factor > 0).all()


def test_gradient_matches_autograd_of_product():
    x = torch.randn(4, 20, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 8, dtype=torch.float64)
    idx, w = R.address(x, num_factors=5, top_k=8)
    (got,) = torch.autograd.grad(w, x, g)
    (ref,) = torch.autograd.grad(weights_at(factor_log_probs(x, 5, 1.0), idx), x, g)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)


class _MaxNumel(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.max_numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.max_numel = max(self.max_numel, t.numel())
        return out


@pytest.mark.parametrize("U,d_p,K", [(6, 8, 64), (4, 16, 64), (3, 32, 16)])
def test_cost_does_not_grow_with_M(U, d_p, K):
    M = d_p**U
    assert M > 4096
    x = torch.randn(1, U * d_p, requires_grad=True)
    with _MaxNumel() as mode:
        idx, w = R.address(x, num_factors=U, top_k=K)
        w.sum().backward()
    assert mode.max_numel <= K * d_p, f"an intermediate of {mode.max_numel} elements (M={M})"
    assert int(idx.max()) < M


def test_tie_rule_lower_flat_index_wins():
    x = torch.zeros(2, 12)
    idx, w = R.address(x, num_factors=3, top_k=6)
    assert idx.tolist() == [[0, 1, 2, 3, 4, 5]] * 2
    torch.testing.assert_close(w, torch.full_like(w, 1 / 64))


def test_non_finite_inputs_give_nan_weights_and_valid_indices():
    x = torch.randn(3, 12)
    x[0, 2] = float("nan")
    x[1, 5] = float("inf")
    idx, w = R.address(x, num_factors=3, top_k=4)
    assert ((idx >= 0) & (idx < 64)).all()
    assert torch.isnan(w[0]).all() and torch.isnan(w[1]).any()
    assert torch.isfinite(w[2]).all()
