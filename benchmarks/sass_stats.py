"""Registers, spills and shared memory of the PDMA scan kernels as compiled for an H100 (sm_90a), without a GPU:
Triton compiles to PTX on any machine and ships ``ptxas``, whose ``-v`` report is parsed here. Use it to check
register pressure before spending device time (the chunked forward at C >= 4 spills kilobytes per thread).

    python benchmarks/sass_stats.py segment-bwd --dv 128 --warps 1
    python benchmarks/sass_stats.py chunked-fwd --chunk 8 --dv 64 --k 8 --warps 4

Prints one dict: ``shared_bytes, num_warps, registers, spill_store_bytes, spill_load_bytes, stack_bytes``.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile

import torch

os.environ.pop("TRITON_INTERPRET", None)  # compile for real even where the test suite interprets
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from ramnet.ops.memory import triton_chunked, triton_scan, triton_segment, triton_segment_bwd  # noqa: E402

H100 = GPUTarget("cuda", 90, 32)
# argument types of the benchmarked launch (bf16 activations, int64 slots); anything else *_ptr is fp32
POINTERS = {"widx_ptr": "*i64", "ridx_ptr": "*i64", "cu_ptr": "*i64", "wkey_ptr": "*i32", "rkey_ptr": "*i32",
            "word_ptr": "*i64", "rord_ptr": "*i64", "wb_ptr": "*i64", "rb_ptr": "*i64", "v_ptr": "*bf16", "o_ptr": "*bf16",
            "ww_ptr": "*bf16", "rw_ptr": "*bf16", "go_ptr": "*bf16", "dv_ptr": "*bf16", "dww_ptr": "*bf16",
            "drw_ptr": "*bf16"}
FLOATS = ("gamma", "eps", "proxy_eps")


def _signature(fn, constexprs) -> dict[str, str]:
    def kind(name):
        if name in constexprs:
            return "constexpr"
        if name.endswith("_ptr"):
            return POINTERS.get(name, "*fp32")
        return "fp32" if name in FLOATS else "i32"
    return {name: kind(name) for name in fn.arg_names}


def kernel_stats(fn, constexprs: dict, num_warps: int = 4) -> dict:
    """Compile ``fn`` (a ``@triton.jit`` kernel) for sm_90a and return ptxas's resource report."""
    src = ASTSource(fn, _signature(fn, constexprs), constexprs=constexprs)
    kernel = triton.compile(src, target=H100, options={"num_warps": num_warps, "num_stages": 1})
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.TemporaryDirectory() as tmp:
        ptx = os.path.join(tmp, "kernel.ptx")
        with open(ptx, "w") as f:
            f.write(kernel.asm["ptx"])
        report = subprocess.run([ptxas, "-arch=sm_90a", "-v", ptx, "-o", os.path.join(tmp, "kernel.cubin")],
                                capture_output=True, text=True, check=True).stderr
    number = lambda pattern, group=1: int(re.search(pattern, report).group(group))
    spills = r"(\d+) bytes spill stores, (\d+) bytes spill loads"
    return {"shared_bytes": kernel.metadata.shared, "num_warps": num_warps,
            "registers": number(r"Used (\d+) registers"), "spill_store_bytes": number(spills, 1),
            "spill_load_bytes": number(spills, 2), "stack_bytes": number(r"(\d+) bytes stack frame")}


KERNELS = ("segment-fwd", "segment-bwd", "recurrent-fwd", "recurrent-bwd", "chunked-fwd")


def scan_kernel(name: str, K: int, DV: int, chunk: int = 8, save: bool = True):
    """``(kernel, constexprs)`` for one of :data:`KERNELS` at these sizes (segment kernels: int32 keys, and the
    forward's atomic ``o`` unless ``save``)."""
    blocks = {"BLOCK_K": triton.next_power_of_2(K), "BLOCK_D": triton.next_power_of_2(DV)}
    if name == "chunked-fwd":
        block_c, block_k, block_d = triton_chunked.block_sizes(K, DV, chunk)
        return triton_chunked._scan_fwd_chunked_kernel, {"BLOCK_C": block_c, "BLOCK_K": block_k,
                                                         "BLOCK_D": block_d, "SAVE": save}
    if name == "recurrent-fwd":
        return triton_scan._scan_fwd_kernel, {**blocks, "SAVE": save, "HAS_CU": False}
    if name == "recurrent-bwd":
        return triton_scan._scan_bwd_kernel, {**blocks, "HAS_CU": False}
    no_read, no_write = triton_segment._SENTINELS[torch.int32]
    if name == "segment-fwd":
        return triton_segment._segment_fwd_kernel, {"BLOCK_D": max(blocks["BLOCK_D"], 16), "SAVE": save,
                                                    "ROWS": save, "NO_READ": no_read, "NO_WRITE": no_write}
    if name == "segment-bwd":
        return triton_segment_bwd._segment_bwd_kernel, {"BLOCK_D": max(blocks["BLOCK_D"], 16)}
    raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {name!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kernel", choices=KERNELS)
    parser.add_argument("--chunk", type=int, default=8, help="tokens per chunk (chunked-fwd)")
    parser.add_argument("--dv", type=int, default=64)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--warps", type=int, default=4)
    parser.add_argument("--no-save", action="store_true", help="the forward without the backward's saved rows")
    args = parser.parse_args()
    fn, constexprs = scan_kernel(args.kernel, args.k, args.dv, args.chunk, not args.no_save)
    print(kernel_stats(fn, constexprs, args.warps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
