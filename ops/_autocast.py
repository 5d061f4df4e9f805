"""Mixed precision at the op boundary.

Under ``torch.autocast`` the public ops cast q, k and v to the autocast dtype and then run with autocast off, so
the state stays fp32 and nothing inside an op (the references' matmuls, the Triton launches) is re-cast.
``torch.library.register_autocast`` is not used: it casts every floating input, the fp32 state included, and an
in-place op would then update a temporary copy."""
from __future__ import annotations

import contextlib
import functools

import torch

_CASTABLE = (torch.float16, torch.bfloat16, torch.float32)


def autocast_inputs(*tensors: torch.Tensor):
    """``(tensors cast to the autocast dtype, a context that turns autocast off)`` when autocast is on for the
    tensors' device type, else ``(tensors, nullcontext())``. fp64 inputs are left as they are (autocast does not
    lower fp64 either)."""
    device_type = tensors[0].device.type
    if not torch.is_autocast_enabled(device_type):
        return tensors, contextlib.nullcontext()
    dtype = torch.get_autocast_dtype(device_type)
    cast = tuple(t.to(dtype) if t.dtype in _CASTABLE else t for t in tensors)
    return cast, torch.autocast(device_type, enabled=False)


def autocast_off(fn):
    """Run ``fn`` (an op's backward) with autocast off on the devices of its tensor arguments: a ``backward()``
    called inside an autocast region must not re-cast the fp32 state gradients."""
    @functools.wraps(fn)
    def wrapper(ctx, *grads):
        device_type = next((g.device.type for g in grads if isinstance(g, torch.Tensor)), "cpu")
        with torch.autocast(device_type, enabled=False):
            return fn(ctx, *grads)
    return wrapper
