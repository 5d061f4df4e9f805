"""The sweep's worker processes: started so that SIGINT reaches them, and stopped with SIGINT, then killed after a
grace period, so that none outlives the sweep holding the GPU."""
from __future__ import annotations

import os
import signal
import subprocess
import time


def _interruptible():
    """In the worker, before exec: SIGINT back to its default, so that Python turns it into KeyboardInterrupt. A
    sweep started as a background job by a shell script (``cmd &``) inherits SIGINT ignored, and so would its
    workers: ``stop_workers`` could then only kill them after the grace period."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn_worker(args: list, log, env=None) -> subprocess.Popen:
    """Start one worker process writing to ``log``, interruptible by SIGINT whatever its parent ignores."""
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                            preexec_fn=_interruptible if os.name == "posix" else None)


def stop_workers(workers: list, grace: float = 10.0) -> None:
    """Interrupt the workers still running (SIGINT, as a time budget does), then kill those left after
    ``grace`` seconds: none outlives the sweep to hold the GPU."""
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
