"""One sampling rule for eager and ONNX Runtime generation: argument checks, top-k / top-p support, eos."""
import pytest
import torch

from ramnet import RamNetConfig, RamNetForCausalLM
from ramnet.sampling import choose, decode_loop, sampling_args


@pytest.mark.parametrize("kwargs,message", [
    (dict(max_new_tokens=-1), "max_new_tokens"), (dict(max_new_tokens=2.0), "max_new_tokens"),
    (dict(max_new_tokens=2, temperature=-1), "temperature"),
    (dict(max_new_tokens=2, temperature=float("nan")), "temperature"),
    (dict(max_new_tokens=2, top_k=0), "top_k"), (dict(max_new_tokens=2, top_p=0.0), "top_p"),
    (dict(max_new_tokens=2, top_p=1.5), "top_p"),
    (dict(max_new_tokens=2, eos_token_id=200, vocab_size=128), r"eos_token_id must be an int in \[0, 128\)"),
    (dict(max_new_tokens=2, pad_token_id=-1), "pad_token_id"),
])
def test_bad_sampling_arguments_name_themselves(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sampling_args(**kwargs)


def test_top_p_keeps_the_smallest_set_reaching_p_and_top_k_the_k_largest():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = torch.Generator().manual_seed(0)
    top_p = {choose(logits, sampling_args(1, temperature=1.0, top_p=0.7), gen).item() for _ in range(300)}
    assert top_p == {0, 1}  # 0.5 < 0.7 <= 0.5 + 0.3
    top_k = {choose(logits, sampling_args(1, temperature=1.0, top_k=3), gen).item() for _ in range(300)}
    assert top_k == {0, 1, 2}
    assert choose(logits, sampling_args(1, temperature=1.0, top_p=0.1), gen).item() == 0  # the top token stays


def test_eos_stops_each_row_and_pads_it():
    script = iter([torch.tensor([[0.0, 9, 0], [0, 0, 9]])] * 5)
    first = torch.tensor([[9.0, 0, 0], [0, 0, 9]])  # row 0 says 0 first, row 1 says 2
    out = decode_loop(torch.zeros(2, 1, dtype=torch.long), first, lambda token: next(script),
                      sampling_args(5, eos_token_id=2, pad_token_id=0))
    # row 1 ends at once (eos 2), row 0 goes 0, 1, then never hits eos: 5 tokens; row 1 is padded with 0
    assert out.tolist() == [[0, 0, 1, 1, 1, 1], [0, 2, 0, 0, 0, 0]]
    all_done = decode_loop(torch.zeros(1, 1, dtype=torch.long), torch.tensor([[0.0, 0, 9]]), lambda t: 1 / 0,
                           sampling_args(5, eos_token_id=[2]))
    assert all_done.tolist() == [[0, 2]]  # stops as soon as every row finished; no further step is run


def test_model_generate_with_top_p_eos_and_a_local_generator_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny")).eval()
    ids = torch.randint(0, 128, (2, 5))
    state = torch.get_rng_state()
    a = model.generate(ids, 6, temperature=0.8, top_p=0.9, generator=torch.Generator().manual_seed(3))
    b = model.generate(ids, 6, temperature=0.8, top_p=0.9, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (2, 11) and torch.equal(state, torch.get_rng_state())
    greedy = model.generate(ids, 6)
    eos = int(greedy[0, 5])  # the first generated token of row 0
    stopped = model.generate(ids, 6, eos_token_id=eos, pad_token_id=eos)
    assert torch.equal(stopped[0, 5:], torch.full_like(stopped[0, 5:], eos))
    with pytest.raises(ValueError, match="top_p"):
        model.generate(ids, 2, temperature=1.0, top_p=2.0)


def test_ids_may_be_numpy_or_tensor_ints_and_prompts_are_checked():
    import numpy as np

    assert sampling_args(2, eos_token_id=np.int64(3), pad_token_id=torch.tensor(1)).eos_token_id == (3,)
    assert sampling_args(2, eos_token_id=[1, np.int32(4)]).eos_token_id == (1, 4)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny")).eval()
    with pytest.raises(ValueError, match=r"token ids in \[0, 128\)"):
        model.generate(torch.tensor([[1, 200]]), 2)
    with pytest.raises(ValueError, match="at least one row"):
        model.generate(torch.zeros(0, 3, dtype=torch.long), 2)
