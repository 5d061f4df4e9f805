"""Stopping the sweep's worker processes: SIGINT first, then a kill after a grace period, so that none outlives the
sweep holding the GPU."""
from __future__ import annotations

import signal
import subprocess
import time


def stop_workers(workers: list, grace: float = 10.0) -> None:
    """Interrupt the workers still running (SIGINT, as a time budget does), then kill those left after
    ``grace`` seconds: none outlives the sweep to hold the GPU. A worker keeps its sweep's SIGINT disposition, so
    the workers of a sweep started as a script's background job (``cmd &``, which ignores SIGINT, as the shell
    intends) are killed after the grace period."""
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
