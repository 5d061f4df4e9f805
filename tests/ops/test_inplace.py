"""In-place decode never half-applies: every argument and both state tensors are checked before the first write,
so ``S`` and ``z`` change together or not at all, and the model's decode cache (every layer, the conv cache and
the position) either advances whole or stays as it was."""
import pytest
import torch

import ramnet.ops as R
from ramnet import RamNetConfig, RamNetForCausalLM

U, K = 3, 4
M = 4**U


def _step_inputs(B=2, H=2, d_v=8):
    gen = torch.Generator().manual_seed(0)
    q, k = (torch.randn(B, H, U * 4, generator=gen) for _ in range(2))
    return q, k, torch.randn(B, H, d_v, generator=gen)


def _bad_states():
    """(label, S, z, position, message): each must be refused with S and z untouched."""
    S, z = R.initial_state(2, 2, M, 8)
    S.add_(0.5)
    with torch.inference_mode():
        S_inf, z_inf = R.initial_state(2, 2, M, 8)
    return [
        ("expanded z", S, z[:1].expand(2, 2, M), 0, "z must be contiguous"),
        ("expanded S", S[:1].expand(2, 2, M, 8), z, 0, "S must be contiguous"),
        ("transposed S", S.transpose(0, 1).contiguous().transpose(0, 1), z, 0, "S must be contiguous"),
        ("inference tensors", S_inf, z_inf, 0, "inference_mode"),
        ("S requires grad", S.clone().requires_grad_(), z, 0, "requires grad"),
        ("negative position tensor", S, z, torch.tensor([3, -1]), r"position values must be in \[0"),
        ("position overflow", S, z, 2**63 - 1, r"position must be in \[0"),
        ("wrong state dtype", S.double(), z, 0, "z must have dtype"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_states())), ids=[c[0] for c in _bad_states()])
def test_a_refused_step_writes_nothing(case):
    label, S, z, position, message = _bad_states()[case]
    before = (S.detach().clone(), z.detach().clone())
    with pytest.raises((ValueError, RuntimeError, TypeError), match=message):
        R.ram_step(*_step_inputs(), S, z, position=position, num_factors=U, top_k=K)
    assert torch.equal(S.detach(), before[0]) and torch.equal(z.detach(), before[1]), label


def test_a_good_step_changes_both_s_and_z():
    S, z = R.initial_state(2, 2, M, 8)
    R.ram_step(*_step_inputs(), S, z, position=torch.tensor([0, 5]), num_factors=U, top_k=K)
    assert S.abs().sum() > 0 and not torch.equal(z, torch.full_like(z, 1 / M))


def _cache_snapshot(cache):
    return cache.position, [tuple(None if t is None else t.clone() for t in layer) for layer in cache.layers]


def _same(a, b):
    return a[0] == b[0] and all(x is None and y is None or torch.equal(x, y)
                                for la, lb in zip(a[1], b[1]) for x, y in zip(la, lb))


@pytest.mark.parametrize("breakage", ["inference prefill", "last layer expanded", "conv expanded"])
def test_the_decode_cache_never_half_advances(breakage):
    torch.manual_seed(0)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny", short_conv=True)).eval()
    ids = torch.randint(0, 128, (2, 6))
    if breakage == "inference prefill":
        with torch.inference_mode():
            _, cache = model.prefill(ids)
    else:
        _, cache = model.prefill(ids)
        S, z, conv = cache.layers[-1]
        if breakage == "last layer expanded":
            cache.layers[-1] = (S, z[:1].expand_as(z), conv)
        else:
            cache.layers[-1] = (S, z, conv[:1].expand_as(conv))
    before = _cache_snapshot(cache)
    with pytest.raises((ValueError, RuntimeError), match="decode cache layer"):
        with torch.no_grad():
            model.decode_step(ids[:, 0], cache)
    assert _same(_cache_snapshot(cache), before), "a refused decode step changed the cache"
