"""Slot traces of a model and the sweep plots (`ramnet plot --mqar / --ablations / --slots`)."""
import json

import pytest
import torch

from ramnet import RamNetConfig, RamNetForCausalLM
from ramnet.analysis import read_write_overlap, slot_traces
from ramnet.checkpoint import write_model
from ramnet.cli import main

pytest.importorskip("matplotlib")


def _model(**overrides):
    torch.manual_seed(0)
    return RamNetForCausalLM(RamNetConfig.from_name("tiny", **{"cape_all_heads_layers": 1,
                                                               "cape_half_heads_layers": 0, **overrides}))


def test_slot_traces_shapes_and_the_cape_shift():
    model = _model()
    ids = torch.randint(0, 128, (2, 20))
    traces = slot_traces(model, ids)
    assert len(traces) == 2 and traces[0]["cape"] == [True, True] and traces[1]["cape"] == [False, False]
    M = model.config.num_slots
    for t in traces:
        assert t["write"].shape == t["read"].shape == (20, 2)
        assert int(t["write"].min()) >= 0 and int(t["write"].max()) < M
    # the same layer without CAPE: its raw slots, shifted by -t mod M, are layer 1's CAPE slots
    plain = slot_traces(_model(cape_all_heads_layers=0), ids)
    expected = torch.remainder(plain[0]["write"] - torch.arange(20).view(-1, 1), M)
    assert torch.equal(traces[0]["write"], expected)


def test_read_write_overlap_counts_shared_slots_of_the_bound_position():
    """With q and k tied and each query bound to itself, a query reads exactly the K slots it writes; against
    other positions it shares fewer (random tokens, random projections)."""
    model = _model(cape_all_heads_layers=0)
    for block in model.blocks:
        block.mixer.k_proj.weight.data.copy_(block.mixer.q_proj.weight.data)
    ids = torch.randint(0, 128, (1, 24), generator=torch.Generator().manual_seed(0))
    positions = list(range(0, 24, 3))
    layers = read_write_overlap(model, ids, positions, positions)
    K = model.config.top_k
    assert len(layers) == 2
    for layer in layers:
        assert layer["bound"] == [pytest.approx(K)] * 2 and all(0 <= o < K for o in layer["other"])
    shifted = read_write_overlap(model, ids, positions, positions[1:] + positions[:1])  # bound elsewhere
    assert all(b < K for layer in shifted for b in layer["bound"])


def test_read_write_overlap_refuses_unpaired_or_outside_positions():
    model, ids = _model(), torch.randint(0, 128, (1, 10))
    with pytest.raises(ValueError, match="pair up"):
        read_write_overlap(model, ids, [1, 2], [3])
    for bad in ([1, 10], [1, -1], [1, 2.0], [1, True]):
        with pytest.raises(ValueError, match=r"in \[0, 10\)"):
            read_write_overlap(model, ids, bad, [3, 4])
    assert len(read_write_overlap(model, ids, torch.tensor([1, 2]), [3, 4])) == 2  # tensor positions are fine
    with pytest.raises(TypeError, match="RamNetForCausalLM"):
        read_write_overlap(torch.nn.Linear(2, 2), ids, [1, 2], [3, 4])


def test_slot_traces_refuse_other_models_and_bad_ids():
    with pytest.raises(TypeError, match="RamNetForCausalLM"):
        slot_traces(torch.nn.Linear(2, 2), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        slot_traces(_model(), torch.zeros(3, dtype=torch.long))


def _summary(tmp_path):
    rows = [{"model": "ramnet", "state_size": s, "accuracy": a, "lr": 1e-3, "tags": {"ablation": "U", "M": M, "U": u}}
            for s, a, M, u in ((3e3, 0.4, 256, 1), (8e3, 0.7, 256, 4), (2.6e4, 0.95, 1024, 5), (6.6e4, 0.99, 1024, 2))]
    rows += [{"model": "deltanet", "state_size": 1.6e4, "accuracy": 0.8, "lr": 1e-3},
             {"model": "attention", "state_size": 5.2e5, "accuracy": 1.0, "lr": 1e-3}]
    path = tmp_path / "mqar.json"
    path.write_text(json.dumps(rows))
    return path


def test_plot_state_sweep_and_u_ablation(tmp_path):
    summary = _summary(tmp_path)
    assert main(["plot", "--mqar", str(summary), "--out", str(tmp_path / "state.png")]) == 0
    assert main(["plot", "--ablations", str(summary), "--out", str(tmp_path / "u.png")]) == 0
    assert (tmp_path / "state.png").stat().st_size > 5000 and (tmp_path / "u.png").stat().st_size > 5000


def test_plot_slots_from_a_checkpoint(tmp_path, capsys):
    write_model(_model(), tmp_path / "ckpt")
    assert main(["plot", "--slots", str(tmp_path / "ckpt"), "--seq-len", "32", "--num-kv-pairs", "4",
                 "--out", str(tmp_path / "slots.png")]) == 0
    assert (tmp_path / "slots.png").stat().st_size > 5000
    printed = capsys.readouterr().out
    assert "of K=4; 32 queries in 8 sequences" in printed
    assert printed.count("\n  layer ") == 4  # 2 layers x 2 heads
    assert main(["plot", "--slots", str(tmp_path / "ckpt"), "--seq-len", "32", "--num-kv-pairs", "1",
                 "--out", str(tmp_path / "slots1.png")]) == 0
    assert "needs at least 2 key-value pairs" in capsys.readouterr().out
    assert main(["plot", "--slots", str(tmp_path / "ckpt"), "--seq-len", "32", "--num-kv-pairs", "4",
                 "--num-examples", "1", "--out", str(tmp_path / "slots2.png")]) == 0
    assert "4 queries in 1 sequence)" in capsys.readouterr().out
    assert main(["plot", "--slots", str(tmp_path / "ckpt"), "--num-examples", "0",
                 "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "--num-examples must be an integer >= 1, got 0" in err and err.count("\n") == 1


def _sweep_file(path):
    history = [{"step": 2, "loss": 8.0, "accuracy": 0.1}, {"step": 4, "loss": 6.0, "accuracy": 0.4}]
    path.write_text(json.dumps({"runs": [{"id": "a-lr0.001-s0", "history": history},
                                         {"id": "b-lr0.001-s0", "history": history[:1]}],
                                "unfinished": [{"id": "c-lr0.001-s0", "history": history[:1]}]}))
    return path


def test_plot_sweep_curves_finished_and_unfinished_runs(tmp_path):
    sweep = _sweep_file(tmp_path / "mqar_sweep.json")
    assert main(["plot", "--curves", str(sweep), "--out", str(tmp_path / "all.png")]) == 0
    assert main(["plot", "--curves", str(sweep), "--only", "a-*,c-*", "--out", str(tmp_path / "some.png")]) == 0
    assert (tmp_path / "all.png").stat().st_size > 5000 and (tmp_path / "some.png").stat().st_size > 5000


@pytest.mark.parametrize("argv, match", [
    (["plot", "--curves", "SWEEP", "--only", "z*", "--out", "c.png"], "matches no run with a curve"),
    (["plot", "--curves", "ROWS", "--out", "c.png"], "is not a sweep file"),
    (["plot", "--curves", "NOLOSS", "--out", "c.png"], "is not a sweep file"),
    (["plot", "--mqar", "ROWS", "--only", "a*", "--out", "s.png"], "--only selects runs for --curves only"),
    (["plot"], "give one of"),
    (["plot", "--mqar", "x.json"], "needs --out"),
    (["plot", "--ablations", "ROWS", "--out", "u.png"], "holds no rows tagged ablation: U"),
    (["plot", "--mqar", "BAD", "--out", "s.png"], "is not a sweep summary"),
    (["plot", "--ablations", "NOM", "--out", "u.png"], "needs integer tags M and U"),
])
def test_plot_errors_are_one_line(tmp_path, capsys, argv, match):
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"model": "ramnet", "state_size": 1, "accuracy": 0.5}]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"not": "rows"}))
    no_m = tmp_path / "nom.json"
    no_m.write_text(json.dumps([{"model": "ramnet", "state_size": 1, "accuracy": 0.5, "tags": {"ablation": "U"}}]))
    no_loss = tmp_path / "noloss.json"
    no_loss.write_text(json.dumps({"runs": [], "unfinished": [{"id": "a", "history": [{"step": 2}]}]}))
    files = {"ROWS": rows, "BAD": bad, "NOM": no_m, "SWEEP": _sweep_file(tmp_path / "sweep.json"), "NOLOSS": no_loss}
    argv = [str(files[a]) if a in files else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_state_series_split_ramnet_by_conv_and_take_the_best_variant_per_state(tmp_path):
    from ramnet.plots import state_series

    rows = [{"model": "ramnet", "short_conv": True, "state_size": 8192, "accuracy": 0.6},
            {"model": "ramnet", "short_conv": True, "state_size": 8192, "accuracy": 0.7},   # a better variant
            {"model": "ramnet", "short_conv": True, "state_size": 4096, "accuracy": 0.5},
            {"model": "ramnet", "short_conv": False, "state_size": 16640, "accuracy": 0.8},
            {"model": "gla", "state_size": 2048, "accuracy": 0.1}]
    assert state_series(rows) == {"RAM-Net, short conv": [(4096, 0.5), (8192, 0.7)],
                                  "RAM-Net, paper architecture (no conv)": [(16640, 0.8)],
                                  "GLA (fla)": [(2048, 0.1)]}
    second = tmp_path / "paper_arch.json"
    second.write_text(json.dumps(rows[3:4]))
    assert main(["plot", "--mqar", str(_summary(tmp_path)), str(second), "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 5000


def test_state_series_parts_a_baseline_by_conv_only_where_its_rows_differ():
    """One line must not join a baseline's runs with and without the short conv (GLA's rows have both)."""
    from ramnet.plots import state_series

    rows = [{"model": "gla", "short_conv": False, "state_size": 2048, "accuracy": 0.0},
            {"model": "gla", "short_conv": True, "state_size": 32768, "accuracy": 0.98},
            {"model": "gla", "short_conv": False, "state_size": 131072, "accuracy": 0.07},
            {"model": "deltanet", "short_conv": True, "state_size": 4096, "accuracy": 0.7}]
    assert state_series(rows) == {"GLA (fla), no short conv": [(2048, 0.0), (131072, 0.07)],
                                  "GLA (fla), short conv": [(32768, 0.98)],
                                  "DeltaNet (fla)": [(4096, 0.7)]}


@pytest.mark.parametrize("count", [1, 10, 14, 20, 45])
def test_curve_looks_are_distinct(count):
    from ramnet.plots import curve_looks

    looks = curve_looks(count)
    assert len(looks) == count
    assert len({(look["color"], look["marker"]) for look in looks}) == count


def _mqar_batch(model, pairs=4, seq_len=32, examples=3):
    from ramnet.data.mqar import MQARSetting, multiquery_ar
    return multiquery_ar(MQARSetting(vocab_size=model.config.vocab_size, seq_len=seq_len, num_kv_pairs=pairs),
                         examples, seed=1)


def _half_right(model, labels):
    """Make the model answer every other query right and the rest wrong (an untrained model gets none right, so
    the "right" figures would go unchecked): its forward returns one-hot logits."""
    V = model.config.vocab_size
    queries = (labels != -100).nonzero()
    answers = torch.zeros_like(labels)  # token 0 is never a value
    keep = queries[::2]
    answers[keep[:, 0], keep[:, 1]] = labels[keep[:, 0], keep[:, 1]]
    model.forward = lambda input_ids, *args, **kwargs: torch.nn.functional.one_hot(answers, V).float()
    return int(len(keep)), int(len(queries) - len(keep))


@pytest.mark.parametrize("write_offset", [0, 2])
@pytest.mark.parametrize("preset", ["tiny", "mqar-tiny"])
def test_pair_interference_matches_a_count_by_sets(write_offset, preset):
    """Every figure recounted with Python sets from the slot sets, for a plain model and one with the short conv
    and CAPE on layer 1, with right and wrong answers both present."""
    from ramnet.analysis import _slot_sets, pair_interference
    from ramnet.data.mqar import query_bindings

    torch.manual_seed(0)
    model = RamNetForCausalLM(RamNetConfig.from_name(preset, cape_all_heads_layers=1, cape_half_heads_layers=0))
    ids, labels = _mqar_batch(model)
    right_count, wrong_count = _half_right(model, labels)
    layers = pair_interference(model, ids, labels, 4, write_offset=write_offset)
    K, M = model.config.top_k, model.config.num_slots
    correct = model(ids).argmax(-1) == labels
    assert layers[0][0]["cape"] and not layers[1][0]["cape"]
    for li in range(2):
        for h in range(2):
            shared, pairs, groups = 0, 0, {"right": [], "wrong": []}
            for row in range(ids.shape[0]):
                sets = _slot_sets(model, ids[row:row + 1])[li]
                where = [2 * i + 1 + write_offset for i in range(4)]
                writes = [set(sets["write"][w, h].tolist()) for w in where]
                shared += sum(len(a & b) for i, a in enumerate(writes) for j, b in enumerate(writes) if i != j)
                pairs += 4 * 3
                for q, b in zip(*query_bindings(ids[row], labels[row], 4)):
                    read = set(sets["read"][q, h].tolist())
                    own = (b - 1) // 2
                    seen = [len(read & w) if where[i] <= q else 0 for i, w in enumerate(writes)]  # written by q
                    groups["right" if correct[row, q] else "wrong"].append((sum(seen) - seen[own], seen[own]))
            e = layers[li][h]
            assert e["chance"] == pytest.approx(K * K / M) and e["write_shared"] == pytest.approx(shared / pairs)
            assert (e["right"], e["wrong"]) == (right_count, wrong_count) == tuple(len(groups[g]) for g in groups)
            for g, found in groups.items():
                assert e[f"hits_{g}"] == pytest.approx(sum(o for o, _ in found) / len(found))
                assert e[f"bound_{g}"] == pytest.approx(sum(b for _, b in found) / len(found))


def test_one_pass_for_several_offsets_gives_what_each_offset_gives_alone():
    import math

    from ramnet.analysis import pair_interference, pair_interference_by_offset

    model = _model(cape_all_heads_layers=0)
    ids, labels = _mqar_batch(model)
    together = pair_interference_by_offset(model, ids, labels, 4, [0, 3])
    assert sorted(together) == [0, 3]
    for offset in (0, 3):
        alone = pair_interference(model, ids, labels, 4, write_offset=offset)
        for a, b in zip(sum(together[offset], []), sum(alone, [])):
            assert a.keys() == b.keys()
            assert all(a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) for k in a)
    with pytest.raises(ValueError, match="write_offset must be an int"):
        pair_interference_by_offset(model, ids, labels, 4, [])


def test_pair_interference_sees_every_pair_in_the_same_slots():
    """With k's projection zeroed every token writes the same K slots, so two pairs share all K of them."""
    from ramnet.analysis import pair_interference

    model = _model(cape_all_heads_layers=0)
    for block in model.blocks:
        block.mixer.k_proj.weight.data.zero_()
    ids, labels = _mqar_batch(model)
    for layer in pair_interference(model, ids, labels, 4):
        assert all(e["write_shared"] == pytest.approx(model.config.top_k) for e in layer)


def test_pair_interference_refuses_bad_input():
    from ramnet.analysis import pair_interference

    model = _model(cape_all_heads_layers=0)
    ids, labels = _mqar_batch(model)
    with pytest.raises(ValueError, match="num_kv_pairs must be an int >= 2"):
        pair_interference(model, ids, labels, 1)
    with pytest.raises(ValueError, match="labels must match"):
        pair_interference(model, ids, labels[:, :-1], 4)
    with pytest.raises(ValueError, match="not an MQAR sequence with 5 pairs"):
        pair_interference(model, ids, labels, 5)
    for bad in (-1, 25, 1.0, True):  # 32 tokens, 4 pairs: the last value at 7, so offsets up to 24
        with pytest.raises(ValueError, match=r"write_offset must be an int in \[0, 24\]"):
            pair_interference(model, ids, labels, 4, write_offset=bad)
    assert len(pair_interference(model, ids, labels, 4, write_offset=24)) == 2
    with pytest.raises(ValueError, match="input_ids must be an int64 tensor"):
        pair_interference(model, ids.float(), labels, 4)
    with pytest.raises(ValueError, match="labels hold no query"):
        pair_interference(model, ids, torch.full_like(labels, -100), 4)
    with pytest.raises(ValueError, match="do not fit in seq_len=4"):
        pair_interference(model, ids[:, :4], labels[:, :4], 3)
    from ramnet.analysis import pair_interference_by_offset
    with pytest.raises(ValueError, match="write_offsets must be a list of ints, got 3"):
        pair_interference_by_offset(model, ids, labels, 4, 3)
