"""ramnet.gated_delta_torch (the PyTorch chunked gated delta rule) against the token-by-token recurrence, in float64
and against fla's ``naive_recurrent_gated_delta_rule``; and the ``gated_deltanet`` baseline with
``layer: {core: torch}`` against fla's GatedDeltaNet parameters composed by hand with fla's reference functions."""
import warnings

import pytest
import torch
import torch.nn.functional as F

from ramnet.gated_delta_torch import chunk_gated_delta_rule_torch, l2norm

F64 = torch.float64


def recurrence(q, k, v, g, beta, scale, h0=None):
    """The rule token by token, in the inputs' dtype (float64 here): ``(o [B, T, H, V], final state)``."""
    B, T, H, K = q.shape
    S = torch.zeros(B, H, K, v.shape[-1], dtype=q.dtype) if h0 is None else h0
    out = []
    for t in range(T):
        S = S * g[:, t].exp()[..., None, None]
        u = beta[:, t, :, None] * (v[:, t] - torch.einsum("bhkv,bhk->bhv", S, k[:, t]))
        S = S + k[:, t, :, :, None] * u[:, :, None, :]
        out.append(torch.einsum("bhkv,bhk->bhv", S, q[:, t] * scale))
    return torch.stack(out, 1), S


def inputs(B, T, H, K, V, seed=0, dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(B, T, H, K, generator=gen, dtype=dtype), torch.randn(B, T, H, K, generator=gen, dtype=dtype)
    v = torch.randn(B, T, H, V, generator=gen, dtype=dtype)
    g = F.logsigmoid(torch.randn(B, T, H, generator=gen, dtype=dtype) + 1)  # decays exp(g) of 0.2 to 0.99
    beta = torch.rand(B, T, H, generator=gen, dtype=dtype)
    h0 = torch.randn(B, H, K, V, generator=gen, dtype=dtype)
    return [x.requires_grad_() for x in (q, k, v, g, beta, h0)]


def outputs_and_grads(fn, args, seed=1):
    """``fn(*args) -> (o, state)``; the grads of a random linear function of both with respect to every arg."""
    o, S = (x.to(F64) for x in fn(*args))  # fla's naive recurrence returns float32
    gen = torch.Generator().manual_seed(seed)
    loss = (o * torch.randn(o.shape, generator=gen, dtype=F64)).sum() + \
        (S * torch.randn(S.shape, generator=gen, dtype=F64)).sum()
    return [o.detach(), S.detach(), *torch.autograd.grad(loss, args)]


NAMES = ("o", "final state", "dq", "dk", "dv", "dg", "dbeta", "dh0")


@pytest.mark.parametrize("T", [1, 5, 63, 64, 65, 130])
@pytest.mark.parametrize("H,chunk", [(1, 64), (2, 16)])
def test_chunked_rule_equals_the_recurrence_in_float64(T, H, chunk):
    args = inputs(2, T, H, 8, 12, seed=T)
    got = outputs_and_grads(lambda q, k, v, g, b, h0: chunk_gated_delta_rule_torch(
        q, k, v, g, b, initial_state=h0, output_final_state=True, use_qk_l2norm=True, chunk_size=chunk), args)
    want = outputs_and_grads(lambda q, k, v, g, b, h0: recurrence(l2norm(q), l2norm(k), v, g, b, 8 ** -0.5, h0),
                             args)
    for name, a, b in zip(NAMES, got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=lambda m: f"{name}: {m}")


def test_chunked_rule_matches_fla_naive_recurrent():
    naive = pytest.importorskip("fla.ops.gated_delta_rule.naive")
    q, k, v, g, beta, h0 = inputs(2, 70, 2, 16, 8, seed=3)
    args = (l2norm(q.detach()).requires_grad_(), l2norm(k.detach()).requires_grad_(), v, g, beta, h0)
    got = outputs_and_grads(lambda q, k, v, g, b, h0: chunk_gated_delta_rule_torch(
        q, k, v, g, b, scale=0.3, initial_state=h0, output_final_state=True, chunk_size=32), args)
    want = outputs_and_grads(lambda q, k, v, g, b, h0: naive.naive_recurrent_gated_delta_rule(
        q, k, v, b, g, scale=0.3, initial_state=h0, output_final_state=True), args)  # float32 inside
    for name, a, b in zip(NAMES, got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-5, msg=lambda m: f"{name}: {m}")


def test_the_comparison_can_fail():
    """A rule with the decay shifted by one token, or without beta, is far outside the tolerances above."""
    q, k, v, g, beta, _ = (x.detach() for x in inputs(1, 65, 2, 8, 12))
    o = chunk_gated_delta_rule_torch(q, k, v, g, beta, use_qk_l2norm=True)[0]
    qn, kn = l2norm(q), l2norm(k)
    assert (o - recurrence(qn, kn, v, g.roll(1, 1), beta, 8 ** -0.5)[0]).abs().max() > 1e-2
    assert (o - recurrence(qn, kn, v, g, torch.ones_like(beta), 8 ** -0.5)[0]).abs().max() > 1e-2
    assert (o - recurrence(qn, kn, v, g, beta, 8 ** -0.5)[0]).abs().max() < 1e-12


def test_autograd_agrees_with_finite_differences():
    q, k, v, g, beta, h0 = inputs(1, 5, 1, 3, 2, seed=7)
    fn = lambda *a: chunk_gated_delta_rule_torch(*a[:5], initial_state=a[5], output_final_state=True,  # noqa: E731
                                                 use_qk_l2norm=True, chunk_size=2)
    assert torch.autograd.gradcheck(fn, (q, k, v, g, beta, h0))


def test_low_precision_inputs_come_back_in_their_dtype_computed_in_float32():
    q, k, v, g, beta, _ = (x.detach() for x in inputs(2, 40, 2, 8, 8, dtype=torch.float32))
    o32 = chunk_gated_delta_rule_torch(q, k, v, g, beta, use_qk_l2norm=True)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        o16 = chunk_gated_delta_rule_torch(q.bfloat16(), k.bfloat16(), v.bfloat16(), g, beta, use_qk_l2norm=True)[0]
    assert o16.dtype == torch.bfloat16 and o32.dtype == torch.float32
    torch.testing.assert_close(o16.float(), o32, rtol=0.05, atol=0.05)  # only the bf16 inputs' rounding


# ---- the baseline: fla's GatedDeltaNet parameters through the torch core ----

def _gdn_mixer(**layer):
    pytest.importorskip("fla")
    from ramnet.baselines import FlaMixer
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fla: "Triton is not supported on current platform"
        return FlaMixer("gated_deltanet", d_model=16, n_heads=2, core="torch", **layer)


def _causal_conv(conv, x):  # x [B, T, D]; y_t = silu(sum_i w[:, i] x_{t - W + 1 + i})
    W = conv.weight.shape[-1]
    xp = F.pad(x, (0, 0, W - 1, 0))
    return F.silu(sum(conv.weight[:, 0, i] * xp[:, i:i + x.shape[1]] for i in range(W)))


@pytest.mark.parametrize("use_gate", [True, False])
def test_torch_core_mixer_is_fla_gated_deltanet_by_hand(use_gate):
    mixer = _gdn_mixer(use_gate=use_gate).double()  # skips without fla
    from fla.ops.gated_delta_rule.gate import naive_gdn_gate
    from fla.ops.gated_delta_rule.naive import naive_recurrent_gated_delta_rule
    layer = mixer.layer
    with torch.no_grad():
        layer.o_norm.weight.uniform_(0.5, 1.5)  # not ones: the norm's weight must be applied
    x = torch.randn(2, 70, 16, dtype=F64)
    B, T, _ = x.shape
    q, k, v = (_causal_conv(c, p(x)).view(B, T, 2, 8) for c, p in
               ((layer.q_conv1d, layer.q_proj), (layer.k_conv1d, layer.k_proj), (layer.v_conv1d, layer.v_proj)))
    o, _ = naive_recurrent_gated_delta_rule(l2norm(q), l2norm(k), v, layer.b_proj(x).sigmoid(),
                                            naive_gdn_gate(layer.a_proj(x), layer.A_log, layer.dt_bias, F64))
    o = o.to(F64) * torch.rsqrt(o.to(F64).square().mean(-1, keepdim=True) + layer.o_norm.eps) * layer.o_norm.weight
    if use_gate:
        o = o * F.silu(layer.g_proj(x).view(B, T, 2, 8))
    want = layer.o_proj(o.reshape(B, T, 16))
    torch.testing.assert_close(mixer(x), want, rtol=1e-5, atol=1e-5)  # the naive recurrence runs in float32


def test_torch_core_baseline_builds_with_the_same_state_and_trains():
    pytest.importorskip("fla")
    from ramnet.baselines import build_model
    spec = {"model": "gated_deltanet", "d_model": 64, "n_layers": 2, "n_heads": 2, "d_ff": 256}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, state, config = build_model({**spec, "layer": {"core": "torch"}}, vocab_size=64, max_seq_len=32)
        _, fla_state, fla_config = build_model(spec, vocab_size=64, max_seq_len=32)
    assert state == fla_state == 2 * 2 * 32 * 32
    assert config["layer"] == {"core": "torch"} and config["short_conv"] and fla_config["short_conv"]
    assert [m.core for m in model.mixers] == ["torch", "torch"]
    ids = torch.randint(0, 64, (2, 20))
    F.cross_entropy(model(ids).flatten(0, 1), ids.flatten()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("spec,message", [
    ({"model": "deltanet", "layer": {"core": "torch"}}, "core must be 'fla', got 'torch'"),
    ({"model": "gated_deltanet", "layer": {"core": "triton"}}, "core must be 'fla' or 'torch', got 'triton'"),
    ({"model": "gated_deltanet", "layer": {"core": "torch", "num_v_heads": 4}}, "grouped value heads"),
])
def test_core_option_is_checked(spec, message):
    pytest.importorskip("fla")
    from ramnet.baselines import build_model
    with warnings.catch_warnings(), pytest.raises(ValueError, match=message):
        warnings.simplefilter("ignore")
        build_model({"d_model": 32, "n_heads": 2, **spec}, vocab_size=64, max_seq_len=32)


def test_bad_shapes_name_the_argument():
    from ramnet.gated_delta_torch import chunk_gated_delta_rule_torch

    q, v, gb = torch.randn(1, 5, 2, 4), torch.randn(1, 5, 2, 3), torch.zeros(1, 5, 2)
    with pytest.raises(ValueError, match="must be 4-D"):
        chunk_gated_delta_rule_torch(q[0], q[0], v[0], gb, gb)
    with pytest.raises(ValueError, match="initial_state must be"):
        chunk_gated_delta_rule_torch(q, q, v, gb, gb, initial_state=torch.zeros(1, 2, 3, 4))
