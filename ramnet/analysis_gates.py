"""How open a gated RAM-Net model's write gate is at each kind of MQAR token.

With ``write_gate`` each token's write is scaled per head by ``sigmoid(x W_g + offset)`` (``ramnet.layers``). In
every protocol setting with ``seq_len = 4 * num_kv_pairs`` (16 to 256 pairs) the query phase is full: every other
token is a query key and every token after one is random. A token after a query can bind, through the short conv, the queried key to a random value, and that
write lands in slots that other pairs share. DeltaNet's delta rule replaces what a key held; RAM-Net's
moving-average write adds to every pair in those slots. So the gate's value at those positions says how much
the query phase crowds the memory that later queries read. The gate is computed from the mixer's input before
the short conv, so in the first layer it depends on the token alone; from the second layer on it can see context.
With ``write_gate_conv`` its logit goes through the short conv too, so even the first layer's sees the tokens
before it.
"""
from __future__ import annotations

import contextlib

import torch

from .data.mqar import IGNORE_INDEX
from .model import RamNetForCausalLM
from .modes import eval_mode

ROLES = ("key", "value", "query", "after_query")


@torch.no_grad()
def write_gates(model: RamNetForCausalLM, input_ids: torch.Tensor) -> list[torch.Tensor]:
    """Per layer, the write gate ``[B, T, H]`` (fp32, on the CPU) of ``input_ids [B, T]`` (int64 or int32), from one pass of the
    model's blocks in eval mode (the model's mode is restored). Raises ValueError for a model without
    ``write_gate``."""
    if not isinstance(model, RamNetForCausalLM):
        raise TypeError(f"write_gates needs a RamNetForCausalLM, got {type(model).__name__}")
    if not model.config.write_gate:
        raise ValueError("write_gates needs a model with config.write_gate = True; this one has no write gate")
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.shape[1] < 1 or \
            input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError("input_ids must be an int64 or int32 tensor [B, T] with T >= 1")
    device = next(model.parameters()).device
    gates = []
    with eval_mode(model):
        x = model.embed(input_ids.to(device))
        for block in model.blocks:
            normed = block.mixer_norm(x)
            gates.append(block.mixer._gate(normed, block.mixer._qkv(normed)[4]).float().cpu())
            x, _ = block(x)
    return gates


def token_roles(inputs: torch.Tensor, labels: torch.Tensor, num_kv_pairs: int) -> dict[str, torch.Tensor]:
    """Bool masks ``[B, T]`` of each MQAR token's role in ``inputs, labels [B, T]`` (``multiquery_ar``'s layout):
    ``key`` and ``value`` (the pairs, positions ``2i`` and ``2i + 1``), ``query`` (a labelled position) and
    ``after_query`` (the token right after a query). Other positions of the query phase are in none."""
    if not isinstance(inputs, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ValueError("inputs and labels must both be tensors [B, T]")
    if inputs.dim() != 2 or inputs.shape != labels.shape or inputs.shape[0] < 1:
        raise ValueError(f"inputs and labels must both be [B, T] with B >= 1; got {tuple(inputs.shape)} and "
                         f"{tuple(labels.shape)}")
    length = inputs.shape[1]
    if isinstance(num_kv_pairs, bool) or not isinstance(num_kv_pairs, int) or not 1 <= num_kv_pairs <= length // 2:
        raise ValueError(f"num_kv_pairs must be an int in [1, T/2={length // 2}], got {num_kv_pairs!r}")
    position = torch.arange(length, device=inputs.device).expand_as(inputs)
    pairs = position < 2 * num_kv_pairs
    query = labels != IGNORE_INDEX
    if bool((query & pairs).any()):
        raise ValueError(f"not MQAR sequences of {num_kv_pairs} pairs: a labelled position lies among the pairs")
    after_query = torch.zeros_like(query)
    after_query[:, 1:] = query[:, :-1]
    roles = {"key": pairs & (position % 2 == 0), "value": pairs & (position % 2 == 1), "query": query,
             "after_query": after_query}
    return {role: mask.cpu() for role, mask in roles.items()}


def gate_by_role(model: RamNetForCausalLM, inputs: torch.Tensor, labels: torch.Tensor, num_kv_pairs: int,
                 batch_size: int = 16) -> list[list[dict[str, float]]]:
    """``[layer][head] -> {role: mean gate}`` over the tokens of each role (``token_roles``), and
    ``"after_query_late"``: the mean over the tokens right after each query in the last quarter of its sequence's
    queries (by the order they are asked)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    roles = token_roles(inputs, labels, num_kv_pairs)
    query_rank = roles["query"].long().cumsum(1) - 1  # each query's order in its sequence
    per_row = roles["query"].sum(1, keepdim=True)
    late_query = roles["query"] & (query_rank * 4 >= 3 * per_row)
    roles["after_query_late"] = torch.zeros_like(late_query)
    roles["after_query_late"][:, 1:] = late_query[:, :-1]
    sums = None
    for i in range(0, len(inputs), batch_size):
        gates = write_gates(model, inputs[i:i + batch_size])
        part = [{role: (g * mask[i:i + batch_size].unsqueeze(-1)).sum((0, 1)) for role, mask in roles.items()}
                for g in gates]
        sums = part if sums is None else [{r: s[r] + p[r] for r in s} for s, p in zip(sums, part)]
    counts = {role: int(mask.sum()) for role, mask in roles.items()}
    return [[{role: (layer[role][h] / counts[role]).item() if counts[role] else float("nan") for role in layer}
             for h in range(model.config.n_heads)] for layer in sums]


def _chosen_mixers(model: RamNetForCausalLM, layers, name: str) -> list:
    """The mixers of ``layers`` (indices; None: every layer), after checking the model and the indices."""
    if not isinstance(model, RamNetForCausalLM):
        raise TypeError(f"{name} needs a RamNetForCausalLM, got {type(model).__name__}")
    if not model.config.write_gate:
        raise ValueError(f"{name} needs a model with config.write_gate = True; this one has no write gate")
    if layers is not None and not isinstance(layers, (list, tuple, range)):
        raise ValueError(f"layers must be a list of layer indices, got {layers!r}")
    chosen = list(range(len(model.blocks))) if layers is None else list(layers)
    if not chosen or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(model.blocks)
                         for i in chosen):
        raise ValueError(f"layers must be indices in [0, {len(model.blocks) - 1}], got {layers!r}")
    return [model.blocks[i].mixer for i in dict.fromkeys(chosen)]


@contextlib.contextmanager
def _gates_mapped(mixers: list, maps: list):
    """Within the block mixer ``i``'s gate ``g [B, T, H]`` of a full-sequence pass is ``maps[i](g)``. Nested blocks
    compose; on leaving, each mixer gets back the gate it had on entering (the enclosing block's, when nested)."""
    def mapped(gate_of, fn):
        def gate(x, logit=None):
            g = gate_of(x, logit)
            if g.dim() != 3:
                raise RuntimeError("a gate intervention works on full-sequence passes ([B, T, D]), not decode steps")
            return fn(g)
        return gate

    missing = object()
    previous = [mixer.__dict__.get("_gate", missing) for mixer in mixers]
    try:
        for mixer, fn in zip(mixers, maps):
            mixer._gate = mapped(mixer._gate, fn)  # an instance attribute shadows the method
        yield
    finally:
        for mixer, before in zip(mixers, previous):
            if before is missing:
                mixer.__dict__.pop("_gate", None)
            else:
                mixer._gate = before


def _gates_scaled(mixers: list, keep):
    """``_gates_mapped`` with every gate ``g`` made ``g * keep(g)``, where ``keep(g)`` is a 0/1 tensor that
    broadcasts to ``[B, T, 1]``."""
    return _gates_mapped(mixers, [lambda g: g * keep(g)] * len(mixers))


@contextlib.contextmanager
def writes_closed_from(model: RamNetForCausalLM, start: int, layers=None):
    """Within the block, the write gate of ``layers`` (indices; default every layer) is 0 at every position
    ``>= start`` of a full-sequence forward pass: an intervention, so that a query phase writes nothing and what
    its writes cost later queries can be measured. The model's own gates come back on leaving the block."""
    mixers = _chosen_mixers(model, layers, "writes_closed_from")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be an int >= 0, got {start!r}")
    with _gates_scaled(mixers, lambda g: (torch.arange(g.shape[1], device=g.device) < start).to(g.dtype)
                       .view(1, -1, 1)):
        yield model


@contextlib.contextmanager
def writes_closed_where(model: RamNetForCausalLM, closed: torch.Tensor, layers=None):
    """Within the block, the write gate of ``layers`` (default every layer) is 0 wherever ``closed [B, T]`` (bool)
    is True, in every head, for full-sequence passes from position 0 over exactly ``B`` sequences of ``T`` tokens
    (another shape is a RuntimeError at the pass). An oracle that can shut chosen tokens' writes, e.g. a query
    phase's random tokens but not its queries; ``writes_closed_from`` is the special case of a mask that is True
    from a position on. The mask is copied on entry, so changing ``closed`` inside the block changes nothing."""
    mixers = _chosen_mixers(model, layers, "writes_closed_where")
    if not isinstance(closed, torch.Tensor) or closed.dtype != torch.bool or closed.dim() != 2:
        raise ValueError(f"closed must be a bool tensor [B, T], got {getattr(closed, 'dtype', type(closed))} "
                         f"of shape {tuple(getattr(closed, 'shape', ()))}")
    closed = closed.clone()

    def keep(g):
        if tuple(g.shape[:2]) != tuple(closed.shape):
            raise RuntimeError(f"writes_closed_where: the mask is {tuple(closed.shape)}, the pass is "
                               f"{tuple(g.shape[:2])} (run it over the same sequences)")
        return (~closed).to(device=g.device, dtype=g.dtype).unsqueeze(-1)

    with _gates_scaled(mixers, keep):
        yield model


@contextlib.contextmanager
def write_gates_replaced_where(model: RamNetForCausalLM, where: torch.Tensor, gates: list, layers=None):
    """Within the block, the write gate of ``layers`` (default every layer) is ``gates[i]`` (``[B, T, H]``, e.g.
    from ``write_gates`` on other inputs; one per chosen layer, in order) wherever ``where [B, T]`` (bool) is True,
    and the model's own elsewhere, for full-sequence passes over exactly ``B`` sequences of ``T`` tokens. It
    separates what a gate lets through from what is written: with another token at a position, give that position
    the gate the first token had there. The tensors are copied on entry."""
    mixers = _chosen_mixers(model, layers, "write_gates_replaced_where")
    if layers is not None and len(set(layers)) != len(layers):
        raise ValueError(f"layers must not repeat a layer (one gate tensor each), got {layers!r}")
    if not isinstance(where, torch.Tensor) or where.dtype != torch.bool or where.dim() != 2:
        raise ValueError(f"where must be a bool tensor [B, T], got {getattr(where, 'dtype', type(where))} "
                         f"of shape {tuple(getattr(where, 'shape', ()))}")
    heads = model.config.n_heads
    if not isinstance(gates, (list, tuple)) or len(gates) != len(mixers) or any(
            not isinstance(g, torch.Tensor) or not g.is_floating_point()
            or tuple(g.shape) != (*where.shape, heads) for g in gates):
        raise ValueError(f"gates must be {len(mixers)} float tensor(s) [B, T, H] = {(*where.shape, heads)}, one per "
                         f"chosen layer")
    if any(not bool(((g >= 0) & (g <= 1)).all()) for g in gates):  # NaN fails both comparisons
        raise ValueError("gates must lie in [0, 1] (a write gate scales the write weights), got values outside it")
    where = where.clone()
    gates = [g.detach().clone() for g in gates]

    def replace(new):
        def fn(g):
            if tuple(g.shape[:2]) != tuple(where.shape):
                raise RuntimeError(f"write_gates_replaced_where: the mask is {tuple(where.shape)}, the pass is "
                                   f"{tuple(g.shape[:2])} (run it over the same sequences)")
            return torch.where(where.to(g.device).unsqueeze(-1), new.to(device=g.device, dtype=g.dtype), g)
        return fn

    with _gates_mapped(mixers, [replace(g) for g in gates]):
        yield model
