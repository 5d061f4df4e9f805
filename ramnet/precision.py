"""Devices and mixed precision for training and evaluation.

``bf16`` / ``fp16`` mean ``torch.autocast`` over fp32 master weights (and a ``GradScaler`` for fp16). The RAM-Net
ops take q, k and v in the autocast dtype and keep their state in fp32 (``ramnet.ops``).

Agreement with fp32 (``mixed_precision_errors``; tests hold the model to ``MIXED_PRECISION_TOLERANCE``): bf16 keeps
8 bits of mantissa, so logits differ by about 0.5% (relative Frobenius norm), and because a rounded key can pick a
different Top-K slot, a mixer's weight gradient can differ by 10-20% while the whole gradient stays within a few
percent and every tensor's gradient points the same way (cosine >= 0.95).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# measured on CPU (tiny preset, seeds 0-2): logits 0.3-0.6%, whole gradient 0.4-0.6%, worst tensor cosine >= 0.99
MIXED_PRECISION_TOLERANCE = {"loss_rel": 2e-3, "logits_rel": 2e-2, "grad_rel": 5e-2, "grad_min_cosine": 0.95}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> cuda when available, else cpu. A CUDA device that this machine lacks is a ``ValueError``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device such as cpu, cuda or cuda:1, got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type != "cpu":
        raise ValueError(f"device must be cpu or cuda[:N], got {device!r}")
    return dev


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def autocast(device: torch.device, precision: str):
    """The autocast region for ``precision`` on ``device``. fp32 turns autocast off, so that a caller's own
    autocast region does not lower an fp32 run."""
    dtype = PRECISIONS[check_precision(precision)]
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    # No weight-cast cache: autocast keeps its low-precision copies of the fp32 weights until the outermost
    # autocast region exits. The training loops run inside a disabled region (and a caller may hold one), so a
    # cached copy outlived the optimizer step and every later forward used the weights of the first step: bf16
    # runs of the attention baseline never learned. A cast per use costs little against the matmul it feeds.
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only for fp16 (bf16 and fp32 need no loss scaling)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def _lm_loss(model, input_ids):
    logits = model(input_ids)
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), input_ids[:, 1:].flatten())
    return logits, loss


def mixed_precision_errors(model, input_ids: torch.Tensor, precision: str = "bf16") -> dict:
    """Compare ``model``'s forward and backward (next-token loss on ``input_ids [B, T]``) in ``precision`` against
    fp32, on the model's device. Returns ``loss_rel``, ``logits_rel`` (relative Frobenius norm), ``grad_rel`` (all
    parameter gradients as one vector) and ``grad_min_cosine`` (the worst tensor). Leaves ``.grad`` untouched."""
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    with autocast(device, "fp32"):
        logits32, loss32 = _lm_loss(model, input_ids)
    grads32 = torch.autograd.grad(loss32, params)
    with autocast(device, precision):
        logits_lp, loss_lp = _lm_loss(model, input_ids)
    grads_lp = torch.autograd.grad(loss_lp, params)
    flat32 = torch.cat([g.flatten() for g in grads32])
    flat_lp = torch.cat([g.flatten().float() for g in grads_lp])
    cosines = [F.cosine_similarity(a.flatten().float(), b.flatten(), dim=0).item()
               for a, b in zip(grads_lp, grads32) if b.norm() > 0]
    return {
        "loss_rel": abs(loss_lp.item() - loss32.item()) / abs(loss32.item()),
        "logits_rel": ((logits_lp.float() - logits32).norm() / logits32.norm()).item(),
        "grad_rel": ((flat_lp - flat32).norm() / flat32.norm()).item(),
        "grad_min_cosine": min(cosines),
    }


def within_tolerance(errors: dict, tolerance: dict = MIXED_PRECISION_TOLERANCE) -> list[str]:
    """The names of the ``errors`` that break ``tolerance`` (empty when all hold)."""
    bad = [k for k in ("loss_rel", "logits_rel", "grad_rel") if not errors[k] <= tolerance[k]]
    return bad + ([] if errors["grad_min_cosine"] >= tolerance["grad_min_cosine"] else ["grad_min_cosine"])
