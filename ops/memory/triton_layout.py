"""Kernel side of the saved-row layout (``layout.py``): where event ``e``'s row and ``z`` live. Rows may be
stored in a narrower dtype than the fp32 walk: ``store_row`` casts, ``load_row`` widens back."""
import triton
import triton.language as tl


@triton.jit
def event_row(rows, zs, event, DV, offs_d):
    """Pointers to one saved event's ``d_v`` values ``[BLOCK_D]`` and to its ``z``."""
    return rows + event * DV + offs_d, zs + event


@triton.jit
def event_rows(rows, zs, events, DV, offs_d):
    """Pointers for a vector of events ``[BLOCK_K]``: values ``[BLOCK_K, BLOCK_D]`` and ``z`` ``[BLOCK_K]``."""
    return rows + events[:, None] * DV + offs_d[None, :], zs + events


@triton.jit
def store_row(ptrs, values, mask):
    tl.store(ptrs, values.to(ptrs.dtype.element_ty), mask=mask)


@triton.jit
def load_row(ptrs, mask):
    return tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
