"""Registers, spills and shared memory of the PDMA scan kernels as compiled for an H100 (sm_90a), without a GPU:
Triton compiles to PTX on any machine and ships ``ptxas``, whose ``-v`` report is parsed here. Use it to check
register pressure before spending device time.

The launch settings are those of a scan backend object (``ramnet.ops.memory.backends``): ``RecurrentScan`` for
the ``recurrent-*`` kernels, ``SegmentScan`` for the ``segment-*`` ones, at their default knobs unless an option
changes one (``--warps``: the backend's warps for that kernel; ``--no-atomic-read``, ``--int64-keys``: the
segment walk's ``atomic_read=False`` and ``int32_keys_below=0``).

    python benchmarks/sass_stats.py segment-bwd --dv 128
    python benchmarks/sass_stats.py recurrent-fwd --dv 64 --k 8 --warps 8

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

from ramnet.ops.memory import triton_recurrent, triton_segment, triton_segment_bwd  # noqa: E402
from ramnet.ops.memory.backends import RecurrentScan, SegmentScan  # noqa: E402

H100 = GPUTarget("cuda", 90, 32)
# argument types of the benchmarked launch (bf16 activations, int64 slots); anything else *_ptr is fp32
POINTERS = {"widx_ptr": "*i64", "ridx_ptr": "*i64", "cu_ptr": "*i64", "wkey_ptr": "*i32", "rkey_ptr": "*i32",
            "word_ptr": "*i64", "rord_ptr": "*i64", "wb_ptr": "*i64", "rb_ptr": "*i64", "v_ptr": "*bf16", "o_ptr": "*bf16",
            "ww_ptr": "*bf16", "rw_ptr": "*bf16", "go_ptr": "*bf16", "dv_ptr": "*bf16", "dww_ptr": "*bf16",
            "drw_ptr": "*bf16"}
FLOATS = ("gamma", "eps", "proxy_eps")
KEY_TYPES = {torch.int32: "*i32", torch.int64: "*i64"}


def _signature(fn, constexprs, pointers) -> dict[str, str]:
    def kind(name):
        if name in constexprs:
            return "constexpr"
        if name.endswith("_ptr"):
            return pointers.get(name, "*fp32")
        return "fp32" if name in FLOATS else "i32"
    return {name: kind(name) for name in fn.arg_names}


def _divisibility(fn, signature: dict, divisible: tuple) -> dict:
    """What the launcher tells the compiler at run time: every pointer argument 16-byte aligned (fresh torch
    buffers are), and the integer arguments named in ``divisible`` multiples of 16."""
    return {(i,): [["tt.divisibility", 16]] for i, name in enumerate(fn.arg_names)
            if signature[name].startswith("*") or name in divisible}


def compile_kernel(fn, constexprs: dict, num_warps: int = 4, pointers: dict | None = None, divisible: tuple = ()):
    """Compile ``fn`` (a ``@triton.jit`` kernel) for sm_90a as the launcher would (see :func:`_divisibility`)."""
    signature = _signature(fn, constexprs, {**POINTERS, **(pointers or {})})
    src = ASTSource(fn, signature, constexprs=constexprs, attrs=_divisibility(fn, signature, divisible))
    return triton.compile(src, target=H100, options={"num_warps": num_warps, "num_stages": 1})


def vector_accesses(ptx: str) -> dict:
    """Counts of 128-bit (v4 of 32-bit) global loads and stores in ``ptx``: rows moved in vectors."""
    return {"ld_v4": len(re.findall(r"ld\.global(?:\.\w+)*\.v4", ptx)),
            "st_v4": len(re.findall(r"st\.global(?:\.\w+)*\.v4", ptx))}


def kernel_stats(fn, constexprs: dict, num_warps: int = 4, pointers: dict | None = None,
                 divisible: tuple = ()) -> dict:
    """Compile ``fn`` for sm_90a and return ptxas's resource report. ``pointers`` overrides :data:`POINTERS` (a
    pointer argument's element type); ``divisible`` names the integer arguments that are multiples of 16."""
    kernel = compile_kernel(fn, constexprs, num_warps, pointers, divisible)
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.TemporaryDirectory() as tmp:
        ptx = os.path.join(tmp, "kernel.ptx")
        with open(ptx, "w") as f:
            f.write(kernel.asm["ptx"])
        done = subprocess.run([ptxas, "-arch=sm_90a", "-v", ptx, "-o", os.path.join(tmp, "kernel.cubin")],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"ptxas failed ({done.returncode}): {(done.stderr or done.stdout)[-1500:]}")
        report = done.stderr
    number = lambda pattern, group=1: int(re.search(pattern, report).group(group))
    spills = r"(\d+) bytes spill stores, (\d+) bytes spill loads"
    return {"shared_bytes": kernel.metadata.shared, "num_warps": num_warps,
            "registers": number(r"Used (\d+) registers"), "spill_store_bytes": number(spills, 1),
            "spill_load_bytes": number(spills, 2), "stack_bytes": number(r"(\d+) bytes stack frame")}


KERNELS = ("segment-fwd", "segment-bwd", "recurrent-fwd", "recurrent-bwd")


def default_backend(name: str):
    """The scan backend whose launch settings :func:`scan_kernel` uses for kernel ``name`` by default."""
    return RecurrentScan() if name.startswith("recurrent") else SegmentScan()


def scan_kernel(name: str, K: int, DV: int, save: bool = True, backend=None):
    """``(kernel, constexprs, num_warps, pointer types)`` for one of :data:`KERNELS` at these sizes, launched as
    ``backend`` (a ``RecurrentScan`` or ``SegmentScan``; default: :func:`default_backend`) launches it. Segment
    kernels sort int32 keys unless ``backend.int32_keys_below == 0``; the segment forward stores read rows when
    ``save`` or not ``backend.atomic_read``, else sums ``o`` with fp32 atomics."""
    if name not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {name!r}")
    backend = default_backend(name) if backend is None else backend
    expected = type(default_backend(name))
    if not isinstance(backend, expected):
        raise TypeError(f"{name} is launched by a {expected.__name__}, got {type(backend).__name__}")
    blocks = {"BLOCK_K": triton.next_power_of_2(K), "BLOCK_D": triton.next_power_of_2(DV)}
    if name == "recurrent-fwd":
        return (triton_recurrent._scan_fwd_kernel, {**blocks, "SAVE": save, "HAS_CU": False}, backend.fwd_warps,
                {})
    if name == "recurrent-bwd":
        return triton_recurrent._scan_bwd_kernel, {**blocks, "HAS_CU": False}, backend.bwd_warps, {}
    key_dtype = torch.int64 if backend.int32_keys_below == 0 else torch.int32
    keys = {"wkey_ptr": KEY_TYPES[key_dtype], "rkey_ptr": KEY_TYPES[key_dtype]}
    block_d = max(blocks["BLOCK_D"], 16)
    if name == "segment-fwd":
        no_read, no_write = triton_segment.SENTINELS[key_dtype]
        rows = save or not backend.atomic_read
        # o_ptr: the fp32 atomic accumulator (a one-element dummy when the rows are stored)
        return (triton_segment._segment_fwd_kernel,
                {"BLOCK_D": block_d, "SAVE": save, "ROWS": rows, "NO_READ": no_read, "NO_WRITE": no_write},
                backend.num_warps, {**keys, "o_ptr": "*fp32"})
    # segment-bwd: dv is accumulated in fp32 with atomics
    return (triton_segment_bwd._segment_bwd_kernel, {"BLOCK_D": block_d, "DERIVE_READS": backend.derive_read_rows},
            backend.num_warps, {**keys, "dv_ptr": "*fp32"})


def backend_from_args(args):
    """The backend of ``args.kernel`` with the command line's knobs applied."""
    if args.kernel.startswith("recurrent"):
        if args.no_atomic_read or args.int64_keys:
            raise ValueError("--no-atomic-read and --int64-keys are knobs of the segment kernels")
        default = RecurrentScan()
        return RecurrentScan(fwd_warps=args.warps or default.fwd_warps, bwd_warps=args.warps or default.bwd_warps)
    default = SegmentScan()
    return SegmentScan(num_warps=args.warps or default.num_warps, atomic_read=not args.no_atomic_read,
                       int32_keys_below=0 if args.int64_keys else default.int32_keys_below)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kernel", choices=KERNELS)
    parser.add_argument("--dv", type=int, default=64)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--warps", type=int, default=None,
                        help="warps per program (default: the backend's, RecurrentScan or SegmentScan)")
    parser.add_argument("--no-save", action="store_true", help="the forward without the backward's saved rows")
    parser.add_argument("--no-atomic-read", action="store_true",
                        help="segment-fwd: store the read rows even with --no-save (SegmentScan(atomic_read=False))")
    parser.add_argument("--int64-keys", action="store_true",
                        help="segment kernels: int64 sort keys (SegmentScan(int32_keys_below=0))")
    args = parser.parse_args()
    try:
        backend = backend_from_args(args)
    except ValueError as err:
        parser.error(str(err))
    fn, constexprs, num_warps, pointers = scan_kernel(args.kernel, args.k, args.dv, not args.no_save, backend)
    divisible = tuple(name for name, value in (("K", args.k), ("DV", args.dv)) if value % 16 == 0)
    print(kernel_stats(fn, constexprs, num_warps, pointers, divisible))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
