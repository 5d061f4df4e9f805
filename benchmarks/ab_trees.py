"""A/B of the training op (``ramnet.ops.ram_attention`` fwd and fwd+bwd, bf16, U=5, d_p=4, K=8) between two source
trees of ramnet, in one lease.

Each tree is installed (non-editable) into its own folder; the timing then runs in fresh processes that alternate
A, B, A, B, ... so drift of the card's clocks hits both sides alike. Each process reports the median of
``triton.testing.do_bench`` per shape, the median host time to enqueue one call on an idle GPU, and the GPU-busy
time of one fwd+bwd (the sum of its kernels, from ``profile_op.py``); the table gives the best round of each side
and the ratio B/A. Small shapes are bound by the host, so their wall times vary from round to round; the GPU-busy
column does not.

    python benchmarks/ab_trees.py OLD_TREE NEW_TREE [--rounds 2] [--shapes 4,4096,16,128 ...] [--pin CPU]
        [--out ab.json]

A tree is a folder holding a ramnet checkout (``git archive REV | tar -x -C DIR`` makes one).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SHAPES = ["4,4096,16,128", "8,1024,8,64", "1,8192,96,128", "4,2048,16,128", "2,16384,16,128", "4,4096,64,128"]
U, D_P, K = 5, 4, 8


def time_installed(shapes: list[str]) -> dict:
    """Median ms of fwd and fwd+bwd for every shape, with whichever ramnet is importable (runs in a child)."""
    import torch
    from triton.testing import do_bench

    import ramnet.ops as R
    from host_overhead import host_us  # this script's folder is on sys.path
    from profile_op import profile_shape

    host_ms = lambda fn: host_us(fn, reps=100) / 1e3

    results = {"ramnet_file": R.__file__}
    for shape in shapes:
        B, T, H, D = map(int, shape.split(","))
        gen = torch.Generator(device="cuda").manual_seed(0)
        mk = lambda d: torch.randn(B, T, H, d, device="cuda", dtype=torch.bfloat16, generator=gen).requires_grad_()
        q, k, v = mk(U * D_P), mk(U * D_P), mk(D)
        fwd = lambda: R.ram_attention(q, k, v, num_factors=U, top_k=K)[0]

        def fwd_bwd():
            out = fwd()
            out.backward(torch.ones_like(out))

        results[shape] = {"fwd_ms": do_bench(fwd, warmup=5, rep=200, return_mode="median"),
                          "fwdbwd_ms": do_bench(fwd_bwd, warmup=5, rep=200, return_mode="median"),
                          "host_fwd_ms": host_ms(fwd), "host_fwdbwd_ms": host_ms(fwd_bwd),
                          "gpu_busy_fwdbwd_ms": profile_shape(shape, 5, None)["gpu_busy_us"] / 1e3}
        torch.cuda.empty_cache()
    return results


def install(tree: Path, site: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(tree)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, nargs="?", help="tree A (the baseline)")
    parser.add_argument("new", type=Path, nargs="?", help="tree B")
    parser.add_argument("--rounds", type=int, default=2, help="processes per side (alternating)")
    parser.add_argument("--shapes", nargs="*", default=SHAPES, help="B,T,H,D")
    parser.add_argument("--out", type=Path, help="write the rounds and the table here as JSON")
    parser.add_argument("--pin", type=int, help="pin every timing process to this CPU (steadier host times)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.pin is not None:
            os.sched_setaffinity(0, {args.pin})
        print(json.dumps(time_installed(args.shapes)))
        return
    if args.old is None or args.new is None:
        parser.error("give two trees: OLD_TREE NEW_TREE")
    for tree in (args.old, args.new):
        if not (tree / "pyproject.toml").is_file():
            parser.error(f"{tree} is not a ramnet tree (no pyproject.toml)")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    import torch

    if not torch.cuda.is_available():
        sys.exit("ab_trees.py: needs a CUDA GPU (torch.cuda.is_available() is False on this machine)")
    work = Path(tempfile.mkdtemp(prefix="ramnet-ab-"))
    sites = {"A": work / "a", "B": work / "b"}
    install(args.old, sites["A"])
    install(args.new, sites["B"])
    rounds = {"A": [], "B": []}
    for r in range(args.rounds):
        for side in ("A", "B"):
            env = {**os.environ, "PYTHONPATH": str(sites[side])}
            # run from the work folder so neither tree's sources shadow the installed copy
            out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "--shapes", *args.shapes,
                                  *([] if args.pin is None else ["--pin", str(args.pin)])],
                                 env=env, cwd=work, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            rounds[side].append(result)
            print(f"round {r} {side}: {result['ramnet_file']}", flush=True)
    rows = []
    for shape in args.shapes:
        row = {"shape": shape}
        for key in ("fwd_ms", "fwdbwd_ms", "host_fwd_ms", "host_fwdbwd_ms", "gpu_busy_fwdbwd_ms"):
            a = min(res[shape][key] for res in rounds["A"])
            b = min(res[shape][key] for res in rounds["B"])
            row.update({f"A_{key}": round(a, 4), f"B_{key}": round(b, 4), f"B/A_{key[:-3]}": round(b / a, 4)})
        rows.append(row)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    if args.out:
        args.out.write_text(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                        "A": str(args.old), "B": str(args.new), "rounds": rounds, "rows": rows},
                                       indent=2))


if __name__ == "__main__":
    main()
