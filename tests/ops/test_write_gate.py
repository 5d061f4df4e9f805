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
    (torch.full((2, 13, 3), float("inf"), dtype=torch.float64), ValueError, r"write_gate values must be in"),
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


def test_gated_in_place_step_equals_the_functional_step_and_keeps_no_history():
    B, T, H, U, d_p, d_v, K = 2, 5, 3, 2, 4, 5, 3
    q, k, v, _ = make_inputs(B, T, H, U, d_p, d_v, seed=8)
    gate = _gate(B, T, H, seed=9)
    S, z = R.initial_state(B, H, d_p**U, d_v, dtype=torch.float64)
    S2, z2 = S.clone(), z.clone()
    for t in range(T):
        o_ref, S, z = R.ram_step_functional(q[:, t], k[:, t], v[:, t], S, z, position=t, num_factors=U, top_k=K,
                                            write_gate=gate[:, t])
        o = R.ram_step(q[:, t], k[:, t], v[:, t], S2, z2, position=t, num_factors=U, top_k=K, write_gate=gate[:, t])
        torch.testing.assert_close(o, o_ref, **TOL)
        torch.testing.assert_close(S2, S, **TOL)
        torch.testing.assert_close(z2, z, **TOL)
    assert S2.grad_fn is None and z2.grad_fn is None  # grad mode is on here: the copies record nothing


@pytest.mark.parametrize("case, error, message", [
    ("z expanded", ValueError, "z must be contiguous"),
    ("shared", ValueError, "must not share memory"),
    ("gate > 1", ValueError, r"write_gate values must be in \[0, 1\]"),
    ("gate rank 3", ValueError, "write_gate must have rank 2"),
    ("gate heads", ValueError, r"write_gate has shape \(2, 4\)"),
    ("position", ValueError, "position values must be in"),
])
def test_gated_in_place_step_refuses_bad_input_before_writing(case, error, message):
    B, H, U, d_p, d_v, K = 2, 3, 2, 4, 5, 3
    q, k, v, _ = make_inputs(B, 1, H, U, d_p, d_v, seed=10)
    q, k, v = q[:, 0], k[:, 0], v[:, 0]
    S, z = R.initial_state(B, H, d_p**U, d_v, dtype=torch.float64)
    gate, position = torch.full((B, H), 0.5, dtype=torch.float64), 3
    if case == "z expanded":
        z = z[:1].expand(B, H, d_p**U)
    elif case == "shared":
        flat = torch.zeros(B * H * d_p**U * (d_v + 1), dtype=torch.float64)
        S, z = flat[: S.numel()].view_as(S), flat[S.numel():].view_as(z)
    elif case == "gate > 1":
        gate = gate + 1
    elif case == "gate rank 3":
        gate = gate.unsqueeze(1)
    elif case == "gate heads":
        gate = torch.full((B, H + 1), 0.5, dtype=torch.float64)
    else:
        position = torch.tensor([3, -1])
    before = (S.clone(), z.clone())
    with pytest.raises(error, match=message):
        R.ram_step(q, k, v, S, z, position=position, num_factors=U, top_k=K, write_gate=gate)
    assert torch.equal(S, before[0]) and torch.equal(z, before[1])


def test_a_nan_gate_gives_a_nan_result_not_an_error():
    """A diverged model's NaN must reach its loss (training reports the divergence there), as NaN in q does."""
    B, T, H, U, d_p, d_v, K = SHAPES[1]
    q, k, v, _ = make_inputs(B, T, H, U, d_p, d_v, seed=3)
    gate = _gate(B, T, H, seed=1)
    gate[0, 0, 0] = float("nan")
    o = R.ram_attention(q, k, v, num_factors=U, top_k=K, write_gate=gate)[0]
    assert o.isnan().any() and not o[1].isnan().any()


def test_gated_packed_sequences_equal_separate_calls():
    """``cu_seqlens``: each packed sequence with its own slice of the gate, as if run alone."""
    H, U, d_p, d_v, K = 2, 2, 3, 4, 3
    lengths = [5, 1, 7]
    q, k, v, _ = make_inputs(1, sum(lengths), H, U, d_p, d_v, seed=12)
    gate = _gate(1, sum(lengths), H, seed=13)
    cu = torch.tensor([0, 5, 6, 13])
    o = R.ram_attention(q, k, v, num_factors=U, top_k=K, write_gate=gate, cu_seqlens=cu)[0]
    for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
        o_alone = R.ram_attention(q[:, a:b], k[:, a:b], v[:, a:b], num_factors=U, top_k=K,
                                  write_gate=gate[:, a:b])[0]
        torch.testing.assert_close(o[:, a:b], o_alone, **TOL)


def test_gated_chunks_continue_the_state():
    B, T, H, U, d_p, d_v, K = 2, 11, 2, 2, 4, 3, 5
    q, k, v, _ = make_inputs(B, T, H, U, d_p, d_v, seed=14)
    gate = _gate(B, T, H, seed=15)
    kw = dict(num_factors=U, top_k=K)
    o_full = R.ram_attention(q, k, v, write_gate=gate, **kw)[0]
    o1, state = R.ram_attention(q[:, :4], k[:, :4], v[:, :4], write_gate=gate[:, :4], output_final_state=True, **kw)
    o2 = R.ram_attention(q[:, 4:], k[:, 4:], v[:, 4:], write_gate=gate[:, 4:], initial_state=state, offset=4, **kw)[0]
    torch.testing.assert_close(torch.cat([o1, o2], 1), o_full, **TOL)
