"""Cross-entropy over a vocabulary without building the full logits.

At long context the logits dominate training memory: ``T * V`` fp32 numbers (131072 tokens x 32000 = 16.8 GB),
plus their gradient. :func:`chunked_cross_entropy` projects ``chunk_size`` tokens at a time and recomputes each
chunk's logits in the backward (``torch.utils.checkpoint``), so only one chunk's ``[chunk_size, V]`` is alive.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100


def upcast_logits(logits: torch.Tensor) -> torch.Tensor:
    """Logits for the softmax: fp32 for bf16/fp16/fp32 activations, fp64 kept."""
    return logits if logits.dtype == torch.float64 else logits.float()


def _chunk_loss_sum(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, ignore_index: int):
    logits = upcast_logits(F.linear(hidden, weight))
    return F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="sum")


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                          chunk_size: int = 8192, ignore_index: int = IGNORE_INDEX,
                          reduction: str = "mean") -> torch.Tensor:
    """``cross_entropy(hidden @ weight.T, targets)`` in chunks of tokens, never holding all the logits.

    Args:
        hidden: ``[..., D]`` final hidden states (any leading shape; flattened to ``N`` tokens).
        weight: ``[V, D]`` the LM head's weight (no bias).
        targets: int64 ``[...]`` with the leading shape of ``hidden``; ``ignore_index`` entries are skipped.
        chunk_size: tokens per chunk (>= 1). Memory holds one ``[chunk_size, V]`` fp32 block, in the forward and
            again in the backward (where each chunk's logits are recomputed).
        reduction: ``"mean"`` (over the targets that are not ignored; NaN if all are, as ``F.cross_entropy``) or
            ``"sum"``.
    Returns:
        A scalar loss in fp32 (fp64 for fp64 inputs), equal to ``F.cross_entropy`` of the full logits in that
        dtype up to summation order.
    """
    if not isinstance(hidden, torch.Tensor) or hidden.dim() < 1:
        raise TypeError("hidden must be a tensor [..., D]")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[1] != hidden.shape[-1]:
        raise ValueError(f"weight must be [V, D] with D = hidden.shape[-1] = {hidden.shape[-1]}, got "
                         f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__}")
    if not isinstance(targets, torch.Tensor) or targets.shape != hidden.shape[:-1]:
        raise ValueError(f"targets must have hidden's leading shape {tuple(hidden.shape[:-1])}, got "
                         f"{tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__}")
    if targets.dtype != torch.int64:
        raise TypeError(f"targets must be int64, got {targets.dtype}")
    if hidden.dtype != weight.dtype and not torch.is_autocast_enabled(hidden.device.type):
        raise TypeError(f"hidden ({hidden.dtype}) and weight ({weight.dtype}) must share a dtype outside autocast")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    flat_targets = targets.reshape(-1)
    total = flat_hidden.new_zeros((), dtype=torch.float64 if hidden.dtype == torch.float64 else torch.float32)
    for start in range(0, flat_hidden.shape[0], chunk_size):
        h = flat_hidden[start:start + chunk_size]
        t = flat_targets[start:start + chunk_size]
        if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
            total = total + checkpoint(_chunk_loss_sum, h, weight, t, ignore_index, use_reentrant=False)
        else:
            total = total + _chunk_loss_sum(h, weight, t, ignore_index)
    if reduction == "sum":
        return total
    return total / (flat_targets != ignore_index).sum()
