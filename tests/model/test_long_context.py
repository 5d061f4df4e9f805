"""Long-context training pieces: the chunked cross-entropy (never the full logits) and per-block activation
checkpointing. Both must give the plain model's loss and gradients while keeping less for the backward."""
import pytest
import torch
import torch.nn.functional as F

from ramnet import RamNetConfig, RamNetForCausalLM
from ramnet.losses import chunked_cross_entropy


def _saved_numels(fn):
    """Numels of the tensors autograd saves (outside checkpointed regions) while ``fn`` runs; and its result."""
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sizes


def _problem(N=37, D=12, V=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, D, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(V, D, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, V, (N,), generator=g)
    targets[::5] = -100
    return hidden, weight, targets


@pytest.mark.parametrize("chunk_size", [1, 7, 36, 37, 100])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_chunked_equals_full_cross_entropy(chunk_size, reduction):
    hidden, weight, targets = _problem()
    full = F.cross_entropy(hidden @ weight.T, targets, reduction=reduction)
    gh, gw = torch.autograd.grad(full, (hidden, weight))
    got = chunked_cross_entropy(hidden, weight, targets, chunk_size=chunk_size, reduction=reduction)
    ch, cw = torch.autograd.grad(got, (hidden, weight))
    torch.testing.assert_close(got, full, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ch, gh, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(cw, gw, rtol=1e-10, atol=1e-12)


def test_chunked_cross_entropy_never_saves_the_full_logits():
    hidden, weight, targets = _problem(N=64, V=50)
    _, plain = _saved_numels(lambda: F.cross_entropy(hidden @ weight.T, targets))
    _, chunked = _saved_numels(lambda: chunked_cross_entropy(hidden, weight, targets, chunk_size=16))
    assert max(plain) >= 64 * 50  # the plain loss keeps [N, V] logits for its backward
    assert max(chunked) < 16 * 50 + 1  # the chunked one keeps its inputs, never a logits block


def test_chunked_cross_entropy_leading_dims_and_no_grad():
    hidden, weight, targets = _problem(N=24)
    with torch.no_grad():
        got = chunked_cross_entropy(hidden.view(2, 12, -1), weight, targets.view(2, 12), chunk_size=5)
    torch.testing.assert_close(got, F.cross_entropy(hidden @ weight.T, targets).detach())


@pytest.mark.parametrize("kwargs, match", [
    (dict(chunk_size=0), "chunk_size must be an int >= 1"),
    (dict(chunk_size=True), "chunk_size must be an int >= 1"),
    (dict(reduction="none"), "reduction must be 'mean' or 'sum'"),
])
def test_chunked_cross_entropy_refuses_bad_options(kwargs, match):
    hidden, weight, targets = _problem()
    with pytest.raises(ValueError, match=match):
        chunked_cross_entropy(hidden, weight, targets, **kwargs)


def test_chunked_cross_entropy_refuses_bad_tensors():
    hidden, weight, targets = _problem()
    with pytest.raises(ValueError, match="weight must be"):
        chunked_cross_entropy(hidden, weight[:, :5], targets)
    with pytest.raises(ValueError, match="targets must have"):
        chunked_cross_entropy(hidden, weight, targets[:3])
    with pytest.raises(TypeError, match="targets must be int64"):
        chunked_cross_entropy(hidden, weight, targets.int())
    with pytest.raises(TypeError, match=r"hidden \(torch.float32\) and weight \(torch.float64\) must share"):
        chunked_cross_entropy(hidden.float(), weight, targets)


def _model():
    torch.manual_seed(0)
    config = RamNetConfig.from_name("tiny", n_layers=3, short_conv=True)
    return RamNetForCausalLM(config).double()


def _loss_and_grads(model, ids, **kwargs):
    model.zero_grad()
    loss = model.loss(ids[:, :-1], ids[:, 1:], **kwargs)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def test_activation_checkpointing_gives_the_same_loss_and_gradients_with_less_saved():
    model = _model().train()
    ids = torch.randint(0, model.config.vocab_size, (2, 33))
    (plain_loss, plain_grads), plain_saved = _saved_numels(lambda: _loss_and_grads(model, ids))
    model.set_activation_checkpointing(True)
    (ac_loss, ac_grads), ac_saved = _saved_numels(lambda: _loss_and_grads(model, ids))
    torch.testing.assert_close(ac_loss, plain_loss, rtol=1e-10, atol=0)
    for got, want in zip(ac_grads, plain_grads):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-12)
    assert sum(ac_saved) < sum(plain_saved) / 2


def test_activation_checkpointing_is_off_in_eval_and_refuses_non_bools():
    model = _model().set_activation_checkpointing(True).eval()
    ids = torch.randint(0, model.config.vocab_size, (1, 9))
    _, saved = _saved_numels(lambda: model.loss(ids[:, :-1], ids[:, 1:]))
    _, plain = _saved_numels(lambda: model.set_activation_checkpointing(False).loss(ids[:, :-1], ids[:, 1:]))
    assert sum(saved) == sum(plain)
    with pytest.raises(TypeError, match="enabled must be a bool"):
        model.set_activation_checkpointing(1)


def test_model_loss_chunked_equals_full_and_checks_targets():
    model = _model().train()
    ids = torch.randint(0, model.config.vocab_size, (2, 17))
    full, full_grads = _loss_and_grads(model, ids)
    chunked, chunked_grads = _loss_and_grads(model, ids, chunk_size=5)
    torch.testing.assert_close(chunked, full, rtol=1e-10, atol=1e-12)
    for got, want in zip(chunked_grads, full_grads):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-12)
    with pytest.raises(ValueError, match="targets must have input_ids' shape"):
        model.loss(ids[:, :-1], ids)
