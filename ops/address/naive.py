"""Pure-PyTorch product-softmax addressing: the beam Top-K (registered CPU kernel) and a brute-force reference.

Shapes: ``x`` is ``[..., U * d_p]``; both functions return ``indices`` int64 ``[..., K]`` and ``weights``
``[..., K]`` in descending weight order. Flat slot index ``i_1 + i_2 * d_p + ...`` (chunk 1 is the least
significant digit). Ties: the lower flat index wins (stable sort over candidates ordered by flat index).
Equations: docs/MATH.md, sections 2 (address) and 9.2 (backward).
"""
from __future__ import annotations

import torch


def factor_log_probs(x: torch.Tensor, num_factors: int, tau: float) -> torch.Tensor:
    """``[..., U * d_p] -> [..., U, d_p]`` log-softmax of each chunk, computed in at least float32."""
    compute = torch.promote_types(x.dtype, torch.float32)
    chunks = x.to(compute).unflatten(-1, (num_factors, -1))
    return torch.log_softmax(chunks / tau, dim=-1)


def _stable_topk(values: torch.Tensor, flat_index: torch.Tensor, k: int):
    """Top-k along the last dim where equal values keep the lower flat index first."""
    order = torch.argsort(flat_index, dim=-1)
    values = values.gather(-1, order)
    flat_index = flat_index.gather(-1, order)
    keep = torch.sort(values, dim=-1, descending=True, stable=True).indices[..., :k]
    return values.gather(-1, keep), flat_index.gather(-1, keep)


@torch.no_grad()
def beam_topk_indices(logp: torch.Tensor, top_k: int) -> torch.Tensor:
    """Exact Top-K flat indices of the product distribution by a log-space beam merge.

    ``logp``: ``[..., U, d_p]`` factor log-probabilities. Cost ``O(U * K * d_p)``; no ``d_p ** U`` tensor.
    Exact because a product in the global Top-K has every prefix in the prefix Top-K.
    """
    num_factors, d_p = logp.shape[-2], logp.shape[-1]
    base = torch.arange(d_p, device=logp.device).expand(logp.shape[:-2] + (d_p,))
    beam_val, beam_idx = _stable_topk(logp[..., 0, :], base, min(top_k, d_p))
    stride = d_p
    for u in range(1, num_factors):
        cand_val = (beam_val.unsqueeze(-1) + logp[..., u, :].unsqueeze(-2)).flatten(-2)
        cand_idx = (beam_idx.unsqueeze(-1) + stride * base.unsqueeze(-2)).flatten(-2)
        beam_val, beam_idx = _stable_topk(cand_val, cand_idx, min(top_k, cand_val.shape[-1]))
        stride *= d_p
    return beam_idx


def weights_at(logp: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Product-softmax weight of each flat index, differentiable through every factor's softmax."""
    num_factors, d_p = logp.shape[-2], logp.shape[-1]
    total = torch.zeros(indices.shape, dtype=logp.dtype, device=logp.device)
    rest = indices
    for u in range(num_factors):
        digit = rest % d_p
        rest = rest // d_p
        total = total + logp[..., u, :].gather(-1, digit)
    return total.exp()


def address_naive(x: torch.Tensor, num_factors: int, top_k: int, tau: float = 1.0):
    """Beam Top-K product-softmax address. Returns ``(indices int64 [..., K], weights [..., K] in x.dtype)``."""
    logp = factor_log_probs(x, num_factors, tau)
    indices = beam_topk_indices(logp, top_k)
    return indices, weights_at(logp, indices).to(x.dtype)


def address_bruteforce(x: torch.Tensor, num_factors: int, top_k: int, tau: float = 1.0):
    """Materialise all ``d_p ** U`` products and take ``torch.topk``: the test oracle (small M only)."""
    logp = factor_log_probs(x, num_factors, tau)
    d_p = logp.shape[-1]
    joint = logp[..., 0, :]
    for u in range(1, num_factors):
        # new digit is more significant: flat = old + d_p**u * j
        joint = (joint.unsqueeze(-2) + logp[..., u, :].unsqueeze(-1)).flatten(-2)
    flat = torch.arange(d_p**num_factors, device=x.device).expand(joint.shape)
    val, idx = _stable_topk(joint, flat, top_k)
    return idx, val.exp().to(x.dtype)


def address_backward_naive(grad_weights, x, indices, weights, num_factors: int, tau: float):
    """Gradient of ``weights`` w.r.t. ``x`` (indices are piecewise constant).

    ``d w_k / d logp_u[j] = w_k * [digit_u(k) == j]``; then the log-softmax backward of each chunk.
    """
    logp = factor_log_probs(x, num_factors, tau)
    d_p = logp.shape[-1]
    g = (grad_weights.to(logp.dtype) * weights.to(logp.dtype))  # [..., K]
    grad_logp = torch.zeros_like(logp)
    rest = indices
    for u in range(num_factors):
        digit = rest % d_p
        rest = rest // d_p
        grad_logp[..., u, :].scatter_add_(-1, digit, g)
    probs = logp.exp()
    grad_chunks = (grad_logp - probs * grad_logp.sum(-1, keepdim=True)) / tau
    return grad_chunks.flatten(-2).to(x.dtype)
