"""ramnet.ops: RAM-Net kernels as ``torch.library`` custom ops in the ``ramnet`` namespace.

Public API: :func:`address`, :func:`ram_attention`, :func:`ram_step`, :func:`ram_step_functional`,
:func:`initial_state`. Registered ops: ``torch.ops.ramnet.{address, address_bwd, pdma_scan, pdma_scan_bwd,
pdma_step_}``.
"""
from ._namespace import NAMESPACE
from .ram import address, initial_state, ram_attention, ram_step, ram_step_functional

__all__ = ["NAMESPACE", "address", "initial_state", "ram_attention", "ram_step", "ram_step_functional"]
