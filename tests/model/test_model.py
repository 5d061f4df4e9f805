"""Config presets, accounting, parameter count, decode cache == full forward, compile == eager."""
import pytest
import torch

import ramnet
from ramnet import RamNetConfig, RamNetForCausalLM, state_accounting


def test_paper_state_accounting_matches_table_2():
    assert state_accounting(RamNetConfig.from_name("paper-340m")) == {"total": 28_753_920, "active_per_token": 449_280}


def test_paper_parameter_count_without_input_embeddings():
    with torch.device("meta"):
        model = RamNetForCausalLM(RamNetConfig.from_name("paper-340m"))
    assert abs(model.num_parameters(exclude_embeddings=True) - 340.8e6) <= 0.1e6


@pytest.mark.parametrize("name", sorted(ramnet.PRESETS))
def test_config_round_trip(name):
    c = RamNetConfig.from_name(name)
    assert RamNetConfig.from_dict(c.to_dict()) == c
    assert c.to_dict()["version"] == 1


def test_config_rejects_bad_fields():
    with pytest.raises(ValueError, match="top_k must be in"):
        RamNetConfig.from_name("tiny", top_k=65)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        RamNetConfig.from_name("tiny", gamma=-1.0)
    with pytest.raises(ValueError, match="unknown RamNetConfig fields"):
        RamNetConfig.from_dict({"nope": 1})
    with pytest.raises(ValueError, match="unknown preset"):
        RamNetConfig.from_name("huge")
    with pytest.raises(ValueError, match="version"):
        RamNetConfig.from_name("tiny", version=99)


def test_paper_cape_schedule():
    c = RamNetConfig.from_name("paper-340m")
    assert all(c.cape_mask(i) == [True] * 16 for i in range(4))
    assert all(c.cape_mask(i) == [True] * 8 + [False] * 8 for i in range(4, 8))
    assert all(not any(c.cape_mask(i)) for i in range(8, 27))


@pytest.mark.parametrize("name,overrides", [("tiny", {}), ("mqar-tiny", {}), ("tiny", {"norm": "rmsnorm", "gamma": 0.5}),
                                            ("mqar-tiny", {"write_gate": True, "short_conv": True})])
def test_decode_cache_equals_full_forward(name, overrides):
    torch.manual_seed(0)
    model = RamNetForCausalLM(RamNetConfig.from_name(name, **overrides)).double().eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 21))
    full = model(ids)
    logits, cache = model.prefill(ids[:, :9])
    torch.testing.assert_close(logits, full[:, :9], rtol=1e-10, atol=1e-10)
    for t in range(9, 21):
        torch.testing.assert_close(model.decode_step(ids[:, t], cache), full[:, t], rtol=1e-10, atol=1e-10)
    assert cache.position == 21


def test_generate_equals_rerunning_the_full_sequence():
    torch.manual_seed(1)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny")).eval()
    prompt = torch.randint(0, 128, (3, 7))
    out = model.generate(prompt, 10)
    assert out.shape == (3, 17) and torch.equal(out[:, :7], prompt)
    for t in range(7, 17):  # each greedy token is the argmax of a fresh full forward over its prefix
        assert torch.equal(out[:, t], model(out[:, :t])[:, -1].argmax(-1))


def test_chunked_prefill_continues_the_cache():
    torch.manual_seed(2)
    model = RamNetForCausalLM(RamNetConfig.from_name("mqar-tiny")).double().eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 30))
    _, cache = model.prefill(ids[:, :11])
    logits, cache = model.prefill(ids[:, 11:], cache)
    torch.testing.assert_close(logits, model(ids)[:, 11:], rtol=1e-10, atol=1e-10)


def assert_compiled_equals_eager(model, ids):
    """``torch.compile(model, fullgraph=True)`` gives eager's loss and every parameter's gradient."""
    def loss_and_grads(fn):
        model.zero_grad()
        loss = fn(ids).float().square().mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss_e, grads_e = loss_and_grads(model)
    loss_c, grads_c = loss_and_grads(torch.compile(model, fullgraph=True))
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_c, grads_e):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("write_gate", [False, True])
def test_compile_fullgraph_model_forward_backward_equals_eager(write_gate):
    torch.manual_seed(3)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny", short_conv=True, write_gate=write_gate))
    assert_compiled_equals_eager(model, torch.randint(0, 128, (2, 12)))


def test_bad_model_inputs():
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny"))
    with pytest.raises(ValueError, match="input_ids must have shape"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(torch.zeros(1, 3, dtype=torch.long), -1)


def test_cape_prev_token_init_makes_a_previous_token_head():
    """With content-free q/k, a CAPE head initialised by cape_prev_token_init reads exactly the previous token."""
    cfg = RamNetConfig.from_name("tiny", top_k=1, cape_prev_token_init=30.0, n_layers=1)
    mixer = ramnet.RamNetMixer(cfg, layer_idx=0).double()
    with torch.no_grad():
        mixer.q_proj.weight.zero_()
        mixer.k_proj.weight.zero_()
    x = torch.randn(2, 9, cfg.d_model, dtype=torch.float64)
    q, k, v, _, _ = mixer._qkv(x)
    o, _ = ramnet.ops.ram_attention(q, k, v, **mixer._op_kwargs())
    torch.testing.assert_close(o[:, 1:], v[:, :-1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(o[:, 0], torch.zeros_like(o[:, 0]))


def test_the_mqar_init_margin_copies_the_previous_token_with_content_in_q_and_k():
    """The margin the MQAR triage uses (4, docs/MQAR_PROBES.md) makes a previous-token copy at initialisation with the
    default random q/k projections (cosine 0.996 to v[t-1] here); a margin of 1 does not (0.49)."""
    def cosine_to_previous(margin):
        torch.manual_seed(0)
        cfg = RamNetConfig.from_name("mqar-tiny", short_conv=False, cape_all_heads_layers=1,
                                     cape_prev_token_init=margin)
        mixer = ramnet.RamNetMixer(cfg, layer_idx=0)
        q, k, v, _, _ = mixer._qkv(torch.randn(1, 32, cfg.d_model))
        o, _ = ramnet.ops.ram_attention(q, k, v, **mixer._op_kwargs())
        return torch.nn.functional.cosine_similarity(o[0, 1:], v[0, :-1], dim=-1).mean().item()

    assert cosine_to_previous(4.0) > 0.99
    assert cosine_to_previous(1.0) < 0.9


def test_paper_preset_has_no_address_bias():
    mixer = ramnet.RamNetMixer(RamNetConfig.from_name("tiny"), layer_idx=0)
    assert mixer.q_bias is None and mixer.k_bias is None


@pytest.mark.parametrize("write_gate", [False, True])
def test_functional_decode_equals_in_place_decode(write_gate):
    torch.manual_seed(4)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny", short_conv=True, write_gate=write_gate)).double().eval()
    ids = torch.randint(0, 128, (2, 12))
    _, cache = model.prefill(ids[:, :6])
    states = [tuple(None if t is None else t.clone() for t in layer) for layer in cache.layers]
    with torch.no_grad():
        for t in range(6, 12):
            ref = model.decode_step(ids[:, t], cache)
            got, states = model.decode_functional(ids[:, t], states, torch.full((2,), t))
            torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    for (S, z, c), (S2, z2, c2) in zip(states, cache.layers):
        torch.testing.assert_close(S, S2, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(c, c2, rtol=1e-10, atol=1e-10)


def test_config_refuses_a_tau_the_ops_would_refuse():
    from ramnet.ops.checks import MIN_TAU

    with pytest.raises(ValueError, match="tau >= "):
        RamNetConfig.from_name("tiny", tau=MIN_TAU / 10)
    assert RamNetConfig.from_name("tiny", tau=MIN_TAU).tau == MIN_TAU


def test_paper_preset_pins_every_field():
    """The paper model must not move when a default changes: its preset names every field but the bookkeeping."""
    import dataclasses

    from ramnet.config import PRESETS

    pinned = set(PRESETS["paper-340m"])
    fields = {f.name for f in dataclasses.fields(RamNetConfig)} - {"version", "name"}
    assert pinned == fields
    assert RamNetConfig(**PRESETS["paper-340m"]) == RamNetConfig.from_name("paper-340m")


def test_the_write_gate_is_trained_and_off_in_the_paper():
    """``write_gate=True`` adds one ``[H, d_model]`` projection per layer whose weight gets a gradient; the paper
    preset pins it off."""
    torch.manual_seed(5)
    config = RamNetConfig.from_name("tiny", write_gate=True)
    model = RamNetForCausalLM(config)
    plain = RamNetForCausalLM(RamNetConfig.from_name("tiny"))
    gates = [m.mixer.gate_proj for m in model.blocks]
    assert all(g.weight.shape == (config.n_heads, config.d_model) for g in gates)
    assert sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in plain.parameters()) == \
        config.n_layers * config.n_heads * config.d_model
    model(torch.randint(0, 128, (2, 10))).square().mean().backward()
    assert all(g.weight.grad is not None and g.weight.grad.abs().sum() > 0 for g in gates)
    assert RamNetConfig.from_name("paper-340m").write_gate is False
    with pytest.raises(TypeError, match="write_gate must be a bool"):
        RamNetConfig.from_name("tiny", write_gate=1)


def test_the_write_gate_offset_shifts_the_gate_logit_and_adds_no_parameter():
    """``write_gate_offset=b`` makes the gate ``sigmoid(x W_g + b)``: with ``W_g = 0`` every gate is exactly
    ``sigmoid(b)``; the parameters are those of the offset-free gated model, whose outputs it changes. It needs the
    gate, must be finite, and the paper preset pins it at 0."""
    torch.manual_seed(7)
    shifted_config = RamNetConfig.from_name("tiny", write_gate=True, write_gate_offset=2.0)
    shifted = RamNetForCausalLM(shifted_config)
    plain = RamNetForCausalLM(RamNetConfig.from_name("tiny", write_gate=True))
    plain.load_state_dict(shifted.state_dict())  # strict: the same parameter names and shapes
    ids = torch.randint(0, 128, (2, 9))
    assert not torch.allclose(shifted(ids), plain(ids))
    x = torch.randn(2, 9, shifted_config.d_model)
    mixer, plain_mixer = shifted.blocks[0].mixer, plain.blocks[0].mixer
    torch.testing.assert_close(mixer._gate(x), torch.sigmoid(plain_mixer.gate_proj(x) + 2.0))
    with torch.no_grad():
        mixer.gate_proj.weight.zero_()
    torch.testing.assert_close(mixer._gate(x), torch.full((2, 9, shifted_config.n_heads), torch.sigmoid(
        torch.tensor(2.0)).item()))
    assert RamNetConfig.from_name("paper-340m").write_gate_offset == 0.0
    with pytest.raises(ValueError, match="write_gate_offset=2.0 needs write_gate=True"):
        RamNetConfig.from_name("tiny", write_gate_offset=2.0)
    with pytest.raises(ValueError, match="write_gate_offset must be a finite number"):
        RamNetConfig.from_name("tiny", write_gate=True, write_gate_offset=float("nan"))


def test_a_checkpoint_written_before_write_gate_existed_loads_without_it(tmp_path):
    """Configs of older checkpoints lack ``write_gate`` and ``write_gate_offset``: they load with the gate off; a
    config lacking any other field is still refused (it would silently take the 340M defaults)."""
    import json

    from ramnet.checkpoint import load_checkpoint, write_model

    torch.manual_seed(6)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny")).eval()
    write_model(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["write_gate"], config["write_gate_offset"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load_checkpoint(tmp_path)
    assert loaded.config.write_gate is False and loaded.config.write_gate_offset == 0.0
    ids = torch.randint(0, 128, (2, 7))
    torch.testing.assert_close(loaded(ids), model(ids))
    del config["d_v"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"lacks the fields \['d_v'\]"):
        load_checkpoint(tmp_path)
