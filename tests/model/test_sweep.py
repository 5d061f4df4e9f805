"""The MQAR sweep harness (`ramnet sweep`): the protocol's data and schedule, the baselines' state sizes, the grid,
skipping finished runs, failed runs, the best-learning-rate summary, and the spec's error messages."""
import json

import pytest
import torch

from ramnet.baselines import BaselineLM, build_model
from ramnet.cli import main
from ramnet.config import RamNetConfig, state_accounting
from ramnet.data.mqar_protocol import ProtocolData, protocol_settings, setting_schedule
from ramnet.sweep import SpecError, check_spec, expand, summarize

ATTN = {"label": "attn", "model": "attention", "d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64,
        "tags": {"family": "attention"}}
RAM = {"label": "ram", "model": "ramnet", "preset": "tiny"}


def _spec(tmp_path, **changes):
    spec = {"name": "t", "out": str(tmp_path / "out"), "steps": 4, "batch_size": 8, "lrs": [1e-3, 3e-3],
            "num_train": 32, "num_eval": 8, "eval_every": 2, "settings": [[2, 16], [4, 32]], "vocab_size": 64,
            "precision": "fp32", "device": "cpu", "models": [RAM, ATTN]}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**spec, **changes}))
    return path


def test_schedule_gives_every_setting_the_same_steps_up_to_one():
    counts = torch.bincount(torch.tensor(setting_schedule(7, 100, torch.Generator().manual_seed(0))), minlength=7)
    assert int(counts.max() - counts.min()) <= 1 and int(counts.sum()) == 100


def test_protocol_data_has_one_split_per_setting_with_its_length():
    settings = protocol_settings([(2, 16), (4, 32)], 64)
    data = ProtocolData.make(settings, num_train=6, num_eval=3, seed=0)
    assert [x.shape for x, _, _ in data.train] == [(6, 16), (6, 32)]
    assert [pos.shape[1] for _, pos, _ in data.train] == [2, 4]  # one labelled position per key-value pair
    assert [x.shape for x, _ in data.eval] == [(3, 16), (3, 32)]
    assert not torch.equal(data.eval[0][0], data.train[0][0][:3])  # eval examples are drawn apart


@pytest.mark.parametrize("pairs", [[(2, 16), (2, 16)], [(9, 16)], [], [(2,)]])
def test_protocol_settings_are_checked(pairs):
    with pytest.raises(ValueError):
        protocol_settings(pairs, 64)


def test_state_sizes_follow_each_family():
    model, state, config = build_model(RAM, vocab_size=64, max_seq_len=32)
    assert state == state_accounting(RamNetConfig.from_name("tiny"))["total"] == 2 * 2 * 64 * 17
    model, state, _ = build_model(ATTN, vocab_size=64, max_seq_len=1024)
    assert state == 2 * 1 * 32 * 1024  # the KV cache at the longest setting


@pytest.mark.parametrize("layer", [{}, {"positions": "rope"}], ids=["learned", "rope"])
def test_attention_baseline_is_causal(layer):
    torch.manual_seed(0)
    model, _, config = build_model({"model": "attention", "d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 32,
                                    "layer": layer}, vocab_size=40, max_seq_len=12)
    assert (model.positions is None) == (layer == {"positions": "rope"}) and config["layer"] == layer
    ids = torch.randint(0, 40, (1, 12))
    changed = ids.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % 40
    with torch.no_grad():
        a, b = model.eval()(ids), model(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_rope_rotates_q_and_k_by_position():
    """``layer: {positions: rope}`` rotates q and k: position 0 (one key, no rotation) is unchanged, the rest move."""
    torch.manual_seed(0)
    block = BaselineLM("attention", vocab_size=40, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_seq_len=12,
                       positions="rope").mixers[0]
    x = torch.randn(1, 6, 16)
    with torch.no_grad():
        rotated = block(x)
        block.rope = False
        plain = block(x)
    torch.testing.assert_close(rotated[:, 0], plain[:, 0])
    assert not torch.allclose(rotated[:, 1:], plain[:, 1:])


@pytest.mark.parametrize("layer, message", [
    ({"positions": "alibi"}, "positions must be one of"),
    ({"core": "torch"}, "only the layer option positions"),
])
def test_attention_baseline_refuses_unknown_layer_options(layer, message):
    with pytest.raises(ValueError, match=message):
        build_model({"model": "attention", "d_model": 16, "n_heads": 2, "layer": layer}, vocab_size=40,
                    max_seq_len=12)


def test_rope_attention_needs_an_even_head_width():
    with pytest.raises(ValueError, match="even head width"):
        build_model({"model": "attention", "d_model": 18, "n_heads": 2, "layer": {"positions": "rope"}},
                    vocab_size=40, max_seq_len=12)


def test_fla_baselines_say_what_is_missing():
    pytest.importorskip("torch")
    try:
        import fla  # noqa: F401
        pytest.skip("fla is installed here: the missing-package message is not exercised")
    except ImportError:
        pass
    with pytest.raises(ImportError, match="needs fla"):
        build_model({"model": "deltanet"}, vocab_size=64, max_seq_len=32)


def test_sweep_runs_the_grid_then_skips_it(tmp_path, capsys):
    spec = _spec(tmp_path)
    assert main(["sweep", str(spec), "--quiet"]) == 0
    assert "4 ran, 0 skipped" in capsys.readouterr().out
    out = tmp_path / "out"
    results = sorted(p.parent.name for p in out.glob("runs/*/result.json"))
    assert results == ["attn-lr0.001-s0", "attn-lr0.003-s0", "ram-lr0.001-s0", "ram-lr0.003-s0"]
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    assert main(["sweep", str(spec), "--quiet"]) == 0
    assert "0 ran, 4 skipped" in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    rows = json.loads((out / "mqar.json").read_text())
    assert [r["label"] for r in rows] == ["ram", "attn"]
    assert rows[1]["tags"] == {"family": "attention"} and rows[0]["tags"] == {}
    for row in rows:
        assert {"model", "state_size", "accuracy", "lr", "config", "short_conv", "steps", "seconds"} <= set(row)
        assert row["steps"] == 4 and set(row["lr_sweep"]) == {"0.001", "0.003"}
    sweep = json.loads((out / "mqar_sweep.json").read_text())
    assert len(sweep["runs"]) == 4 and set(sweep["runs"][0]["accuracies"]) == {"N2-T16", "N4-T32"}
    assert [h["step"] for h in sweep["runs"][0]["history"]] == [2, 4]
    profile = sweep["runs"][0]["final_profile"]  # fp32 runs: no second score in fp32
    assert profile["precision"] == "fp32" and "fp32_accuracies" not in profile
    for name, accuracy in sweep["runs"][0]["accuracies"].items():
        assert 1 - profile["settings"][name]["errors"] / profile["settings"][name]["queries"] == \
            pytest.approx(accuracy)


def test_a_sweep_continues_from_its_summary_file_alone(tmp_path, capsys):
    import shutil

    spec = _spec(tmp_path, lrs=[1e-3], models=[ATTN])
    assert main(["sweep", str(spec), "--quiet"]) == 0
    shutil.rmtree(tmp_path / "out" / "runs")  # another machine: only mqar_sweep.json came back
    assert main(["sweep", str(spec), "--dry-run"]) == 0
    assert "1 runs, 1 done, 0 to run" in capsys.readouterr().out
    assert main(["sweep", str(spec), "--quiet"]) == 0
    assert "0 ran, 1 skipped" in capsys.readouterr().out
    assert (tmp_path / "out" / "runs" / "attn-lr0.001-s0" / "result.json").is_file()
    (tmp_path / "out" / "mqar_sweep.json").write_text("[1, 2]")
    shutil.rmtree(tmp_path / "out" / "runs")
    assert main(["sweep", str(spec), "--quiet"]) == 2
    assert "is not a sweep summary" in capsys.readouterr().err


def test_a_model_that_cannot_be_built_is_refused_before_any_run(tmp_path, capsys):
    spec = _spec(tmp_path, models=[ATTN, {"label": "bad", "model": "attention", "d_model": 30, "n_heads": 4}])
    assert main(["sweep", str(spec), "--quiet"]) == 2
    assert "model bad: d_model (30) must be divisible by n_heads (4)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_workers_record_a_failing_run_and_the_others_finish(tmp_path):
    from ramnet.sweep import execute

    spec = check_spec({**json.loads(_spec(tmp_path, lrs=[1e-3], models=[ATTN]).read_text()), "parallel": 2,
                       "seeds": [0, 1]})
    runs = expand(spec)
    runs[1]["spec"] = {**runs[1]["spec"], "d_model": 30, "n_heads": 4}  # fails in the worker, not before
    assert execute(spec, runs, progress=False) == [runs[1]["id"]]
    bad = tmp_path / "out" / "runs" / runs[1]["id"]
    assert "divisible" in (bad / "error.txt").read_text() and "Traceback" in (bad / "log.txt").read_text()
    assert (tmp_path / "out" / "runs" / runs[0]["id"] / "result.json").is_file()


def test_workers_share_the_cores_unless_the_caller_set_the_threads():
    from ramnet.sweep import worker_env

    assert worker_env(2, environ={}, cpu_count=2)["OMP_NUM_THREADS"] == "1"
    assert worker_env(8, environ={}, cpu_count=16)["OMP_NUM_THREADS"] == "2"
    assert worker_env(4, environ={}, cpu_count=2)["OMP_NUM_THREADS"] == "1"  # never 0
    assert worker_env(2, environ={"OMP_NUM_THREADS": "3", "X": "y"}, cpu_count=2) == {"OMP_NUM_THREADS": "3",
                                                                                     "X": "y"}


def test_a_changed_spec_runs_again_and_a_narrower_one_keeps_the_rest(tmp_path, capsys):
    spec = _spec(tmp_path, models=[ATTN])
    assert main(["sweep", str(spec), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["sweep", str(_spec(tmp_path, models=[ATTN], steps=2)), "--quiet"]) == 0
    assert "2 ran, 0 skipped" in capsys.readouterr().out  # other arguments: not reused
    assert main(["sweep", str(_spec(tmp_path, models=[ATTN], steps=2, lrs=[1e-3])), "--quiet"]) == 0
    assert "0 ran, 1 skipped" in capsys.readouterr().out
    kept = json.loads((tmp_path / "out" / "mqar_sweep.json").read_text())["runs"]
    assert sorted(r["id"] for r in kept) == ["attn-lr0.001-s0", "attn-lr0.003-s0"]


def test_best_lr_is_the_best_mean_over_seeds(tmp_path):
    spec = check_spec(json.loads(_spec(tmp_path, lrs=[1e-3, 3e-3], seeds=[0, 1], models=[ATTN]).read_text()))
    accuracy = {(1e-3, 0): 0.9, (1e-3, 1): 0.1, (3e-3, 0): 0.6, (3e-3, 1): 0.6}  # best single run is not best lr
    for run in expand(spec):
        path = tmp_path / "out" / "runs" / run["id"]
        path.mkdir(parents=True)
        (path / "result.json").write_text(json.dumps({
            "id": run["id"], "fingerprint": run["fingerprint"], "label": "attn", "model": "attention",
            "state_size": 1, "lr": run["lr"], "seed": run["seed"], "steps": 4, "accuracy": accuracy[(run["lr"], run["seed"])], "seconds": 1.0, "config": {},
            "short_conv": False}))
    _, best = summarize(spec, expand(spec))
    assert best[0]["lr"] == 3e-3 and best[0]["accuracy"] == pytest.approx(0.6) and best[0]["seeds"] == 2
    assert best[0]["lr_sweep"] == {"0.001": pytest.approx(0.5), "0.003": pytest.approx(0.6)}
    assert best[0]["complete"]
    # an lr with one lucky finished seed does not beat one whose seeds all finished
    (tmp_path / "out" / "runs" / "attn-lr0.003-s1" / "result.json").unlink()
    _, best = summarize(spec, expand(spec))
    assert best[0]["lr"] == 1e-3 and best[0]["complete"]
    # a result written under other arguments is not this run's
    changed = check_spec({**spec, "steps": 5})
    assert summarize(changed, expand(changed)) == ([], [])


@pytest.mark.parametrize("change, match", [
    ({"lrs": []}, "lrs must be a non-empty list"),
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"seeds": [0, 0]}, "seeds must not repeat"),
    ({"lrs": [1e999]}, "finite number > 0"),
    ({"precision": "fp64"}, "precision"),
    ({"device": "tpu"}, "device"),
    ({"out": ""}, "out must be a directory path"),
    ({"models": [{"label": "r", "model": "ramnet", "preset": "tiny", "d_model": 32}]}, "unknown key(s) ['d_model']"),
    ({"models": [{"label": "r", "model": "ramnet", "preset": "nope"}]}, "model r: unknown preset"),
    ({"models": [{"label": "r", "model": "ramnet", "preset": "tiny", "overrides": {"d_v": 0}}]}, "model r:"),
    ({"settings": [[2.5, 16]]}, "settings:"),
    ({"settings": [[True, 16]]}, "settings:"),
    ({"models": [{"label": "x y", "model": "attention"}]}, "label of letters"),
    ({"models": [{"label": "x", "model": "mamba"}]}, "model must be one of"),
    ({"models": [ATTN, ATTN]}, "used twice"),
    ({"settings": [[9, 16]]}, "settings: num_kv_pairs"),
    ({"stepz": 3}, "unknown key"),
    ({"models": [{**ATTN, "layers": 2}]}, "unknown key(s) ['layers']"),
    ({"models": [{**ATTN, "tags": [1]}]}, "tags must be a mapping"),
    ({"models": [{**ATTN, "lrs": []}]}, "model attn: lrs must be a non-empty list"),
    ({"models": [{**RAM, "lrs": [0.0]}]}, "model ram: each of lrs must be a finite number > 0"),
])
def test_bad_specs_get_one_line_naming_the_key(tmp_path, capsys, change, match):
    spec = _spec(tmp_path, **change)
    assert main(["sweep", str(spec)]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and "Traceback" not in err


def test_spec_file_type_and_existence(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "spec.txt").write_text("{}")
    assert main(["sweep", str(tmp_path / "spec.txt")]) == 2
    assert "must be .yaml, .yml or .json" in capsys.readouterr().err
    with pytest.raises(SpecError, match="models must be a non-empty list"):
        check_spec({"out": "x"})


def test_yaml_spec_and_dry_run(tmp_path, capsys):
    pytest.importorskip("yaml")
    (tmp_path / "s.yaml").write_text(
        f"out: {tmp_path / 'o'}\nsteps: 2\nlrs: [0.001]\nseeds: [0, 1]\nsettings: [[2, 16]]\nvocab_size: 64\n"
        "models:\n  - {label: attn, model: attention, d_model: 16, n_layers: 1, n_heads: 2, d_ff: 32}\n")
    assert main(["sweep", str(tmp_path / "s.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 runs, 0 done, 2 to run" in out and "attn-lr0.001-s1" in out
    assert not (tmp_path / "o").exists()  # a dry run writes nothing


def test_summaries_are_rewritten_after_every_run(tmp_path):
    from ramnet.sweep import execute

    spec = check_spec(json.loads(_spec(tmp_path, lrs=[1e-3, 3e-3], models=[ATTN]).read_text()))
    seen = []
    execute(spec, expand(spec), progress=False,
            on_done=lambda: seen.append(len(list((tmp_path / "out").glob("runs/*/result.json")))))
    assert seen == [1, 2]  # called once per finished run, with that run's result already written


def test_runs_go_lr_by_lr_so_a_cut_sweep_covers_every_model(tmp_path):
    other = {**ATTN, "label": "other"}
    spec = check_spec(json.loads(_spec(tmp_path, lrs=[1e-3, 3e-3], models=[ATTN, other]).read_text()))
    assert [(r["lr"], r["label"]) for r in expand(spec)] == [
        (1e-3, ATTN["label"]), (1e-3, "other"), (3e-3, ATTN["label"]), (3e-3, "other")]


def test_an_entrys_own_lrs_replace_the_specs_and_keep_the_runs_fingerprints(tmp_path):
    """More seeds at one model's best lr: the entry runs at its lrs only, in order after the spec's, and a run
    keeps the fingerprint it has in a spec without ``lrs`` (so summaries of both specs describe the same runs)."""
    other = {**ATTN, "label": "other", "lrs": [1e-2, 3e-3]}
    spec = check_spec(json.loads(_spec(tmp_path, lrs=[1e-3, 3e-3], models=[ATTN, other]).read_text()))
    assert [(r["lr"], r["label"]) for r in expand(spec)] == [
        (1e-3, ATTN["label"]), (3e-3, ATTN["label"]), (3e-3, "other"), (1e-2, "other")]
    plain = check_spec(json.loads(_spec(tmp_path, lrs=[3e-3], models=[{**ATTN, "label": "other"}]).read_text()))
    with_lrs = {r["id"]: r["fingerprint"] for r in expand(spec)}
    assert all(with_lrs[r["id"]] == r["fingerprint"] for r in expand(plain))


def test_a_failing_error_profile_keeps_the_runs_result(tmp_path, monkeypatch, capsys):
    import ramnet.sweep_run as sweep_run

    def refuse(*args):
        raise RuntimeError("this kernel refuses fp32")

    monkeypatch.setattr(sweep_run, "final_profile", refuse)
    spec = _spec(tmp_path, lrs=[1e-3], models=[RAM])
    assert main(["sweep", str(spec), "--quiet"]) == 0
    assert "1 ran, 0 skipped" in capsys.readouterr().out
    run = json.loads((tmp_path / "out" / "mqar_sweep.json").read_text())["runs"][0]
    assert run["final_profile"]["error"] == "RuntimeError: this kernel refuses fp32" and run["steps"] == 4
    assert set(run["final_profile"]) == {"error", "seconds", "peak_mib"}


def test_the_result_is_written_before_the_profile_starts(tmp_path, monkeypatch):
    """A deadline's interrupt during the profile must leave the trained run's result whole."""
    import ramnet.sweep_run as sweep_run
    from ramnet.sweep import load_spec

    seen = {}

    def profile_that_looks(model, data, precision):
        seen.update(json.loads((tmp_path / "run" / "result.json").read_text()))
        return {"precision": precision, "settings": {}}

    monkeypatch.setattr(sweep_run, "final_profile", profile_that_looks)
    (tmp_path / "run").mkdir()
    run = expand(load_spec(_spec(tmp_path, lrs=[1e-3], models=[RAM])))[0]
    result = sweep_run.run(run, out_dir=tmp_path / "run")
    assert seen["final_profile"] is None and seen["steps"] == 4 and seen["fingerprint"] == run["fingerprint"]
    assert result["final_profile"]["precision"] == "fp32" and {**result, "final_profile": None} == seen
