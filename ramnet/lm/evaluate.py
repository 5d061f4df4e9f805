"""``ramnet eval --task lm``: the perplexity of a model checkpoint on text (or on its run's validation rows)."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from .. import checkpoint as ckpt
from .arch import load_lm_model
from .args import LMArgs
from .data import LMData, load_documents, make_batch, pack_rows, resolve_source, tokenized_documents
from .dist import Processes
from .loop import LMObjective, evaluate
from .tokenizer import load_tokenizer, vocab_size


def run_args(checkpoint: Path) -> dict | None:
    """The training arguments saved with a run's final model (``metrics.json``), or None."""
    path = Path(checkpoint) / "metrics.json"
    if not path.is_file():
        return None
    saved = ckpt.read_json(path, "run metadata")
    return saved.get("args") if saved.get("task") == "lm" else None


def checkpoint_tokenizer(checkpoint: Path, tokenizer: str | None):
    """``tokenizer`` when given, else the tokenizer saved in ``checkpoint``."""
    if tokenizer is not None:
        return load_tokenizer(tokenizer)
    if not (Path(checkpoint) / "tokenizer_config.json").is_file():
        raise FileNotFoundError(f"--checkpoint {checkpoint} holds no tokenizer (tokenizer_config.json); pass "
                                "--tokenizer")
    return load_tokenizer(str(checkpoint))


def eval_lm(checkpoint: str | Path, *, data: list[str] | None = None, seq_len: int | None = None,
            max_rows: int = 64, batch_rows: int = 8, data_format: str | None = None, text_field: str = "text",
            sample_by: str = "paragraph", tokenizer: str | None = None, device="cpu",
            precision: str = "fp32") -> dict:
    """Mean next-token loss and perplexity of the checkpoint on the first ``max_rows`` packed rows of ``data``
    (rows of ``seq_len`` tokens, default the run's), or, without ``data``, on its run's validation rows."""
    for name, value, low in (("--max-rows", max_rows, 1), ("--batch-rows", batch_rows, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    checkpoint = Path(checkpoint)
    saved = run_args(checkpoint)
    if data is None and saved is not None:
        # the run's held-out rows exist only at its own row length and tokenization: rows cut otherwise would
        # mostly be rows the run trained on
        for flag, given, own in (("--seq-len", seq_len, saved["seq_len"]), ("--tokenizer", tokenizer,
                                                                            saved["tokenizer"])):
            if given is not None and given != own:
                raise ValueError(f"{flag} {given!r} differs from the run's {own!r}: without --data, eval scores the "
                                 f"run's validation rows, which exist only at the run's {flag}; pass --data to "
                                 "score text at another one")
    model = load_lm_model(checkpoint, map_location=device)  # RAM-Net or a baseline (--arch attention / deltanet)
    tok = checkpoint_tokenizer(checkpoint, tokenizer)
    if vocab_size(tok) > model.config.vocab_size:
        raise ValueError(f"the tokenizer has {vocab_size(tok)} ids, the model's vocab_size is "
                         f"{model.config.vocab_size}")
    if seq_len is None:
        seq_len = saved["seq_len"] if saved else 512
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise ValueError(f"--seq-len must be an integer >= 2, got {seq_len!r}")
    if data is None:
        if saved is None:
            raise ValueError(f"--checkpoint {checkpoint} has no LM run arguments (metrics.json); pass --data")
        args = LMArgs(**{**saved, "seq_len": seq_len, "val_rows": max_rows, "batch_size": batch_rows,
                         "grad_accum": 1})
        batches = LMData(args, tok).val_batches()
        where = "the run's validation rows"
    else:
        source = resolve_source(data, data_format, None)
        docs = load_documents(source, split="train", streaming=True, sample_by=sample_by, cache_dir=None)
        rows = []
        for row in pack_rows(tokenized_documents(docs, tok, text_field), seq_len):
            rows.append(row)
            if len(rows) == max_rows:
                break
        if not rows:
            raise ValueError(f"--data makes no row of --seq-len {seq_len} tokens")
        batches = [make_batch(torch.stack([r[0] for r in rows[i:i + batch_rows]]),
                              torch.stack([r[1] for r in rows[i:i + batch_rows]]))
                   for i in range(0, len(rows), batch_rows)]
        where = "--data"
    procs = Processes(device=torch.device(device))
    result = evaluate(LMObjective(model), batches, procs, precision)
    loss = result["val_loss"]
    return {"loss": loss, "ppl": math.exp(min(loss, 700.0)), "tokens": result["val_tokens"], "seq_len": seq_len,
            "data": where, "device": str(device), "precision": precision}
