"""Decode cache: per-layer memory ``(S [B,H,M,d_v], z [B,H,M], conv [B,conv_window-1,C] or None)`` plus position,
where ``C = config.conv_channels`` and ``conv_window = config.conv_window``."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RamCache:
    """Mutable decode state. ``layers[i] = (S, z, conv_cache)``; ``position`` is the next token's position."""

    layers: list
    position: int

    @property
    def batch_size(self) -> int:
        return self.layers[0][0].shape[0]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for layer in self.layers for t in layer if t is not None)

    def clone(self) -> "RamCache":
        return RamCache([tuple(None if t is None else t.clone() for t in layer) for layer in self.layers],
                        self.position)

    @staticmethod
    def from_states(states, position: int) -> "RamCache":
        """Own copies of the prefill's final states (they are mutated in place by decode)."""
        return RamCache([tuple(None if t is None else t.contiguous().clone() for t in s) for s in states], position)
