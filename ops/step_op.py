"""``ramnet::ram_step_``: a whole decode token (both addresses, CAPE shift, PDMA write and read) as one op that
mutates ``S`` and ``z``. On CUDA it is one Triton launch per layer (``memory/triton_step.py``); elsewhere it is
the composition of the PyTorch references.
"""
from __future__ import annotations

import torch

from ._namespace import NAMESPACE
from .address.naive import address_naive
from .memory.naive import pdma_step_inplace


def _shift(indices, position, cape, M: int):
    """``slot -> (slot - position) mod M`` on CAPE heads; ``indices [B,H,K]``, ``position [B]``, ``cape [H]``."""
    shifted = torch.remainder(indices - position.view(-1, 1, 1), M)
    return torch.where(cape.view(1, -1, 1), shifted, indices)


def ram_step_reference(q, k, v, S, z, position, cape, num_factors, top_k, gamma, tau, eps):
    """The composition of the PyTorch references (the CPU kernel and the CUDA fallback)."""
    M = S.shape[2]
    write_idx, write_w = address_naive(k, num_factors, top_k, tau)
    read_idx, read_w = address_naive(q, num_factors, top_k, tau)
    write_idx = _shift(write_idx, position, cape, M)
    read_idx = _shift(read_idx, position, cape, M)
    return pdma_step_inplace(v, write_idx, write_w, read_idx, read_w, S, z, gamma, eps)


@torch.library.custom_op(f"{NAMESPACE}::ram_step_", mutates_args=("S", "z"))
def ram_step_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, S: torch.Tensor, z: torch.Tensor,
                position: torch.Tensor, cape: torch.Tensor, num_factors: int, top_k: int, gamma: float, tau: float,
                eps: float) -> torch.Tensor:
    return ram_step_reference(q, k, v, S, z, position, cape, num_factors, top_k, gamma, tau, eps)


@ram_step_op.register_kernel("cuda")
def _ram_step_cuda(q, k, v, S, z, position, cape, num_factors, top_k, gamma, tau, eps):
    from .address.triton import fits
    from .memory.triton_step import ram_step_triton

    if q.dtype == torch.float64 or S.dtype == torch.float64 or not fits(q.shape[-1] // num_factors, top_k, num_factors):
        return ram_step_reference(q, k, v, S, z, position, cape, num_factors, top_k, gamma, tau, eps)
    return ram_step_triton(q, k, v, S, z, position, cape, num_factors, top_k, gamma, tau, eps)


@ram_step_op.register_fake
def _ram_step_fake(q, k, v, S, z, position, cape, num_factors, top_k, gamma, tau, eps):
    return v.new_empty(v.shape)
