"""``ramnet::ram_step_``: a whole decode token (both addresses, CAPE shift, PDMA write and read) as one op that
mutates ``S`` and ``z``. The ``step`` backend table (``memory/backends.py``) chooses one Triton launch per layer
on CUDA (``memory/triton_step.py``) or the composition of the PyTorch references.
"""
from __future__ import annotations

import torch

from .address.naive import address_naive
from .common import cape_shift
from .constants import NAMESPACE
from .memory.backends import STEP, StepProblem
from .memory.naive import pdma_step_inplace


def ram_step_reference(q, k, v, S, z, position, cape, num_factors, top_k, gamma, tau, eps):
    """The composition of the PyTorch references. ``q, k [B, H, d_k]``, ``v [B, H, d_v]``, ``position`` int64
    ``[B]``, ``cape`` bool ``[H]``; updates ``S [B, H, M, d_v]`` and ``z [B, H, M]`` in place, returns ``o``."""
    M = S.shape[2]
    write_idx, write_w = address_naive(k, num_factors, top_k, tau)
    read_idx, read_w = address_naive(q, num_factors, top_k, tau)
    write_idx = cape_shift(write_idx, position, cape, M)
    read_idx = cape_shift(read_idx, position, cape, M)
    return pdma_step_inplace(v, write_idx, write_w, read_idx, read_w, S, z, gamma, eps)


@torch.library.custom_op(f"{NAMESPACE}::ram_step_", mutates_args=("S", "z"))
def ram_step_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, S: torch.Tensor, z: torch.Tensor,
                position: torch.Tensor, cape: torch.Tensor, num_factors: int, top_k: int, gamma: float, tau: float,
                eps: float) -> torch.Tensor:
    problem = StepProblem.of(q, S, num_factors, top_k)
    return STEP.choose(problem).run(problem, q, k, v, S, z, position, cape, gamma, tau, eps)


@ram_step_op.register_fake
def _ram_step_fake(q, k, v, S, z, position, cape, num_factors, top_k, gamma, tau, eps):
    return v.new_empty(v.shape)
