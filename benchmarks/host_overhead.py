"""Host cost of the training op, stage by stage: the median time to enqueue each piece on an idle GPU.

At small shapes the op is bound by the host (at 8,1024,8,64 its kernels take 1.5 ms of a 3 ms fwd+bwd), so this
says which Python and launch costs to cut. Each row is measured alone: synchronize, call, stop the clock (no
synchronize inside), median of ``--reps``.

    python benchmarks/host_overhead.py [--shape 8,1024,8,64] [--reps 200] [--pin CPU]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import require_cuda, table  # noqa: E402

U, D_P, K = 5, 4, 8


def host_us(fn, reps: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e6)
    torch.cuda.synchronize()
    return sorted(times)[reps // 2]


def stages(B: int, T: int, H: int, D: int) -> dict:
    """name -> a zero-argument callable; each enqueues one piece of the op."""
    import ramnet.ops as R
    from ramnet.ops.address.backends import ADDRESS, AddressProblem
    from ramnet.ops.address.op import address_op
    from ramnet.ops.memory.backends import SCAN, ScanArgs, ScanProblem
    from ramnet.ops.memory.op import pdma_scan_op
    from ramnet.ops.memory.triton_segment import segment_plan

    mk = lambda d: torch.randn(B, T, H, d, device="cuda", dtype=torch.bfloat16).requires_grad_()
    q, k, v = mk(U * D_P), mk(U * D_P), mk(D)
    M = D_P**U
    with torch.no_grad():
        w, idx = address_op(k, U, K, 1.0)
    S0, z0 = R.initial_state(B, H, M, D, device="cuda")
    args = ScanArgs(v.detach(), idx, w, idx, w, S0, z0, None, 1.0, 1e-6, 0.0)
    problem = ScanProblem.of(args)
    segment = SCAN.get("segment")
    a_problem = AddressProblem.of(k, U, K)
    tiny = torch.zeros(16, device="cuda")

    def fwd():
        return R.ram_attention(q, k, v, num_factors=U, top_k=K)[0]

    def fwd_bwd():
        out = fwd()
        out.backward(torch.ones_like(out))

    ones = torch.ones(B, T, H, D, device="cuda", dtype=torch.bfloat16)
    pending = {}

    def bwd_only():  # the forward is enqueued (and finished) before the clock starts: see measure()
        pending.pop("out").backward(ones)

    return {
        "aten add_ (one launch, for scale)": lambda: tiny.add_(1),
        "empty_state (zeros + full)": lambda: R.initial_state(B, H, M, D, device="cuda"),
        "address kernel, direct (Triton launch)": lambda: ADDRESS.choose(a_problem).forward(a_problem, k.detach(), 1.0),
        "ramnet::address, no grad": lambda: _no_grad(address_op, k, U, K, 1.0),
        "ramnet::address, with autograd": lambda: address_op(k, U, K, 1.0),
        "segment_plan (2 sorts, 2 searchsorted)": lambda: segment_plan(idx, idx, M, B),
        "segment forward, direct (plan + walk)": lambda: segment.forward(problem, args),
        "ramnet::pdma_scan, no grad": lambda: _no_grad(pdma_scan_op, v, idx, w, idx, w, S0, z0, None, 1.0, 1e-6, 0.0),
        "ram_attention forward (autograd on)": fwd,
        "ram_attention backward only": (bwd_only, lambda: pending.__setitem__("out", fwd())),
        "ram_attention fwd+bwd": fwd_bwd,
    }


def _no_grad(fn, *args):
    with torch.no_grad():
        return fn(*args)


def measure(fn, reps: int) -> float:
    if not isinstance(fn, tuple):
        return host_us(fn, reps)
    run, prepare = fn  # a piece that needs another enqueued first (untimed)
    times = []
    for _ in range(reps + 5):
        prepare()
        torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e6)
    torch.cuda.synchronize()
    times = sorted(times[5:])
    return times[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="8,1024,8,64", help="B,T,H,D (default %(default)s)")
    parser.add_argument("--reps", type=int, default=200, help="calls per stage (median; default 200)")
    parser.add_argument("--pin", type=int, help="pin the process to this CPU (steadier host timings)")
    args = parser.parse_args()
    if args.reps < 1:
        parser.error("--reps must be >= 1")
    require_cuda(__file__)
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    B, T, H, D = map(int, args.shape.split(","))
    rows = [{"stage": name, "host_us": measure(fn, args.reps)} for name, fn in stages(B, T, H, D).items()]
    print(f"### host enqueue time, {args.shape} (median of {args.reps}, idle GPU)\n")
    print(table(rows))


if __name__ == "__main__":
    main()
