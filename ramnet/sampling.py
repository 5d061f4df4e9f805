"""Token choice and the decode loop, shared by eager ``RamNetForCausalLM.generate`` and ONNX Runtime's
``OrtGenerator``: one sampling rule, one argument check, one end-of-sequence rule."""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class SamplingArgs:
    """Validated sampling arguments.

    ``temperature = 0`` is greedy (argmax; ``top_k`` / ``top_p`` are then ignored). Otherwise logits are divided
    by ``temperature``, cut to the ``top_k`` largest (``None``: all), then to the smallest set whose probability
    reaches ``top_p`` (``None`` or 1.0: all), and one token is drawn with ``generator``.
    ``eos_token_id``: id or ids that end a row; a finished row is filled with ``pad_token_id`` (default: the first
    eos id) and the loop stops once every row has finished."""

    max_new_tokens: int
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    eos_token_id: tuple[int, ...] = ()
    pad_token_id: int | None = None


def sampling_args(max_new_tokens, *, temperature=0.0, top_k=None, top_p=None, eos_token_id=None,
                  pad_token_id=None, vocab_size: int | None = None) -> SamplingArgs:
    """Check every argument (a ``ValueError`` / ``TypeError`` naming it and its range) and bundle them."""
    def is_int(x):
        return isinstance(x, int) and not isinstance(x, bool)

    if not is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (not is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float))
                              or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or a number in (0, 1], got {top_p!r}")
    eos = () if eos_token_id is None else _ids(eos_token_id)
    if pad_token_id is not None:
        pad = _ids(pad_token_id)
        if len(pad) != 1:
            raise ValueError(f"pad_token_id must be one token id, got {pad_token_id!r}")
        pad_token_id = pad[0]
    for name, ids in (("eos_token_id", eos), ("pad_token_id", () if pad_token_id is None else (pad_token_id,))):
        for i in ids:
            if not is_int(i) or i < 0 or (vocab_size is not None and i >= vocab_size):
                bound = f"in [0, {vocab_size})" if vocab_size is not None else ">= 0"
                raise ValueError(f"{name} must be an int {bound} (eos: or a list of them), got {i!r}")
    if pad_token_id is None and eos:
        pad_token_id = eos[0]
    return SamplingArgs(max_new_tokens, float(temperature), top_k, None if top_p is None else float(top_p), eos,
                        pad_token_id)


def _ids(value) -> tuple:
    """An id or ids (python or numpy ints, 0-d or 1-d integer tensors, sequences) as a tuple of python ints; other
    values pass through unchanged so that the range check names them."""
    if isinstance(value, torch.Tensor) and not value.is_floating_point() and value.dim() <= 1:
        return tuple(int(v) for v in value.reshape(-1).tolist())
    try:
        return (operator.index(value),)
    except TypeError:
        pass
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            try:
                out.append(operator.index(v))
            except TypeError:
                out.append(v)
        return tuple(out)
    return (value,)


def check_input_ids(input_ids, vocab_size: int | None = None) -> None:
    """``input_ids`` must be an int64 tensor ``[B, T]`` with B, T >= 1 and ids in ``[0, vocab_size)``."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.dtype != torch.int64:
        raise ValueError(f"input_ids must be an int64 tensor [B, T], got {type(input_ids).__name__} "
                         f"{getattr(input_ids, 'dtype', '')} {tuple(getattr(input_ids, 'shape', ()))}")
    if input_ids.shape[0] < 1 or input_ids.shape[1] < 1:
        raise ValueError(f"input_ids must hold at least one row and one token, got shape {tuple(input_ids.shape)}")
    if vocab_size is not None and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab_size):
        raise ValueError(f"input_ids must be token ids in [0, {vocab_size}), got values in "
                         f"[{int(input_ids.min())}, {int(input_ids.max())}]")


def choose(logits: torch.Tensor, args: SamplingArgs, generator: torch.Generator | None = None) -> torch.Tensor:
    """``logits [B, V] -> token ids int64 [B]`` by ``args``' rule (greedy, or temperature / top-k / top-p)."""
    if args.temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / args.temperature
    if args.top_k is not None and args.top_k < logits.shape[-1]:
        kth = logits.topk(args.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if args.top_p is not None and args.top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # drop a token when the tokens before it already reach top_p; the most likely token always stays
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= args.top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(-1)
    sample_device = generator.device if generator is not None else probs.device
    return torch.multinomial(probs.to(sample_device), 1, generator=generator).squeeze(-1).to(logits.device)


def decode_loop(input_ids: torch.Tensor, first_logits: torch.Tensor, step: Callable[[torch.Tensor], torch.Tensor],
                args: SamplingArgs, generator: torch.Generator | None = None, progress=None) -> torch.Tensor:
    """Generate up to ``args.max_new_tokens`` tokens after ``input_ids [B, T]``.

    ``first_logits [B, V]`` are the logits after the prompt; ``step(token [B]) -> logits [B, V]`` feeds one token
    and advances the caller's state. Returns ``[B, T + n]``, ``n <= max_new_tokens`` (shorter only when every row
    reached an eos token). ``progress``: an optional wrapper around the step range (e.g. tqdm)."""
    out = [input_ids]
    logits = first_logits
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    eos = torch.tensor(args.eos_token_id, dtype=input_ids.dtype, device=input_ids.device)
    steps = range(args.max_new_tokens)
    for i in (progress(steps) if progress else steps):
        token = choose(logits, args, generator).to(input_ids.dtype)
        if args.eos_token_id:
            token = torch.where(finished, torch.full_like(token, args.pad_token_id), token)
            finished |= torch.isin(token, eos)
        out.append(token.unsqueeze(1))
        if i + 1 == args.max_new_tokens or (args.eos_token_id and bool(finished.all())):
            break
        logits = step(token)
    return torch.cat(out, dim=1)
