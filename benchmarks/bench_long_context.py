"""P6: long context. The op's fwd+bwd from T=8192 to T=131072 (B=1, H=16, D=128, bf16), and one training step
of the ``paper-340m`` model at B=1, T=131072 (bf16 weights): with per-block activation checkpointing and the
chunked cross-entropy, and, for comparison, without them.

    python benchmarks/bench_long_context.py [--model-T 131072] [--skip-plain]

Writes ``results/long_context.json`` and merges the P6 keys into ``results/summary.json``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_ms, record, require_cuda, save_rows, table  # noqa: E402

import ramnet.ops as R  # noqa: E402
from ramnet import RamNetConfig, RamNetForCausalLM  # noqa: E402

OP_T = (8192, 32768, 131072)
U, D_P, K = 5, 4, 8


def op_row(T: int, H: int = 16, D: int = 128) -> dict:
    mk = lambda d: torch.randn(1, T, H, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    q, k, v = mk(U * D_P), mk(U * D_P), mk(D)

    def step():
        out = R.ram_attention(q, k, v, num_factors=U, top_k=K)[0]
        out.backward(torch.ones_like(out))

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    ms = bench_ms(step, warmup=1, rep=5)
    return {"T": T, "op_fwdbwd_ms": ms, "op_peak_GiB": torch.cuda.max_memory_allocated() / 2**30}


def model_step(T: int, checkpointed: bool) -> dict:
    """One fwd+bwd of paper-340m at B=1: seconds (second step) and peak GiB, or the OOM."""
    torch.manual_seed(0)
    model = RamNetForCausalLM(RamNetConfig.from_name("paper-340m", max_seq_len=T)).cuda().to(torch.bfloat16)
    model.train().set_activation_checkpointing(checkpointed)
    ids = torch.randint(0, model.config.vocab_size, (1, T + 1), device="cuda")
    row = {"T": T, "checkpointed": checkpointed, "params_M": model.num_parameters(exclude_embeddings=False) / 1e6}
    try:
        times = []
        torch.cuda.reset_peak_memory_stats()
        for _ in range(2):  # the first step compiles the kernels
            torch.cuda.synchronize()
            start = time.perf_counter()
            loss = model.loss(ids[:, :-1], ids[:, 1:], chunk_size=8192 if checkpointed else None)
            loss.backward()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            model.zero_grad(set_to_none=True)
        row.update(fits=True, step_s=times[-1], peak_GiB=torch.cuda.max_memory_allocated() / 2**30,
                   loss=float(loss.detach()))
    except torch.OutOfMemoryError as error:
        row.update(fits=False, error=str(error).splitlines()[0][:160])
    del model
    torch.cuda.empty_cache()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-T", type=int, default=131072, help="tokens of the model step (default %(default)s)")
    parser.add_argument("--skip-plain", action="store_true", help="only the checkpointed model step")
    args = parser.parse_args()
    if args.model_T < 1:
        parser.error("--model-T must be >= 1")
    require_cuda(__file__)
    ops = [op_row(T) for T in OP_T]
    print(table(ops))
    models = [model_step(args.model_T, True)] + ([] if args.skip_plain else [model_step(args.model_T, False)])
    print(table(models))
    save_rows("long_context.json", ops + models)
    ratio = ops[-1]["op_fwdbwd_ms"] / ops[0]["op_fwdbwd_ms"]
    record({"P6_T131072_over_T8192": ratio, f"P6_340m_T{args.model_T}_fits": models[0]["fits"],
            f"P6_340m_T{args.model_T}_checkpointed": {k: models[0].get(k) for k in ("step_s", "peak_GiB")}})
    print(f"P6: op T=131072 / T=8192 = {ratio:.2f}x (goal <= 17x); paper-340m at T={args.model_T} "
          f"{'fits' if models[0]['fits'] else 'does not fit'} with checkpointing")


if __name__ == "__main__":
    main()
