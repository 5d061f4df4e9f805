"""AOTInductor against eager and torch.compile, prefill and decode, with the max abs error of each against eager.

    python3 benchmarks/bench_aoti.py [--device cuda|cpu] [--preset NAME] [--batch B] [--prompt-len T]

Prints a table and merges ``AOTI_*`` keys into ``results/summary.json`` (CUDA) or ``results/aoti_cpu.json``.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import bench_ms, cpu_median_ms, header, record, require_cuda, save_rows, table


def median_ms(fn, device: str, reps: int = 20) -> float:
    return bench_ms(fn) if device == "cuda" else cpu_median_ms(fn, reps)


def main() -> int:
    from ramnet import RamNetConfig, RamNetForCausalLM
    from ramnet.export.aoti import to_aoti
    from ramnet.export.onnx import DecodeGraph, PrefillGraph
    from ramnet.runtime.aoti import load

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=256)
    args = parser.parse_args()
    dev = args.device
    if dev == "cuda":
        require_cuda(__file__)
    torch.manual_seed(0)
    model = RamNetForCausalLM(RamNetConfig.from_name(args.preset)).to(dev).eval()
    work = Path(tempfile.mkdtemp(prefix="ramnet-aoti-"))
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.prompt_len), device=dev)
    prefill, decode = PrefillGraph(model), DecodeGraph(model)
    rows, summary = [], {}
    with torch.no_grad():
        ref = prefill(ids)
        flat = list(ref[1:])
        tok, pos = ids[:, -1], torch.full((args.batch,), args.prompt_len, device=dev, dtype=torch.long)
        cases = {"prefill": (prefill, (ids,)), "decode": (decode, (tok, pos, *flat))}
        for graph, (module, inputs) in cases.items():
            t0 = time.perf_counter()
            runner = load(to_aoti(model, work / f"{graph}.pt2", graph=graph, device=dev))
            build_s = time.perf_counter() - t0
            compiled = torch.compile(module, fullgraph=True, dynamic=False)
            eager_out = module(*inputs)
            errs = {name: max(float((a - b).abs().max()) for a, b in zip(fn(*inputs), eager_out))
                    for name, fn in (("aoti", runner), ("compiled", compiled))}
            ms = {name: median_ms(lambda fn=fn: fn(*inputs), dev)
                  for name, fn in (("eager", module), ("compiled", compiled), ("aoti", runner))}
            rows.append({"graph": graph, "eager_ms": ms["eager"], "compiled_ms": ms["compiled"], "aoti_ms": ms["aoti"],
                         "aoti_speedup_vs_eager": ms["eager"] / ms["aoti"],
                         "aoti_vs_compiled": ms["compiled"] / ms["aoti"], "aoti_max_abs_err": errs["aoti"],
                         "compiled_max_abs_err": errs["compiled"], "aoti_build_s": build_s})
            summary[f"AOTI_{graph}_speedup_vs_eager"] = ms["eager"] / ms["aoti"]
            summary[f"AOTI_{graph}_max_abs_err"] = errs["aoti"]
    print(f"AOTInductor, preset={args.preset}, batch={args.batch}, prompt_len={args.prompt_len}, {header()}")
    print(table(rows))
    summary["AOTI_setting"] = f"preset={args.preset},batch={args.batch},prompt_len={args.prompt_len}"
    if dev == "cuda":
        record(summary)
    else:
        save_rows("aoti_cpu.json", rows, **summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
