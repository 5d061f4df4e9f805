"""The gated delta rule (Gated DeltaNet's token mixer), chunked, in plain PyTorch: autograd gives the backward.

Why it exists: fla 0.6.0 cannot train Gated DeltaNet on our H200s. Its chunked backward refuses to run on Hopper
GPUs with Triton >= 3.4.0 and < 3.7.1 (``chunk_bwd_dqkwg``: "produces incorrect results", fla#640; we have Triton
3.6), and its ``fused_recurrent`` kernel has no backward. This module computes what fla's
``chunk_gated_delta_rule`` computes, so that ``ramnet.baselines`` can run fla's GatedDeltaNet parameters through
it (``layer: {core: torch}``). It is checked against fla's ``naive_recurrent_gated_delta_rule``
(tests/model/test_gated_delta_torch.py) and, on a GPU, against fla's kernels (benchmarks/gpu_gdn_core_check.py).

The rule, per batch row and head, with the state ``S`` of shape ``[K, V]`` (the layout of fla's naive reference;
fla's layer caches its state as ``[V, K]``, so such a state needs a transpose) and, for each token t, ``g_t`` the
log decay (<= 0) and ``beta_t`` the write strength::

    S = exp(g_t) * S;   u_t = beta_t * (v_t - S^T k_t);   S = S + k_t u_t^T;   o_t = S^T (scale * q_t)

Chunked form (WY / UT transform, Yang et al., "Gated Delta Networks", arXiv:2412.06464, as in fla's
``naive_chunk_gated_delta_rule``): with ``c`` the within-chunk cumulative sum of ``g``, ``D[i, j] = exp(c_i - c_j)``
for ``j <= i`` (else 0), ``L = strict_lower((beta k) k^T * D)`` and ``S0`` the state at the chunk's start, the
chunk's ``u = (I + L)^-1 (beta v) - (I + L)^-1 (beta k exp(c)) S0``. Everything but ``S0`` is computed for all
chunks at once (one batched triangular solve); only the state is carried chunk to chunk (two ``baddbmm`` a chunk),
and the outputs ``o = (q exp(c)) S0 + (q k^T * D) u`` are again one batched product. All of it runs in float32
(float64 for float64 inputs) with autocast off; ``o`` comes back in ``q``'s dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

L2NORM_EPS = 1e-6  # fla's l2norm: x / sqrt(sum(x^2) + eps)


def l2norm(x: torch.Tensor, eps: float = L2NORM_EPS) -> torch.Tensor:
    """fla's ``use_qk_l2norm_in_kernel`` normalisation over the last dimension."""
    return x * torch.rsqrt(x.square().sum(-1, keepdim=True) + eps)


def chunk_gated_delta_rule_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                                 beta: torch.Tensor, scale: float | None = None,
                                 initial_state: torch.Tensor | None = None, output_final_state: bool = False,
                                 use_qk_l2norm: bool = False, chunk_size: int = 64
                                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gated delta rule over ``q, k [B, T, H, K]``, ``v [B, T, H, V]``, ``g`` (log decay) and ``beta``
    ``[B, T, H]``, with ``scale`` (default ``K ** -0.5``) and an optional ``initial_state [B, H, K, V]``.

    ``use_qk_l2norm`` normalises q and k first (fla's ``use_qk_l2norm_in_kernel=True``). ``T`` need not be a
    multiple of ``chunk_size`` (the last chunk is padded with tokens that change nothing). Returns
    ``(o [B, T, H, V] in q's dtype, final state [B, H, K, V] in the compute dtype or None)``.
    """
    if q.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k and v must be 4-D [B, T, H, D]; got q {tuple(q.shape)}, v {tuple(v.shape)}")
    B, T, H, K = q.shape
    V = v.shape[-1]
    if initial_state is not None and initial_state.shape != (B, H, K, V):
        raise ValueError(f"initial_state must be [B, H, K, V] = {(B, H, K, V)}, got {tuple(initial_state.shape)}")
    if k.shape != q.shape or v.shape[:3] != (B, T, H) or g.shape != (B, T, H) or beta.shape != (B, T, H):
        raise ValueError(f"expected q, k [B, T, H, K], v [B, T, H, V], g and beta [B, T, H]; got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}, g {tuple(g.shape)}, beta {tuple(beta.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    out_dtype = q.dtype
    dtype = torch.promote_types(q.dtype, torch.float32)  # float32, or float64 for float64 inputs
    scale = K ** -0.5 if scale is None else scale
    C = chunk_size
    N = -(-T // C)
    pad = N * C - T

    def chunks(x):  # [B, T, H, D] -> [N, B*H, C, D], padded with zeros (g = 0 and beta = 0: no decay, no write)
        x = F.pad(x.to(dtype), (0, 0, 0, 0, 0, pad))
        return x.view(B, N, C, H, -1).permute(1, 0, 3, 2, 4).reshape(N, B * H, C, x.shape[-1])

    with torch.autocast(q.device.type, enabled=False):
        q, k, v = chunks(q), chunks(k), chunks(v)
        if use_qk_l2norm:  # after chunks(): contiguous rows (the padding rows stay zero)
            q, k = l2norm(q), l2norm(k)
        q = q * scale
        g, beta = chunks(g.unsqueeze(-1)).squeeze(-1), chunks(beta.unsqueeze(-1))  # [N, BH, C], [N, BH, C, 1]
        c = g.cumsum(-1)
        causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
        decay = (c.unsqueeze(-1) - c.unsqueeze(-2)).masked_fill(~causal, float("-inf")).exp()  # D, [N, BH, C, C]
        kb = k * beta
        strict = torch.tril(kb @ k.mT * decay, -1)
        # (I + L)^-1 [beta k exp(c) | beta v] in one batched solve: unitriangular puts the ones on the diagonal
        wu = torch.linalg.solve_triangular(strict, torch.cat([kb * c.exp().unsqueeze(-1), v * beta], -1),
                                           upper=False, unitriangular=True)
        w, u0 = wu.split([K, V], -1)
        k_end = k * (c[..., -1:] - c).exp().unsqueeze(-1)  # k decayed to the chunk's end
        decay_end = c[..., -1].exp()[..., None, None]      # [N, BH, 1, 1]

        S = q.new_zeros(B * H, K, V) if initial_state is None else initial_state.to(dtype).reshape(B * H, K, V)
        starts, us = [], []
        for w_n, u0_n, k_n, d_n in zip(w.unbind(0), u0.unbind(0), k_end.unbind(0), decay_end.unbind(0)):
            starts.append(S)
            u_n = torch.baddbmm(u0_n, w_n, S, alpha=-1)
            us.append(u_n)
            S = torch.baddbmm(S * d_n, k_n.mT, u_n)
        o = (q * c.exp().unsqueeze(-1)) @ torch.stack(starts) + (q @ k.mT * decay) @ torch.stack(us)
        o = o.view(N, B, H, C, V).permute(1, 0, 3, 2, 4).reshape(B, N * C, H, V)[:, :T]
    return o.to(out_dtype), (S.view(B, H, K, V) if output_final_state else None)


__all__ = ["chunk_gated_delta_rule_torch", "l2norm"]
