"""ramnet.ops.ram_attention / ram_step: parallel form == recurrent reference (float64, 1e-10), proxy-gradient
backward, state carry, decode."""
import pytest
import torch

from ramnet.ops.constants import DEFAULT_PROXY_EPS

import ramnet.ops as R
from ramnet.ops.memory.naive import proxy_decay

from .memory_cases import cape_mask, make_inputs, recurrent_attention

TOL = dict(rtol=1e-10, atol=1e-10)
# (B, T, H, U, d_p, d_v, K): awkward sizes, K=1 and K=M included
SHAPES = [(1, 1, 1, 1, 2, 1, 1), (2, 13, 3, 2, 4, 5, 3), (1, 63, 2, 3, 3, 7, 27), (3, 17, 1, 2, 3, 6, 9),
          (2, 40, 2, 4, 2, 3, 8), (1, 33, 3, 5, 4, 4, 8)]
IDS = ["BTH" + "-".join(map(str, s)) for s in SHAPES]


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("cape,offset,with_state", [("none", 0, False), ("half", 5, True), ("all", 1000, False)])
def test_parallel_equals_recurrent(shape, gamma, cape, offset, with_state):
    B, T, H, U, d_p, d_v, K = shape
    q, k, v, state = make_inputs(B, T, H, U, d_p, d_v, seed=T + K, with_state=with_state)
    kw = dict(num_factors=U, top_k=K, gamma=gamma, cape=cape_mask(H, cape), offset=offset, initial_state=state)
    o, (S, z) = R.ram_attention(q, k, v, output_final_state=True, **kw)
    o_ref, S_ref, z_ref = recurrent_attention(q, k, v, **kw)
    torch.testing.assert_close(o, o_ref, **TOL)
    torch.testing.assert_close(S, S_ref, **TOL)
    torch.testing.assert_close(z, z_ref, **TOL)


@pytest.mark.parametrize("shape", SHAPES[1:4], ids=IDS[1:4])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
def test_backward_equals_explicit_proxy_reference(shape, gamma):
    """Every input gets the proxy gradient: compare with autograd of a recurrent reference whose decay is exact
    in value and proxy in derivative, with random upstream grads for every output including the final state."""
    B, T, H, U, d_p, d_v, K = shape
    q, k, v, state = make_inputs(B, T, H, U, d_p, d_v, seed=7, with_state=True)
    leaves = [t.clone().requires_grad_() for t in (q, k, v, *state)]
    kw = dict(num_factors=U, top_k=K, gamma=gamma, cape=cape_mask(H, "half"), offset=3)
    o, (S, z) = R.ram_attention(*leaves[:3], initial_state=tuple(leaves[3:]), output_final_state=True, **kw)
    gen = torch.Generator().manual_seed(1)
    grads_out = [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in (o, S, z)]
    got = torch.autograd.grad((o, S, z), leaves, grads_out)
    ref_leaves = [t.clone().requires_grad_() for t in (q, k, v, *state)]
    o_r, S_r, z_r = recurrent_attention(*ref_leaves[:3], initial_state=tuple(ref_leaves[3:]),
                                        decay=lambda w, g: proxy_decay(w, g, DEFAULT_PROXY_EPS), **kw)
    ref = torch.autograd.grad((o_r, S_r, z_r), ref_leaves, grads_out)
    for name, a, b in zip(["q", "k", "v", "S0", "z0"], got, ref):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m: f"grad {name}: {m}")


def test_gradcheck_where_proxy_equals_exact():
    """At gamma = 0 the decay is constant, so the proxy and true derivatives agree and gradcheck is exact."""
    q, k, v, state = make_inputs(1, 6, 2, 2, 3, 3, seed=3, with_state=True)
    leaves = [t.requires_grad_() for t in (q, k, v, *state)]

    def f(q, k, v, S, z):
        o, (S1, z1) = R.ram_attention(q, k, v, num_factors=2, top_k=4, gamma=0.0, cape=torch.tensor([True, False]),
                                      initial_state=(S, z), output_final_state=True)
        return o, S1, z1

    assert torch.autograd.gradcheck(f, tuple(leaves))


def test_memory_core_backward_is_the_explicit_proxy_gradient():
    """gradcheck (numerical, float64) the explicit proxy reference, then require the op's backward to equal it.

    The reference decays exactly in value and by ``(e + (1-e)(1-w)) ** gamma`` in derivative; a large ``e`` makes
    its gradient clearly different from the exact derivative, so the comparison cannot pass by accident.
    """
    from ramnet.ops.memory.naive import pdma_recurrent, proxy_decay_grad
    from ramnet.ops.memory.op import pdma_scan_bwd_op

    e, gamma = 0.2, 1.5
    w = torch.rand(50, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: (e + (1 - e) * (1 - x)) ** gamma, (w,))
    (auto,) = torch.autograd.grad(proxy_decay(w, gamma, e).sum(), w)
    torch.testing.assert_close(auto, proxy_decay_grad(w.detach(), gamma, e), **TOL)

    q, k, v, state = make_inputs(1, 5, 1, 2, 3, 2, seed=5, with_state=True)
    widx, ww = R.address(k, num_factors=2, top_k=3)
    ridx, rw = R.address(q, num_factors=2, top_k=3)
    ww = ww.clone().requires_grad_()
    g = torch.randn(1, 5, 1, 2, dtype=torch.float64)
    o_ref = pdma_recurrent(v, widx, ww, ridx, rw, *state, gamma, 1e-6, decay=lambda x, g_: proxy_decay(x, g_, e))[0]
    (ref,) = torch.autograd.grad(o_ref, ww, g)
    (exact,) = torch.autograd.grad(pdma_recurrent(v, widx, ww, ridx, rw, *state, gamma, 1e-6)[0], ww, g)
    zeros = torch.zeros_like(state[0]), torch.zeros_like(state[1])
    got = pdma_scan_bwd_op(g, *zeros, v, widx, ww.detach(), ridx, rw, *state, None, gamma, 1e-6, e)[1]
    torch.testing.assert_close(got, ref, **TOL)
    assert not torch.allclose(ref, exact, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("split", [1, 7, 19])
def test_split_sequence_with_state_carry(split):
    q, k, v, state = make_inputs(2, 20, 3, 3, 3, 4, seed=11, with_state=True)
    kw = dict(num_factors=3, top_k=5, gamma=0.7, cape=cape_mask(3, "half"))
    o, (S, z) = R.ram_attention(q, k, v, offset=2, initial_state=state, output_final_state=True, **kw)
    o1, st1 = R.ram_attention(q[:, :split], k[:, :split], v[:, :split], offset=2, initial_state=state,
                              output_final_state=True, **kw)
    o2, (S2, z2) = R.ram_attention(q[:, split:], k[:, split:], v[:, split:], offset=2 + split, initial_state=st1,
                                   output_final_state=True, **kw)
    torch.testing.assert_close(torch.cat([o1, o2], 1), o, **TOL)
    torch.testing.assert_close(S2, S, **TOL)
    torch.testing.assert_close(z2, z, **TOL)


@pytest.mark.parametrize("functional", [False, True])
@pytest.mark.parametrize("tensor_position", [False, True])
def test_decode_loop_equals_attention(functional, tensor_position):
    B, T, H, U, d_p, d_v, K = 2, 15, 3, 2, 4, 5, 6
    q, k, v, state = make_inputs(B, T, H, U, d_p, d_v, seed=2, with_state=True)
    kw = dict(num_factors=U, top_k=K, gamma=1.3, cape=cape_mask(H, "half"))
    o, (S_ref, z_ref) = R.ram_attention(q, k, v, offset=4, initial_state=state, output_final_state=True, **kw)
    S, z = state[0].clone(), state[1].clone()
    outs = []
    for t in range(T):
        pos = torch.full((B,), 4 + t) if tensor_position else 4 + t
        if functional:
            o_t, S, z = R.ram_step_functional(q[:, t], k[:, t], v[:, t], S, z, position=pos, **kw)
        else:
            o_t = R.ram_step(q[:, t], k[:, t], v[:, t], S, z, position=pos, **kw)
        outs.append(o_t)
    torch.testing.assert_close(torch.stack(outs, 1), o, **TOL)
    torch.testing.assert_close(S, S_ref, **TOL)
    torch.testing.assert_close(z, z_ref, **TOL)


def test_per_sequence_positions_in_step():
    """A batch whose sequences sit at different positions equals running each alone."""
    q, k, v, state = make_inputs(2, 1, 2, 2, 4, 3, seed=9, with_state=True)
    kw = dict(num_factors=2, top_k=3, cape=torch.tensor([True, True]))
    S, z = state[0].clone(), state[1].clone()
    o = R.ram_step(q[:, 0], k[:, 0], v[:, 0], S, z, position=torch.tensor([3, 8]), **kw)
    for b, pos in enumerate([3, 8]):
        o_b, (S_b, _) = R.ram_attention(q[b:b + 1], k[b:b + 1], v[b:b + 1], offset=pos, output_final_state=True,
                                        initial_state=(state[0][b:b + 1], state[1][b:b + 1]), **kw)
        torch.testing.assert_close(o[b], o_b[0, 0], **TOL)
        torch.testing.assert_close(S[b], S_b[0], **TOL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_inputs_keep_fp32_state(dtype):
    q, k, v, _ = make_inputs(1, 9, 2, 2, 4, 8, seed=4, dtype=torch.float32)
    o, (S, z) = R.ram_attention(q.to(dtype), k.to(dtype), v.to(dtype), num_factors=2, top_k=4,
                                output_final_state=True)
    assert o.dtype == dtype and S.dtype == torch.float32 and z.dtype == torch.float32
    o64, _ = R.ram_attention(q.double(), k.double(), v.double(), num_factors=2, top_k=4)
    tol = {torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(o.double(), o64, rtol=tol, atol=tol)
