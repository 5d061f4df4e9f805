"""The scan backward's peak of live tensor bytes, counted on CPU (the Triton kernels under the interpreter), for
the segment backend's variants at a scaled-down shape. It counts every tensor torch allocates while the backward
runs (a ``TorchDispatchMode`` that adds each new storage's bytes and subtracts them when it is freed), so it shows
the allocation pattern (which buffers are alive together), not the CUDA caching allocator's peak.

    TRITON_INTERPRET=1 python benchmarks/cpu_live_bytes.py [--shape B,T,H,D] [--budget-mib 1]
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import weakref
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")
import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent.parent))


class LiveBytes(TorchDispatchMode):
    """Live bytes of the storages created inside the mode, and their peak."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.seen = set()     # storages allocated inside the mode and alive
        self.outside = set()  # storages of the tensors made before the mode (inputs): not counted

    def _track(self, t):
        if not isinstance(t, torch.Tensor):
            return
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key in self.seen or key in self.outside or storage.nbytes() == 0:
            return  # counted already, a view of a tensor made before the mode, or empty
        self.seen.add(key)
        size = storage.nbytes()
        self.live += size
        self.peak = max(self.peak, self.live)

        def free(key=key, size=size):
            self.live -= size
            self.seen.discard(key)
        weakref.finalize(storage, free)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        gc.collect()  # the interpreter's kernel launches leave reference cycles; a GPU launch frees at once
        for t in torch.utils._pytree.tree_leaves((args, kwargs)):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in self.seen:
                self.outside.add(t.untyped_storage().data_ptr())
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket.__name__.endswith("_"):
            # in-place ops allocate nothing; the storages they return that are new here are the Triton
            # interpreter's host copies of kernel arguments (made outside torch), which no GPU has
            return out
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            self._track(t)
        return out


def backward_peak(backend, B, T, H, D, U=3, d_p=4, K=8, seed=0) -> int:
    from ramnet.ops.address.naive import address_naive
    from ramnet.ops.memory.backends import ScanArgs, ScanProblem

    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, T, H, U * d_p, generator=g) for _ in range(2))
    widx, ww = address_naive(k, U, K)
    ridx, rw = address_naive(q, U, K)
    v = torch.randn(B, T, H, D, generator=g).to(torch.bfloat16)
    M = d_p**U
    S0, z0 = torch.zeros(B, H, M, D), torch.zeros(B, H, M)
    args = ScanArgs(v, widx, ww, ridx, rw, S0, z0, None, 1.0, 1e-6, 1e-3)
    grads = (torch.randn(v.shape, generator=g).to(torch.bfloat16), torch.zeros(S0.shape), torch.zeros(z0.shape))
    with LiveBytes() as mode:
        out = backend.backward(ScanProblem.of(args), args, *grads)
        del out
    return mode.peak


def main():
    from ramnet.ops.memory.backends import SegmentScan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="1,64,4,32", help="B,T,H,D (d_v); U=3, d_p=4, K=8")
    parser.add_argument("--budget-mib", type=float, default=None,
                        help="the rows budget of the grouped variant, in MiB (default: a quarter of the rows)")
    args = parser.parse_args()
    B, T, H, D = (int(x) for x in args.shape.split(","))
    torch.set_num_threads(1)
    variants = {"saved read rows, fp32 rows, all heads": SegmentScan(derive_read_rows=False, saved_rows="fp32",
                                                                     rows_budget_mib=None),
                "derived read rows, bf16 rows, all heads": SegmentScan(rows_budget_mib=None)}
    rows = SegmentScan().saved_row_bytes(_shape_args(B, T, H, D))
    budget = args.budget_mib * 2**20 if args.budget_mib else rows / 4

    variants[f"derived read rows, bf16 rows, head groups of <= {budget / 2**10:.0f} KiB rows"] = \
        SegmentScan(rows_budget_mib=budget / 2**20)
    print(f"shape B,T,H,D = {args.shape}, saved bf16 write rows {rows / 2**10:.0f} KiB")
    print("| variant | peak live bytes in the backward (KiB) |\n|---|---|")
    for name, backend in variants.items():
        print(f"| {name} | {backward_peak(backend, B, T, H, D) / 2**10:.0f} |")


def _shape_args(B, T, H, D, K=8):
    from ramnet.ops.memory.backends import ScanArgs

    meta = lambda *s, dt=torch.bfloat16: torch.empty(s, dtype=dt, device="meta")
    return ScanArgs(meta(B, T, H, D), meta(B, T, H, K, dt=torch.int64), meta(B, T, H, K),
                    meta(B, T, H, K, dt=torch.int64), meta(B, T, H, K), meta(B, H, 64, D, dt=torch.float32),
                    meta(B, H, 64, dt=torch.float32), None, 1.0, 1e-6, 1e-3)


if __name__ == "__main__":
    main()
