"""GPU check of ramnet's PyTorch gated delta rule (ramnet/gated_delta_torch.py), which stands in for fla's kernels
where fla's chunked backward refuses to run (Hopper + Triton 3.4-3.7.0, fla#640).

1. Forward agreement at B=8, T=1024, H=2, K=V=64, fp32 and bf16 inputs: the torch core against fla's
   ``chunk_gated_delta_rule`` and ``fused_recurrent_gated_delta_rule`` forwards (both run on Hopper), and the
   ``gated_deltanet`` mixer with ``core="torch"`` against fla's own GatedDeltaNet forward on the same parameters.
2. Speed: the torch core's forward+backward (``triton.testing.do_bench``, median ms) at B=128, T in (64, 256,
   1024), H=2, K=V=64, bf16 inputs; and a 2-layer gdn-66k model (main.yaml) forward+backward under bf16 autocast.

    python benchmarks/gpu_gdn_core_check.py [--out results.json]      (needs CUDA and fla)
"""
from __future__ import annotations

import argparse
import json


def errors(got, ref) -> dict:
    got, ref = got.double(), ref.double()
    diff = (got - ref).abs()
    return {"max_abs": diff.max().item(), "max_rel": (diff.max() / ref.abs().max()).item(),
            "rel_rms": ((diff.square().mean() / ref.square().mean()).sqrt()).item()}


def rule_inputs(B, T, H, K, V, dtype, grad=False, seed=0):
    import torch
    import torch.nn.functional as F
    gen = torch.Generator(device="cuda").manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, device="cuda", generator=gen)  # noqa: E731
    q, k, v = rnd(B, T, H, K).to(dtype), rnd(B, T, H, K).to(dtype), rnd(B, T, H, V).to(dtype)
    g, beta = F.logsigmoid(rnd(B, T, H) + 2), torch.sigmoid(rnd(B, T, H))  # float32, as fla's layer passes them
    return [x.requires_grad_(grad) for x in (q, k, v, g, beta)]


def agreement() -> dict:
    import torch
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule

    from ramnet.gated_delta_torch import chunk_gated_delta_rule_torch
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        q, k, v, g, beta = rule_inputs(8, 1024, 2, 64, 64, dtype)
        with torch.no_grad():
            ours = chunk_gated_delta_rule_torch(q, k, v, g, beta, use_qk_l2norm=True)[0]
            ref64 = chunk_gated_delta_rule_torch(*(x.double() for x in (q, k, v, g, beta)), use_qk_l2norm=True)[0]
            for ref_name, fn in (("fla_chunk", chunk_gated_delta_rule), ("fla_fused_recurrent",
                                                                         fused_recurrent_gated_delta_rule)):
                try:
                    ref = fn(q, k, v, g, beta, use_qk_l2norm_in_kernel=True)[0]
                except Exception as error:  # one failing reference should not hide the others
                    out[f"core_{name}_vs_{ref_name}"] = {"error": repr(error)[:500]}
                    continue
                out[f"core_{name}_vs_{ref_name}"] = errors(ours, ref)
                out[f"{ref_name}_{name}_vs_core_fp64"] = errors(ref, ref64)
            out[f"core_{name}_vs_core_fp64"] = errors(ours, ref64)
    return {**out, **mixer_agreement()}


def mixer_agreement() -> dict:
    import torch

    from ramnet.baselines import FlaMixer
    torch.manual_seed(0)
    mixer = FlaMixer("gated_deltanet", d_model=128, n_heads=2, core="torch").cuda()
    x = torch.randn(8, 1024, 128, device="cuda")
    res = {}
    for name, ctx in (("fp32", torch.autocast("cuda", enabled=False)), ("bf16_autocast",
                                                                         torch.autocast("cuda", torch.bfloat16))):
        with torch.no_grad(), ctx:
            mixer.layer.train()  # fla's layer: chunk mode (its forward runs on Hopper)
            res[f"mixer_torch_core_vs_fla_layer_{name}"] = errors(mixer(x), mixer.layer(x)[0])
    return res


def timings() -> list[dict]:
    import torch
    from triton.testing import do_bench

    from ramnet.baselines import build_model
    from ramnet.gated_delta_torch import chunk_gated_delta_rule_torch
    rows = []
    for T in (64, 256, 1024):
        args = rule_inputs(128, T, 2, 64, 64, torch.bfloat16, grad=True)

        def step():
            o = chunk_gated_delta_rule_torch(*args, use_qk_l2norm=True)[0]
            o.backward(torch.ones_like(o))
        rows.append({"what": "core fwd+bwd B=128 H=2 K=V=64 bf16", "T": T, "ms": do_bench(step, return_mode="median")})
    spec = {"model": "gated_deltanet", "d_model": 256, "n_layers": 2, "n_heads": 2, "d_ff": 256,
            "layer": {"core": "torch"}}
    model = build_model(spec, vocab_size=8192, max_seq_len=1024)[0].cuda()
    for T in (64, 256, 1024):
        ids = torch.randint(0, 8192, (128, T), device="cuda")

        def train_step():
            with torch.autocast("cuda", torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(model(ids).flatten(0, 1).float(), ids.flatten())
            loss.backward()
        rows.append({"what": "gdn-66k model fwd+bwd B=128 bf16 autocast", "T": T,
                     "ms": do_bench(train_step, return_mode="median")})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON here (default: print only)")
    args = parser.parse_args(argv)
    import torch
    import triton
    import fla
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
               "fla": getattr(fla, "__version__", "?"), "agreement": agreement(), "timings": timings()}
    for name, e in results["agreement"].items():
        print(f"{name:48s} " + (e.get("error") or "  ".join(f"{key} {e[key]:.3e}" for key in
                                                           ("max_abs", "max_rel", "rel_rms"))))
    print(f"{'what':44s} {'T':>5s} {'ms':>8s}")
    for row in results["timings"]:
        print(f"{row['what']:44s} {row['T']:5d} {row['ms']:8.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
