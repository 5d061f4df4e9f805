"""Where a trained MQAR model's errors sit: by when the queried pair was written and by when it is asked.

A sweep run records this after its last step (``ramnet.sweep_run``), so a run's result tells whether its errors at
many pairs fall on the oldest writes (the earliest pairs, after every later write has been mixed into their slots)
or on the latest queries (after the most writes that follow the pairs: in the protocol's larger settings every
query is followed by a random token, which a model can take for a new pair). It also scores the model in fp32
when it trained in bf16 or fp16, to tell a precision floor from a learned one.
"""
from __future__ import annotations

import torch

from .data.mqar_protocol import ProtocolData, setting_name
from .modes import eval_mode
from .precision import autocast
from .train import evaluate, labelled_logits, labelled_positions

QUARTERS = 4
# the most wrong queries a setting lists: a converged protocol model has tens to hundreds at 256 pairs (one string
# of about 10 bytes a query); one that has not learned a setting would list thousands, and its errors need no
# locating
MAX_LISTED_ERRORS = 1000


@torch.no_grad()
def query_outcomes(model, inputs: torch.Tensor, labels: torch.Tensor, num_kv_pairs: int, precision: str = "fp32",
                   batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Every query of ``inputs, labels [B, T]`` (MQAR sequences of ``num_kv_pairs`` pairs), in sequence and then
    position order. Returns int64/bool CPU tensors ``[B * Q]``: ``correct``; ``pair``, the index of the queried
    key's pair (0 = written first); ``rank``, the query's order in its sequence (0 = asked first); ``sequence``
    and ``position``, where the query is in ``inputs``."""
    if inputs.dim() != 2 or inputs.shape != labels.shape:
        raise ValueError(f"inputs and labels must both be [B, T]; got {tuple(inputs.shape)} and "
                         f"{tuple(labels.shape)}")
    if isinstance(num_kv_pairs, bool) or not isinstance(num_kv_pairs, int) or \
            not 1 <= num_kv_pairs <= inputs.shape[1] // 2:
        raise ValueError(f"num_kv_pairs must be an int in [1, T/2={inputs.shape[1] // 2}], got {num_kv_pairs!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    positions = labelled_positions(labels)
    device = next(model.parameters()).device
    correct, pair = [], []
    with eval_mode(model):
        for i in range(0, len(inputs), batch_size):
            x, pos = inputs[i:i + batch_size], positions[i:i + batch_size]
            with autocast(device, precision):
                logits = labelled_logits(model, x.to(device), pos.to(device))
            correct.append((logits.argmax(-1).cpu() == labels[i:i + batch_size].gather(1, pos)).flatten())
            keys = x[:, 0:2 * num_kv_pairs:2]
            matches = x.gather(1, pos).unsqueeze(-1) == keys.unsqueeze(1)  # [b, Q, N]
            if not bool((matches.sum(-1) == 1).all()):
                raise ValueError(f"not MQAR sequences of {num_kv_pairs} pairs: every query must hold exactly one "
                                 "of its sequence's keys")
            pair.append(matches.byte().argmax(-1).flatten())
    per_row = positions.shape[1]
    return {"correct": torch.cat(correct), "pair": torch.cat(pair), "rank": torch.arange(per_row).repeat(len(inputs)),
            "sequence": torch.arange(len(inputs)).repeat_interleave(per_row), "position": positions.flatten()}


def _by_quarter(correct: torch.Tensor, index: torch.Tensor, count: int) -> list[float | None]:
    """Accuracy over the queries whose ``index`` (of ``count``) falls in each quarter; None for an empty one."""
    quarter = index * QUARTERS // count
    return [round(correct[quarter == q].float().mean().item(), 6) if bool((quarter == q).any()) else None
            for q in range(QUARTERS)]


def error_profile(model, inputs: torch.Tensor, labels: torch.Tensor, num_kv_pairs: int, precision: str = "fp32",
                  batch_size: int = 256) -> dict:
    """``{"queries", "errors", "by_pair_quarter", "by_query_quarter", "error_queries"}`` for one setting's
    evaluation set: the accuracy over the queries on the first, second... quarter of the pairs (by when they were
    written) and over the first, second... quarter of each sequence's queries (by when they are asked), and the
    wrong queries as one string of ``"sequence:position"`` items split by spaces, when there are at most
    ``MAX_LISTED_ERRORS`` (None otherwise; one string keeps the summaries' indented JSON short): the evaluation
    data is made again from the run's seed (``mqar_protocol.eval_set``), so any other split of the errors can be
    made afterwards."""
    out = query_outcomes(model, inputs, labels, num_kv_pairs, precision, batch_size)
    per_row = len(out["correct"]) // len(inputs)
    wrong = ~out["correct"]
    errors = int(wrong.sum())
    listed = " ".join(f"{b}:{t}" for b, t in zip(out["sequence"][wrong].tolist(), out["position"][wrong].tolist())) \
        if errors <= MAX_LISTED_ERRORS else None
    return {"queries": len(out["correct"]), "errors": errors,
            "by_pair_quarter": _by_quarter(out["correct"], out["pair"], num_kv_pairs),
            "by_query_quarter": _by_quarter(out["correct"], out["rank"], per_row), "error_queries": listed}


def parse_error_queries(text: str) -> list[tuple[int, int]]:
    """``error_profile``'s ``"sequence:position ..."`` string back as ``[(sequence, position), ...]``."""
    if not isinstance(text, str):
        raise ValueError(f"error_queries must be a string of 'sequence:position' items, got {type(text).__name__}")
    items = []
    for item in text.split():
        parts = item.split(":")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"error_queries: {item!r} is not 'sequence:position' (two whole numbers)")
        items.append((int(parts[0]), int(parts[1])))
    return items


def final_profile(model, data: ProtocolData, precision: str) -> dict:
    """What a sweep run records after its last step: ``{"precision", "settings": {name: error_profile}}``, and
    ``"fp32_accuracies": {name: accuracy}`` when ``precision`` is not fp32. A model whose kernels refuse fp32
    (an AssertionError or NotImplementedError) keeps its profile: ``fp32_accuracies`` is then None and
    ``fp32_error`` says why."""
    settings = {setting_name(s): error_profile(model, x, y, s.num_kv_pairs, precision)
                for s, (x, y) in zip(data.settings, data.eval)}
    out = {"precision": precision, "settings": settings}
    if precision != "fp32":
        try:
            out["fp32_accuracies"] = {setting_name(s): evaluate(model, x, y, precision="fp32")
                                      for s, (x, y) in zip(data.settings, data.eval)}
        except (AssertionError, NotImplementedError) as error:  # a kernel that refuses fp32: fla's chunked
            # DeltaNet asserts bf16 inputs. The fp32 score is a side check, and its refusal must not take the profile
            # (what the run is for) down with it; any other failure is a real one and still fails the profile
            out.update(fp32_accuracies=None, fp32_error=f"{type(error).__name__}: {error}"[:500])
    return out
