"""Parity report on CPU (float64): parallel form vs recurrent reference, proxy-gradient backward vs the explicit
reference, decode loop and split-sequence carry vs one call. Prints max abs errors; used for closing notes.

    python benchmarks/parity_cpu.py
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ramnet.ops as R  # noqa: E402
from ramnet.ops.memory.naive import proxy_decay  # noqa: E402
from tests.ops.memory_cases import cape_mask, make_inputs, recurrent_attention  # noqa: E402

SHAPES = [(2, 13, 3, 2, 4, 5, 3), (1, 63, 2, 3, 3, 7, 27), (2, 40, 2, 4, 2, 3, 8), (1, 64, 3, 5, 4, 60, 8)]


def max_err(pairs):
    return max((a - b).abs().max().item() for a, b in pairs)


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    fwd = bwd = step = split = 0.0
    for shape in SHAPES:
        B, T, H, U, d_p, d_v, K = shape
        q, k, v, state = make_inputs(B, T, H, U, d_p, d_v, seed=T, with_state=True)
        kw = dict(num_factors=U, top_k=K, gamma=0.7, cape=cape_mask(H, "half"), offset=5)
        leaves = [t.clone().requires_grad_() for t in (q, k, v, *state)]
        o, (S, z) = R.ram_attention(*leaves[:3], initial_state=tuple(leaves[3:]), output_final_state=True, **kw)
        ref_leaves = [t.clone().requires_grad_() for t in (q, k, v, *state)]
        o_r, S_r, z_r = recurrent_attention(*ref_leaves[:3], initial_state=tuple(ref_leaves[3:]),
                                            decay=lambda w, g: proxy_decay(w, g, 1e-3), **kw)
        fwd = max(fwd, max_err([(o, o_r), (S, S_r), (z, z_r)]))
        gouts = [torch.randn_like(t) for t in (o, S, z)]
        got = torch.autograd.grad((o, S, z), leaves, gouts)
        ref = torch.autograd.grad((o_r, S_r, z_r), ref_leaves, gouts)
        bwd = max(bwd, max_err(zip(got, ref)))
        S1, z1 = state[0].clone(), state[1].clone()
        outs = [R.ram_step(q[:, t], k[:, t], v[:, t], S1, z1, position=5 + t, **{x: kw[x] for x in kw if x != "offset"})
                for t in range(T)]
        step = max(step, max_err([(torch.stack(outs, 1), o.detach()), (S1, S.detach())]))
        h = T // 2
        kw2 = {x: kw[x] for x in kw if x != "offset"}
        o1, st = R.ram_attention(q[:, :h], k[:, :h], v[:, :h], offset=5, initial_state=state, output_final_state=True, **kw2)
        o2, (S2, _) = R.ram_attention(q[:, h:], k[:, h:], v[:, h:], offset=5 + h, initial_state=st, output_final_state=True, **kw2)
        split = max(split, max_err([(torch.cat([o1, o2], 1), o.detach()), (S2, S.detach())]))
    print("| check (float64, CPU) | max abs error |\n|---|---|")
    print(f"| parallel vs recurrent forward (o, S, z) | {fwd:.2e} |")
    print(f"| backward vs explicit-proxy reference (dq, dk, dv, dS0, dz0) | {bwd:.2e} |")
    print(f"| decode loop (ram_step) vs ram_attention (o, S) | {step:.2e} |")
    print(f"| split sequence with state carry vs one call (o, S) | {split:.2e} |")


if __name__ == "__main__":
    main()
