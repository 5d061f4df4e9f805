"""Shared sampling of RAM-attention inputs for the memory tests."""
import torch

import ramnet.ops as R


def make_inputs(B, T, H, U, d_p, d_v, *, seed=0, dtype=torch.float64, with_state=False, scale=1.5):
    gen = torch.Generator().manual_seed(seed)
    d_k = U * d_p
    q = torch.randn(B, T, H, d_k, generator=gen, dtype=dtype) * scale
    k = torch.randn(B, T, H, d_k, generator=gen, dtype=dtype) * scale
    v = torch.randn(B, T, H, d_v, generator=gen, dtype=dtype)
    state = None
    if with_state:
        M = d_p**U
        sd = torch.float64 if dtype == torch.float64 else torch.float32
        S = torch.randn(B, H, M, d_v, generator=gen, dtype=sd)
        z = torch.rand(B, H, M, generator=gen, dtype=sd) + 0.1
        state = (S, z)
    return q, k, v, state


def cape_mask(H, pattern):
    if pattern == "none":
        return None
    if pattern == "all":
        return torch.ones(H, dtype=torch.bool)
    return torch.arange(H) % 2 == 0


def recurrent_attention(q, k, v, *, num_factors, top_k, gamma=1.0, tau=1.0, eps=1e-6, cape=None, offset=0,
                        initial_state=None, decay=None, write_gate=None):
    """The token-by-token reference composed exactly like ``ram_attention`` (address, CAPE, write gate,
    recurrence)."""
    from ramnet.ops.address.naive import address_naive
    from ramnet.ops.memory.naive import pdma_recurrent

    B, T, H, _ = q.shape
    M = (q.shape[-1] // num_factors) ** num_factors
    widx, ww = address_naive(k, num_factors, top_k, tau)
    ridx, rw = address_naive(q, num_factors, top_k, tau)
    if write_gate is not None:
        ww = ww * write_gate.unsqueeze(-1)
    if cape is not None:
        t = (offset + torch.arange(T)).view(1, T, 1, 1)
        widx = torch.where(cape.view(1, 1, H, 1), (widx - t) % M, widx)
        ridx = torch.where(cape.view(1, 1, H, 1), (ridx - t) % M, ridx)
    if initial_state is None:
        sd = torch.float64 if q.dtype == torch.float64 else torch.float32
        initial_state = R.initial_state(B, H, M, v.shape[-1], dtype=sd)
    return pdma_recurrent(v, widx, ww, ridx, rw, *initial_state, gamma, eps, decay=decay)


def scan_event_inputs(B, T, H, U, d_p, d_v, K, *, seed):
    """Addressed inputs of the PDMA scan kernels, fp32: ``(v, write_idx, write_w, read_idx, read_w, S0, z0, gen)``;
    ``gen`` continues the stream for upstream gradients."""
    from ramnet.ops.address.naive import address_naive

    gen = torch.Generator().manual_seed(seed)
    k, q = (torch.randn(B, T, H, U * d_p, generator=gen) * 2 for _ in range(2))
    v = torch.randn(B, T, H, d_v, generator=gen)
    widx, ww = address_naive(k, U, K)
    ridx, rw = address_naive(q, U, K)
    M = d_p**U
    S0, z0 = torch.randn(B, H, M, d_v, generator=gen), torch.rand(B, H, M, generator=gen) + 0.1
    return v, widx, ww, ridx, rw, S0, z0, gen


def scan_backend(name: str):
    """A scan backend by name, or a variant of the segment walk: ``"segment-saved"``, whose backward reads saved
    read rows (fp32) instead of deriving them from the write rows (the default), or ``"segment-heads"``, whose
    backward runs one head at a time (as above ``rows_budget_mib``)."""
    import dataclasses

    from ramnet.ops.memory.backends import SCAN, SegmentScan

    @dataclasses.dataclass(frozen=True)
    class SegmentPerHead(SegmentScan):
        def head_groups(self, a):
            return [(h, h + 1) for h in range(a.v.shape[2])]

    if name == "segment-saved":
        return dataclasses.replace(SCAN.get("segment"), derive_read_rows=False, saved_rows="fp32")
    if name == "segment-heads":
        return SegmentPerHead()
    return SCAN.get(name)
