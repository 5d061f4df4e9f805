"""ramnet.ops: RAM-Net kernels as ``torch.library`` custom ops in the ``ramnet`` namespace.

Public API: :func:`address`, :func:`ram_attention`, :func:`ram_step`, :func:`ram_step_functional`,
:func:`initial_state`. Registered ops: ``torch.ops.ramnet.{address, address_bwd, pdma_scan, pdma_scan_bwd,
ram_step_}``.

Backends (``backends.py``): :func:`use_backend` forces a backend for a block of code, :func:`list_backends` lists them,
:func:`explain_attention` / :func:`explain_step` report which one runs for an input and why the others refused.
"""
from .backends import list_backends, use_backend
from .constants import DEFAULT_EPS, DEFAULT_PROXY_EPS, NAMESPACE
from .explain import explain_attention, explain_step
from .ram import address, initial_state, ram_attention, ram_step, ram_step_functional

__all__ = ["DEFAULT_EPS", "DEFAULT_PROXY_EPS", "NAMESPACE", "address", "explain_attention", "list_backends",
           "explain_step", "initial_state", "ram_attention", "ram_step", "ram_step_functional", "use_backend"]
