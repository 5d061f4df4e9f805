"""RAM-Net language model: pre-norm blocks ``x += Mixer(Norm(x)); x += SwiGLU(Norm(x))``, LM head, ``generate``."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ramnet.ops import checks as C

from .cache import RamCache
from .config import RamNetConfig
from .layers import RamNetMixer, SwiGLU, make_norm
from .losses import IGNORE_INDEX, chunked_cross_entropy, upcast_logits
from .sampling import check_input_ids, decode_loop, sampling_args


class RamNetBlock(nn.Module):
    def __init__(self, config: RamNetConfig, layer_idx: int):
        super().__init__()
        self.mixer_norm = make_norm(config)
        self.mixer = RamNetMixer(config, layer_idx)
        self.mlp_norm = make_norm(config)
        self.mlp = SwiGLU(config.d_model, config.d_ff)

    def forward(self, x, state=None, *, offset: int = 0, output_final_state: bool = False, cu_seqlens=None):
        y, state = self.mixer(self.mixer_norm(x), state, offset=offset, output_final_state=output_final_state,
                              cu_seqlens=cu_seqlens)
        x = x + y
        return x + self.mlp(self.mlp_norm(x)), state

    def step(self, x, state, position):
        x = x + self.mixer.step(self.mixer_norm(x), state, position)
        return x + self.mlp(self.mlp_norm(x))

    def step_functional(self, x, state, position):
        y, state = self.mixer.step_functional(self.mixer_norm(x), state, position)
        x = x + y
        return x + self.mlp(self.mlp_norm(x)), state


class RamNetForCausalLM(nn.Module):
    """``input_ids [B, T] -> logits [B, T, vocab]``; ``generate`` prefills once, then decodes with ``ram_step``."""

    def __init__(self, config: RamNetConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(RamNetBlock(config, i) for i in range(config.n_layers))
        self.norm = make_norm(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.activation_checkpointing = False
        self._gradient_checkpointing_func = None  # transformers sets its own (kwargs, CPU offload) here

    @property
    def gradient_checkpointing(self) -> bool:
        """The name transformers sets (``gradient_checkpointing_enable``): an alias of
        ``activation_checkpointing``."""
        return self.activation_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, enabled) -> None:
        self.set_activation_checkpointing(bool(enabled))

    def set_activation_checkpointing(self, enabled: bool = True) -> "RamNetForCausalLM":
        """Recompute each block in the backward instead of keeping its activations (``torch.utils.checkpoint``,
        non-reentrant): training memory keeps one ``[B, T, d_model]`` input per block plus one block's
        activations, for about one more forward of compute. Applies in training mode with grad enabled. Off by
        default. Returns the model."""
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be a bool, got {enabled!r}")
        self.activation_checkpointing = enabled
        return self

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.init_std)

    def num_parameters(self, exclude_embeddings: bool = True) -> int:
        total = sum(p.numel() for p in self.parameters())
        return total - self.embed.weight.numel() if exclude_embeddings and not self.config.tie_embeddings else total

    def forward(self, input_ids, states=None, *, offset: int = 0, return_states: bool = False, cu_seqlens=None):
        """``input_ids`` int64 ``[B, T]``; ``states``: per-layer ``(S, z, conv)`` or None; ``offset``: position of
        the first token. Returns ``logits [B, T, V]``, or ``(logits, states)`` with ``return_states``.
        ``cu_seqlens``: int64 ``[N + 1]`` offsets of N documents packed in ``input_ids [1, T]`` (as in fla and
        FlashAttention): the memory, the short conv and the CAPE positions restart at each document."""
        hidden, new_states = self.features(input_ids, states, offset=offset, return_states=return_states,
                                           cu_seqlens=cu_seqlens)
        logits = self.lm_head(hidden)
        return (logits, new_states) if return_states else logits

    def features(self, input_ids, states=None, *, offset: int = 0, return_states: bool = False, cu_seqlens=None):
        """Final-norm hidden states ``[B, T, D]`` (before the LM head) and the per-layer states (or Nones)."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape [B, T], got {tuple(input_ids.shape)}")
        if cu_seqlens is not None and (states is not None or return_states or offset != 0):
            raise ValueError("cu_seqlens (packed documents, each from an empty memory) cannot be combined with "
                             "states, return_states or an offset")
        if states is not None and len(states) != len(self.blocks):
            raise ValueError(f"states must have one entry per layer ({len(self.blocks)}), got {len(states)}")
        x = self.embed(input_ids)
        new_states = []
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for i, block in enumerate(self.blocks):
            state = None if states is None else states[i]
            kwargs = dict(offset=offset, output_final_state=return_states, cu_seqlens=cu_seqlens)
            if recompute:
                if self._gradient_checkpointing_func is not None:
                    x, st = self._gradient_checkpointing_func(block, x, state, **kwargs)
                else:
                    x, st = checkpoint(block, x, state, use_reentrant=False, **kwargs)
            else:
                x, st = block(x, state, **kwargs)
            new_states.append(st)
        return self.norm(x), new_states

    def loss(self, input_ids, targets, *, chunk_size: int | None = None, ignore_index: int = IGNORE_INDEX,
             cu_seqlens=None):
        """Mean cross-entropy of the logits of ``input_ids [B, T]`` against ``targets`` int64 ``[B, T]`` (entries
        equal to ``ignore_index`` are skipped), computed in fp32 (fp64 for an fp64 model). ``chunk_size``: None
        builds the full ``[B, T, V]`` logits; an int projects that many tokens at a time and never holds all the
        logits (:func:`ramnet.losses.chunked_cross_entropy`, for long context). ``cu_seqlens``: packed documents,
        as in :meth:`forward` (mark each document's last target ``ignore_index`` so that none predicts the next)."""
        if not isinstance(targets, torch.Tensor) or tuple(targets.shape) != tuple(input_ids.shape):
            raise ValueError(f"targets must have input_ids' shape {tuple(input_ids.shape)}, got "
                             f"{tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__}")
        hidden, _ = self.features(input_ids, cu_seqlens=cu_seqlens)
        if chunk_size is None:
            logits = upcast_logits(self.lm_head(hidden))
            return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=ignore_index)
        return chunked_cross_entropy(hidden, self.lm_head.weight, targets, chunk_size=chunk_size,
                                     ignore_index=ignore_index)

    def decode_functional(self, token, states, position):
        """Out-of-place decode for export: ``token`` int64 ``[B]``, per-layer ``(S, z, conv or None)``,
        ``position`` int64 ``[B]``. Returns ``(logits [B, V], new_states)``; nothing is mutated."""
        x = self.embed(token)
        new_states = []
        for block, state in zip(self.blocks, states):
            x, state = block.step_functional(x, state, position)
            new_states.append(state)
        return self.lm_head(self.norm(x)), new_states

    @torch.no_grad()
    def prefill(self, input_ids, cache: RamCache | None = None):
        """Run a prompt ``[B, T]`` (continuing ``cache`` if given). Returns ``(logits [B, T, V], RamCache)``."""
        offset = 0 if cache is None else cache.position
        logits, states = self(input_ids, None if cache is None else cache.layers, offset=offset, return_states=True)
        return logits, RamCache.from_states(states, offset + input_ids.shape[1])

    def _check_cache(self, token, cache: RamCache) -> None:
        """Every layer's state as the in-place step needs it, before layer 0 is written: shapes, dtypes, device,
        writability, and no memory shared within a layer or between layers."""
        c = self.config
        if len(cache.layers) != len(self.blocks):
            raise ValueError(f"decode cache has {len(cache.layers)} layers, the model {len(self.blocks)}")
        B, seen = token.shape[0], {}
        for i, (S, z, conv) in enumerate(cache.layers):
            try:
                C.check_state(S, z, B, c.n_heads, c.num_slots, c.d_v, token.device)
                C.check_inplace_state(S, z)
                if (conv is None) == c.short_conv:
                    raise ValueError("the conv cache must be a tensor exactly when config.short_conv is set")
                if conv is not None:
                    want = (B, c.conv_window - 1, c.conv_channels)
                    C.check_same("conv", tuple(conv.shape), "(B, conv_window - 1, channels)", want, "shape")
                    C.check_inplace_state(conv, z, names=("conv", "z"))
                for name, t in (("S", S), ("z", z), ("conv", conv)):
                    if t is not None:
                        ptr = t.untyped_storage().data_ptr()
                        if ptr in seen:
                            raise ValueError(f"{name} shares memory with {seen[ptr]}")
                        seen[ptr] = f"layer {i}'s {name}"
            except (ValueError, RuntimeError, TypeError) as error:
                raise type(error)(f"decode cache layer {i}: {error}") from None

    @torch.no_grad()
    def decode_step(self, token, cache: RamCache):
        """One token ``[B]`` -> ``logits [B, V]``; updates ``cache`` in place. Every layer's state is checked
        before the first is written, so a refused step leaves the whole cache (and its position) as it was."""
        # traced (compiled) decode: ramnet::ram_step_ checks each layer on the real tensors (a write-gated model's
        # step runs its checks in Python, where tracing sees them)
        if not C.tracing():
            self._check_cache(token, cache)
        x = self.embed(token)
        for block, state in zip(self.blocks, cache.layers):
            x = block.step(x, state, cache.position)
        cache.position += 1
        return self.lm_head(self.norm(x))

    @torch.no_grad()
    def generate(self, input_ids, max_new_tokens: int, *, temperature: float = 0.0, top_k: int | None = None,
                 top_p: float | None = None, eos_token_id=None, pad_token_id: int | None = None,
                 generator: torch.Generator | None = None):
        """Greedy (``temperature=0``) or sampled continuation: prefill once, then one ``ram_step`` per token.

        ``input_ids`` int64 ``[B, T]`` -> ``[B, T + n]`` with ``n <= max_new_tokens``: generation stops early once
        every row has produced an ``eos_token_id`` (an id or a list), and finished rows are filled with
        ``pad_token_id`` (default: the first eos id). ``top_k`` / ``top_p`` filter the sampled distribution
        (``ramnet.sampling``); ``generator`` makes sampling reproducible without touching the global RNG."""
        args = sampling_args(max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                             eos_token_id=eos_token_id, pad_token_id=pad_token_id, vocab_size=self.config.vocab_size)
        check_input_ids(input_ids, self.config.vocab_size)
        if max_new_tokens == 0:
            return input_ids
        logits, cache = self.prefill(input_ids)
        return decode_loop(input_ids, logits[:, -1], lambda token: self.decode_step(token, cache), args, generator)
