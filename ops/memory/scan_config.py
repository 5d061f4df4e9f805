"""Which CUDA forward the PDMA scan uses: ``RAMNET_SCAN=recurrent`` (``triton_scan.py``, the default) or
``chunked`` (``triton_chunked.py``, experimental: interpreter-tested, not yet run on a GPU). The backward's
forward recompute follows the same choice. Read once at import."""
import os

SCAN_FORWARD = os.environ.get("RAMNET_SCAN", "recurrent")
if SCAN_FORWARD not in ("recurrent", "pipelined", "chunked"):
    raise ValueError(f"RAMNET_SCAN must be 'recurrent', 'pipelined' or 'chunked', got {SCAN_FORWARD!r}")
