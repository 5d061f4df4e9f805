"""Which CUDA kernels the PDMA scan uses (``RAMNET_SCAN``, read once at import):

- ``segment`` (the default; ``triton_segment.py`` and ``triton_segment_bwd.py``): one program per (state, slot)
  walks that slot's time-sorted events; parallel over B*H*M.
- ``recurrent`` (``triton_scan.py``): one program per (state, head) walks the tokens; parallel over B*H only.
- ``chunked`` (``triton_chunked.py``): tested on CPU and GPU, measured slower on the H100.

Each backward recomputes its own forward. Measurements: docs/DECISIONS.md and docs/BENCHMARKS.md."""
import os

SCAN_FORWARD = os.environ.get("RAMNET_SCAN", "segment")
if SCAN_FORWARD not in ("recurrent", "segment", "chunked"):
    raise ValueError(f"RAMNET_SCAN must be 'segment', 'recurrent' or 'chunked', got {SCAN_FORWARD!r}")
