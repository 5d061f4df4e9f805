"""The one tolerance rule (docs/MATH.md, "Numerics conventions").

A kernel result is compared with the float64 reference by relative RMS error; it fails if it is more than
``factor`` times as wrong as the naive op run in the same low precision (plus a floor for exact dtypes).
NaN never passes. On failure it reports the number of mismatches and the first indices.
"""
from __future__ import annotations

import torch


def rel_rms(x: torch.Tensor, ref: torch.Tensor) -> float:
    ref = ref.double()
    return ((x.double() - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def assert_close_to_reference(name: str, got: torch.Tensor, ref64: torch.Tensor, naive_low: torch.Tensor | None = None,
                              *, factor: float = 2.0, floor: float = 1e-12) -> None:
    """``got``: kernel output; ``ref64``: float64 reference; ``naive_low``: the naive op in ``got``'s dtype."""
    assert got.shape == ref64.shape, f"{name}: shape {tuple(got.shape)} != reference {tuple(ref64.shape)}"
    if torch.isnan(got).any() and not torch.isnan(ref64).any():
        first = torch.nonzero(torch.isnan(got))[:5].tolist()
        raise AssertionError(f"{name}: NaN at {first}")
    err = rel_rms(got, ref64)
    budget = max(factor * (rel_rms(naive_low, ref64) if naive_low is not None else 0.0), floor)
    if not err <= budget:
        diff = (got.double() - ref64.double()).abs()
        thresh = budget * ref64.double().abs().max().clamp_min(1e-30)
        bad = torch.nonzero(diff > thresh)
        raise AssertionError(f"{name}: relative RMS error {err:.3e} > budget {budget:.3e}; "
                             f"{len(bad)} elements off, first at {bad[:5].tolist()}")
