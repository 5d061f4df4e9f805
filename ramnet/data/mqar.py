"""Multi-query associative recall (MQAR), following Zoology's ``multiquery_ar`` generator.

A sequence starts with ``num_kv_pairs`` key-value pairs (keys from the lower half of the vocabulary, values from
the upper half, distinct within a sequence); the rest holds the keys again as queries, at gaps drawn without
replacement from a power law ``p(g) ~ power_a * g ** (power_a - 1)``, between random filler tokens. The label is
the value right after each query position and -100 elsewhere. Seeded and deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

IGNORE_INDEX = -100
_DRAWS_PER_CHUNK = 1 << 23  # uniform draws made at a time when sampling without replacement (64 MiB of float64)


@dataclass(frozen=True)
class MQARSetting:
    vocab_size: int = 256
    seq_len: int = 64
    num_kv_pairs: int = 4
    power_a: float = 0.01
    random_non_queries: bool = True

    def __post_init__(self):
        if self.seq_len % 2:
            raise ValueError(f"seq_len must be even, got {self.seq_len}")
        if self.num_kv_pairs < 1 or 4 * self.num_kv_pairs > self.seq_len:
            raise ValueError(f"num_kv_pairs must be in [1, seq_len/4={self.seq_len // 4}], got {self.num_kv_pairs}")
        if self.vocab_size <= self.seq_len or self.vocab_size // 2 - 1 < self.num_kv_pairs:
            raise ValueError(f"vocab_size must exceed seq_len ({self.seq_len}) and hold {self.num_kv_pairs} keys")
        if not 0 < self.power_a <= 1:
            raise ValueError(f"power_a must be in (0, 1], got {self.power_a}")


def _sample_without_replacement(rng, population, num_rows: int, size: int, logp=None):
    """Row-wise sampling without replacement, vectorised with the Gumbel top-k trick (exactly the law of
    sequential sampling without replacement, as ``np.random.choice(replace=False, p=...)``)."""
    if not 0 < size <= len(population):
        raise ValueError(f"size must be in [1, {len(population)}] (the population), got {size}")
    if logp is None:
        # Uniform weights: numpy makes each Gumbel score from one uniform draw u as -log(-log(1 - u)), a decreasing
        # function of u (distinct draws give distinct scores), so the `size` largest scores are the `size` smallest
        # draws, in the same order. Drawing u and taking torch's top-k gives the same sample and leaves rng where
        # rng.gumbel would, several times faster (the protocol's data took 63 s on 2 cores, most of it here, and
        # now 12 s). Two events would make it differ: a draw of exactly 0, which numpy's Gumbel redraws (odds 2**-53
        # a draw), and two equal draws among a row's `size` smallest, which the two top-k orders may break apart
        # differently (about 1e-5 per protocol dataset); the committed results' data has neither (checked)
        # The draws go through one reused buffer of rows (numpy fills row after row, so the stream is the same):
        # fresh pages for all of them at once cost more than drawing them
        rows_per_chunk = max(1, min(num_rows, _DRAWS_PER_CHUNK // len(population)))
        buffer = np.empty((rows_per_chunk, len(population)))
        picked = np.empty((num_rows, size), dtype=np.int64)
        for start in range(0, num_rows, rows_per_chunk):
            draws = buffer[:min(rows_per_chunk, num_rows - start)]
            rng.random(out=draws)
            top = torch.topk(torch.from_numpy(draws), size, dim=1, largest=False, sorted=True)
            picked[start:start + len(draws)] = top.indices.numpy()
        return population[picked]
    scores = rng.gumbel(size=(num_rows, len(population)))
    scores = scores + logp
    # the `size` largest scores, in descending order: argpartition first (O(n) per row), then sort only those
    top = np.argpartition(-scores, size - 1, axis=1)[:, :size] if size < len(population) else \
        np.broadcast_to(np.arange(len(population)), scores.shape)
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return population[np.take_along_axis(top, order, axis=1)]


def multiquery_ar(setting: MQARSetting, num_examples: int, seed: int):
    """Returns ``(inputs int64 [N, seq_len], labels int64 [N, seq_len])`` (labels -100 except after queries)."""
    s = setting
    rng = np.random.default_rng(seed)
    context = 2 * s.num_kv_pairs
    key_vocab = s.vocab_size // 2
    keys = _sample_without_replacement(rng, np.arange(1, key_vocab), num_examples, s.num_kv_pairs)
    values = _sample_without_replacement(rng, np.arange(key_vocab, s.vocab_size), num_examples, s.num_kv_pairs)
    kvs = np.zeros((num_examples, context), dtype=np.int64)
    kvs[:, 0::2], kvs[:, 1::2] = keys, values

    space = (s.seq_len - context) // 2
    gaps_p = s.power_a * np.arange(1, space + 1) ** (s.power_a - 1)
    gaps = _sample_without_replacement(rng, np.arange(space), num_examples, s.num_kv_pairs,
                                       logp=np.log(gaps_p / gaps_p.sum()))
    queries = np.zeros((num_examples, s.seq_len - context + 1), dtype=np.int64)
    np.put_along_axis(queries, gaps * 2, keys, axis=1)
    examples = np.concatenate([kvs, queries], axis=1)
    labels = np.full((num_examples, s.seq_len + 1), IGNORE_INDEX, dtype=np.int64)
    np.put_along_axis(labels, gaps * 2 + context + 1, values, axis=1)
    inputs, labels = examples[:, :-1], labels[:, 1:]
    if s.random_non_queries:
        filler = rng.integers(0, s.vocab_size, size=inputs.shape)
        inputs = np.where(inputs == 0, filler, inputs)
    return torch.from_numpy(np.ascontiguousarray(inputs)), torch.from_numpy(np.ascontiguousarray(labels))


def query_bindings(inputs: torch.Tensor, labels: torch.Tensor, num_kv_pairs: int) -> tuple[list[int], list[int]]:
    """For one sequence from :func:`multiquery_ar` (``inputs``, ``labels`` int64 [seq_len]): the query positions
    (labelled) and, for each, the position of the value bound to its key (``2 * i + 1`` for the i-th pair)."""
    if inputs.dim() != 1 or inputs.shape != labels.shape:
        raise ValueError(f"inputs and labels must be one sequence each, [seq_len]; got {tuple(inputs.shape)} and "
                         f"{tuple(labels.shape)}")
    half = len(inputs) // 2
    if isinstance(num_kv_pairs, bool) or not isinstance(num_kv_pairs, int) or not 1 <= num_kv_pairs <= half:
        raise ValueError(f"num_kv_pairs must be an int in [1, seq_len/2={half}], got {num_kv_pairs!r}")
    key_position = {int(inputs[2 * i]): 2 * i for i in range(num_kv_pairs)}
    queries = [int(t) for t in (labels != IGNORE_INDEX).nonzero().flatten()]
    # an MQAR sequence with this many pairs: distinct keys, every query after the pairs and on one of their keys
    if len(key_position) != num_kv_pairs or (queries and min(queries) < 2 * num_kv_pairs) or \
            not all(int(inputs[q]) in key_position for q in queries):
        raise ValueError(f"not an MQAR sequence with {num_kv_pairs} pairs: its keys must be distinct and every "
                         "labelled position must come after the pairs and hold one of their keys")
    return queries, [key_position[int(inputs[q])] + 1 for q in queries]


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of labelled positions (label != -100) whose argmax equals the label."""
    mask = labels != IGNORE_INDEX
    if not mask.any():
        raise ValueError("labels contain no labelled position")
    return (logits.argmax(-1)[mask] == labels[mask]).float().mean().item()
