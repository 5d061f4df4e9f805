"""ONNX Runtime (CPU EP) against eager PyTorch on CPU: prefill and one decode step, both ONNX flavours, with the
max abs error against eager. Runs on a CPU-only machine (the GPU image has no onnxruntime-extensions).

    python benchmarks/bench_ort_cpu.py [--preset tiny] [--batch 4] [--prompt-len 128] [--threads N]

Prints a table and writes ``results/ort_cpu.json``.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from common import cpu_median_ms, header, save_rows, table


def median_ms(fn, reps: int) -> float:
    return cpu_median_ms(fn, reps, warmup=1)


def main() -> int:
    from ramnet import RamNetConfig, RamNetForCausalLM
    from ramnet.export.onnx import DecodeGraph, state_names, to_onnx
    from ramnet.runtime.ort import run, session

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = RamNetForCausalLM(RamNetConfig.from_name(args.preset)).eval()
    names = state_names(model.config)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.prompt_len))
    work = Path(tempfile.mkdtemp(prefix="ramnet-ortbench-"))
    rows = []
    with torch.no_grad():
        ref_logits, states = model(ids, return_states=True)
        flat = [t for layer in states for t in layer if t is not None]
        token, position = ids[:, -1].contiguous(), torch.full((args.batch,), args.prompt_len)
        ref_step = DecodeGraph(model)(token, position, *flat)
        eager_prefill = median_ms(lambda: model(ids, return_states=True), args.reps)
        eager_decode = median_ms(lambda: DecodeGraph(model)(token, position, *flat), args.reps * 5)
    decode_feeds = {"token": token.numpy(), "position": position.numpy(), **{n: t.numpy() for n, t in zip(names, flat)}}
    for flavor in ("custom", "standard"):
        prefill = session(to_onnx(model, work / f"{flavor}-p.onnx", flavor=flavor, graph="prefill"))
        decode = session(to_onnx(model, work / f"{flavor}-d.onnx", flavor=flavor, graph="decode"))
        feeds = {"input_ids": ids.numpy()}
        out = run(prefill, feeds)
        step = run(decode, decode_feeds)
        ort_prefill = median_ms(lambda: run(prefill, feeds), args.reps)
        ort_decode = median_ms(lambda: run(decode, decode_feeds), args.reps * 5)
        rows.append({"flavor": flavor, "graph": "prefill", "eager_ms": eager_prefill, "ort_ms": ort_prefill,
                     "ort_speedup_vs_eager": eager_prefill / ort_prefill,
                     "max_abs_err": float(np.abs(out["logits"] - ref_logits.numpy()).max())})
        rows.append({"flavor": flavor, "graph": "decode", "eager_ms": eager_decode, "ort_ms": ort_decode,
                     "ort_speedup_vs_eager": eager_decode / ort_decode,
                     "max_abs_err": float(np.abs(step["logits"] - ref_step[0].numpy()).max())})
    import onnxruntime

    setting = (f"preset={args.preset}, batch={args.batch}, prompt_len={args.prompt_len}, threads={args.threads}, "
               f"onnxruntime {onnxruntime.__version__}")
    print(f"ORT CPU vs eager CPU: {setting}, {header()}")
    print(table(rows))
    save_rows("ort_cpu.json", rows, setting=setting)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
