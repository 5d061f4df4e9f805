"""Registers and spills of the address kernels and the fused decode kernel as compiled for an H100 (sm_90a),
without a GPU (``sass_stats.kernel_stats``), for both beam merges. Bf16 activations, int64 slots.

    python benchmarks/sass_address_step.py [--u 5] [--dp 4] [--k 8] [--dv 128]
"""
from __future__ import annotations

import argparse

import triton

from sass_stats import kernel_stats  # noqa: E402  (sets up a real compile: TRITON_INTERPRET is dropped there)

from ramnet.ops.address import triton as address_fwd, triton_bwd as address_bwd  # noqa: E402
from ramnet.ops.address.backends import TritonAddress  # noqa: E402
from ramnet.ops.memory import triton_step  # noqa: E402
from ramnet.ops.memory.triton_step import fused_num_warps  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--u", type=int, default=5)
    parser.add_argument("--dp", type=int, default=4)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--dv", type=int, default=128)
    parser.add_argument("--batch-heads", type=int, default=16, help="B * H of the decode grid (sets its warps)")
    args = parser.parse_args()
    blocks = {"U": args.u, "P": args.dp, "BLOCK_U": triton.next_power_of_2(args.u),
              "BLOCK_P": triton.next_power_of_2(args.dp), "BLOCK_K": triton.next_power_of_2(args.k)}
    bf16 = lambda *names: {name: "*bf16" for name in names}
    warps = TritonAddress().num_warps
    for merge in ("topk", "rank"):
        print(f"address-fwd {merge}", kernel_stats(address_fwd._address_fwd_kernel, {**blocks, "TOPK_MERGE": merge == "topk", "ROWS": 1},
                                                   warps, {**bf16("x_ptr", "w_ptr"), "idx_ptr": "*i64"}))
    print("address-bwd", kernel_stats(address_bwd._address_bwd_kernel, blocks, warps,
                                      {**bf16("gw_ptr", "x_ptr", "w_ptr", "dx_ptr"), "idx_ptr": "*i64"}))
    for merge in ("topk", "rank"):
        constexprs = {**blocks, "BLOCK_D": triton.next_power_of_2(args.dv), "TOPK_MERGE": merge == "topk"}
        print(f"step-fused {merge}", kernel_stats(triton_step._ram_step_kernel, constexprs,
                                                  fused_num_warps(args.batch_heads),
                                                  {**bf16("q_ptr", "k_ptr", "v_ptr", "o_ptr"), "pos_ptr": "*i64",
                                                   "cape_ptr": "*i8"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
