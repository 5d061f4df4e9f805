"""``benchmarks/mqar_pair_writes.py``: the queries for the first, middle and last pair, as trained and with the
writes at one offset after their keys shut; its numbers are the model's own, and bad input gets one line."""
import json
from pathlib import Path

import pytest
import torch

from ramnet.analysis_gates import write_gates, write_gates_replaced_where, writes_closed_where
from ramnet.checkpoint import load_checkpoint, write_model
from ramnet.data.mqar import MQARSetting, multiquery_ar

from .probe_cases import load_script, run_script, small_checkpoint

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "mqar_pair_writes.py"


def _p_labels(checkpoint, closed_offset=None, layers=None) -> dict[str, float]:
    """The label's mean probability at the first, middle and last pairs' queries, computed here without the
    script, with the writes at ``closed_offset`` after each of those keys shut in ``layers``."""
    model = load_checkpoint(checkpoint).eval()
    ids, labels = multiquery_ar(MQARSetting(vocab_size=model.config.vocab_size, seq_len=32, num_kv_pairs=4), 3,
                                seed=5)
    closed = torch.zeros(ids.shape, dtype=torch.bool)
    if closed_offset is not None:
        closed[:, [2 * p + closed_offset for p in (0, 2, 3)]] = True
    with torch.no_grad(), writes_closed_where(model, closed, layers):
        probs = model(ids).float().softmax(-1)
    out = {}
    for name, pair in (("first", 0), ("middle", 2), ("last", 3)):
        total = 0.0
        for b in range(3):
            t = next(t for t in range(8, 32) if ids[b, t] == ids[b, 2 * pair] and labels[b, t] != -100)
            total += float(probs[b, t, labels[b, t]])
        out[name] = total / 3
    return out


def test_the_rows_are_the_models_own(tmp_path):
    checkpoint = small_checkpoint(tmp_path, write_gate=True)
    out = tmp_path / "rows.json"
    done = run_script(SCRIPT, str(checkpoint), "--settings", "4,32", "--num-examples", "3", "--seed", "5",
                      "--offsets", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["none (as trained)", "offset 1 in every layer", "offset 1 in layer 1",
                                            "offset 1 in layer 2"]
    assert rows[0]["pairs_probed"] == {"first": 0, "middle": 2, "last": 3}
    expected = [_p_labels(checkpoint), _p_labels(checkpoint, 1), _p_labels(checkpoint, 1, [0]),
                _p_labels(checkpoint, 1, [1])]
    assert abs(expected[1]["last"] - expected[0]["last"]) > 1e-6  # shutting the value's write moves the answer
    assert abs(expected[2]["last"] - expected[3]["last"]) > 1e-6  # and the two layers' writes differ
    for row, want in zip(rows, expected):
        for name in ("first", "middle", "last"):
            assert abs(row[name]["p_label"] - want[name]) < 1e-6, (row["variant"], name)


def test_bad_input_gets_one_line(tmp_path):
    checkpoint = small_checkpoint(tmp_path, write_gate=True)
    for args, message in [(["--offsets", "-1"], "--offsets must be >= 0"),
                          (["--offsets", "30"], "runs past the length of --settings 4,32"),
                          (["--settings", "2,32"], "needs at least 3 pairs"),
                          (["--swap-gates"], "--swap-gates needs --first-random-token")]:
        done = run_script(SCRIPT, str(checkpoint), *(args if "--settings" in args else ["--settings", "4,32", *args]))
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert "| checkpoint" not in done.stdout  # refused before the table starts
    done = run_script(SCRIPT, str(small_checkpoint(tmp_path / "plain")), "--settings", "4,32")
    assert done.returncode == 2 and "no write gate" in done.stderr


def _module():
    return load_script(SCRIPT)


def test_the_first_random_token_variants(tmp_path):
    module = _module()
    ids, _ = multiquery_ar(MQARSetting(vocab_size=64, seq_len=32, num_kv_pairs=4), 6, seed=5)
    drawn = set()
    for key_range in (True, False):
        changed = module.with_first_random_token(ids, 4, 64, key_range, seed=0)
        drawn |= set(changed[:, 9].tolist())
        assert torch.equal(changed[:, :9], ids[:, :9]) and torch.equal(changed[:, 10:], ids[:, 10:])
        for row, new in zip(ids, changed[:, 9].tolist()):
            assert (1 <= new < 32 if key_range else 32 <= new < 64) and new not in row.tolist()
    assert len(drawn) > 2  # drawn at random, not one fixed token a range
    full = torch.arange(32).unsqueeze(0).repeat(1, 2)  # a sequence holding every key-range token
    with pytest.raises(ValueError, match="every token of the key range"):
        module.with_first_random_token(full, 4, 64, True, seed=0)
    checkpoint = small_checkpoint(tmp_path, write_gate=True)
    out = tmp_path / "rows.json"
    done = run_script(SCRIPT, str(checkpoint), "--settings", "4,32", "--num-examples", "3", "--seed", "5",
                      "--offsets", "1", "--first-random-token", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows[-2:]] == ["none; first random token a key-range token",
                                                 "none; first random token a value-range token"]
    assert rows[-1]["last"]["p_label"] != rows[-2]["last"]["p_label"]  # the data changed, so did the answer


def test_the_swapped_gate_rows_are_the_models_own(tmp_path):
    checkpoint = small_checkpoint(tmp_path, write_gate=True)
    model = load_checkpoint(checkpoint)
    with torch.no_grad():  # untrained, gates sit near 0.5 and reads barely move the logits: make both matter
        for block in model.blocks:
            block.mixer.gate_proj.weight.mul_(40)
            block.mixer.o_proj.weight.mul_(40)
    write_model(model, checkpoint)
    out = tmp_path / "rows.json"
    done = run_script(SCRIPT, str(checkpoint), "--settings", "4,32", "--num-examples", "3", "--seed", "5",
                      "--offsets", "--first-random-token", "--swap-gates", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["none (as trained)", "none; first random token a key-range token",
                                            "none; first random token a value-range token"] + [
        f"first random token a {kind}-range token, with the {other}-range token's gate there in {where}"
        for kind, other in (("key", "value"), ("value", "key")) for where in ("layer 1", "layer 2", "every layer")]
    # recomputed here: each swapped row is its token's pass with the other token's gates at position 9 (2N + 1)
    model = load_checkpoint(checkpoint).eval()
    ids, labels = multiquery_ar(MQARSetting(vocab_size=model.config.vocab_size, seq_len=32, num_kv_pairs=4), 3,
                                seed=5)
    changed = {kind: _module().with_first_random_token(ids, 4, model.config.vocab_size, kind == "key", 5)
               for kind in ("key", "value")}
    gates = {kind: write_gates(model, x) for kind, x in changed.items()}
    where = torch.zeros(ids.shape, dtype=torch.bool)
    where[:, 9] = True
    rows_t = torch.arange(3)
    queries = [next(t for t in range(8, 32) if ids[b, t] == ids[b, 6] and labels[b, t] != -100) for b in range(3)]
    for row in rows[3:]:
        kind, other = ("key", "value") if row["variant"].startswith("first random token a key") else ("value", "key")
        layers = row["swapped_layers"]
        assert row["closed_layers"] is None and layers in ([0], [1], [0, 1])
        with torch.no_grad(), write_gates_replaced_where(model, where, [gates[other][i] for i in layers], layers):
            probs = model(changed[kind]).float().softmax(-1)
        want = float(probs[rows_t, queries, labels[rows_t, queries]].mean())
        assert abs(row["last"]["p_label"] / want - 1) < 1e-5, row["variant"]
    for swapped, plain in ((rows[5], rows[1]), (rows[8], rows[2])):  # every layer's swap against no swap
        assert abs(swapped["last"]["p_label"] / plain["last"]["p_label"] - 1) > 1e-3, swapped["variant"]


def test_scores_in_chunks_are_the_whole_batchs(tmp_path):
    model = load_checkpoint(small_checkpoint(tmp_path, write_gate=True)).eval()
    ids, labels = multiquery_ar(MQARSetting(vocab_size=model.config.vocab_size, seq_len=32, num_kv_pairs=4), 5,
                                seed=5)
    module = _module()
    queries = {k: module.query_positions(ids, labels, pair, 4) for k, pair in module.chosen_pairs(4).items()}
    closed = torch.zeros(ids.shape, dtype=torch.bool)
    closed[::2, 7] = True
    where = torch.zeros(ids.shape, dtype=torch.bool)
    where[1::2, 9] = True
    swap = (where, [torch.zeros(*ids.shape, model.config.n_heads)])
    for kwargs in ({"closed": closed, "layers": None}, {"closed": None, "layers": [0], "swap": swap}):
        whole = module.scores(model, ids, labels, queries, **kwargs)
        for chunk in (1, 2, 3):
            parts = module.scores(model, ids, labels, queries, **kwargs, chunk=chunk)
            for name in queries:
                assert parts[name]["right"] == whole[name]["right"]
                assert abs(parts[name]["p_label"] - whole[name]["p_label"]) < 1e-6
