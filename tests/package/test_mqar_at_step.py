"""``benchmarks/mqar_at_step.py`` sets finished and cut-off sweep runs side by side at one step: it must read both
the ``runs`` and the ``unfinished`` lists, take the evaluation at exactly that step, average over seeds per (label,
lr), and answer a bad step, folder or pattern with one line."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "mqar_at_step.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def _run_record(label, lr, seed, curve):
    history = [{"step": step, "accuracy": acc, "accuracies": {"N4-T64": 1.0, "N256-T1024": hard}}
               for step, acc, hard in curve]
    return {"id": f"{label}-lr{lr}-s{seed}", "label": label, "lr": lr, "seed": seed, "state_size": 44032,
            "history": history}


def _sweep(folder: Path) -> None:
    finished = [_run_record("ramnet-a", 0.001, 0, [(500, 0.5, 0.1), (1000, 0.9, 0.8)])]
    cut = [_run_record("ramnet-a", 0.001, 1, [(500, 0.7, 0.3), (1000, 0.8, 0.6)]),
           _run_record("ramnet-a", 0.001, 2, [(500, 0.6, 0.2)])]  # cut off before step 1000
    (folder / "mqar_sweep.json").write_text(json.dumps({"runs": finished, "unfinished": cut}))


def test_finished_and_cut_off_runs_at_one_step_with_the_seed_mean(tmp_path):
    _sweep(tmp_path)
    out = _run("ramnet-a-*", "--step", "1000", "--results", str(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[2] == "| ramnet-a-lr0.001-s0 | 44,032 | yes | 0.90000 | 0.8000 |"
    assert lines[3] == "| ramnet-a-lr0.001-s1 | 44,032 | no (cut off) | 0.80000 | 0.6000 |"
    assert len(lines) == 8  # seed 2 never reached step 1000, so it is left out, not counted as 0
    assert lines[-1] == "| ramnet-a | 0.001 | 2 | 0.85000 |"


def test_bad_step_folder_or_pattern_is_one_line(tmp_path):
    _sweep(tmp_path)
    for args, code, message in ((["x", "--step", "0", "--results", str(tmp_path)], 2, "--step must be a positive"),
                                (["x", "--step", "500", "--results", str(tmp_path / "nope")], 2, "no folder"),
                                (["gla-*", "--step", "500", "--results", str(tmp_path)], 1, "was evaluated")):
        out = _run(*args)
        assert out.returncode == code and message in out.stderr.strip().splitlines()[-1], out.stderr
