"""GPU path (Triton address + decode kernels, PyTorch scan) against float64 CPU references; opcheck on CUDA;
torch.compile (fullgraph, dynamic, reduce-overhead decode with CUDA graphs) against eager."""
import pytest
import torch

import ramnet.ops as R
from ramnet import RamNetConfig, RamNetForCausalLM

from ..tolerance import assert_close_to_reference
from .memory_cases import cape_mask, make_inputs

pytestmark = pytest.mark.gpu
SHAPES = [(2, 63, 3, 2, 4, 60, 1), (1, 63, 3, 3, 3, 60, 27), (2, 64, 2, 5, 4, 64, 8)]


def _run(q, k, v, state, kw, grads_out):
    leaves = [t.clone().requires_grad_() for t in (q, k, v, *state)]
    o, (S, z) = R.ram_attention(*leaves[:3], initial_state=tuple(leaves[3:]), output_final_state=True, **kw)
    grads = torch.autograd.grad((o, S, z), leaves, [g.to(t.device, t.dtype) for g, t in zip(grads_out, (o, S, z))])
    return [o, S, z, *grads]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s)))
def test_cuda_matches_float64_reference(shape, dtype):
    B, T, H, U, d_p, d_v, K = shape
    q, k, v, state = make_inputs(B, T, H, U, d_p, d_v, seed=T + K, dtype=torch.float64, with_state=True)
    kw = dict(num_factors=U, top_k=K, gamma=0.8, cape=cape_mask(H, "half"), offset=3)
    gen = torch.Generator().manual_seed(0)
    grads_out = [torch.randn(B, T, H, d_v, generator=gen, dtype=torch.float64), torch.randn(state[0].shape, generator=gen,
                 dtype=torch.float64), torch.randn(state[1].shape, generator=gen, dtype=torch.float64)]
    ref = _run(q, k, v, state, kw, grads_out)
    low = [t.to(dtype) for t in (q, k, v)]
    state32 = tuple(s.float() for s in state)
    naive_low = _run(*low, state32, kw, grads_out)
    got = _run(*[t.cuda() for t in low], tuple(s.cuda() for s in state32),
               {**kw, "cape": kw["cape"].cuda()}, grads_out)
    names = ["o", "S", "z", "dq", "dk", "dv", "dS0", "dz0"]
    for name, g, r, n in zip(names, got, ref, naive_low):
        assert_close_to_reference(f"{name} ({dtype})", g.cpu(), r, n.cpu(), floor=1e-6)


def test_opcheck_on_cuda():
    q, k, v, (S, z) = (t.cuda() if isinstance(t, torch.Tensor) else tuple(s.cuda() for s in t)
                       for t in make_inputs(2, 9, 3, 2, 4, 8, seed=1, dtype=torch.float32, with_state=True))
    for rg in (False, True):
        x = k.clone().requires_grad_(rg)
        assert set(torch.library.opcheck(torch.ops.ramnet.address.default, (x, 2, 4, 1.0)).values()) == {"SUCCESS"}
    ww, widx = torch.ops.ramnet.address(k, 2, 4, 1.0)
    rw, ridx = torch.ops.ramnet.address(q, 2, 4, 1.0)
    args = (v.requires_grad_(), widx, ww.requires_grad_(), ridx, rw, S, z, None, 1.0, 1e-6, 1e-3)
    assert set(torch.library.opcheck(torch.ops.ramnet.pdma_scan.default, args).values()) == {"SUCCESS"}
    step = (q.detach()[:, 0], k.detach()[:, 0], v.detach()[:, 0], S.clone(), z.clone(),
            torch.arange(2, device="cuda"), torch.tensor([True, False, True], device="cuda"), 2, 4, 1.0, 1.0, 1e-6)
    assert set(torch.library.opcheck(torch.ops.ramnet.ram_step_.default, step).values()) == {"SUCCESS"}


@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_model_on_cuda(dynamic):
    torch.manual_seed(0)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny", short_conv=True)).cuda()
    compiled = torch.compile(model, fullgraph=True, dynamic=dynamic)
    for T in (16, 24):
        ids = torch.randint(0, 128, (2, T), device="cuda")
        model.zero_grad()
        model(ids).square().mean().backward()
        ref = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        compiled(ids).square().mean().backward()
        for a, b in zip(ref, [p.grad for p in model.parameters()]):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


class _Decoder(torch.nn.Module):
    """The decode state as registered buffers: the layout CUDA graphs accept for in-place updates."""

    def __init__(self, B, H, M, d_v):
        super().__init__()
        S, z = R.initial_state(B, H, M, d_v, device="cuda")
        self.register_buffer("S", S)
        self.register_buffer("z", z)

    def forward(self, q, k, v, position):
        return R.ram_step(q, k, v, self.S, self.z, position=position, num_factors=5, top_k=8,
                          cape=torch.ones(q.shape[1], dtype=torch.bool, device="cuda"))


def test_reduce_overhead_decode_with_cuda_graphs():
    B, H, d_k, d_v, T = 4, 2, 20, 32, 6
    eager, graphed = _Decoder(B, H, 1024, d_v), _Decoder(B, H, 1024, d_v)
    step = torch.compile(graphed, mode="reduce-overhead", fullgraph=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    for t in range(T):
        q, k = (torch.randn(B, H, d_k, device="cuda", generator=gen) for _ in range(2))
        v = torch.randn(B, H, d_v, device="cuda", generator=gen)
        pos = torch.full((B,), t, device="cuda")
        torch.testing.assert_close(step(q, k, v, pos).clone(), eager(q, k, v, pos), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(graphed.S, eager.S, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(graphed.z, eager.z, rtol=1e-5, atol=1e-6)


def test_deterministic_mode_repeats_the_backward_bit_for_bit():
    """Under ``torch.use_deterministic_algorithms`` the forward keeps its read rows and the backward sums ``dv``
    per write rather than by atomics, so two runs give the same bits. By default each token's K writes add their
    ``dv`` terms from K programs in varying order; this test checks only the deterministic mode (the CPU tests check
    which path each mode takes)."""
    B, T, H, U, d_p, d_v, K = 2, 512, 2, 2, 3, 32, 4
    q, k, v, state = make_inputs(B, T, H, U, d_p, d_v, seed=11, dtype=torch.float32, with_state=True)
    kw = dict(num_factors=U, top_k=K, gamma=0.8)
    gen = torch.Generator().manual_seed(1)
    grads_out = [torch.randn(B, T, H, d_v, generator=gen), torch.randn(state[0].shape, generator=gen),
                 torch.randn(state[1].shape, generator=gen)]
    inputs = [t.cuda() for t in (q, k, v)], tuple(s.cuda() for s in state)
    was, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        first, second = (_run(*inputs[0], inputs[1], kw, grads_out) for _ in range(2))
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)
    names = ["o", "S", "z", "dq", "dk", "dv", "dS0", "dz0"]
    differing = [name for name, a, b in zip(names, first, second) if not torch.equal(a, b)]
    assert not differing, f"not bit-identical under deterministic mode: {differing}"


def test_write_gate_on_cuda_matches_float64_reference():
    """The optional write gate on the GPU path (fp32): full sequence with its gradients, and the gated in-place
    decode step, against float64 on the CPU."""
    B, T, H, U, d_p, d_v, K = 2, 63, 3, 3, 4, 17, 16
    q, k, v, state = make_inputs(B, T, H, U, d_p, d_v, seed=21, dtype=torch.float64, with_state=True)
    gate = torch.rand(B, T, H, generator=torch.Generator().manual_seed(22), dtype=torch.float64)
    kw = dict(num_factors=U, top_k=K, gamma=0.8)

    def run(device, dtype):
        leaves = [t.to(device, dtype).requires_grad_() for t in (q, k, v, gate)]
        o = R.ram_attention(*leaves[:3], write_gate=leaves[3], **kw)[0]
        grads = torch.autograd.grad(o.square().sum(), leaves)
        return [o.detach().cpu().double(), *(g.cpu().double() for g in grads)]

    for name, got, ref in zip(["o", "dq", "dk", "dv", "dgate"], run("cuda", torch.float32), run("cpu", torch.float64)):
        torch.testing.assert_close(got, ref, rtol=2e-3, atol=2e-4, msg=name)
    S, z = (t.float().cuda() for t in state)
    S_ref, z_ref = (t.clone() for t in state)
    with torch.no_grad():
        for t in range(4):
            o = R.ram_step(*(x[:, t].float().cuda() for x in (q, k, v)), S, z, position=t,
                           write_gate=gate[:, t].float().cuda(), **kw)
            o_ref = R.ram_step(q[:, t], k[:, t], v[:, t], S_ref, z_ref, position=t, write_gate=gate[:, t], **kw)
            torch.testing.assert_close(o.cpu().double(), o_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(S.cpu().double(), S_ref, rtol=1e-4, atol=1e-5)
