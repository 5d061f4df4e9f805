"""A/B of the two CUDA scan implementations in one process: the fused-recurrent default and the experimental
chunked form (``RAMNET_SCAN=chunked``), on the P1 op (U=5, d_p=4, K=8, d_v=D, bf16), fwd and fwd+bwd, with the max
abs difference of the output and of the input gradients between the two.

    python benchmarks/bench_scan_ab.py [--shapes 4,4096,16,128 ...] [--chunks 8 16]

Prints a table and writes ``results/scan_ab.json``. The choice is switched by patching the modules' switch, so
both sides share inputs, warm caches and the card.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_attention import _fwd_bwd, ram_fn, ram_inputs  # noqa: E402
from common import RESULTS, bench_ms, header, table  # noqa: E402

from ramnet.ops.memory import op as memory_op  # noqa: E402
from ramnet.ops.memory import triton_chunked, triton_scan  # noqa: E402


def use(scan: str, chunk: int) -> None:
    memory_op.SCAN_FORWARD = triton_scan.SCAN_FORWARD = scan
    triton_chunked.CHUNK = chunk


def grads(q, k, v):
    for t in (q, k, v):
        t.grad = None
    out = ram_fn(q, k, v)
    out.backward(torch.ones_like(out))
    return out.detach().float(), [t.grad.float() for t in (q, k, v)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=["4,4096,16,128", "8,1024,8,64", "1,8192,96,128"])
    parser.add_argument("--chunks", nargs="*", type=int, default=[8, 16])
    args = parser.parse_args()
    rows = []
    for shape in args.shapes:
        B, T, H, D = map(int, shape.split(","))
        q, k, v = ram_inputs(B, T, H, D)
        use("recurrent", 8)
        ref_out, ref_grads = grads(q, k, v)
        base = {"fwd": bench_ms(lambda: ram_fn(q, k, v), warmup=2, rep=5),
                "fwdbwd": bench_ms(_fwd_bwd(ram_fn, (q, k, v)), warmup=2, rep=5)}
        rows.append({"shape": shape, "scan": "recurrent", "fwd_ms": base["fwd"], "fwdbwd_ms": base["fwdbwd"],
                     "fwd_speedup": 1.0, "fwdbwd_speedup": 1.0, "max_abs_diff": 0.0})
        for chunk in args.chunks:
            use("chunked", chunk)
            out, g = grads(q, k, v)
            diffs = [out - ref_out] + [a - b for a, b in zip(g, ref_grads)]
            diff = max(float(d.abs().max()) for d in diffs)
            fwd = bench_ms(lambda: ram_fn(q, k, v), warmup=2, rep=5)
            fwdbwd = bench_ms(_fwd_bwd(ram_fn, (q, k, v)), warmup=2, rep=5)
            rows.append({"shape": shape, "scan": f"chunked C={chunk}", "fwd_ms": fwd, "fwdbwd_ms": fwdbwd,
                         "fwd_speedup": base["fwd"] / fwd, "fwdbwd_speedup": base["fwdbwd"] / fwdbwd,
                         "max_abs_diff": diff})
        print(table(rows[-1 - len(args.chunks):]), flush=True)
    use("recurrent", 8)
    print(table(rows))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scan_ab.json").write_text(json.dumps({**header(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
