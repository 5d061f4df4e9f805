"""AOTInductor on CPU: prefill and decode packages equal eager (also on a strided input), and the runner refuses
bad inputs by name. The GPU side is recorded in docs/BENCHMARKS.md (the H100 image's loader crashes)."""
import pytest
import torch

from ramnet import RamNetConfig, RamNetForCausalLM
from ramnet.export.aoti import to_aoti
from ramnet.export.onnx import DecodeGraph, PrefillGraph, state_names
from ramnet.runtime.aoti import load
from ramnet.runtime.state_checks import StateError

from .state_cases import BAD_STATES, at_bound, corrupt


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    torch.manual_seed(0)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny", short_conv=True)).eval()
    work = tmp_path_factory.mktemp("aoti")
    return model, {g: load(to_aoti(model, work / f"{g}.pt2", graph=g)) for g in ("prefill", "decode")}


def test_aoti_prefill_and_decode_equal_eager(packages):
    model, runners = packages
    ids = torch.randint(0, model.config.vocab_size, (3, 12))
    with torch.no_grad():
        ref = PrefillGraph(model)(ids[:, :9])
        got = runners["prefill"](ids[:, :9])
        for a, b in zip(got, ref):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        states = list(ref[1:])
        for t in range(9, 12):
            inputs = (ids[:, t], torch.full((3,), t), *states)  # ids[:, t] is a strided view
            ref_step, got_step = DecodeGraph(model)(*inputs), runners["decode"](*inputs)
            for a, b in zip(got_step, ref_step):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
            states = list(ref_step[1:])


def test_aoti_runner_refuses_bad_inputs(packages):
    model, runners = packages
    ids = torch.zeros(2, 4, dtype=torch.long)
    with torch.no_grad():
        states = list(PrefillGraph(model)(ids)[1:])
    tok, pos = torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long)
    decode = runners["decode"]
    with pytest.raises(ValueError, match="takes"):
        decode(tok, pos)
    with pytest.raises(ValueError, match="token ids must be in"):
        decode(torch.tensor([0, model.config.vocab_size]), pos, *states)
    with pytest.raises(ValueError, match=r"position must be in \[0, "):
        decode(tok, torch.tensor([0, -1]), *states)
    bad = [s.clone() for s in states]
    bad[0].view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        decode(tok, pos, *bad)
    bad = [s.clone() for s in states]
    bad[1].view(-1)[0] = -1.0
    with pytest.raises(ValueError, match=r"decode.pt2 input 3: state 'z_0' is out of range: z must be in \[0, 1.001\]"):
        decode(tok, pos, *bad)
    with pytest.raises(ValueError, match="shape"):
        decode(tok, pos, states[0][:, :1], *states[1:])
    with pytest.raises(ValueError, match="batch size"):
        decode(tok, pos, states[0][:1], *states[1:])
    with pytest.raises(ValueError, match="must be a torch.int64"):
        runners["prefill"](ids.float())


def test_aoti_runner_refuses_out_of_range_states(packages):
    """The state bounds (``runtime/state_checks.py``), as in ``test_state_bounds.py`` for ORT: every bad state is
    refused by name and input position; the largest accepted states still give finite outputs."""
    model, runners = packages
    names = state_names(model.config)
    ids = torch.randint(0, model.config.vocab_size, (2, 30), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feeds = dict(zip(names, (t.numpy() for t in PrefillGraph(model)(ids)[1:])))
    tok, pos = torch.zeros(2, dtype=torch.long), torch.full((2,), 30)
    call = lambda states: runners["decode"](tok, pos, *[torch.from_numpy(states[n]) for n in names])
    with torch.no_grad():
        assert all(bool(torch.isfinite(t).all()) for t in call(at_bound(feeds)))
        for name, kind, value, message in BAD_STATES:
            with pytest.raises(StateError, match=message) as caught:
                call(corrupt(feeds, name, kind, value))
            assert caught.value.name == name and f"input {2 + names.index(name)}:" in str(caught.value)
