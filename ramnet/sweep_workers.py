"""Stopping the sweep's worker processes: SIGINT first, then a kill after a grace period, so that none outlives the
sweep holding the GPU."""
from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time


@contextlib.contextmanager
def sigint_interrupts():
    """SIGINT raises KeyboardInterrupt inside the block, and its disposition is given back after. A sweep's time
    budget arrives as SIGINT (``timeout --signal=INT`` in the GPU scripts), and the sweep writes its summary, with
    the runs in flight, on that KeyboardInterrupt. A script's background job (``cmd &``) starts with SIGINT
    ignored, which Python keeps: the budget's SIGINT then did nothing, timeout's SIGKILL came 30 s later, and
    the cut runs' progress never reached the summary (session Z). Only the main thread can set a handler; a
    sweep called from another thread keeps what it has."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_workers(workers: list, grace: float = 10.0) -> None:
    """Interrupt the workers still running (SIGINT, as a time budget does), then kill those left after
    ``grace`` seconds: none outlives the sweep to hold the GPU. A worker starts with SIGINT at its default (the
    sweep takes SIGINT itself, ``sigint_interrupts``, and a handled signal is reset to the default across exec),
    so it stops on KeyboardInterrupt; one that ignores SIGINT is killed after the grace period."""
    for proc, _ in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    for proc, log in workers:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
