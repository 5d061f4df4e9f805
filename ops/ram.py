"""Public functional API: ``ram_attention`` (training / prefill), ``ram_step`` (decode, in place) and
``ram_step_functional`` (decode, for export). Each composes the registered ``ramnet::address`` and
``ramnet::pdma_*`` ops, so ``torch.compile(fullgraph=True)`` and ``torch.export`` see only registered ops
and a few aten ops (the CAPE shift).
"""
from __future__ import annotations

import torch

from . import checks as C
from ._autocast import autocast_inputs
from .common import cape_shift, positions_in_sequence
from .constants import DEFAULT_EPS, DEFAULT_PROXY_EPS
from .address.op import address_op
from .memory.op import pdma_scan_op
from .step_op import ram_step_op



def address(x: torch.Tensor, *, num_factors: int, top_k: int, tau: float = 1.0):
    """Product-softmax address with exact Top-K.

    Args:
        x: ``[..., U * d_p]`` floating tensor (keys or queries).
        num_factors: U, the number of softmax factors; must divide ``x.shape[-1]``.
        top_k: K in ``[1, M]`` with ``M = d_p ** U``.
        tau: softmax temperature, > 0.
    Returns:
        ``(indices int64 [..., K], weights [..., K])``: flat slots ``i_1 + i_2 d_p + ...`` and their product
        probabilities, in descending weight order, not renormalised. Ties: the lower flat index wins.
    """
    C.check_tensor("x", x, min_ndim=1)
    C.address_geometry("x", x.shape[-1], num_factors, top_k)
    tau = C.check_float("tau", tau, 0.0, low_open=True)
    C.check_float("tau", tau, C.MIN_TAU)
    (x,), autocast_scope = autocast_inputs(x)
    with autocast_scope:
        weights, indices = address_op(x, num_factors, top_k, tau)
    return indices, weights


def _check_cape(cape, H: int, device):
    if cape is None:
        return None
    if not isinstance(cape, torch.Tensor):
        cape = torch.as_tensor(cape, dtype=torch.bool, device=device)
    C.check_tensor("cape", cape, ndim=1, dtypes=(torch.bool,), device=device)
    C.check_same("cape", cape.shape[0], "the number of heads H", H, "length")
    return cape


def _check_qkv(q, k, v, rank: int):
    C.check_tensor("q", q, ndim=rank)
    C.check_tensor("k", k, ndim=rank, device=q.device)
    C.check_tensor("v", v, ndim=rank, device=q.device)
    C.check_same("k", tuple(k.shape), "q", tuple(q.shape), "shape")
    C.check_same("v", tuple(v.shape[:-1]), "q", tuple(q.shape[:-1]), "leading (batch, [time,] heads) dims")
    C.check_int("B (q.shape[0])", q.shape[0], 1)
    C.check_int("H (q.shape[-2])", q.shape[-2], 1)
    C.check_int("d_v (v.shape[-1])", v.shape[-1], 1)
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")


def _check_cu_seqlens(cu_seqlens, B: int, T: int, device) -> int:
    """Validate packed-sequence offsets; returns the number of sequences N."""
    C.check_tensor("cu_seqlens", cu_seqlens, ndim=1, dtypes=(torch.int32, torch.int64), device=device)
    if B != 1:
        raise ValueError(f"cu_seqlens needs q, k, v packed with batch size 1, got B={B}")
    if cu_seqlens.shape[0] < 2:
        raise ValueError("cu_seqlens must hold at least 2 offsets [0, ..., T]")
    host = cu_seqlens.tolist()
    if host[0] != 0 or host[-1] != T or any(b < a for a, b in zip(host, host[1:])):
        raise ValueError(f"cu_seqlens must be non-decreasing from 0 to T={T}, got {host[:8]}{'...' if len(host) > 8 else ''}")
    return len(host) - 1


def empty_state(batch: int, heads: int, num_slots: int, d_v: int, *, dtype=torch.float32, device=None):
    """The empty memory: ``S = 0 [B,H,M,d_v]`` and ``z = 1/M [B,H,M]``."""
    S = torch.zeros(batch, heads, num_slots, d_v, dtype=dtype, device=device)
    z = torch.full((batch, heads, num_slots), 1.0 / num_slots, dtype=dtype, device=device)
    return S, z


initial_state = empty_state  # public name; ram_attention's keyword of the same name shadows it there


def ram_attention(q, k, v, *, num_factors: int, top_k: int, gamma: float = 1.0, tau: float = 1.0,
                  eps: float = DEFAULT_EPS, cape=None, offset: int = 0, initial_state=None,
                  output_final_state: bool = False, proxy_eps: float = DEFAULT_PROXY_EPS, cu_seqlens=None,
                  write_gate=None):
    """RAM-Net sparse-memory attention over a sequence (exact, parallel over time).

    Args:
        q, k: ``[B, T, H, d_k]`` with ``d_k = U * d_p``; v: ``[B, T, H, d_v]``. fp16/bf16/fp32/fp64.
        num_factors: U. top_k: K in ``[1, M]``, ``M = d_p ** U``.
        gamma: PDMA decay exponent ``a = (1 - w) ** gamma``, >= 0. tau: address temperature, > 0.
        eps: read normaliser ``o = sum r S / (z + eps)``, >= 0.
        cape: bool ``[H]`` (or a sequence of H bools): heads whose addresses shift by ``-t mod M``; None = off.
        offset: absolute position of the first token (for chunked prefill), >= 0.
        initial_state: ``(S [B,H,M,d_v], z [B,H,M])`` in fp32/fp64, or None for ``S = 0, z = 1/M``.
        output_final_state: also return the state after the last token.
        proxy_eps: the ``e`` of the proxy decay gradient, in ``[0, 1)``.
        cu_seqlens: int64 ``[N + 1]`` cumulative lengths of N sequences packed along T (``B`` must be 1), as in
            fla and FlashAttention. Each sequence starts from its own state (``initial_state`` is then
            ``[N, H, M, d_v]``), its positions count from ``offset``, and the final state is ``[N, ...]``.
            Validating it reads the tensor on the host (one sync).
        write_gate: optional ``[B, T, H]`` float tensor in ``[0, 1]`` that scales each token's K write weights
            (a learned write strength, DeltaNet's beta; not in the paper). None = the paper's write. Its values
            are checked on the host (one sync) except while compiling, exporting or capturing a CUDA graph; NaN
            passes through to the result, as in q, k and v.
    Returns:
        ``(o [B, T, H, d_v] in q.dtype, (S, z) or None)``. The state is fp32 (fp64 for fp64 inputs).
        Under ``torch.autocast`` q, k and v are first cast to the autocast dtype (``o`` comes back in it).
    """
    (q, k, v), autocast_scope = autocast_inputs(q, k, v)
    with autocast_scope:
        return _ram_attention(q, k, v, num_factors, top_k, gamma, tau, eps, cape, offset, initial_state,
                              output_final_state, proxy_eps, cu_seqlens, write_gate)


def _check_write_gate(write_gate, shape: tuple, device):
    """``write_gate`` is None or a float tensor of ``shape`` (``[B, T, H]``, or ``[B, H]`` for a decode token) on
    ``device`` with values in ``[0, 1]`` (read on the host unless tracing or capturing)."""
    if write_gate is None:
        return None
    C.check_tensor("write_gate", write_gate, ndim=len(shape), device=device)
    C.check_same("write_gate", tuple(write_gate.shape), "the (B, T, H) of q" if len(shape) == 3 else "(B, H) of q",
                 tuple(shape), "shape")
    if not C.tracing() and not (write_gate.is_cuda and torch.cuda.is_current_stream_capturing()) \
            and write_gate.numel():
        # one host read; NaN passes through to a NaN result, as NaN in q, k or v does (a diverged model's NaN
        # must reach its loss, where training reports the divergence)
        finite = torch.nan_to_num(write_gate.detach(), nan=0.5)
        lo, hi = (float(x) for x in torch.stack(torch.aminmax(finite)).cpu())
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"write_gate values must be in [0, 1], got values in [{lo}, {hi}]")
    return write_gate


def _gated(write_w, write_gate):
    """The K write weights of each token scaled by its gate (``[..., K] * [..., 1]``), in the weights' dtype."""
    return write_w if write_gate is None else write_w * write_gate.unsqueeze(-1).to(write_w.dtype)


def _ram_attention(q, k, v, num_factors, top_k, gamma, tau, eps, cape, offset, initial_state, output_final_state,
                   proxy_eps, cu_seqlens, write_gate=None):
    _check_qkv(q, k, v, rank=4)
    B, T, H, d_k = q.shape
    d_v = v.shape[-1]
    C.check_int("T (q.shape[1])", T, 1)
    d_p, M = C.address_geometry("q", d_k, num_factors, top_k)
    gamma = C.check_float("gamma", gamma, 0.0)
    tau = C.check_float("tau", tau, C.MIN_TAU)
    eps = C.check_float("eps", eps, 0.0)
    proxy_eps = C.check_float("proxy_eps", proxy_eps, 0.0, 1.0)
    offset = C.check_int("offset", offset, 0, C.MAX_POSITION - T)
    cape = _check_cape(cape, H, q.device)
    write_gate = _check_write_gate(write_gate, (B, T, H), q.device)
    num_states = B if cu_seqlens is None else _check_cu_seqlens(cu_seqlens, B, T, q.device)
    if initial_state is None:
        state_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        S0, z0 = empty_state(num_states, H, M, d_v, dtype=state_dtype, device=q.device)
    else:
        if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 2:
            raise TypeError("initial_state must be a tuple (S, z) or None")
        S0, z0 = initial_state
        C.check_state(S0, z0, num_states, H, M, d_v, q.device,
                     names=("initial_state[0] (S)", "initial_state[1] (z)"))
    write_w, write_idx = address_op(k, num_factors, top_k, tau)
    read_w, read_idx = address_op(q, num_factors, top_k, tau)
    if cape is not None:
        positions = positions_in_sequence(T, cu_seqlens, offset).to(q.device).view(1, T)
        write_idx = cape_shift(write_idx, positions, cape, M)
        read_idx = cape_shift(read_idx, positions, cape, M)
    o, S, z = pdma_scan_op(v, write_idx, _gated(write_w, write_gate), read_idx, read_w, S0, z0, cu_seqlens, gamma,
                           eps, proxy_eps)
    return o, ((S, z) if output_final_state else None)


def _check_step(q, k, v, S, z, position, num_factors, top_k, tau, cape, check_values: bool = True):
    """Validate a decode token's arguments; returns ``(positions int64 [B or 1], cape or None, M)``. The in-place
    ``ram_step`` leaves the position values and the state's writability to ``ramnet::ram_step_``, which checks
    them on the real tensors (also inside compiled graphs) before it writes."""
    _check_qkv(q, k, v, rank=3)
    B, H, d_k = q.shape
    d_p, M = C.address_geometry("q", d_k, num_factors, top_k)
    C.check_state(S, z, B, H, M, v.shape[-1], q.device)
    C.check_float("tau", tau, C.MIN_TAU)
    cape = _check_cape(cape, H, q.device)
    if isinstance(position, torch.Tensor):
        C.check_tensor("position", position, ndim=1, dtypes=(torch.int32, torch.int64), device=q.device)
        C.check_same("position", position.shape[0], "batch B", B, "length")
        if check_values:
            C.check_index_values("position", position, 0, C.MAX_POSITION)
        positions = position.to(torch.int64)
    else:
        positions = torch.full((1,), C.check_int("position", position, 0, C.MAX_POSITION), dtype=torch.int64,
                               device=q.device)
    return positions, cape, M


def _step_addresses(q, k, positions, cape, M, num_factors, top_k, tau):
    write_w, write_idx = address_op(k.unsqueeze(1), num_factors, top_k, tau)
    read_w, read_idx = address_op(q.unsqueeze(1), num_factors, top_k, tau)
    write_idx = cape_shift(write_idx, positions.view(-1, 1), cape, M)
    read_idx = cape_shift(read_idx, positions.view(-1, 1), cape, M)
    return write_idx, write_w, read_idx, read_w


def ram_step(q, k, v, S, z, *, position, num_factors: int, top_k: int, gamma: float = 1.0, tau: float = 1.0,
             eps: float = DEFAULT_EPS, cape=None, write_gate=None):
    """One decode token; updates ``S [B,H,M,d_v]`` and ``z [B,H,M]`` **in place** (one fused launch on CUDA).

    ``q, k [B, H, d_k]``, ``v [B, H, d_v]``; ``position``: int or int64 ``[B]`` (absolute position, for CAPE).
    Returns ``o [B, H, d_v]``. Equal to ``ram_attention`` at that position. Under ``torch.autocast`` q, k and v
    run in the autocast dtype; ``S`` and ``z`` stay as they are. ``write_gate``: optional ``[B, H]`` in
    ``[0, 1]``, as in :func:`ram_attention`; the fused kernel has no gate, so a gated step runs the out-of-place
    step without autograd and copies the new state in, after the same checks.
    """
    (q, k, v), autocast_scope = autocast_inputs(q, k, v)
    # an int position is checked as an int; a tensor's values are read once here (skipped while tracing)
    positions, cape, M = _check_step(q, k, v, S, z, position, num_factors, top_k, tau, cape,
                                     check_values=isinstance(position, torch.Tensor) and position.device.type != "cpu")
    for name, t in (("S", S), ("z", z)):  # the op cannot see grad mode (it runs below autograd): checked here
        if t.requires_grad and torch.is_grad_enabled():
            raise RuntimeError(f"{name} requires grad and cannot be updated in place with grad enabled: decode "
                               "under torch.no_grad(), or use ram_step_functional")
    gamma = C.check_float("gamma", gamma, 0.0)
    eps = C.check_float("eps", eps, 0.0)
    if write_gate is not None:
        return _gated_step_inplace(q, k, v, S, z, position, positions, cape, M, num_factors, top_k, gamma, tau, eps,
                                   write_gate, autocast_scope)
    if cape is None:
        cape = torch.zeros(q.shape[1], dtype=torch.bool, device=q.device)
    positions = positions.expand(q.shape[0])
    with autocast_scope:
        return ram_step_op(q, k, v, S, z, positions, cape, num_factors, top_k, gamma, float(tau), eps)


def _gated_step_inplace(q, k, v, S, z, position, positions, cape, M, num_factors, top_k, gamma, tau, eps,
                        write_gate, autocast_scope):
    """``ram_step`` with a write gate: every check first (the gate, the state's writability, the positions'
    values), then the out-of-place step under no_grad, then both copies, so the state changes all or not at all."""
    write_gate = _check_write_gate(write_gate, tuple(q.shape[:2]), q.device)
    C.check_inplace_state(S, z)
    if isinstance(position, torch.Tensor):
        C.check_index_values("position", position, 0, C.MAX_POSITION)
    with torch.no_grad(), autocast_scope:
        o, S_new, z_new = _step_out_of_place(q, k, v, S, z, positions, cape, M, num_factors, top_k, tau, gamma, eps,
                                             DEFAULT_PROXY_EPS, write_gate)
        S.copy_(S_new)
        z.copy_(z_new)
    return o


def _step_out_of_place(q, k, v, S, z, positions, cape, M, num_factors, top_k, tau, gamma, eps, proxy_eps,
                       write_gate):
    """One checked decode token through the scan op (``T = 1``), gated when ``write_gate [B, H]`` is given:
    ``(o [B, H, d_v], S_new, z_new)``."""
    widx, ww, ridx, rw = _step_addresses(q, k, positions, cape, M, num_factors, top_k, float(tau))
    ww = _gated(ww, None if write_gate is None else write_gate.unsqueeze(1))
    o, S_new, z_new = pdma_scan_op(v.unsqueeze(1), widx, ww, ridx, rw, S, z, None, gamma, eps, proxy_eps)
    return o[:, 0], S_new, z_new


def ram_step_functional(q, k, v, S, z, *, position, num_factors: int, top_k: int, gamma: float = 1.0,
                        tau: float = 1.0, eps: float = DEFAULT_EPS, cape=None, proxy_eps: float = DEFAULT_PROXY_EPS,
                        write_gate=None):
    """Out-of-place twin of :func:`ram_step` (for export and autograd): returns ``(o, S_new, z_new)``.
    ``write_gate``: optional ``[B, H]`` in ``[0, 1]``, as in :func:`ram_attention`."""
    (q, k, v), autocast_scope = autocast_inputs(q, k, v)
    positions, cape, M = _check_step(q, k, v, S, z, position, num_factors, top_k, tau, cape)
    write_gate = _check_write_gate(write_gate, tuple(q.shape[:2]), q.device)
    gamma = C.check_float("gamma", gamma, 0.0)
    eps = C.check_float("eps", eps, 0.0)
    proxy_eps = C.check_float("proxy_eps", proxy_eps, 0.0, 1.0)
    with autocast_scope:
        return _step_out_of_place(q, k, v, S, z, positions, cape, M, num_factors, top_k, tau, gamma, eps, proxy_eps,
                                  write_gate)
