"""What a limited GPU session needs of `ramnet sweep`: `--only` (which runs, in which order), one retry of a run
that ran out of CUDA memory, and the partial curves (`progress.json`, the summary's `unfinished`) of runs cut off."""
import json
import shutil

import pytest
import torch

from ramnet.cli import main
from ramnet.sweep import (SpecError, check_spec, execute, expand, next_to_start, restore_results, retry_room,
                          saved_results, select_runs, sweep, write_summaries)
from ramnet.sweep_run import TEST_OOM_ENV

ATTN = {"label": "attn", "model": "attention", "d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32}
OTHER = {**ATTN, "label": "other"}


def _spec_dict(tmp_path, **changes):
    spec = {"name": "t", "out": str(tmp_path / "out"), "steps": 4, "batch_size": 4, "lrs": [1e-3, 3e-3],
            "num_train": 16, "num_eval": 4, "eval_every": 2, "settings": [[2, 16]], "vocab_size": 64,
            "precision": "fp32", "device": "cpu", "models": [ATTN, OTHER]}
    return {**spec, **changes}


def _spec_file(tmp_path, **changes):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(_spec_dict(tmp_path, **changes)))
    return path


def _spec(tmp_path, **changes):
    return check_spec(_spec_dict(tmp_path, **changes))


# --only


def test_only_orders_runs_by_pattern_then_grid_each_once(tmp_path):
    runs = expand(_spec(tmp_path, seeds=[0, 1]))
    ids = [r["id"] for r in select_runs(runs, "other-*-s1, *-lr0.003-*,other-*")]
    assert ids == ["other-lr0.001-s1", "other-lr0.003-s1",  # the first pattern, in grid order
                   "attn-lr0.003-s0", "other-lr0.003-s0", "attn-lr0.003-s1",  # then the second's new ones
                   "other-lr0.001-s0"]
    assert [r["id"] for r in select_runs(runs, ["attn-lr0.001-s0"])] == ["attn-lr0.001-s0"]
    with pytest.raises(SpecError, match="pattern 'ram-\\*' matches no run"):
        select_runs(runs, "attn-*,ram-*")
    with pytest.raises(SpecError, match="--only takes"):
        select_runs(runs, " , ")


def test_dry_run_only_lists_the_matching_pending_runs_in_pattern_order(tmp_path, capsys):
    spec = _spec_file(tmp_path)
    assert main(["sweep", str(spec), "--dry-run", "--only", "*-lr0.003-*,attn-*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "4 runs, 0 done, 3 to run (1 more pending, left out by --only)"
    assert [line.strip() for line in out[1:]] == ["attn-lr0.003-s0", "other-lr0.003-s0", "attn-lr0.001-s0"]
    assert main(["sweep", str(spec), "--dry-run", "--only", "attn-*,nope-*"]) == 2
    err = capsys.readouterr().err
    assert "'nope-*' matches no run" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_only_runs_just_those_and_the_summaries_cover_the_spec(tmp_path, capsys):
    spec = _spec_file(tmp_path)
    assert main(["sweep", str(spec), "--quiet", "--only", "other-lr0.003-*"]) == 0
    assert "1 ran, 0 skipped (results exist), 0 failed (3 more pending, left out by --only)" in \
        capsys.readouterr().out
    assert [p.parent.name for p in (tmp_path / "out").glob("runs/*/result.json")] == ["other-lr0.003-s0"]
    assert main(["sweep", str(spec), "--quiet", "--only", "attn-lr0.001-*,other-*"]) == 0
    assert "2 ran, 1 skipped" in capsys.readouterr().out  # other-lr0.003 is done: not run again
    summary = json.loads((tmp_path / "out" / "mqar_sweep.json").read_text())
    assert sorted(r["id"] for r in summary["runs"]) == ["attn-lr0.001-s0", "other-lr0.001-s0", "other-lr0.003-s0"]
    assert [row["label"] for row in json.loads((tmp_path / "out" / "mqar.json").read_text())] == ["attn", "other"]
    assert main(["sweep", str(spec), "--dry-run"]) == 0
    assert "4 runs, 3 done, 1 to run" in capsys.readouterr().out


# OOM retry


def test_next_to_start_keeps_the_order_and_gives_a_retry_room():
    fresh, retry = ({"id": "a"}, 1), ({"id": "b"}, 2)
    assert [retry_room(p) for p in (1, 2, 3, 4, 13)] == [1, 1, 2, 2, 7]
    assert next_to_start([], [], 4) is None
    assert next_to_start([fresh, retry], [1, 2, 3], 4) == 0
    assert next_to_start([fresh], [1, 2, 3, 4], 4) is None  # full
    assert next_to_start([retry], [1, 2], 4) is None  # a retry waits for room: at most half of parallel with it
    assert next_to_start([retry], [1], 4) == 0
    assert next_to_start([retry, fresh], [1, 2], 4) is None  # nothing overtakes the head
    assert next_to_start([retry], [], 1) == 0 and next_to_start([retry], [1], 2) is None
    assert next_to_start([retry], [1, 2, 3, 4, 5, 6], 13) == 0 and next_to_start([retry], [0] * 7, 13) is None


def test_in_process_a_run_out_of_memory_is_retried_once_at_the_end(tmp_path, monkeypatch):
    import ramnet.sweep as sweep_module

    spec = _spec(tmp_path)
    runs = expand(spec)  # attn-1e-3, other-1e-3, attn-3e-3, other-3e-3
    calls = []

    def fake_run(run, progress=False, out_dir=None):
        calls.append(run["id"])
        if run["id"] == runs[0]["id"] and calls.count(run["id"]) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if run["id"] == runs[1]["id"]:
            raise RuntimeError("CUDA out of memory. Tried to allocate 4.00 GiB")  # twice: fails for good
        if run["id"] == runs[2]["id"]:
            raise ValueError("not a memory error")
        return {"id": run["id"], "fingerprint": run["fingerprint"]}

    monkeypatch.setattr(sweep_module, "run_one", fake_run)
    done = []
    failed = execute(spec, runs, progress=False, on_done=lambda: done.append(1))
    ids = [r["id"] for r in runs]
    assert calls == [ids[0], ids[1], ids[2], ids[3], ids[0], ids[1]]
    assert failed == [ids[2], ids[1]] and len(done) == 4  # each run ends once
    first, second = (tmp_path / "out" / "runs" / i for i in ids[:2])
    assert (first / "result.json").is_file() and not (first / "error.txt").exists()
    assert (first / "error_oom_1.txt").read_text().startswith("OutOfMemoryError: CUDA out of memory")
    assert "4.00 GiB" in (second / "error.txt").read_text() and (second / "error_oom_1.txt").is_file()
    assert not (tmp_path / "out" / "runs" / ids[2] / "error_oom_1.txt").exists()
    # run again, the old attempts' files are cleared
    monkeypatch.setattr(sweep_module, "run_one", lambda run, progress=False, out_dir=None: {"id": run["id"]})
    assert execute(spec, runs[1:2], progress=False) == []
    assert not (second / "error_oom_1.txt").exists() and not (second / "error.txt").exists()


def test_workers_retry_a_run_out_of_memory(tmp_path, monkeypatch):
    spec = _spec(tmp_path, lrs=[1e-3], models=[ATTN], steps=2, parallel=2)
    (run,) = expand(spec)
    monkeypatch.setenv(TEST_OOM_ENV, run["id"])  # the test hook: a simulated OOM on the first attempt
    assert execute(spec, [run], progress=False) == []
    path = tmp_path / "out" / "runs" / run["id"]
    assert (path / "error_oom_1.txt").read_text().startswith("OutOfMemoryError: CUDA out of memory (simulated")
    assert "OutOfMemoryError" in (path / "log_oom_1.txt").read_text()
    assert (path / "result.json").is_file() and not (path / "error.txt").exists()


# progress.json and the summary's unfinished runs


def test_progress_is_written_and_unfinished_runs_are_not_results(tmp_path, capsys):
    spec_path = _spec_file(tmp_path, lrs=[1e-3], models=[ATTN, OTHER])
    assert main(["sweep", str(spec_path), "--quiet"]) == 0
    out = tmp_path / "out"
    done, cut = (out / "runs" / i for i in ("attn-lr0.001-s0", "other-lr0.001-s0"))
    progress = json.loads((done / "progress.json").read_text())
    result = json.loads((done / "result.json").read_text())
    assert progress["history"] == result["history"] and progress["step"] == progress["total_steps"] == 4
    assert {k: progress[k] for k in ("id", "label", "lr", "fingerprint", "state_size")} == \
        {k: result[k] for k in ("id", "label", "lr", "fingerprint", "state_size")}
    assert progress["peak_mib"] is None and result["peak_mib"] is None  # CUDA memory: none on this CPU run
    assert json.loads((out / "mqar_sweep.json").read_text())["unfinished"] == []
    # the second run cut off after its first evaluation: its progress, no result
    (cut / "result.json").unlink()
    record = json.loads((cut / "progress.json").read_text())
    record.update(step=2, history=record["history"][:1])
    (cut / "progress.json").write_text(json.dumps(record))
    spec = check_spec(json.loads(spec_path.read_text()))
    write_summaries(spec, expand(spec))
    summary = json.loads((out / "mqar_sweep.json").read_text())
    assert [r["id"] for r in summary["runs"]] == ["attn-lr0.001-s0"]
    assert [(r["id"], r["step"], len(r["history"])) for r in summary["unfinished"]] == [("other-lr0.001-s0", 2, 1)]
    assert [row["label"] for row in json.loads((out / "mqar.json").read_text())] == ["attn"]
    assert set(saved_results(spec)) == {"attn-lr0.001-s0"}
    # another machine with the summary alone: the unfinished run is not restored as a result, and its record
    # is kept until it runs again
    shutil.rmtree(out / "runs")
    assert restore_results(spec, expand(spec)) == 1 and not (cut / "result.json").exists()
    assert main(["sweep", str(spec_path), "--dry-run"]) == 0
    assert "2 runs, 1 done, 1 to run" in capsys.readouterr().out
    write_summaries(spec, expand(spec))
    assert [r["step"] for r in json.loads((out / "mqar_sweep.json").read_text())["unfinished"]] == [2]
    # a progress record of other arguments is not this run's
    changed = check_spec({**spec, "steps": 6})
    write_summaries(changed, expand(changed))
    assert json.loads((out / "mqar_sweep.json").read_text())["unfinished"] == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA peak memory needs a CUDA device")
def test_peak_memory_is_the_processes_reserved_peak_on_cuda():
    from ramnet.sweep_run import peak_mib
    held = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")  # 64 MiB
    assert peak_mib(torch.device("cuda")) >= 64
    del held


@pytest.mark.parametrize("parallel", [1, 2])
def test_no_run_starts_after_the_deadline_and_those_left_stay_pending(tmp_path, capsys, parallel):
    spec = _spec_file(tmp_path, parallel=parallel)
    assert main(["sweep", str(spec), "--quiet", "--stop-starting-after", "0"]) == 0
    assert "0 ran, 0 skipped (results exist), 0 failed, 4 not started (--stop-starting-after)" in \
        capsys.readouterr().out
    assert not list((tmp_path / "out").glob("runs/*/result.json"))
    assert main(["sweep", str(spec), "--quiet", "--stop-starting-after", "600", "--only", "attn-lr0.001-*"]) == 0
    assert "1 ran" in capsys.readouterr().out
    assert main(["sweep", str(spec), "--dry-run"]) == 0
    assert "4 runs, 1 done, 3 to run" in capsys.readouterr().out


def test_a_negative_deadline_is_one_line(tmp_path, capsys):
    assert main(["sweep", str(_spec_file(tmp_path)), "--stop-starting-after", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--stop-starting-after must be >= 0" in err and err.count("\n") == 1


def test_save_model_keeps_a_loadable_model_and_is_not_part_of_the_fingerprint(tmp_path):
    from ramnet.checkpoint import load_checkpoint

    ram = {"label": "ram", "model": "ramnet", "preset": "tiny", "overrides": {"vocab_size": 64}}
    plain = expand(_spec(tmp_path, models=[ram], lrs=[1e-3]))[0]
    spec = _spec(tmp_path, models=[{**ram, "save_model": True}], lrs=[1e-3])
    saving = expand(spec)[0]
    assert saving["fingerprint"] == plain["fingerprint"] and saving["save_model"] and not plain["save_model"]
    sweep(spec, progress=False)
    model = load_checkpoint(tmp_path / "out" / "runs" / saving["id"] / "model")
    assert model.config.vocab_size == 64
    for entry, match in (({**ATTN, "save_model": True}, "unknown key"), ({**ram, "save_model": "yes"},
                                                                          "save_model must be true or false")):
        with pytest.raises(SpecError, match=match):
            _spec(tmp_path, models=[entry])


def test_a_run_that_fails_before_its_first_evaluation_is_listed_with_its_error(tmp_path, monkeypatch):
    from ramnet import sweep_run

    spec = _spec(tmp_path, models=[ATTN], lrs=[1e-3])

    def no_data(*args, **kwargs):
        raise RuntimeError("CUDA error: out of memory")  # e.g. no room for a context on a packed card

    monkeypatch.setattr(sweep_run.ProtocolData, "make", no_data)
    report = sweep(spec, progress=False)
    assert report["failed"] == ["attn-lr0.001-s0"]
    listed = json.loads((tmp_path / "out" / "mqar_sweep.json").read_text())["unfinished"]
    assert [(r["id"], r["step"]) for r in listed] == [("attn-lr0.001-s0", 0)]
    assert listed[0]["error"] == "RuntimeError: CUDA error: out of memory"
    assert (tmp_path / "out" / "runs" / "attn-lr0.001-s0" / "error_oom_1.txt").is_file()  # retried once as OOM


def test_a_deadline_that_passes_between_runs_stops_only_the_later_ones(tmp_path, monkeypatch):
    import ramnet.sweep as sweep_module

    spec = _spec(tmp_path)
    runs = expand(spec)
    clock = [0.0]
    monkeypatch.setattr(sweep_module.time, "monotonic", lambda: clock[0])

    def two_seconds_each(run, progress=False, out_dir=None):
        clock[0] += 2.0
        return {"id": run["id"], "fingerprint": run["fingerprint"]}

    monkeypatch.setattr(sweep_module, "run_one", two_seconds_each)
    assert execute(spec, runs, progress=False, start_until=3.0) == []  # starts at 0 and 2; not at 4
    done = sorted(p.parent.name for p in (tmp_path / "out").glob("runs/*/result.json"))
    assert done == sorted(r["id"] for r in runs[:2])
