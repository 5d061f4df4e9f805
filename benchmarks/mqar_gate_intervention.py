"""What the query phase's writes cost a gated RAM-Net checkpoint: its MQAR errors as trained, then with the write
gate forced to 0 from the first query-phase token on (in each layer alone, then in all).

    python benchmarks/mqar_gate_intervention.py RUN/model --settings 256,1024 --num-examples 128

In the protocol's largest settings the query phase is full (a query, a random token, a query, ...), and the
gates stay open there (``benchmarks/mqar_gate_profile.py``): the model cannot tell a query from a key it has not
yet seen without reading the memory. Closing them is an oracle, not a model: the errors it removes, above all on
the queries asked last, are what those writes cost. fp32 on the CPU, one forward pass per variant.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a sibling module, not a package
from common import checkpoint_name, parse_probe_args, probe_parser, write_probe_json  # noqa: E402
from ramnet.analysis_gates import writes_closed_from  # noqa: E402
from ramnet.data.mqar import MQARSetting, multiquery_ar  # noqa: E402
from ramnet.mqar_errors import QUARTERS, query_outcomes  # noqa: E402


def _errors(model, ids, labels, pairs, batch_size) -> dict:
    out = query_outcomes(model, ids, labels, pairs, batch_size=batch_size)
    wrong = ~out["correct"]
    per_row = len(out["correct"]) // len(ids)
    quarter = out["rank"] * QUARTERS // per_row
    return {"queries": len(wrong), "errors": int(wrong.sum()),
            "by_query_quarter": [int((wrong & (quarter == q)).sum()) for q in range(QUARTERS)]}


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
    args, checkpoints = parse_probe_args(parser, argv, gated=True)
    rows = []
    print("| checkpoint | setting | query-phase writes | errors of queries | by query quarter (first asked first) |")
    print("|---|---|---|---|---|")
    for path, model in checkpoints:
        name = checkpoint_name(path)
        n_layers = len(model.blocks)
        variants = [("as trained", None)] + [(f"closed in layer {i + 1}", [i]) for i in range(n_layers)]
        variants += [("closed in every layer", list(range(n_layers)))] if n_layers > 1 else []
        for pairs, length in args.settings:
            setting = MQARSetting(vocab_size=model.config.vocab_size, seq_len=length, num_kv_pairs=pairs)
            ids, labels = multiquery_ar(setting, args.num_examples, seed=args.seed)
            for label, layers in variants:
                if layers is None:
                    counts = _errors(model, ids, labels, pairs, args.batch_size)
                else:
                    with writes_closed_from(model, 2 * pairs, layers):
                        counts = _errors(model, ids, labels, pairs, args.batch_size)
                rows.append({"checkpoint": name, "path": str(Path(path).resolve()), "pairs": pairs,
                             "seq_len": length, "variant": label, "closed_layers": layers, **counts})
                print(f"| {name} | {pairs},{length} | {label} | {counts['errors']:,} of {counts['queries']:,} | "
                      f"{' / '.join(str(c) for c in counts['by_query_quarter'])} |", flush=True)
                if args.out:  # after every variant: each takes minutes on a CPU, and a stopped run keeps the rest
                    write_probe_json(args, rows)
    if args.out:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
