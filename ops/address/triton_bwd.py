"""Triton backward of ``ramnet::address``: ``grad_weights [..., K] -> grad_x [..., U * d_p]``, one program per row.

The indices are piecewise constant, so only the kept weights carry gradient. With ``g_k = grad_w_k * w_k``,
``d logp_u[j] = sum_k g_k [digit_u(k) == j]`` (the digit of slot k in factor u, least significant first), and the
log-softmax backward gives ``grad_x_u = (d logp_u - p_u * sum_k g_k) / tau`` (each k lands in one j per factor,
so ``sum_j d logp_u[j] = sum_k g_k``). Same math as ``address_backward_naive``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl




@triton.jit
def _address_bwd_kernel(gw_ptr, x_ptr, idx_ptr, w_ptr, dx_ptr, K, inv_tau, U: tl.constexpr, P: tl.constexpr,
                        BLOCK_U: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs_u = tl.arange(0, BLOCK_U)
    offs_p = tl.arange(0, BLOCK_P)
    offs_k = tl.arange(0, BLOCK_K)
    mask_up = (offs_u[:, None] < U) & (offs_p[None, :] < P)
    mask_k = offs_k < K
    x = tl.load(x_ptr + row * U * P + offs_u[:, None] * P + offs_p[None, :], mask=mask_up, other=0.0)
    x = tl.where(mask_up, x.to(tl.float32) * inv_tau, float("-inf"))
    x_max = tl.max(x, axis=1)
    e = tl.where(mask_up, tl.exp(x - x_max[:, None]), 0.0)
    probs = e / tl.maximum(tl.sum(e, axis=1), 1e-30)[:, None]              # [BLOCK_U, BLOCK_P]

    g = tl.load(gw_ptr + row * K + offs_k, mask=mask_k, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + row * K + offs_k, mask=mask_k, other=0.0).to(tl.float32)
    idx = tl.load(idx_ptr + row * K + offs_k, mask=mask_k, other=0)
    gw = tl.where(mask_k, g * w, 0.0)
    total = tl.sum(gw, axis=0)
    grad_logp = tl.zeros([BLOCK_U, BLOCK_P], dtype=tl.float32)
    stride = 1
    for u in tl.static_range(U):
        digit = (idx // stride) % P                                          # [BLOCK_K]
        hits = tl.sum(tl.where(digit[:, None] == offs_p[None, :], gw[:, None], 0.0), axis=0)  # [BLOCK_P]
        grad_logp = tl.where(offs_u[:, None] == u, hits[None, :], grad_logp)
        stride = stride * P
    dx = (grad_logp - probs * total) * inv_tau
    tl.store(dx_ptr + row * U * P + offs_u[:, None] * P + offs_p[None, :], dx.to(dx_ptr.dtype.element_ty),
             mask=mask_up)


def address_backward_triton(grad_weights: torch.Tensor, x: torch.Tensor, indices: torch.Tensor,
                            weights: torch.Tensor, num_factors: int, tau: float, num_warps: int = 1):
    """``grad_weights, weights [..., K]``, ``indices int64 [..., K]``, ``x [..., U * d_p]`` -> ``grad_x`` like x."""
    d_p = x.shape[-1] // num_factors
    top_k = indices.shape[-1]
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    n = rows.shape[0]
    grad_x = torch.empty_like(rows)
    if n:
        _address_bwd_kernel[(n,)](grad_weights.reshape(n, top_k).contiguous(), rows,
                                  indices.reshape(n, top_k).contiguous(), weights.reshape(n, top_k).contiguous(),
                                  grad_x, top_k, 1.0 / tau, U=num_factors, P=d_p,
                                  BLOCK_U=triton.next_power_of_2(num_factors), BLOCK_P=triton.next_power_of_2(d_p),
                                  BLOCK_K=triton.next_power_of_2(top_k), num_warps=num_warps)
    return grad_x.view(x.shape)
