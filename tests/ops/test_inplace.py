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
        ("z inside S's buffer", S, S.view(-1)[:2 * 2 * M].view(2, 2, M), 0, "must not share memory"),
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


BREAKAGES = ["inference prefill", "last layer expanded", "conv expanded", "last layer z float64",
             "last layer wrong M", "one state for two layers"]


@pytest.mark.parametrize("breakage", BREAKAGES)
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
        broken = {"last layer expanded": lambda: (S, z[:1].expand_as(z), conv),
                  "conv expanded": lambda: (S, z, conv[:1].expand_as(conv)),
                  "last layer z float64": lambda: (S, z.double(), conv),
                  "last layer wrong M": lambda: (S[:, :, :-1].contiguous(), z[:, :, :-1].contiguous(), conv),
                  "one state for two layers": lambda: cache.layers[0]}[breakage]
        cache.layers[-1] = broken()
    before = _cache_snapshot(cache)
    with pytest.raises((ValueError, RuntimeError, TypeError), match="decode cache layer"):
        with torch.no_grad():
            model.decode_step(ids[:, 0], cache)
    assert _same(_cache_snapshot(cache), before), "a refused decode step changed the cache"


def test_ram_step_compiles_fullgraph_and_exports_with_its_checks_kept():
    """The in-place checks that read storages and values run inside ``ramnet::ram_step_``, so the wrapper still
    traces whole, and a compiled graph still refuses bad positions and states before writing."""
    q, k, v = _step_inputs()
    S, z = R.initial_state(2, 2, M, 8)
    step = torch.compile(lambda q, k, v, S, z, p: R.ram_step(q, k, v, S, z, position=p, num_factors=U, top_k=K),
                         fullgraph=True, backend="eager")
    step(q, k, v, S, z, torch.tensor([1, 2]))
    before = (S.clone(), z.clone())
    with pytest.raises(ValueError, match=r"position values must be in \[0"):
        step(q, k, v, S, z, torch.tensor([1, -2]))
    with pytest.raises(ValueError, match="z must be contiguous"):
        step(q, k, v, S, z[:1].expand(2, 2, M), torch.tensor([1, 2]))
    assert torch.equal(S, before[0]) and torch.equal(z, before[1])

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            S0, z0 = R.initial_state(2, 2, M, 8)
            self.register_buffer("S", S0)
            self.register_buffer("z", z0)

        def forward(self, q, k, v, p):
            return R.ram_step(q, k, v, self.S, self.z, position=p, num_factors=U, top_k=K)

    program = torch.export.export(Decoder(), (q, k, v, torch.tensor([1, 2])))
    assert any("ram_step_" in str(n.target) for n in program.graph.nodes)


def test_the_registered_op_checks_its_state_before_writing():
    q, k, v = _step_inputs()
    S, z = R.initial_state(2, 2, M, 8)
    before = S.clone()
    args = (torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.bool), U, K, 1.0, 1.0, 1e-6)
    with pytest.raises(ValueError, match="z has shape"):
        torch.ops.ramnet.ram_step_(q, k, v, S, z[..., :32].contiguous(), *args)
    with pytest.raises(ValueError, match="must not share memory"):
        torch.ops.ramnet.ram_step_(q, k, v, S, S.view(-1)[:2 * 2 * M].view(2, 2, M), *args)
    assert torch.equal(S, before)
