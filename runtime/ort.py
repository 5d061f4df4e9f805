"""ONNX Runtime sessions for exported RAM-Net graphs, with explicit state I/O."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def session(path, *, providers=None, custom_ops: bool | None = None):
    """An ``InferenceSession`` for ``path``. ``custom_ops`` (default: when the graph has ``ramnet`` nodes)
    registers the CPU PyOp implementations of the ``ramnet`` domain."""
    import onnx
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX model at {path}")
    if custom_ops is None:
        custom_ops = any(n.domain == "ramnet" for n in onnx.load(str(path), load_external_data=False).graph.node)
    options = ort.SessionOptions()
    if custom_ops:
        from .ort_pyops import register

        options.register_custom_ops_library(register())
    return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])


def run(sess, feeds: dict) -> dict:
    """Run with named numpy inputs; returns outputs by name. Missing or unexpected inputs are a ValueError."""
    expected = {i.name for i in sess.get_inputs()}
    if set(feeds) != expected:
        raise ValueError(f"inputs must be exactly {sorted(expected)}, got {sorted(feeds)}")
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {k: np.ascontiguousarray(v) for k, v in feeds.items()})))
