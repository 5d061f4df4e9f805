"""P2: the decode step at batch 1/64/256/1024 with a resident state (the fused ``ramnet::ram_step_`` Triton kernel
alone, ``ram_step_triton``, and the whole ``ram_step`` call through the op), as achieved bandwidth over the bytes
it must move (as a fraction of a 1 GiB device-to-device copy timed in the same run, and of the old fixed 3.0 TB/s),
plus latency against fla's ``fused_recurrent_gated_delta_rule`` at equal d_model when fla is
installed.

The "kernel" columns time the fused kernel (replayed from a CUDA graph, so the launch's host cost is not counted;
the eager time is kept as a column), which computes both addresses as well as the PDMA write and read (a
separate write/read kernel, ``pdma_step_``, no longer exists); the bytes it must move are still those of the state
rows, the q/k/v reads being negligible.

    python benchmarks/bench_decode.py
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_ms, copy_bandwidth, record, require_cuda, table  # noqa: E402

import ramnet.ops as R  # noqa: E402
from ramnet.ops.memory.triton_step import ram_step_triton  # noqa: E402

PEAK_BW = 3.0e12  # the old fixed reference (about the H100's achievable HBM bandwidth), kept as a column
H, D, U, D_P, K = 8, 128, 5, 4, 8   # d_model = H * D = 1024, like fla's H=8, D=128 comparison
M = D_P**U


def must_move_bytes(B):
    # write set: K rows of S (d_v fp32) and z read + written; read set: K rows read (bf16 q/k/v are negligible)
    return B * H * K * (D + 1) * 4 * 3


def graphed_ms(fn):
    """Median replay time of ``fn`` captured in a CUDA graph (what a serving loop with CUDA graphs pays)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return bench_ms(graph.replay)


def fla_step_ms(B):
    try:
        from fla.ops.gated_delta_rule import fused_recurrent_gated_delta_rule
    except Exception:  # noqa: BLE001 - fla is optional
        return None
    q = torch.randn(B, 1, H, D, device="cuda", dtype=torch.bfloat16)
    k = torch.nn.functional.normalize(torch.randn_like(q), dim=-1)
    v = torch.randn_like(q)
    g = torch.randn(B, 1, H, device="cuda", dtype=torch.float32).sigmoid().log()
    beta = torch.rand(B, 1, H, device="cuda", dtype=torch.bfloat16)
    state = torch.randn(B, H, D, D, device="cuda", dtype=torch.float32)
    fn = lambda: fused_recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=state, output_final_state=True)
    fn()
    return bench_ms(fn), graphed_ms(fn)


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    require_cuda(__file__)
    copy_bw = copy_bandwidth()  # the card's achievable bandwidth, this run
    print(f"1 GiB device-to-device copy: {copy_bw / 1e12:.2f} TB/s")
    rows, bw, lat = [], {}, {}
    for B in (1, 64, 256, 1024):
        q = torch.randn(B, H, U * D_P, device="cuda", dtype=torch.bfloat16)
        k = torch.randn_like(q)
        v = torch.randn(B, H, D, device="cuda", dtype=torch.bfloat16)
        S, z = R.initial_state(B, H, M, D, device="cuda")
        position = torch.full((B,), 3, dtype=torch.long, device="cuda")
        cape = torch.zeros(H, dtype=torch.bool, device="cuda")  # ram_step's default: no CAPE head
        kernel = lambda: ram_step_triton(q, k, v, S, z, position, cape, U, K, 1.0, 1.0, R.DEFAULT_EPS)
        # the kernel's own time comes from a CUDA-graph replay: timed eagerly, the launch's host cost can exceed
        # the kernel (on the H200 lease of 2026-12-01 the eager time sat at 78-83 us from batch 64 to 1024)
        kernel_eager_ms, kernel_ms = bench_ms(kernel), graphed_ms(kernel)
        step = lambda: R.ram_step(q, k, v, S, z, position=3, num_factors=U, top_k=K)
        step_ms, step_graph_ms = bench_ms(step), graphed_ms(step)
        fla_ms, fla_graph_ms = fla_step_ms(B) or (float("nan"), float("nan"))
        achieved = must_move_bytes(B) / (kernel_ms * 1e-3)
        frac = achieved / copy_bw
        bw[f"batch={B}"] = frac
        lat[f"batch={B}"] = step_graph_ms / fla_graph_ms
        rows.append({"batch": B, "kernel_us": kernel_ms * 1e3, "kernel_us eager": kernel_eager_ms * 1e3,
                     "GB/s (kernel)": must_move_bytes(B) / kernel_ms / 1e6,
                     "frac of copy bw": frac, "frac of 3.0 TB/s": achieved / PEAK_BW,
                     "ram_step_us eager": step_ms * 1e3,
                     "ram_step_us graphed": step_graph_ms * 1e3, "fla_gdn_us eager": fla_ms * 1e3,
                     "fla_gdn_us graphed": fla_graph_ms * 1e3, "latency ratio (graphed)": step_graph_ms / fla_graph_ms})
    print(table(rows))
    record({"P2_decode_bw_fraction": bw, "P2_decode_latency_ratio_vs_gdn": lat, "P2_copy_bw_TBps": copy_bw / 1e12,
            "P2_rows": rows})


if __name__ == "__main__":
    main()
