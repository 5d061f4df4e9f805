"""Rotary position embedding (RoPE) helpers, shared by the LM's Transformer++ baseline (``ramnet.lm.arch``) and
the MQAR attention baseline (``ramnet.baselines``)."""
from __future__ import annotations

import torch


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float):
    """``(cos, sin)`` ``[R, 1, L, head_dim / 2]`` for integer ``positions [R, L]`` (fp32)."""
    inv = theta ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.to(torch.float32).unsqueeze(-1) * inv
    return angles.cos().unsqueeze(1), angles.sin().unsqueeze(1)


def apply_rope(x, cos, sin):
    """Rotate the two halves of each head's channels (``x [R, H, L, hd]``)."""
    a, b = x.float().chunk(2, dim=-1)
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1).to(x.dtype)
