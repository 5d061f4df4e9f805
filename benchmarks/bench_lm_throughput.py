"""P5: language-model training throughput of the paper's config on one GPU: tokens/s, peak memory and model FLOPs
utilisation (MFU) of one training step of RAM-Net ``paper-340m`` (RamNetForCausalLM), a Transformer++ and fla's
DeltaNet model at about the same parameter count, side by side in one process.

    python benchmarks/bench_lm_throughput.py                       # B=1, T=4096 on the GPU, recorded as P5
    python benchmarks/bench_lm_throughput.py --batch 2 --peak-tflops 989
    python benchmarks/bench_lm_throughput.py --device cpu --tiny   # a CPU smoke check of the script (no record)

The step: ``zero_grad``, the forward under bf16 autocast over fp32 weights (as ``ramnet train --task lm
--precision bf16`` runs it), the next-token cross-entropy on fp32-upcast logits, the backward and one AdamW step
(torch's default implementation, betas 0.9/0.95, weight decay 0.1), timed as a whole by ``bench_ms`` (triton's
``do_bench`` median). Each model runs its stack and then the same LM head and loss code, so the comparison is of the
stacks, not of fused loss kernels (fla's fused cross-entropy is not used).

- RAM-Net: ``paper-340m`` as the preset pins it (340.8M parameters without the input embedding).
- Transformer++: ``ramnet.lm.arch.BaselineForCausalLM(arch="attention")``: RMSNorm, RoPE, SwiGLU, causal SDPA
  (``is_causal``: the flash kernel), untied head; the paper's width (d_model 1024, 16 heads, d_ff 2816) with the
  number of layers that brings its non-embedding parameters nearest RAM-Net's.
- DeltaNet: ``fla.models.DeltaNetForCausalLM`` (fla's defaults: short conv, fused norm and SwiGLU), the same width,
  heads and d_ff, layers matched the same way. Skipped, with the reason printed, when fla is missing or the device
  is not CUDA (its kernels are Triton).

MFU = (6 * non-embedding parameters + attention FLOPs) * tokens / step time / ``--peak-tflops`` (default 989: the
dense bf16 peak of an H100/H200 SXM). Non-embedding parameters include the LM head. Attention FLOPs apply to the
Transformer only: ``6 * layers * d_model * T`` per token (QK^T and AV, forward and backward, causal half). The
recurrent mixers' own FLOPs are linear in T and are not counted (RAM-Net's sparse read and write, about
``12 * K * d_v`` per head per token, is about 0.1% of 6N at the paper's shape; DeltaNet's state update about 1%),
so their MFU is slightly understated.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_ms, cpu_median_ms, record, table  # noqa: E402

from ramnet import RamNetConfig, RamNetForCausalLM  # noqa: E402
from ramnet.lm.arch import BaselineConfig, BaselineForCausalLM  # noqa: E402

MODELS = ("ramnet", "transformer", "deltanet")


def n_params(model, exclude_embeddings=True) -> int:
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel() if hasattr(model, "get_input_embeddings") else \
        model.embed.weight.numel()
    return total - emb if exclude_embeddings else total


def on_meta(build):
    with torch.device("meta"):
        return build()


def matched_layers(build, target: int) -> int:
    """The layer count whose non-embedding parameters (``build(layers)`` on the meta device) are nearest
    ``target``."""
    one, two = n_params(on_meta(lambda: build(1))), n_params(on_meta(lambda: build(2)))
    per_layer, rest = two - one, 2 * one - two
    return max(1, round((target - rest) / per_layer))


class FlaLM(torch.nn.Module):
    """fla's model with the common ``features`` / ``lm_head`` interface (its own loss path is not used)."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.lm_head = model, model.lm_head

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def features(self, ids):
        return self.inner.model(input_ids=ids, use_cache=False).last_hidden_state, None


def build_models(args, device):
    """``{name: (constructor, info)}``; constructors build on ``device``; skipped models carry a reason."""
    if args.tiny:
        rcfg = RamNetConfig.from_name("tiny", max_seq_len=args.seq_len)
        width = dict(d_model=64, n_heads=2, d_ff=128)
    else:
        rcfg = RamNetConfig.from_name("paper-340m", max_seq_len=max(4096, args.seq_len))
        width = dict(d_model=rcfg.d_model, n_heads=rcfg.n_heads, d_ff=rcfg.d_ff)
    vocab = rcfg.vocab_size
    target = n_params(on_meta(lambda: RamNetForCausalLM(rcfg)))
    out = {"ramnet": (lambda: RamNetForCausalLM(rcfg), {"layers": rcfg.n_layers, **width})}

    def transformer(layers):
        return BaselineForCausalLM(BaselineConfig(arch="attention", vocab_size=vocab, n_layers=layers,
                                                  max_seq_len=args.seq_len, **width))
    t_layers = matched_layers(transformer, target)
    out["transformer"] = (lambda: transformer(t_layers), {"layers": t_layers, **width})
    reason = None
    try:
        from fla.models import DeltaNetConfig, DeltaNetForCausalLM
    except Exception as error:  # noqa: BLE001 - fla missing or broken
        reason = f"fla cannot be imported ({type(error).__name__}: {error})"
    if reason is None and device.type != "cuda":
        reason = "fla's DeltaNet runs Triton kernels, which need CUDA"
    if reason is None:
        def deltanet(layers):
            cfg = DeltaNetConfig(hidden_size=width["d_model"], num_heads=width["n_heads"],
                                 intermediate_size=width["d_ff"], num_hidden_layers=layers, vocab_size=vocab,
                                 max_position_embeddings=args.seq_len, use_cache=False, tie_word_embeddings=False)
            return FlaLM(DeltaNetForCausalLM(cfg))
        try:
            d_layers = matched_layers(deltanet, target)
            out["deltanet"] = (lambda: deltanet(d_layers), {"layers": d_layers, **width})
        except Exception as error:  # noqa: BLE001 - a fla version whose model cannot be built here
            reason = f"fla's DeltaNetForCausalLM cannot be built ({type(error).__name__}: {error})"
    if reason is not None:
        out["deltanet"] = (None, {"skipped": reason})
    return out, vocab


def fla_version():
    try:
        from importlib.metadata import version

        return version("flash-linear-attention")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return None


def attention_flops_per_token(name: str, info: dict, seq_len: int) -> float:
    return 6.0 * info["layers"] * info["d_model"] * seq_len if name == "transformer" else 0.0


def measure(name, make, info, args, device, vocab):
    torch.manual_seed(0)
    model = make().to(device)
    model.train()
    params, total = n_params(model), n_params(model, exclude_embeddings=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    ids = torch.randint(0, vocab, (args.batch, args.seq_len), device=device)
    targets = ids.roll(-1, 1)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            hidden, _ = model.features(ids)
            logits = model.lm_head(hidden)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        loss.backward()
        opt.step()

    if device.type == "cuda":
        step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        ms = bench_ms(step, warmup=args.warmup_ms, rep=args.rep_ms)
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        ms = cpu_median_ms(step, reps=3, warmup=1)
        peak = None
    tokens = args.batch * args.seq_len
    flops = (6.0 * params + attention_flops_per_token(name, info, args.seq_len)) * tokens
    row = {"model": name, "layers": info["layers"], "params_M": total / 1e6, "non_embedding_params_M": params / 1e6,
           "B": args.batch, "T": args.seq_len, "step_ms": ms, "tokens_per_s": tokens / (ms * 1e-3),
           "model_TFLOP_per_step": flops / 1e12, "mfu": flops / (ms * 1e-3) / (args.peak_tflops * 1e12),
           "peak_mem_GiB": peak}
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1, help="rows per step (default 1)")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per row (default 4096; --tiny: 64)")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --tiny: a smoke check)")
    p.add_argument("--tiny", action="store_true", help="tiny models (the script's smoke check; not recorded)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    p.add_argument("--peak-tflops", type=float, default=989.0,
                   help="the card's dense bf16 peak in TFLOP/s for MFU (default 989: H100/H200 SXM)")
    p.add_argument("--warmup-ms", type=int, default=1000, help="do_bench warm-up budget in ms")
    p.add_argument("--rep-ms", type=int, default=3000, help="do_bench measuring budget in ms")
    args = p.parse_args()
    args.seq_len = args.seq_len or (64 if args.tiny else 4096)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"{Path(__file__).name}: needs a CUDA GPU (torch.cuda.is_available() is False on this machine); "
                 "use --device cpu --tiny for a smoke check")
    if device.type != "cuda" and not args.tiny:
        sys.exit(f"{Path(__file__).name}: --device {args.device} runs only with --tiny (a smoke check)")
    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in MODELS]
    if unknown:
        sys.exit(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
    models, vocab = build_models(args, device)
    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device {dev_name}; B={args.batch} T={args.seq_len}; bf16 autocast over fp32 weights, AdamW; "
          f"MFU against a peak of {args.peak_tflops:g} dense bf16 TFLOP/s (--peak-tflops)")
    rows, skipped = [], {}
    for name in chosen:
        make, info = models[name]
        if make is None:
            print(f"{name}: skipped: {info['skipped']}")
            skipped[name] = info["skipped"]
            continue
        start = time.perf_counter()
        try:
            row = measure(name, make, info, args, device, vocab)
        except torch.OutOfMemoryError as error:
            skipped[name] = f"out of memory: {str(error).splitlines()[0]}"
            print(f"{name}: {skipped[name]}")
            continue
        finally:  # the model, its gradients and the optimizer state go before the next model is built
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
        print(f"{name}: {row['layers']} layers, {row['params_M']:.1f}M parameters "
              f"({row['non_embedding_params_M']:.1f}M without the input embedding), measured in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    print(table(rows))
    if args.tiny or device.type != "cuda":
        print("not recorded: a --tiny / CPU smoke run")
        return
    record({"P5_tokens_per_s": {r["model"]: r["tokens_per_s"] for r in rows},
            "P5_mfu": {r["model"]: r["mfu"] for r in rows},
            "P5_rows": [{**r, "peak_tflops": args.peak_tflops} for r in rows],
            "P5_setup": {"batch": args.batch, "seq_len": args.seq_len, "peak_tflops": args.peak_tflops,
                         "precision": "bf16 autocast over fp32 weights", "fla": fla_version()},
            **({"P5_skipped": skipped} if skipped else {})})


if __name__ == "__main__":
    main()
