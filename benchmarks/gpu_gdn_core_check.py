"""GPU check of ramnet's PyTorch gated delta rule (ramnet/gated_delta_torch.py), which stands in for fla's kernels
where fla's chunked backward refuses to run (Hopper + Triton 3.4-3.7.0, fla#640).

1. Forward agreement at B=8, T=1024, H=2, K=V=64, fp32 and bf16 inputs: the torch core against fla's
   ``chunk_gated_delta_rule`` and ``fused_recurrent_gated_delta_rule`` forwards, and the
   ``gated_deltanet`` mixer with ``core="torch"`` against fla's own GatedDeltaNet forward on the same parameters.
2. Speed: the torch core's forward+backward (``triton.testing.do_bench``, median ms) at B=128, T in (64, 256,
   1024), H=2, K=V=64, bf16 inputs; and a 2-layer gdn-66k model (main.yaml) forward+backward under bf16 autocast.

Each comparison runs in a process of its own (``--part``), so that a kernel fault in one (the first run, on an H200,
ended in an illegal memory access) is recorded as that part's error and the others still run.

    python benchmarks/gpu_gdn_core_check.py [--out results.json]      (needs CUDA and fla; exit 1 if a part failed)
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


def rule_agreement(ref_name: str, dtype_name: str) -> dict:
    """Our core against a float64 run of itself and, unless ``ref_name`` is "core", against one of fla's kernels."""
    import torch
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule

    from ramnet.gated_delta_torch import chunk_gated_delta_rule_torch
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    q, k, v, g, beta = rule_inputs(8, 1024, 2, 64, 64, dtype)
    with torch.no_grad():
        ours = chunk_gated_delta_rule_torch(q, k, v, g, beta, use_qk_l2norm=True)[0]
        ref64 = chunk_gated_delta_rule_torch(*(x.double() for x in (q, k, v, g, beta)), use_qk_l2norm=True)[0]
        if ref_name == "core":
            return {f"core_{dtype_name}_vs_core_fp64": errors(ours, ref64)}
        fn = {"fla_chunk": chunk_gated_delta_rule, "fla_fused_recurrent": fused_recurrent_gated_delta_rule}[ref_name]
        ref = fn(q, k, v, g, beta, use_qk_l2norm_in_kernel=True)[0]
        torch.cuda.synchronize()  # a kernel fault surfaces here, inside this part's process
        return {f"core_{dtype_name}_vs_{ref_name}": errors(ours, ref),
                f"{ref_name}_{dtype_name}_vs_core_fp64": errors(ref, ref64)}


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


# Each part runs in a process of its own: a CUDA fault (an illegal memory access, as on the first run of this script
# on an H200) poisons the whole CUDA context, and would otherwise take every later part with it.
PARTS = {
    **{f"{ref}_{dt}": (lambda ref=ref, dt=dt: rule_agreement(ref, dt))
       for ref in ("core", "fla_fused_recurrent", "fla_chunk") for dt in ("fp32", "bf16")},
    "mixer": lambda: mixer_agreement(),
    "timings": lambda: {"timings": timings()},
}


def run_part(name: str, timeout: float, argv: list[str] | None = None) -> dict:
    """``{name: error}`` or the part's own JSON, from a child process (``argv``, default this script's --part)."""
    import subprocess
    import sys
    try:
        done = subprocess.run(argv or [sys.executable, __file__, "--part", name], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {name: {"error": f"timed out after {timeout:.0f} s"}}
    if done.returncode != 0 or not done.stdout.strip():
        lines = done.stderr.strip().splitlines() or ["(no output)"]
        # the last line of a CUDA failure is often the generic TORCH_USE_CUDA_DSA hint: keep the error's own line too
        cause = [line for line in lines if "Error" in line or "error:" in line][-1:]
        tail = " | ".join(dict.fromkeys([*cause, lines[-1]]))
        return {name: {"error": f"exit {done.returncode}: {tail}"[:800]}}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_parts(header: dict, run, out: str | None = None) -> dict:
    """``header`` plus every part's result (``run(name)``): ``agreement`` by comparison, ``timings`` rows, and
    ``timings_error`` when the timings part failed. ``out`` is rewritten after every part, so a check cut short
    (a shared card, an outer timeout) keeps what it measured."""
    results = {**header, "agreement": {}, "timings": []}
    for name in PARTS:
        part = run(name)
        if name == "timings":
            timings = part.get("timings", [])
            if isinstance(timings, dict):  # the part failed: {"timings": {"error": ...}}
                results["timings_error"], timings = timings.get("error"), []
            results["timings"] = timings
        else:
            results["agreement"].update(part)
        if out:
            with open(out, "w") as f:
                json.dump(results, f, indent=1)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON here (default: print only)")
    parser.add_argument("--part", choices=sorted(PARTS), help="run one part in this process; print its JSON")
    parser.add_argument("--card-shared", action="store_true",
                        help="record that other work shared the card (the timings are then not the card's own)")
    parser.add_argument("--part-timeout", type=float, default=120.0, help="seconds each part may take (120)")
    args = parser.parse_args(argv)
    if args.part:
        print(json.dumps(PARTS[args.part]()))
        return 0
    import torch
    import triton
    import fla
    header = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
              "fla": getattr(fla, "__version__", "?"), "card_shared": args.card_shared}
    results = run_parts(header, lambda name: run_part(name, args.part_timeout), args.out)
    parts = results["agreement"]
    for name, e in parts.items():
        print(f"{name:48s} " + (e.get("error") or "  ".join(f"{key} {e[key]:.3e}" for key in
                                                           ("max_abs", "max_rel", "rel_rms"))))
    if "timings_error" in results:
        print(f"timings: {results['timings_error']}")
    print(f"{'what':44s} {'T':>5s} {'ms':>8s}")
    for row in results["timings"]:
        print(f"{row['what']:44s} {row['T']:5d} {row['ms']:8.2f}")
    return 0 if not any("error" in e for e in parts.values()) and results["timings"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
