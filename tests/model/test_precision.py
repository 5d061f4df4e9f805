"""Mixed precision: the ops under autocast (cast at the op boundary, fp32 state, in-place decode still in place)
and the model's bf16 forward and backward against fp32 within ``MIXED_PRECISION_TOLERANCE``."""
import pytest
import torch

import ramnet.ops as R
from ramnet import RamNetConfig, RamNetForCausalLM
from ramnet.precision import MIXED_PRECISION_TOLERANCE, mixed_precision_errors, within_tolerance

U, D_P, K = 3, 4, 4
M = D_P**U


def _qkv(B=2, T=6, H=2, d_v=8, device="cpu", dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(B, T, H, U * D_P, generator=g).to(device, dtype) for _ in range(2))
    return q, k, torch.randn(B, T, H, d_v, generator=g).to(device, dtype)


def test_ram_attention_under_autocast_runs_in_the_autocast_dtype_with_an_fp32_state():
    q, k, v = _qkv()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        o, (S, z) = R.ram_attention(q, k.to(torch.bfloat16), v, num_factors=U, top_k=K, output_final_state=True)
    assert o.dtype == torch.bfloat16 and S.dtype == torch.float32 and z.dtype == torch.float32
    ref, _ = R.ram_attention(*(t.to(torch.bfloat16) for t in (q, k, v)), num_factors=U, top_k=K)
    torch.testing.assert_close(o, ref)  # the same as casting by hand


def test_ram_step_under_autocast_updates_the_fp32_state_in_place():
    q, k, v = _qkv(T=1)
    S, z = R.initial_state(2, 2, M, 8)
    S_ref, z_ref = S.clone(), z.clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        o = R.ram_step(q[:, 0], k[:, 0], v[:, 0], S, z, position=0, num_factors=U, top_k=K)
    o_ref = R.ram_step(*(t[:, 0].to(torch.bfloat16) for t in (q, k, v)), S_ref, z_ref, position=0, num_factors=U,
                       top_k=K)
    assert o.dtype == torch.bfloat16 and S.dtype == torch.float32
    assert S.abs().sum() > 0, "the caller's S was not written (an autocast copy was updated instead)"
    torch.testing.assert_close((S, z, o), (S_ref, z_ref, o_ref))


def test_autocast_is_left_as_found_by_the_ops():
    q, k, v = _qkv()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        R.ram_attention(q, k, v, num_factors=U, top_k=K)
        assert torch.is_autocast_enabled("cpu")
    assert not torch.is_autocast_enabled("cpu")


def _model_errors(device, precision, seed):
    torch.manual_seed(seed)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny")).to(device)
    ids = torch.randint(0, 128, (4, 64), device=device)
    return mixed_precision_errors(model, ids, precision)


@pytest.mark.parametrize("seed", [0, 1])
def test_model_bf16_forward_and_backward_agree_with_fp32_on_cpu(seed):
    errors = _model_errors("cpu", "bf16", seed)
    assert not within_tolerance(errors), f"{errors} vs {MIXED_PRECISION_TOLERANCE}"
    assert errors["logits_rel"] > 0, "bf16 and fp32 gave identical logits: autocast did not take effect"


def test_model_forward_compiles_under_autocast():
    torch.manual_seed(0)
    model = RamNetForCausalLM(RamNetConfig.from_name("mqar-tiny"))
    ids = torch.randint(0, 128, (2, 16))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        eager = model(ids)
        compiled = torch.compile(model, fullgraph=True)(ids)
    assert eager.dtype == compiled.dtype == torch.bfloat16
    torch.testing.assert_close(compiled.float(), eager.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_model_mixed_precision_agrees_with_fp32_on_the_gpu(precision):
    for seed in range(2):
        errors = _model_errors("cuda", precision, seed)
        print(f"GPU {precision} seed {seed}: {errors}")
        assert not within_tolerance(errors), f"{errors} vs {MIXED_PRECISION_TOLERANCE}"


@pytest.mark.parametrize("outer", [False, True], ids=["alone", "inside-a-disabled-region"])
def test_autocast_regions_see_the_weights_an_optimizer_step_wrote(outer):
    """The training loops run their bf16 regions inside a disabled autocast region. With autocast's weight-cast
    cache the bf16 copy of a weight lived until that outer region ended, so the forward after an optimizer step
    still used the old weights (bf16 runs of the attention baseline never learned)."""
    import contextlib

    from ramnet.precision import autocast

    lin = torch.nn.Linear(8, 8)
    x = torch.randn(4, 8)
    with torch.autocast("cpu", enabled=False) if outer else contextlib.nullcontext():
        with autocast(torch.device("cpu"), "bf16"):
            before = lin(x)
        with torch.no_grad():
            lin.weight.add_(1.0)
        with autocast(torch.device("cpu"), "bf16"):
            after = lin(x)
    expected = torch.nn.functional.linear(x.bfloat16(), lin.weight.bfloat16(), lin.bias.bfloat16())
    torch.testing.assert_close(after, expected)
    assert not torch.equal(before, after)


def test_bf16_sweep_run_learns_like_fp32():
    """A bf16 MQAR run of the attention baseline follows the fp32 run (it stayed at ln(V) with stale weights)."""
    from ramnet.sweep_run import run
    from ramnet.sweep_spec import check_spec, expand

    def losses(precision):
        spec = check_spec({"name": "p", "out": "/nonexistent", "steps": 60, "batch_size": 16, "lrs": [3e-3],
                           "warmup_steps": 5, "num_train": 64, "num_eval": 16, "eval_every": 20,
                           "settings": [[2, 16]], "vocab_size": 64, "precision": precision, "device": "cpu",
                           "models": [{"label": "attn", "model": "attention", "d_model": 32, "n_layers": 1,
                                       "n_heads": 2, "d_ff": 64}]})
        return [h["loss"] for h in run(expand(spec)[0])["history"]]

    fp32, bf16 = losses("fp32"), losses("bf16")
    assert fp32[-1] < 0.8 * fp32[0], fp32  # the recipe learns at all
    assert abs(bf16[-1] - fp32[-1]) < 0.1 * fp32[0], (fp32, bf16)
