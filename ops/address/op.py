"""``ramnet::address`` and ``ramnet::address_bwd``: registered custom ops over the beam Top-K.

One kernel per op for every device: it builds the problem once and runs the backend that the table in
``backends.py`` chooses (Triton on CUDA where it fits, else the PyTorch reference). The fakes allocate exactly
what the kernels return.
"""
from __future__ import annotations

import torch

from .._autocast import autocast_off
from ..backends import forced_scope, forced_snapshot
from ..constants import NAMESPACE
from .backends import ADDRESS, AddressProblem


@torch.library.custom_op(f"{NAMESPACE}::address", mutates_args=())
def address_op(x: torch.Tensor, num_factors: int, top_k: int, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    # (weights, indices): the float output first, because opcheck's AOT test sums outputs into the first
    # one's dtype and an int64 first output breaks it. The public ``address`` returns (indices, weights).
    problem = AddressProblem.of(x, num_factors, top_k)
    return ADDRESS.choose(problem).forward(problem, x, tau)


@address_op.register_fake
def _address_fake(x, num_factors, top_k, tau):
    shape = x.shape[:-1] + (top_k,)
    return x.new_empty(shape), x.new_empty(shape, dtype=torch.int64)


@torch.library.custom_op(f"{NAMESPACE}::address_bwd", mutates_args=())
def address_bwd_op(grad_weights: torch.Tensor, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor,
                   num_factors: int, tau: float) -> torch.Tensor:
    problem = AddressProblem.of(x, num_factors, indices.shape[-1])
    return ADDRESS.choose(problem).backward(problem, grad_weights, x, indices, weights, tau)


@address_bwd_op.register_fake
def _address_bwd_fake(grad_weights, x, indices, weights, num_factors, tau):
    return x.new_empty(x.shape)


def _setup_context(ctx, inputs, output):
    x, num_factors, _, tau = inputs
    weights, indices = output
    ctx.save_for_backward(x, indices, weights)
    ctx.num_factors, ctx.tau = num_factors, tau
    ctx.forced_backends = forced_snapshot()  # the backward chooses under the same use_backend


@autocast_off
def _backward(ctx, grad_weights, grad_indices):
    # indices are piecewise constant: only the kept weights carry gradient, into every factor softmax
    x, indices, weights = ctx.saved_tensors
    with forced_scope(ctx.forced_backends):
        grad_x = address_bwd_op(grad_weights.contiguous(), x, indices, weights, ctx.num_factors, ctx.tau)
    return grad_x, None, None, None


address_op.register_autograd(_backward, setup_context=_setup_context)
