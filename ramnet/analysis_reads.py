"""How much of each read comes from the pair it should return: a probe that still separates the pairs when the
slots are crowded.

:mod:`ramnet.analysis` counts shared slots. In a wide model every slot is written by many pairs (8 heads of
M=64, K=16 at 256 pairs: each write covers a quarter of the slots), so a query's read slots meet every other
pair's writes and the counts saturate. What decides the answer is how much *weight* the read gives each write.

The memory is linear in the values: a read is ``o_t = sum_j r_j S_j / (z_j + eps)``, and ``S`` is a decayed,
weighted sum of the values written, while ``z`` and the weights do not depend on the values. So
``o_t = sum_s A[t, s] v_s`` for a read-weight matrix ``A`` (per head, causal), which :func:`read_weights` builds
from the layer's addresses (a test checks ``A v`` against the memory op's output). Row ``t`` of ``A`` is what the
read at ``t`` takes from each earlier token's value (after the short conv, which mixes the last few tokens into
each). A row sums to at most 1: the read weights are the top-K of a distribution and ``S_j / z_j`` a weighted
mean.

:func:`pair_read_mass` then asks, at each MQAR query: what weight does the read give the write of the query's own
pair (``own``), against the heaviest other pair's (``max_other``), and is its own pair the heaviest (``own_top``)?
With the short conv a head can bind a pair up to ``kernel - 2`` tokens after its value (the conv window still
holds the key), so each pair's write is taken at ``value + offset``, as in :func:`ramnet.analysis.pair_interference`.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm


from .analysis import _check, check_pair_probe, layer_addresses
from .data.mqar import query_bindings
from .model import RamNetForCausalLM
from .modes import eval_mode

GROUPS = ("right", "wrong")
CHUNK = 16  # sequences whose blocks run in one pass


def read_weights(model: RamNetForCausalLM, input_ids: torch.Tensor, rows=None) -> list[torch.Tensor]:
    """Per layer, the read-weight matrix ``A`` float64 ``[B, R, H, T]`` (on the CPU) at the reads of ``rows``
    (positions, the same for every sequence; None: all ``T``): ``A[b, i, h, s]`` is the weight of the value at
    ``s`` (after the short conv) in head ``h``'s read at ``rows[i]``, so the memory's output there is
    ``sum_s A[b, i, h, s] v[b, s, h]``. Zero for ``s > rows[i]``. Built from the layer's addresses (no initial
    state), one head at a time: a few ``R * K * T`` float64 temporaries a head (1024 x 16 x 1024 is 128 MiB
    each), and the result holds ``B * R * H * T`` float64 a layer (4 GiB at 64 x 1024 x 8 x 1024)."""
    _check(model, input_ids, "read_weights")
    c = model.config
    return [torch.stack([dense_read_weights(*(t[b] for t in addresses), c.num_slots, c.gamma, c.eps, rows)
                         for b in range(input_ids.shape[0])])
            for addresses in layer_addresses(model, input_ids)]


def dense_read_weights(write_idx: torch.Tensor, write_w: torch.Tensor, read_idx: torch.Tensor, read_w: torch.Tensor,
                       num_slots: int, gamma: float, eps: float, rows=None) -> torch.Tensor:
    """The read weights ``[R, H, T]`` (float64) of one sequence from its CAPE-shifted addresses (``*_idx`` int64,
    ``*_w`` float ``[T, H, K]``; ``write_w`` already scaled by the write gate), for memory that starts empty
    (``S = 0``, ``z = 1/M``), at the reads of ``rows`` (positions; None: all ``T``).

    A write at ``s`` reaches slot ``j`` at ``t >= s`` with weight ``w_s * prod_{s<u<=t} a_u`` (``a_u = (1 - w_u)
    ** gamma`` where ``u`` writes ``j``, else 1), and ``z`` is the same sum over the writes plus the decayed 1/M,
    so ``A[t, s] = sum_k r_tk E[t, k, s] / (z[t, k] + eps)`` with ``E[t, k, s]`` the weight of the write at ``s``
    in the ``k``-th slot read at ``t``. The decay products come from cumulative sums of ``log a`` (``a`` floored at
    1e-300: a slot written with weight exactly 1 keeps 1e-300 of its past, not 0)."""
    T, H, _ = write_idx.shape
    if rows is not None:
        rows = _check_rows(rows, T)
    W = torch.zeros(T, H, num_slots, dtype=torch.float64).scatter_(2, write_idx, write_w.double())
    log_decay = ((1.0 - W) ** gamma).clamp_min(1e-300).log().cumsum(0)           # [T, H, M]: sum over u <= t
    rows = torch.arange(T) if rows is None else rows
    causal = torch.arange(T).unsqueeze(0) <= rows.unsqueeze(1)                    # [R, T]: s <= t
    heads = []
    for h in range(H):
        j = read_idx[rows, h]                                                     # [R, K]
        at_read = log_decay[rows, h].gather(1, j)                                 # [R, K]: log-products to t
        before = log_decay[:, h].T[j]                                             # [R, K, T]: log-products to s
        E = (at_read.unsqueeze(-1) - before).clamp_max(0).exp() * W[:, h].T[j]    # [R, K, T]
        E = E * causal.unsqueeze(1)
        z = at_read.exp() / num_slots + E.sum(-1)                                 # [R, K]
        heads.append(((read_w[rows, h].double() / (z + eps)).unsqueeze(-1) * E).sum(1))  # [R, T]
    return torch.stack(heads, 1)


def pair_read_mass(model: RamNetForCausalLM, input_ids: torch.Tensor, labels: torch.Tensor, num_kv_pairs: int,
                   write_offsets, progress: bool = False) -> dict[int, list[list[dict]]]:
    """The weight each query's read gives its own pair's write, per layer and head, over MQAR sequences
    (``input_ids``, ``labels`` int64 ``[B, T]`` from :func:`ramnet.data.mqar.multiquery_ar` with ``num_kv_pairs``
    >= 2 pairs), for each offset in ``write_offsets`` (a pair's write taken at its value + offset, ints in
    ``[0, T - 2 * num_kv_pairs]``).

    Returns ``{offset: [layer][head] dicts}``, each with ``right`` and ``wrong`` (how many queries the model
    answers right and wrong) and, per group, the means ``own_<group>`` (the read's weight on the own pair's
    write), ``max_other_<group>`` (on the heaviest other pair's), ``total_<group>`` (the whole row, at most 1) and
    ``own_top_<group>`` (the share of queries whose own pair weighs most; ties count as not), ``took_other_<group>``
    (the share whose answer is the heaviest other pair's value: the read took the wrong pair) and
    ``other_value_<group>`` (the share whose answer is some other pair's value, whatever the head). NaN for an
    empty group. ``progress`` shows a bar over the sequences (a 256-pair sequence of a 256-wide model takes seconds)."""
    offsets = check_pair_probe(model, input_ids, labels, num_kv_pairs, write_offsets, "pair_read_mass")
    labels = labels.cpu()
    bindings = [query_bindings(input_ids[row].cpu(), labels[row], num_kv_pairs) for row in range(len(labels))]
    device = next(model.parameters()).device
    c = model.config
    sums: dict = {}
    with tqdm(total=len(bindings), desc="read weights", disable=not progress) as bar:
        for first in range(0, len(bindings), CHUNK):  # the blocks run on a chunk at once
            chunk = input_ids[first:first + CHUNK]
            layers = layer_addresses(model, chunk)
            with eval_mode(model), torch.no_grad():  # per chunk: one 256-wide model's pass holds ~290 MiB a sequence
                answers = model(chunk.to(device)).argmax(-1).cpu()
            for row in range(first, min(first + CHUNK, len(bindings))):
                queries, bound = bindings[row]
                values = input_ids[row, 1:2 * num_kv_pairs:2].cpu()
                for layer, addresses in enumerate(layers if queries else []):
                    # at the queries' reads alone: [Q, H, T]
                    weights = dense_read_weights(*(t[row - first] for t in addresses), c.num_slots, c.gamma, c.eps,
                                                 queries)
                    for offset in offsets:
                        mass = read_mass(weights, bound, answers[row - first, queries], labels[row, queries], values,
                                         offset)
                        for head, entry in enumerate(mass):
                            total = sums.setdefault((offset, layer, head), {})
                            for key, value in entry.items():
                                total[key] = total.get(key, 0.0) + value
                bar.update()
    result: dict[int, list[list[dict]]] = {}
    layers, heads = len(model.blocks), model.config.n_heads
    for offset in offsets:
        result[offset] = [[_means(sums.get((offset, layer, head), {})) for head in range(heads)]
                          for layer in range(layers)]
    return result


def read_mass(weights: torch.Tensor, bound: list[int], answers: torch.Tensor, labels: torch.Tensor,
              values: torch.Tensor, offset: int) -> list[dict]:
    """For one sequence's read weights at its Q queries ``[Q, H, T]``: per head, sums over its right and wrong
    queries (see :func:`pair_read_mass`) and their counts. ``bound[i]`` is query ``i``'s value position
    ``2 * pair + 1``; ``answers`` and ``labels`` the model's and the data's tokens at the queries ``[Q]``
    (right where they agree); ``values`` the pairs' value tokens ``[P]``. A read "took" the heaviest other pair
    only where that pair is the one heaviest and has some weight (a tie, or no weight at all, names no pair)."""
    queries = torch.arange(len(bound))
    writes = torch.arange(len(values)) * 2 + 1 + offset                        # [P] each pair's write position
    mass = weights[:, :, writes]                                               # [Q, H, P]
    own_pair = torch.tensor(bound) // 2
    own = mass[queries, :, own_pair]                                           # [Q, H]
    others = mass.clone()
    others[queries, :, own_pair] = float("-inf")
    max_other, heaviest_other = others.max(-1)                                 # [Q, H]
    named = (max_other > 0) & ((others == max_other.unsqueeze(-1)).sum(-1) == 1)  # one heaviest, with weight
    total = weights.sum(-1)                                                    # [Q, H]
    correct = answers == labels
    took_other = (answers.unsqueeze(-1) == values[heaviest_other]) & named     # [Q, H]
    other_value = (answers.unsqueeze(-1) == values).any(-1) & ~correct         # [Q]
    entries = []
    for head in range(weights.shape[1]):
        entry = {}
        for group, mask in (("right", correct), ("wrong", ~correct)):
            entry[group] = float(mask.sum())
            entry[f"own_{group}"] = float(own[mask, head].sum())
            entry[f"max_other_{group}"] = float(max_other[mask, head].sum())
            entry[f"total_{group}"] = float(total[mask, head].sum())
            entry[f"own_top_{group}"] = float((own[mask, head] > max_other[mask, head]).sum())
            entry[f"took_other_{group}"] = float(took_other[mask, head].sum())
            entry[f"other_value_{group}"] = float(other_value[mask].sum())
        entries.append(entry)
    return entries


def _check_rows(rows, T: int) -> torch.Tensor:
    """``rows`` as int64 positions, each a whole number in ``[0, T)``; a ValueError naming the range otherwise."""
    values = rows.tolist() if isinstance(rows, torch.Tensor) else rows
    try:
        values = list(values)
    except TypeError:
        raise ValueError(f"rows must be a list of positions in [0, {T}), got {rows!r}") from None
    if not values or not all(isinstance(r, int) and not isinstance(r, bool) and 0 <= r < T for r in values):
        raise ValueError(f"rows must be a non-empty list of int positions in [0, {T}) (the sequence length), "
                         f"got {rows!r}")
    return torch.tensor(values, dtype=torch.long)


def _means(sums: dict) -> dict:
    out = {}
    for group in GROUPS:
        n = int(sums.get(group, 0))
        out[group] = n
        for key in ("own", "max_other", "total", "own_top", "took_other", "other_value"):
            out[f"{key}_{group}"] = sums[f"{key}_{group}"] / n if n else float("nan")
    return out


__all__ = ["read_weights", "pair_read_mass"]  # dense_read_weights and read_mass are their unchecked parts
