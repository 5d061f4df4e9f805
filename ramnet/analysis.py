"""What a trained RAM-Net model does with its memory: the slots each head writes and reads over time.

:func:`slot_traces` replays a sequence through the model and, in every layer, takes each head's top-1 write slot
(from k) and read slot (from q), after the CAPE shift. A CAPE head that has learned positional addressing shows a
diagonal band (slot tracks t); a content head shows slots that repeat with the tokens (the paper's Fig. 5).
"""
from __future__ import annotations

import torch

from ramnet.ops import address
from ramnet.ops.common import cape_shift

from .model import RamNetForCausalLM
from .modes import eval_mode


@torch.no_grad()
def slot_traces(model: RamNetForCausalLM, input_ids: torch.Tensor) -> list[dict]:
    """Per layer: ``{"write": int64 [T, H], "read": int64 [T, H], "cape": [H] bools}`` for the first sequence
    of ``input_ids [B, T]`` (top-1 slots, CAPE-shifted as the memory sees them)."""
    if not isinstance(model, RamNetForCausalLM):
        raise TypeError(f"slot_traces needs a RamNetForCausalLM, got {type(model).__name__}")
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[1] < 1:
        raise ValueError("input_ids must be an int64 tensor [B, T] with T >= 1")
    c = model.config
    device = next(model.parameters()).device
    ids = input_ids[:1].to(device)
    positions = torch.arange(ids.shape[1], device=device).view(1, -1)
    traces = []
    with eval_mode(model):
        x = model.embed(ids)
        for block in model.blocks:
            mixer = block.mixer
            q, k, _, _ = mixer._qkv(block.mixer_norm(x))
            cape = mixer.cape if mixer.any_cape else None
            per_direction = {}
            for name, t in (("write", k), ("read", q)):
                idx, _ = address(t, num_factors=c.num_factors, top_k=c.top_k, tau=c.tau)
                per_direction[name] = cape_shift(idx, positions, cape, c.num_slots)[0, :, :, 0].cpu()
            traces.append({**per_direction, "cape": mixer.cape.tolist()})
            x, _ = block(x)
    return traces
