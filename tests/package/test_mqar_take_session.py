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


def _split_seeds_summary(tmp_path: Path):
    """The committed seeds summary cut three ways: the results folder lacks its last two runs, and each of two
    tars holds one of them (two calls on fresh machines); returns (results, tars, the whole summary's text)"""
    whole_text = COMMITTED_SEEDS.read_text()
    whole = json.loads(whole_text)
    assert len(whole["runs"]) >= 3 and not whole["unfinished"]
    part = lambda runs: {**whole, "runs": runs}
    results = tmp_path / "results"
    results.mkdir()
    (results / "mqar_seeds_sweep.json").write_text(json.dumps(part(whole["runs"][:-2]), indent=2))
    (results / "mqar_seeds.json").write_text("[]")
    tars = [_tar(tmp_path / f"call{i}.tgz", {"mqar_seeds_sweep.json": part(whole["runs"][:-2] + [run]),
                                              "mqar_seeds.json": []})
            for i, run in enumerate(whole["runs"][-2:])]
    return results, tars, whole_text


def test_merge_rebuilds_both_summaries_as_one_machine_with_every_run_would_have(tmp_path):
    results, tars, whole_text = _split_seeds_summary(tmp_path)
    before = _state(results)
    refused = _take(results, *tars)
    assert refused.returncode == 2 and "--merge" in refused.stderr and _state(results) == before, refused
    done = _take(results, *tars, merge=True)
    assert done.returncode == 0 and "mqar_seeds: 2 new run(s)" in done.stdout and "merged from" in done.stdout, done
    assert (results / "mqar_seeds_sweep.json").read_text() == whole_text  # byte for byte, spec and order
    best = (SCRIPT.parent / "results" / "mqar_seeds.json").read_text()
    assert (results / "mqar_seeds.json").read_text() == best  # the best-lr rows rebuilt, not the tars' empty ones


def test_merge_refuses_summaries_of_different_specs_and_copies_nothing(tmp_path):
    results, tars, _ = _split_seeds_summary(tmp_path)
    other = json.loads(COMMITTED_SEEDS.read_text())
    other["spec"]["steps"] += 1
    other["runs"] = other["runs"][:-2] + other["runs"][-1:]
    tars[1] = _tar(tmp_path / "other_spec.tgz", {"mqar_seeds_sweep.json": other, "mqar_seeds.json": []})
    before = _state(results)
    done = _take(results, *tars, merge=True)
    assert done.returncode == 2 and "same sweep spec" in done.stderr and done.stderr.count("\n") == 1, done
    assert _state(results) == before
