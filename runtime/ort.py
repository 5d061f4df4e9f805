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


def run(sess, feeds: dict, *, check: bool = True) -> dict:
    """Run with named numpy inputs; returns outputs by name.

    With ``check`` (default) the feeds are validated first (``ort_checks.check_feeds``): names, dtypes, ranks,
    static dims, one batch size, token ids in ``[0, vocab)``, ``position >= 0`` and finite states with ``z >= 0``.
    A failure is a ``ValueError``/``TypeError`` naming the input, never a crash or a silent wrong result."""
    from .ort_checks import check_feeds

    from .ort_pyops import take_errors

    feeds = check_feeds(sess, feeds) if check else {k: np.ascontiguousarray(v) for k, v in feeds.items()}
    names = [o.name for o in sess.get_outputs()]
    take_errors()
    try:
        outputs = sess.run(names, feeds)
    finally:
        errors = take_errors()
    if errors:  # a ramnet PyOp refused its inputs (it cannot raise inside ORT; see ort_pyops)
        raise RamnetNodeError("; ".join(errors))
    return dict(zip(names, outputs))


class RamnetNodeError(ValueError):
    """A ``ramnet`` node refused its inputs during an ORT run (the message names the input and the range)."""
