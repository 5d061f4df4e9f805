"""What a trained RAM-Net model does with its memory: the slots each head writes and reads over time.

:func:`slot_traces` replays a sequence through the model and, in every layer, takes each head's top-1 write slot
(from k) and read slot (from q), after the CAPE shift. A CAPE head that has learned positional addressing shows a
diagonal band (slot tracks t); a content head shows slots that repeat with the tokens (the paper's Fig. 5).

:func:`read_write_overlap` measures binding with the whole top-K sets: a head that binds reads, at each query, more
of the slots that its bound position wrote than of the slots that the other bound positions wrote. Top-1 slots can
miss this: a bind needs only some shared slots of K.
"""
from __future__ import annotations

import operator

import torch

from ramnet.ops import address
from ramnet.ops.common import cape_shift

from .model import RamNetForCausalLM
from .modes import eval_mode


def _check(model, input_ids, caller: str) -> None:
    if not isinstance(model, RamNetForCausalLM):
        raise TypeError(f"{caller} needs a RamNetForCausalLM, got {type(model).__name__}")
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[1] < 1:
        raise ValueError("input_ids must be an int64 tensor [B, T] with T >= 1")


@torch.no_grad()
def _slot_sets(model: RamNetForCausalLM, input_ids: torch.Tensor) -> list[dict]:
    """Per layer: ``{"write": int64 [T, H, K], "read": int64 [T, H, K], "cape": [H] bools}`` for the first
    sequence of ``input_ids [B, T]``: each token's K slots, CAPE-shifted as the memory sees them, best first."""
    c = model.config
    device = next(model.parameters()).device
    ids = input_ids[:1].to(device)
    positions = torch.arange(ids.shape[1], device=device).view(1, -1)
    layers = []
    with eval_mode(model):
        x = model.embed(ids)
        for block in model.blocks:
            mixer = block.mixer
            q, k, _, _ = mixer._qkv(block.mixer_norm(x))
            cape = mixer.cape if mixer.any_cape else None
            per_direction = {}
            for name, t in (("write", k), ("read", q)):
                idx, _ = address(t, num_factors=c.num_factors, top_k=c.top_k, tau=c.tau)
                per_direction[name] = cape_shift(idx, positions, cape, c.num_slots)[0].cpu()
            layers.append({**per_direction, "cape": mixer.cape.tolist()})
            x, _ = block(x)
    return layers


def slot_traces(model: RamNetForCausalLM, input_ids: torch.Tensor) -> list[dict]:
    """Per layer: ``{"write": int64 [T, H], "read": int64 [T, H], "cape": [H] bools}`` for the first sequence
    of ``input_ids [B, T]`` (top-1 slots, CAPE-shifted as the memory sees them)."""
    _check(model, input_ids, "slot_traces")
    return [{"write": t["write"][..., 0], "read": t["read"][..., 0], "cape": t["cape"]}
            for t in _slot_sets(model, input_ids)]


def read_write_overlap(model: RamNetForCausalLM, input_ids: torch.Tensor, query_positions, bound_positions
                       ) -> list[dict]:
    """How many of its K slots each query reads from the write set of its bound position, against the other
    bound positions' write sets, per layer and head, for the first sequence of ``input_ids [B, T]``.

    ``query_positions[i]`` is bound to ``bound_positions[i]`` (in MQAR: a query and the value after its key). Needs
    at least two pairs. Returns per layer ``{"bound": [H] floats, "other": [H] floats, "cape": [H] bools}``: mean
    shared slots, each between 0 and K.
    """
    _check(model, input_ids, "read_write_overlap")
    queries, bound = list(query_positions), list(bound_positions)
    T = input_ids.shape[1]
    if len(queries) != len(bound) or len(queries) < 2:
        raise ValueError(f"query_positions and bound_positions must pair up, at least 2 pairs; got {len(queries)} "
                         f"and {len(bound)}")
    try:  # ints, numpy or 0-d tensor integers alike; never bools or floats
        if any(isinstance(p, bool) for p in queries + bound):
            raise TypeError
        queries, bound = [operator.index(p) for p in queries], [operator.index(p) for p in bound]
    except TypeError:
        raise ValueError(f"positions must be ints in [0, {T}) (the sequence length)") from None
    if not all(0 <= p < T for p in queries + bound):
        raise ValueError(f"positions must be ints in [0, {T}) (the sequence length)")
    result = []
    for layer in _slot_sets(model, input_ids):
        write, read = layer["write"], layer["read"]
        heads = write.shape[1]
        bound_mean, other_mean = [], []
        for h in range(heads):
            # shared[i, j]: slots that query i reads from the write set at bound position j
            reads = read[queries, h]                                  # [P, K]
            writes = write[bound, h]                                  # [P, K]
            shared = (reads[:, None, :, None] == writes[None, :, None, :]).any(-1).sum(-1).double()  # [P, P]
            on = shared.diagonal()
            off = (shared.sum() - on.sum()) / (shared.numel() - on.numel())
            bound_mean.append(float(on.mean()))
            other_mean.append(float(off))
        result.append({"bound": bound_mean, "other": other_mean, "cape": layer["cape"]})
    return result
