"""Hugging Face integration (ramnet.hf), the model side: save/load, forward/loss, generate, padding, beam search
and the cache (the config side: test_hf_config.py). CPU, preset "tiny" (all heads CAPE in both layers), nothing
downloaded."""
import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import AutoModelForCausalLM, DynamicCache  # noqa: E402

from ramnet import RamNetConfig, RamNetForCausalLM  # noqa: E402
from ramnet.hf import RamNetHFCache, RamNetHFForCausalLM  # noqa: E402

from .hf_cases import CACHE_KW, PAD, cache_of, left_pad, make_model  # noqa: E402,F401


# ---- one implementation: native sharing, conversion, save/load -----------------------------------------------
def test_fresh_model_is_the_native_model():
    hf = make_model(seed=5, dtype=torch.float32)
    torch.manual_seed(5)
    native = RamNetForCausalLM(RamNetConfig.from_name("tiny"))
    for (k, a), (k2, b) in zip(hf.native.state_dict().items(), native.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert {id(p) for p in hf.parameters()} == {id(p) for p in hf.native.parameters()}
    ids = torch.randint(0, 128, (2, 9))
    torch.testing.assert_close(hf(ids).logits, native(ids), rtol=0, atol=0)


def test_from_native_shares_parameters_and_native_checkpoint_loads(tmp_path):
    from ramnet.checkpoint import write_model

    torch.manual_seed(1)
    native = RamNetForCausalLM(RamNetConfig.from_name("tiny", short_conv=True)).eval()
    hf = RamNetHFForCausalLM.from_native(native, eos_token_id=2)
    assert hf.native is native and hf.model.embed.weight is native.embed.weight
    assert hf.config.eos_token_id == 2 and hf.config.to_ramnet_config() == native.config
    assert not hf.training
    ids = torch.randint(0, 128, (2, 8))
    torch.testing.assert_close(hf(ids).logits, native(ids), rtol=0, atol=0)
    write_model(native, tmp_path)
    loaded = RamNetHFForCausalLM.from_native_checkpoint(tmp_path)
    torch.testing.assert_close(loaded(ids).logits, native(ids), rtol=0, atol=0)
    with pytest.raises(TypeError, match="RamNetForCausalLM"):
        RamNetHFForCausalLM.from_native(hf)


@pytest.mark.parametrize("tie", [False, True])
def test_save_pretrained_round_trip(tmp_path, tie):
    # CAPE masks [True, False] then [False, False]: loading must rebuild them (they are not in the checkpoint)
    model = make_model(seed=2, dtype=torch.float32, tie_embeddings=tie, short_conv=True, cape_prev_token_init=2.0,
                       cape_all_heads_layers=0, cape_half_heads_layers=1)
    with torch.no_grad():  # make every tensor distinct from its initial value, so that loading is what we test
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    expected = {f"model.{k}" for k in model.native.state_dict()}
    assert keys == (expected - {"model.lm_head.weight"} if tie else expected)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is RamNetHFForCausalLM
    assert (loaded.native.lm_head.weight is loaded.native.embed.weight) == tie
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    for i, block in enumerate(loaded.native.blocks):  # non-persistent: rebuilt from the config, not left empty
        assert block.mixer.cape.tolist() == loaded.native.config.cape_mask(i)
    ids = torch.randint(0, 128, (2, 10))
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_keys_missing_from_a_checkpoint_get_the_native_initialisation(tmp_path):
    from safetensors.torch import load_file, save_file

    from ramnet.layers import prev_token_address_bias

    model = make_model(seed=3, dtype=torch.float32, short_conv=True, alpha_init=0.3, cape_prev_token_init=2.0,
                       norm="rmsnorm")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # far from every initial value
    model.save_pretrained(tmp_path)
    weights = load_file(str(tmp_path / "model.safetensors"))
    missing = ["model.blocks.0.mixer.alpha", "model.blocks.0.mixer.q_bias", "model.blocks.1.mixer.conv.weight",
               "model.norm.weight", "model.blocks.1.mlp.down.weight"]
    save_file({k: v for k, v in weights.items() if k not in missing}, str(tmp_path / "model.safetensors"),
              metadata={"format": "pt"})
    loaded = RamNetHFForCausalLM.from_pretrained(tmp_path).native
    blocks = loaded.blocks
    assert torch.equal(blocks[0].mixer.alpha, torch.full((2,), 0.3))
    assert torch.equal(blocks[0].mixer.q_bias, prev_token_address_bias(loaded.config, [True, True])[0])
    assert torch.equal(blocks[0].mixer.k_bias, model.native.blocks[0].mixer.k_bias)  # loaded: kept
    assert blocks[1].mixer.conv.weight.abs().max() <= 4**-0.5 and blocks[1].mixer.conv.weight.std() > 0.1
    assert torch.equal(loaded.norm.weight, torch.ones(64))
    assert abs(blocks[1].mlp.down.weight.std().item() - 0.02) < 0.005
    assert torch.equal(blocks[1].mlp.gate_up.weight, model.native.blocks[1].mlp.gate_up.weight)


# ---- forward and loss ----------------------------------------------------------------------------------------
def test_forward_loss_is_shifted_cross_entropy():
    model = make_model(seed=3)
    ids = torch.randint(0, 128, (3, 11))
    labels = ids.clone()
    labels[0, 4] = labels[2, 7] = -100
    out = model(ids, labels=labels)
    ref = F.cross_entropy(out.logits[:, :-1].reshape(-1, 128), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, ref)
    assert cache_of(out) is None  # with labels, use_cache defaults to False (training)
    loss, logits = model(ids, labels=labels, return_dict=False)
    torch.testing.assert_close(loss, ref)
    out.loss.backward()
    assert model.native.blocks[0].mixer.q_proj.weight.grad.abs().sum() > 0


def test_chunked_forward_through_the_cache_equals_one_forward():
    model = make_model(seed=4, short_conv=True)
    ids = torch.randint(0, 128, (2, 17))
    full = model(ids, use_cache=False).logits
    out = model(ids[:, :6], use_cache=True)
    cache = cache_of(out)
    assert isinstance(cache, RamNetHFCache) and cache.get_seq_length() == 6 and cache.positions.tolist() == [6, 6]
    chunk = model(ids[:, 6:13], past_key_values=cache).logits
    steps = [model(ids[:, t:t + 1], past_key_values=cache).logits[:, 0] for t in range(13, 17)]
    torch.testing.assert_close(torch.cat([out.logits, chunk, torch.stack(steps, 1)], 1), full, rtol=1e-9, atol=1e-9)
    assert cache.get_seq_length() == 17 and cache.positions.tolist() == [17, 17]
    assert model(ids, logits_to_keep=2).logits.shape == (2, 2, 128)


def test_bad_inputs_raise_clear_errors():
    model = make_model()
    ids = torch.randint(0, 128, (2, 5))
    with pytest.raises(ValueError, match="input_ids only"):
        model(inputs_embeds=torch.zeros(2, 5, 64, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[0, vocab_size=128\)"):
        model(ids + 200)
    with pytest.raises(ValueError, match=r"int64 \(or int32\) tensor \[B, T\]"):
        model(ids[0])
    with pytest.raises(ValueError, match="not both"):
        model(ids, past_key_values=RamNetHFCache(2), cache=RamNetHFCache(2))
    dyn = DynamicCache()
    dyn.update(torch.zeros(2, 1, 3, 4), torch.zeros(2, 1, 3, 4), 0)
    with pytest.raises(TypeError, match="RamNetHFCache"):
        model(ids, past_key_values=dyn)
    with pytest.raises(ValueError, match="logits_to_keep"):
        model(ids, labels=ids, logits_to_keep=1)


# ---- padding --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [{}, {"short_conv": True}])
def test_left_padding_never_enters_the_state(overrides):
    model = make_model(seed=6, **overrides)
    assert all(model.native.config.cape_mask(i) == [True, True] for i in range(2))  # CAPE on every head
    rows = [[5, 9, 17, 3, 44, 2, 7], [11, 3], [8, 1, 99, 23]]
    ids, mask = left_pad(rows)
    out = model(ids, attention_mask=mask, use_cache=True)
    noisy = model(ids.masked_fill(mask == 0, 77), attention_mask=mask, use_cache=True)  # other pad ids: no effect
    torch.testing.assert_close(noisy.logits, out.logits, rtol=0, atol=0)
    cache = cache_of(out)
    assert cache.positions.tolist() == [7, 2, 4] and cache.get_seq_length() == 7
    for i, row in enumerate(rows):
        alone = model(torch.tensor([row]), use_cache=True)
        n = len(row)
        torch.testing.assert_close(out.logits[i, -n:], alone.logits[0], rtol=1e-10, atol=1e-10)
        assert not out.logits[i, :-n].any()  # pad positions: zero logits
        for layer, layer_alone in zip(cache.layer_states(), cache_of(alone).layer_states()):
            for t, t_alone in zip(layer, layer_alone):
                if t is not None:
                    torch.testing.assert_close(t[i], t_alone[0], rtol=1e-10, atol=1e-10)
    # a multi-token continuation runs each row from its own position
    more = torch.tensor([[3, 1, 4], [1, 5, 9], [2, 6, 5]])
    nxt = model(more, attention_mask=torch.cat([mask, torch.ones_like(more)], 1), past_key_values=cache).logits
    for i, row in enumerate(rows):
        alone = model(torch.tensor([row + more[i].tolist()])).logits[0, -3:]
        torch.testing.assert_close(nxt[i], alone, rtol=1e-10, atol=1e-10)
    assert cache.positions.tolist() == [10, 5, 7] and cache.get_seq_length() == 10
    # the loss skips labels predicted from a pad position
    labels = ids.masked_fill(mask == 0, -100)
    per_row = [F.cross_entropy(model(torch.tensor([r])).logits[0, :-1], torch.tensor(r[1:]), reduction="sum")
               for r in rows]
    torch.testing.assert_close(model(ids, attention_mask=mask, labels=labels).loss,
                               sum(per_row) / sum(len(r) - 1 for r in rows))


@pytest.mark.parametrize("overrides", [{}, {"short_conv": True}])
def test_left_padded_generate_equals_each_row_alone(overrides):
    model = make_model(seed=7, **overrides)
    rows = [[5, 9, 17, 3, 44, 2], [11, 3], [8, 1, 99, 23, 4]]
    ids, mask = left_pad(rows)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=PAD)
    for i, row in enumerate(rows):
        alone = model.generate(torch.tensor([row]), max_new_tokens=8, do_sample=False, pad_token_id=PAD)
        assert out[i, ids.shape[1]:].tolist() == alone[0, len(row):].tolist()


def test_bad_masks_are_rejected():
    model = make_model()
    ids = torch.randint(1, 128, (2, 5))
    bad = {
        "left padding": [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]],  # right padding
        "holes": [[0, 1, 0, 1, 1], [1, 1, 1, 1, 1]],
        "at least one real token": [[0, 0, 0, 0, 0], [1, 1, 1, 1, 1]],
        "only 0 and 1": [[2, 1, 1, 1, 1], [1, 1, 1, 1, 1]],
    }
    for message, rows in bad.items():
        with pytest.raises(ValueError, match=message):
            model(ids, attention_mask=torch.tensor(rows))
    with pytest.raises(ValueError, match="0/1 integer or bool"):
        model(ids, attention_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="columns"):
        model(ids, attention_mask=torch.ones(2, 4, dtype=torch.long))
    cache = cache_of(model(ids, use_cache=True))
    with pytest.raises(ValueError, match="hole"):  # padding after cached tokens
        model(ids[:, :2], past_key_values=cache, attention_mask=torch.tensor([[0, 1], [1, 1]]))


# ---- generate -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [{}, {"short_conv": True, "norm": "rmsnorm"}])
def test_greedy_generate_equals_native_generate(overrides):
    model = make_model(seed=8, **overrides)
    ids = torch.randint(0, 128, (3, 9))
    out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert torch.equal(out, model.native.generate(ids, 12))
    no_cache = model.generate(ids, max_new_tokens=12, do_sample=False, use_cache=False)
    assert torch.equal(no_cache, out)


def test_greedy_generate_with_eos_equals_native_generate():
    model = make_model(seed=13)
    ids = torch.randint(1, 128, (3, 6))
    free = model.native.generate(ids, 10)
    eos = int(free[1, 8])  # row 1 emits it early; the other rows may or may not
    out = model.generate(ids, max_new_tokens=10, do_sample=False, eos_token_id=eos, pad_token_id=PAD)
    assert torch.equal(out, model.native.generate(ids, 10, eos_token_id=eos, pad_token_id=PAD))
    assert (out[1, 9:] == PAD).all()


def test_sampling_generate_options():
    model = make_model(seed=9, dtype=torch.float32)
    ids = torch.randint(1, 128, (2, 5))

    def sample(seed, **kw):
        torch.manual_seed(seed)
        return model.generate(ids, do_sample=True, max_new_tokens=10, pad_token_id=PAD, **kw)

    a, b = sample(0, temperature=0.7, top_k=20, top_p=0.9), sample(0, temperature=0.7, top_k=20, top_p=0.9)
    assert a.shape == (2, 15) and torch.equal(a, b) and torch.equal(a[:, :5], ids)
    assert torch.equal(sample(1, top_k=1), model.generate(ids, max_new_tokens=10, do_sample=False))
    eos = int(a[0, 7])  # a token the first row samples: it stops there and is padded after
    c = sample(0, temperature=0.7, top_k=20, top_p=0.9, eos_token_id=eos)
    first = (c[0, 5:] == eos).nonzero()[0, 0].item() + 5
    assert torch.equal(c[0, :first + 1], a[0, :first + 1]) and (c[0, first + 1:] == PAD).all()


# ---- beam search and the cache -------------------------------------------------------------------------------
def test_cache_reorder_selects_rows():
    model = make_model(seed=10, short_conv=True)
    ids, mask = left_pad([[3, 4, 5, 6], [7, 8], [9, 10, 11]])
    cache = cache_of(model(ids, attention_mask=mask, use_cache=True))
    before = [tuple(t.clone() for t in layer) for layer in cache.layer_states()]
    beam_idx = torch.tensor([2, 0, 0])
    cache.reorder_cache(beam_idx)
    assert cache.positions.tolist() == [3, 4, 4] and cache.batch_size == 3
    for layer, old in zip(cache.layer_states(), before):
        for t, t_old in zip(layer, old):
            assert torch.equal(t, t_old[beam_idx])
    # decoding from the reordered cache equals decoding the reordered rows from scratch
    nxt = torch.tensor([[1], [2], [3]])
    got = model(nxt, past_key_values=cache).logits[:, 0]
    for i, row in enumerate([[9, 10, 11, 1], [3, 4, 5, 6, 2], [3, 4, 5, 6, 3]]):
        torch.testing.assert_close(got[i], model(torch.tensor([row])).logits[0, -1], rtol=1e-10, atol=1e-10)
    cache.batch_repeat_interleave(2)
    assert cache.positions.tolist() == [4, 4, 5, 5, 5, 5]
    cache.batch_select_indices(torch.tensor([0, 5]))
    assert cache.positions.tolist() == [4, 5] and cache.layer_states()[0][0].shape[0] == 2
    with pytest.raises(NotImplementedError, match="cropped"):
        cache.crop(2)
    assert all(cache.is_linear) and not cache.is_compileable


@pytest.mark.parametrize("num_beams", [2, 3])
def test_beam_search_with_cache_equals_without(num_beams):
    """Without a cache every step recomputes the whole beam, so no reorder is involved: equal outputs mean the
    cache's reorder is right."""
    model = make_model(seed=11, short_conv=True)
    ids, mask = left_pad([[5, 9, 17, 3, 44], [11, 3, 8]])
    kw = dict(attention_mask=mask, max_new_tokens=7, num_beams=num_beams, num_return_sequences=2, do_sample=False,
              pad_token_id=PAD)
    with_cache = model.generate(ids, **kw)
    assert with_cache.shape == (4, 12)
    assert torch.equal(with_cache, model.generate(ids, use_cache=False, **kw))


def test_generate_continues_a_user_cache():
    model = make_model(seed=12)
    ids = torch.randint(0, 128, (2, 6))
    full = model.generate(ids, max_new_tokens=6, do_sample=False)
    cache = RamNetHFCache(config=model.config)
    first = model.generate(ids, max_new_tokens=3, do_sample=False, **{CACHE_KW: cache})
    assert cache.get_seq_length() == 8  # the last sampled token is not in the cache yet
    again = model.generate(first, max_new_tokens=3, do_sample=False, **{CACHE_KW: cache})
    assert torch.equal(again, full)


def test_gradient_checkpointing_reaches_the_native_blocks():
    """transformers' switch (``activation_checkpointing_enable`` from 5.2x, ``gradient_checkpointing_enable``
    before) turns on the native per-block recompute: same loss and gradients, and off again."""
    import warnings

    model = make_model(seed=4).train()
    ids = torch.randint(0, 128, (2, 13))

    def loss_and_grads():
        model.zero_grad()
        out = model(ids, labels=ids)
        out.loss.backward()
        return out.loss.detach(), [p.grad.clone() for p in model.parameters()]

    plain_loss, plain_grads = loss_and_grads()
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        enable()
        assert model.native.activation_checkpointing
        ckpt_loss, ckpt_grads = loss_and_grads()
        disable()
    assert not model.native.activation_checkpointing
    torch.testing.assert_close(ckpt_loss, plain_loss, rtol=1e-12, atol=0)
    for got, want in zip(ckpt_grads, plain_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)
