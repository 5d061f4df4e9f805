"""The sanity bounds of a RAM-Net layer state, shared by every runner (ORT ``run``, ``OrtGenerator``, the AOTI
runner) and by the ``ramnet::PdmaScan`` PyOp. A state outside them is corrupt or overflowing: it is refused with an
error that names the input and the allowed range, instead of giving NaN logits (or a misleading error in a later
node) after the run.

Why these bounds (``docs/MATH.md``: each write ``S[i] = a S[i] + w v``, ``z[i] = a z[i] + w``, ``a = (1 - w)**gamma``,
``w`` in ``[0, 1]``; a read ``o = sum_j r_j S[j] / (z[j] + eps)`` with ``sum_j r_j <= 1``; the state starts at
``S = 0``, ``z = 1/M``):

- **finite**: every value of ``S``, ``z`` and ``conv``.
- **z in [0, Z_MAX(gamma)]**, ``Z_MAX = max(1, 1/gamma)`` (times ``1 + Z_TOL`` for float rounding). ``z`` is a
  decayed sum of write weights: for ``gamma >= 1`` ``a <= 1 - w``, so ``z' <= (1 - w) z + w <= 1`` whenever
  ``z <= 1``; for ``0 < gamma < 1`` ``(1 - w)**gamma / gamma + w`` decreases in ``w``, so ``z <= 1/gamma`` is kept;
  and ``1/M <= 1`` starts inside both. For ``gamma = 0`` (``a = 1``) ``z`` counts the writes, so the bound is
  ``Z_MAX_COUNT = 2**24``, past which a float32 ``z`` no longer changes by a write. A graph that does not record its
  ``gamma`` is checked as ``gamma = 1`` (the config default), and the message says so.
- **|S[i]| <= VALUE_MAX * (z[i] + Z_FLOOR)**, slot by slot. Unrolled, ``S[i] = sum_t c_t v_t`` and
  ``z[i] = P/M + sum_t c_t`` with the same ``c_t >= 0``, so ``S[i] / z[i]`` is a weighted mean of the value vectors
  written to the slot and ``|S[i]| <= max|v| * z[i]`` exactly. ``VALUE_MAX = 1e8`` bounds ``|v|`` with a wide margin
  (``v`` is a projection of a normalised activation: order 1 to 1e3 in practice). Consequences: every read is at
  most ``VALUE_MAX`` in magnitude whatever ``eps`` (also ``eps = 0``), so the read and the next update are finite
  in float32 with 30 orders of magnitude to spare, and what the layers after it receive from the state is no larger
  (an absolute bound such as ``|S| <= 1e30`` would still let a read of ``1e30 / (z + eps)`` through: ``1e36`` at
  ``z = 0``, ``inf`` with ``eps = 0``); and ``|S| <= VALUE_MAX * (Z_MAX + Z_FLOOR)``. ``Z_FLOOR`` admits a zero ``S``
  at ``z = 0``. Measured on the tiny preset (``tests/runtime/test_state_bounds.py``): every state at 0.999 of its
  bound gives finite logits in both ONNX flavours and AOTI; ``S = 3e38`` gave NaN logits before these checks.
- **|conv| <= VALUE_MAX**: the short-conv state holds the previous tokens' projected mixer inputs, of the size of
  ``v``.

The checks are written once in torch (a numpy array is viewed, not copied), so the AOTI runner checks CUDA states
on the device.
"""
from __future__ import annotations

import numpy as np
import torch

VALUE_MAX = 1e8          # bound on |v| (and |conv|): the largest read a state may produce
Z_FLOOR = 1e-6           # |S| <= VALUE_MAX * (z + Z_FLOOR): a zero S is fine at z = 0
Z_TOL = 1e-3             # relative slack on Z_MAX for float rounding (z near its bound after many writes)
Z_MAX_COUNT = 2.0 ** 24  # gamma = 0: z counts writes; beyond 2**24 a float32 z no longer moves by a write


class StateError(ValueError):
    """A state outside its bounds; ``name`` is the state input's name (the message names it too)."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


def z_max(gamma: float | None) -> float:
    """The largest ``z`` a state of a layer with decay exponent ``gamma`` can hold (``None``: unknown, taken as 1),
    with the rounding slack ``Z_TOL``."""
    gamma = 1.0 if gamma is None else float(gamma)
    if not gamma > 0:  # 0 (or a nonsense value: then no bound is assumed beyond the count bound)
        return Z_MAX_COUNT
    return max(1.0, 1.0 / gamma) * (1.0 + Z_TOL)


def _as_tensor(x) -> torch.Tensor:
    """A numpy array as a tensor view (a copy only if it is read-only, which ``torch.from_numpy`` warns about)."""
    if not isinstance(x, np.ndarray):
        return x
    x = np.ascontiguousarray(x)
    return torch.from_numpy(x if x.flags.writeable else x.copy())


def _num(x: torch.Tensor) -> float:
    return float(x)


def check_finite(name: str, value) -> None:
    t = _as_tensor(value)
    if t.is_floating_point() and t.numel():
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise StateError(name, f"state {name!r} is corrupt: it holds {bad} non-finite values (NaN/Inf); "
                                   f"every value must be finite")


def check_z(name: str, z, *, gamma: float | None = None, gamma_note: str = "") -> None:
    """``z`` of one layer: finite and in ``[0, z_max(gamma)]``. ``gamma_note`` is appended to the range message
    (e.g. where the gamma came from)."""
    z = _as_tensor(z)
    check_finite(name, z)
    if not z.numel():
        return
    high = z_max(gamma)
    lo, hi = _num(z.min()), _num(z.max())
    if lo < 0 or hi > high:
        why = ("z counts the write weights (gamma = 0)" if high == Z_MAX_COUNT else
               "z is a decayed sum of write weights in [0, 1]: at most max(1, 1/gamma)")
        g = "unknown, taken as 1" if gamma is None else f"{gamma:g}"
        raise StateError(name, f"state {name!r} is out of range: z must be in [0, {high:.6g}] ({why}; gamma = {g}"
                               f"{gamma_note}), got values in [{lo:.6g}, {hi:.6g}]")


def check_layer_state(S_name: str, S, z_name: str, z, *, gamma: float | None = None,
                      gamma_note: str = "") -> None:
    """``S [..., M, d_v]`` and ``z [..., M]`` of one layer (numpy arrays or tensors): finite, ``z`` in
    ``[0, z_max(gamma)]`` and ``|S| <= VALUE_MAX * (z + Z_FLOOR)`` slot by slot (see the module docstring). Shapes
    are the caller's to check; an ``S`` whose leading dims are not ``z``'s is only checked for finiteness."""
    S = _as_tensor(S)
    check_finite(S_name, S)
    check_z(z_name, z, gamma=gamma, gamma_note=gamma_note)
    z = _as_tensor(z)
    if S.numel() and S.dim() == z.dim() + 1 and S.shape[:-1] == z.shape:
        size = S.abs().amax(-1).to(torch.float64)                       # |S[i]| per slot
        limit = VALUE_MAX * (z.to(torch.float64) + Z_FLOOR)
        over = size > limit
        if bool(over.any()):
            worst = int(torch.argmax(size / limit))
            s_bad, z_bad = _num(size.reshape(-1)[worst]), _num(z.reshape(-1)[worst])
            raise StateError(S_name,
                f"state {S_name!r} is out of range: |S| must be <= {VALUE_MAX:.0e} * ({z_name} + {Z_FLOOR:.0e}) slot "
                f"by slot (S/z is a weighted mean of the value vectors written, |v| <= {VALUE_MAX:.0e}), so at most "
                f"{VALUE_MAX * (z_max(gamma) + Z_FLOOR):.3g}; got |S| = {s_bad:.6g} at a slot where {z_name} = "
                f"{z_bad:.6g} ({int(over.sum())} slots over)")


def check_conv_state(name: str, conv) -> None:
    """The short-conv state: finite, ``|conv| <= VALUE_MAX``."""
    conv = _as_tensor(conv)
    check_finite(name, conv)
    if conv.numel():
        big = _num(conv.abs().max())
        if big > VALUE_MAX:
            raise StateError(name, f"state {name!r} is out of range: |conv| must be <= {VALUE_MAX:.0e} (it holds "
                                   f"projected activations, of the size of v), got max |conv| = {big:.6g}")


def check_named_states(states: dict, *, gamma: float | None = None, gamma_note: str = "") -> None:
    """A graph's state inputs by name (``S_i``, ``z_i``, ``conv_i``, as ``export.onnx.state_names``): each layer's
    ``S_i`` with its ``z_i``; a name without its partner is checked alone (finite; ``z`` in range)."""
    for name, value in states.items():
        kind, _, layer = name.partition("_")
        if kind == "S":
            partner = states.get(f"z_{layer}")
            if partner is None:
                check_finite(name, value)
            else:
                check_layer_state(name, value, f"z_{layer}", partner, gamma=gamma, gamma_note=gamma_note)
        elif kind == "z" and f"S_{layer}" not in states:
            check_z(name, value, gamma=gamma, gamma_note=gamma_note)
        elif kind == "conv":
            check_conv_state(name, value)


__all__ = ["StateError", "VALUE_MAX", "Z_FLOOR", "Z_TOL", "Z_MAX_COUNT", "z_max", "check_finite", "check_z",
           "check_layer_state", "check_conv_state", "check_named_states"]
