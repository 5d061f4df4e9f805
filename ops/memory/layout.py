"""The saved-row layout shared by the training scans' forwards (which write it) and backwards (which read it).

One saved row per event (a token's k-th write or read, events flat over ``[B, T, H, K]``), in two buffers:
``rows [events * d_v]`` holds the ``d_v`` values of ``S`` (event ``e`` at ``[e * d_v, (e + 1) * d_v)``) and
``z [events]`` its normaliser. The write rows hold the slot before the write (the backward's ``S_old, z_old``);
the read rows hold it after the token's writes (what the read saw). Keeping ``z`` apart keeps every row aligned
to ``d_v`` elements, so the kernels move rows with vector loads and stores (an interleaved ``d_v + 1`` stride
is only 4-byte aligned). ``rows`` is fp32 or bf16 (a backend knob; ``z`` stays fp32). ``triton_layout.py`` is
the same layout inside kernels.
"""
from __future__ import annotations

import torch

ROW_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def saved_rows_buffer(events: int, d_v: int, device, needed: bool = True, rows_dtype: str = "fp32"):
    """``(rows, z)`` for ``events`` saved rows (one element each when ``needed`` is False: kernels still take
    pointers)."""
    n = events if needed else 1
    return (torch.empty(n * d_v if needed else 1, dtype=ROW_DTYPES[rows_dtype], device=device),
            torch.empty(n, dtype=torch.float32, device=device))
