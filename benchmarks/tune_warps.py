"""Pick num_warps for the address and fused decode kernels (H=8, d_k=20, d_v=128, K=8, M=1024).

    python benchmarks/tune_warps.py
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_ms, table  # noqa: E402

import ramnet.ops as R  # noqa: E402
from ramnet.ops.address.triton import address_triton  # noqa: E402
from ramnet.ops.memory.triton_step import ram_step_triton  # noqa: E402

rows = []
for B in (1, 256, 1024):
    H, U, P, D, K = 8, 5, 4, 128, 8
    q = torch.randn(B, H, U * P, device="cuda", dtype=torch.bfloat16)
    k, v = torch.randn_like(q), torch.randn(B, H, D, device="cuda", dtype=torch.bfloat16)
    S, z = R.initial_state(B, H, 1024, D, device="cuda")
    pos, cape = torch.zeros(B, dtype=torch.long, device="cuda"), torch.ones(H, dtype=torch.bool, device="cuda")
    x = torch.randn(B * H * 2, U * P, device="cuda")
    for w in (1, 2, 4, 8):
        rows.append({"batch": B, "num_warps": w,
                     "address_us (2BH rows)": bench_ms(lambda: address_triton(x, U, K, 1.0, num_warps=w)) * 1e3,
                     "fused_step_us": bench_ms(lambda: ram_step_triton(q, k, v, S, z, pos, cape, U, K, 1.0, 1.0, 1e-6,
                                                                       num_warps=w)) * 1e3})
print(table(rows))
