"""The sweep and SIGINT, its time budget's signal: stopping the worker processes (SIGINT first, then a kill after a
grace period, so that none outlives the sweep holding the GPU), and the SIGINT dispositions around the sweep and
around the summary written on an interrupt."""
from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # only it may set signal handlers


@contextlib.contextmanager
def sigint_interrupts():
    """SIGINT raises KeyboardInterrupt inside the block, and an ignored SIGINT is given back after. The sweep
    stops on its time budget's SIGINT and writes the runs in flight into its summary. Under ``timeout`` (the GPU
    scripts) the sweep always starts with SIGINT at its default, but started directly as a script's background
    job (``ramnet sweep ... &``) it inherits SIGINT ignored, and Python keeps that: a ``kill -INT`` then does
    nothing. A caller's own handler is left alone, as is a sweep run from another thread."""
    if not _main_thread() or signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def sigint_ignored():
    """SIGINT is ignored inside the block and its handler is given back after: for the summary written on an
    interrupt. ``timeout`` sends its signal to the sweep and then to the sweep's whole process group, so a second
    SIGINT can follow the first and cut that write short."""
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN if previous is None else previous)


def stop_workers(workers: list, grace: float = 10.0) -> None:
    """Interrupt the workers still running (SIGINT, as a time budget does), then kill those left after
    ``grace`` seconds: none outlives the sweep to hold the GPU. A worker inherits the sweep's SIGINT disposition
    across exec as ignored or default (a handler becomes the default), so it stops on KeyboardInterrupt unless
    SIGINT was ignored; such a worker is killed after the grace period."""
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
