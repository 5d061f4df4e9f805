"""Argument validation shared by the public ops. Every failure names the argument and the allowed range.

Non-finite policy: values are never inspected (that would cost a device sync per call). NaN or Inf in
``q``/``k`` give NaN weights but indices that are always valid slots in ``[0, M)``; NaN/Inf in ``v`` or in the
state propagate to the outputs and the state. Nothing is silently replaced.
"""
from __future__ import annotations

import math

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
STATE_DTYPES = (torch.float32, torch.float64)


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, torch.SymInt):  # a symbolic size under torch.export: the range becomes a guard
        message = lambda: f"{name} must be in [{low}, {'inf' if high is None else high}], got {value}"
        torch._check(value >= low, message)
        if high is not None:
            torch._check(value <= high, message)
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        upper = "inf" if high is None else str(high)
        raise ValueError(f"{name} must be in [{low}, {upper}], got {value}")
    return value


def check_float(name: str, value, low: float, high: float = math.inf, *, low_open: bool = False,
                high_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if isinstance(value, int):
        value = float(value)
    bad_low = value <= low if low_open else value < low
    bad_high = value >= high if high_open else value > high
    # NaN fails every comparison; written without math.isfinite so that torch.compile(dynamic=True) can trace a
    # symbolic float here without a graph break
    if value != value or abs(value) == math.inf or bad_low or bad_high:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be finite and in {lo}{low}, {high}{hi}, got {value}")
    return value


def check_tensor(name: str, x, *, ndim: int | None = None, min_ndim: int | None = None,
                 dtypes=FLOAT_DTYPES, device: torch.device | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(f"{name} must have rank {ndim}, got shape {tuple(x.shape)}")
    if min_ndim is not None and x.dim() < min_ndim:
        raise ValueError(f"{name} must have rank >= {min_ndim}, got shape {tuple(x.shape)}")
    if dtypes is not None and x.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype in ({allowed}), got {str(x.dtype).replace('torch.', '')}")
    if device is not None and x.device != device:
        raise ValueError(f"{name} must be on device {device} (like q), got {x.device}")
    return x


def address_geometry(name: str, width: int, num_factors, top_k) -> tuple[int, int]:
    """Validate ``(U, K)`` against a key width ``U * d_p``; returns ``(d_p, M)``."""
    num_factors = check_int("num_factors", num_factors, 1)
    if width % num_factors != 0:
        raise ValueError(f"num_factors={num_factors} must divide the last dimension of {name} ({width})")
    d_p = width // num_factors
    if d_p < 2:
        raise ValueError(f"the factor width d_p = {name}.shape[-1] / num_factors must be >= 2, got {d_p}")
    M = d_p**num_factors
    check_int("top_k", top_k, 1, M)
    return d_p, M


def check_same(name: str, got, ref_name: str, want, what: str) -> None:
    if got != want:
        raise ValueError(f"{name} has {what} {got}, expected {want} to match {ref_name}")
