"""``benchmarks/mqar_at_step.py`` sets finished and cut-off sweep runs side by side at one step: it must read both
the ``runs`` and the ``unfinished`` lists, take the evaluation at exactly that step, average over seeds per (label,
lr), give the seed means along several steps in one table, and answer a bad step, folder or pattern with one
line."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "mqar_at_step.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def _run_record(label, lr, seed, curve, state_size=44032):
    history = [{"step": step, "accuracy": acc,
                "accuracies": {} if hard is None else {"N4-T64": 1.0, "N256-T1024": hard}}
               for step, acc, hard in curve]
    return {"id": f"{label}-lr{lr}-s{seed}", "label": label, "lr": lr, "seed": seed, "state_size": state_size,
            "history": history}


def _sweep(folder: Path) -> None:
    finished = [_run_record("ramnet-a", 0.001, 0, [(500, 0.5, 0.1), (1000, 0.9, 0.8)])]
    cut = [_run_record("ramnet-a", 0.001, 1, [(500, 0.7, 0.3), (1000, 0.8, 0.6)]),
           _run_record("ramnet-a", 0.001, 2, [(500, 0.6, 0.2)])]  # cut off before step 1000
    (folder / "mqar_sweep.json").write_text(json.dumps({"runs": finished, "unfinished": cut}))
    # another spec reusing the label for another model (other state), with a failed run and a diverged one
    failed = {**_run_record("ramnet-a", 0.001, 1, [(1000, 0.2, 0.1)], state_size=8192), "error": "RuntimeError"}
    diverged = _run_record("ramnet-a", 0.001, 0, [(1000, 0.0, None)], state_size=8192)
    stale = _run_record("ramnet-a", 0.001, 0, [(1000, 0.9, 0.9)], state_size=8192)  # an older cut-off copy of s0
    (folder / "ablations_sweep.json").write_text(json.dumps({"runs": [diverged], "unfinished": [failed, stale]}))


def test_finished_and_cut_off_runs_at_one_step_with_the_seed_mean(tmp_path):
    _sweep(tmp_path)
    out = _run("ramnet-a-*", "--step", "1000", "--results", str(tmp_path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[2] == "| ramnet-a-lr0.001-s0 | 44,032 | yes | 0.90000 | 0.8000 |"
    assert lines[3] == "| ramnet-a-lr0.001-s1 | 44,032 | no (cut off) | 0.80000 | 0.6000 |"
    assert lines[4] == "| ramnet-a-lr0.001-s0 | 8,192 | yes | 0.00000 | diverged |"
    assert lines[5] == "| ramnet-a-lr0.001-s1 | 8,192 | no (failed) | 0.20000 | 0.1000 |"
    # seed 2 never reached step 1000, so it is left out, not counted as 0; the 8,192 model is averaged apart, and
    # its seed 0 once, as finished (diverged: 0), not as the stale cut-off copy
    assert lines[-2:] == ["| ramnet-a | 0.001 | 44,032 | 2 | 0.85000 |", "| ramnet-a | 0.001 | 8,192 | 2 | 0.10000 |"]
    assert len(lines) == 12


def test_several_steps_give_one_table_of_seed_means_along_them(tmp_path):
    _sweep(tmp_path)
    # steps out of order: the columns follow the order given, and the most seeds (3) come at the later column
    out = _run("ramnet-a-*", "--step", "1000,500", "--results", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines() == [
        "| label | lr | state | most seeds | step 1000 | step 500 |",
        "|---|---|---|---|---|---|",
        # seed 2 was cut off before step 1000; seeds 1-2 were cut off (not finished) and still count
        "| ramnet-a | 0.001 | 44,032 | 3 | 0.85000 (2 seeds, 1 not finished) | 0.60000 (2 not finished) |",
        # the 8,192 model has no evaluation at step 500; its failed seed 1 is not finished
        "| ramnet-a | 0.001 | 8,192 | 2 | 0.10000 (1 not finished) | - |"]


def test_a_cell_of_one_seed_says_so(tmp_path):
    both = _run_record("ramnet-c", 0.001, 0, [(500, 0.4, 0.1), (1000, 0.6, 0.2)])
    early = _run_record("ramnet-c", 0.001, 1, [(500, 0.2, 0.1)])  # a finished record without step 1000
    (tmp_path / "mqar_sweep.json").write_text(json.dumps({"runs": [both, early], "unfinished": []}))
    out = _run("ramnet-c-*", "--step", "500,1000", "--results", str(tmp_path))
    assert out.stdout.strip().splitlines()[-1] == "| ramnet-c | 0.001 | 44,032 | 2 | 0.30000 | 0.60000 (1 seed) |"


def test_bad_step_folder_or_pattern_is_one_line(tmp_path):
    _sweep(tmp_path)
    for args, code, message in ((["x", "--step", "0", "--results", str(tmp_path)], 2, "--step must be a positive"),
                                (["x", "--step", "500", "--results", str(tmp_path / "nope")], 2, "no folder"),
                                (["x", "--step", "500,x", "--results", str(tmp_path)], 2, "got '500,x'"),
                                (["x", "--step", "500,500", "--results", str(tmp_path)], 2, "several different"),
                                (["x", "--step", "500,-5", "--results", str(tmp_path)], 2, "--step must be a positive"),
                                (["x", "--step", " 500", "--results", str(tmp_path)], 2, "got ' 500'"),
                                (["x", "--step", "500, 1000", "--results", str(tmp_path)], 2, "--step must be"),
                                (["x", "--step", "+500", "--results", str(tmp_path)], 2, "--step must be"),
                                (["x", "--step", "1_000", "--results", str(tmp_path)], 2, "--step must be"),
                                (["x", "--step", "1e3", "--results", str(tmp_path)], 2, "--step must be"),
                                (["gla-*", "--step", "500,1000", "--results", str(tmp_path)], 1,
                                 "evaluated at step 500, 1000"),
                                # a step no matched run reached (a typo for 1000?) is named, not printed empty
                                (["ramnet-a-*", "--step", "500,10000", "--results", str(tmp_path)], 1,
                                 "evaluated at step 10000"),
                                (["gla-*", "--step", "500", "--results", str(tmp_path)], 1, "was evaluated")):
        out = _run(*args)
        assert out.returncode == code and message in out.stderr.strip().splitlines()[-1], out.stderr


def test_a_sweep_file_that_is_not_json_or_lacks_a_field_is_one_line(tmp_path):
    for content, message in (("{not json", "mqar_sweep.json cannot be read as JSON"),
                             ('"runs"', "holds a JSON str, not the dict a sweep writes"),
                             ('{"runs": [{"label": "a"}]}', "KeyError: 'id'")):
        (tmp_path / "mqar_sweep.json").write_text(content)
        result = _run("--step", "500", "--results", str(tmp_path), "*")
        assert result.returncode == 2 and result.stdout == "" and message in result.stderr, result
        assert result.stderr.splitlines()[-1].startswith("mqar_at_step.py: error: --results: "), result.stderr
