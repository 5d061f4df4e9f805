"""Kernel side of the saved-row layout (``layout.py``): where event ``e``'s row and ``z`` live."""
import triton
import triton.language as tl  # noqa: F401  (the jit functions below are Triton code)


@triton.jit
def event_row(base, event, DV, offs_d):
    """Pointers to one saved event's ``d_v`` values ``[BLOCK_D]`` and to its ``z``."""
    start = base + event * (DV + 1)
    return start + offs_d, start + DV


@triton.jit
def event_rows(base, events, DV, offs_d):
    """Pointers for a vector of events ``[BLOCK_K]``: values ``[BLOCK_K, BLOCK_D]`` and ``z`` ``[BLOCK_K]``."""
    start = base + events * (DV + 1)
    return start[:, None] + offs_d[None, :], start + DV
