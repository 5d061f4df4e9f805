"""A/B of the CUDA scan backends in one process: a baseline (``--baseline``, the ``recurrent`` backend unless
given) against the variants named by ``--variants`` (default: ``segment``, the table's first choice), on the P1
op (U=5, d_p=4, K=8, d_v=D, bf16), fwd and fwd+bwd, with the max abs difference of the output and of the input
gradients against the baseline.

A variant is a scan backend name (``ramnet.ops.list_backends()["scan"]``) or a name with knob values, e.g.
``segment:num_warps=2,atomic_read=false`` or ``recurrent:fwd_warps=8,bwd_warps=8``.

    python benchmarks/bench_scan_ab.py [--shapes 4,4096,16,128 ...] [--baseline recurrent] [--variants segment ...]
    python benchmarks/bench_scan_ab.py --baseline segment --variants segment --deterministic-variants  # its cost

Prints a table and writes ``results/scan_ab.json``. Each side runs under ``ramnet.ops.use_backend(scan=...)``
(a forced backend that refuses the input is an error, not a silent fall-back), so both sides share inputs, warm
caches and the card.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_attention import _fwd_bwd, ram_fn, ram_inputs  # noqa: E402
from common import backend_variant, bench_ms, require_cuda, save_rows, table  # noqa: E402

from ramnet.ops import use_backend  # noqa: E402


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool):
    """``torch.use_deterministic_algorithms(enabled)`` inside the block, the process's own setting after it."""
    was, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=warn_only)


@contextlib.contextmanager
def scan_backend(backend):
    """Force ``backend`` for the forward and the backward. The backward runs on the calling thread (autograd's
    device threads would not see the ``use_backend`` block, which is per thread)."""
    with use_backend(scan=backend), torch.autograd.set_multithreading_enabled(False):
        yield


def grads(q, k, v):
    for t in (q, k, v):
        t.grad = None
    out = ram_fn(q, k, v)
    out.backward(torch.ones_like(out))
    return out.detach().float(), [t.grad.float() for t in (q, k, v)]


def timings(q, k, v) -> dict:
    return {"fwd": bench_ms(lambda: ram_fn(q, k, v), warmup=2, rep=5),
            "fwdbwd": bench_ms(_fwd_bwd(ram_fn, (q, k, v)), warmup=2, rep=5)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=["4,4096,16,128", "8,1024,8,64", "1,8192,96,128"])
    parser.add_argument("--baseline", default="recurrent", help="the scan backend the others are compared to")
    parser.add_argument("--variants", nargs="*", default=["segment"],
                        help="scan backends, optionally with knobs: NAME[:knob=value,...]")
    parser.add_argument("--deterministic-variants", action="store_true",
                        help="run the variants under torch.use_deterministic_algorithms(True) (the baseline without): "
                             "the segment scan then keeps its read rows and sums dv without atomics")
    args = parser.parse_args()
    try:
        baseline = backend_variant("scan", args.baseline)
        variants = [(spec, backend_variant("scan", spec)) for spec in args.variants]
    except ValueError as err:
        parser.error(str(err))
    require_cuda(__file__)
    rows = []
    for shape in args.shapes:
        B, T, H, D = map(int, shape.split(","))
        q, k, v = ram_inputs(B, T, H, D)
        with scan_backend(baseline):
            ref_out, ref_grads = grads(q, k, v)
            base = timings(q, k, v)
        rows.append({"shape": shape, "scan": args.baseline, "fwd_ms": base["fwd"], "fwdbwd_ms": base["fwdbwd"],
                     "fwd_speedup": 1.0, "fwdbwd_speedup": 1.0, "max_abs_diff": 0.0})
        for spec, backend in variants:
            with scan_backend(backend), deterministic_algorithms(args.deterministic_variants):
                out, g = grads(q, k, v)
                diffs = [out - ref_out] + [a - b for a, b in zip(g, ref_grads)]
                diff = max(float(d.abs().max()) for d in diffs)
                t = timings(q, k, v)
            label = f"{spec} (deterministic)" if args.deterministic_variants else spec
            rows.append({"shape": shape, "scan": label, "fwd_ms": t["fwd"], "fwdbwd_ms": t["fwdbwd"],
                         "fwd_speedup": base["fwd"] / t["fwd"], "fwdbwd_speedup": base["fwdbwd"] / t["fwdbwd"],
                         "max_abs_diff": diff})
        print(table(rows[-1 - len(variants):]), flush=True)
    print(table(rows))
    save_rows("scan_ab.json", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
