"""``RamNetHFForCausalLM``: a ``transformers`` causal LM around the native :class:`ramnet.RamNetForCausalLM`.

There is one implementation: the HF model holds the native model as its submodule ``model`` (state-dict keys
``model.embed.weight``, ``model.blocks.{i}...``, ``model.norm...``, ``model.lm_head.weight``) and runs its
``features`` (prefill), ``decode_step`` (one token per row on a cache) and ``lm_head``. ``hf_model.native`` is
that module, so both views share every parameter.

Padding: only left padding (``attention_mask`` rows of zeros then ones). Rows with padding are prefilled in groups
of equal real length without their pad columns, so pad tokens never enter the memory ``S``/``z`` or the short-conv
cache, and each row's CAPE positions count from its first real token; the cache then keeps one position per row.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationConfig, GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast

from ramnet.cache import RamCache
from ramnet.config import RamNetConfig
from ramnet.layers import RMSNorm, RamNetMixer, ShortConv, prev_token_address_bias
from ramnet.model import RamNetForCausalLM

from .cache import RamNetHFCache
from .config import RamNetHFConfig

IGNORE_INDEX = -100
# transformers renamed the output's cache field from `past_key_values` (5.17) to `cache` (5.24); generate reads
# the cache back from whichever field the installed version declares
_CACHE_FIELD = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
# model fields whose names are also generation parameters: `top_k` is the memory's Top-K, not sampling's top-k
_NOT_GENERATION_FIELDS = ("top_k",)


class _RamNetGenerationConfig(GenerationConfig):
    """Only its ``from_model_config`` differs: transformers seeds a model's generation config from the model
    config's fields, which would turn the memory's ``top_k`` into a sampling top-k."""

    @classmethod
    def from_model_config(cls, model_config) -> GenerationConfig:
        values = model_config if isinstance(model_config, dict) else model_config.to_dict()
        return GenerationConfig.from_model_config(
            {k: v for k, v in values.items() if k not in _NOT_GENERATION_FIELDS})


class RamNetHFForCausalLM(PreTrainedModel, GenerationMixin):
    """RAM-Net for ``transformers``: ``forward``, ``generate``, ``save_pretrained`` / ``from_pretrained``.

    Build it from a :class:`RamNetHFConfig`, wrap a native model with :meth:`from_native`, or load a native
    checkpoint directory (``model.safetensors`` + ``config.json`` from ``ramnet train``) with
    :meth:`from_native_checkpoint`. A fresh ``RamNetHFForCausalLM(config)`` has the native initialisation.
    """

    config_class = RamNetHFConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules = ["RamNetBlock"]
    # gradient_checkpointing_enable() reaches the native model's per-block activation checkpointing
    supports_gradient_checkpointing = True
    # used only when config.tie_word_embeddings (= tie_embeddings) is True
    _tied_weights_keys = {"model.lm_head.weight": "model.embed.weight"}
    # the memory cannot be rolled back, so transformers refuses assisted decoding
    _is_stateful = True
    generation_config_class = _RamNetGenerationConfig

    def __init__(self, config: RamNetHFConfig):
        super().__init__(config)
        self.model = RamNetForCausalLM(config.to_ramnet_config())
        # the native constructor has initialised every parameter: mark them so that post_init's weight
        # initialisation keeps them (a fresh model then equals RamNetForCausalLM under the same seed). Not on the
        # meta device (from_pretrained): there the flag would hide the parameters a checkpoint lacks from loading
        for p in self.model.parameters():
            if p.device.type != "meta":
                p._is_hf_initialized = True
        self.post_init()

    # ---- native conversion ----------------------------------------------------------------------------------
    @property
    def native(self) -> RamNetForCausalLM:
        """The native model (same parameters, no copy)."""
        return self.model

    @classmethod
    def from_native(cls, model: RamNetForCausalLM, **hf_kwargs) -> "RamNetHFForCausalLM":
        """Wrap a native model without copying its parameters; ``hf_kwargs`` sets HF-only config fields
        (``eos_token_id``, ``pad_token_id``, ...)."""
        if not isinstance(model, RamNetForCausalLM):
            raise TypeError(f"model must be a ramnet.RamNetForCausalLM, got {type(model).__name__}")
        config = RamNetHFConfig.from_ramnet_config(model.config, **hf_kwargs)
        with torch.device("meta"):  # the placeholder native model is replaced at once: allocate nothing
            hf = cls(config)
        hf.model = model
        return hf.train(model.training)

    @classmethod
    def from_native_checkpoint(cls, path, map_location: str = "cpu", **hf_kwargs) -> "RamNetHFForCausalLM":
        """Load a native checkpoint directory (``model.safetensors`` and a ``RamNetConfig`` ``config.json``, as
        ``ramnet train`` writes). To write one back: ``ramnet.checkpoint.write_model(hf.native, path)``."""
        from ramnet.checkpoint import load_checkpoint

        return cls.from_native(load_checkpoint(path, map_location=map_location), **hf_kwargs)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """transformers' ``from_pretrained``; a directory without ``generation_config.json`` gets its generation
        config from ``config.json`` minus the memory's ``top_k`` (transformers would read it as sampling's)."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if getattr(model.generation_config, "_from_model_config", False):
            model.generation_config = _RamNetGenerationConfig.from_model_config(model.config)
        return loaded

    # ---- transformers plumbing -------------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.model.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.model.lm_head = value

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # generate must not make a DynamicCache: forward creates a RamNetHFCache

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise what a checkpoint did not provide, with the native constructor's rules. transformers calls
        this after loading (its ``_is_hf_initialized`` flags keep loaded tensors) and in ``post_init``."""
        native_cfg: RamNetConfig = self.model.config
        if isinstance(module, RamNetMixer):
            # the CAPE mask is a non-persistent buffer: never in a checkpoint, left uninitialised by loading
            layer = next(i for i, block in enumerate(self.model.blocks) if block.mixer is module)
            mask = native_cfg.cape_mask(layer)
            module.cape.copy_(torch.tensor(mask, dtype=torch.bool))
            nn.init.constant_(module.alpha, native_cfg.alpha_init)
            if module.q_bias is not None:
                q_bias, k_bias = prev_token_address_bias(native_cfg, mask)
                for param, value in ((module.q_bias, q_bias), (module.k_bias, k_bias)):
                    if not getattr(param, "_is_hf_initialized", False):
                        param.copy_(value)
        elif isinstance(module, (nn.Linear, nn.Embedding)):
            self.model._init_weights(module)
        elif isinstance(module, ShortConv):
            # the tap mask of write_gate_conv_kernel is a non-persistent buffer: never in a checkpoint, left unset by
            # loading, which therefore calls this after loading too: then keep the loaded weight (its gate taps)
            if module.tap_mask is not None:
                module.tap_mask.copy_(module.live_taps())
            if module.tap_mask is None or not getattr(module.weight, "_is_hf_initialized", False):
                module.reset_parameters()  # its own initialisation (the gate channels' identity start included)
        elif isinstance(module, nn.LayerNorm):
            module.reset_parameters()
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)

    # ---- forward ---------------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
                past_key_values: RamNetHFCache | None = None, labels: torch.LongTensor | None = None,
                use_cache: bool | None = None, return_dict: bool | None = None, logits_to_keep: int = 0,
                inputs_embeds: torch.Tensor | None = None, output_attentions: bool | None = None,
                output_hidden_states: bool | None = None, cache: RamNetHFCache | None = None):
        """Run new tokens, continuing ``past_key_values`` when it holds a state.

        Args:
            input_ids: int64 ``[B, T]``, the tokens not yet in the cache.
            attention_mask: ``[B, T]`` or ``[B, past + T]`` of 0/1 (``past = cache.get_seq_length()``), left
                padding only; a row must have a real token in every call. None = no padding.
            past_key_values: a :class:`RamNetHFCache`, updated in place (``cache`` is the same argument under the
                name later transformers 5.x releases use).
            labels: int64 ``[B, T]``; the loss is the mean next-token cross-entropy over labels != -100 (label
                ``t + 1`` scored by the logits at ``t``); labels after a pad column are ignored.
            use_cache: return (and fill) a cache; default ``config.use_cache`` unless ``labels`` are given (a
                training step does not need the final memory, which is as large as the model's state).
            logits_to_keep: > 0 computes logits for the last ``logits_to_keep`` positions only.
        Returns:
            ``CausalLMOutputWithPast`` with ``logits [B, T or logits_to_keep, V]`` (zeros at pad positions), ``loss``
            and the cache; or a tuple ``(loss?, logits, cache?)`` with ``return_dict=False``.

        One new token per row on a filled cache runs the in-place decode kernel (``decode_step``), without
        autograd; everything else runs the parallel ``features`` path.
        """
        if inputs_embeds is not None:
            raise ValueError("RamNetHFForCausalLM takes input_ids only (inputs_embeds is not supported)")
        if output_attentions or output_hidden_states:
            raise ValueError("RamNetHFForCausalLM has no attention maps or per-layer hidden states to output")
        if past_key_values is not None and cache is not None:
            raise ValueError("pass the cache as past_key_values or as cache, not both")
        cache = past_key_values if past_key_values is not None else cache
        _check_input_ids(input_ids, self.config.vocab_size)
        if cache is not None and not isinstance(cache, RamNetHFCache):
            if isinstance(cache, Cache) and cache.get_seq_length() == 0:
                cache = None  # an empty generic cache (made by a caller who did not know): replace it
            else:
                raise TypeError(f"past_key_values must be a RamNetHFCache, got {type(cache).__name__}")
        if use_cache is None:
            use_cache = self.config.use_cache and labels is None
        if cache is None and use_cache:
            cache = RamNetHFCache(len(self.model.blocks))
        has_state = cache is not None and cache.has_state
        if has_state and cache.batch_size != input_ids.shape[0]:
            raise ValueError(f"input_ids has batch {input_ids.shape[0]}, the cache {cache.batch_size}")
        seen = cache.seen_tokens if cache is not None else 0
        mask, lengths = _check_attention_mask(attention_mask, input_ids, seen, has_state)
        if labels is not None and logits_to_keep:
            raise ValueError("logits_to_keep must be 0 when labels are given (the loss needs every position)")

        if has_state and input_ids.shape[1] == 1:
            logits = self._decode_one(input_ids[:, 0], cache).unsqueeze(1)
        else:
            hidden = self._run_rows(input_ids, lengths, cache)
            if logits_to_keep:
                hidden = hidden[:, -logits_to_keep:]
            logits = self.model.lm_head(hidden)

        loss = None
        if labels is not None:
            loss = _causal_lm_loss(logits, labels, mask)
        out_cache = cache  # a caller's cache is returned even with use_cache=False: it was updated in place
        if return_dict is None:
            return_dict = self.config.return_dict
        if not return_dict:
            return tuple(t for t in (loss, logits, out_cache) if t is not None)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{_CACHE_FIELD: out_cache})

    def _decode_one(self, tokens: torch.Tensor, cache: RamNetHFCache) -> torch.Tensor:
        """``tokens`` int64 ``[B]`` -> logits ``[B, V]``; the native in-place decode step with per-row positions."""
        native_cache = RamCache(cache.layer_states(), cache.positions)
        logits = self.model.decode_step(tokens, native_cache)
        cache.positions = native_cache.position
        cache.seen_tokens += 1
        return logits

    def _run_rows(self, input_ids: torch.Tensor, lengths: list[int], cache: RamNetHFCache | None) -> torch.Tensor:
        """Hidden states ``[B, T, D]`` (zeros at pad columns) of ``input_ids`` with ``lengths[b]`` real (last)
        tokens per row; fills ``cache`` when given. Rows are run in groups of equal (length, position)."""
        B, T = input_ids.shape
        has_state = cache is not None and cache.has_state
        starts = cache.positions.tolist() if has_state else [0] * B
        states = cache.layer_states() if has_state else None
        want_states = cache is not None
        groups: dict[tuple[int, int], list[int]] = {}
        for row, key in enumerate(zip(lengths, starts)):
            groups.setdefault(key, []).append(row)
        if len(groups) == 1 and lengths[0] == T:  # the common case: one call over the whole batch
            hidden, new_states = self.model.features(input_ids, states, offset=starts[0], return_states=want_states)
        else:
            hidden = None
            new_states = None
            for (length, start), rows in groups.items():
                idx = torch.tensor(rows, device=input_ids.device)
                sub_states = None if states is None else [_select(s, idx) for s in states]
                h, st = self.model.features(input_ids[idx, T - length:], sub_states, offset=start,
                                            return_states=want_states)
                if hidden is None:
                    hidden = h.new_zeros(B, T, h.shape[-1])
                    if want_states:
                        new_states = [tuple(None if t is None else t.new_empty((B, *t.shape[1:])) for t in s)
                                      for s in st]
                hidden[idx, T - length:] = h
                if want_states:
                    for full, part in zip(new_states, st):
                        for f, p in zip(full, part):
                            if f is not None:
                                f[idx] = p.detach()
        if cache is not None:
            positions = torch.tensor(starts, dtype=torch.int64) + torch.tensor(lengths, dtype=torch.int64)
            cache.set_states(new_states, positions, cache.seen_tokens + T)
        return hidden

    # ---- generate --------------------------------------------------------------------------------------------
    def prepare_inputs_for_generation(self, input_ids: torch.LongTensor, past_key_values=None, attention_mask=None,
                                      use_cache: bool = True, next_sequence_length: int | None = None, cache=None,
                                      inputs_embeds=None, logits_to_keep: int | None = None, **kwargs):
        """``generate`` passes the whole sequence so far; a filled cache takes only the columns it has not seen.
        Accepts the cache as ``past_key_values`` (transformers 5.17) or ``cache`` (later 5.x)."""
        if inputs_embeds is not None:
            raise ValueError("RamNetHFForCausalLM generates from input_ids only (inputs_embeds is not supported)")
        if past_key_values is not None and cache is not None:
            raise ValueError("pass the cache as past_key_values or as cache, not both")
        cache = past_key_values if past_key_values is not None else cache
        if isinstance(cache, RamNetHFCache) and cache.has_state:
            new = next_sequence_length if next_sequence_length is not None else input_ids.shape[1] - cache.seen_tokens
            if new < 1:
                raise ValueError(f"input_ids must hold the whole sequence: the cache has consumed {cache.seen_tokens} "
                                 f"columns and input_ids has {input_ids.shape[1]}")
            input_ids = input_ids[:, -new:]
        if self.device.type != "meta":  # newer generate leaves moving the inputs to the model to this method
            input_ids = input_ids.to(self.device)
            attention_mask = None if attention_mask is None else attention_mask.to(self.device)
        inputs = {"input_ids": input_ids.contiguous(), "attention_mask": attention_mask, "past_key_values": cache,
                  "use_cache": use_cache}
        if logits_to_keep is not None:
            inputs["logits_to_keep"] = logits_to_keep
        return inputs


def _select(state, idx):
    return tuple(None if t is None else t.index_select(0, idx) for t in state)


def _check_input_ids(input_ids, vocab_size: int) -> None:
    if input_ids is None:
        raise ValueError("input_ids is required")
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.dtype not in (torch.int64,
                                                                                                    torch.int32):
        raise ValueError(f"input_ids must be an int64 (or int32) tensor [B, T], got "
                         f"{getattr(input_ids, 'shape', input_ids)!r}")
    if input_ids.shape[0] < 1 or input_ids.shape[1] < 1:
        raise ValueError(f"input_ids must be non-empty, got shape {tuple(input_ids.shape)}")
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"input_ids must be in [0, vocab_size={vocab_size}), got values in [{low}, {high}]")


def _check_attention_mask(mask, input_ids, seen: int, has_state: bool):
    """Validate a left-padding mask. Returns ``(mask of the current columns [B, T] or None, real tokens per row
    in the current columns as a list)``."""
    B, T = input_ids.shape
    if mask is None:
        return None, [T] * B
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[0] != B:
        raise ValueError(f"attention_mask must be a 2-D tensor [B={B}, T], got {getattr(mask, 'shape', mask)!r}")
    if mask.shape[1] not in (T, seen + T):
        raise ValueError(f"attention_mask must have {T} (new tokens) or {seen + T} (cached + new) columns, got "
                         f"{mask.shape[1]}")
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise ValueError(f"attention_mask must be a 0/1 integer or bool tensor, got {mask.dtype}")
    mask = mask.long()
    if ((mask != 0) & (mask != 1)).any():
        raise ValueError("attention_mask must hold only 0 and 1")
    if (mask[:, 1:] < mask[:, :-1]).any():
        raise ValueError("attention_mask must be left padding (zeros, then ones): right padding and holes are not "
                         "supported")
    current = mask[:, -T:]
    lengths = current.sum(1).tolist()
    if min(lengths) < 1:
        raise ValueError("every row needs at least one real token (attention_mask 1) in each forward")
    if has_state and min(lengths) < T:
        raise ValueError("padding after tokens already in the cache is a hole; only the prompt may be left-padded")
    return current, lengths


def _causal_lm_loss(logits, labels, mask):
    """Mean cross-entropy of ``labels[:, 1:]`` under ``logits[:, :-1]``, ignoring -100 and labels whose predicting
    position is padding (its logits are zeros, not a prediction)."""
    if labels.shape != logits.shape[:2]:
        raise ValueError(f"labels must have shape {tuple(logits.shape[:2])}, got {tuple(labels.shape)}")
    labels = labels.to(logits.device)[:, 1:]
    if mask is not None:
        labels = labels.masked_fill(mask[:, :-1].to(labels.device) == 0, IGNORE_INDEX)
    logits = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32))  # half logits: fp32 loss
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)
