"""How `ramnet sweep` stops on a time budget's SIGINT: the summary keeps the runs in flight (`unfinished`), the
workers stop, and the signal's disposition is given back. The GPU scripts end a sweep with `timeout --signal=INT`,
which signals the sweep and then its whole process group."""
import json
import os
import subprocess
import sys
import time

import pytest

from ramnet.sweep import sweep
from tests.model.test_sweep_session import ATTN, _spec, _spec_file


def test_an_interrupted_sweep_writes_its_summary_with_the_runs_in_flight(tmp_path, monkeypatch):
    import ramnet.sweep as sweep_module
    from ramnet.sweep_run import progress_record, write_json_atomic

    spec = _spec(tmp_path, lrs=[1e-3], models=[ATTN])

    def cut_off(run, progress=False, out_dir=None):  # one evaluation, then the time budget's SIGINT
        write_json_atomic(out_dir / "progress.json", progress_record(run, 7, [{"step": 2, "accuracy": 0.25}]))
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_module, "run_one", cut_off)
    with pytest.raises(KeyboardInterrupt):
        sweep(spec, progress=False)
    summary = json.loads((tmp_path / "out" / "mqar_sweep.json").read_text())
    assert summary["runs"] == [] and [(r["step"], r["accuracy"], r["state_size"]) for r in summary["unfinished"]] \
        == [(2, 0.25, 7)]


def test_interrupted_workers_are_stopped(tmp_path):
    from ramnet.sweep_workers import stop_workers

    log = open(tmp_path / "log.txt", "w")
    # the child takes SIGINT itself: a test run as a shell's background job would hand it SIGINT ignored
    child = ("import signal, time; signal.signal(signal.SIGINT, signal.default_int_handler); print('up', flush=True); "
             "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=log, stderr=subprocess.STDOUT)
    while "up" not in (tmp_path / "log.txt").read_text():
        time.sleep(0.02)
    start = time.monotonic()
    stop_workers([(proc, log)], grace=5.0)
    assert proc.returncode is not None and time.monotonic() - start < 5.0 and log.closed
    assert "KeyboardInterrupt" in (tmp_path / "log.txt").read_text()


def test_a_worker_that_ignores_sigint_is_killed_after_the_grace(tmp_path):
    from ramnet.sweep_workers import stop_workers

    log = open(tmp_path / "log.txt", "w")
    child = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=log, stderr=subprocess.STDOUT)
    while "up" not in (tmp_path / "log.txt").read_text():
        time.sleep(0.02)
    stop_workers([(proc, log)], grace=0.5)
    assert proc.returncode == -9 and log.closed


# --stop-starting-after and save_model


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_sweep_started_with_sigint_ignored_still_stops_on_sigint_and_writes_the_runs_in_flight(tmp_path, parallel):
    """Started directly as a script's background job (``ramnet sweep ... &``) the sweep inherits SIGINT ignored;
    a time budget's SIGINT must still stop it, its workers must stop on it too (not be killed after the grace, not
    count as failed), and the cut run's progress must reach the summary."""
    import signal
    spec = _spec_file(tmp_path, steps=100000, eval_every=2, lrs=[1e-3], models=[ATTN], parallel=parallel)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # SIGINT ignored, then exec, as a shell does for `cmd &` (no preexec_fn: this process has threads)
    launcher = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "os.execv(sys.executable, [sys.executable, '-m', 'ramnet', 'sweep', sys.argv[1], '--quiet'])")
    proc = subprocess.Popen([sys.executable, "-c", launcher, str(spec)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "out" / "runs"
    try:
        def evaluated() -> bool:  # a progress file past its first evaluation (step 0 is written at the start)
            for path in runs.glob("*/progress.json"):
                try:
                    if json.loads(path.read_text())["step"] >= 2:
                        return True
                except (ValueError, KeyError):
                    pass  # being rewritten
            return False

        deadline = time.monotonic() + 120
        while not evaluated() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert evaluated(), "no run got past its first evaluation in 120 s"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and "ramnet: interrupted" in err, (proc.returncode, out, err)
    summary = json.loads((tmp_path / "out" / "mqar_sweep.json").read_text())
    assert summary["runs"] == [] and [r["id"] for r in summary["unfinished"]] == ["attn-lr0.001-s0"]
    assert summary["unfinished"][0]["step"] >= 2 and "error" not in summary["unfinished"][0]
    assert not list(runs.glob("*/error.txt"))
    if parallel > 1:  # the worker stopped on the SIGINT it was sent, rather than being killed after the grace
        assert "KeyboardInterrupt" in (runs / "attn-lr0.001-s0" / "log.txt").read_text()


def test_a_second_sigint_does_not_cut_the_interrupt_summary_short(tmp_path, monkeypatch):
    """``timeout`` signals the sweep and then its process group: a second SIGINT may land while the summary of
    the first is being written."""
    import signal
    import ramnet.sweep as sweep_module
    from ramnet.sweep_run import progress_record, write_json_atomic

    spec = _spec(tmp_path, lrs=[1e-3], models=[ATTN])

    def cut_off(run, progress=False, out_dir=None):
        write_json_atomic(out_dir / "progress.json", progress_record(run, 7, [{"step": 2, "accuracy": 0.25}]))
        raise KeyboardInterrupt

    real_write = sweep_module.write_summaries

    def write_after_a_second_sigint(spec_, runs_):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the signal is handled here, if it is not ignored
        return real_write(spec_, runs_)

    monkeypatch.setattr(sweep_module, "run_one", cut_off)
    monkeypatch.setattr(sweep_module, "write_summaries", write_after_a_second_sigint)
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            sweep(spec, progress=False)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
    summary = json.loads((tmp_path / "out" / "mqar_sweep.json").read_text())
    assert [(r["step"], r["accuracy"]) for r in summary["unfinished"]] == [(2, 0.25)]


def test_the_sigint_helpers_give_the_disposition_back():
    import signal
    from ramnet.sweep_workers import sigint_ignored, sigint_interrupts
    before = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with sigint_interrupts():
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        handler = lambda *a: None  # noqa: E731 - a caller's own handler is left alone
        signal.signal(signal.SIGINT, handler)
        with sigint_interrupts():
            assert signal.getsignal(signal.SIGINT) is handler
        assert signal.getsignal(signal.SIGINT) is handler
        with pytest.raises(RuntimeError):
            with sigint_ignored():
                assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
                raise RuntimeError
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, before)
