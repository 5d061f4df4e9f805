"""``benchmarks/mqar_take_session.py`` copies the sweep summaries that a GPU session brought back into the results
folder. It must take the tar with the most runs, never one that would lose a committed run or another tar's run,
and copy nothing when any sweep is refused."""
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "mqar_take_session.py"


def _summary(*ids, fingerprint="f0"):
    return {"spec": {}, "runs": [{"id": i, "fingerprint": fingerprint, "accuracy": 0.5} for i in ids],
            "unfinished": []}


def _tar(path: Path, files: dict, links: tuple = ()) -> Path:
    """A gzipped tar of JSON files under ./mqar/ (a name with a / is taken as given), and symlinks (name, target)"""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(name if "/" in name else f"./mqar/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in links:
            info = tarfile.TarInfo(f"./mqar/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def _results(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    results.mkdir()
    (results / "mqar_sweep.json").write_text(json.dumps(_summary("a", "b")))
    (results / "mqar.json").write_text(json.dumps([{"label": "old"}]))
    (results / "ablations_sweep.json").write_text(json.dumps(_summary("x")))
    return results


def _state(results: Path) -> dict:
    return {p.name: p.read_text() for p in results.iterdir()}


def _take(results: Path, *tars, dry_run=False, merge=False):
    args = [sys.executable, str(SCRIPT), "--results", str(results), *map(str, tars)]
    args += ["--dry-run"] if dry_run else []
    args += ["--merge"] if merge else []
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_the_tar_with_the_most_runs_replaces_the_committed_summary(tmp_path):
    results = _results(tmp_path)
    more = _tar(tmp_path / "more.tgz", {"mqar_sweep.json": _summary("a", "b", "c", "d"), "mqar.json": [{"label": "2"}],
                                        "ablations_sweep.json": _summary("x"), "ablations.json": []})
    fewer = _tar(tmp_path / "fewer.tgz", {"mqar_sweep.json": _summary("a", "b", "c"), "mqar.json": [{"label": "1"}]})
    older = _tar(tmp_path / "older.tgz", {"mqar_sweep.json": _summary("a"), "mqar.json": [{"label": "0"}]})
    empty = _tar(tmp_path / "empty.tgz", {})
    before = _state(results)
    done = _take(results, more, fewer, older, empty, dry_run=True)
    assert done.returncode == 0 and "mqar: 2 new run(s), 4 in all, from" in done.stdout, done
    assert f"{empty}: no sweep summaries" in done.stdout
    assert _state(results) == before  # a dry run copies nothing
    done = _take(results, more, fewer, older, empty)
    assert done.returncode == 0 and "ablations: nothing new (1 runs committed)" in done.stdout, done
    assert [r["id"] for r in json.loads((results / "mqar_sweep.json").read_text())["runs"]] == ["a", "b", "c", "d"]
    assert json.loads((results / "mqar.json").read_text()) == [{"label": "2"}]
    assert (results / "ablations_sweep.json").read_text() == before["ablations_sweep.json"]
    assert sorted(p.name for p in results.iterdir()) == sorted(before)  # no temporary files left


@pytest.mark.parametrize("case", ["drops a committed run", "changes a fingerprint", "loses another tar's run"])
def test_a_take_that_would_lose_or_change_a_run_is_refused_and_nothing_is_copied(tmp_path, case):
    results = _results(tmp_path)
    (results / "mqar_seeds_sweep.json").write_text(json.dumps(_summary("s0")))
    good = _tar(tmp_path / "good.tgz", {"mqar_sweep.json": _summary("a", "b", "c"), "mqar.json": []})
    bad_files = {
        "drops a committed run": {"mqar_seeds_sweep.json": _summary("s1", "s2"), "mqar_seeds.json": []},
        "changes a fingerprint": {"mqar_seeds_sweep.json": _summary("s0", "s1", fingerprint="f1"),
                                  "mqar_seeds.json": []},
        # two calls, each with one new seed on a fresh machine: the one with more runs lacks the other's seed
        "loses another tar's run": {"mqar_seeds_sweep.json": _summary("s0", "s1", "s3"), "mqar_seeds.json": []},
    }[case]
    bad = _tar(tmp_path / "bad.tgz", bad_files)
    tars = [good, bad]
    if case == "loses another tar's run":
        tars.append(_tar(tmp_path / "other.tgz", {"mqar_seeds_sweep.json": _summary("s0", "s2"),
                                                  "mqar_seeds.json": []}))
    before = _state(results)
    done = _take(results, *tars)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done
    assert "bad.tgz" in done.stderr and "mqar_seeds_sweep.json" in done.stderr
    assert _state(results) == before  # the good mqar summary, planned first, is not copied either


@pytest.mark.parametrize("files, links, message", [
    ({"mqar_sweep.json": _summary("a", "b", "c")}, (), "no mqar.json beside it"),
    ({"mqar_sweep.json": _summary("a", "b", "c"), "./old/mqar.json": []}, (), "no mqar.json beside it"),
    ({"mqar_sweep.json": _summary("a", "b", "c"), "./old/mqar_sweep.json": _summary("a")}, (), "must be one plain"),
    ({}, (("mqar_sweep.json", "/etc/passwd"),), "must be one plain file"),
    ({"mqar_sweep.json": {"runs": None}}, (), "is not a sweep summary"),
    ({"mqar_sweep.json": [1, 2]}, (), "is not a sweep summary"),
    ({"mqar_sweep.json": {"runs": [{"fingerprint": "f0"}]}}, (), "is not a sweep summary"),
])
def test_a_tar_that_is_not_a_session_tar_gets_one_line(tmp_path, files, links, message):
    results = _results(tmp_path)
    before = _state(results)
    done = _take(results, _tar(tmp_path / "odd.tgz", files, links))
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done
    assert _state(results) == before


def test_unreadable_tars_and_files_that_cannot_be_replaced_get_one_line(tmp_path):
    results = _results(tmp_path)
    whole = _tar(tmp_path / "whole.tgz", {"mqar_sweep.json": _summary("a", "b", "c"), "mqar.json": []})
    (tmp_path / "cut.tgz").write_bytes(whole.read_bytes()[:60])
    (tmp_path / "text.tgz").write_text("plain text")
    for path, message in ((tmp_path / "cut.tgz", "cannot be read"), (tmp_path / "text.tgz", "cannot be read"),
                          (tmp_path / "absent.tgz", "no such file")):
        done = _take(results, path)
        assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done
    (results / "mqar.json").unlink()
    (results / "mqar.json").mkdir()  # a destination that cannot be replaced: neither file is
    before = (results / "mqar_sweep.json").read_text()
    done = _take(results, whole)
    assert done.returncode == 2 and "replaced: none" in done.stderr and done.stderr.count("\n") == 1, done
    assert (results / "mqar_sweep.json").read_text() == before


COMMITTED_SEEDS = SCRIPT.parent / "results" / "mqar_seeds_sweep.json"


def _split_seeds_summary(tmp_path: Path, committed_extra=(), stale=(), tar_specs=(None, None)):
    """The committed seeds summary cut three ways: the results folder lacks two runs from the middle of the grid,
    and each of two tars (given in reverse) holds one of them, as two calls on fresh machines would; the second
    tar also gives a committed run another accuracy (the committed record must win). ``committed_extra`` adds runs
    to the committed file only, ``stale`` progress records to its ``unfinished``; ``tar_specs`` (one per tar) replace
    a tar's spec. Returns (results, tars, the whole summary's text)"""
    whole_text = COMMITTED_SEEDS.read_text()
    whole = json.loads(whole_text)
    assert len(whole["runs"]) >= 30 and not whole["unfinished"]
    runs = whole["runs"]
    cut = [runs[5], runs[20]]
    kept = [r for r in runs if r not in cut]
    part = lambda chosen, spec=None, **more: {**whole, "runs": chosen, "spec": whole["spec"] if spec is None else spec,
                                          **more}
    results = tmp_path / "results"
    results.mkdir()
    committed = part(kept + list(committed_extra), unfinished=list(stale))
    (results / "mqar_seeds_sweep.json").write_text(json.dumps(committed, indent=2))
    (results / "mqar_seeds.json").write_text("[]")
    changed = dict(kept[0], accuracy=0.123)
    tars = [_tar(tmp_path / "call1.tgz", {"mqar_seeds_sweep.json": part(kept + [cut[0]], tar_specs[0]),
                                          "mqar_seeds.json": []}),
            _tar(tmp_path / "call0.tgz", {"mqar_seeds_sweep.json": part([changed] + kept[1:] + [cut[1]], tar_specs[1]),
                                          "mqar_seeds.json": []})]
    return results, tars, whole_text


def test_merge_rebuilds_both_summaries_as_one_machine_with_every_run_would_have(tmp_path):
    whole = json.loads(COMMITTED_SEEDS.read_text())
    stale = [{"id": whole["runs"][3]["id"], "fingerprint": whole["runs"][3]["fingerprint"], "step": 10}]
    results, tars, whole_text = _split_seeds_summary(tmp_path, stale=stale)
    before = _state(results)
    refused = _take(results, *tars)
    assert refused.returncode == 2 and "--merge" in refused.stderr and _state(results) == before, refused
    done = _take(results, *tars, merge=True)
    assert done.returncode == 0 and "mqar_seeds: 2 new run(s)" in done.stdout and "merged from" in done.stdout, done
    # byte for byte: the grid's order, the committed record of a run a tar changed, no stale progress record
    assert (results / "mqar_seeds_sweep.json").read_text() == whole_text
    best = (SCRIPT.parent / "results" / "mqar_seeds.json").read_text()
    assert (results / "mqar_seeds.json").read_text() == best  # the best-lr rows rebuilt, not the tars' empty ones


def test_merge_refuses_to_drop_a_committed_run_the_grid_no_longer_gives(tmp_path):
    whole = json.loads(COMMITTED_SEEDS.read_text())
    orphan = dict(whole["runs"][7], id=whole["runs"][7]["id"] + "-old", fingerprint="other")
    orphan_in_grid = dict(whole["runs"][7])
    orphan_in_grid["fingerprint"] = "other"  # the grid's id with arguments the grid no longer gives
    results, tars, _ = _split_seeds_summary(tmp_path, committed_extra=[orphan])
    done = _take(results, *tars, merge=True)  # a run outside the grid is kept, as the sweep keeps it
    assert done.returncode == 0 and orphan["id"] in (results / "mqar_seeds_sweep.json").read_text(), done
    results2 = tmp_path / "second"
    results2.mkdir()
    committed = json.loads(COMMITTED_SEEDS.read_text())
    committed["runs"] = [r for r in committed["runs"] if r["id"] != orphan_in_grid["id"]] + [orphan_in_grid]
    cut_ids = (whole["runs"][5]["id"], whole["runs"][20]["id"])
    committed["runs"] = [r for r in committed["runs"] if r["id"] not in cut_ids]
    (results2 / "mqar_seeds_sweep.json").write_text(json.dumps(committed))
    base = [r for r in whole["runs"] if r["id"] not in (orphan_in_grid["id"], whole["runs"][5]["id"],
                                                         whole["runs"][20]["id"])]
    tars2 = [_tar(tmp_path / f"late{i}.tgz", {"mqar_seeds_sweep.json": {**whole, "runs": base + [whole["runs"][k]]},
                                             "mqar_seeds.json": []}) for i, k in enumerate((5, 20))]
    before = _state(results2)
    done = _take(results2, *tars2, merge=True)
    assert done.returncode == 2 and "would drop 1 run(s)" in done.stderr and done.stderr.count("\n") == 1, done
    assert _state(results2) == before


@pytest.mark.parametrize("change, both, message", [
    (lambda spec: spec.update(steps=spec["steps"] + 1), False, "same sweep spec"),
    (lambda spec: spec.pop("lrs"), True, "cannot be merged (KeyError"),
    (lambda spec: spec.clear(), True, "needs each tar's summary to hold its sweep spec"),
])
def test_merge_refuses_tars_of_different_or_broken_specs_in_one_line_and_copies_nothing(tmp_path, change, both,
                                                                                         message):
    spec = json.loads(COMMITTED_SEEDS.read_text())["spec"]
    change(spec)
    results, tars, _ = _split_seeds_summary(tmp_path, tar_specs=(spec if both else None, spec))
    before = _state(results)
    done = _take(results, *tars, merge=True)
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done
    assert _state(results) == before


def test_merge_takes_the_tars_spec_when_the_committed_one_is_older(tmp_path):
    results, tars, whole_text = _split_seeds_summary(tmp_path)
    committed = json.loads((results / "mqar_seeds_sweep.json").read_text())
    committed["spec"]["parallel"] += 1  # a field that does not change any run's arguments
    (results / "mqar_seeds_sweep.json").write_text(json.dumps(committed))
    done = _take(results, *tars, merge=True)
    assert done.returncode == 0 and (results / "mqar_seeds_sweep.json").read_text() == whole_text, done


def test_merge_keeps_the_newest_progress_record_of_a_run_still_pending(tmp_path):
    """A run with no result anywhere: the tars started from the committed summary, so their progress is newer"""
    whole = json.loads(COMMITTED_SEEDS.read_text())
    pending = whole["runs"][30]
    record = lambda step: {"id": pending["id"], "fingerprint": pending["fingerprint"], "step": step, "history": []}
    results, tars, _ = _split_seeds_summary(tmp_path, stale=[record(10)])
    for path in tars:  # the pending run leaves every summary; the first tar has its newer progress
        with tarfile.open(path) as tar:
            summary = json.load(tar.extractfile("./mqar/mqar_seeds_sweep.json"))
        summary["runs"] = [r for r in summary["runs"] if r["id"] != pending["id"]]
        summary["unfinished"] = [record(999)] if path == tars[0] else []
        _tar(path, {"mqar_seeds_sweep.json": summary, "mqar_seeds.json": []})
    committed = json.loads((results / "mqar_seeds_sweep.json").read_text())
    committed["runs"] = [r for r in committed["runs"] if r["id"] != pending["id"]]
    (results / "mqar_seeds_sweep.json").write_text(json.dumps(committed))
    done = _take(results, *tars, merge=True)
    assert done.returncode == 0, done
    merged = json.loads((results / "mqar_seeds_sweep.json").read_text())
    assert merged["unfinished"] == [record(999)] and len(merged["runs"]) == len(whole["runs"]) - 1


def test_models_that_came_back_beside_the_tar_are_named_with_how_to_unpack_them(tmp_path):
    """``collect`` leaves a sweep's kept models beside session.tgz, whole or in 15 MiB pieces; the take names each
    with the command that unpacks it, and warns when a piece is missing (the tar would be cut short)"""
    results = _results(tmp_path)
    call = tmp_path / "call"
    call.mkdir()
    session = _tar(call / "session.tgz", {"mqar_sweep.json": _summary("a", "b", "c"), "mqar.json": []})
    (call / "mqar_probe_models.tar").write_bytes(b"x")
    for piece in ("00", "01"):
        (call / f"mqar_profile_models.tar.part{piece}-of-02").write_bytes(b"x")
    (call / "ablations_models.tar.part01-of-02").write_bytes(b"x")  # its part00 did not come back
    (call / "mqar_seeds_models.tar.part00-of-02").write_bytes(b"x")  # nor its last piece
    done = _take(results, session, dry_run=True)
    assert done.returncode == 0, done
    assert f"models: {call}/mqar_probe_models.tar (tar -xf {call}/mqar_probe_models.tar -C DIR)" in done.stdout
    assert (f"models: {call}/mqar_profile_models.tar in 2 pieces "
            f"(cat {call}/mqar_profile_models.tar.part* | tar -x -C DIR)") in done.stdout
    assert f"WARNING {call}/ablations_models.tar.part*: pieces 01-of-02 came back" in done.stdout
    assert f"WARNING {call}/mqar_seeds_models.tar.part*: pieces 00-of-02 came back" in done.stdout
    assert done.stdout.count("models: ") == 4
