"""Which CUDA forward the PDMA scan uses: ``RAMNET_SCAN=recurrent`` (``triton_scan.py``, the default) or
``chunked`` (``triton_chunked.py``: tested on CPU and GPU, measured slower on the H100, see DECISIONS.md).
The backward's forward recompute follows the same choice. Read once at import."""
import os

SCAN_FORWARD = os.environ.get("RAMNET_SCAN", "recurrent")
if SCAN_FORWARD not in ("recurrent", "segment", "chunked"):
    raise ValueError(f"RAMNET_SCAN must be 'recurrent', 'segment' or 'chunked', got {SCAN_FORWARD!r}")
