"""Compile a Triton kernel for an NVIDIA target without a GPU and print registers, spills and shared memory,
so register pressure can be checked on a CPU-only machine (Triton ships ptxas).

    python benchmarks/sass_stats.py chunked-fwd --chunk 8 --dv 64 --k 8 --warps 4
"""
from __future__ import annotations

import argparse
import os
import re

os.environ.pop("TRITON_INTERPRET", None)
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from ramnet.ops.memory import triton_chunked, triton_scan, triton_scan_pipelined  # noqa: E402

POINTER, INT, FLOAT = "*fp32", "i32", "fp32"


def signature(fn, pointers: dict[str, str], floats=(), constexprs=()) -> dict[str, str]:
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = pointers.get(name, POINTER)
        elif name in floats:
            sig[name] = FLOAT
        else:
            sig[name] = INT
    return sig


def stats(fn, consts: dict, pointers: dict[str, str], floats, warps: int, stages: int = 1):
    src = ASTSource(fn, signature(fn, pointers, floats, consts), constexprs=consts)
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": stages})
    import subprocess, tempfile
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(kernel.asm["ptx"])
    out = subprocess.run([ptxas, "-arch=sm_90a", "-v", f.name, "-o", os.devnull], capture_output=True, text=True)
    info = out.stderr
    regs = re.search(r"Used (\d+) registers", info)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", info)
    stack = re.search(r"(\d+) bytes stack frame", info)
    return {"shared_bytes": kernel.metadata.shared, "num_warps": warps, "registers": regs and int(regs.group(1)),
            "spill_store_bytes": spill and int(spill.group(1)), "spill_load_bytes": spill and int(spill.group(2)),
            "stack_bytes": stack and int(stack.group(1))}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kernel", choices=["chunked-fwd", "recurrent-fwd", "pipelined-fwd", "recurrent-bwd"])
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--dv", type=int, default=64)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--warps", type=int, default=4)
    p.add_argument("--save", type=int, default=1)
    a = p.parse_args()
    ptr = {"widx_ptr": "*i64", "ridx_ptr": "*i64", "v_ptr": "*bf16", "o_ptr": "*bf16", "ww_ptr": "*bf16",
           "rw_ptr": "*bf16"}
    bc, bk, bd = triton_chunked.block_sizes(a.k, a.dv, a.chunk)
    if a.kernel == "chunked-fwd":
        fn = triton_chunked._scan_fwd_chunked_kernel
        consts = {"BLOCK_C": bc, "BLOCK_K": bk, "BLOCK_D": bd, "SAVE": bool(a.save)}
        print(stats(fn, consts, ptr, ("gamma", "eps"), a.warps))
    elif a.kernel in ("recurrent-fwd", "pipelined-fwd"):
        consts = {"BLOCK_K": triton.next_power_of_2(a.k), "BLOCK_D": triton.next_power_of_2(a.dv),
                  "SAVE": bool(a.save), "HAS_CU": False}
        fn = triton_scan._scan_fwd_kernel if a.kernel == "recurrent-fwd" else \
            triton_scan_pipelined._scan_fwd_pipelined_kernel
        print(stats(fn, consts, {**ptr, "cu_ptr": "*i64"}, ("gamma", "eps"), a.warps))
    elif a.kernel == "recurrent-bwd":
        consts = {"BLOCK_K": triton.next_power_of_2(a.k), "BLOCK_D": triton.next_power_of_2(a.dv), "HAS_CU": False}
        print(stats(triton_scan._scan_bwd_kernel, consts, {**ptr, "cu_ptr": "*i64", "go_ptr": "*bf16",
                    "dv_ptr": "*bf16", "dww_ptr": "*bf16", "drw_ptr": "*bf16"}, ("gamma", "eps", "proxy_eps"),
                    a.warps))


if __name__ == "__main__":
    main()
