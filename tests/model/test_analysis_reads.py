"""The read-weight probe (``ramnet.analysis_reads``): the weights must reproduce the memory's output exactly, and
the per-query figures must be what a count by hand gives."""
import math

import pytest
import torch

from ramnet import RamNetConfig, RamNetForCausalLM
from ramnet.analysis_reads import pair_read_mass, read_mass, read_weights
from ramnet.data.mqar import MQARSetting, multiquery_ar, query_bindings
from ramnet.ops import ram_attention


def _model(preset="mqar-tiny", **overrides):
    torch.manual_seed(0)
    return RamNetForCausalLM(RamNetConfig.from_name(preset, cape_all_heads_layers=1, cape_half_heads_layers=0,
                                                    **overrides))


def _mqar_batch(model, pairs=4, seq_len=32, examples=3):
    setting = MQARSetting(vocab_size=model.config.vocab_size, seq_len=seq_len, num_kv_pairs=pairs)
    return multiquery_ar(setting, examples, seed=1)


@pytest.mark.parametrize("preset, overrides", [("mqar-tiny", {"write_gate": True}), ("tiny", {"gamma": 0.5})])
def test_read_weights_times_the_values_are_the_memory_output(preset, overrides):
    """``o = A v`` in every layer, for a model with the short conv, CAPE on layer 1 and the write gate, and for a
    plain one with another gamma; A is causal and its rows sum to at most 1."""
    model = _model(preset, **overrides).double()
    ids, _ = _mqar_batch(model)
    weights = read_weights(model, ids)
    assert len(weights) == 2 and model.blocks[0].mixer.any_cape
    for full, some in zip(weights, read_weights(model, ids, rows=[31, 0, 17])):  # the reads of some rows alone
        torch.testing.assert_close(some, full[:, [31, 0, 17]], rtol=1e-12, atol=1e-15)
    x = model.embed(ids)
    with torch.no_grad():
        for block, A in zip(model.blocks, weights):
            mixer = block.mixer
            normed = block.mixer_norm(x)
            q, k, v, _, gate_logit = mixer._qkv(normed)
            o, _ = ram_attention(q, k, v, write_gate=mixer._gate(normed, gate_logit), **mixer._op_kwargs())
            assert A.shape == (3, 32, model.config.n_heads, 32)
            torch.testing.assert_close(torch.einsum("bths,bshd->bthd", A.double(), v), o, rtol=1e-10, atol=1e-12)
            later = torch.ones(32, 32, dtype=torch.bool).triu(1)  # [t, s]: s after t
            assert (A.permute(0, 2, 1, 3)[:, :, later] == 0).all()
            assert A.sum(-1).max() <= 1 + 1e-6 and A.min() >= 0
            x, _ = block(x)


def test_read_mass_on_planted_weights():
    """Three pairs (values at 1, 3, 5: tokens 10, 11, 12), queries at 8 (pair 0, answered right) and 9 (pair 2,
    answered 11, pair 1's value), two heads, offsets 0 and 1."""
    T, H = 10, 2
    weights = torch.zeros(T, H, T)
    weights[8, 0, [1, 3, 5]] = torch.tensor([0.5, 0.2, 0.1])   # query 8, head 0: own pair heaviest
    weights[8, 0, 7] = 0.1                                     # a filler token: in the total only
    weights[9, 0, [1, 3, 5]] = torch.tensor([0.25, 0.35, 0.2])  # query 9, head 0: pair 1 heaviest, and answered
    weights[8, 1, [2, 4]] = torch.tensor([0.4, 0.4])           # head 1 at offset 1: own pair 0 ties pair 1
    weights[9, 1, 1] = 0.5                                     # query 9, head 1: pair 0 heaviest, not answered
    answers, values = torch.tensor([10, 11]), torch.tensor([10, 11, 12])
    labels = torch.tensor([10, 12])
    head0, head1 = read_mass(weights[[8, 9]], [1, 5], answers, labels, values, 0)
    assert (head0["right"], head0["wrong"]) == (1, 1)
    assert head0["own_right"] == pytest.approx(0.5) and head0["max_other_right"] == pytest.approx(0.2)
    assert head0["total_right"] == pytest.approx(0.9) and head0["own_top_right"] == 1
    assert head0["own_wrong"] == pytest.approx(0.2) and head0["max_other_wrong"] == pytest.approx(0.35)
    assert head0["own_top_wrong"] == 0 and head0["took_other_wrong"] == 1 and head0["took_other_right"] == 0
    assert head1["took_other_wrong"] == 0
    assert head0["other_value_wrong"] == head1["other_value_wrong"] == 1 and head0["other_value_right"] == 0
    assert head1["own_right"] == 0 and head1["total_right"] == pytest.approx(0.8)
    shifted = read_mass(weights[[8, 9]], [1, 5], answers, labels, values, 1)[1]
    assert shifted["own_right"] == pytest.approx(0.4) and shifted["max_other_right"] == pytest.approx(0.4)
    assert shifted["own_top_right"] == 0  # a tie is not a win
    garbage = read_mass(weights[[8, 9]], [1, 5], torch.tensor([10, 99]), labels, values, 0)[0]
    assert garbage["other_value_wrong"] == 0 and garbage["took_other_wrong"] == 0
    # no weight on any other pair, or two pairs tied heaviest: no pair was taken, whatever the answer
    nothing = read_mass(torch.zeros(2, 2, T), [1, 5], torch.tensor([10, 10]), labels, values, 0)[0]
    assert nothing["took_other_wrong"] == 0 and nothing["other_value_wrong"] == 1
    tied = torch.zeros(2, 1, T)
    tied[1, 0, [1, 3]] = 0.3
    assert read_mass(tied, [1, 5], torch.tensor([10, 10]), labels, values, 0)[0]["took_other_wrong"] == 0
    tied[1, 0, 1] = 0.31  # pair 0 alone heaviest, and answered
    assert read_mass(tied, [1, 5], torch.tensor([10, 10]), labels, values, 0)[0]["took_other_wrong"] == 1


def test_pair_read_mass_recounted_by_hand():
    """Every figure recounted query by query from the read weights: every other query answered right, the rest
    with the next pair's value (so ``took_other`` and ``other_value`` are exercised), at two offsets."""
    model = _model()
    ids, labels = _mqar_batch(model)
    weights = read_weights(model, ids)
    answers = torch.zeros_like(labels)
    found = []
    for row in range(ids.shape[0]):
        for i, (q, b) in enumerate(zip(*query_bindings(ids[row], labels[row], 4))):
            next_value = ids[row, (b + 2) % 8]  # the next pair's value: pairs' values sit at 1, 3, 5, 7
            answers[row, q] = labels[row, q] if i % 2 == 0 else next_value
            found.append((row, q, b))
    V = model.config.vocab_size
    model.forward = lambda input_ids, *args, **kwargs: torch.nn.functional.one_hot(answers, V).float()
    result = pair_read_mass(model, ids, labels, 4, [0, 2])
    assert sorted(result) == [0, 2] and len(result[0]) == 2 and len(result[0][0]) == model.config.n_heads
    for offset in (0, 2):
        for layer in range(2):
            for head in range(model.config.n_heads):
                groups = {"right": [], "wrong": []}
                for row, q, b in found:
                    w = weights[layer][row, q, head]
                    pair_weights = [float(w[2 * p + 1 + offset]) for p in range(4)]
                    own = pair_weights[b // 2]
                    others = {p: x for p, x in enumerate(pair_weights) if p != b // 2}
                    heaviest = max(others.values())
                    tops = [p for p, x in others.items() if x == heaviest]
                    values = [int(ids[row, 2 * p + 1]) for p in range(4)]
                    answer = int(answers[row, q])
                    right = answer == int(labels[row, q])
                    took = len(tops) == 1 and heaviest > 0 and answer == values[tops[0]]
                    groups["right" if right else "wrong"].append(
                        (own, heaviest, float(w.sum()), own > heaviest, took, answer in values and not right))
                e = result[offset][layer][head]
                assert (e["right"], e["wrong"]) == (len(groups["right"]), len(groups["wrong"])) == (6, 6)
                for group, rows in groups.items():
                    for i, key in enumerate(("own", "max_other", "total", "own_top", "took_other", "other_value")):
                        assert e[f"{key}_{group}"] == pytest.approx(sum(r[i] for r in rows) / len(rows)), (group, key)
                assert e["other_value_wrong"] == 1 and e["other_value_right"] == 0


def test_an_empty_group_is_nan():
    model = _model()
    ids, labels = _mqar_batch(model)
    model.forward = lambda input_ids, *args, **kwargs: torch.nn.functional.one_hot(
        labels.clamp(min=0), model.config.vocab_size).float()  # every query right
    e = pair_read_mass(model, ids, labels, 4, [0])[0][0][0]
    assert e["wrong"] == 0 and math.isnan(e["own_wrong"]) and e["right"] > 0


def test_pair_read_mass_refuses_bad_input():
    model = _model()
    ids, labels = _mqar_batch(model)
    with pytest.raises(ValueError, match="num_kv_pairs must be an int >= 2"):
        pair_read_mass(model, ids, labels, 1, [0])
    with pytest.raises(ValueError, match="labels must match"):
        pair_read_mass(model, ids, labels[:, :-1], 4, [0])
    with pytest.raises(ValueError, match="not an MQAR sequence with 5 pairs"):
        pair_read_mass(model, ids, labels, 5, [0])
    for bad in ([-1], [25], [1.0], [True], []):
        with pytest.raises(ValueError, match=r"write_offset must be an int in \[0, 24\]"):
            pair_read_mass(model, ids, labels, 4, bad)
    with pytest.raises(ValueError, match="write_offsets must be a list of ints, got 3"):
        pair_read_mass(model, ids, labels, 4, 3)
    with pytest.raises(ValueError, match="labels hold no query"):
        pair_read_mass(model, ids, torch.full_like(labels, -100), 4, [0])
    with pytest.raises(ValueError, match="do not fit in seq_len=4"):
        pair_read_mass(model, ids[:, :4], labels[:, :4], 3, [0])
    with pytest.raises(ValueError, match="write_offsets must be distinct"):
        pair_read_mass(model, ids, labels, 4, [0, 0])
    for bad in ([-1], [32], [2.7], [True], [], 3):
        with pytest.raises(ValueError, match=r"rows must be a .*\[0, 32\)"):
            read_weights(model, ids, rows=bad)
    with pytest.raises(TypeError, match="needs a RamNetForCausalLM"):
        read_weights(torch.nn.Linear(2, 2), ids)
