"""The optional write gate of ``ram_attention`` / ``ram_step_functional``: ``[B, T, H]`` in ``[0, 1]`` scaling
each token's K write weights. Parallel form == recurrent reference with gated weights (float64), gate 1 == no
gate, gate 0 leaves the state untouched, gradients reach the gate, decode == the full sequence, bad gates refused."""
import pytest
import torch

import ramnet.ops as R

from .memory_cases import make_inputs, recurrent_attention

TOL = dict(rtol=1e-10, atol=1e-10)
# (B, T, H, U, d_p, d_v, K): awkward sizes, K=1 and K=M included
SHAPES = [(1, 1, 1, 1, 2, 1, 1), (2, 13, 3, 2, 4, 5, 3), (1, 29, 2, 3, 3, 7, 27), (3, 17, 1, 2, 3, 6, 9)]
IDS = ["BTH" + "-".join(map(str, s)) for s in SHAPES]


def _gate(B, T, H, seed):
    return torch.rand(B, T, H, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.5])
def test_gated_parallel_equals_gated_recurrent(shape, gamma):
    B, T, H, U, d_p, d_v, K = shape
    q, k, v, state = make_inputs(B, T, H, U, d_p, d_v, seed=T + K, with_state=True)
    gate = _gate(B, T, H, seed=K)
    kw = dict(num_factors=U, top_k=K, gamma=gamma, initial_state=state)
    o, (S, z) = R.ram_attention(q, k, v, output_final_state=True, write_gate=gate, **kw)
    o_ref, S_ref, z_ref = recurrent_attention(q, k, v, write_gate=gate, **kw)
    torch.testing.assert_close(o, o_ref, **TOL)
    torch.testing.assert_close(S, S_ref, **TOL)
    torch.testing.assert_close(z, z_ref, **TOL)
    o_plain = R.ram_attention(q, k, v, **kw)[0]
    assert (o - o_plain).abs().max() > 1e-3  # the gate changed the result (T = 1: the read sees this write)


def test_gate_of_one_is_the_paper_write_and_gate_of_zero_writes_nothing():
    B, T, H, U, d_p, d_v, K = SHAPES[1]
    q, k, v, state = make_inputs(B, T, H, U, d_p, d_v, seed=3, with_state=True)
    kw = dict(num_factors=U, top_k=K, initial_state=state, output_final_state=True)
    o0, (S0, z0) = R.ram_attention(q, k, v, **kw)
    o1, (S1, z1) = R.ram_attention(q, k, v, write_gate=torch.ones(B, T, H, dtype=q.dtype), **kw)
    assert torch.equal(o0, o1) and torch.equal(S0, S1) and torch.equal(z0, z1)
    _, (S_none, z_none) = R.ram_attention(q, k, v, write_gate=torch.zeros(B, T, H, dtype=q.dtype), **kw)
    assert torch.equal(S_none, state[0]) and torch.equal(z_none, state[1])


def test_gradient_reaches_the_gate():
    """With proxy_eps = 0 the backward's decay derivative is the exact one, so finite differences check it."""
    B, T, H, U, d_p, d_v, K = 1, 6, 2, 2, 3, 3, 4
    q, k, v, _ = make_inputs(B, T, H, U, d_p, d_v, seed=11)
    gate = (0.1 + 0.8 * _gate(B, T, H, seed=2)).requires_grad_()
    fn = lambda g: R.ram_attention(q, k, v, num_factors=U, top_k=K, proxy_eps=0.0, write_gate=g)[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (gate,), eps=1e-6, atol=1e-7)


def test_gated_decode_equals_the_full_sequence():
    B, T, H, U, d_p, d_v, K = 2, 9, 3, 2, 4, 5, 3
    q, k, v, _ = make_inputs(B, T, H, U, d_p, d_v, seed=5)
    gate = _gate(B, T, H, seed=6)
    o_full = R.ram_attention(q, k, v, num_factors=U, top_k=K, write_gate=gate)[0]
    S, z = R.initial_state(B, H, d_p**U, d_v, dtype=torch.float64)
    for t in range(T):
        o, S, z = R.ram_step_functional(q[:, t], k[:, t], v[:, t], S, z, position=t, num_factors=U, top_k=K,
                                        write_gate=gate[:, t])
        torch.testing.assert_close(o, o_full[:, t], **TOL)


@pytest.mark.parametrize("gate, error, message", [
    (torch.full((2, 13, 3), 1.5, dtype=torch.float64), ValueError, r"write_gate values must be in \[0, 1\]"),
    (torch.full((2, 13, 3), -0.1, dtype=torch.float64), ValueError, r"write_gate values must be in \[0, 1\]"),
    (torch.full((2, 13, 3), float("nan"), dtype=torch.float64), ValueError, r"write_gate values must be in"),
    (torch.ones(2, 13, 4, dtype=torch.float64), ValueError, r"write_gate .*shape"),
    (torch.ones(2, 13, dtype=torch.float64), ValueError, r"write_gate must have rank 3"),
    (torch.ones(2, 13, 3, dtype=torch.int64), TypeError, r"write_gate must have dtype"),
    ("ones", TypeError, r"write_gate must be a torch.Tensor"),
])
def test_bad_gates_are_refused_before_any_work(gate, error, message):
    B, T, H, U, d_p, d_v, K = SHAPES[1]
    q, k, v, state = make_inputs(B, T, H, U, d_p, d_v, seed=3, with_state=True)
    before = [t.clone() for t in state]
    with pytest.raises(error, match=message):
        R.ram_attention(q, k, v, num_factors=U, top_k=K, initial_state=state, write_gate=gate)
    assert all(torch.equal(a, b) for a, b in zip(before, state))
