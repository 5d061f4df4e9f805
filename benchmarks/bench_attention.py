"""P1: the RAM-Net mixer op (U=5, d_p=4, K=8, d_v = D) fwd+bwd against SDPA (flash backend) and, when fla is
installed, against fla's ``chunk_delta_rule`` (fwd+bwd) and ``chunk_gated_delta_rule`` (fwd only), bf16.
Also peak training memory against GDN's forward at the same shape, each counting its own inputs and nothing else
resident (``own_peak_mib``).

    python benchmarks/bench_attention.py [--shapes 4,4096,16,128 ...]

Each shape's row is merged into ``results/summary.json`` as soon as it is measured, so a run cut short by a
timeout keeps the shapes it finished.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, bench_ms, record, require_cuda, table  # noqa: E402

import ramnet.ops as R  # noqa: E402

SHAPES = ["1,8192,96,128", "2,16384,16,128", "4,2048,16,128", "4,4096,64,128", "8,1024,8,64", "4,4096,16,128"]
U, D_P, K = 5, 4, 8


def _fwd_bwd(fn, inputs):
    def run():
        out = fn(*inputs)
        out = out[0] if isinstance(out, tuple) else out
        out.backward(torch.ones_like(out))
    return run


def ram_inputs(B, T, H, D):
    mk = lambda d: torch.randn(B, T, H, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    return mk(U * D_P), mk(U * D_P), mk(D)


def ram_fn(q, k, v):
    return R.ram_attention(q, k, v, num_factors=U, top_k=K)[0]


def sdpa_fn(q, k, v):
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION):
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)


def fla_fns():
    try:
        from fla.ops.delta_rule import chunk_delta_rule
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    except Exception:  # noqa: BLE001 - fla is optional
        return None
    return chunk_delta_rule, chunk_gated_delta_rule


def own_peak_mib(make_inputs, run) -> float:
    """Peak MiB of ``run(*make_inputs())`` above what was allocated before: its own inputs (made inside) and
    outputs count, other contenders' tensors do not. (Until 2026-12-01 the peak was the whole
    ``max_memory_allocated``, which charged GDN's forward with the RAM and SDPA tensors still resident.)"""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    inputs = make_inputs()
    run(*inputs)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del inputs
    return peak / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=SHAPES, help="B,T,H,D")
    args = parser.parse_args()
    require_cuda(__file__)
    fla = fla_fns()
    rows = []
    for shape in args.shapes:
        B, T, H, D = map(int, shape.split(","))
        row = {"shape": shape}
        try:
            q, k, v = ram_inputs(B, T, H, D)
            row["ram_fwd_ms"] = bench_ms(lambda: ram_fn(q, k, v), warmup=2, rep=5)
            row["ram_fwdbwd_ms"] = bench_ms(_fwd_bwd(ram_fn, (q, k, v)), warmup=2, rep=5)
            row["ram_peak_MB"] = own_peak_mib(lambda: ram_inputs(B, T, H, D), lambda *x: _fwd_bwd(ram_fn, x)())
        except torch.OutOfMemoryError:
            row["ram_fwd_ms"] = row["ram_fwdbwd_ms"] = row["ram_peak_MB"] = float("nan")
        torch.cuda.empty_cache()
        qs, ks, vs = (torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        row["sdpa_fwdbwd_ms"] = bench_ms(_fwd_bwd(sdpa_fn, (qs, ks, vs)))
        if fla is not None:
            chunk_delta_rule, chunk_gdn = fla
            kn = F.normalize(ks.detach(), dim=-1).requires_grad_()
            beta = torch.rand(B, T, H, device="cuda", dtype=torch.bfloat16).requires_grad_()
            g = F.logsigmoid(torch.randn(B, T, H, device="cuda", dtype=torch.float32))
            dn = lambda: chunk_delta_rule(qs, kn, vs, beta)
            _fwd_bwd(lambda: dn(), ())()  # autotune before timing
            row["fla_deltanet_fwdbwd_ms"] = bench_ms(_fwd_bwd(lambda: dn(), ()))
            gdn = lambda: chunk_gdn(qs.detach(), kn.detach(), vs.detach(), g, beta.detach())
            gdn()
            row["fla_gdn_fwd_ms"] = bench_ms(gdn)
            gdn_inputs = lambda: tuple(t.detach().clone() for t in (qs, kn, vs, g, beta))
            row["fla_gdn_fwd_peak_MB"] = own_peak_mib(gdn_inputs, chunk_gdn)
        rows.append(row)
        print(table([row]), flush=True)
        record_row(row)
    print(table(rows))


def record_row(row: dict, stamp: bool = True) -> None:
    """Merge one measured shape into summary.json: its row and its ratios (to fla only where fla ran).
    ``stamp=False`` keeps the summary's device/date header (a row measured on another machine)."""
    shape = row["shape"]
    summary = RESULTS / "summary.json"
    if summary.exists():  # a shape measured again replaces its row (record() appends table rows)
        data = json.loads(summary.read_text())
        if any(r.get("shape") == shape for r in data.get("P1_rows", [])):
            data["P1_rows"] = [r for r in data["P1_rows"] if r.get("shape") != shape]
            summary.write_text(json.dumps(data, indent=2))
    updates = {"P1_fwdbwd_ratio_vs_sdpa": {shape: row["ram_fwdbwd_ms"] / row["sdpa_fwdbwd_ms"]}, "P1_rows": [row]}
    if row.get("fla_deltanet_fwdbwd_ms") is not None:
        updates["P1_fwdbwd_ratio_vs_fla_deltanet"] = {shape: row["ram_fwdbwd_ms"] / row["fla_deltanet_fwdbwd_ms"]}
        updates["P1_fwd_ratio_vs_chunk_gdn"] = {shape: row["ram_fwd_ms"] / row["fla_gdn_fwd_ms"]}
    record(updates, stamp=stamp)


if __name__ == "__main__":
    main()
