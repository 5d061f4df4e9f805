"""``RamNetHFCache``: the RAM-Net decode state as a ``transformers`` ``Cache``.

A RAM-Net layer keeps no keys or values: its whole past is a fixed-size memory, ``(S [B, H, M, d_v] fp32,
z [B, H, M] fp32, conv [B, conv_window - 1, C] or None)`` (the native model's per-layer state). The cache holds that
tuple per layer plus two counters:

- ``positions`` int64 ``[B]``: each row's next position, counting real tokens only (left padding is not a
  position), so that CAPE positions start at a row's first real token;
- ``seen_tokens``: how many input columns (padding included) the cache has consumed; this is what
  ``get_seq_length`` answers, because ``generate`` compares it with the length of ``input_ids``.

Decode updates ``S``, ``z`` and ``conv`` in place, so the cache owns private, contiguous copies of them.
"""
from __future__ import annotations

import torch
from transformers.cache_utils import Cache


class RamNetLayerState:
    """One layer's memory ``(S, z, conv)``; all None before the first forward."""

    # read by transformers' Cache helpers (early_initialization, is_initialized, offloading, ...)
    supports_early_init = False
    is_compileable = False
    is_croppable = False
    is_sliding = False

    def __init__(self):
        self.S = self.z = self.conv = None

    @property
    def is_initialized(self) -> bool:
        return self.S is not None

    def get_max_length(self) -> int:
        return -1  # a fixed-size memory has no length limit

    def as_tuple(self):
        return self.S, self.z, self.conv

    def reset(self):
        self.S = self.z = self.conv = None

    def offload(self):  # nothing is offloaded: the memory is read and written by every token
        pass

    def prefetch(self):
        pass

    def __repr__(self):
        return "RamNetLayerState()" if self.S is None else f"RamNetLayerState(S={tuple(self.S.shape)})"


class RamNetHFCache(Cache):
    """Per-layer ``(S, z, conv)`` memories, per-row positions and the consumed column count.

    ``RamNetHFCache(num_layers)`` (or ``RamNetHFCache(config=config)``) is empty; the model fills it on its first
    forward. Beam search works through :meth:`reorder_cache` (``index_select`` along the batch on every tensor and
    on ``positions``). It cannot be cropped: a memory that has absorbed a token cannot forget it.
    """

    def __init__(self, num_layers: int | None = None, *, config=None):
        if (num_layers is None) == (config is None):
            raise ValueError("RamNetHFCache needs exactly one of num_layers or config")
        if config is not None:  # a RamNetHFConfig or a native RamNetConfig
            num_layers = getattr(config, "num_hidden_layers", None) or config.n_layers
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be an int >= 1, got {num_layers!r}")
        super().__init__(layers=[RamNetLayerState() for _ in range(num_layers)])
        self.positions: torch.Tensor | None = None
        self.seen_tokens = 0

    # ---- state ----------------------------------------------------------------------------------------------
    @property
    def has_state(self) -> bool:
        return self.layers[0].S is not None

    def layer_states(self) -> list:
        """``[(S, z, conv), ...]``, one per layer: the cache's own tensors (decode mutates them in place)."""
        if not self.has_state:
            raise ValueError("the cache is empty (no forward has filled it yet)")
        return [layer.as_tuple() for layer in self.layers]

    def set_states(self, states, positions: torch.Tensor, seen_tokens: int) -> None:
        """Store private copies of ``states`` (per-layer ``(S, z, conv)``, detached: a cache never carries a
        graph), ``positions`` int64 ``[B]`` and ``seen_tokens``."""
        if len(states) != len(self.layers):
            raise ValueError(f"states must have one entry per layer ({len(self.layers)}), got {len(states)}")
        batch = states[0][0].shape[0]
        if positions.dim() != 1 or positions.shape[0] != batch:
            raise ValueError(f"positions must have shape [{batch}], got {tuple(positions.shape)}")
        for layer, state in zip(self.layers, states):
            if len(state) != 3:
                raise ValueError("each layer state must be a tuple (S, z, conv or None)")
            S, z, conv = (None if t is None else t.detach().contiguous().clone() for t in state)
            if S.shape[0] != batch or z.shape[0] != batch or (conv is not None and conv.shape[0] != batch):
                raise ValueError("every state tensor must have the same batch size")
            layer.S, layer.z, layer.conv = S, z, conv
        self.positions = positions.detach().to(device=states[0][0].device, dtype=torch.int64).clone()
        self.seen_tokens = int(seen_tokens)

    def _map_batch(self, fn) -> None:
        """Apply ``fn`` (a batch-dim op) to every state tensor and to ``positions``."""
        if not self.has_state:
            return
        for layer in self.layers:
            layer.S, layer.z = fn(layer.S), fn(layer.z)
            if layer.conv is not None:
                layer.conv = fn(layer.conv)
        self.positions = fn(self.positions)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: row ``i`` becomes old row ``beam_idx[i]`` (``beam_idx`` int64 ``[B]``)."""
        self._map_batch(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._map_batch(lambda t: t[indices.to(t.device)].contiguous())

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._map_batch(lambda t: t.repeat_interleave(repeats, dim=0))

    def reset(self) -> None:
        for layer in self.layers:
            layer.reset()
        self.positions = None
        self.seen_tokens = 0

    def crop(self, max_length: int) -> None:
        if max_length == 0 or max_length == self.seen_tokens:  # removes nothing in either reading of the argument
            return
        raise NotImplementedError("RamNetHFCache cannot be cropped: a RAM-Net memory cannot forget tokens it has "
                                  "absorbed (assisted decoding and rollbacks are not supported)")

    def update(self, *args, **kwargs):
        raise NotImplementedError("RamNetHFCache holds memories, not keys and values; RamNetHFForCausalLM fills it")

    # ---- what transformers asks a cache -------------------------------------------------------------------
    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Input columns consumed so far (left padding included)."""
        return self.seen_tokens

    def get_max_length(self, layer_idx: int | None = None) -> int:
        return -1

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return self.seen_tokens + query_length, 0

    def has_previous_state(self, layer_idx: int | None = None, state_idx: int | None = None) -> bool:
        return self.has_state

    @property
    def batch_size(self) -> int:
        return -1 if self.positions is None else self.positions.shape[0]

    @property
    def is_linear(self) -> list[bool]:
        # a recurrent state: generate then never slices inputs by get_seq_length itself (the model does)
        return [True] * len(self.layers)

    @property
    def is_compileable(self) -> bool:
        return False

    @property
    def is_croppable(self) -> bool:
        return False

    @property
    def is_sliding(self) -> list[bool]:
        return [False] * len(self.layers)

    def __repr__(self):
        return (f"RamNetHFCache(layers={len(self.layers)}, batch={self.batch_size}, seen_tokens={self.seen_tokens}, "
                f"positions={None if self.positions is None else self.positions.tolist()})")
