"""What the query phase's writes cost a gated RAM-Net checkpoint: its MQAR errors as trained, then with the write
gate forced to 0 from the first query-phase token on (in each layer alone, then in all).

    python benchmarks/mqar_gate_intervention.py RUN/model --settings 256,1024 --num-examples 128

In the protocol's largest settings the query phase is full (a query, a random token, a query, ...), and the
gates stay open there (``benchmarks/mqar_gate_profile.py``): the model cannot tell a query from a key it has not
yet seen without reading the memory. Closing them is an oracle, not a model: the errors it removes, above all on
the queries asked last, are what those writes cost. fp32 on the CPU, one forward pass per variant.

``--by-role`` adds variants that shut only the query phase's random tokens' writes, or only its queries'
(``ramnet.analysis_gates.writes_closed_where``), in each layer alone and in all. Closing the whole query phase
also shuts each query's own write, which its read sees; the split asks which of the two the errors come from,
since only the random tokens' writes can bind a queried key to a random value.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a sibling module, not a package
from common import checkpoint_name, parse_probe_args, probe_parser, report_row  # noqa: E402
from ramnet.analysis_gates import writes_closed_where  # noqa: E402
from ramnet.data.mqar import IGNORE_INDEX, MQARSetting, multiquery_ar  # noqa: E402
from ramnet.mqar_errors import QUARTERS, query_outcomes  # noqa: E402


def _errors(model, ids, labels, pairs, batch_size, closed=None, layers=None) -> dict:
    """Errors of ``ids, labels`` with the writes at ``closed [B, T]`` (bool; None: as trained) shut in ``layers``."""
    wrong, rank = [], []
    for i in range(0, len(ids), batch_size):
        rows = slice(i, i + batch_size)
        shut = contextlib.nullcontext() if closed is None else writes_closed_where(model, closed[rows], layers)
        with shut:
            out = query_outcomes(model, ids[rows], labels[rows], pairs, batch_size=batch_size)
        wrong.append(~out["correct"])
        rank.append(out["rank"])
    wrong, rank = torch.cat(wrong), torch.cat(rank)
    per_row = len(wrong) // len(ids)
    quarter = rank * QUARTERS // per_row
    return {"queries": len(wrong), "errors": int(wrong.sum()),
            "by_query_quarter": [int((wrong & (quarter == q)).sum()) for q in range(QUARTERS)]}


def _variants(n_layers: int, by_role: bool) -> list[tuple[str, str | None, list[int] | None]]:
    """(label, which query-phase tokens are shut: "all", "random", "queries" or None, layers)."""
    layer_sets = [([i], f"layer {i + 1}") for i in range(n_layers)]
    layer_sets += [(list(range(n_layers)), "every layer")] if n_layers > 1 else []
    roles = [("all", "closed")] + ([("random", "random tokens' closed"), ("queries", "queries' closed")]
                                   if by_role else [])
    return [("as trained", None, None)] + [(f"{text} in {where}", role, layers)
                                           for role, text in roles for layers, where in layer_sets]


def _closed_mask(labels: torch.Tensor, pairs: int, role: str) -> torch.Tensor:
    """``[B, T]`` bool: the query phase's positions of ``role`` ("all", "random" or "queries")."""
    phase = torch.zeros(labels.shape, dtype=torch.bool)
    phase[:, 2 * pairs:] = True
    queries = labels != IGNORE_INDEX  # a query's label sits at the query token itself
    return {"all": phase, "random": phase & ~queries, "queries": phase & queries}[role]


def _batch_size(text: str) -> int:
    """argparse type of ``--batch-size``: checked as it is parsed, before any checkpoint is loaded."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}")
    return value


def main(argv=None) -> int:
    parser = probe_parser(__doc__.split("\n\n")[0], 64, "gated model checkpoint directories (a sweep's RUN/model)")
    parser.add_argument("--batch-size", type=_batch_size, default=16, help="sequences per forward pass (default 16)")
    parser.add_argument("--by-role", action="store_true",
                        help="also shut only the query phase's random tokens' writes, and only its queries'")
    args, checkpoints = parse_probe_args(parser, argv, gated=True)
    rows = []
    print("| checkpoint | setting | query-phase writes | errors of queries | by query quarter (first asked first) |")
    print("|---|---|---|---|---|")
    for path, model in checkpoints:
        name = checkpoint_name(path)
        variants = _variants(len(model.blocks), args.by_role)
        for pairs, length in args.settings:
            setting = MQARSetting(vocab_size=model.config.vocab_size, seq_len=length, num_kv_pairs=pairs)
            ids, labels = multiquery_ar(setting, args.num_examples, seed=args.seed)
            for label, role, layers in variants:
                closed = None if role is None else _closed_mask(labels, pairs, role)
                counts = _errors(model, ids, labels, pairs, args.batch_size, closed, layers)
                report_row(args, rows, {"checkpoint": name, "path": str(Path(path).resolve()), "pairs": pairs,
                                        "seq_len": length, "variant": label, "closed_tokens": role,
                                        "closed_layers": layers, **counts},
                           f"| {name} | {pairs},{length} | {label} | {counts['errors']:,} of {counts['queries']:,} | "
                           f"{' / '.join(str(c) for c in counts['by_query_quarter'])} |")
    if args.out:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
