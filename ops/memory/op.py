"""Registered PDMA scan ops: ``ramnet::pdma_scan`` (training / prefill) and ``ramnet::pdma_scan_bwd``.

They take addresses that are already computed and CAPE-shifted; ``ops/ram.py`` composes them with
``ramnet::address`` into the public ``ram_attention``. One kernel per op for every device: it bundles the flat
arguments into ``ScanArgs``, builds the problem once and runs the backend the ``scan`` table chooses
(``backends.py``). Shapes: ``backends.ScanArgs``.
"""
from __future__ import annotations

from typing import Optional

import torch

from .._autocast import autocast_off
from ..backends import forced_scope, forced_snapshot
from ..constants import NAMESPACE
from .backends import SCAN, ScanArgs, ScanProblem


@torch.library.custom_op(f"{NAMESPACE}::pdma_scan", mutates_args=())
def pdma_scan_op(v: torch.Tensor, write_idx: torch.Tensor, write_w: torch.Tensor, read_idx: torch.Tensor,
                 read_w: torch.Tensor, S0: torch.Tensor, z0: torch.Tensor, cu_seqlens: Optional[torch.Tensor],
                 gamma: float, eps: float, proxy_eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    args = ScanArgs(v, write_idx, write_w, read_idx, read_w, S0, z0, cu_seqlens, gamma, eps, proxy_eps)
    problem = ScanProblem.of(args)
    return SCAN.choose(problem).forward(problem, args)


# fakes allocate contiguous outputs, as the kernels return them whatever the input strides
@pdma_scan_op.register_fake
def _pdma_scan_fake(v, write_idx, write_w, read_idx, read_w, S0, z0, cu_seqlens, gamma, eps, proxy_eps):
    return v.new_empty(v.shape), S0.new_empty(S0.shape), z0.new_empty(z0.shape)


@torch.library.custom_op(f"{NAMESPACE}::pdma_scan_bwd", mutates_args=())
def pdma_scan_bwd_op(grad_o: torch.Tensor, grad_S: torch.Tensor, grad_z: torch.Tensor, v: torch.Tensor,
                     write_idx: torch.Tensor, write_w: torch.Tensor, read_idx: torch.Tensor, read_w: torch.Tensor,
                     S0: torch.Tensor, z0: torch.Tensor, cu_seqlens: Optional[torch.Tensor], gamma: float,
                     eps: float, proxy_eps: float
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    args = ScanArgs(v, write_idx, write_w, read_idx, read_w, S0, z0, cu_seqlens, gamma, eps, proxy_eps)
    problem = ScanProblem.of(args)
    return SCAN.choose(problem).backward(problem, args, grad_o, grad_S, grad_z)


@pdma_scan_bwd_op.register_fake
def _pdma_scan_bwd_fake(grad_o, grad_S, grad_z, v, write_idx, write_w, read_idx, read_w, S0, z0, cu_seqlens,
                        gamma, eps, proxy_eps):
    return (v.new_empty(v.shape), write_w.new_empty(write_w.shape), read_w.new_empty(read_w.shape),
            S0.new_empty(S0.shape), z0.new_empty(z0.shape))


def _setup_context(ctx, inputs, output):
    v, write_idx, write_w, read_idx, read_w, S0, z0, cu_seqlens, gamma, eps, proxy_eps = inputs
    # recompute the scan in backward instead of saving per-event states (memory stays O(inputs + state))
    ctx.save_for_backward(v, write_idx, write_w, read_idx, read_w, S0, z0, cu_seqlens)
    ctx.gamma, ctx.eps, ctx.proxy_eps = gamma, eps, proxy_eps
    ctx.forced_backends = forced_snapshot()  # the backward chooses under the same use_backend


@autocast_off
def _backward(ctx, grad_o, grad_S, grad_z):
    v, write_idx, write_w, read_idx, read_w, S0, z0, cu_seqlens = ctx.saved_tensors
    with forced_scope(ctx.forced_backends):
        d_v, d_ww, d_rw, d_S0, d_z0 = pdma_scan_bwd_op(
            grad_o.contiguous(), grad_S.contiguous(), grad_z.contiguous(), v, write_idx, write_w, read_idx, read_w,
            S0, z0, cu_seqlens, ctx.gamma, ctx.eps, ctx.proxy_eps)
    return d_v, None, d_ww, None, d_rw, d_S0, d_z0, None, None, None, None


pdma_scan_op.register_autograd(_backward, setup_context=_setup_context)
