"""P3: fused beam Top-K (Triton ``ramnet::address``) against dense ``torch.topk`` over the materialised product
softmax, at M = 1024 (U=5, d_p=4) and M = 65536 (U=8, d_p=4), K=8, 4096 rows; and the Triton beam at the P1
training shape's rows (4 x 4096 x 16 = 262144, bf16, U=5) against its byte floor: the bytes it must move (x in,
weights and indices out) over the bandwidth of a 1 GiB device-to-device copy timed in the same run
(``P3_address_over_floor``). The op runs under
``use_backend(address=TritonAddress(merge=...))``: the Triton beam, or an error naming why it cannot run.

    python benchmarks/bench_address.py [--merge topk|rank] [--rows-per-program N]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_ms, copy_bandwidth, record, require_cuda, table  # noqa: E402

from ramnet.ops import use_backend  # noqa: E402
from ramnet.ops.address.backends import TritonAddress  # noqa: E402
from ramnet.ops.address.naive import address_naive, factor_log_probs  # noqa: E402


def dense_topk(x, U, K, log: bool = False):
    """The baseline: materialise all M product log-probs per row, then ``torch.topk``."""
    logp = factor_log_probs(x, U, 1.0)
    joint = logp[:, 0]
    for u in range(1, U):
        joint = (joint.unsqueeze(-2) + logp[:, u].unsqueeze(-1)).flatten(-2)
    val, idx = torch.topk(joint, K, dim=-1)
    return idx, (val if log else val.exp())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--merge", choices=("topk", "rank"), default=TritonAddress().merge,
                        help="the Triton beam's merge (TritonAddress.merge)")
    parser.add_argument("--rows-per-program", type=int, default=TritonAddress().rows_per_program,
                        help="rows one forward program computes (TritonAddress.rows_per_program, 1-16)")
    args = parser.parse_args()
    try:
        backend = TritonAddress(merge=args.merge, rows_per_program=args.rows_per_program)
    except ValueError as error:
        parser.error(str(error))
    require_cuda(__file__)
    with use_backend(address=backend):
        run()


def run():
    torch.manual_seed(0)
    rows, speedup = [], {}
    for U, d_p in ((5, 4), (8, 4)):
        M, K, n = d_p**U, 8, 4096
        x = torch.randn(n, U * d_p, device="cuda")
        beam = bench_ms(lambda: torch.ops.ramnet.address(x, U, K, 1.0))
        beam_torch = bench_ms(lambda: address_naive(x, U, K, 1.0))
        dense = bench_ms(lambda: dense_topk(x, U, K))
        w_b, idx_b = torch.ops.ramnet.address(x, U, K, 1.0)
        idx_d, w_d = dense_topk(x, U, K)
        # the same K weights in the same order (to exp rounding); the indices may differ only where two products are equal
        # in fp32 (torch.topk orders ties arbitrarily, the beam puts the lower index first)
        torch.testing.assert_close(w_b, w_d, rtol=1e-5, atol=0.0)  # exp() in the kernel vs in torch
        row_differs = (idx_b != idx_d).any(-1)
        top = dense_topk(x, U, K + 1, log=True)[1]                           # the K+1 best log-probs
        # near ties: adjacent log-probs within a few fp32 ulps, whose order the kernel's exp/log rounding (not
        # torch's log_softmax) may flip; such a row picks a slot of the same weight to 1e-6
        row_near_tie = torch.isclose(top[:, 1:], top[:, :-1], rtol=4e-7, atol=1e-7).any(-1)
        differ, ties = int(row_differs.sum()), int(row_near_tie.sum())
        bad = int((row_differs & ~row_near_tie).sum())
        assert bad == 0, f"beam and dense disagree in {bad} rows without a near tie ({differ} rows differ in all)"
        speedup[M] = dense / beam
        rows.append({"M": M, "rows": n, "rows_with_tie_order_diffs": differ, "rows_with_near_ties": ties, "triton_beam_ms": beam,
                     "torch_beam_ms": beam_torch, "dense_topk_ms": dense, "speedup_vs_dense": dense / beam})
    print(table(rows))
    floor = address_floor()
    print(table([floor]))
    record({"P3_beam_speedup_vs_dense_M65536": speedup[65536], "P3_beam_speedup_vs_dense_M1024": speedup[1024],
            "P3_address_over_floor": floor["over_floor"], "P3_floor_row": floor, "P3_rows": rows})


def address_floor(n: int = 4 * 4096 * 16, U: int = 5, d_p: int = 4, K: int = 8) -> dict:
    """The forward address kernel at ``n`` bf16 rows against the time its bytes take at the copy bandwidth."""
    x = torch.randn(n, U * d_p, device="cuda", dtype=torch.bfloat16)
    w, idx = torch.ops.ramnet.address(x, U, K, 1.0)
    moved = sum(t.numel() * t.element_size() for t in (x, w, idx))
    ms = bench_ms(lambda: torch.ops.ramnet.address(x, U, K, 1.0))
    bw = copy_bandwidth()
    floor_ms = moved / bw * 1e3
    return {"rows": n, "MB_moved": moved / 1e6, "kernel_us": ms * 1e3, "copy_TBps": bw / 1e12,
            "floor_us": floor_ms * 1e3, "over_floor": ms / floor_ms}


if __name__ == "__main__":
    main()
