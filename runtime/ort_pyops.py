"""CPU implementations of the ``ramnet`` ONNX domain for ONNX Runtime, through onnxruntime-extensions PyOp.

They call the project's own registered ops (the PyTorch CPU kernels), so an exported custom-flavour graph runs in
plain ORT for tests and validation. CPU only, under the GIL; not a deployment path (see README).
"""
from __future__ import annotations

import numpy as np
import torch

_REGISTERED = False


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def register() -> str:
    """Register the PyOps once per process; returns the onnxruntime-extensions library path."""
    global _REGISTERED
    from onnxruntime_extensions import PyOp, get_library_path, onnx_op

    if not _REGISTERED:
        @onnx_op(op_type="ramnet::Address", inputs=[PyOp.dt_float], outputs=[PyOp.dt_float, PyOp.dt_int64],
                 attrs={"num_factors": PyOp.dt_int64, "top_k": PyOp.dt_int64, "tau": PyOp.dt_float})
        def _address(x, num_factors, top_k, tau):
            w, i = torch.ops.ramnet.address(_t(x), int(num_factors), int(top_k), float(tau))
            return w.numpy(), i.numpy()

        @onnx_op(op_type="ramnet::PdmaScan",
                 inputs=[PyOp.dt_float, PyOp.dt_int64, PyOp.dt_float, PyOp.dt_int64, PyOp.dt_float, PyOp.dt_float,
                         PyOp.dt_float],
                 outputs=[PyOp.dt_float, PyOp.dt_float, PyOp.dt_float],
                 attrs={"gamma": PyOp.dt_float, "eps": PyOp.dt_float})
        def _pdma_scan(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma, eps):
            o, S, z = torch.ops.ramnet.pdma_scan(_t(v), _t(write_idx), _t(write_w), _t(read_idx), _t(read_w),
                                                 _t(S0), _t(z0), None, float(gamma), float(eps), 1e-3)
            return o.numpy(), S.numpy(), z.numpy()

        _REGISTERED = True
    return get_library_path()
