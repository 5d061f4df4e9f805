"""Backends of the memory ops (see ``ops/backends.py`` for the tables):

``scan`` (``ramnet::pdma_scan`` and ``ramnet::pdma_scan_bwd``), in priority order:
- ``segment`` (``triton_segment.py``, ``triton_segment_bwd.py``): one program per (state, slot) walks that slot's
  time-sorted events; parallel over B*H*M. CUDA, fp32 state, within the grid and the sort-key range.
- ``recurrent`` (``triton_recurrent.py``): one program per (state, head) walks the tokens; parallel over B*H.
- ``reference`` (``naive.py``): the PyTorch segmented scan; every device and dtype (fp64 is computed in fp64).

``step`` (``ramnet::ram_step_``, the in-place decode token):
- ``fused`` (``triton_step.py``): addresses, CAPE shift, write and read in one launch per layer.
- ``reference``: the composition of the PyTorch references.

Each scan backward recomputes its own forward (nothing but the inputs is saved between them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch

from ..address.backends import AddressProblem, TritonAddress
from ..backends import Backend, OpBackends, register
from ..checks import check_warps
from .layout import ROW_DTYPES
from .naive import pdma_parallel, pdma_parallel_backward
from .segment_keys import INT32_KEYS_BELOW, INT64_KEYS_BELOW

CUDA_GRID_X = 2**31 - 1


@dataclass(frozen=True)
class ScanArgs:
    """The eleven arguments of ``ramnet::pdma_scan``, passed to backends as one value.

    ``v [B, T, H, d_v]``; ``write_idx, read_idx`` int64 and ``write_w, read_w`` ``[B, T, H, K]`` (CAPE-shifted);
    ``S0 [N, H, M, d_v]``, ``z0 [N, H, M]`` with N = B, or the number of packed sequences with ``cu_seqlens``."""

    v: torch.Tensor
    write_idx: torch.Tensor
    write_w: torch.Tensor
    read_idx: torch.Tensor
    read_w: torch.Tensor
    S0: torch.Tensor
    z0: torch.Tensor
    cu_seqlens: Optional[torch.Tensor]
    gamma: float
    eps: float
    proxy_eps: float


@dataclass(frozen=True)
class ScanProblem:
    device_type: str
    value_dtype: torch.dtype
    state_dtype: torch.dtype
    batch: int
    tokens: int
    heads: int
    top_k: int
    d_v: int
    num_slots: int
    num_states: int   # B, or the number of packed sequences
    varlen: bool

    @staticmethod
    def of(a: ScanArgs) -> "ScanProblem":
        B, T, H, d_v = a.v.shape
        return ScanProblem(a.v.device.type, a.v.dtype, a.S0.dtype, B, T, H, a.write_idx.shape[-1], d_v,
                           a.S0.shape[2], a.S0.shape[0], a.cu_seqlens is not None)


def _fp32_cuda(problem) -> str | None:
    if problem.device_type != "cuda":
        return f"needs CUDA tensors, got {problem.device_type}"
    if problem.state_dtype != torch.float32:
        return f"computes in fp32; a {str(problem.state_dtype).replace('torch.', '')} state runs on the reference"
    return None


@dataclass(frozen=True)
class ReferenceScan(Backend):
    name: ClassVar[str] = "reference"

    def supports(self, problem: ScanProblem) -> str | None:
        return None

    def forward(self, problem, a: ScanArgs):
        return pdma_parallel(a.v, a.write_idx, a.write_w, a.read_idx, a.read_w, a.S0, a.z0, a.gamma, a.eps,
                             a.cu_seqlens)

    def backward(self, problem, a: ScanArgs, grad_o, grad_S, grad_z):
        return pdma_parallel_backward(grad_o, grad_S, grad_z, a.v, a.write_idx, a.write_w, a.read_idx, a.read_w,
                                      a.S0, a.z0, a.gamma, a.eps, a.proxy_eps, a.cu_seqlens)


def _grad_state(grad_S, grad_z):
    """fp32 contiguous copies of the final-state gradients: the kernels turn them into the initial-state ones."""
    return (grad_S.detach().to(torch.float32).contiguous().clone(),
            grad_z.detach().to(torch.float32).contiguous().clone())


@dataclass(frozen=True)
class RecurrentScan(Backend):
    """Knobs: warps per (state, head) program, forward and backward (4 and 4: docs/DECISIONS.md)."""

    name: ClassVar[str] = "recurrent"
    fwd_warps: int = 4
    bwd_warps: int = 4

    def __post_init__(self):
        check_warps("RecurrentScan", "fwd_warps", self.fwd_warps)
        check_warps("RecurrentScan", "bwd_warps", self.bwd_warps)

    def supports(self, problem: ScanProblem) -> str | None:
        return _fp32_cuda(problem)

    def forward(self, problem, a: ScanArgs):
        from .triton_recurrent import recurrent_forward

        o, S, z, _ = recurrent_forward(a, save=False, num_warps=self.fwd_warps)
        return o, S.to(a.S0.dtype), z.to(a.z0.dtype)

    def backward(self, problem, a: ScanArgs, grad_o, grad_S, grad_z):
        from .triton_recurrent import recurrent_backward, recurrent_forward

        _, _, _, saved = recurrent_forward(a, save=True, num_warps=self.fwd_warps)
        gS, gz = _grad_state(grad_S, grad_z)
        d_v, d_ww, d_rw = recurrent_backward(a, grad_o, gS, gz, saved, num_warps=self.bwd_warps)
        return d_v, d_ww, d_rw, gS.to(a.S0.dtype), gz.to(a.z0.dtype)


@dataclass(frozen=True)
class SegmentScan(Backend):
    """Knobs: ``num_warps`` per (state, slot) program (1: a d_v row is a few registers per thread),
    ``atomic_read`` (sum ``o`` with fp32 atomics when no rows are saved), ``int32_keys_below`` (sort int32 keys
    below this key range; 0 forces int64 keys), ``max_segments`` (programs: the CUDA grid's x limit),
    ``saved_rows`` (the dtype of the rows the backward's recompute stores: ``"fp32"``, ``"bf16"`` (half the
    traffic and memory, rounding each saved row to bf16; ``z`` stays fp32) or ``"auto"``, the default: bf16 when
    ``v`` is bf16, where the rounding is that of the inputs, else fp32), ``derive_read_rows`` (the default: the
    backward's recompute walks the writes only and stores their rows; each read's row is then derived from the
    write before it: half the recompute's events and no read rows in memory), ``rows_budget_mib`` (the backward
    runs head group after head group so that one group's saved rows stay within this many MiB; None: all heads
    at once). The row defaults were chosen on the H200 (docs/DECISIONS.md): peak memory -56% at 4,4096,16,128
    for -0.3% to +1.7% GPU time; the head groups' default is not yet measured on a GPU."""

    name: ClassVar[str] = "segment"
    num_warps: int = 1
    atomic_read: bool = True
    int32_keys_below: int | None = None
    max_segments: int = CUDA_GRID_X
    saved_rows: str = "auto"
    derive_read_rows: bool = True
    rows_budget_mib: float | None = 256

    def __post_init__(self):
        check_warps("SegmentScan", "num_warps", self.num_warps)
        if not isinstance(self.atomic_read, bool):
            raise TypeError(f"SegmentScan.atomic_read must be a bool, got {self.atomic_read!r}")
        keys = self.int32_keys_below
        if keys is not None and (isinstance(keys, bool) or not isinstance(keys, int)
                                 or not 0 <= keys <= INT32_KEYS_BELOW):
            raise ValueError(f"SegmentScan.int32_keys_below must be in [0, {INT32_KEYS_BELOW}] (larger keys do not "
                             f"fit int32), got {keys!r}")
        if isinstance(self.max_segments, bool) or not isinstance(self.max_segments, int) or \
                not 1 <= self.max_segments <= CUDA_GRID_X:
            raise ValueError(f"SegmentScan.max_segments must be in [1, {CUDA_GRID_X}] (the grid), got "
                             f"{self.max_segments!r}")
        if not isinstance(self.derive_read_rows, bool):
            raise TypeError(f"SegmentScan.derive_read_rows must be a bool, got {self.derive_read_rows!r}")
        budget = self.rows_budget_mib
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                                   or not 0 < budget < float("inf")):
            raise ValueError(f"SegmentScan.rows_budget_mib must be a number > 0 (MiB) or None, got {budget!r}")
        if self.saved_rows not in (*ROW_DTYPES, "auto"):
            raise ValueError(f"SegmentScan.saved_rows must be one of {', '.join(ROW_DTYPES)}, auto; got "
                             f"{self.saved_rows!r}")

    def rows_dtype(self, v: torch.Tensor) -> str:
        """The saved rows' dtype for values ``v``: ``saved_rows``, with ``"auto"`` resolved by ``v``'s dtype."""
        if self.saved_rows != "auto":
            return self.saved_rows
        return "bf16" if v.dtype == torch.bfloat16 else "fp32"

    def _keys_below(self) -> int:
        return INT32_KEYS_BELOW if self.int32_keys_below is None else self.int32_keys_below

    def supports(self, problem: ScanProblem) -> str | None:
        why = _fp32_cuda(problem)
        if why is not None:
            return why
        segments = problem.num_states * problem.heads * problem.num_slots
        if segments > self.max_segments:
            return f"{segments} (state, slot) programs exceed the grid limit {self.max_segments}"
        if segments * problem.tokens >= INT64_KEYS_BELOW:  # the int64 sort key (state * M + slot) * T + t
            return f"sort keys of {segments} segments x {problem.tokens} tokens overflow int64"
        return None

    def forward(self, problem, a: ScanArgs):
        from .triton_segment import launch_segment

        o, S, z, _, _ = launch_segment(a, save=False, num_warps=self.num_warps, atomic_read=self.atomic_read,
                                       int32_keys_below=self._keys_below())
        return o, S.to(a.S0.dtype), z.to(a.z0.dtype)

    def saved_row_bytes(self, a: ScanArgs) -> int:
        """Bytes of the rows the backward's recompute saves for ``a``: a d_v row and its z per write event (and
        per read event unless the read rows are derived); under ``torch.use_deterministic_algorithms`` also the
        fp32 ``dv`` row per write event that the backward sums without atomics."""
        B, T, H, d_v = a.v.shape
        per_event = d_v * ROW_DTYPES[self.rows_dtype(a.v)].itemsize + 4
        rows = B * T * H * a.write_idx.shape[-1] * per_event * (1 if self.derive_read_rows else 2)
        if torch.are_deterministic_algorithms_enabled():
            rows += B * T * H * a.write_idx.shape[-1] * d_v * 4
        return rows

    def head_groups(self, a: ScanArgs) -> list[tuple[int, int]]:
        """The ``[h0, h1)`` head ranges the backward runs one after another: the fewest ranges whose saved rows
        each fit ``rows_budget_mib``, balanced to within one head (one range when all fit, or when there is no
        budget; one head per range when a single head's rows exceed it)."""
        H = a.v.shape[2]
        total = self.saved_row_bytes(a)
        if self.rows_budget_mib is None or total <= self.rows_budget_mib * 2**20:
            return [(0, H)]
        # the most heads whose rows fit (each head's rows are total / H); one head when not even one fits
        most = max(1, int(H * self.rows_budget_mib * 2**20 // total))
        # balanced sizes, the first H % n groups one head more: the same number of groups as filling each to
        # `most` (7 + 7 + 2), but the largest group, which sets the peak, is smaller (6 + 5 + 5)
        n = -(-H // most)
        bounds = [g * (H // n) + min(g, H % n) for g in range(n + 1)]
        return list(zip(bounds[:-1], bounds[1:]))

    def backward(self, problem, a: ScanArgs, grad_o, grad_S, grad_z):
        gS, gz = _grad_state(grad_S, grad_z)
        groups = self.head_groups(a)
        if len(groups) == 1:
            d_v, d_ww, d_rw = self._backward_heads(a, grad_o, gS, gz)
            return d_v, d_ww, d_rw, gS.to(a.S0.dtype), gz.to(a.z0.dtype)
        # head groups: the segments of different heads are independent, so each group is a scan of its own
        d_v = torch.empty(a.v.shape, dtype=a.v.dtype, device=a.v.device)
        d_ww = torch.empty(a.write_w.shape, dtype=a.write_w.dtype, device=a.v.device)
        d_rw = torch.empty(a.read_w.shape, dtype=a.read_w.dtype, device=a.v.device)
        for h0, h1 in groups:
            part = _heads(a, h0, h1)
            gS_h, gz_h = gS[:, h0:h1].contiguous(), gz[:, h0:h1].contiguous()
            d_v[:, :, h0:h1], d_ww[:, :, h0:h1], d_rw[:, :, h0:h1] = self._backward_heads(
                part, grad_o[:, :, h0:h1], gS_h, gz_h)
            gS[:, h0:h1], gz[:, h0:h1] = gS_h, gz_h
            del part, gS_h, gz_h
        return d_v, d_ww, d_rw, gS.to(a.S0.dtype), gz.to(a.z0.dtype)

    def _backward_heads(self, a: ScanArgs, grad_o, gS, gz):
        """``(d_v, d_write_w, d_read_w)`` of all of ``a``'s heads; ``gS, gz`` (fp32) turn in place from the
        final-state into the initial-state gradients."""
        from .triton_segment import launch_segment, launch_write_rows
        from .triton_segment_bwd import launch_segment_bwd

        rows_dtype = self.rows_dtype(a.v)
        if self.derive_read_rows:
            saved_w, plan = launch_write_rows(a, num_warps=self.num_warps, int32_keys_below=self._keys_below(),
                                              rows_dtype=rows_dtype)
            saved_r = None
        else:
            _, _, _, (saved_w, saved_r), plan = launch_segment(a, save=True, num_warps=self.num_warps,
                                                               atomic_read=self.atomic_read,
                                                               int32_keys_below=self._keys_below(),
                                                               rows_dtype=rows_dtype, output=False)
        d_ww = torch.empty(a.write_w.shape, dtype=a.write_w.dtype, device=a.v.device)
        d_rw = torch.empty(a.read_w.shape, dtype=a.read_w.dtype, device=a.v.device)
        d_v = launch_segment_bwd(grad_o, a.v, a.write_w, a.read_w, plan, saved_w, saved_r, gS, gz, d_ww, d_rw,
                                 a.gamma, a.eps, a.proxy_eps, num_warps=self.num_warps,
                                 initial_state=(a.S0, a.z0))
        del saved_w, saved_r, plan  # the rows go before the fp32 d_v is cast, so both never coexist
        return d_v.to(a.v.dtype), d_ww, d_rw


def _heads(a: ScanArgs, h0: int, h1: int) -> ScanArgs:
    """``a`` restricted to heads ``[h0, h1)`` (contiguous copies; ``cu_seqlens`` and the scalars are shared)."""
    cut = lambda t, dim: t.narrow(dim, h0, h1 - h0).contiguous()
    return ScanArgs(cut(a.v, 2), cut(a.write_idx, 2), cut(a.write_w, 2), cut(a.read_idx, 2), cut(a.read_w, 2),
                    cut(a.S0, 1), cut(a.z0, 1), a.cu_seqlens, a.gamma, a.eps, a.proxy_eps)


SCAN = register(OpBackends("scan", [SegmentScan(), RecurrentScan(), ReferenceScan()]))


@dataclass(frozen=True)
class StepProblem:
    device_type: str
    dtype: torch.dtype
    state_dtype: torch.dtype
    address: AddressProblem

    @staticmethod
    def of(q, S, num_factors: int, top_k: int) -> "StepProblem":
        return StepProblem(q.device.type, q.dtype, S.dtype, AddressProblem.of(q, num_factors, top_k))


@dataclass(frozen=True)
class ReferenceStep(Backend):
    name: ClassVar[str] = "reference"

    def supports(self, problem: StepProblem) -> str | None:
        return None

    def run(self, problem, q, k, v, S, z, position, cape, gamma, tau, eps):
        from ..step_op import ram_step_reference

        return ram_step_reference(q, k, v, S, z, position, cape, problem.address.num_factors,
                                  problem.address.top_k, gamma, tau, eps)


@dataclass(frozen=True)
class FusedStep(Backend):
    """Knobs: ``num_warps`` (None: 4 while the grid is small, 2 once it fills the GPU) and the beam ``merge``.
    It supports what the Triton address supports, with an fp32 state."""

    name: ClassVar[str] = "fused"
    num_warps: int | None = None
    merge: str = "topk"

    def __post_init__(self):
        check_warps("FusedStep", "num_warps", self.num_warps)
        TritonAddress(merge=self.merge)  # validates the merge

    def supports(self, problem: StepProblem) -> str | None:
        if problem.state_dtype != torch.float32:
            return f"updates an fp32 state in place; got {str(problem.state_dtype).replace('torch.', '')}"
        return TritonAddress(merge=self.merge).supports(problem.address)

    def run(self, problem, q, k, v, S, z, position, cape, gamma, tau, eps):
        from .triton_step import ram_step_triton

        return ram_step_triton(q, k, v, S, z, position, cape, problem.address.num_factors, problem.address.top_k,
                               gamma, tau, eps, num_warps=self.num_warps, merge=self.merge)


STEP = register(OpBackends("step", [FusedStep(), ReferenceStep()]))
