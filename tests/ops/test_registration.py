"""Every registered op passes torch.library.opcheck (all four default tests), and compile(fullgraph) == eager."""
import pytest
import torch

import ramnet.ops as R

from .memory_cases import make_inputs

OPS = torch.ops.ramnet
SAMPLES = [(1, 1, 1, 1, 2, 1, 1), (2, 7, 3, 2, 4, 5, 3), (1, 12, 2, 3, 3, 4, 27)]


def _memory_args(shape, dtype, requires_grad):
    B, T, H, U, d_p, d_v, K = shape
    q, k, v, (S, z) = make_inputs(B, T, H, U, d_p, d_v, seed=T, dtype=dtype, with_state=True)
    ww, widx = OPS.address(k, U, K, 1.0)
    rw, ridx = OPS.address(q, U, K, 1.0)
    floats = [t.clone().requires_grad_(requires_grad) for t in (v, ww, rw, S.to(dtype), z.to(dtype))]
    v, ww, rw, S, z = floats
    return v, widx, ww, ridx, rw, S, z


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SAMPLES, ids=lambda s: "-".join(map(str, s)))
def test_opcheck_address(shape, dtype, requires_grad):
    B, T, H, U, d_p, d_v, K = shape
    x = torch.randn(B, T, H, U * d_p, dtype=dtype, requires_grad=requires_grad)
    result = torch.library.opcheck(OPS.address.default, (x, U, K, 0.8))
    assert set(result.values()) == {"SUCCESS"}
    ww, idx = OPS.address(x.detach(), U, K, 0.8)
    # backward ops are not differentiable again (no double backward): opcheck them without requires_grad
    g = torch.randn_like(ww)
    assert set(torch.library.opcheck(OPS.address_bwd.default, (g, x.detach(), idx, ww, U, 0.8)).values()) == {"SUCCESS"}


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SAMPLES, ids=lambda s: "-".join(map(str, s)))
def test_opcheck_pdma_scan(shape, dtype, requires_grad):
    args = _memory_args(shape, dtype, requires_grad)
    result = torch.library.opcheck(OPS.pdma_scan.default, (*args, None, 0.9, 1e-6, 1e-3))
    assert set(result.values()) == {"SUCCESS"}
    v, widx, ww, ridx, rw, S, z = [a.detach() for a in args]
    o = torch.randn_like(v)
    grads = (o, torch.randn_like(S), torch.randn_like(z))  # no double backward: see test_opcheck_address
    result = torch.library.opcheck(OPS.pdma_scan_bwd.default, (*grads, v, widx, ww, ridx, rw, S, z, None, 0.9, 1e-6, 1e-3))
    assert set(result.values()) == {"SUCCESS"}


def test_compile_fullgraph_ops_forward_backward():
    q, k, v, (S, z) = make_inputs(2, 9, 3, 2, 4, 5, seed=1, dtype=torch.float32, with_state=True)
    leaves = [t.requires_grad_() for t in (q, k, v, S, z)]

    def f(q, k, v, S, z):
        o, (S1, z1) = R.ram_attention(q, k, v, num_factors=2, top_k=3, cape=torch.tensor([True, False, True]),
                                      offset=2, initial_state=(S, z), output_final_state=True)
        return o.square().sum() + (S1 * S1).sum() + z1.sum()

    eager = torch.autograd.grad(f(*leaves), leaves)
    compiled = torch.autograd.grad(torch.compile(f, fullgraph=True, backend="aot_eager")(*leaves), leaves)
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a, b)


def test_opcheck_with_non_contiguous_inputs():
    """Fakes must match the real strides also when inputs are views (e.g. q/k/v split from one projection)."""
    v, widx, ww, ridx, rw, S, z = _memory_args((2, 6, 3, 2, 3, 4, 3), torch.float32, True)
    qkv = torch.randn(2, 6, 3, 12, requires_grad=True)
    v_view = qkv[..., 8:]
    assert not v_view.is_contiguous()
    result = torch.library.opcheck(OPS.pdma_scan.default, (v_view, widx, ww, ridx, rw, S, z, None, 1.0, 1e-6, 1e-3))
    assert set(result.values()) == {"SUCCESS"}
    x_view = torch.randn(2, 6, 3, 10, requires_grad=True)[..., 2:8]
    assert set(torch.library.opcheck(OPS.address.default, (x_view, 2, 4, 1.0)).values()) == {"SUCCESS"}


@pytest.mark.parametrize("shape", SAMPLES, ids=lambda s: "-".join(map(str, s)))
def test_opcheck_fused_ram_step(shape):
    B, T, H, U, d_p, d_v, K = shape
    q, k, v, (S, z) = make_inputs(B, 1, H, U, d_p, d_v, seed=3, dtype=torch.float32, with_state=True)
    args = (q[:, 0], k[:, 0], v[:, 0], S.clone(), z.clone(), torch.arange(B) + 5, torch.arange(H) % 2 == 0, U, K,
            1.0, 1.0, 1e-6)
    assert set(torch.library.opcheck(OPS.ram_step_.default, args).values()) == {"SUCCESS"}
