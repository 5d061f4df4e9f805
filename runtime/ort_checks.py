"""Input checks for the ONNX Runtime paths. ORT itself trusts index-valued inputs only partly, and a wrong state
silently gives wrong text, so every feed is checked here first and every failure names the input and the allowed
range. Used by ``runtime.ort.run`` (graph inputs) and ``runtime.ort_pyops`` (the ``ramnet`` node inputs). The state
bounds, and why they hold for every state a model writes, are in ``runtime/state_checks.py``.
"""
from __future__ import annotations

import json
import weakref

import numpy as np

from ramnet.ops.checks import MAX_POSITION

from .state_checks import check_layer_state, check_named_states

ORT_TO_NUMPY = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
                "tensor(int64)": np.int64, "tensor(int32)": np.int32}
TOKEN_INPUTS = ("input_ids", "token")


_GAMMA: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # session -> (gamma, where it came from)


def set_state_gamma(sess, gamma: float, source: str) -> None:
    """Record the decay exponent ``gamma`` of the model behind ``sess`` (it sets the upper bound of ``z``;
    ``runtime.ort.session`` calls this); ``source`` (``", from ..."``) says where it came from, for the messages."""
    _GAMMA[sess] = (float(gamma), source)


def state_gamma(sess) -> tuple[float | None, str]:
    """``(gamma, source)`` for the state checks of ``sess``: recorded by ``set_state_gamma``, else the graph's
    ``ramnet_config`` metadata, else ``(None, ...)`` (checked as gamma = 1, the config default)."""
    try:
        return _GAMMA[sess]
    except (KeyError, TypeError):
        pass
    meta = getattr(sess, "get_modelmeta", None)
    text = meta().custom_metadata_map.get("ramnet_config") if meta is not None else None
    if text:
        try:
            return float(json.loads(text)["gamma"]), ", from the graph's ramnet_config metadata"
        except (ValueError, KeyError, TypeError):
            pass
    return None, ": this graph does not record its gamma; give session(..., gamma=) for a model with gamma < 1"


def _vocab_size(sess) -> int | None:
    for out in sess.get_outputs():
        if out.name == "logits" and isinstance(out.shape[-1], int):
            return out.shape[-1]
    return None


def check_feeds(sess, feeds: dict) -> dict:
    """Validate ``feeds`` against the session's inputs; returns them as contiguous numpy arrays.

    Checks: exact input names; numpy arrays of the declared dtype and rank; the declared static dims; one batch
    size (dim 0) across inputs; token ids in ``[0, vocab)``; ``position >= 0``; states inside the bounds of
    ``runtime/state_checks.py`` (finite; ``z`` in ``[0, max(1, 1/gamma)]``; ``|S| <= 1e8 (z + 1e-6)`` slot by slot;
    ``|conv| <= 1e8``), with ``gamma`` from ``state_gamma(sess)``."""
    inputs = {i.name: i for i in sess.get_inputs()}
    if set(feeds) != set(inputs):
        missing, extra = sorted(set(inputs) - set(feeds)), sorted(set(feeds) - set(inputs))
        raise ValueError(f"inputs must be exactly {sorted(inputs)}; missing {missing}, unexpected {extra}")
    out, batch = {}, {}
    for name, meta in inputs.items():
        value = feeds[name]
        if not isinstance(value, np.ndarray):
            raise TypeError(f"input {name!r} must be a numpy.ndarray, got {type(value).__name__}")
        want = ORT_TO_NUMPY.get(meta.type)
        if want is not None and value.dtype != want:
            raise TypeError(f"input {name!r} must have dtype {np.dtype(want).name}, got {value.dtype.name}")
        if value.ndim != len(meta.shape):
            raise ValueError(f"input {name!r} must have rank {len(meta.shape)} (shape {meta.shape}), "
                             f"got shape {value.shape}")
        for axis, (got, dim) in enumerate(zip(value.shape, meta.shape)):
            if isinstance(dim, int) and got != dim:
                raise ValueError(f"input {name!r} dim {axis} must be {dim} (shape {meta.shape}), got {value.shape}")
        if value.ndim and value.shape[0] == 0:
            raise ValueError(f"input {name!r} has an empty batch (dim 0 is 0)")
        if value.ndim:
            batch[name] = value.shape[0]
        out[name] = np.ascontiguousarray(value)
    if len(set(batch.values())) > 1:
        raise ValueError(f"all inputs must share the batch size (dim 0), got {batch}")
    vocab = _vocab_size(sess)
    for name in TOKEN_INPUTS:
        if name in out and out[name].size:
            low, high = int(out[name].min()), int(out[name].max())
            if low < 0 or (vocab is not None and high >= vocab):
                raise ValueError(f"input {name!r} must hold token ids in [0, {vocab}), got values in [{low}, {high}]")
    if "position" in out and out["position"].size and not (
            0 <= int(out["position"].min()) and int(out["position"].max()) <= MAX_POSITION):
        raise ValueError(f"input 'position' must be in [0, {MAX_POSITION}], got values in "
                         f"[{int(out['position'].min())}, {int(out['position'].max())}]")
    states = {n: v for n, v in out.items() if n[:2] in ("S_", "z_") or n.startswith("conv_")}
    if states:
        gamma, source = state_gamma(sess)
        check_named_states(states, gamma=gamma, gamma_note=source)
    return out


def check_float_input(name: str, a, min_ndim: int = 1) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
        raise TypeError(f"{name} must be a float array, got {getattr(a, 'dtype', type(a).__name__)}")
    if a.ndim < min_ndim:
        raise ValueError(f"{name} must have rank >= {min_ndim}, got shape {a.shape}")
    return a


def check_pdma_inputs(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma: float | None = None) -> None:
    """Shapes and index ranges of a ``ramnet::PdmaScan`` node: ``v [B,T,H,dv]``, ``*_idx / *_w [B,T,H,K]``,
    ``S0 [B,H,M,dv]``, ``z0 [B,H,M]``; indices in ``[0, M)``; ``S0, z0`` inside the state bounds for the node's
    ``gamma`` (``runtime/state_checks.py``)."""
    for name, a, rank in (("v", v, 4), ("write_w", write_w, 4), ("read_w", read_w, 4), ("S0", S0, 4), ("z0", z0, 3)):
        check_float_input(name, a, rank)
        if a.ndim != rank:
            raise ValueError(f"PdmaScan input {name} must have rank {rank}, got shape {a.shape}")
    for name, idx in (("write_idx", write_idx), ("read_idx", read_idx)):
        if not isinstance(idx, np.ndarray) or idx.dtype != np.int64 or idx.ndim != 4:
            raise ValueError(f"PdmaScan input {name} must be int64 [B,T,H,K], got "
                             f"{getattr(idx, 'dtype', type(idx).__name__)} {getattr(idx, 'shape', '')}")
    B, T, H, dv = v.shape
    K = write_idx.shape[-1]
    M = S0.shape[2] if S0.ndim == 4 else 0
    expected = {"write_idx": (B, T, H, K), "write_w": (B, T, H, K), "read_idx": (B, T, H, read_idx.shape[-1]),
                "read_w": (B, T, H, read_idx.shape[-1]), "S0": (B, H, M, dv), "z0": (B, H, M)}
    for name, a in (("write_idx", write_idx), ("write_w", write_w), ("read_idx", read_idx), ("read_w", read_w),
                    ("S0", S0), ("z0", z0)):
        if tuple(a.shape) != expected[name]:
            raise ValueError(f"PdmaScan input {name} must have shape {expected[name]} (from v {v.shape} and "
                             f"S0 {S0.shape}), got {a.shape}")
    if K < 1 or K > M or read_idx.shape[-1] < 1:
        raise ValueError(f"PdmaScan: K must be in [1, M={M}], got write K={K}, read K={read_idx.shape[-1]}")
    for name, idx in (("write_idx", write_idx), ("read_idx", read_idx)):
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= M):
            raise ValueError(f"PdmaScan input {name} must hold slots in [0, {M}), got values in "
                             f"[{int(idx.min())}, {int(idx.max())}]")
    if write_idx.size:
        ordered = np.sort(write_idx, axis=-1)
        if (ordered[..., 1:] == ordered[..., :-1]).any():
            raise ValueError("PdmaScan input write_idx must hold K distinct slots per token (a Top-K)")
    for name, w in (("write_w", write_w), ("read_w", read_w)):
        if w.size and (not np.isfinite(w).all() or float(w.min()) < 0 or float(w.max()) > 1):
            raise ValueError(f"PdmaScan input {name} must be finite weights in [0, 1]")
    check_layer_state("S0", S0, "z0", z0, gamma=gamma, gamma_note=", the node's attribute")
