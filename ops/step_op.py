"""``ramnet::ram_step_``: a whole decode token (both addresses, CAPE shift, PDMA write and read) as one op that
mutates ``S`` and ``z``. The ``step`` backend table (``memory/backends.py``) chooses one Triton launch per layer
on CUDA (``memory/triton_step.py``) or the composition of the PyTorch references.
"""
from __future__ import annotations

import torch

from . import checks as C
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
    _check_op_args(q, k, v, S, z, position, cape, num_factors, top_k)
    problem = StepProblem.of(q, S, num_factors, top_k)
    return STEP.choose(problem).run(problem, q, k, v, S, z, position, cape, gamma, tau, eps)


def _check_op_args(q, k, v, S, z, position, cape, num_factors, top_k) -> None:
    """The registered op is public (``torch.ops.ramnet.ram_step_``) and runs inside compiled graphs, where the
    Python wrapper's checks were traced away: everything the in-place update relies on is checked here, on the
    real tensors, before anything is written."""
    B, H, d_k = q.shape
    _, M = C.address_geometry("q", d_k, num_factors, top_k)
    for name, t in (("k", k), ("v", v)):
        C.check_same(name, tuple(t.shape[:2]), "q", (B, H), "leading (batch, heads) dims")
    C.check_state(S, z, B, H, M, v.shape[-1], q.device)
    C.check_inplace_state(S, z)
    C.check_tensor("position", position, ndim=1, dtypes=(torch.int64,), device=q.device)
    C.check_same("position", position.shape[0], "batch B", B, "length")
    if position.device.type == "cpu":  # free here; on CUDA it would sync every layer of every token, so the
        # eager wrapper checks CUDA position tensors once (ram_step), and compiled CUDA graphs rely on that
        C.check_index_values("position", position, 0, C.MAX_POSITION)
    C.check_tensor("cape", cape, ndim=1, dtypes=(torch.bool,), device=q.device)
    C.check_same("cape", cape.shape[0], "the number of heads H", H, "length")


@ram_step_op.register_fake
def _ram_step_fake(q, k, v, S, z, position, cape, num_factors, top_k, gamma, tau, eps):
    return v.new_empty(v.shape)
