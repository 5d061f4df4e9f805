"""The MQAR protocol's data, generated before every sweep run: the uniform sampling fast path against the Gumbel
path it replaced (the old function, verbatim), side by side in one process, with the two outputs checked equal token
for token.

    python benchmarks/bench_mqar_data.py                      # the protocol: 7 settings x 20,000 + 1,000 rows
    python benchmarks/bench_mqar_data.py --num-train 2000 --repeats 3

Prints a table (median seconds of ``ProtocolData.make`` per path, and the ratio). CPU only; the GPU host's cores
are not these, so the seconds there differ.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))

from ramnet.data import mqar  # noqa: E402
from ramnet.data.mqar_protocol import PROTOCOL_SETTINGS, PROTOCOL_VOCAB, ProtocolData, protocol_settings  # noqa: E402


def _gumbel_path(rng, population, num_rows, size, logp=None):
    """``_sample_without_replacement`` as it was before the uniform fast path, verbatim but for the name"""
    scores = rng.gumbel(size=(num_rows, len(population)))
    if logp is not None:
        scores = scores + logp
    # the `size` largest scores, in descending order: argpartition first (O(n) per row), then sort only those
    top = np.argpartition(-scores, size - 1, axis=1)[:, :size] if size < len(population) else \
        np.broadcast_to(np.arange(len(population)), scores.shape)
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return population[np.take_along_axis(top, order, axis=1)]


def _time(make, repeats: int):
    seconds, data = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        data = make()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-train", type=int, default=20_000, help="training rows per setting (default 20,000)")
    parser.add_argument("--num-eval", type=int, default=1_000, help="evaluation rows per setting (default 1,000)")
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats per path; the median is printed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("num_train", "num_eval", "repeats"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    settings = protocol_settings([list(s) for s in PROTOCOL_SETTINGS], PROTOCOL_VOCAB)

    def make():
        return ProtocolData.make(settings, args.num_train, args.num_eval, args.seed)

    fast_s, fast = _time(make, args.repeats)
    with mock.patch.object(mqar, "_sample_without_replacement", _gumbel_path):
        gumbel_s, gumbel = _time(make, args.repeats)
    same = all(torch.equal(a, b) for x, y in zip(fast.train + fast.eval, gumbel.train + gumbel.eval)
               for a, b in zip(x, y))
    print(f"torch {torch.__version__}, numpy {np.__version__}, {torch.get_num_threads()} threads; "
          f"{len(settings)} settings x ({args.num_train:,} + {args.num_eval:,}) rows, seed {args.seed}, "
          f"median of {args.repeats}")
    print("| path | s | ratio |\n|---|---|---|")
    print(f"| Gumbel scores (before) | {gumbel_s:.2f} | 1.00x |")
    print(f"| uniform draws + torch.topk (now) | {fast_s:.2f} | {gumbel_s / fast_s:.1f}x faster |")
    print(f"identical data: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
