"""``RamNetMixer`` (the RAM-Net attention layer), its optional short convolution, norms and SwiGLU."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ramnet.ops import ram_attention, ram_step, ram_step_functional
from ramnet.ops.common import positions_in_sequence

from .config import RamNetConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def make_norm(config: RamNetConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model, config.norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.norm_eps)


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class ShortConv(nn.Module):
    """Causal depthwise convolution over time, ``[B, T, C] -> [B, T, C]``, with an explicit cache of the last
    ``kernel - 1`` inputs so that decode equals prefill. Applied to the concatenated q/k/v projections (as fla's
    ``ShortConvolution``), so that k can learn a previous-token shift while q stays on the current token, and with
    ``write_gate_conv`` to the write gate's logits too: the last ``identity_channels`` channels, which start as the
    identity (the current token alone). ``identity_kernel`` (None = ``kernel``) gives those channels a kernel of their
    own: ``self.kernel`` is then the window, the longer of the two, and each channel's taps beyond its own kernel are
    held at 0 by a fixed mask (a non-persistent buffer, only when the kernels differ)."""

    def __init__(self, dim: int, kernel: int, identity_channels: int = 0, identity_kernel: int | None = None):
        super().__init__()
        if identity_kernel is not None and not identity_channels:
            raise ValueError("ShortConv: identity_kernel needs identity_channels > 0")
        if identity_kernel is not None and (isinstance(identity_kernel, bool) or not isinstance(identity_kernel, int)
                                            or identity_kernel < 1):
            raise ValueError(f"ShortConv: identity_kernel must be None or an int >= 1, got {identity_kernel!r}")
        self.channel_kernel = kernel  # the other channels' (q/k/v's) own kernel
        self.identity_kernel = identity_kernel or kernel
        self.kernel = max(kernel, self.identity_kernel)  # the window
        self.identity_channels = identity_channels
        self.weight = nn.Parameter(torch.empty(dim, self.kernel))
        if self.identity_kernel != self.channel_kernel:
            self.register_buffer("tap_mask", self.live_taps(), persistent=False)
        else:
            self.tap_mask = None  # one kernel: no mask (the parameters, state_dict and numerics of a plain conv)
        self.reset_parameters()

    def live_taps(self):
        """``[dim, window]`` bool: the taps a channel's own kernel reaches (``weight[:, -1 - lag]`` is lag ``lag``)."""
        lag = torch.arange(self.kernel - 1, -1, -1, device=self.weight.device)
        own = torch.full((self.weight.shape[0], 1), self.channel_kernel, device=self.weight.device)
        if self.identity_channels:
            own[-self.identity_channels:] = self.identity_kernel
        return lag < own

    @torch.no_grad()
    def reset_parameters(self):
        bound = self.channel_kernel**-0.5  # nn.Conv1d's default init for a depthwise kernel
        nn.init.uniform_(self.weight, -bound, bound)
        if self.tap_mask is not None:
            self.weight.masked_fill_(~self.tap_mask, 0.0)
        if self.identity_channels:
            self.weight[-self.identity_channels:] = 0.0
            self.weight[-self.identity_channels:, -1] = 1.0

    def _weight(self):
        """The taps in use: ``weight`` with the masked (dead) taps at exactly 0, so that they get no gradient."""
        return self.weight if self.tap_mask is None else self.weight * self.tap_mask

    def forward(self, x, cache=None, positions=None):
        """``positions [T]`` (packed sequences): each token's position in its own sequence; lags that reach into an
        earlier sequence are dropped, so the conv restarts at every boundary (no cache then)."""
        B, T, D = x.shape
        if positions is not None:
            return self._packed(x, positions), None
        if cache is None:
            cache = x.new_zeros(B, self.kernel - 1, D)
        padded = torch.cat([cache.to(x.dtype), x], dim=1)
        out = F.conv1d(padded.transpose(1, 2), self._weight().unsqueeze(1), groups=D).transpose(1, 2)
        return out, padded[:, padded.shape[1] - (self.kernel - 1):]

    def _packed(self, x, positions):
        # out[t] = sum_j weight[:, k-1-j] * x[t-j], the term kept while lag j stays inside t's sequence
        weight = self._weight()
        out = x * weight[:, -1].to(x.dtype)
        for lag in range(1, self.kernel):
            shifted = F.pad(x, (0, 0, lag, 0))[:, :x.shape[1]]
            keep = (positions >= lag).to(x.dtype).view(1, -1, 1)
            out = out + shifted * keep * weight[:, -1 - lag].to(x.dtype)
        return out


def prev_token_address_bias(config: RamNetConfig, cape_mask: list[bool]):
    """Learnable address biases ``[H, d_k]`` for q and k. On CAPE heads, k favours slot 0 and q slot 1 (digit 1 of
    the least significant factor), with logit margin ``config.cape_prev_token_init``: after the CAPE shift a read
    at ``t`` then meets the write at ``t - 1``, so the head starts as a previous-token copy. Other heads start at 0.
    """
    H, U, d_p = config.n_heads, config.num_factors, config.d_p
    k_bias = torch.zeros(H, U, d_p)
    q_bias = torch.zeros(H, U, d_p)
    heads = torch.tensor(cape_mask)
    k_bias[heads, :, 0] = config.cape_prev_token_init
    q_bias[heads, 1:, 0] = config.cape_prev_token_init
    q_bias[heads, 0, 1] = config.cape_prev_token_init
    return nn.Parameter(q_bias.flatten(1)), nn.Parameter(k_bias.flatten(1))


class RamNetMixer(nn.Module):
    """RAM-Net attention: ``[B, T, d_model] -> [B, T, d_model]`` with a sparse memory of ``M = d_p ** U`` slots
    per head. ``Wq`` and ``Wk`` carry a per-head temperature ``exp(alpha_h)`` (one alpha per head, shared by q
    and k); CAPE heads follow ``config.cape_mask(layer_idx)``. With ``config.write_gate`` each token's K write
    weights are scaled by ``sigmoid(x W_g + config.write_gate_offset)`` per head (``W_g: [d_model, H]``, not in
    the paper): the paper's top-K of a product softmax over M slots always writes at least K/M in all, so no token
    can skip its write. With ``config.write_gate_conv`` the logit ``x W_g`` goes through the short conv first, with
    a kernel of its own if ``config.write_gate_conv_kernel`` is set (a gate window longer or shorter than q/k/v's)."""

    def __init__(self, config: RamNetConfig, layer_idx: int):
        super().__init__()
        self.config = config
        H, d_k, d_v, D = config.n_heads, config.d_k, config.d_v, config.d_model
        self.q_proj = nn.Linear(D, H * d_k, bias=False)
        self.k_proj = nn.Linear(D, H * d_k, bias=False)
        self.v_proj = nn.Linear(D, H * d_v, bias=False)
        self.o_proj = nn.Linear(H * d_v, D, bias=False)
        self.alpha = nn.Parameter(torch.full((H,), float(config.alpha_init)))
        mask = config.cape_mask(layer_idx)
        self.register_buffer("cape", torch.tensor(mask, dtype=torch.bool), persistent=False)
        self.any_cape = any(mask)
        # with write_gate_conv the gate's channels start as the identity: the token-only gate at step 0, and
        # write_gate_conv_kernel (0 = short_conv_kernel) gives them a kernel of their own
        gate_conv = config.write_gate_conv
        self.conv = ShortConv(config.conv_channels, config.short_conv_kernel, identity_channels=H if gate_conv else 0,
                              identity_kernel=(config.write_gate_conv_kernel or None) if gate_conv else None,
                              ) if config.short_conv else None
        self.gate_proj = nn.Linear(D, H, bias=False) if config.write_gate else None
        self.q_bias = self.k_bias = None
        if config.cape_prev_token_init > 0 and self.any_cape:
            self.q_bias, self.k_bias = prev_token_address_bias(config, mask)

    def _qkv(self, x, conv_cache=None, positions=None):
        """``x [B, T, D]`` -> ``q, k [B, T, H, d_k]``, ``v [B, T, H, d_v]``, the new conv cache and, with
        ``write_gate_conv``, the conv'd gate logit ``[B, T, H]`` (else None). ``positions``: per-sequence positions
        of packed sequences (the conv restarts at each)."""
        c = self.config
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        parts = [q, k, v] + ([self.gate_proj(x).to(q.dtype)] if c.write_gate_conv else [])
        gate_logit = None
        if self.conv is not None:
            mixed, conv_cache = self.conv(torch.cat(parts, -1), conv_cache, positions)
            q, k, v, *gate = mixed.split([t.shape[-1] for t in parts], -1)
            gate_logit = gate[0] if gate else None
        # in q's dtype: under autocast q, k, v come out of the projections in the autocast dtype, and an fp32
        # scale would promote q and k alone (the op then sees mixed dtypes)
        scale = self.alpha.exp().unsqueeze(-1).to(q.dtype)  # [H, 1]
        lead = x.shape[:-1]
        q = q.view(*lead, c.n_heads, c.d_k) * scale
        k = k.view(*lead, c.n_heads, c.d_k) * scale
        if self.q_bias is not None:
            q, k = q + self.q_bias.to(q.dtype), k + self.k_bias.to(k.dtype)
        return q, k, v.view(*lead, c.n_heads, c.d_v), conv_cache, gate_logit

    def _gate(self, x, logit=None):
        """``x [..., D]`` -> the write gate ``[..., H]`` in fp32 (fp64 in an fp64 model), or None without
        ``config.write_gate``. ``logit``: the conv'd logit of ``write_gate_conv`` (``_qkv``), used instead of
        ``x``'s own."""
        if self.gate_proj is None:
            return None
        g = self.gate_proj(x) if logit is None else logit  # the model's dtype, or autocast's; fp64 stays fp64
        g = g if g.dtype == torch.float64 else g.float()
        # a fixed offset, not a learned bias: it keeps the parameters (and older checkpoints) those of the
        # offset-free gate, and with LayerNorm (the default) the pre-norm's bias already gives the logit a learnable
        # constant
        return torch.sigmoid(g + self.config.write_gate_offset)

    def _op_kwargs(self):
        c = self.config
        return dict(num_factors=c.num_factors, top_k=c.top_k, gamma=c.gamma, tau=c.tau, eps=c.eps,
                    cape=self.cape if self.any_cape else None)

    def forward(self, x, state=None, *, offset: int = 0, output_final_state: bool = False, cu_seqlens=None):
        """``x [B, T, D]``; ``state`` is ``(S, z, conv_cache)`` or None. Returns ``(y [B, T, D], state or None)``.
        ``cu_seqlens`` (packed sequences, ``B = 1``, no state): memory, conv and CAPE positions restart at each."""
        S_z = None if state is None else state[:2]
        conv_cache = None if state is None else state[2]
        positions = None if cu_seqlens is None else positions_in_sequence(x.shape[1], cu_seqlens, 0)
        q, k, v, conv_cache, gate_logit = self._qkv(x, conv_cache, positions)
        o, final = ram_attention(q, k, v, offset=offset, initial_state=S_z, output_final_state=output_final_state,
                                 proxy_eps=self.config.proxy_eps, cu_seqlens=cu_seqlens,
                                 write_gate=self._gate(x, gate_logit),
                                 **self._op_kwargs())
        y = self.o_proj(o.flatten(-2))
        return y, (None if final is None else (final[0], final[1], conv_cache))

    def step_functional(self, x, state, position):
        """Out-of-place decode (for export): ``x [B, D]``, ``state = (S, z, conv or None)``, ``position`` int64
        ``[B]``. Returns ``(y [B, D], new_state)``."""
        S, z, conv_cache = state
        q, k, v, new_cache, gate_logit = self._qkv(x.unsqueeze(1), conv_cache)
        gate = self._gate(x, None if gate_logit is None else gate_logit[:, 0])
        o, S_new, z_new = ram_step_functional(q[:, 0], k[:, 0], v[:, 0], S, z, position=position,
                                              proxy_eps=self.config.proxy_eps, write_gate=gate,
                                              **self._op_kwargs())
        return self.o_proj(o.flatten(-2)), (S_new, z_new, new_cache)

    def step(self, x, state, position):
        """Decode one token ``x [B, D]``; updates ``state = (S, z, conv_cache)`` in place. Returns ``[B, D]``."""
        S, z, conv_cache = state
        q, k, v, new_cache, gate_logit = self._qkv(x.unsqueeze(1), conv_cache)
        gate = self._gate(x, None if gate_logit is None else gate_logit[:, 0])
        o = ram_step(q[:, 0], k[:, 0], v[:, 0], S, z, position=position, write_gate=gate,
                     **self._op_kwargs())
        if conv_cache is not None:  # after the memory: a refused step leaves the whole layer state as it was
            conv_cache.copy_(new_cache)
        return self.o_proj(o.flatten(-2))
