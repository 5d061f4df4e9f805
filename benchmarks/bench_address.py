"""P3: fused beam Top-K (Triton ``ramnet::address``) against dense ``torch.topk`` over the materialised product
softmax, at M = 1024 (U=5, d_p=4) and M = 65536 (U=8, d_p=4), K=8, 4096 rows.

    python benchmarks/bench_address.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_ms, record, table  # noqa: E402

from ramnet.ops.address.naive import address_naive, factor_log_probs  # noqa: E402


def dense_topk(x, U, K):
    """The baseline: materialise all M product log-probs per row, then ``torch.topk``."""
    logp = factor_log_probs(x, U, 1.0)
    joint = logp[:, 0]
    for u in range(1, U):
        joint = (joint.unsqueeze(-2) + logp[:, u].unsqueeze(-1)).flatten(-2)
    val, idx = torch.topk(joint, K, dim=-1)
    return idx, val.exp()


def main():
    rows, speedup = [], {}
    for U, d_p in ((5, 4), (8, 4)):
        M, K, n = d_p**U, 8, 4096
        x = torch.randn(n, U * d_p, device="cuda")
        beam = bench_ms(lambda: torch.ops.ramnet.address(x, U, K, 1.0))
        beam_torch = bench_ms(lambda: address_naive(x, U, K, 1.0))
        dense = bench_ms(lambda: dense_topk(x, U, K))
        idx_b = torch.ops.ramnet.address(x, U, K, 1.0)[1]
        assert torch.equal(idx_b, dense_topk(x, U, K)[0]), "beam and dense disagree"
        speedup[M] = dense / beam
        rows.append({"M": M, "rows": n, "triton_beam_ms": beam, "torch_beam_ms": beam_torch, "dense_topk_ms": dense,
                     "speedup_vs_dense": dense / beam})
    print(table(rows))
    record({"P3_beam_speedup_vs_dense_M65536": speedup[65536], "P3_beam_speedup_vs_dense_M1024": speedup[1024],
            "P3_rows": rows})


if __name__ == "__main__":
    main()
