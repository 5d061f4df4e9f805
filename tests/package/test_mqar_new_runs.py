"""``benchmarks/mqar_new_runs.py`` lists the runs a GPU session added to the sweep summaries, against a commit."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "mqar_new_runs.py"
sys.path.insert(0, str(SCRIPT.parent))
import mqar_new_runs  # noqa: E402


def _run_row(run_id, accuracy=0.9, history=((500, 0.1), (1000, 0.6))):
    return {"id": run_id, "state_size": 16384, "accuracy": accuracy, "seconds": 12.0, "peak_mib": 100.0,
            "accuracies": {"N128-T512": 0.8, "N256-T1024": 0.7},
            "history": [{"step": s, "accuracy": a} for s, a in history]}


def test_new_runs_are_those_the_older_summary_lacks_in_the_newer_order():
    before = {"runs": [_run_row("a"), _run_row("b")]}
    after = {"runs": [_run_row("c"), _run_row("a"), _run_row("b"), _run_row("d")]}
    assert [r["id"] for r in mqar_new_runs.new_runs(before, after)] == ["c", "d"]
    assert mqar_new_runs.new_runs(after, after) == []
    assert [r["id"] for r in mqar_new_runs.new_runs({}, after)] == ["c", "a", "b", "d"]


def test_plateau_exit_is_the_first_step_at_or_above_the_level():
    assert mqar_new_runs.plateau_exit(_run_row("a")) == 1000
    assert mqar_new_runs.plateau_exit(_run_row("a", history=((500, 0.5),))) == 500
    assert mqar_new_runs.plateau_exit(_run_row("a", history=((500, 0.1), (1000, 0.49)))) is None


def _cli(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_a_summary_elsewhere_is_compared_with_the_committed_one(tmp_path):
    committed = json.loads((SCRIPT.parents[1] / "benchmarks" / "results" / "ablations_sweep.json").read_text())
    committed["runs"].append(_run_row("new-run-lr0.001-s0", accuracy=0.4321))
    (tmp_path / "ablations_sweep.json").write_text(json.dumps(committed))
    done = _cli("--since", "HEAD", "--names", "ablations", "mqar", "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "| ablations | new-run-lr0.001-s0 | 16,384 | **0.432** | 0.800 | 0.700 | 1000 | 12 | 100 |" in done.stdout
    assert "1 new runs since HEAD: ablations: 1 new" in done.stdout and "mqar: no mqar_sweep.json" in done.stdout


def test_runs_cut_by_the_budget_are_listed_apart_from_the_results(tmp_path):
    committed = json.loads((SCRIPT.parents[1] / "benchmarks" / "results" / "ablations_sweep.json").read_text())
    committed["unfinished"] = [{"id": "cut-run-lr0.001-s1", "step": 3000, "total_steps": 4000, "accuracy": 0.61554,
                                "seconds": 120.7},
                               {"id": "cut-early-lr0.001-s2", "step": 0, "total_steps": 4000, "accuracy": None,
                                "seconds": 0}]
    (tmp_path / "ablations_sweep.json").write_text(json.dumps(committed))
    done = _cli("--since", "HEAD", "--names", "ablations", "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "0 new runs since HEAD" in done.stdout and "| cut-run" not in done.stdout
    assert "2 runs cut by the budget (their curves so far, not results):" in done.stdout
    assert "- ablations cut-run-lr0.001-s1: cut at step 3000/4000, accuracy 0.616 there, 121 s" in done.stdout
    assert "- ablations cut-early-lr0.001-s2: cut at step 0/4000, accuracy - there, 0 s" in done.stdout


def test_an_unknown_commit_gets_one_line():
    done = _cli("--since", "no-such-commit-xyz")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--since" in done.stderr
    assert done.stdout == ""


def test_an_unreadable_summary_gets_one_line(tmp_path):
    (tmp_path / "mqar_sweep.json").write_text("{not json")
    done = _cli("--since", "HEAD", "--names", "mqar", "--results", str(tmp_path))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--results" in done.stderr
    assert "mqar_sweep.json" in done.stderr and done.stdout == ""
