"""``write_gate_conv_kernel``: the write gate's conv channels get a kernel of their own, so that the gate can see
further back (or less far) than q/k/v. The conv's window is the longer kernel; each channel's taps beyond its own
kernel are held at 0 by a fixed mask, and decode, packed documents, compile, checkpoints and export follow."""

import pytest
import torch

from ramnet import RamNetConfig, RamNetForCausalLM
from ramnet.analysis_gates import write_gates
from ramnet.layers import ShortConv

from .test_model import assert_compiled_equals_eager
from .test_write_gate_conv import (GATED, _model, assert_checkpoint_round_trips_and_an_older_one_loads,
                                   assert_decode_equals_the_full_forward)

KERNELS = {"short_conv_kernel": 2, "write_gate_conv_kernel": 4}


def _mixed(seed=0, **overrides):
    """A ``tiny`` gated model with q/k/v kernel 2 and gate kernel 4 (window 4), random gate taps."""
    return _model(seed, **{**KERNELS, **overrides})


def _random_dead_taps(model):
    """Every tap random, the masked ones included, as an arbitrary loaded state dict might hold them: a loader or
    exporter that used the raw weight instead of the masked one would then change the outputs."""
    with torch.no_grad():
        for block in model.blocks:
            block.mixer.conv.weight.normal_(std=0.5)
    return model


def _first_layer_changes(model, ids, changed):
    """Positions where the first layer's write gate, and where its q, k and v, differ between two inputs."""
    def first_layer(input_ids):
        block = model.blocks[0]
        with torch.no_grad():
            q, k, v, _, _ = block.mixer._qkv(block.mixer_norm(model.embed(input_ids)))
        return write_gates(model, input_ids)[0], q, k, v

    moved = []
    for a, b in zip(first_layer(ids), first_layer(changed)):
        moved.append([t for t in range(ids.shape[1]) if not torch.allclose(a[0, t], b[0, t])])
    return moved[0], moved[1:]


def test_the_config_field_validates_and_sets_the_window():
    config = RamNetConfig.from_name("tiny", **GATED, write_gate_conv=True, **KERNELS)
    assert config.conv_window == 4 and config.conv_channels == RamNetConfig.from_name(
        "tiny", **GATED, write_gate_conv=True).conv_channels
    assert RamNetConfig().write_gate_conv_kernel == 0
    assert RamNetConfig.from_name("paper-340m").write_gate_conv_kernel == 0
    same = RamNetConfig.from_name("tiny", **GATED, write_gate_conv=True, short_conv_kernel=3)
    assert same.conv_window == 3
    shorter = RamNetConfig.from_name("tiny", **GATED, write_gate_conv=True, short_conv_kernel=4,
                                     write_gate_conv_kernel=2)
    assert shorter.conv_window == 4
    assert RamNetConfig.from_name("tiny", short_conv=True, short_conv_kernel=3).conv_window == 3
    for overrides in ({**GATED}, {}):
        with pytest.raises(ValueError, match="write_gate_conv_kernel=4 needs write_gate_conv=True"):
            RamNetConfig.from_name("tiny", **overrides, write_gate_conv_kernel=4)
    for bad in (-1, True, 1.5, "4"):
        with pytest.raises(ValueError, match="write_gate_conv_kernel must be an int >= 0"):
            RamNetConfig.from_name("tiny", **GATED, write_gate_conv=True, write_gate_conv_kernel=bad)
    assert RamNetConfig.parse_field("write_gate_conv_kernel", "4") == 4


@pytest.mark.parametrize("qkv_kernel, gate_kernel, gate_moves, qkv_moves", [
    (2, 4, [5, 6, 7, 8], [5, 6]),  # the gate sees 4 tokens, q/k/v 2
    (4, 2, [5, 6], [5, 6, 7, 8]),  # a gate kernel shorter than q/k/v's
    (2, 0, [5, 6], [5, 6]),        # 0: the gate shares q/k/v's kernel
])
def test_each_channel_group_sees_its_own_kernel(qkv_kernel, gate_kernel, gate_moves, qkv_moves):
    """Change the token at 5 of 12: the first layer's gate moves at the token and the ``gate_kernel - 1`` after
    it, its q, k and v at the ``short_conv_kernel - 1`` after it, even with every tap (the masked ones included)
    set to a random value, as a loaded state dict might hold."""
    ids = torch.randint(0, 128, (1, 12), generator=torch.Generator().manual_seed(2))
    changed = ids.clone()
    changed[0, 5] = (changed[0, 5] + 1) % 128
    model = _model(1, short_conv_kernel=qkv_kernel, write_gate_conv_kernel=gate_kernel)
    with torch.no_grad():
        for block in model.blocks:
            block.mixer.conv.weight.normal_()
    gate, qkv = _first_layer_changes(model, ids, changed)
    assert gate == gate_moves
    assert qkv == [qkv_moves] * 3


def test_the_masked_taps_start_at_zero_and_stay_there_under_adamw():
    model = _mixed(3)
    heads = model.config.n_heads
    conv = model.blocks[0].mixer.conv
    assert conv.kernel == 4 and conv.weight.shape == (model.config.conv_channels, 4)
    config = RamNetConfig.from_name("tiny", **GATED, write_gate_conv=True, **KERNELS)
    fresh = RamNetForCausalLM(config).blocks[0].mixer.conv
    assert torch.equal(fresh.weight[:-heads, :2], torch.zeros_like(fresh.weight[:-heads, :2]))
    assert fresh.weight[:-heads, 2:].abs().max() <= 2**-0.5  # the live q/k/v taps: nn.Conv1d's bound, kernel 2
    identity = torch.zeros(heads, 4)
    identity[:, -1] = 1
    torch.testing.assert_close(fresh.weight[-heads:].detach(), identity)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    ids = torch.randint(0, 128, (2, 10))
    cu = torch.tensor([0, 4, 10])
    start = [block.mixer.conv.weight.detach().clone() for block in model.blocks]
    for packed in (False, True):
        optimizer.zero_grad()
        out = model(ids[:1], cu_seqlens=cu) if packed else model(ids)
        out.square().mean().backward()
        optimizer.step()
    for block, before in zip(model.blocks, start):
        weight = block.mixer.conv.weight
        assert not weight[:-heads, :2].any() and not weight.grad[:-heads, :2].any()
        assert not torch.equal(weight[:-heads, 2:], before[:-heads, 2:])  # the live taps learn
        assert not torch.equal(weight[-heads:, :2], before[-heads:, :2])  # the gate's lags 2 and 3 too


def test_no_mask_buffer_in_a_state_dict_and_none_for_one_kernel():
    uniform, mixed = _model(0), _mixed(0)
    assert list(uniform.state_dict()) == list(mixed.state_dict())
    assert not any("mask" in name for name in mixed.state_dict())
    assert all(block.mixer.conv.tap_mask is None for block in uniform.blocks)
    assert not any("tap_mask" in name for name, _ in uniform.named_buffers())
    assert all(block.mixer.conv.tap_mask is not None for block in mixed.blocks)
    with pytest.raises(ValueError, match="identity_kernel needs identity_channels"):
        ShortConv(8, 2, identity_kernel=4)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="identity_kernel must be None or an int >= 1"):
            ShortConv(8, 2, identity_channels=2, identity_kernel=bad)


@pytest.mark.parametrize("identity_channels", [0, 3])
def test_one_kernel_is_the_plain_conv(identity_channels):
    """With one kernel (no identity_kernel, or the same one) the conv is a plain depthwise conv: a ``[dim, kernel]``
    weight drawn by one ``uniform_(-kernel ** -0.5, kernel ** -0.5)`` (so seeded models and the RNG stream after
    them are what they were), the identity channels set after, and no mask."""
    for identity_kernel in (None, 3):
        torch.manual_seed(11)
        conv = ShortConv(10, 3, identity_channels=identity_channels,
                         identity_kernel=identity_kernel if identity_channels else None)
        after = torch.rand(1)
        torch.manual_seed(11)
        expected = torch.empty(10, 3).uniform_(-3**-0.5, 3**-0.5)
        if identity_channels:
            expected[-identity_channels:] = torch.tensor([0.0, 0.0, 1.0])
        assert torch.equal(conv.weight, expected) and torch.equal(after, torch.rand(1))
        assert conv.kernel == 3 and conv.tap_mask is None


@pytest.mark.parametrize("functional", [False, True])
def test_decode_equals_the_full_forward_with_the_window_cache(functional):
    assert_decode_equals_the_full_forward(_mixed(4), functional)  # the window's cache: conv_window - 1 = 3 inputs


def test_decode_refuses_a_cache_of_the_qkv_kernel():
    model = _mixed(4).eval()
    _, cache = model.prefill(torch.randint(0, 128, (2, 5)))
    S, z, conv = cache.layers[1]
    cache.layers[1] = (S, z, conv[:, 2:].clone())  # short_conv_kernel - 1 = 1 input, not conv_window - 1 = 3
    with pytest.raises(ValueError, match="decode cache layer 1"):
        model.decode_step(torch.zeros(2, dtype=torch.long), cache)


def test_packed_documents_equal_separate_runs():
    model = _mixed(5).double()
    docs = [torch.randint(0, 128, (1, n), generator=torch.Generator().manual_seed(n)) for n in (5, 2, 7)]
    packed = model(torch.cat(docs, 1), cu_seqlens=torch.tensor([0, 5, 7, 14]))
    torch.testing.assert_close(packed, torch.cat([model(d) for d in docs], 1), rtol=1e-10, atol=1e-10)


def test_compile_fullgraph_forward_backward_equals_eager():
    assert_compiled_equals_eager(_mixed(6), torch.randint(0, 128, (2, 12)))


def test_a_checkpoint_round_trips_and_an_older_one_loads_with_0(tmp_path):
    assert_checkpoint_round_trips_and_an_older_one_loads(_random_dead_taps(_mixed(7)), _model(7), "write_gate_conv_kernel", 0, tmp_path)


def test_the_hugging_face_model_round_trips_the_gate_taps_and_the_mask(tmp_path):
    """transformers re-initialises a module with a non-persistent buffer after loading: the mask gets its value
    back and the loaded taps stay."""
    pytest.importorskip("transformers")
    from ramnet.hf import RamNetHFConfig, RamNetHFForCausalLM

    model = _random_dead_taps(_mixed(8)).eval()
    assert RamNetHFConfig.from_ramnet_config(model.config).to_ramnet_config() == model.config
    RamNetHFForCausalLM.from_native(model).save_pretrained(tmp_path)
    loaded = RamNetHFForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.config.write_gate_conv_kernel == 4
    for ours, theirs in zip(model.blocks, loaded.model.blocks):
        assert torch.equal(ours.mixer.conv.weight, theirs.mixer.conv.weight)
        assert torch.equal(ours.mixer.conv.tap_mask, theirs.mixer.conv.tap_mask)
    ids = torch.randint(0, 128, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids))


def test_the_standard_onnx_decode_graph_carries_the_window_cache(tmp_path):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    import numpy as np

    from ramnet.export.onnx import example_states, state_names, to_onnx
    from ramnet.runtime.ort import run, session

    model = _random_dead_taps(_mixed(9)).eval()
    assert example_states(model, 3)[2].shape == (3, 3, model.config.conv_channels)
    path = to_onnx(model, tmp_path / "decode.onnx", flavor="standard", graph="decode")
    ids = torch.randint(0, 128, (3, 9))
    with torch.no_grad():
        full = model(ids)
        _, states = model(ids[:, :5], return_states=True)
    names = state_names(model.config)
    carried = {n: t.numpy() for n, t in zip(names, [t for layer in states for t in layer if t is not None])}
    sess = session(path, custom_ops=False)
    for t in range(5, 9):
        out = run(sess, {"token": ids[:, t].numpy(), "position": np.full(3, t, dtype=np.int64), **carried})
        np.testing.assert_allclose(out["logits"], full[:, t].numpy(), rtol=1e-4, atol=1e-5)
        carried = {n: out[n + "_out"] for n in names}
