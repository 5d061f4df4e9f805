"""The GPU session script (``benchmarks/gpu_mqar_session.sh``) runs each sweep's pending runs in the order of its
priority patterns (``ramnet sweep --only``). A run that falls out of every pattern by mistake would never run,
and a session would not say so: check the patterns against the specs and the committed summaries. The specs are
expanded without building their models, so this runs without fla."""
import json
import re
from pathlib import Path

import pytest
import yaml

from ramnet.sweep import select_runs
from ramnet.sweep_spec import DEFAULTS, expand

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_mqar_session.sh"
SWEEPS = {"SEEDS_ONLY": ("seeds.yaml", "mqar_seeds"), "MAIN_ONLY": ("main.yaml", "mqar"),
          "ABL_ONLY": ("ablations.yaml", "ablations"),
          "ARCH_ONLY": ("paper_arch.yaml", "mqar_paper_arch"), "PROFILE_ONLY": ("profile.yaml", "mqar_profile"),
          "LONG_ONLY": ("long.yaml", "mqar_long")}
# left out on purpose: the kept-model copy of paper-m64-k16 at lr 3e-3 (that lr did not learn, 0.004)
LEFT_OUT = {"ARCH_ONLY": {"paper-m64-k16-saved-lr0.003-s0"}}


def _patterns(variable: str) -> str:
    match = re.search(rf"^{variable}=\$\{{{variable}-'([^']*)'\}}$", SCRIPT.read_text(), re.M)
    assert match, f"{variable}'s default not found in {SCRIPT.name}"
    return match.group(1)


def _queue(variable: str, patterns: str | None = None, nothing_done: bool = False) -> tuple[list[str], set[str]]:
    """(the pending runs in the session's order, the pending runs its patterns leave out); ``nothing_done`` counts
    every run of the spec as pending, whatever the summary holds"""
    spec_file, name = SWEEPS[variable]
    spec = {**DEFAULTS, **yaml.safe_load((ROOT / "benchmarks" / "mqar" / spec_file).read_text())}
    runs = expand(spec)
    summary_file = ROOT / "benchmarks" / "results" / f"{name}_sweep.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {"runs": []}  # none run yet
    done = {} if nothing_done else {r["id"]: r["fingerprint"] for r in summary["runs"]}
    pending = [r["id"] for r in runs if done.get(r["id"]) != r["fingerprint"]]
    order = [r["id"] for r in select_runs(runs, patterns or _patterns(variable)) if r["id"] in pending]
    return order, set(pending) - set(order)


@pytest.mark.parametrize("variable", sorted(SWEEPS))
def test_only_the_intended_runs_are_left_out(variable):
    order, left_out = _queue(variable)
    assert left_out == LEFT_OUT.get(variable, set())
    assert len(order) == len(set(order))


def test_a_pattern_list_that_drops_runs_is_caught():
    """The check above can fail: without a catch-all, patterns leave runs out."""
    _, left_out = _queue("MAIN_ONLY", "gla-*", nothing_done=True)
    assert left_out and not any(run.startswith("gla-") for run in left_out)


@pytest.mark.parametrize("steps, message", [
    ("mqar bogus", "unknown step 'bogus'"),
    ("gdn gdn_alongside mqar", "pick one"),
    ("gdn_alongside gdn", "pick one"),
])
def test_the_session_script_refuses_bad_steps_before_starting(steps, message, tmp_path):
    """``gpu_session_lm_mqar.sh start`` checks SESSION_STEPS before it writes anything or starts a step."""
    import os
    import subprocess
    script = ROOT / "benchmarks" / "gpu_session_lm_mqar.sh"
    done = subprocess.run(["bash", str(script), "start", "10"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SESSION_STEPS": steps})
    assert done.returncode == 2 and message in done.stderr
    assert done.stderr.count("\n") == 1 and "session started" not in done.stdout


@pytest.mark.parametrize("seconds, env, message", [
    ("720", {"RUN_SECONDS": "650"}, "give at least 730"),
    ("300", {"MIN_SWEEP_SECONDS": "400"}, "give at least 420"),
])
def test_a_sweeps_only_session_refuses_seconds_that_cannot_start_the_sweeps(seconds, env, message, tmp_path):
    """A sweeps-only session whose SECONDS leave the sweeps under MIN_SWEEP_SECONDS after its set-up would hold a
    machine and run nothing (session X lost a call to it): ``start`` refuses it in one line and writes nothing."""
    import os
    import subprocess
    script = ROOT / "benchmarks" / "gpu_session_lm_mqar.sh"
    session = tmp_path / "session"
    done = subprocess.run(["bash", str(script), "start", seconds], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SESSION_STEPS": "mqar", "RAMNET_SESSION_DIR": str(session), **env})
    assert done.returncode == 2 and message in done.stderr, done
    assert done.stderr.count("\n") == 1 and not session.exists()


@pytest.mark.parametrize("variable, value", [("MAIN_PARALLEL", "-1"), ("SEEDS_PARALLEL", "x"), ("ABL_PARALLEL", "2.5"),
                                             ("PROBE_PARALLEL", "three"), ("PROFILE_PARALLEL", "1x")])
def test_the_sweep_session_refuses_bad_worker_counts_before_starting(variable, value):
    """``gpu_mqar_session.sh start`` checks every worker count before it starts any sweep."""
    import os
    import subprocess
    done = subprocess.run(["bash", str(SCRIPT), "start", "10"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, variable: value})
    assert done.returncode == 2 and f"got '{value}'" in done.stderr and done.stderr.count("\n") == 1
    assert "started" not in done.stdout


def test_the_cost_step_names_models_of_main_yaml():
    """The session's ``cost`` step times models by their main.yaml labels: a renamed row must not leave it
    timing nothing (bench_mqar_step.py refuses an unknown label, and the session would only log that)."""
    script = (ROOT / "benchmarks" / "gpu_session_lm_mqar.sh").read_text()
    groups = re.findall(r'"(\d+k [\w.-]+(?: [\w.-]+)*)"', script)
    assert len(groups) == 3, groups
    labels = {m["label"] for m in yaml.safe_load((ROOT / "benchmarks" / "mqar" / "main.yaml").read_text())["models"]}
    for group in groups:
        named = group.split()[1:]
        assert len(named) >= 2 and set(named) <= labels, set(named) - labels


def test_collect_names_a_sweep_that_never_started_in_one_line():
    """A sweep left out of a session (0 workers) has no work folder; ``collect`` says so and goes on."""
    import os
    import subprocess
    script = ROOT / "benchmarks" / "gpu_sweep_background.sh"
    name = f"never-started-{os.getpid()}"
    done = subprocess.run(["bash", str(script), "collect", name], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "OUT"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{name}: not started on this machine (no /tmp/ramnet-sweep-{name})\n"
    assert done.stderr == ""


@pytest.mark.parametrize("seconds, run_seconds, message", [("500", "700", "must exceed RUN_SECONDS (700"),
                                                            ("700", "700", "must exceed RUN_SECONDS (700"),
                                                            ("900", "x", "RUN_SECONDS must be a whole number")])
def test_the_sweep_session_refuses_a_budget_that_would_start_no_run(seconds, run_seconds, message):
    """No run starts after SECONDS - RUN_SECONDS: a budget at or under RUN_SECONDS is refused in one line rather than
    started as sweeps that run nothing."""
    import os
    import subprocess
    done = subprocess.run(["bash", str(SCRIPT), "start", seconds], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "RUN_SECONDS": run_seconds})
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "started" not in done.stdout


@pytest.mark.parametrize("case", ["past the deadline", "in time", "failed", "no deadline file"])
def test_collect_says_when_an_unfinished_run_will_miss_the_deadline(case):
    """``collect`` sets each unfinished run's expected end (the pace of its last interval) beside the sweep's
    deadline, so that a run which cannot finish shows while the session can still act (session V lost four runs
    at step 3,500); a failed run gets no end."""
    import os
    import shutil
    import subprocess
    import time
    script = ROOT / "benchmarks" / "gpu_sweep_background.sh"
    name = f"eta-test-{os.getpid()}-{case.replace(' ', '-')}"
    work = Path(f"/tmp/ramnet-sweep-{name}")
    run_dir = work / "runs" / "r1"
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        # 40 s for the first 500 steps, then 60 s for the next 500: at the last interval's pace 3,000 steps take
        # 360 s more (at the average pace, 300 s); with collect's 60 s margin, a deadline 400 s away is missed at
        # the last interval's pace only
        history = [{"step": 500, "seconds": 40.0}, {"step": 1000, "seconds": 100.0}]
        (run_dir / "progress.json").write_text(json.dumps({"id": "r1", "step": 1000, "total_steps": 4000,
                                                           "accuracy": 0.5, "seconds": 100.0, "history": history}))
        if case != "no deadline file":
            (work / ".deadline").write_text(str(int(time.time()) + (3600 if case == "in time" else 400)))
        if case == "failed":
            (run_dir / "error.txt").write_text("RuntimeError: boom\n")
        done = subprocess.run(["bash", str(script), "collect", name], capture_output=True, text=True, timeout=60,
                              env={k: v for k, v in os.environ.items() if k != "OUT"})
        line = [ln for ln in done.stdout.splitlines() if ln.startswith("  r1:")]
        assert len(line) == 1 and "step 1000/4000" in line[0], done.stdout + done.stderr
        assert ("ends about" in line[0]) == (case != "failed"), line[0]
        assert ("failed (error.txt)" in line[0]) == (case == "failed"), line[0]
        assert ("AFTER the sweep's deadline" in line[0]) == (case == "past the deadline"), line[0]
    finally:
        shutil.rmtree(work)


def test_wait_returns_when_no_sweep_holds_its_lock_and_stops_at_its_limit():
    """``wait SECONDS`` blocks while a sweep holds its work folder's lock, at most SECONDS, and returns as soon as
    none does."""
    import fcntl
    import os
    import subprocess
    import time
    work = Path(f"/tmp/ramnet-sweep-wait-test-{os.getpid()}")
    work.mkdir(exist_ok=True)
    lock = work / ".lock"
    try:
        with open(lock, "w") as held:  # held as a running sweep holds it (flock(2), as flock(1) takes it)
            fcntl.flock(held, fcntl.LOCK_EX)
            started = time.monotonic()
            done = subprocess.run(["bash", str(SCRIPT), "wait", "2"], capture_output=True, text=True, timeout=60)
            assert done.returncode == 0 and time.monotonic() - started >= 2, done
            assert done.stdout.startswith("still running after 2 s:") and str(work) in done.stdout
        started = time.monotonic()
        done = subprocess.run(["bash", str(SCRIPT), "wait", "30"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and str(work) not in done.stdout, done
        assert time.monotonic() - started < 10, "wait went on after the lock was released"
    finally:
        lock.unlink(missing_ok=True)
        work.rmdir()


def test_session_wait_waits_for_the_steps_before_the_sweeps(tmp_path):
    """``gpu_session_lm_mqar.sh wait SECONDS`` blocks while the session's steps hold their lock (the sweeps not yet
    started: a wait right after ``start`` once returned at once), at most SECONDS, and returns once they have
    ended and no sweep runs."""
    import fcntl
    import os
    import subprocess
    import time
    script = ROOT / "benchmarks" / "gpu_session_lm_mqar.sh"
    env = {**os.environ, "RAMNET_SESSION_DIR": str(tmp_path)}
    with open(tmp_path / ".lock", "w") as held:  # as the steps' flock -o holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        started = time.monotonic()
        done = subprocess.run(["bash", str(script), "wait", "2"], capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0 and time.monotonic() - started >= 2, done
        assert done.stdout.startswith("session steps still running after 2 s"), done
    started = time.monotonic()
    done = subprocess.run(["bash", str(script), "wait", "30"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and "steps still running" not in done.stdout, done
    assert time.monotonic() - started < 10, "wait went on after the steps' lock was released"
    bad = subprocess.run(["bash", str(script), "wait", "soon"], capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 2 and "SECONDS must be a whole number" in bad.stderr


def test_collect_names_the_runs_that_finished_on_this_machine():
    """``gpu_sweep_background.sh collect`` names each run this machine finished (it has run.json), with its accuracy
    and seconds, and not the results restored from a committed summary (no run.json): session Y's first call
    counted a run that had ended between two calls without naming it."""
    import os
    import shutil
    import subprocess
    import uuid
    name = f"pytest-collect-{uuid.uuid4().hex[:8]}"
    work = Path(f"/tmp/ramnet-sweep-{name}")
    try:
        for run_id, started_here in (("ran-here-lr0.001-s0", True), ("restored-lr0.001-s0", False)):
            run = work / "runs" / run_id
            run.mkdir(parents=True)
            (run / "result.json").write_text(json.dumps({"id": run_id, "accuracy": 0.958716, "seconds": 322.2}))
            if started_here:
                (run / "run.json").write_text(json.dumps({"id": run_id}))
        env = {k: v for k, v in os.environ.items() if k != "OUT"}
        done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_sweep_background.sh"), "collect", name],
                              capture_output=True, text=True, timeout=60, env=env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert done.returncode == 0, done
    assert f"{name}: 2 runs with results" in done.stdout
    assert "  1 finished on this machine\n  ran-here-lr0.001-s0: accuracy 0.95872, 322 s\n" in done.stdout
    assert "restored-lr0.001-s0" not in done.stdout


@pytest.mark.parametrize("status, expected", [("2", "the sweep FAILED (exit status 2"), ("124", "stopped at its budget"),
                                              ("130", "interrupted"), ("137", "KILLED 30 s after its budget"),
                                              ("0", None), (None, None)])
def test_collect_reports_a_sweep_that_failed_before_any_run(status, expected):
    """A sweep that exits on an error before its first run (session Z's: fla not importable) leaves no run folder;
    ``collect`` must say it failed, with its log's error line, rather than only "0 runs with results, 0 failed"."""
    import os
    import shutil
    import subprocess
    import uuid
    name = f"pytest-exit-{uuid.uuid4().hex[:8]}"
    work, log = Path(f"/tmp/ramnet-sweep-{name}"), Path(f"/tmp/sweep-{name}.log")
    error = "ramnet: error: model deltanet-4k: model 'deltanet' needs fla"
    try:
        work.mkdir(parents=True)
        if status is not None:
            (work / ".exit").write_text(status + "\n")
        log.write_text(f"{error}\n{error}\n")
        env = {k: v for k, v in os.environ.items() if k != "OUT"}
        done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_sweep_background.sh"), "collect", name],
                              capture_output=True, text=True, timeout=60, env=env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        log.unlink(missing_ok=True)
    assert done.returncode == 0, done
    if expected is None:
        assert "FAILED" not in done.stdout and "budget" not in done.stdout and "interrupted" not in done.stdout, \
            done.stdout
    else:
        assert expected in done.stdout, done.stdout
    assert (f"2 {error}" in done.stdout) == (status == "2"), done.stdout


def test_each_priority_variable_reaches_its_sweep():
    """Each *_ONLY variable must be what ``start`` passes to its sweep: a default that no sweep reads would leave the
    checks above testing nothing (SEEDS_ONLY was once a literal '')."""
    script = SCRIPT.read_text()
    for variable, (spec_file, name) in SWEEPS.items():
        workers = variable.split("_")[0] + "_PARALLEL"
        line = f'start_sweep "${workers}" benchmarks/mqar/{spec_file} {name} "${variable}"'
        assert line in script, f"{SCRIPT.name} does not start {name} with ${variable}"


@pytest.mark.parametrize("model_bytes, pieces", [(1000, None), (20 * 2**20, 2)])
def test_collect_returns_kept_models_beside_session_tgz_in_pieces_the_tool_brings_back(tmp_path, model_bytes, pieces):
    """The device tool brings back files of 16 MiB at most, and a 256-wide model is 21 MiB: ``collect`` must leave a
    larger models tar in pieces of at most 15 MiB that join into it, and the session's collect must put them beside
    session.tgz, not in it (a session.tgz past 16 MiB would lose the summaries with it)."""
    import os
    import subprocess
    import tarfile
    import uuid
    name = f"pytest-models-{uuid.uuid4().hex[:8]}"
    work, out = Path(f"/tmp/ramnet-sweep-{name}"), tmp_path / "out"
    out.mkdir()
    try:
        model = work / "runs" / "r-lr0.001-s0" / "model"
        model.mkdir(parents=True)
        (model / "model.safetensors").write_bytes(os.urandom(model_bytes))
        (out / f"{name}_models.tar.part05").write_bytes(b"stale")  # an earlier collect's piece: must go
        done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_sweep_background.sh"), "collect", name],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "OUT": str(out)})
        assert done.returncode == 0, done
        whole = out / f"{name}_models.tar"
        found = sorted(p.name for p in out.iterdir() if "_models.tar" in p.name)
        if pieces is None:
            assert found == [whole.name], found
        else:
            assert found == [f"{whole.name}.part{i:02d}-of-{pieces:02d}" for i in range(pieces)], found
            assert all((out / f).stat().st_size <= 15 * 2**20 for f in found)
            whole.write_bytes(b"".join((out / f).read_bytes() for f in found))
        with tarfile.open(whole) as tar:
            member = tar.extractfile("runs/r-lr0.001-s0/model/model.safetensors").read()
        assert member == (model / "model.safetensors").read_bytes()
    finally:
        import shutil
        shutil.rmtree(work, ignore_errors=True)


def test_the_session_collect_puts_kept_models_beside_session_tgz(tmp_path):
    """``gpu_session_lm_mqar.sh collect`` copies the sweeps' model tars and pieces into $OUT and leaves them out of
    session.tgz, which must stay under the 16 MiB that a file of $OUT may be to come back."""
    import os
    import subprocess
    import tarfile
    session, out = tmp_path / "session", tmp_path / "out"
    (session / "mqar").mkdir(parents=True)
    out.mkdir()
    (session / "session.log").write_text("step log\n")
    (session / "mqar" / "mqar_profile_models.tar.part00-of-01").write_bytes(b"piece")
    (session / "mqar" / "mqar_probe_models.tar").write_bytes(b"tar")
    env = {**os.environ, "OUT": str(out), "RAMNET_SESSION_DIR": str(session)}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session_lm_mqar.sh"), "collect"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done
    assert (out / "mqar_profile_models.tar.part00-of-01").read_bytes() == b"piece"
    assert (out / "mqar_probe_models.tar").read_bytes() == b"tar"
    with tarfile.open(out / "session.tgz") as tar:
        names = tar.getnames()
    assert "./session.log" in names and not [n for n in names if "_models.tar" in n], names
