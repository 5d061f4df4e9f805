"""What a trained RAM-Net model does with its memory: the slots each head writes and reads over time.

:func:`slot_traces` replays a sequence through the model and, in every layer, takes each head's top-1 write slot
(from k) and read slot (from q), after the CAPE shift. A CAPE head that has learned positional addressing shows a
diagonal band (slot tracks t); a content head shows slots that repeat with the tokens (the paper's Fig. 5).

:func:`read_write_overlap` measures binding with the whole top-K sets: a head that binds reads, at each query, more
of the slots that its bound position wrote than of the slots that the other bound positions wrote. Top-1 slots can
miss this: a bind needs only some shared slots of K.

Both count addressed slots. In a model with ``write_gate``, a token whose gate is near 0 addresses its write slots
but writes them with little weight, and these counts do not weigh that.
"""
from __future__ import annotations

import operator

import torch

from ramnet.ops import address
from ramnet.ops.common import cape_shift

from .data.mqar import IGNORE_INDEX, query_bindings
from .model import RamNetForCausalLM
from .modes import eval_mode


def _check(model, input_ids, caller: str) -> None:
    if not isinstance(model, RamNetForCausalLM):
        raise TypeError(f"{caller} needs a RamNetForCausalLM, got {type(model).__name__}")
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[1] < 1 or \
            input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError("input_ids must be an int64 tensor [B, T] with T >= 1")


def _slot_sets(model: RamNetForCausalLM, input_ids: torch.Tensor) -> list[dict]:
    """Per layer: ``{"write": int64 [T, H, K], "read": int64 [T, H, K], "cape": [H] bools}`` for the first
    sequence of ``input_ids [B, T]``: each token's K slots, CAPE-shifted as the memory sees them, best first."""
    return [{**layer, "write": layer["write"][0], "read": layer["read"][0]}
            for layer in _batch_slot_sets(model, input_ids[:1])]


def _batch_slot_sets(model: RamNetForCausalLM, input_ids: torch.Tensor) -> list[dict]:
    """:func:`_slot_sets` for every sequence: ``write`` and ``read`` int64 ``[B, T, H, K]``."""
    return [{"write": write_idx, "read": read_idx, "cape": block.mixer.cape.tolist()}
            for (write_idx, _, read_idx, _), block in zip(layer_addresses(model, input_ids), model.blocks)]


@torch.no_grad()
def layer_addresses(model: RamNetForCausalLM, input_ids: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
    """Per layer, ``(write_idx, write_w, read_idx, read_w)`` ``[B, T, H, K]`` on the CPU, as the memory sees them:
    CAPE-shifted, and the write weights scaled by the write gate. One pass of the model's blocks."""
    c = model.config
    device = next(model.parameters()).device
    ids = input_ids.to(device)
    positions = torch.arange(ids.shape[1], device=device).view(1, -1).expand(ids.shape[0], -1)
    layers = []
    with eval_mode(model):
        x = model.embed(ids)
        for block in model.blocks:
            mixer = block.mixer
            normed = block.mixer_norm(x)
            q, k, _, _, gate_logit = mixer._qkv(normed)
            cape = mixer.cape if mixer.any_cape else None
            (write_idx, write_w), (read_idx, read_w) = (address(t, num_factors=c.num_factors, top_k=c.top_k,
                                                                tau=c.tau) for t in (k, q))
            gate = mixer._gate(normed, gate_logit)
            if gate is not None:
                write_w = write_w * gate.unsqueeze(-1).to(write_w.dtype)
            layers.append(tuple(t.cpu() for t in (cape_shift(write_idx, positions, cape, c.num_slots), write_w,
                                                  cape_shift(read_idx, positions, cape, c.num_slots), read_w)))
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


def pair_interference(model: RamNetForCausalLM, input_ids: torch.Tensor, labels: torch.Tensor, num_kv_pairs: int,
                      write_offset: int = 0) -> list[list[dict]]:
    """How much the pairs of MQAR sequences share slots, and whether the queries the model gets wrong are the ones
    whose reads land in other pairs' writes. Per layer and head, over the sequences of ``input_ids`` and
    ``labels`` (int64 ``[B, T]`` from :func:`ramnet.data.mqar.multiquery_ar` with ``num_kv_pairs`` >= 2 pairs).
    A pair's write is taken ``write_offset`` tokens after its value (0: at the value; a head with the short conv
    can bind a pair at a later position, whose conv window still holds the key and the value). Per head:

    - ``write_shared``: mean slots that the write sets of two different pairs share (0 to K), against
      ``chance`` = K^2 / M for two uniformly random K-subsets of the M slots. Training that pushes colliding
      keys apart would bring it below chance;
    - ``hits_right`` / ``hits_wrong``: for the queries the model answers right / wrong, the mean number of their
      K read slots that the other pairs wrote (summed over those pairs), counting only writes at or before the
      query (the memory holds no later one);
    - ``bound_right`` / ``bound_wrong``: the same for the bound pair's own write set (0 to K).

    Returns ``[layer][head]`` dicts, each also with ``right`` and ``wrong``: how many queries fell in each group
    (a mean over no query is NaN).
    """
    return pair_interference_by_offset(model, input_ids, labels, num_kv_pairs, [write_offset])[write_offset]


def check_pair_probe(model, input_ids, labels, num_kv_pairs, write_offsets, caller: str) -> list[int]:
    """The checks of a probe of MQAR pairs (:func:`pair_interference_by_offset`,
    :func:`ramnet.analysis_reads.pair_read_mass`); returns the write offsets as a list."""
    _check(model, input_ids, caller)
    if not isinstance(labels, torch.Tensor) or labels.shape != input_ids.shape:
        raise ValueError(f"labels must match input_ids [B, T] = {tuple(input_ids.shape)}")
    if isinstance(num_kv_pairs, bool) or not isinstance(num_kv_pairs, int) or num_kv_pairs < 2:
        raise ValueError(f"num_kv_pairs must be an int >= 2 (the probe needs another pair), got {num_kv_pairs!r}")
    last = input_ids.shape[1] - 2 * num_kv_pairs  # the last pair's value sits at 2 * num_kv_pairs - 1
    if last < 0:
        raise ValueError(f"num_kv_pairs={num_kv_pairs} pairs do not fit in seq_len={input_ids.shape[1]}")
    if not (labels != IGNORE_INDEX).any():
        raise ValueError("labels hold no query (every label is -100)")
    if isinstance(write_offsets, (int, str, bytes)) or not hasattr(write_offsets, "__iter__"):
        raise ValueError(f"write_offsets must be a list of ints, got {write_offsets!r}")
    offsets = list(write_offsets)
    if not offsets or not all(not isinstance(o, bool) and isinstance(o, int) and 0 <= o <= last for o in offsets):
        raise ValueError(f"write_offset must be an int in [0, {last}] (seq_len - 2 * num_kv_pairs), got "
                         f"{offsets[0] if len(offsets) == 1 else offsets!r}")
    if len(set(offsets)) != len(offsets):  # a repeated offset would count its queries twice
        raise ValueError(f"write_offsets must be distinct, got {offsets!r}")
    return offsets


@torch.no_grad()
def pair_interference_by_offset(model: RamNetForCausalLM, input_ids: torch.Tensor, labels: torch.Tensor,
                                num_kv_pairs: int, write_offsets) -> dict[int, list[list[dict]]]:
    """:func:`pair_interference` at each of ``write_offsets`` from one pass of the model (the pass costs more
    than the counting): ``{offset: [layer][head] dicts}``."""
    offsets = check_pair_probe(model, input_ids, labels, num_kv_pairs, write_offsets, "pair_interference")
    device = next(model.parameters()).device
    labels = labels.cpu()
    with eval_mode(model):
        correct = model(input_ids.to(device)).argmax(-1).cpu() == labels
    slot_sets = _batch_slot_sets(model, input_ids)
    return {o: _interference(model.config, slot_sets, correct, input_ids, labels, num_kv_pairs, o) for o in offsets}


def _interference(c, slot_sets, correct, input_ids, labels, num_kv_pairs: int, write_offset: int) -> list[list[dict]]:
    """The counts of :func:`pair_interference` at one ``write_offset``, from the batch's slot sets and the
    model's right/wrong answers (``correct`` bool ``[B, T]``)."""
    sums: dict = {}
    for row in range(input_ids.shape[0]):
        queries, bound = query_bindings(input_ids[row], labels[row], num_kv_pairs)
        write_positions = [2 * i + 1 + write_offset for i in range(num_kv_pairs)]
        for li, layer in enumerate(slot_sets):
            write, read = layer["write"][row], layer["read"][row]
            for h in range(write.shape[1]):
                s = sums.setdefault((li, h), {"cape": layer["cape"][h], "pairs": 0, "write_shared": 0.0,
                                              "right": 0, "wrong": 0, "hits_right": 0.0, "hits_wrong": 0.0,
                                              "bound_right": 0.0, "bound_wrong": 0.0})
                writes = write[write_positions, h]                                            # [P, K]
                shared = (writes[:, None, :, None] == writes[None, :, None, :]).any(-1).sum(-1)  # [P, P]
                p = len(write_positions)
                s["write_shared"] += float(shared.sum() - shared.diagonal().sum())
                s["pairs"] += p * (p - 1)
                if not queries:
                    continue
                reads = read[queries, h]                                                      # [Q, K]
                # [Q, K, P, K] -> is read slot k in pair p's write set -> [Q, P]: read slots per pair's writes,
                # of the writes made by the query's step (a pair bound after its value can write after a query)
                hits = (reads[:, :, None, None] == writes[None, None]).any(-1).sum(1)
                hits = hits * (torch.tensor(write_positions)[None, :] <= torch.tensor(queries)[:, None])
                own = hits[torch.arange(len(queries)), torch.tensor(bound) // 2]                # [Q]
                other = hits.sum(1) - own
                right = correct[row, queries]
                for group, mask in (("right", right), ("wrong", ~right)):
                    s[group] += int(mask.sum())
                    s[f"hits_{group}"] += float(other[mask].sum())
                    s[f"bound_{group}"] += float(own[mask].sum())
    nan = float("nan")
    layers: list[list[dict]] = []
    for (li, h), s in sorted(sums.items()):
        while len(layers) <= li:
            layers.append([])
        layers[li].append({
            "cape": s["cape"], "right": s["right"], "wrong": s["wrong"],
            "write_shared": s["write_shared"] / s["pairs"], "chance": c.top_k ** 2 / c.num_slots,
            **{f"{k}_{g}": (s[f"{k}_{g}"] / s[g] if s[g] else nan)
               for k in ("hits", "bound") for g in ("right", "wrong")},
        })
    return layers
