"""``write_gate_conv``: the write gate's logit goes through the short conv with q/k/v, so that a token's gate can
depend on the tokens before it. It starts as the token-only gate, and decode, packed documents, compile,
checkpoints and the gate probes all see the conv'd gate."""
import json

import pytest
import torch

from ramnet import RamNetConfig, RamNetForCausalLM
from ramnet.analysis_gates import write_gates, writes_closed_from
from ramnet.checkpoint import load_checkpoint, write_model

from .test_model import assert_compiled_equals_eager

GATED = {"short_conv": True, "write_gate": True}


def _model(seed=0, conv=True, **overrides):
    """A ``tiny`` gated short-conv model; with ``conv`` its gate channels get random conv weights, so that the
    gate of a token depends on the tokens before it (at init they are the identity)."""
    torch.manual_seed(seed)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny", **GATED, write_gate_conv=conv, **overrides))
    if conv:
        with torch.no_grad():
            for block in model.blocks:
                weight = block.mixer.conv.weight
                weight[-model.config.n_heads:] = torch.randn(model.config.n_heads, weight.shape[1])
    return model


def test_the_config_needs_the_gate_and_the_conv_and_counts_the_channels():
    config = RamNetConfig.from_name("tiny", **GATED, write_gate_conv=True)
    plain = RamNetConfig.from_name("tiny", **GATED)
    assert config.conv_channels == plain.conv_channels + config.n_heads
    assert plain.conv_channels == plain.n_heads * (2 * plain.d_k + plain.d_v)
    for overrides in ({"short_conv": True}, {"write_gate": True}, {}):
        with pytest.raises(ValueError, match="write_gate_conv=True needs write_gate=True and short_conv=True"):
            RamNetConfig.from_name("tiny", write_gate_conv=True, **overrides)
    with pytest.raises(TypeError, match="write_gate_conv must be a bool"):
        RamNetConfig.from_name("tiny", **GATED, write_gate_conv=1)
    assert RamNetConfig.from_name("paper-340m").write_gate_conv is False


def test_it_starts_as_the_token_only_gate():
    """At init the gate channels are the identity: with the same other weights the model is the plain gated one."""
    torch.manual_seed(1)
    conv_gated = RamNetForCausalLM(RamNetConfig.from_name("tiny", **GATED, write_gate_conv=True)).eval()
    plain = RamNetForCausalLM(RamNetConfig.from_name("tiny", **GATED)).eval()
    state = conv_gated.state_dict()
    heads = conv_gated.config.n_heads
    plain.load_state_dict({k: v[:-heads] if k.endswith("conv.weight") else v for k, v in state.items()})
    ids = torch.randint(0, 128, (2, 11))
    start = conv_gated(ids)
    torch.testing.assert_close(start, plain(ids), rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the same model with random gate taps (every other weight kept) is another model
        conv_gated.blocks[0].mixer.conv.weight[-heads:].normal_()
    assert not torch.allclose(conv_gated(ids), start)


def test_the_first_layers_gate_sees_the_tokens_before_it_and_not_after():
    ids = torch.randint(0, 128, (1, 12), generator=torch.Generator().manual_seed(2))
    changed = ids.clone()
    changed[0, 5] = (changed[0, 5] + 1) % 128
    for conv, moved in ((True, [5, 6, 7, 8]), (False, [5])):  # kernel 4: the token and the three after it
        model = _model(conv=conv)
        before, after = write_gates(model, ids)[0], write_gates(model, changed)[0]
        differs = [t for t in range(12) if not torch.allclose(before[0, t], after[0, t])]
        assert differs == moved, (conv, differs)


def assert_decode_equals_the_full_forward(model, functional):
    """Prefill 5 tokens, then decode 8 one at a time (in place, or functional): each step's logits equal the full
    forward's at that position (float64), and the conv cache keeps the window's last 3 inputs."""
    model = model.double().eval()
    ids = torch.randint(0, 128, (2, 13))
    full = model(ids)
    logits, cache = model.prefill(ids[:, :5])
    torch.testing.assert_close(logits, full[:, :5], rtol=1e-10, atol=1e-10)
    assert cache.layers[0][2].shape == (2, 3, model.config.conv_channels)
    states = [tuple(t.clone() for t in layer) for layer in cache.layers]
    with torch.no_grad():
        for t in range(5, 13):
            if functional:
                got, states = model.decode_functional(ids[:, t], states, torch.full((2,), t))
            else:
                got = model.decode_step(ids[:, t], cache)
            torch.testing.assert_close(got, full[:, t], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("functional", [False, True])
def test_decode_equals_the_full_forward(functional):
    assert_decode_equals_the_full_forward(_model(3), functional)


def test_packed_documents_equal_separate_runs_and_the_gate_channels_learn():
    model = _model(4).double()
    docs = [torch.randint(0, 128, (1, n), generator=torch.Generator().manual_seed(n)) for n in (5, 2, 7)]
    cu = torch.tensor([0, 5, 7, 14])
    packed = model(torch.cat(docs, 1), cu_seqlens=cu)
    torch.testing.assert_close(packed, torch.cat([model(d) for d in docs], 1), rtol=1e-10, atol=1e-10)
    packed.square().sum().backward()
    heads = model.config.n_heads
    for block in model.blocks:
        assert block.mixer.conv.weight.grad[-heads:].abs().sum() > 0
        assert block.mixer.gate_proj.weight.grad.abs().sum() > 0


def test_compile_fullgraph_forward_backward_equals_eager():
    assert_compiled_equals_eager(_model(5), torch.randint(0, 128, (2, 12)))


def assert_checkpoint_round_trips_and_an_older_one_loads(model, plain, field, off, tmp_path):
    """``model`` survives ``write_model`` / ``load_checkpoint``; a checkpoint of ``plain`` (the feature off) whose
    config lacks ``field``, as one written before the field existed, loads with ``field == off`` and the same
    outputs."""
    model, plain = model.eval(), plain.eval()
    write_model(model, tmp_path / "new")
    ids = torch.randint(0, 128, (2, 9))
    loaded = load_checkpoint(tmp_path / "new")
    assert loaded.config == model.config and getattr(loaded.config, field) != off
    torch.testing.assert_close(loaded(ids), model(ids))
    write_model(plain, tmp_path / "older")
    config = json.loads((tmp_path / "older" / "config.json").read_text())
    del config[field]
    (tmp_path / "older" / "config.json").write_text(json.dumps(config))
    older = load_checkpoint(tmp_path / "older")
    assert getattr(older.config, field) == off
    torch.testing.assert_close(older(ids), plain(ids))


def test_a_checkpoint_round_trips_and_an_older_one_loads_without_the_field(tmp_path):
    assert_checkpoint_round_trips_and_an_older_one_loads(_model(6), _model(6, conv=False), "write_gate_conv", False,
                                                         tmp_path)


def test_the_gate_probes_see_the_gate_the_memory_gets(monkeypatch):
    """``write_gates`` gives, in every layer, the gate that the forward pass hands to the memory op, and shutting
    writes through the probes is the same as handing the op a gate zeroed by hand."""
    import ramnet.layers

    model = _model(7).eval()
    ids = torch.randint(0, 128, (2, 10))
    op = ramnet.layers.ram_attention
    handed, zero_from = [], [None]

    def recording(*args, write_gate=None, **kwargs):
        if zero_from[0] is not None:
            write_gate = write_gate.clone()
            write_gate[:, zero_from[0]:] = 0
        handed.append(write_gate.detach().float().clone())
        return op(*args, write_gate=write_gate, **kwargs)

    monkeypatch.setattr(ramnet.layers, "ram_attention", recording)
    with torch.no_grad():
        plain = model(ids)
    handed_in_the_pass = list(handed)  # write_gates runs the blocks too
    gates = write_gates(model, ids)
    assert len(handed_in_the_pass) == len(gates) == 2
    for got, want in zip(gates, handed_in_the_pass):
        torch.testing.assert_close(got, want)
    mixer = model.blocks[0].mixer
    with torch.no_grad():  # the conv'd gate, not the token's own
        assert not torch.allclose(gates[0], torch.sigmoid(mixer.gate_proj(model.blocks[0].mixer_norm(
            model.embed(ids))).float()))
    with writes_closed_from(model, 4):
        closed = write_gates(model, ids)
        with torch.no_grad():
            probed = model(ids)
    assert all(not g[:, 4:].any() for g in closed)
    torch.testing.assert_close(closed[0][:, :4], gates[0][:, :4])
    zero_from[0] = 4
    with torch.no_grad():
        by_hand = model(ids)
    torch.testing.assert_close(probed, by_hand)
    assert not torch.allclose(probed[:, 4:], plain[:, 4:])  # the shut writes mattered


def test_decode_under_bf16_autocast_follows_the_full_pass():
    model = _model(8).eval()
    ids = torch.randint(0, 128, (2, 9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        full = model(ids).float()
        logits, cache = model.prefill(ids[:, :5])
        steps = [model.decode_step(ids[:, t], cache).float() for t in range(5, 9)]
    torch.testing.assert_close(logits.float(), full[:, :5], rtol=0.05, atol=0.05)
    torch.testing.assert_close(torch.stack(steps, 1), full[:, 5:], rtol=0.05, atol=0.05)


def test_the_hugging_face_model_keeps_the_identity_start():
    pytest.importorskip("transformers")
    from ramnet.hf import RamNetHFConfig, RamNetHFForCausalLM

    config = RamNetHFConfig.from_ramnet_config(RamNetConfig.from_name("tiny", **GATED, write_gate_conv=True))
    model = RamNetHFForCausalLM(config)
    heads = config.n_heads
    for block in model.model.blocks:
        conv = block.mixer.conv
        identity = torch.zeros(heads, conv.kernel)
        identity[:, -1] = 1
        torch.testing.assert_close(conv.weight[-heads:].detach(), identity)
        with torch.no_grad():
            conv.weight.normal_()
        model._init_weights(conv)  # what transformers runs on a weight a checkpoint lacks
        torch.testing.assert_close(conv.weight[-heads:].detach(), identity)
        assert conv.weight[:-heads].abs().max() <= conv.kernel ** -0.5  # the q/k/v taps: the uniform start
