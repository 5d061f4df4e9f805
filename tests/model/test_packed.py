"""Packed documents (``cu_seqlens``) through the model: each document behaves as if it ran alone, with its own
empty memory, short conv and CAPE positions, in the forward and the backward."""
import pytest
import torch

from ramnet import RamNetConfig, RamNetForCausalLM

LENGTHS = [5, 1, 9, 3]


def _model(**overrides):
    torch.manual_seed(0)
    config = RamNetConfig.from_name("tiny", **{"short_conv": True, "cape_all_heads_layers": 1,
                                               "cape_half_heads_layers": 1, **overrides})
    return RamNetForCausalLM(config).double()


@pytest.mark.parametrize("short_conv", [True, False])
def test_packed_documents_equal_separate_runs(short_conv):
    model = _model(short_conv=short_conv)
    docs = [torch.randint(0, 128, (1, n), generator=torch.Generator().manual_seed(n)) for n in LENGTHS]
    cu = torch.tensor([0, *torch.tensor(LENGTHS).cumsum(0).tolist()])
    packed = model(torch.cat(docs, 1), cu_seqlens=cu)
    separate = torch.cat([model(d) for d in docs], 1)
    torch.testing.assert_close(packed, separate, rtol=1e-10, atol=1e-10)
    # without the boundaries the later documents see the earlier ones: the test can tell them apart
    assert not torch.allclose(model(torch.cat(docs, 1)), separate)


def test_packed_gradients_equal_separate_runs():
    model = _model()
    docs = [torch.randint(0, 128, (1, n), generator=torch.Generator().manual_seed(10 + n)) for n in LENGTHS]
    cu = torch.tensor([0, *torch.tensor(LENGTHS).cumsum(0).tolist()])
    model.zero_grad()
    model(torch.cat(docs, 1), cu_seqlens=cu).square().sum().backward()
    packed = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    sum(model(d).square().sum() for d in docs).backward()
    for got, want in zip(packed, [p.grad for p in model.parameters()]):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_packed_loss_with_checkpointing_and_chunks():
    model = _model().train()
    ids = torch.randint(0, 128, (1, 18))
    cu = torch.tensor([0, 5, 18])
    targets = ids.roll(-1, 1)
    targets[0, [4, 17]] = -100  # no document predicts the next one's first token
    plain = model.loss(ids, targets, cu_seqlens=cu)
    model.set_activation_checkpointing(True)
    torch.testing.assert_close(model.loss(ids, targets, cu_seqlens=cu, chunk_size=7), plain, rtol=1e-10, atol=0)


def test_packed_refuses_states_offsets_and_batches():
    model = _model()
    ids = torch.randint(0, 128, (1, 6))
    cu = torch.tensor([0, 2, 6])
    with pytest.raises(ValueError, match="cannot be combined with states, return_states or an offset"):
        model(ids, cu_seqlens=cu, offset=3)
    with pytest.raises(ValueError, match="cannot be combined"):
        model(ids, cu_seqlens=cu, return_states=True)
    with pytest.raises(ValueError, match="cu_seqlens needs q, k, v packed with batch size 1"):
        model(ids.repeat(2, 1), cu_seqlens=cu)
    with pytest.raises(ValueError, match="non-decreasing from 0 to T=6"):
        model(ids, cu_seqlens=torch.tensor([0, 2, 5]))
