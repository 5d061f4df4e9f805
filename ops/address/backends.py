"""Backends of ``ramnet::address`` and ``ramnet::address_bwd`` (see ``ops/backends.py`` for the table).

- ``triton`` (``triton.py``, ``triton_bwd.py``): one program per row, per-factor log-softmax and the beam Top-K
  fused; CUDA, fp16/bf16/fp32, while the candidate tile fits registers and slot ids fit the packed 32-bit key.
- ``reference`` (``naive.py``): the PyTorch beam search; every device, dtype and geometry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..backends import Backend, OpBackends, register
from ..checks import check_warps, next_pow2
from .naive import address_backward_naive, address_naive

# the Triton beam packs ~slot into the low 32 bits of an int64 key, with up to MAX_CANDIDATES sentinel slots past M
PACKED_SLOT_LIMIT = 2**31


@dataclass(frozen=True)
class AddressProblem:
    """One ``address`` call: ``x [..., num_factors * d_p]`` -> K of ``num_slots = d_p ** num_factors`` slots."""

    device_type: str
    dtype: torch.dtype
    num_factors: int
    d_p: int
    top_k: int
    num_slots: int

    @staticmethod
    def of(x: torch.Tensor, num_factors: int, top_k: int) -> "AddressProblem":
        d_p = x.shape[-1] // num_factors
        return AddressProblem(x.device.type, x.dtype, num_factors, d_p, top_k, d_p**num_factors)


@dataclass(frozen=True)
class ReferenceAddress(Backend):
    name: ClassVar[str] = "reference"

    def supports(self, problem: AddressProblem) -> str | None:
        return None

    def forward(self, problem: AddressProblem, x, tau: float):
        indices, weights = address_naive(x, problem.num_factors, problem.top_k, tau)
        return weights.contiguous(), indices.contiguous()

    def backward(self, problem: AddressProblem, grad_weights, x, indices, weights, tau: float):
        return address_backward_naive(grad_weights, x, indices, weights, problem.num_factors, tau).contiguous()


@dataclass(frozen=True)
class TritonAddress(Backend):
    """Knobs: ``merge`` (``"topk"``: bitonic top-k over packed keys; ``"rank"``: pairwise rank, for A/B),
    ``num_warps`` (1: the tiles are small; docs/DECISIONS.md), ``max_candidates`` (the register tile),
    ``rows_per_program`` (forward: consecutive rows one program computes, unrolled, in [1, 16])."""

    name: ClassVar[str] = "triton"
    merge: str = "topk"
    num_warps: int = 1
    max_candidates: int = 128
    rows_per_program: int = 1

    def __post_init__(self):
        if self.merge not in ("topk", "rank"):
            raise ValueError(f"TritonAddress.merge must be 'topk' or 'rank', got {self.merge!r}")
        check_warps("TritonAddress", "num_warps", self.num_warps)
        if not isinstance(self.max_candidates, int) or self.max_candidates < 1 or \
                self.max_candidates & (self.max_candidates - 1) or self.max_candidates > 128:
            raise ValueError(f"TritonAddress.max_candidates must be a power of two in [1, 128] (the register "
                             f"tile), got {self.max_candidates!r}")

        rows = self.rows_per_program
        if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= 16:
            raise ValueError(f"TritonAddress.rows_per_program must be an int in [1, 16], got {rows!r}")

    def supports(self, problem: AddressProblem) -> str | None:
        if problem.device_type != "cuda":
            return f"needs a CUDA tensor, got {problem.device_type}"
        if problem.dtype == torch.float64:
            return "computes in fp32; fp64 runs on the reference"
        tile = next_pow2(problem.top_k) * next_pow2(problem.d_p)
        if tile > self.max_candidates:
            return f"next_pow2(top_k) * next_pow2(d_p) = {tile} candidates exceed the register tile {self.max_candidates}"
        if problem.num_slots + self.max_candidates >= PACKED_SLOT_LIMIT:
            return f"M = {problem.num_slots} slots do not fit the packed 32-bit slot key"
        return None

    def forward(self, problem: AddressProblem, x, tau: float):
        from .triton import address_triton

        return address_triton(x, problem.num_factors, problem.top_k, tau, merge=self.merge, num_warps=self.num_warps,
                              rows_per_program=self.rows_per_program)

    def backward(self, problem: AddressProblem, grad_weights, x, indices, weights, tau: float):
        from .triton_bwd import address_backward_triton

        return address_backward_triton(grad_weights, x, indices, weights, problem.num_factors, tau,
                                       num_warps=self.num_warps)


ADDRESS = register(OpBackends("address", [TritonAddress(), ReferenceAddress()]))
