"""CPU implementations of the ``ramnet`` ONNX domain for ONNX Runtime, through onnxruntime-extensions PyOp.

They call the project's own registered ops (the PyTorch CPU kernels), so an exported custom-flavour graph runs in
plain ORT for tests and validation. CPU only, under the GIL; not a deployment path (see README).

Errors: onnxruntime-extensions 0.15 does not turn a Python exception in a PyOp into an ORT error; it escapes as
``pybind11::error_already_set`` and the process aborts (seen here). So the registered wrappers never raise: they
record the message (``take_errors``) and return NaN outputs with valid (zero) indices, and ``runtime.ort.run``
raises the recorded error after the run. Code that calls ``session.run`` itself must check ``take_errors()``.
"""
from __future__ import annotations

import numpy as np
import torch

_REGISTERED = False
_ERRORS: list[str] = []


def take_errors() -> list[str]:
    """The errors recorded by the PyOps since the last call (and clears them)."""
    errors = list(_ERRORS)
    del _ERRORS[:]
    return errors


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
            _ERRORS.append(f"ramnet::{name}: {error}")
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

    check_pdma_inputs(v, write_idx, write_w, read_idx, read_w, S0, z0)
    check_float("PdmaScan attribute gamma", float(gamma), 0.0)
    check_float("PdmaScan attribute eps", float(eps), 0.0)
    o, S, z = torch.ops.ramnet.pdma_scan(_t(v), _t(write_idx), _t(write_w), _t(read_idx), _t(read_w),
                                         _t(S0), _t(z0), None, float(gamma), float(eps), 1e-3)
    return o.numpy(), S.numpy(), z.numpy()


def register() -> str:
    """Register the PyOps once per process; returns the onnxruntime-extensions library path."""
    global _REGISTERED
    from onnxruntime_extensions import PyOp, get_library_path, onnx_op

    if not _REGISTERED:
        onnx_op(op_type="ramnet::Address", inputs=[PyOp.dt_float], outputs=[PyOp.dt_float, PyOp.dt_int64],
                attrs={"num_factors": PyOp.dt_int64, "top_k": PyOp.dt_int64, "tau": PyOp.dt_float})(
            _guarded("Address", address_impl, _address_fallback))
        onnx_op(op_type="ramnet::PdmaScan",
                inputs=[PyOp.dt_float, PyOp.dt_int64, PyOp.dt_float, PyOp.dt_int64, PyOp.dt_float, PyOp.dt_float,
                        PyOp.dt_float],
                outputs=[PyOp.dt_float, PyOp.dt_float, PyOp.dt_float],
                attrs={"gamma": PyOp.dt_float, "eps": PyOp.dt_float})(
            _guarded("PdmaScan", pdma_scan_impl, _pdma_fallback))
        _REGISTERED = True
    return get_library_path()
