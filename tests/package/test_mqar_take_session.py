"""``benchmarks/mqar_take_session.py`` copies the sweep summaries that a GPU session brought back into the results
folder. It must take the tar with the most runs, never a summary that drops or changes a committed run, and copy
nothing when any sweep is refused."""
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "mqar_take_session.py"


def _summary(*ids, fingerprint="f0"):
    return {"spec": {}, "runs": [{"id": i, "fingerprint": fingerprint, "accuracy": 0.5} for i in ids],
            "unfinished": []}


def _tar(path: Path, files: dict) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(f"./mqar/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _results(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    results.mkdir()
    (results / "mqar_sweep.json").write_text(json.dumps(_summary("a", "b")))
    (results / "mqar.json").write_text(json.dumps([{"label": "old"}]))
    (results / "ablations_sweep.json").write_text(json.dumps(_summary("x")))
    return results


def _take(results: Path, *tars, dry_run=False):
    args = [sys.executable, str(SCRIPT), "--results", str(results), *map(str, tars)] + (["--dry-run"] if dry_run else [])
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_the_tar_with_the_most_runs_replaces_the_committed_summary(tmp_path):
    results = _results(tmp_path)
    fewer = _tar(tmp_path / "1.tgz", {"mqar_sweep.json": _summary("a", "b", "c"), "mqar.json": [{"label": "one"}]})
    more = _tar(tmp_path / "2.tgz", {"mqar_sweep.json": _summary("a", "b", "c", "d"), "mqar.json": [{"label": "two"}],
                                     "ablations_sweep.json": _summary("x"), "ablations.json": []})
    before = {p.name: p.read_text() for p in results.iterdir()}
    done = _take(results, fewer, more, dry_run=True)
    assert done.returncode == 0 and "mqar: 2 new run(s), 4 in all" in done.stdout, done
    assert {p.name: p.read_text() for p in results.iterdir()} == before  # a dry run copies nothing
    done = _take(results, fewer, more)
    assert done.returncode == 0 and "ablations: nothing new (1 runs committed)" in done.stdout, done
    assert [r["id"] for r in json.loads((results / "mqar_sweep.json").read_text())["runs"]] == ["a", "b", "c", "d"]
    assert json.loads((results / "mqar.json").read_text()) == [{"label": "two"}]
    assert (results / "ablations_sweep.json").read_text() == before["ablations_sweep.json"]


def test_a_summary_that_drops_or_changes_a_committed_run_is_refused_and_nothing_is_copied(tmp_path):
    results = _results(tmp_path)
    good = _tar(tmp_path / "good.tgz", {"ablations_sweep.json": _summary("x", "y"), "ablations.json": []})
    for bad_summary in (_summary("a", "c", "d"), _summary("a", "b", "c", fingerprint="f1")):
        bad = _tar(tmp_path / "bad.tgz", {"mqar_sweep.json": bad_summary, "mqar.json": []})
        before = {p.name: p.read_text() for p in results.iterdir()}
        done = _take(results, good, bad)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done
        assert "bad.tgz" in done.stderr
        assert {p.name: p.read_text() for p in results.iterdir()} == before


def test_new_runs_without_their_best_lr_rows_and_bad_tars_get_one_line(tmp_path):
    results = _results(tmp_path)
    lonely = _tar(tmp_path / "lonely.tgz", {"mqar_sweep.json": _summary("a", "b", "c")})
    done = _take(results, lonely)
    assert done.returncode == 2 and "no mqar.json beside it" in done.stderr and done.stderr.count("\n") == 1
    (tmp_path / "not.tgz").write_text("plain text")
    for path in (tmp_path / "not.tgz", tmp_path / "absent.tgz"):
        done = _take(results, path)
        assert done.returncode == 2 and "is not a tar file" in done.stderr and done.stderr.count("\n") == 1
