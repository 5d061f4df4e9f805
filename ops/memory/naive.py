"""Pure-PyTorch PDMA memory: the token-by-token recurrent reference and the parallel (segmented-scan) form.

Notation (docs/MATH.md, sections 4-6 and 9.3): per head, ``M`` slots of ``S: [M, d_v]`` and ``z: [M]``; each token
writes its K slots ``S[i] = a_i S[i] + w_i v`` and ``z[i] = a_i z[i] + w_i`` with ``a_i = (1 - w_i) ** gamma``,
then reads ``o = sum_j r_j S[j] / (z[j] + eps)``. Indices passed here are already CAPE-shifted.

Shapes: ``v [B, T, H, d_v]``, ``write_idx/read_idx`` int64 ``[B, T, H, K]``, ``write_w/read_w [B, T, H, K]``,
``S0 [B, H, M, d_v]``, ``z0 [B, H, M]``. The state dtype (float32 or float64) is the compute dtype.

The parallel form sorts the ``B*H*T*K`` write events by (head, slot, time): each slot is then an independent
scalar-gated linear recurrence ``h_n = a_n h_{n-1} + b_n``, solved for all slots at once by a segmented
Hillis-Steele scan in ``log2(N)`` vectorised steps. Each read finds the last write to its slot at or before its
time with ``searchsorted``. No Python loop over tokens.
"""
from __future__ import annotations

import torch

from ..common import sequence_ids


def exact_decay(w: torch.Tensor, gamma: float) -> torch.Tensor:
    """``a = (1 - w) ** gamma``, the exact decay of the forward (``0 ** 0 = 1`` keeps ``gamma = 0`` a pure mean)."""
    return (1.0 - w) ** gamma


def proxy_decay_grad(w: torch.Tensor, gamma: float, proxy_eps: float) -> torch.Tensor:
    """``d/dw (e + (1 - e)(1 - w)) ** gamma``: the finite surrogate used in backward (docs/MATH.md, section 9.4)."""
    if gamma == 0:
        return torch.zeros_like(w)
    return -gamma * (1.0 - proxy_eps) * (proxy_eps + (1.0 - proxy_eps) * (1.0 - w)) ** (gamma - 1.0)


def proxy_decay(w: torch.Tensor, gamma: float, proxy_eps: float) -> torch.Tensor:
    """Exact decay in value, proxy derivative under autograd: the explicit reference for gradient checks."""
    proxy = (proxy_eps + (1.0 - proxy_eps) * (1.0 - w)) ** gamma
    return exact_decay(w.detach(), gamma) + (proxy - proxy.detach())


def _expand_last(idx: torch.Tensor, width: int) -> torch.Tensor:
    return idx.unsqueeze(-1).expand(idx.shape + (width,))


def read_memory(S, z, read_idx, read_w, eps: float):
    """``o = sum_j r_j S[j] / (z[j] + eps)``. ``S [B,H,M,dv]``, ``read_idx/read_w [B,H,K]`` -> ``[B,H,dv]``."""
    S_sel = S.gather(2, _expand_last(read_idx, S.shape[-1]))
    z_sel = z.gather(2, read_idx)
    return (read_w.to(S.dtype).unsqueeze(-1) * S_sel / (z_sel.unsqueeze(-1) + eps)).sum(2)


def pdma_recurrent(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma: float, eps: float, decay=None):
    """Token-by-token reference (the ground truth). Differentiable by autograd; ``decay(w, gamma)`` defaults to
    :func:`exact_decay`. Returns ``(o [B,T,H,dv] in v.dtype, S [B,H,M,dv], z [B,H,M])``."""
    decay = decay or exact_decay
    S, z = S0, z0
    cd = S0.dtype
    outputs = []
    for t in range(v.shape[1]):
        widx = write_idx[:, t]
        w = write_w[:, t].to(cd)
        a = decay(w, gamma)
        widx_v = _expand_last(widx, S.shape[-1])
        S = S.scatter(2, widx_v, a.unsqueeze(-1) * S.gather(2, widx_v) + w.unsqueeze(-1) * v[:, t].to(cd).unsqueeze(2))
        z = z.scatter(2, widx, a * z.gather(2, widx) + w)
        outputs.append(read_memory(S, z, read_idx[:, t], read_w[:, t], eps))
    return torch.stack(outputs, 1).to(v.dtype), S, z


def pdma_step_inplace(v, write_idx, write_w, read_idx, read_w, S, z, gamma: float, eps: float):
    """One decode token, mutating ``S [B,H,M,dv]`` and ``z [B,H,M]``. ``v [B,H,dv]``, idx/w ``[B,H,K]``."""
    cd = S.dtype
    w = write_w.to(cd)
    a = exact_decay(w, gamma)
    widx_v = _expand_last(write_idx, S.shape[-1])
    S.scatter_(2, widx_v, a.unsqueeze(-1) * S.gather(2, widx_v) + w.unsqueeze(-1) * v.to(cd).unsqueeze(2))
    z.scatter_(2, write_idx, a * z.gather(2, write_idx) + w)
    return read_memory(S, z, read_idx, read_w, eps).to(v.dtype)


# ----------------------------------------------------------------------------------------------------------
# Parallel form


def _segmented_scan(a: torch.Tensor, b: torch.Tensor, seg: torch.Tensor, max_len: int):
    """Inclusive scan of ``h_n = a_n h_{n-1} + b_n`` restarting at each new ``seg`` value (``h_{-1} = 0``).

    ``a [N]``, ``b [N, C]``, ``seg [N]`` (segments contiguous, none longer than ``max_len``). Returns ``(A, Bc)``
    with ``A_n`` the product of ``a`` from the segment start to ``n`` and ``Bc_n`` the scan from a zero start, so
    that ``h_n = A_n * h_init + Bc_n``. ``ceil(log2(max_len))`` steps: a slot is written at most once per token,
    so ``max_len <= T`` however many events there are.
    """
    A, Bc = a.clone(), b.clone()
    d = 1
    while d < min(max_len, a.shape[0]):
        same = seg[d:] == seg[:-d]
        A_hi = A[d:]
        new_B = torch.where(same.unsqueeze(-1), A_hi.unsqueeze(-1) * Bc[:-d] + Bc[d:], Bc[d:])
        A[d:] = torch.where(same, A_hi * A[:-d], A_hi)
        Bc[d:] = new_B
        d *= 2
    return A, Bc


def state_groups(B: int, T: int, H: int, cu_seqlens, device) -> torch.Tensor:
    """``[B*H, T, 1]``: the state (sequence, head) each (batch, head, time) row belongs to. Without
    ``cu_seqlens`` it is ``b * H + h``; with it (``B = 1``, packed sequences) it is ``seq(t) * H + h``."""
    if cu_seqlens is None:
        return torch.arange(B * H, device=device).view(B * H, 1, 1)
    seq = sequence_ids(T, cu_seqlens.to(device))
    return (seq.view(1, T) * H + torch.arange(H, device=device).view(H, 1)).unsqueeze(-1)


class _Events:
    """Write events sorted by (state group, slot, time), and each read event's last preceding write."""

    def __init__(self, write_idx, read_idx, M: int, cu_seqlens=None):
        B, T, H, K = write_idx.shape
        G = B * H
        dev = write_idx.device
        head = state_groups(B, T, H, cu_seqlens, dev)
        time = torch.arange(T, device=dev).view(1, T, 1)
        w_slot = head * M + write_idx.permute(0, 2, 1, 3).reshape(G, T, K)
        r_slot = head * M + read_idx.permute(0, 2, 1, 3).reshape(G, T, K)
        key = (w_slot * T + time).flatten()
        self.key, self.order = torch.sort(key)
        self.seg = self.key // T  # flat (head, slot) of each sorted event
        self.is_first = torch.ones_like(self.seg, dtype=torch.bool)
        self.is_first[1:] = self.seg[1:] != self.seg[:-1]
        self.is_last = torch.ones_like(self.seg, dtype=torch.bool)
        self.is_last[:-1] = self.seg[1:] != self.seg[:-1]
        # (head, time) row of each sorted write event, to gather v and scatter dv
        self.row = (self.order // K)  # = g * T + t, since order indexes the flattened [G, T, K]
        self.r_slot = r_slot.flatten()
        r_key = (r_slot * T + time).flatten()
        pos = torch.searchsorted(self.key, r_key, right=True) - 1
        pos_c = pos.clamp(min=0)
        self.r_valid = (pos >= 0) & (self.seg[pos_c] == self.r_slot)
        self.r_pos = pos_c
        self.shape = (B, T, H, K, G, M)


def _to_groups(x, B, T, H):
    """``[B, T, H, C] -> [B*H*T, C]`` in (head, time) row order."""
    return x.permute(0, 2, 1, 3).reshape(B * H * T, x.shape[-1])


def _from_groups(x, B, T, H):
    return x.view(B, H, T, x.shape[-1]).permute(0, 2, 1, 3)


def _forward_states(ev: _Events, v, write_w, S0, z0, gamma: float):
    B, T, H, K, G, M = ev.shape
    cd = S0.dtype
    dv = v.shape[-1]
    w = _to_groups(write_w.to(cd), B, T, H).flatten()[ev.order]
    v_rows = _to_groups(v.to(cd), B, T, H)
    a = exact_decay(w, gamma)
    b = torch.cat([w.unsqueeze(-1) * v_rows[ev.row], w.unsqueeze(-1)], -1)
    init = torch.cat([S0.reshape(-1, dv), z0.reshape(-1, 1)], -1)
    A, Bc = _segmented_scan(a, b, ev.seg, T)
    h = A.unsqueeze(-1) * init[ev.seg] + Bc
    state_r = torch.where(ev.r_valid.unsqueeze(-1), h[ev.r_pos], init[ev.r_slot])
    return w, a, v_rows, init, h, state_r


def pdma_parallel(v, write_idx, write_w, read_idx, read_w, S0, z0, gamma: float, eps: float, cu_seqlens=None):
    """Parallel form of :func:`pdma_recurrent`; same arguments and results (equal to rounding). With
    ``cu_seqlens`` (int64 ``[N+1]``, ``B = 1``) the T tokens are N packed sequences with states ``[N, H, ...]``."""
    B, T, H, K = write_idx.shape
    M, dv = S0.shape[-2], S0.shape[-1]
    ev = _Events(write_idx, read_idx, M, cu_seqlens)
    _, _, _, init, h, state_r = _forward_states(ev, v, write_w, S0, z0, gamma)
    r = _to_groups(read_w.to(S0.dtype), B, T, H).flatten()
    contrib = r.unsqueeze(-1) * state_r[:, :dv] / (state_r[:, dv:] + eps)
    o = _from_groups(contrib.view(B * H * T, K, dv).sum(1), B, T, H).to(v.dtype)
    final = init.clone()
    final[ev.seg[ev.is_last]] = h[ev.is_last]
    return o.contiguous(), final[:, :dv].reshape(S0.shape).contiguous(), final[:, dv].reshape(z0.shape).contiguous()


def pdma_parallel_backward(grad_o, grad_S, grad_z, v, write_idx, write_w, read_idx, read_w, S0, z0,
                           gamma: float, eps: float, proxy_eps: float, cu_seqlens=None):
    """Gradients ``(dv, d_write_w, d_read_w, dS0, dz0)`` of :func:`pdma_parallel`, with the proxy decay
    derivative. ``grad_S``/``grad_z`` are the upstream gradients of the final state (zeros if unused)."""
    B, T, H, K = write_idx.shape
    M, dv = S0.shape[-2], S0.shape[-1]
    cd = S0.dtype
    ev = _Events(write_idx, read_idx, M, cu_seqlens)
    w, a, v_rows, init, h, state_r = _forward_states(ev, v, write_w, S0, z0, gamma)

    # read: o = sum_j r_j S_j / (z_j + eps)
    r = _to_groups(read_w.to(cd), B, T, H).flatten()
    go = _to_groups(grad_o.to(cd), B, T, H).repeat_interleave(K, 0)  # one row per read event
    S_r, denom = state_r[:, :dv], state_r[:, dv] + eps
    dot = (go * S_r).sum(-1)
    d_read_w = dot / denom
    g_state_r = torch.cat([r.unsqueeze(-1) * go / denom.unsqueeze(-1), (-r * dot / denom**2).unsqueeze(-1)], -1)

    g_h = torch.zeros_like(h)
    g_h.index_add_(0, ev.r_pos[ev.r_valid], g_state_r[ev.r_valid])
    g_init = torch.zeros_like(init)
    g_init.index_add_(0, ev.r_slot[~ev.r_valid], g_state_r[~ev.r_valid])
    g_final = torch.cat([grad_S.to(cd).reshape(-1, dv), grad_z.to(cd).reshape(-1, 1)], -1)
    g_h[ev.is_last] += g_final[ev.seg[ev.is_last]]
    written = torch.zeros(init.shape[0], dtype=torch.bool, device=init.device)
    written[ev.seg] = True
    g_init += torch.where(written.unsqueeze(-1), torch.zeros_like(g_final), g_final)

    # reverse scan: G_n = g_h_n + a_{n+1} G_{n+1} within a segment
    a_next = torch.zeros_like(a)
    a_next[:-1] = a[1:]
    a_next = torch.where(ev.is_last, torch.zeros_like(a_next), a_next)
    _, G_rev = _segmented_scan(a_next.flip(0), g_h.flip(0), ev.seg.flip(0), T)
    G = G_rev.flip(0)

    h_prev = torch.empty_like(h)
    h_prev[1:] = h[:-1]
    h_prev = torch.where(ev.is_first.unsqueeze(-1), init[ev.seg], h_prev)
    g_init.index_add_(0, ev.seg[ev.is_first], a[ev.is_first].unsqueeze(-1) * G[ev.is_first])

    d_a = (G * h_prev).sum(-1)
    d_w_sorted = (G[:, :dv] * v_rows[ev.row]).sum(-1) + G[:, dv] + d_a * proxy_decay_grad(w, gamma, proxy_eps)
    d_w = torch.empty_like(d_w_sorted)
    d_w[ev.order] = d_w_sorted
    d_v_rows = torch.zeros_like(v_rows)
    d_v_rows.index_add_(0, ev.row, w.unsqueeze(-1) * G[:, :dv])

    d_write_w = _from_groups(d_w.view(B * H * T, K), B, T, H).to(write_w.dtype).contiguous()
    d_read_w = _from_groups(d_read_w.view(B * H * T, K), B, T, H).to(read_w.dtype).contiguous()
    d_v = _from_groups(d_v_rows, B, T, H).to(v.dtype).contiguous()
    dS0 = g_init[:, :dv].reshape(S0.shape).contiguous()
    dz0 = g_init[:, dv].reshape(z0.shape).contiguous()
    return d_v, d_write_w, d_read_w, dS0, dz0
