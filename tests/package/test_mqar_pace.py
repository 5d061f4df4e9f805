"""``benchmarks/mqar_pace.py`` prints how fast sweep runs trained, from the sweep files' histories: it must pick the
runs by pattern, scale the first interval to 500 steps, and answer a bad folder or pattern with one line."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "mqar_pace.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def _sweep(folder: Path) -> None:
    runs = [{"id": "ramnet-16k-lr0.001-s0", "state_size": 16384, "seconds": 500.0,
             "history": [{"step": 250, "seconds": 40.0}, {"step": 500, "seconds": 90.0}]},
            {"id": "deltanet-16k-lr0.003-s0", "state_size": 16384, "seconds": 900.0,
             "history": [{"step": 500, "seconds": 600.0}]}]
    (folder / "mqar_sweep.json").write_text(json.dumps({"runs": runs, "unfinished": []}))


def test_matching_runs_with_their_first_interval_per_500_steps(tmp_path):
    _sweep(tmp_path)
    out = _run("ramnet-*", "--results", str(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[2:] == ["| ramnet-16k-lr0.001-s0 | 16,384 | 250 | 80 | 500 |"]  # 40 s for 250 steps


def test_no_match_or_no_folder_is_one_line(tmp_path):
    _sweep(tmp_path)
    for args, message in ((["gla-*", "--results", str(tmp_path)], "no finished run"),
                          (["x", "--results", str(tmp_path / "nope")], "is not a folder")):
        out = _run(*args)
        assert out.returncode == 2 and message in out.stderr.strip().splitlines()[-1]


def test_a_sweep_file_that_is_not_json_or_lacks_a_field_is_one_line(tmp_path):
    for content, message in (("{not json", "mqar_sweep.json cannot be read as JSON"),
                             ("[]", "holds a JSON list, not the dict a sweep writes"),
                             ('{"runs": [{"id": "a", "history": [{"step": 500}]}]}', "KeyError: 'state_size'")):
        (tmp_path / "mqar_sweep.json").write_text(content)
        result = _run("--results", str(tmp_path), "*")
        assert result.returncode == 2 and result.stdout == "" and message in result.stderr, result
        assert result.stderr.splitlines()[-1].startswith("mqar_pace.py: error: --results: "), result.stderr
