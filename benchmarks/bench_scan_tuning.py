"""The PDMA scan kernels alone (no address), forward and backward (with its forward recompute), over launch
settings: the knobs of the ``recurrent`` and ``segment`` scan backends (warps per program; the segment walk's
atomic read-out and int32 sort keys), each variant a backend object called directly
(``backend.forward(problem, args)``, ``backend.backward(...)``). Every variant is checked against the outputs of
the default ``RecurrentScan()``.

    python benchmarks/bench_scan_tuning.py [--shapes 4,4096,16,128 8,1024,8,64] [--warps 1 2 4 8]
                                           [--segment-warps 1 2 4]

Prints a table and writes ``results/scan_tuning.json``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_ms, require_cuda, save_rows, table  # noqa: E402

from ramnet.ops.memory.backends import RecurrentScan, ScanArgs, ScanProblem, SegmentScan  # noqa: E402

M, K, GAMMA, EPS, PROXY_EPS = 1024, 8, 1.0, 1e-6, 1e-3


def scan_inputs(B, T, H, D, seed=0, device="cuda"):
    """``(ScanArgs, grad_o)``: random distinct slots per token (the address's output format), weights in
    (0, 0.25), bf16 values, a zero initial state."""
    g = torch.Generator(device=device).manual_seed(seed)
    rows = B * T * H

    def slots():
        out = torch.empty(rows, K, dtype=torch.int64, device=device)
        for i in range(0, rows, 65536):  # topk of random keys: distinct slots, in chunks to bound memory
            n = min(65536, rows - i)
            out[i:i + n] = torch.rand(n, M, generator=g, device=device).topk(K, dim=-1).indices
        return out.view(B, T, H, K)

    weights = lambda: (torch.rand(B, T, H, K, generator=g, device=device) * 0.25).to(torch.bfloat16)
    v = torch.randn(B, T, H, D, generator=g, device=device).to(torch.bfloat16)
    S0 = torch.zeros(B, H, M, D, device=device)
    z0 = torch.zeros(B, H, M, device=device)
    go = torch.randn(B, T, H, D, generator=g, device=device).to(torch.bfloat16)
    args = ScanArgs(v, slots(), weights(), slots(), weights(), S0, z0, None, GAMMA, EPS, PROXY_EPS)
    return args, go


def runners(backend, args: ScanArgs, go):
    """``(fwd, bwd)`` closures running ``backend`` (a scan backend object) on these inputs; the backward gets
    zero final-state gradients."""
    problem = ScanProblem.of(args)
    why = backend.supports(problem)
    if why is not None:
        raise ValueError(f"{backend} cannot run this input: {why}")
    gS, gz = torch.zeros_like(args.S0), torch.zeros_like(args.z0)
    return (lambda: backend.forward(problem, args)), (lambda: backend.backward(problem, args, go, gS, gz))


def max_diff(a, b):
    return max(float((x.float() - y.float()).abs().max()) for x, y in zip(a, b))


def variants(args) -> list[tuple[str, object]]:
    out = [(f"recurrent warps={w}", RecurrentScan(fwd_warps=w, bwd_warps=w)) for w in args.warps]
    out += [(f"segment warps={w}", SegmentScan(num_warps=w)) for w in args.segment_warps]
    out += [("segment rows, int64 keys (atomic_read=False, int32_keys_below=0)",
             SegmentScan(num_warps=1, atomic_read=False, int32_keys_below=0))]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=["4,4096,16,128", "8,1024,8,64"])
    parser.add_argument("--warps", nargs="*", type=int, default=[1, 2, 4, 8], help="RecurrentScan fwd/bwd warps")
    parser.add_argument("--segment-warps", nargs="*", type=int, default=[1, 2, 4], help="SegmentScan num_warps")
    args = parser.parse_args()
    require_cuda(__file__)
    rows = []
    for shape in args.shapes:
        B, T, H, D = map(int, shape.split(","))
        inputs, go = scan_inputs(B, T, H, D)
        ref_fwd, ref_bwd = runners(RecurrentScan(), inputs, go)  # the default launch: every variant is compared to it
        ref_o, ref_g = ref_fwd(), ref_bwd()
        for name, backend in variants(args):
            try:
                fwd, bwd = runners(backend, inputs, go)
                diff = max(max_diff(fwd(), ref_o), max_diff(bwd(), ref_g))
                fwd_ms, bwd_ms = bench_ms(fwd, warmup=2, rep=10), bench_ms(bwd, warmup=2, rep=10)
            except Exception as err:  # noqa: BLE001 - a variant that fails to compile is a row, not a stop
                rows.append({"shape": shape, "variant": name, "error": repr(err)[:200]})
                continue
            rows.append({"shape": shape, "variant": name, "fwd_ms": fwd_ms, "bwd_ms": bwd_ms, "max_abs_diff": diff})
            print(table(rows[-1:]), flush=True)
        base = next((r for r in rows if r["shape"] == shape and r["variant"] == "recurrent warps=4"), None)
        for r in rows:
            if base and r["shape"] == shape and "fwd_ms" in r:  # speedups against the default launch
                r["fwd_speedup"], r["bwd_speedup"] = base["fwd_ms"] / r["fwd_ms"], base["bwd_ms"] / r["bwd_ms"]
    print(table(rows))
    save_rows("scan_tuning.json", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
