"""``ramnet.analysis_gates``: the write gate per MQAR token role, checked against the gate that scales the
memory's write weights (``ramnet.analysis.layer_addresses``) and against hand-made role layouts."""
import pytest
import torch

from ramnet import RamNetConfig, RamNetForCausalLM
from ramnet.analysis import layer_addresses
from ramnet.analysis_gates import (gate_by_role, token_roles, write_gates, write_gates_replaced_where,
                                   writes_closed_from, writes_closed_where)
from ramnet.data.mqar import IGNORE_INDEX, MQARSetting, multiquery_ar

PAIRS, LENGTH = 4, 32


def _model(**overrides):
    torch.manual_seed(3)
    config = {"write_gate": True, "max_seq_len": LENGTH, **overrides}
    return RamNetForCausalLM(RamNetConfig.from_name("mqar-tiny", **config))


def _data(n=3):
    return multiquery_ar(MQARSetting(vocab_size=128, seq_len=LENGTH, num_kv_pairs=PAIRS), n, seed=0)


def test_the_gates_scale_the_write_weights_and_match_the_models_own_pass(monkeypatch):
    model = _model()
    model.train()
    x, _ = _data()
    gates = write_gates(model, x)
    assert model.training and len(gates) == 2 and gates[0].shape == (3, LENGTH, 2)
    # the gate each mixer computes from its normed input in an ordinary forward pass
    seen = []
    hooks = [block.mixer_norm.register_forward_hook(lambda mod, inp, out, mixer=block.mixer:
                                                    seen.append(mixer._gate(out).float()))
             for block in model.blocks]
    with torch.no_grad():
        model.eval()
        model(x)
    for hook in hooks:
        hook.remove()
    for g, own in zip(gates, seen):
        torch.testing.assert_close(g, own)
    # the first layer's input does not depend on the gate: there the gated write weights are the plain ones times it
    gated = layer_addresses(model, x)[0][1]
    monkeypatch.setattr(type(model.blocks[0].mixer), "_gate", lambda self, x, logit=None: None)
    torch.testing.assert_close(gated, layer_addresses(model, x)[0][1] * gates[0].unsqueeze(-1))
    assert not torch.allclose(gates[0], gates[1])  # each layer its own


def test_roles_follow_the_mqar_layout():
    x, y = _data(2)
    roles = token_roles(x, y, PAIRS)
    assert [int(roles[r][0, :8].sum()) for r in ("key", "value")] == [PAIRS, PAIRS]
    assert roles["key"][0, 0] and roles["value"][0, 1] and not roles["key"][:, 2 * PAIRS:].any()
    assert torch.equal(roles["query"], y != IGNORE_INDEX) and int(roles["query"].sum()) == 2 * PAIRS
    assert torch.equal(roles["after_query"][:, 1:], roles["query"][:, :-1]) and not roles["after_query"][:, 0].any()
    assert not (roles["query"] & roles["after_query"]).any()  # gaps are whole (query, token) pairs


def test_gate_by_role_averages_each_role_per_head():
    model = _model()
    x, y = _data(3)
    out = gate_by_role(model, x, y, PAIRS, batch_size=2)  # batches of 2 and 1 add up as one of 3
    gates, roles = write_gates(model, x), token_roles(x, y, PAIRS)
    assert len(out) == 2 and len(out[0]) == 2
    for layer, g in enumerate(gates):
        for head in range(2):
            for role in ("key", "value", "query", "after_query"):
                assert out[layer][head][role] == pytest.approx(g[..., head][roles[role]].mean().item(), rel=1e-5)
    # 4 queries a row: the last quarter is each row's last-asked query, and the late gate is the one right after it
    last_query = torch.stack([(y[b] != IGNORE_INDEX).nonzero().max() for b in range(3)])
    after_last = g[torch.arange(3), last_query + 1, 1]
    assert out[1][1]["after_query_late"] == pytest.approx(after_last.mean().item(), rel=1e-5)


def test_bad_input_is_named():
    x, y = _data(2)
    with pytest.raises(ValueError, match="write_gate"):
        write_gates(_model(write_gate=False), x)
    with pytest.raises(TypeError, match="RamNetForCausalLM"):
        write_gates(torch.nn.Linear(2, 2), x)
    with pytest.raises(ValueError, match="input_ids"):
        write_gates(_model(), x.float())
    with pytest.raises(ValueError, match="num_kv_pairs"):
        token_roles(x, y, 0)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        token_roles(x[0], y[0], PAIRS)
    with pytest.raises(ValueError, match="among the pairs"):
        token_roles(x, y, PAIRS + 4)  # more pairs than the data has: queries fall among them
    with pytest.raises(ValueError, match="batch_size"):
        gate_by_role(_model(), x, y, PAIRS, batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        gate_by_role(_model(), x, y, PAIRS, batch_size=2.0)
    with pytest.raises(ValueError, match="B >= 1"):
        gate_by_role(_model(), x[:0], y[:0], PAIRS)
    with pytest.raises(ValueError, match="tensors"):
        token_roles(x.tolist(), y, PAIRS)


def test_writes_closed_from_zeroes_the_chosen_layers_gates_from_start_and_gives_them_back():
    model = _model()
    x, _ = _data()
    start = 2 * PAIRS
    before = write_gates(model, x)
    with writes_closed_from(model, start, layers=[0]):
        closed = write_gates(model, x)
        logits = model(x)
    assert not closed[0][:, start:].any() and torch.equal(closed[0][:, :start], before[0][:, :start])
    torch.testing.assert_close(closed[1][:, :start], before[1][:, :start])  # causal: earlier tokens unchanged
    assert not torch.allclose(closed[1][:, start:], before[1][:, start:])  # later ones see the closed layer
    plain = model(x)
    torch.testing.assert_close(logits[:, :start], plain[:, :start])
    assert not torch.allclose(logits[:, start:], plain[:, start:])
    assert all("_gate" not in block.mixer.__dict__ for block in model.blocks)
    for g, b in zip(write_gates(model, x), before):
        torch.testing.assert_close(g, b)


def test_writes_closed_from_gives_the_gates_back_after_an_error_and_checks_its_arguments():
    model = _model()
    x, _ = _data()
    with pytest.raises(KeyError):
        with writes_closed_from(model, 4):
            raise KeyError("inside")
    assert all("_gate" not in block.mixer.__dict__ for block in model.blocks)
    for bad, match in [({"start": -1}, "start"), ({"start": 1.5}, "start"), ({"start": 0, "layers": [2]}, "layers"),
                       ({"start": 0, "layers": []}, "layers"), ({"start": 0, "layers": [True]}, "layers"),
                       ({"start": 0, "layers": 1}, "layers")]:
        with pytest.raises(ValueError, match=match):
            with writes_closed_from(model, **bad):
                pass
    with pytest.raises(ValueError, match="write gate"):
        with writes_closed_from(_model(write_gate=False), 0):
            pass


def test_nested_interventions_give_back_the_enclosing_ones():
    model = _model()
    x, _ = _data()
    with writes_closed_from(model, 8, layers=[0]):
        outer = write_gates(model, x)
        with writes_closed_from(model, 16, layers=[0, 1]):
            inner = write_gates(model, x)
            assert not inner[0][:, 8:].any() and not inner[1][:, 16:].any()
        torch.testing.assert_close(write_gates(model, x)[0], outer[0])  # layer 0 is still closed from 8
        assert not outer[0][:, 8:].any()
    assert all("_gate" not in block.mixer.__dict__ for block in model.blocks)


def test_writes_closed_where_closes_each_rows_own_positions():
    model = _model()
    x, _ = _data()
    plain, before = model(x), write_gates(model, x)
    closed = torch.zeros(x.shape, dtype=torch.bool)
    closed[0, [9, 20]] = True  # row 0 only, two positions; rows 1 and 2 keep every write
    with writes_closed_where(model, closed, layers=[1]):
        gates, logits = write_gates(model, x), model(x)
    assert not gates[1][0, [9, 20]].any() and gates[1][0, [8, 10]].all()
    torch.testing.assert_close(gates[0], before[0])  # layer 0 untouched
    keep = ~closed.unsqueeze(-1)
    torch.testing.assert_close(gates[1] * keep, before[1] * keep)  # the same layer's other positions too
    torch.testing.assert_close(logits[1:], plain[1:])
    torch.testing.assert_close(logits[0, :9], plain[0, :9])  # causal: before the first closed write
    assert not torch.allclose(logits[0, 9:], plain[0, 9:])
    # a mask true from a position on is writes_closed_from
    from_start = torch.zeros(x.shape, dtype=torch.bool)
    from_start[:, 2 * PAIRS:] = True
    with writes_closed_where(model, from_start):
        masked = model(x)
    with writes_closed_from(model, 2 * PAIRS):
        torch.testing.assert_close(masked, model(x))
    assert all("_gate" not in block.mixer.__dict__ for block in model.blocks)


def test_writes_closed_where_refuses_a_bad_mask_and_a_pass_of_another_shape():
    model = _model()
    x, _ = _data()
    for bad in (torch.zeros(x.shape, dtype=torch.long), torch.zeros(x.shape[1], dtype=torch.bool), x.tolist()):
        with pytest.raises(ValueError, match="closed must be a bool tensor"):
            with writes_closed_where(model, bad):
                pass
    with pytest.raises(RuntimeError, match="the mask is"):
        with writes_closed_where(model, torch.zeros(x.shape, dtype=torch.bool)):
            model(x[:2])
    assert all("_gate" not in block.mixer.__dict__ for block in model.blocks)
    with pytest.raises(ValueError, match="write gate"):
        with writes_closed_where(_model(write_gate=False), torch.zeros(x.shape, dtype=torch.bool)):
            pass


def test_write_gates_replaced_where_puts_the_given_gates_at_the_chosen_positions_only():
    model = _model()
    x, _ = _data()
    other = x.clone()
    other[:, 2 * PAIRS + 1] = (other[:, 2 * PAIRS + 1] + 1) % 128  # another token at one position
    plain, before, theirs = model(x), write_gates(model, x), write_gates(model, other)
    where = torch.zeros(x.shape, dtype=torch.bool)
    where[:2, 2 * PAIRS + 1] = True  # rows 0 and 1; row 2 keeps its own gate
    with write_gates_replaced_where(model, where, [theirs[0]], layers=[0]):
        gates, logits = write_gates(model, x), model(x)
    torch.testing.assert_close(gates[0], torch.where(where.unsqueeze(-1), theirs[0], before[0]))
    assert not torch.allclose(gates[0][:2, 2 * PAIRS + 1], before[0][:2, 2 * PAIRS + 1])  # the change is real
    torch.testing.assert_close(logits[2], plain[2])
    torch.testing.assert_close(logits[:2, :2 * PAIRS + 1], plain[:2, :2 * PAIRS + 1])  # causal
    assert not torch.allclose(logits[:2, 2 * PAIRS + 1:], plain[:2, 2 * PAIRS + 1:])
    # every layer, with the model's own gates: nothing changes
    with write_gates_replaced_where(model, torch.ones(x.shape, dtype=torch.bool), before):
        torch.testing.assert_close(model(x), plain)
    # nested in a closing block, the replacement applies to the closed gate's positions it names only
    with writes_closed_from(model, 2 * PAIRS, layers=[0]):
        with write_gates_replaced_where(model, where, [theirs[0]], layers=[0]):
            nested = write_gates(model, x)[0]
    assert not nested[2, 2 * PAIRS:].any() and not nested[:2, 2 * PAIRS + 2:].any()
    torch.testing.assert_close(nested[:2, 2 * PAIRS + 1], theirs[0][:2, 2 * PAIRS + 1])
    assert all("_gate" not in block.mixer.__dict__ for block in model.blocks)


def test_write_gates_replaced_where_refuses_bad_gates_masks_and_passes():
    model = _model()
    x, _ = _data()
    gates = write_gates(model, x)
    where = torch.zeros(x.shape, dtype=torch.bool)
    for bad_where in (where.long(), where[0], x.tolist()):
        with pytest.raises(ValueError, match="where must be a bool tensor"):
            with write_gates_replaced_where(model, bad_where, gates):
                pass
    for bad_gates in (gates[:1], gates[0], [g[:, :, :1] for g in gates], [g.long() for g in gates]):
        with pytest.raises(ValueError, match="gates must be 2 float tensor"):
            with write_gates_replaced_where(model, where, bad_gates):
                pass
    for value in (1.5, -0.1, float("nan")):
        bad_gates = [g.clone() for g in gates]
        bad_gates[1][0, 3, 1] = value
        with pytest.raises(ValueError, match=r"gates must lie in \[0, 1\]"):
            with write_gates_replaced_where(model, where, bad_gates):
                pass
    with pytest.raises(ValueError, match="must not repeat a layer"):
        with write_gates_replaced_where(model, where, gates, layers=[0, 0]):
            pass
    with pytest.raises(RuntimeError, match="the mask is"):
        with write_gates_replaced_where(model, where, gates):
            model(x[:2])
    assert all("_gate" not in block.mixer.__dict__ for block in model.blocks)
