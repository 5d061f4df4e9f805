"""Pick num_warps for the address and fused decode kernels (H=8, d_k=20, d_v=128, K=8, M=1024): the
``num_warps`` knob of ``TritonAddress`` and ``FusedStep``, timed through their kernels (``address_triton``,
``ram_step_triton``) at each value, with each backend's ``merge`` (``--merge``).

    python benchmarks/tune_warps.py [--warps 1 2 4 8] [--merge topk]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_ms, require_cuda, table  # noqa: E402

import ramnet.ops as R  # noqa: E402
from ramnet.ops.address.triton import address_triton  # noqa: E402
from ramnet.ops.memory.triton_step import ram_step_triton  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warps", nargs="*", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--merge", choices=("topk", "rank"), default="topk", help="the beam merge of both kernels")
    args = parser.parse_args()
    require_cuda(__file__)
    rows = []
    for B in (1, 256, 1024):
        H, U, P, D, K = 8, 5, 4, 128, 8
        q = torch.randn(B, H, U * P, device="cuda", dtype=torch.bfloat16)
        k, v = torch.randn_like(q), torch.randn(B, H, D, device="cuda", dtype=torch.bfloat16)
        S, z = R.initial_state(B, H, 1024, D, device="cuda")
        pos, cape = torch.zeros(B, dtype=torch.long, device="cuda"), torch.ones(H, dtype=torch.bool, device="cuda")
        x = torch.randn(B * H * 2, U * P, device="cuda")
        for w in args.warps:
            address = lambda: address_triton(x, U, K, 1.0, merge=args.merge, num_warps=w)
            step = lambda: ram_step_triton(q, k, v, S, z, pos, cape, U, K, 1.0, 1.0, 1e-6, num_warps=w,
                                           merge=args.merge)
            rows.append({"batch": B, "num_warps": w, "address_us (2BH rows)": bench_ms(address) * 1e3,
                         "fused_step_us": bench_ms(step) * 1e3})
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
