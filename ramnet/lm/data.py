"""Language-model data: documents through Hugging Face ``datasets``, tokenized, packed into fixed-length rows.

- **Documents.** Local ``.txt`` (one document per line, per blank-line paragraph or per file: ``sample_by``),
  ``.jsonl`` / ``.json`` or ``.parquet`` files (globs and directories too), or a dataset name when online.
  ``streaming`` reads them as a stream instead of into memory.
- **Packing.** Each document's tokens (with the tokenizer's end-of-text token) are concatenated and cut into rows
  of ``seq_len`` tokens; a document may continue in the next row. A row records where each document piece starts,
  so a batch of rows becomes one ``[1, n * seq_len]`` sequence with ``cu_seqlens`` (every row start is a piece
  start): the memory, the short conv and the CAPE positions restart at each piece, and no target crosses a piece
  boundary (the last token of each piece has target ``IGNORE_INDEX``).
- **Order.** The rows a step trains on are a function of the seed and the step alone, never of the number of
  processes: step ``s`` takes global rows ``[s * B, (s + 1) * B)`` of the run's row order, micro-step ``m`` of
  rank ``r`` takes rows ``m * W * b + r * b + [0, b)`` of those (``b = B / (A W)``). In memory, the row order is
  a seeded permutation of the training rows per epoch; streaming, it is the stream's order, epoch after epoch.
  Every rank reads (and tokenizes) the whole stream and keeps its own rows.
- **Validation.** ``val_data`` / ``val_split``, or the training rows with index ``r % holdout_every == 0``, which
  are never trained on. At most ``val_rows`` rows; each rank evaluates every ``W``-th one.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import torch

from ..losses import IGNORE_INDEX

EXTENSIONS = {".txt": "text", ".text": "text", ".md": "text", ".json": "json", ".jsonl": "json",
              ".parquet": "parquet"}
TOKENIZE_BATCH = 1000


@dataclass(frozen=True)
class Source:
    """Where documents come from: ``builder`` is a datasets builder (``text``, ``json``, ``parquet``) with
    ``files``, or a dataset name (``files`` empty)."""

    builder: str
    files: tuple[str, ...] = ()
    config: str | None = None

    @property
    def is_local(self) -> bool:
        return bool(self.files)


def resolve_source(entries: list[str], data_format: str | None, config: str | None, flag: str = "--data") -> Source:
    """Local files (globs, directories) with one format, or one dataset name. A path that looks like a file but
    does not exist is a ``FileNotFoundError`` naming ``flag``."""
    files: list[str] = []
    for entry in entries:
        if glob.has_magic(entry):
            matched = sorted(glob.glob(entry, recursive=True))
            if not matched:
                raise FileNotFoundError(f"{flag} {entry!r}: no file matches")
            files += [m for m in matched if os.path.isfile(m)]
        elif os.path.isdir(entry):
            found = sorted(str(p) for p in Path(entry).rglob("*") if p.is_file() and p.suffix in EXTENSIONS)
            if not found:
                raise FileNotFoundError(f"{flag} {entry}: the directory holds no {', '.join(EXTENSIONS)} file")
            files += found
        elif os.path.isfile(entry):
            files.append(entry)
        elif len(entries) == 1 and not Path(entry).suffix and not entry.startswith((".", "/", "~")) \
                and entry.count("/") <= 1:
            return Source(builder=entry, config=config)  # a dataset name (datasets fetches it when online)
        else:
            raise FileNotFoundError(f"{flag} {entry}: no such file (nor a dataset name)")
    if data_format is None:
        formats = {EXTENSIONS.get(Path(f).suffix) for f in files}
        if None in formats:
            odd = next(f for f in files if Path(f).suffix not in EXTENSIONS)
            raise ValueError(f"{flag} {odd}: unknown extension; give --data-format ({', '.join(sorted(set(EXTENSIONS.values())))})")
        if len(formats) != 1:
            raise ValueError(f"{flag} mixes formats {sorted(formats)}; give files of one format")
        data_format = formats.pop()
    return Source(builder=data_format, files=tuple(os.path.abspath(f) for f in files))


def load_documents(source: Source, *, split: str, streaming: bool, sample_by: str, cache_dir: str | None):
    """A ``datasets.Dataset`` (or ``IterableDataset`` when streaming) of the documents."""
    import datasets

    kwargs = dict(streaming=streaming, cache_dir=cache_dir)
    if source.is_local:
        if source.builder == "text":
            kwargs["sample_by"] = sample_by
        return datasets.load_dataset(source.builder, data_files=list(source.files), split="train", **kwargs)
    return datasets.load_dataset(source.builder, source.config, split=split, **kwargs)


def tokenized_documents(documents, tokenizer, text_field: str, flag: str = "--data") -> Iterator[list[int]]:
    """Each non-empty document's token ids, ending with the tokenizer's end-of-text id when it has one."""
    eos = tokenizer.eos_token_id
    for batch in documents.iter(batch_size=TOKENIZE_BATCH):
        if text_field not in batch:
            raise ValueError(f"--text-field {text_field!r} is not a column of {flag}; columns: {sorted(batch)}")
        texts = [t for t in batch[text_field] if isinstance(t, str) and t.strip()]
        if not texts:
            continue
        for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]:
            if eos is not None and (not ids or ids[-1] != eos):
                ids = [*ids, eos]
            yield ids


def pack_rows(documents: Iterable[list[int]], seq_len: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Concatenate documents and cut rows of ``seq_len``: ``(ids int32 [T], starts bool [T])``, ``starts`` marking
    each document's first token (int32 halves the memory of rows held for a whole run). The tail shorter than a
    row is dropped."""
    ids: list[int] = []
    starts: list[bool] = []
    for doc in documents:
        ids.extend(doc)
        starts.append(True)
        starts.extend([False] * (len(doc) - 1))
        pos = 0
        while len(ids) - pos >= seq_len:
            yield (torch.tensor(ids[pos:pos + seq_len], dtype=torch.int32),
                   torch.tensor(starts[pos:pos + seq_len], dtype=torch.bool))
            pos += seq_len
        del ids[:pos], starts[:pos]


def _first_line(error: BaseException) -> str:
    """An exception (and its cause, which datasets' generic errors hide the reason in) as one short line."""
    parts = [f"{type(error).__name__}: {error}"]
    if error.__cause__ is not None and str(error.__cause__):
        parts.append(f"{type(error.__cause__).__name__}: {error.__cause__}")
    return "; ".join(" ".join(p.split()) for p in parts)[:300]


def make_batch(ids: torch.Tensor, starts: torch.Tensor, weight: torch.Tensor | None = None):
    """Rows ``ids [n, T]`` and ``starts [n, T]`` -> one packed sequence ``(input_ids [1, nT], targets [1, nT],
    cu_seqlens int64 [P + 1])`` over its ``P`` document pieces. A target is the next token of the same piece, else
    ``IGNORE_INDEX``. ``weight`` bool ``[n]``: rows marked False get no targets (padding)."""
    n, T = ids.shape
    starts = starts.clone()
    starts[:, 0] = True
    flat = starts.reshape(-1)
    input_ids = ids.reshape(1, -1).to(torch.int64)
    next_starts = torch.cat([flat[1:], flat.new_ones(1)])
    targets = torch.where(next_starts, torch.full_like(input_ids[0], IGNORE_INDEX), input_ids[0].roll(-1, 0))
    if weight is not None:
        targets = torch.where(weight.repeat_interleave(T), targets, torch.full_like(targets, IGNORE_INDEX))
    cu_seqlens = torch.cat([flat.nonzero().flatten(), torch.tensor([n * T])]).to(torch.int64)
    return input_ids, targets.unsqueeze(0), cu_seqlens


class LMData:
    """The run's training and validation rows for one rank (see the module docstring for the order).

    ``train_steps(start_step)`` yields, per optimizer step, ``grad_accum`` micro-batches of this rank (each as
    :func:`make_batch` returns it); ``val_batches()`` the rank's validation micro-batches (every rank gets as many,
    padded with target-less rows)."""

    def __init__(self, args, tokenizer, rank: int = 0, world_size: int = 1):
        if args.batch_size % (args.grad_accum * world_size):
            raise ValueError(f"--batch-size {args.batch_size} must be a multiple of --grad-accum {args.grad_accum} "
                             f"x processes {world_size}")
        self.args, self.tokenizer, self.rank, self.world = args, tokenizer, rank, world_size
        self.micro = args.batch_size // (args.grad_accum * world_size)
        self.source = resolve_source(args.data, args.data_format, args.dataset_config)
        self.val_source = None if args.val_data is None else resolve_source(args.val_data, args.data_format,
                                                                            args.dataset_config, "--val-data")
        if args.val_split is not None and self.source.is_local:
            raise ValueError("--val-split needs a dataset name as --data; for local files give --val-data")
        self.holdout = args.val_data is None and args.val_split is None
        if args.streaming and self.holdout and args.shuffle_buffer:
            raise ValueError("--streaming with --shuffle-buffer needs --val-data or --val-split: rows held out of a "
                             "stream shuffled anew each epoch would not stay out of training")
        self._val_rows = None
        self.rows = None  # in memory: (ids [R, T], starts [R, T]) of the training rows
        if not args.streaming:
            ids, starts, val = [], [], []
            try:
                for r, row in enumerate(self._packed(self.source, args.split, epoch=None)):
                    if self.holdout and r % args.holdout_every == 0:
                        if len(val) < args.val_rows:
                            val.append(row)
                    else:
                        ids.append(row[0])
                        starts.append(row[1])
            except Exception as error:  # noqa: BLE001 - datasets raises its own types for unreadable or empty files
                if isinstance(error, ValueError) and "--" in str(error):
                    raise
                raise ValueError(f"--data {self._named('--data')}: cannot read it ({_first_line(error)})") from None
            if not ids:
                raise ValueError(f"--data makes no training row of --seq-len {args.seq_len} tokens"
                                 + (f" (every {args.holdout_every}th row is held out for validation)"
                                    if self.holdout else "") + "; give more text or a shorter --seq-len")
            self.rows = (torch.stack(ids), torch.stack(starts))
            self._val_rows = val if self.holdout else None
        self._val_cache = None
        # the validation rows are read now, so that a bad --val-data / --val-split stops the run before any step
        if self._val_rows is None:
            self._val_rows = self._validation_rows()
        if not self._val_rows:
            flag = "--val-data" if self.val_source is not None else "--val-split" if not self.holdout else "--data"
            raise ValueError(f"{flag} makes no row of --seq-len {args.seq_len} tokens"
                             + (" to validate on" if flag == "--data" else "")
                             + "; give more text or a shorter --seq-len")

    # ---- reading --------------------------------------------------------------------------------------------
    def _packed(self, source: Source, split: str, epoch: int | None, flag: str = "--data"):
        a = self.args
        docs = load_documents(source, split=split, streaming=a.streaming, sample_by=a.sample_by,
                              cache_dir=a.cache_dir)
        if a.streaming and a.shuffle_buffer and epoch is not None:
            docs = docs.shuffle(seed=a.seed, buffer_size=a.shuffle_buffer)
            docs.set_epoch(epoch)
        return pack_rows(tokenized_documents(docs, self.tokenizer, a.text_field, flag), a.seq_len)

    def _stream_rows(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Streaming: the training rows, epoch after epoch (held-out rows skipped)."""
        epoch = 0
        while True:
            count = 0
            for r, row in enumerate(self._packed(self.source, self.args.split, epoch)):
                if self.holdout and r % self.args.holdout_every == 0:
                    continue
                count += 1
                yield row
            if count == 0:
                raise ValueError(f"--data makes no training row of --seq-len {self.args.seq_len} tokens")
            epoch += 1

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed((self.args.seed * 1_000_003 + epoch) % 2**63)
        return torch.randperm(self.rows[0].shape[0], generator=gen)

    def _global_rows(self, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The run's rows from global position ``start`` on."""
        if self.rows is None:
            stream = self._stream_rows()
            for _ in range(start):  # a resumed stream is read again up to where it stopped
                next(stream)
            yield from stream
            return
        R = self.rows[0].shape[0]
        pos = start
        while True:
            order = self._epoch_order(pos // R)
            for i in order[pos % R:].tolist():
                yield self.rows[0][i], self.rows[1][i]
            pos = (pos // R + 1) * R

    # ---- batches --------------------------------------------------------------------------------------------
    def train_steps(self, start_step: int = 0):
        """Per step from ``start_step`` on: a list of ``grad_accum`` micro-batches of this rank."""
        B, b, W, r = self.args.batch_size, self.micro, self.world, self.rank
        rows = self._global_rows(start_step * B)
        while True:
            step_rows = [next(rows) for _ in range(B)]
            micro = []
            for m in range(self.args.grad_accum):
                mine = step_rows[m * W * b + r * b: m * W * b + (r + 1) * b]
                micro.append(make_batch(torch.stack([x[0] for x in mine]), torch.stack([x[1] for x in mine])))
            yield micro

    def _validation_rows(self):
        a = self.args
        if self._val_rows is not None:
            return self._val_rows
        rows = []
        flag = "--data" if self.holdout else "--val-data" if self.val_source is not None else "--val-split"
        try:
            if self.holdout:  # streaming: the held-out rows of the stream's first epoch
                packed = (row for r, row in enumerate(self._packed(self.source, a.split, 0))
                          if r % a.holdout_every == 0)
            elif self.val_source is not None:
                packed = self._packed(self.val_source, "train", None, "--val-data")
            else:
                packed = self._packed(self.source, a.val_split, None, "--val-split")
            for row in packed:
                rows.append(row)
                if len(rows) == a.val_rows:
                    break
        except Exception as error:  # noqa: BLE001 - datasets raises its own types for unreadable or empty files
            if isinstance(error, ValueError) and flag in str(error):
                raise
            raise ValueError(f"{flag} {self._named(flag)}: cannot read it ({_first_line(error)})") from None
        return rows

    def _named(self, flag: str) -> str:
        a = self.args
        return " ".join(a.data if flag == "--data" else a.val_data if flag == "--val-data" else [a.val_split])

    def val_batches(self) -> list:
        """This rank's validation micro-batches (rows ``rank, rank + W, ...`` in groups of the micro-batch size);
        ranks with fewer rows get target-less padding rows so that every rank runs as many forwards."""
        if self._val_cache is None:
            rows = self._validation_rows()
            if not rows:
                self._val_cache = []
                return self._val_cache
            W, b = self.world, self.micro
            per_rank = -(-len(rows) // W)
            per_rank = -(-per_rank // b) * b
            batches = []
            for start in range(0, per_rank, b):
                picked = [(start + k) * W + self.rank for k in range(b)]
                real = torch.tensor([i < len(rows) for i in picked])
                chosen = [rows[i] if i < len(rows) else rows[0] for i in picked]
                batches.append(make_batch(torch.stack([x[0] for x in chosen]), torch.stack([x[1] for x in chosen]),
                                          weight=real))
            self._val_cache = batches
        return self._val_cache

    def describe(self) -> dict:
        """Sizes for the log: training rows (in memory), validation rows, micro-batch rows per rank."""
        info = {"source": self.source.builder if not self.source.is_local else list(self.source.files),
                "streaming": self.args.streaming, "micro_batch_rows": self.micro}
        if self.rows is not None:
            info["train_rows"] = int(self.rows[0].shape[0])
            info["train_tokens"] = int(self.rows[0].numel())
        return info
