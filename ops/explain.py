"""Which backend runs for a given input, and why the others refused (the public face of the backend tables)."""
from __future__ import annotations

import torch

from . import checks as C
from .address.backends import ADDRESS, AddressProblem
from .backends import Choice
from .memory.backends import SCAN, STEP, ScanArgs, ScanProblem, StepProblem


def explain_attention(q: torch.Tensor, v: torch.Tensor, *, num_factors: int, top_k: int, initial_state=None,
                      cu_seqlens=None) -> dict[str, Choice]:
    """``{"address": Choice, "scan": Choice}`` for ``ram_attention(q, k, v, ...)`` with these inputs (``q``
    ``[B, T, H, d_k]``, ``v [B, T, H, d_v]``), under the current :func:`use_backend` block. ``print`` a Choice
    for a readable report."""
    d_p, M = C.address_geometry("q", q.shape[-1], num_factors, top_k)
    B, T, H, d_v = v.shape
    states = B if cu_seqlens is None else cu_seqlens.shape[0] - 1
    if initial_state is not None:
        S0 = initial_state[0]
    else:
        S0 = torch.empty(0, dtype=torch.float64 if q.dtype == torch.float64 else torch.float32, device="meta")
    problem = ScanProblem(q.device.type, v.dtype, S0.dtype, B, T, H, top_k, d_v, M, states, cu_seqlens is not None)
    return {"address": ADDRESS.explain(AddressProblem.of(q, num_factors, top_k)), "scan": SCAN.explain(problem)}


def explain_step(q: torch.Tensor, S: torch.Tensor, *, num_factors: int, top_k: int) -> dict[str, Choice]:
    """``{"step": Choice}`` for ``ram_step(q, k, v, S, z, ...)`` (``q [B, H, d_k]``, ``S [B, H, M, d_v]``)."""
    C.address_geometry("q", q.shape[-1], num_factors, top_k)
    return {"step": STEP.explain(StepProblem.of(q, S, num_factors, top_k))}


__all__ = ["ScanArgs", "explain_attention", "explain_step"]
