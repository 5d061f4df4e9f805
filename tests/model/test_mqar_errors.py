"""``ramnet.mqar_errors``: where a model's MQAR errors sit (by pair and by query) and its fp32 score."""
import pytest
import torch
from torch import nn

from ramnet.data.mqar import MQARSetting, multiquery_ar
from ramnet.data.mqar_protocol import ProtocolData, protocol_settings
from ramnet.mqar_errors import error_profile, final_profile, parse_error_queries, query_outcomes
from ramnet.baselines import build_model

VOCAB, PAIRS, T = 128, 8, 64  # T > 4 * PAIRS: the queries sit at gaps, not at every other position


class Oracle(nn.Module):
    """Answers every query with its pair's value, except the queries ``wrong(pair, rank)`` picks."""

    def __init__(self, wrong, inputs, labels):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.wrong, self.inputs, self.labels = wrong, inputs, labels

    def features(self, inputs):
        keys, values = inputs[:, 0:2 * PAIRS:2], inputs[:, 1:2 * PAIRS:2]
        hidden = torch.zeros(*inputs.shape, VOCAB)
        for b in range(inputs.shape[0]):
            row = next(i for i, x in enumerate(self.inputs) if torch.equal(x, inputs[b]))  # found by content
            asked = set((self.labels[row] != -100).nonzero().flatten().tolist())
            rank = 0
            for t in range(2 * PAIRS, inputs.shape[1]):
                hits = (keys[b] == inputs[b, t]).nonzero().flatten()
                if len(hits) == 1 and t in asked:  # a query: a labelled position (a filler may hold a key too)
                    pair = int(hits[0])
                    answer = values[b, pair] if not self.wrong(pair, rank) else (values[b, pair] + 1) % VOCAB
                    hidden[b, t, answer] = 1.0
                    rank += 1
        return hidden + self.weight, None

    def lm_head(self, hidden):
        return hidden


def _data(n=6, seed=0):
    x, y = multiquery_ar(MQARSetting(vocab_size=VOCAB, seq_len=T, num_kv_pairs=PAIRS), n, seed=seed)
    return x, y


def _oracle(wrong, inputs, labels):
    return Oracle(wrong, inputs, labels)


def test_outcomes_name_each_querys_pair_and_rank():
    x, y = _data()
    out = query_outcomes(_oracle(lambda pair, rank: False, x, y), x, y, PAIRS, batch_size=4)
    assert bool(out["correct"].all()) and len(out["correct"]) == 6 * PAIRS
    assert out["rank"].tolist() == list(range(PAIRS)) * 6
    for b in range(6):  # every pair is asked once per sequence
        assert sorted(out["pair"][b * PAIRS:(b + 1) * PAIRS].tolist()) == list(range(PAIRS))
    positions = (y != -100).nonzero()
    assert all(int(x[b, t]) == int(x[b, 2 * int(p)]) for (b, t), p in zip(positions.tolist(), out["pair"]))


@pytest.mark.parametrize("wrong, by_pair, by_query", [
    (lambda pair, rank: pair < 2, [0.0, 1.0, 1.0, 1.0], None),      # the first quarter of the pairs (2 of 8)
    (lambda pair, rank: rank >= 6, None, [1.0, 1.0, 1.0, 0.0]),     # the last quarter of each sequence's queries
    (lambda pair, rank: pair == 3, [1.0, 0.5, 1.0, 1.0], None),
])
def test_profile_puts_the_errors_in_their_quarter(wrong, by_pair, by_query):
    x, y = _data()
    profile = error_profile(_oracle(wrong, x, y), x, y, PAIRS)
    expected_errors = sum(wrong(p, r) for p, r in zip(*[t.tolist() for t in
                          (query_outcomes(_oracle(wrong, x, y), x, y, PAIRS)[k] for k in ("pair", "rank"))]))
    assert profile["queries"] == 6 * PAIRS and profile["errors"] == expected_errors > 0
    listed = parse_error_queries(profile["error_queries"])
    assert len(listed) == expected_errors
    for b, t in listed:  # each listed query is labelled and asks for a pair the rule makes wrong
        pair = int((x[b, 0:2 * PAIRS:2] == x[b, t]).nonzero())
        rank = int((y[b, :t] != -100).sum())
        assert y[b, t] != -100 and wrong(pair, rank)
    if by_pair is not None:
        assert profile["by_pair_quarter"] == by_pair
    if by_query is not None:
        assert profile["by_query_quarter"] == by_query


@pytest.mark.parametrize("cap, listed", [(6, True), (5, False)])
def test_errors_are_listed_up_to_the_cap(monkeypatch, cap, listed):
    import ramnet.mqar_errors as mqar_errors
    monkeypatch.setattr(mqar_errors, "MAX_LISTED_ERRORS", cap)
    x, y = _data()
    profile = error_profile(_oracle(lambda pair, rank: rank == 0, x, y), x, y, PAIRS)  # one error per sequence
    first = " ".join(f"{b}:{int((y[b] != -100).nonzero()[0])}" for b in range(6))
    assert profile["errors"] == 6 and profile["error_queries"] == (first if listed else None)
    if listed:
        assert parse_error_queries(first) == [(b, int((y[b] != -100).nonzero()[0])) for b in range(6)]


@pytest.mark.parametrize("text", ["1:2 3", "1:2:3", "a:1", "-1:4", None])
def test_a_bad_error_list_is_named(text):
    with pytest.raises(ValueError, match="error_queries"):
        parse_error_queries(text)


def test_bad_arguments_are_named():
    x, y = _data(2)
    model = _oracle(lambda pair, rank: False, x, y)
    with pytest.raises(ValueError, match="num_kv_pairs"):
        query_outcomes(model, x, y, 0)
    with pytest.raises(ValueError, match="num_kv_pairs"):
        query_outcomes(model, x, y, True)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        query_outcomes(model, x[0], y[0], PAIRS)
    with pytest.raises(ValueError, match="batch_size"):
        query_outcomes(model, x, y, PAIRS, batch_size=0)
    with pytest.raises(ValueError, match="exactly one"):  # the wrong pair count: queries miss the keys taken
        query_outcomes(model, x, y, 2)


def test_final_profile_scores_a_bf16_model_in_fp32_too_and_leaves_its_mode():
    torch.manual_seed(0)
    model, _, _ = build_model({"model": "ramnet", "preset": "tiny"}, vocab_size=VOCAB, max_seq_len=32)
    model.train()
    data = ProtocolData.make(protocol_settings([(2, 16), (4, 32)], VOCAB), num_train=2, num_eval=3, seed=0)
    out = final_profile(model, data, "bf16")
    assert model.training and out["precision"] == "bf16"
    assert set(out["settings"]) == set(out["fp32_accuracies"]) == {"N2-T16", "N4-T32"}
    assert [out["settings"][n]["queries"] for n in ("N2-T16", "N4-T32")] == [3 * 2, 3 * 4]
    assert "fp32_accuracies" not in final_profile(model, data, "fp32")


def _profile_with_fp32_failing(monkeypatch, error: Exception) -> dict:
    """``final_profile`` of a bf16 tiny model whose fp32 evaluation raises ``error``."""
    import ramnet.mqar_errors as mqar_errors

    def bf16_only(model, x, y, precision):
        if precision == "fp32":
            raise error
        return 1.0

    monkeypatch.setattr(mqar_errors, "evaluate", bf16_only)
    torch.manual_seed(0)
    model, _, _ = build_model({"model": "ramnet", "preset": "tiny"}, vocab_size=VOCAB, max_seq_len=32)
    data = ProtocolData.make(protocol_settings([(2, 16)], VOCAB), num_train=2, num_eval=3, seed=0)
    return final_profile(model, data, "bf16")


def test_a_model_that_refuses_fp32_keeps_its_profile(monkeypatch):
    """fla's chunked DeltaNet asserts bf16 inputs: the fp32 score is then missing, with why, and the rest stays."""
    out = _profile_with_fp32_failing(monkeypatch, AssertionError("ChunkDeltaRuleFunction does not support float32"))
    assert out["settings"]["N2-T16"]["queries"] == 3 * 2 and out["fp32_accuracies"] is None
    assert out["fp32_error"] == "AssertionError: ChunkDeltaRuleFunction does not support float32"


def test_any_other_fp32_failure_still_fails_the_profile(monkeypatch):
    """Only a kernel's refusal of fp32 is recorded as fp32_error; a real failure there is not hidden."""
    with pytest.raises(RuntimeError, match="out of memory"):
        _profile_with_fp32_failing(monkeypatch, RuntimeError("CUDA out of memory"))


@pytest.mark.parametrize("index, num_eval, seed, name", [(-1, 4, 0, "index"), (0, 0, 0, "num_eval"),
                                                         (0, 4, 1.5, "seed"), (True, 4, 0, "index")])
def test_eval_set_names_a_bad_argument(index, num_eval, seed, name):
    from ramnet.data.mqar_protocol import eval_set
    with pytest.raises(ValueError, match=name):
        eval_set(MQARSetting(vocab_size=VOCAB, seq_len=T, num_kv_pairs=PAIRS), index, num_eval, seed)


def test_eval_set_is_what_the_protocol_scores():
    from ramnet.data.mqar_protocol import eval_set
    settings = protocol_settings([(2, 16), (4, 32)], VOCAB)
    data = ProtocolData.make(settings, num_train=2, num_eval=3, seed=5)
    for i, setting in enumerate(settings):
        assert all(torch.equal(a, b) for a, b in zip(eval_set(setting, i, 3, 5), data.eval[i]))

