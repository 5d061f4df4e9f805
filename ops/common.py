"""Pieces every path shares: the CAPE shift and the packed-sequence id of each token (one home each)."""
from __future__ import annotations

import torch


def cape_shift(indices: torch.Tensor, positions: torch.Tensor, cape: torch.Tensor | None, num_slots: int):
    """``slot -> (slot - t) mod M`` on CAPE heads. ``indices [..., H, K]`` int64, ``positions [...]`` int64 (the
    absolute position of each token, broadcast against the leading dims), ``cape`` bool ``[H]`` or None."""
    if cape is None:
        return indices
    shifted = torch.remainder(indices - positions[..., None, None], num_slots)
    return torch.where(cape.view(-1, 1), shifted, indices)


def sequence_ids(T: int, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """``[T]`` int64: which packed sequence each token belongs to (``cu_seqlens [N + 1]`` offsets, as in fla)."""
    t = torch.arange(T, device=cu_seqlens.device)
    return torch.searchsorted(cu_seqlens[1:], t.to(cu_seqlens.dtype), right=True)


def positions_in_sequence(T: int, cu_seqlens: torch.Tensor | None, offset: int) -> torch.Tensor:
    """``[T]`` int64 positions: ``offset + t``, restarting at every packed sequence when ``cu_seqlens`` is given."""
    device = None if cu_seqlens is None else cu_seqlens.device
    t = torch.arange(T, device=device)
    if cu_seqlens is not None:
        t = t - cu_seqlens.to(torch.int64)[sequence_ids(T, cu_seqlens)]
    return offset + t
