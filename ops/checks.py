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
# slot ids are int64: M and the flat index arithmetic (with sentinel slots past M) must stay below 2**63
MAX_SLOTS = 2**62
# positions are int64; the CAPE shift subtracts them from slot ids
MAX_POSITION = 2**62
# 1 / tau multiplies the address logits: below this the product overflows fp32 for ordinary logits
MIN_TAU = 1e-6


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
    if M > MAX_SLOTS:
        raise ValueError(f"M = d_p ** num_factors = {d_p}**{num_factors} exceeds {MAX_SLOTS} slots (slot ids are "
                         "int64); use fewer factors or a narrower key")
    check_int("top_k", top_k, 1, M)
    return d_p, M


def check_same(name: str, got, ref_name: str, want, what: str) -> None:
    if got != want:
        raise ValueError(f"{name} has {what} {got}, expected {want} to match {ref_name}")


def next_pow2(n: int) -> int:
    """The smallest power of two >= ``n`` (``triton.next_power_of_2`` without importing Triton)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def tracing() -> bool:
    """True while torch.compile or torch.export traces: tensor values, storages and inference flags are unknown
    then, so checks that read them run inside the op instead (on the real tensors, at run time)."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


def check_state(S, z, B: int, H: int, M: int, d_v: int, device, names=("S", "z")) -> None:
    """``S [B, H, M, d_v]`` and ``z [B, H, M]``, fp32 or fp64 (the same dtype), on ``device``."""
    check_tensor(names[0], S, ndim=4, dtypes=STATE_DTYPES, device=device)
    check_tensor(names[1], z, ndim=3, dtypes=(S.dtype,), device=device)
    check_same(names[0], tuple(S.shape), "(B, H, M, d_v) of q, v and num_factors", (B, H, M, d_v), "shape")
    check_same(names[1], tuple(z.shape), "(B, H, M)", (B, H, M), "shape")


def check_index_values(name: str, t: torch.Tensor, low: int, high: int) -> None:
    """The values of an integer tensor lie in ``[low, high]``. This reads the tensor (a device sync on CUDA), so
    it is skipped where values are unknown or must not be read: while torch.compile or torch.export traces, and
    during CUDA graph capture."""
    if tracing():
        return
    if t.is_cuda and torch.cuda.is_current_stream_capturing():
        return
    if t.numel() == 0:
        return
    lo, hi = int(t.min()), int(t.max())
    if lo < low or hi > high:
        raise ValueError(f"{name} values must be in [{low}, {high}], got values in [{lo}, {hi}]")


def check_inplace_state(S: torch.Tensor, z: torch.Tensor, names: tuple[str, str] = ("S", "z")) -> None:
    """What an in-place update needs of ``S`` and ``z`` (and of any other state tensor passed as ``S`` or ``z``),
    checked before either is written, so that both change or neither does: contiguous, writable here (not an
    inference tensor outside inference mode, not requiring grad under grad mode) and not sharing memory."""
    for name, t in zip(names, (S, z)):
        if not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous to be updated in place (an expanded or strided view "
                             f"cannot be), got strides {t.stride()} for shape {tuple(t.shape)}")
        if t.is_inference() and not torch.is_inference_mode_enabled():
            raise RuntimeError(f"{name} was created under torch.inference_mode() and cannot be updated in place "
                               "outside it: decode inside inference_mode too, or clone the state first")
        if t.requires_grad and torch.is_grad_enabled():
            raise RuntimeError(f"{name} requires grad and cannot be updated in place with grad enabled: decode under "
                               "torch.no_grad(), or use ram_step_functional")
    if S.untyped_storage().data_ptr() == z.untyped_storage().data_ptr():
        raise ValueError(f"{names[0]} and {names[1]} must not share memory")


def check_warps(owner: str, name: str, value) -> None:
    """A Triton ``num_warps`` knob: a power of two in [1, 32] (None where the backend chooses)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value > 32 or value & (value - 1):
        raise ValueError(f"{owner}.{name} must be a power of two in [1, 32], got {value!r}")
