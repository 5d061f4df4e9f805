"""``benchmarks/mqar_gate_profile.py`` prints the write gate per layer, head and token role. Checked on a small
untrained gated checkpoint; the figures themselves are tested in tests/model/test_analysis_gates.py."""
import json
from pathlib import Path

from .probe_cases import load_script, run_script, small_checkpoint

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "mqar_gate_profile.py"


def test_one_row_per_layer_and_head_and_setting(tmp_path):
    out = tmp_path / "gates.json"
    done = run_script(SCRIPT, str(small_checkpoint(tmp_path, write_gate=True)), "--settings", "4,32", "8,32",
                      "--num-examples", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    saved = json.loads(out.read_text())
    assert saved["seed"] == 123 and saved["num_examples"] == 3
    rows = saved["rows"]
    assert len(rows) == 2 * 2 * 2  # 2 settings, 2 layers, 2 heads
    assert all(0 < r[c] < 1 for r in rows for c in ("key", "value", "query", "after_query", "after_query_late"))
    assert done.stdout.count("| run | 4,32 |") == 4 and "after query late" in done.stdout


def test_an_ungated_checkpoint_is_refused_in_one_line(tmp_path):
    done = run_script(SCRIPT, str(small_checkpoint(tmp_path)), "--settings", "4,32")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no write gate" in done.stderr
    done = run_script(SCRIPT, str(small_checkpoint(tmp_path, write_gate=True)), "--num-examples", "0")
    assert done.returncode == 2 and "--num-examples" in done.stderr


INTERVENTION = Path(__file__).parents[2] / "benchmarks" / "mqar_gate_intervention.py"


def test_the_intervention_lists_each_variant_with_its_errors(tmp_path):
    out = tmp_path / "closed.json"
    done = run_script(INTERVENTION, str(small_checkpoint(tmp_path, write_gate=True)), "--settings", "4,32",
                      "--num-examples", "5", "--batch-size", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["as trained", "closed in layer 1", "closed in layer 2",
                                            "closed in every layer"]
    assert [r["closed_layers"] for r in rows] == [None, [0], [1], [0, 1]]
    assert all(r["queries"] == 5 * 4 and sum(r["by_query_quarter"]) == r["errors"] for r in rows)
    done = run_script(INTERVENTION, str(small_checkpoint(tmp_path)), "--settings", "4,32")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no write gate" in done.stderr


def test_a_bad_batch_size_is_refused_before_any_checkpoint_loads(tmp_path):
    done = run_script(INTERVENTION, str(tmp_path / "missing"), "--batch-size", "0")
    last = done.stderr.strip().splitlines()[-1]  # argparse's usage, then one error line, and no traceback
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert last == "mqar_gate_intervention.py: error: argument --batch-size: must be an int >= 1, got '0'"


def test_by_role_adds_the_random_tokens_and_the_queries_apart(tmp_path):
    out = tmp_path / "roles.json"
    done = run_script(INTERVENTION, str(small_checkpoint(tmp_path, write_gate=True)), "--settings", "4,32",
                      "--num-examples", "3", "--by-role", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["closed_tokens"], r["closed_layers"]) for r in rows] == [(None, None)] + [
        (role, layers) for role in ("all", "random", "queries") for layers in ([0], [1], [0, 1])]
    assert rows[4]["variant"] == "random tokens' closed in layer 1"
    assert rows[9]["variant"] == "queries' closed in every layer"


def _intervention_module():
    return load_script(INTERVENTION)


def test_each_batch_gets_its_own_sequences_mask(monkeypatch):
    import contextlib

    import torch

    from ramnet.data.mqar import MQARSetting, multiquery_ar

    module = _intervention_module()
    x, y = multiquery_ar(MQARSetting(vocab_size=128, seq_len=32, num_kv_pairs=4), 5, seed=1)
    closed = module._closed_mask(y, 4, "random")
    closed[3, 9] = False  # one row unlike the others, so a mask sliced from the wrong rows shows
    seen = []

    @contextlib.contextmanager
    def record(model, mask, layers):
        seen.append(("mask", mask.clone(), layers))
        yield model

    def outcomes(model, ids, labels, pairs, batch_size):
        seen.append(("ids", ids.clone(), None))
        return {"correct": torch.ones(len(ids) * pairs, dtype=torch.bool), "rank": torch.arange(pairs).repeat(len(ids))}

    monkeypatch.setattr(module, "writes_closed_where", record)
    monkeypatch.setattr(module, "query_outcomes", outcomes)
    counts = module._errors(None, x, y, 4, 2, closed, [1])
    assert counts == {"queries": 20, "errors": 0, "by_query_quarter": [0, 0, 0, 0]}
    masks, batches = [m for kind, m, _ in seen if kind == "mask"], [i for kind, i, _ in seen if kind == "ids"]
    assert [len(b) for b in batches] == [2, 2, 1] and all(layers == [1] for kind, _, layers in seen if kind == "mask")
    for mask, ids in zip(masks, batches):
        rows = [int((x == row).all(1).nonzero()) for row in ids]
        assert torch.equal(mask, closed[rows])


def test_the_role_masks_split_the_query_phase():
    import torch

    from ramnet.data.mqar import MQARSetting, multiquery_ar

    module = _intervention_module()
    x, y = multiquery_ar(MQARSetting(vocab_size=128, seq_len=32, num_kv_pairs=4), 5, seed=1)
    every, random, queries = (module._closed_mask(y, 4, role) for role in ("all", "random", "queries"))
    assert not every[:, :8].any() and every[:, 8:].all()
    assert torch.equal(random | queries, every) and not (random & queries).any()
    assert torch.equal(queries.sum(1), torch.full((5,), 4))  # one per pair
    assert torch.equal(x[queries].view(5, 4).sort(1).values, x[:, 0:8:2].sort(1).values)  # the keys come back
