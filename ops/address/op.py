"""``ramnet::address`` and ``ramnet::address_bwd``: registered custom ops over the beam Top-K.

The default kernels are the pure-PyTorch beam search and its backward (``naive.py``); they serve CPU, fp64 and
every device without a Triton kernel. On CUDA the forward is ``triton.py`` and the backward ``triton_bwd.py``. The fakes allocate exactly what the kernels return.
"""
from __future__ import annotations

import torch

from .._autocast import autocast_off

from .._namespace import NAMESPACE
from .naive import address_backward_naive, address_naive


@torch.library.custom_op(f"{NAMESPACE}::address", mutates_args=())
def address_op(x: torch.Tensor, num_factors: int, top_k: int, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    # (weights, indices): the float output first, because opcheck's AOT test sums outputs into the first
    # one's dtype and an int64 first output breaks it. The public ``address`` returns (indices, weights).
    indices, weights = address_naive(x, num_factors, top_k, tau)
    return weights.contiguous(), indices.contiguous()


@address_op.register_kernel("cuda")
def _address_cuda(x, num_factors, top_k, tau):
    from .triton import address_triton, fits  # Triton is only needed where a CUDA tensor arrives

    if x.dtype != torch.float64 and fits(x.shape[-1] // num_factors, top_k, num_factors):
        return address_triton(x, num_factors, top_k, tau)
    indices, weights = address_naive(x, num_factors, top_k, tau)  # fp64, or too many candidates for registers
    return weights.contiguous(), indices.contiguous()


@address_op.register_fake
def _address_fake(x, num_factors, top_k, tau):
    shape = x.shape[:-1] + (top_k,)
    return x.new_empty(shape), x.new_empty(shape, dtype=torch.int64)


@torch.library.custom_op(f"{NAMESPACE}::address_bwd", mutates_args=())
def address_bwd_op(grad_weights: torch.Tensor, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor,
                   num_factors: int, tau: float) -> torch.Tensor:
    return address_backward_naive(grad_weights, x, indices, weights, num_factors, tau).contiguous()


@address_bwd_op.register_kernel("cuda")
def _address_bwd_cuda(grad_weights, x, indices, weights, num_factors, tau):
    if x.dtype == torch.float64:  # the reference path, as in the forward
        return address_backward_naive(grad_weights, x, indices, weights, num_factors, tau).contiguous()
    from .triton_bwd import address_backward_triton

    return address_backward_triton(grad_weights, x, indices, weights, num_factors, tau)


@address_bwd_op.register_fake
def _address_bwd_fake(grad_weights, x, indices, weights, num_factors, tau):
    return x.new_empty(x.shape)


def _setup_context(ctx, inputs, output):
    x, num_factors, _, tau = inputs
    weights, indices = output
    ctx.save_for_backward(x, indices, weights)
    ctx.num_factors, ctx.tau = num_factors, tau


@autocast_off
def _backward(ctx, grad_weights, grad_indices):
    # indices are piecewise constant: only the kept weights carry gradient, into every factor softmax
    x, indices, weights = ctx.saved_tensors
    grad_x = address_bwd_op(grad_weights.contiguous(), x, indices, weights, ctx.num_factors, ctx.tau)
    return grad_x, None, None, None


address_op.register_autograd(_backward, setup_context=_setup_context)
