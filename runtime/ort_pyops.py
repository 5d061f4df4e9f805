"""CPU implementations of the ``ramnet`` ONNX domain for ONNX Runtime, through onnxruntime-extensions PyOp.

They call the project's own registered ops (the PyTorch CPU kernels), so an exported custom-flavour graph runs in
plain ORT for tests and validation. CPU only, under the GIL; not a deployment path (see README).

Errors: onnxruntime-extensions 0.15 does not turn a Python exception in a PyOp into an ORT error; it escapes as
``pybind11::error_already_set`` and the process aborts (seen here). So the registered wrappers never raise: they
record the message and return NaN outputs with valid (zero) indices, and ``runtime.ort.run`` raises the recorded
error after the run.

Which run an error belongs to: ORT releases the GIL during ``session.run``, so runs in several threads overlap, and
one process-wide list would hand one thread's error to another (and leave the failing run with NaN and no error).
An error is therefore recorded where the run that raised it collects it:

- ``capture()`` (what ``runtime.ort.run`` uses) installs a list in a thread-local for the duration of one run. In
  ORT's sequential execution mode (the default, and what ``runtime.ort.session`` sets for custom graphs) every
  node's ``Compute`` runs on the thread that called ``session.run``, and onnxruntime-extensions calls the PyOp there
  (it takes the GIL on that thread: same thread state, same thread-locals; checked in ``tests/runtime/
  test_ort_threads.py``), so the error lands in that run's list and nowhere else. Intra-op threads do not matter: a
  PyOp never uses them.
- In ORT's parallel execution mode nodes run on inter-op pool threads, which see no caller's thread-local. For
  such a session ``capture(off_thread=True)`` holds a process-wide lock for the whole run (parallel-mode runs
  through ``run`` are serialised against each other) and, while held, a PyOp on a thread with no capture of its
  own records into that run's list.
- A PyOp on a thread with neither (code that calls ``session.run`` itself) records into that thread's own list,
  which ``take_errors()`` returns. Such code must call ``take_errors()`` on the same thread after each run, and
  must not overlap with a parallel-mode ``run`` in another thread: while one holds the lock, a capture-less PyOp
  error is that run's (a pool thread cannot be told apart from a caller's thread).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np
import torch

from ramnet.ops.constants import DEFAULT_PROXY_EPS, NAMESPACE

_REGISTERED = False
_LOCAL = threading.local()           # .sink: the list of the run captured on this thread; .loose: see take_errors
_OFF_THREAD_RUN = threading.RLock()  # held for a whole parallel-mode run (one at a time)
_OFF_THREAD: list = []               # [the sink of the parallel-mode run now holding the lock], or []


def _loose() -> list[str]:
    if not hasattr(_LOCAL, "loose"):
        _LOCAL.loose = []
    return _LOCAL.loose


def _record(message: str) -> None:
    """Record a PyOp's error where its run collects it (see the module docstring)."""
    sink = getattr(_LOCAL, "sink", None)
    if sink is None:
        held = _OFF_THREAD[:]  # one atomic copy (the holder may clear it meanwhile); this must never raise
        sink = held[0] if held else None
    (sink if sink is not None else _loose()).append(message)


@contextmanager
def capture(*, off_thread: bool = False):
    """Collect the errors the ``ramnet`` PyOps record during the block into the list it yields, and only those.

    The block must run the session on this thread. ``off_thread`` (a session in ORT's parallel execution mode,
    whose nodes run on pool threads) also takes the errors of PyOps on threads without a capture of their own; it
    holds a process-wide lock for the block, so parallel-mode runs are serialised. Nests."""
    errors: list[str] = []
    previous = getattr(_LOCAL, "sink", None)
    _LOCAL.sink = errors
    try:
        if off_thread:
            with _OFF_THREAD_RUN:
                outer = _OFF_THREAD[:]  # [] unless nested in another parallel-mode capture on this thread
                _OFF_THREAD[:] = [errors]
                try:
                    yield errors
                finally:
                    _OFF_THREAD[:] = outer
        else:
            yield errors
    finally:
        _LOCAL.sink = previous


def take_errors() -> list[str]:
    """The errors recorded by the PyOps on this thread outside any ``capture()`` since the last call (and clears
    them): for code that calls ``session.run`` itself (sequential execution mode), on the thread that ran it."""
    errors = _loose()
    _LOCAL.loose = []
    return list(errors)


def _nan_like(a, rank: int) -> np.ndarray:
    shape = a.shape if isinstance(a, np.ndarray) and a.ndim == rank else (1,) * rank
    return np.full(shape, np.nan, dtype=np.float32)


def _address_fallback(x, num_factors=None, top_k=None, tau=None):
    k = int(top_k) if isinstance(top_k, (int, np.integer)) and 0 < int(top_k) < 4096 else 1
    lead = x.shape[:-1] if isinstance(x, np.ndarray) and x.ndim >= 1 else (1,)
    return np.full(lead + (k,), np.nan, np.float32), np.zeros(lead + (k,), np.int64)


def _pdma_fallback(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma=None, eps=None):
    return _nan_like(v, 4), _nan_like(S0, 4), _nan_like(z0, 3)


def _guarded(name: str, impl, fallback):
    def pyop(*args, **attrs):  # ORT passes the node attributes as keywords
        try:
            return impl(*args, **attrs)
        except Exception as error:  # noqa: BLE001  (any escape aborts the process; see the module docstring)
            _record(f"{NAMESPACE}::{name}: {error}")
            return fallback(*args, **attrs)

    return pyop


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def address_impl(x, num_factors, top_k, tau):
    """``ramnet::Address`` on CPU: ``x [..., U*d_p] -> (weights [..., K], indices int64 [..., K])``."""
    from ramnet.ops.checks import address_geometry, check_float

    from .ort_checks import check_float_input

    check_float_input("Address input x", x)
    address_geometry("x", x.shape[-1], int(num_factors), int(top_k))
    check_float("Address attribute tau", float(tau), 0.0, low_open=True)
    w, i = torch.ops.ramnet.address(_t(x), int(num_factors), int(top_k), float(tau))
    return w.numpy(), i.numpy()


def pdma_scan_impl(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma, eps):
    """``ramnet::PdmaScan`` on CPU (see ``export/onnx_schemas.py``); inputs are checked first."""
    from ramnet.ops.checks import check_float

    from .ort_checks import check_pdma_inputs

    check_float("PdmaScan attribute gamma", float(gamma), 0.0)
    check_pdma_inputs(v, write_idx, write_w, read_idx, read_w, S0, z0, float(gamma))
    check_float("PdmaScan attribute eps", float(eps), 0.0)
    o, S, z = torch.ops.ramnet.pdma_scan(_t(v), _t(write_idx), _t(write_w), _t(read_idx), _t(read_w),
                                         _t(S0), _t(z0), None, float(gamma), float(eps), DEFAULT_PROXY_EPS)
    return o.numpy(), S.numpy(), z.numpy()


def register() -> str:
    """Register the PyOps once per process; returns the onnxruntime-extensions library path."""
    global _REGISTERED
    from onnxruntime_extensions import PyOp, get_library_path, onnx_op

    if not _REGISTERED:
        onnx_op(op_type=f"{NAMESPACE}::Address", inputs=[PyOp.dt_float], outputs=[PyOp.dt_float, PyOp.dt_int64],
                attrs={"num_factors": PyOp.dt_int64, "top_k": PyOp.dt_int64, "tau": PyOp.dt_float})(
            _guarded("Address", address_impl, _address_fallback))
        onnx_op(op_type=f"{NAMESPACE}::PdmaScan",
                inputs=[PyOp.dt_float, PyOp.dt_int64, PyOp.dt_float, PyOp.dt_int64, PyOp.dt_float, PyOp.dt_float,
                        PyOp.dt_float],
                outputs=[PyOp.dt_float, PyOp.dt_float, PyOp.dt_float],
                attrs={"gamma": PyOp.dt_float, "eps": PyOp.dt_float})(
            _guarded("PdmaScan", pdma_scan_impl, _pdma_fallback))
        _REGISTERED = True
    return get_library_path()
