"""The PDMA scan kernels alone (no address), forward and backward (with its forward recompute), over launch
settings: warps per program of the fused-recurrent and segment-walk kernels, and the chunked kernels at small chunks (the only sizes ptxas compiles without heavy
spills: see ``benchmarks/sass_stats.py``). Every variant is checked against the default's outputs.

    python benchmarks/bench_scan_tuning.py [--shapes 4,4096,16,128 8,1024,8,64] [--warps 1 2 4 8]

Prints a table and writes ``results/scan_tuning.json``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_ms, save_rows, table  # noqa: E402

from ramnet.ops.memory import triton_chunked, triton_chunked_bwd, triton_scan, triton_segment  # noqa: E402

M, K, GAMMA, EPS, PROXY_EPS = 1024, 8, 1.0, 1e-6, 1e-3


def scan_inputs(B, T, H, D, seed=0):
    """Random distinct slots per token (the address's output format), weights in (0, 1), bf16 values."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    rows = B * T * H

    def slots():
        out = torch.empty(rows, K, dtype=torch.int64, device="cuda")
        for i in range(0, rows, 65536):  # topk of random keys: distinct slots, in chunks to bound memory
            n = min(65536, rows - i)
            out[i:i + n] = torch.rand(n, M, generator=g, device="cuda").topk(K, dim=-1).indices
        return out.view(B, T, H, K)

    weights = lambda: (torch.rand(B, T, H, K, generator=g, device="cuda") * 0.25).to(torch.bfloat16)
    v = torch.randn(B, T, H, D, generator=g, device="cuda").to(torch.bfloat16)
    S0 = torch.zeros(B, H, M, D, device="cuda")
    z0 = torch.zeros(B, H, M, device="cuda")
    go = torch.randn(B, T, H, D, generator=g, device="cuda").to(torch.bfloat16)
    return v, slots(), weights(), slots(), weights(), S0, z0, go


SEGMENT_DEFAULTS = (triton_segment.ATOMIC_READ, triton_segment.INT32_KEYS_BELOW)


def recurrent(inputs, fwd_warps, bwd_warps, scan="recurrent", first_version=False):
    """The fused-recurrent kernels (or the segment walk: ``scan="segment"``) at the given warps per program;
    ``first_version``: the segment walk as first built (read rows stored then summed, int64 sort keys)."""
    v, wi, ww, ri, rw, S0, z0, go = inputs

    def setup():
        triton_scan.FWD_WARPS, triton_scan.BWD_WARPS = fwd_warps, bwd_warps
        triton_segment.WARPS = fwd_warps
        triton_segment.ATOMIC_READ, triton_segment.INT32_KEYS_BELOW = (False, 0) if first_version \
            else SEGMENT_DEFAULTS
        triton_scan.SCAN_FORWARD = scan
    def fwd():
        setup()
        return triton_scan._launch_fwd(v, wi, ww, ri, rw, S0, z0, GAMMA, EPS, False)

    def bwd():
        setup()
        return triton_scan.pdma_scan_bwd_triton(go, torch.zeros_like(S0), torch.zeros_like(z0), v, wi, ww, ri, rw,
                                                S0, z0, GAMMA, EPS, PROXY_EPS)
    return fwd, bwd


def chunked(inputs, chunk, warps):
    v, wi, ww, ri, rw, S0, z0, go = inputs
    fwd = lambda: triton_chunked.launch_chunked(v, wi, ww, ri, rw, S0, z0, GAMMA, EPS, False, chunk, warps)

    def bwd():
        _, _, _, (sw, sr) = triton_chunked.launch_chunked(v, wi, ww, ri, rw, S0, z0, GAMMA, EPS, True, chunk, warps)
        gS, gz = torch.zeros_like(S0), torch.zeros_like(z0)
        d_v, d_ww, d_rw = torch.empty_like(v), torch.empty_like(ww), torch.empty_like(rw)
        triton_chunked_bwd.launch_chunked_bwd(go, v, wi, ww, ri, rw, sw, sr, gS, gz, d_v, d_ww, d_rw, GAMMA, EPS,
                                              PROXY_EPS, chunk, warps)
        return d_v, d_ww, d_rw, gS, gz
    return fwd, bwd


def max_diff(a, b):
    return max(float((x.float() - y.float()).abs().max()) for x, y in zip(a, b))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=["4,4096,16,128", "8,1024,8,64"])
    parser.add_argument("--warps", nargs="*", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--chunks", nargs="*", type=int, default=[2])
    parser.add_argument("--segment-warps", nargs="*", type=int, default=[1, 2, 4])
    args = parser.parse_args()
    rows = []
    for shape in args.shapes:
        B, T, H, D = map(int, shape.split(","))
        inputs = scan_inputs(B, T, H, D)
        ref_fwd, ref_bwd = recurrent(inputs, 4, 4)  # the default launch: every variant's outputs are compared to it
        ref_o, ref_g = ref_fwd()[:3], ref_bwd()
        variants = [(f"recurrent warps={w}", recurrent(inputs, w, w)) for w in args.warps]
        variants += [(f"segment warps={w}", recurrent(inputs, w, 4, "segment")) for w in args.segment_warps]
        variants += [("segment first version (rows, int64 keys)", recurrent(inputs, 1, 4, "segment", True))]
        variants += [(f"chunked C={c} warps={w}", chunked(inputs, c, w)) for c in args.chunks for w in (4, 8)]
        for name, (fwd, bwd) in variants:
            try:
                diff = max(max_diff(fwd()[:3], ref_o), max_diff(bwd(), ref_g))
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
        triton_scan.FWD_WARPS = triton_scan.BWD_WARPS = 4
        triton_segment.WARPS = 1
        triton_segment.ATOMIC_READ, triton_segment.INT32_KEYS_BELOW = SEGMENT_DEFAULTS
        triton_scan.SCAN_FORWARD = "recurrent"
    print(table(rows))
    save_rows("scan_tuning.json", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
