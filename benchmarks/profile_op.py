"""Where the training op's time goes: every CUDA kernel of one fwd+bwd of ``ram_attention`` (bf16, U=5, d_p=4, K=8),
from ``torch.profiler`` with CUDA activities (no Nsight needed).

    python benchmarks/profile_op.py [--shapes 4,4096,16,128 ...] [--iters 5] [--scan segment] [--out prof.json]

Per shape it prints two tables: each kernel (time per fwd+bwd, launches, share) and the kernels grouped by kind
(the scan walks, address kernels, sorts, searchsorted, elementwise, memory). Kernel times are the GPU's own
(start to end of each kernel), summed and divided by ``--iters``; host gaps between launches are not counted,
so the "GPU busy" total can be below the wall time that ``bench_attention.py`` reports.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import backend_variant, header, require_cuda, table  # noqa: E402

SHAPES = ["4,4096,16,128", "1,8192,96,128", "8,1024,8,64"]
U, D_P, K = 5, 4, 8
# kernel-name fragments -> group (first match wins; names are lower-cased)
GROUPS = [("_segment_fwd", "scan walk fwd"), ("_write_rows", "scan write rows"), ("_segment_bwd", "scan walk bwd"), ("_read_out", "scan read-out"),
          ("_scan_", "scan recurrent"), ("_address_fwd", "address fwd"), ("_address_bwd", "address bwd"),
          ("radix", "sort"), ("sort", "sort"), ("searchsorted", "searchsorted"), ("memset", "memset"),
          ("memcpy", "memcpy"), ("fill", "fill"), ("reduce", "reduction"), ("elementwise", "elementwise"),
          ("triton_", "triton (other)")]


def group_of(name: str) -> str:
    low = name.lower()
    return next((group for fragment, group in GROUPS if fragment in low), "other")


def short(name: str, width: int = 70) -> str:
    return name if len(name) <= width else name[: width - 3] + "..."


def profile_shape(shape: str, iters: int, scan: str | None) -> dict:
    import ramnet.ops as R
    from torch.profiler import ProfilerActivity, profile

    B, T, H, D = map(int, shape.split(","))
    gen = torch.Generator(device="cuda").manual_seed(0)
    mk = lambda d: torch.randn(B, T, H, d, device="cuda", dtype=torch.bfloat16, generator=gen).requires_grad_()
    q, k, v = mk(U * D_P), mk(U * D_P), mk(D)
    choices = {} if scan is None else {"scan": backend_variant("scan", scan)}

    def step():
        if choices:
            with R.use_backend(**choices):
                out = R.ram_attention(q, k, v, num_factors=U, top_k=K)[0]
        else:  # no use_backend: also profiles trees that predate the backend tables (benchmarks/ab_trees.py)
            out = R.ram_attention(q, k, v, num_factors=U, top_k=K)[0]
        out.backward(torch.ones_like(out))

    for _ in range(3):  # compile and autotune outside the profile
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    peak_gib = torch.cuda.max_memory_allocated() / 2**30  # one fwd+bwd, inputs and their grads included
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        start.record()
        for _ in range(iters):
            step()
        end.record()
        torch.cuda.synchronize()
    wall_us = start.elapsed_time(end) * 1e3 / iters
    per_kernel = defaultdict(lambda: [0.0, 0])
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        entry = per_kernel[event.name]
        entry[0] += event.time_range.elapsed_us()
        entry[1] += 1
    busy = sum(us for us, _ in per_kernel.values()) / iters
    kernels = sorted(({"kernel": short(name), "group": group_of(name), "us": us / iters, "launches": n / iters,
                       "share": us / iters / busy} for name, (us, n) in per_kernel.items()), key=lambda r: -r["us"])
    groups = defaultdict(lambda: [0.0, 0.0])
    for row in kernels:
        groups[row["group"]][0] += row["us"]
        groups[row["group"]][1] += row["launches"]
    grouped = sorted(({"group": g, "us": us, "launches": n, "share": us / busy} for g, (us, n) in groups.items()),
                     key=lambda r: -r["us"])
    torch.cuda.empty_cache()
    return {"shape": shape, "wall_us": wall_us, "gpu_busy_us": busy, "peak_GiB": peak_gib, "kernels": kernels,
            "groups": grouped}


def host_profile(shape: str, scan: str | None, calls: int = 20, rows: int = 25) -> str:
    """cProfile of ``calls`` fwd+bwd (the Python side of the launches), the top ``rows`` functions by own time."""
    import cProfile
    import io
    import pstats

    import ramnet.ops as R

    B, T, H, D = map(int, shape.split(","))
    mk = lambda d: torch.randn(B, T, H, d, device="cuda", dtype=torch.bfloat16).requires_grad_()
    q, k, v = mk(U * D_P), mk(U * D_P), mk(D)
    choices = {} if scan is None else {"scan": backend_variant("scan", scan)}

    def step():
        with R.use_backend(**choices):
            out = R.ram_attention(q, k, v, num_factors=U, top_k=K)[0]
        out.backward(torch.ones_like(out))

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        step()
    torch.cuda.synchronize()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(rows)
    return f"\n### host side, {shape}, {calls} fwd+bwd (cProfile; the backward runs on autograd's thread)\n" + \
        text.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=SHAPES, help="B,T,H,D (default: %(default)s)")
    parser.add_argument("--iters", type=int, default=5, help="profiled fwd+bwd per shape (default 5)")
    parser.add_argument("--scan", help="force a scan backend, e.g. segment or 'segment:num_warps=2'")
    parser.add_argument("--out", type=Path, help="also write every table as JSON here")
    parser.add_argument("--host", action="store_true",
                        help="also print the host side: cProfile of 20 fwd+bwd at the first shape, by own time")
    args = parser.parse_args()
    if args.iters < 1:
        parser.error("--iters must be >= 1")
    require_cuda(__file__)
    results = []
    for shape in args.shapes:
        result = profile_shape(shape, args.iters, args.scan)
        results.append(result)
        print(f"\n### {shape}: wall {result['wall_us'] / 1e3:.3f} ms per fwd+bwd, GPU busy "
              f"{result['gpu_busy_us'] / 1e3:.3f} ms, peak {result['peak_GiB']:.2f} GiB\n")
        print(table(result["groups"]))
        print()
        print(table(result["kernels"][:20]))
    if args.host:
        print(host_profile(args.shapes[0], args.scan))
    if args.out:
        # the backend with every knob resolved: a name like "segment" means other knobs as the defaults change
        resolved = None if args.scan is None else repr(backend_variant("scan", args.scan))
        args.out.write_text(json.dumps({**header(), "scan": args.scan, "scan_resolved": resolved,
                                        "iters": args.iters, "results": results}, indent=2))


if __name__ == "__main__":
    main()
