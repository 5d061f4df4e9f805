"""The saved-row layout shared by the training scans' forwards (which write it) and backwards (which read it).

One row per event (a token's k-th write or read, events flat over ``[B, T, H, K]``): ``d_v`` fp32 values of
``S`` followed by ``z``, so event ``e`` occupies ``[e * (d_v + 1), (e + 1) * (d_v + 1))``. The write rows hold the
slot before the write (the backward's ``S_old, z_old``); the read rows hold it after the token's writes (what the
read saw). ``triton_layout.event_rows`` is the same layout inside kernels.
"""
from __future__ import annotations

import torch


def saved_rows_buffer(events: int, d_v: int, device, needed: bool = True) -> torch.Tensor:
    """An fp32 buffer for ``events`` rows (one element when ``needed`` is False: kernels still take a pointer)."""
    return torch.empty(events * (d_v + 1) if needed else 1, dtype=torch.float32, device=device)
