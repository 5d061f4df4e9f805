"""A/B of the CUDA scan forwards in one process: the fused-recurrent default against the variants named by
``--variants`` (``segment``: the per-(state, slot) walk; ``chunked:C``: the chunked form with C tokens per chunk;
a ``pipelined`` forward existed at commit 028a48f), on the P1 op (U=5, d_p=4, K=8, d_v=D, bf16), fwd and fwd+bwd, with the max abs difference of the output
and of the input gradients against the default.

    python benchmarks/bench_scan_ab.py [--shapes 4,4096,16,128 ...] [--variants segment chunked:2]

Prints a table and writes ``results/scan_ab.json``. The choice is switched by patching the modules' switch, so
both sides share inputs, warm caches and the card.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_attention import _fwd_bwd, ram_fn, ram_inputs  # noqa: E402
from common import bench_ms, save_rows, table  # noqa: E402

from ramnet.ops.memory import op as memory_op  # noqa: E402
from ramnet.ops.memory import triton_chunked, triton_scan  # noqa: E402


def use(variant: str) -> None:
    """``recurrent``, ``segment`` or ``chunked:C``."""
    scan, _, chunk = variant.partition(":")
    memory_op.SCAN_FORWARD = triton_scan.SCAN_FORWARD = scan
    triton_chunked.CHUNK = int(chunk or 8)


def grads(q, k, v):
    for t in (q, k, v):
        t.grad = None
    out = ram_fn(q, k, v)
    out.backward(torch.ones_like(out))
    return out.detach().float(), [t.grad.float() for t in (q, k, v)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=["4,4096,16,128", "8,1024,8,64", "1,8192,96,128"])
    parser.add_argument("--variants", nargs="*", default=["segment"])
    args = parser.parse_args()
    rows = []
    for shape in args.shapes:
        B, T, H, D = map(int, shape.split(","))
        q, k, v = ram_inputs(B, T, H, D)
        use("recurrent")
        ref_out, ref_grads = grads(q, k, v)
        base = {"fwd": bench_ms(lambda: ram_fn(q, k, v), warmup=2, rep=5),
                "fwdbwd": bench_ms(_fwd_bwd(ram_fn, (q, k, v)), warmup=2, rep=5)}
        rows.append({"shape": shape, "scan": "recurrent", "fwd_ms": base["fwd"], "fwdbwd_ms": base["fwdbwd"],
                     "fwd_speedup": 1.0, "fwdbwd_speedup": 1.0, "max_abs_diff": 0.0})
        for variant in args.variants:
            use(variant)
            out, g = grads(q, k, v)
            diffs = [out - ref_out] + [a - b for a, b in zip(g, ref_grads)]
            diff = max(float(d.abs().max()) for d in diffs)
            fwd = bench_ms(lambda: ram_fn(q, k, v), warmup=2, rep=5)
            fwdbwd = bench_ms(_fwd_bwd(ram_fn, (q, k, v)), warmup=2, rep=5)
            rows.append({"shape": shape, "scan": variant, "fwd_ms": fwd, "fwdbwd_ms": fwdbwd,
                         "fwd_speedup": base["fwd"] / fwd, "fwdbwd_speedup": base["fwdbwd"] / fwdbwd,
                         "max_abs_diff": diff})
        print(table(rows[-1 - len(args.variants):]), flush=True)
    use("recurrent")
    print(table(rows))
    save_rows("scan_ab.json", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
