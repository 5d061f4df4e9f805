"""Registered PDMA memory ops: ``ramnet::pdma_scan`` (+ ``_bwd``) for training/prefill and
``ramnet::pdma_step_`` (in place) for decode.

They take addresses that are already computed and CAPE-shifted; :mod:`ops.ram` composes them with
``ramnet::address`` into the public ``ram_attention`` / ``ram_step``. Default kernels are the pure-PyTorch
parallel form and step (``naive.py``). Shapes are documented in ``naive.py``.
"""
from __future__ import annotations

from typing import Optional

import torch

from .._autocast import autocast_off

from .._namespace import NAMESPACE
from .naive import pdma_parallel, pdma_parallel_backward, pdma_step_inplace
from .scan_config import SCAN_FORWARD


@torch.library.custom_op(f"{NAMESPACE}::pdma_scan", mutates_args=())
def pdma_scan_op(v: torch.Tensor, write_idx: torch.Tensor, write_w: torch.Tensor, read_idx: torch.Tensor,
                 read_w: torch.Tensor, S0: torch.Tensor, z0: torch.Tensor, cu_seqlens: Optional[torch.Tensor],
                 gamma: float, eps: float, proxy_eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return pdma_parallel(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma, eps, cu_seqlens)


# fakes allocate contiguous outputs, as the kernels return them whatever the input strides
@pdma_scan_op.register_kernel("cuda")
def _pdma_scan_cuda(v, write_idx, write_w, read_idx, read_w, S0, z0, cu_seqlens, gamma, eps, proxy_eps):
    if S0.dtype == torch.float64:  # the Triton kernels compute in fp32; fp64 stays on the exact reference
        return pdma_parallel(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma, eps, cu_seqlens)
    if cu_seqlens is None and SCAN_FORWARD == "chunked":  # opt-in: correct, slower on the H100 (DECISIONS.md)
        from .triton_chunked import pdma_scan_chunked_triton

        return pdma_scan_chunked_triton(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma, eps)
    from .triton_scan import pdma_scan_triton

    return pdma_scan_triton(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma, eps, cu_seqlens)


@pdma_scan_op.register_fake
def _pdma_scan_fake(v, write_idx, write_w, read_idx, read_w, S0, z0, cu_seqlens, gamma, eps, proxy_eps):
    return v.new_empty(v.shape), S0.new_empty(S0.shape), z0.new_empty(z0.shape)


@torch.library.custom_op(f"{NAMESPACE}::pdma_scan_bwd", mutates_args=())
def pdma_scan_bwd_op(grad_o: torch.Tensor, grad_S: torch.Tensor, grad_z: torch.Tensor, v: torch.Tensor,
                     write_idx: torch.Tensor, write_w: torch.Tensor, read_idx: torch.Tensor, read_w: torch.Tensor,
                     S0: torch.Tensor, z0: torch.Tensor, cu_seqlens: Optional[torch.Tensor], gamma: float,
                     eps: float, proxy_eps: float
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return pdma_parallel_backward(grad_o, grad_S, grad_z, v, write_idx, write_w, read_idx, read_w, S0, z0,
                                  gamma, eps, proxy_eps, cu_seqlens)


@pdma_scan_bwd_op.register_kernel("cuda")
def _pdma_scan_bwd_cuda(grad_o, grad_S, grad_z, v, write_idx, write_w, read_idx, read_w, S0, z0, cu_seqlens,
                        gamma, eps, proxy_eps):
    if S0.dtype == torch.float64:
        return pdma_parallel_backward(grad_o, grad_S, grad_z, v, write_idx, write_w, read_idx, read_w, S0, z0,
                                      gamma, eps, proxy_eps, cu_seqlens)
    from .triton_scan import pdma_scan_bwd_triton

    return pdma_scan_bwd_triton(grad_o, grad_S, grad_z, v, write_idx, write_w, read_idx, read_w, S0, z0,
                                gamma, eps, proxy_eps, cu_seqlens)


@pdma_scan_bwd_op.register_fake
def _pdma_scan_bwd_fake(grad_o, grad_S, grad_z, v, write_idx, write_w, read_idx, read_w, S0, z0, cu_seqlens,
                        gamma, eps, proxy_eps):
    return (v.new_empty(v.shape), write_w.new_empty(write_w.shape), read_w.new_empty(read_w.shape), S0.new_empty(S0.shape),
            z0.new_empty(z0.shape))


def _setup_context(ctx, inputs, output):
    v, write_idx, write_w, read_idx, read_w, S0, z0, cu_seqlens, gamma, eps, proxy_eps = inputs
    # recompute the scan in backward instead of saving per-event states (memory stays O(inputs + state))
    ctx.save_for_backward(v, write_idx, write_w, read_idx, read_w, S0, z0, cu_seqlens)
    ctx.gamma, ctx.eps, ctx.proxy_eps = gamma, eps, proxy_eps


@autocast_off
def _backward(ctx, grad_o, grad_S, grad_z):
    v, write_idx, write_w, read_idx, read_w, S0, z0, cu_seqlens = ctx.saved_tensors
    d_v, d_ww, d_rw, d_S0, d_z0 = pdma_scan_bwd_op(
        grad_o.contiguous(), grad_S.contiguous(), grad_z.contiguous(), v, write_idx, write_w, read_idx, read_w,
        S0, z0, cu_seqlens, ctx.gamma, ctx.eps, ctx.proxy_eps)
    return d_v, None, d_ww, None, d_rw, d_S0, d_z0, None, None, None, None


pdma_scan_op.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op(f"{NAMESPACE}::pdma_step_", mutates_args=("S", "z"))
def pdma_step_op(v: torch.Tensor, write_idx: torch.Tensor, write_w: torch.Tensor, read_idx: torch.Tensor,
                 read_w: torch.Tensor, S: torch.Tensor, z: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    return pdma_step_inplace(v, write_idx, write_w, read_idx, read_w, S, z, gamma, eps)


@pdma_step_op.register_kernel("cuda")
def _pdma_step_cuda(v, write_idx, write_w, read_idx, read_w, S, z, gamma, eps):
    from .triton_step import pdma_step_triton  # Triton is only needed where a CUDA tensor arrives

    return pdma_step_triton(v, write_idx, write_w, read_idx, read_w, S, z, gamma, eps)


@pdma_step_op.register_fake
def _pdma_step_fake(v, write_idx, write_w, read_idx, read_w, S, z, gamma, eps):
    return v.new_empty(v.shape)
