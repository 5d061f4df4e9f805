"""CPU-side costs that need no GPU: the scan dispatch layer per op call (``ScanArgs``, ``ScanProblem``,
``SCAN.choose``), the sort plan's dispatch at a tiny shape, and the gradient error of bf16 saved rows against the
float64 reference (the segment backends run under the Triton interpreter).

    TRITON_INTERPRET=1 python benchmarks/cpu_host_costs.py
"""
from __future__ import annotations

import os
import sys
import time
import timeit
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel module is imported
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1]))


def median_us(fn, reps: int = 2000) -> float:
    for _ in range(50):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[reps // 2] * 1e6


def dispatch_us() -> float:
    from ramnet.ops.memory.backends import SCAN, ScanArgs, ScanProblem

    B, T, H, K, D, M = 8, 1024, 8, 8, 64, 1024
    v, idx, w = torch.randn(B, T, H, D), torch.zeros(B, T, H, K, dtype=torch.long), torch.rand(B, T, H, K)
    S0, z0 = torch.zeros(B, H, M, D), torch.zeros(B, H, M)
    step = lambda: SCAN.choose(ScanProblem.of(ScanArgs(v, idx, w, idx, w, S0, z0, None, 1.0, 1e-6, 0.0)))
    return timeit.timeit(step, number=20000) / 20000 * 1e6


def plan_us() -> float:
    from ramnet.ops.memory.triton_segment import segment_plan

    idx = torch.randint(0, 16, (1, 8, 2, 2))
    return median_us(lambda: segment_plan(idx, idx, 16, 1))


def bf16_row_errors() -> dict:
    from tests.ops.memory_cases import scan_event_inputs
    from ramnet.ops.memory.backends import ScanArgs, ScanProblem, SegmentScan
    from ramnet.ops.memory.naive import pdma_parallel_backward

    B, T, H, U, d_p, d_v, K, gamma = 1, 48, 2, 3, 4, 32, 4, 1.0
    v, widx, ww, ridx, rw, S0, z0, gen = scan_event_inputs(B, T, H, U, d_p, d_v, K, seed=1)
    go, gS, gz = torch.randn(v.shape, generator=gen), torch.zeros(S0.shape), torch.zeros(z0.shape)
    d = lambda t: t.double()
    ref = pdma_parallel_backward(d(go), d(gS), d(gz), d(v), widx, d(ww), ridx, d(rw), d(S0), d(z0), gamma, 1e-6, 1e-3)
    out = {}
    for derive in (False, True):
        for rows in ("fp32", "bf16"):
            args = ScanArgs(v, widx, ww, ridx, rw, S0, z0, None, gamma, 1e-6, 1e-3)
            backend = SegmentScan(saved_rows=rows, derive_read_rows=derive)
            got = backend.backward(ScanProblem.of(args), args, go, gS, gz)
            name = f"{rows} saved rows, {'derived' if derive else 'saved'} read rows"
            out[name] = {n: float((g.double() - r).norm() / r.norm())
                         for n, g, r in zip(["dv", "dww", "drw", "dS0", "dz0"], got, ref)}
    return out


def main() -> None:
    torch.set_num_threads(1)
    print(f"scan dispatch per op call: {dispatch_us():.1f} us")
    print(f"segment_plan at B=1, T=8, H=2, K=2, M=16: {plan_us():.1f} us (median of 2000)")
    for rows, errors in bf16_row_errors().items():
        print(f"{rows}: relative gradient error vs float64: "
              + ", ".join(f"{n} {e:.2e}" for n, e in errors.items()))


if __name__ == "__main__":
    main()
