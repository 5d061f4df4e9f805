"""How open a gated RAM-Net checkpoint's write gate is at each kind of MQAR token, per layer and head.

    python benchmarks/mqar_gate_profile.py RUN/model --settings 64,256 256,1024 --num-examples 64

In the protocol's largest settings every other token of the query phase is a query and each one after it is
random: a write there can bind the queried key to a random value in slots that other pairs share
(``ramnet.analysis_gates``). The table gives the mean gate at the pairs' keys and values, at the queries, after
the queries, and after the last quarter of each sequence's queries. fp32 on the CPU; about a minute for 16
sequences of 1,024 tokens of the 66k band's 8-head model on 2 cores.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a sibling module, not a package
from common import checkpoint_name, parse_probe_args, probe_parser, write_probe_json  # noqa: E402
from ramnet.analysis_gates import gate_by_role  # noqa: E402
from ramnet.data.mqar import MQARSetting, multiquery_ar  # noqa: E402

COLUMNS = ("key", "value", "query", "after_query", "after_query_late")


def main(argv=None) -> int:
    parser = probe_parser(__doc__.split("\n\n")[0], 16, "gated model checkpoint directories (a sweep's RUN/model)")
    args, checkpoints = parse_probe_args(parser, argv, gated=True)
    rows = []
    for path, model in checkpoints:
        name = checkpoint_name(path)
        for pairs, length in args.settings:
            setting = MQARSetting(vocab_size=model.config.vocab_size, seq_len=length, num_kv_pairs=pairs)
            ids, labels = multiquery_ar(setting, args.num_examples, seed=args.seed)
            for layer, heads in enumerate(gate_by_role(model, ids, labels, pairs)):
                rows += [{"checkpoint": name, "path": str(Path(path).resolve()), "pairs": pairs, "seq_len": length,
                          "layer": layer, "head": head, **gates} for head, gates in enumerate(heads)]
    print("| checkpoint | setting | layer.head | " + " | ".join(c.replace("_", " ") for c in COLUMNS) + " |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    for r in rows:
        print(f"| {r['checkpoint']} | {r['pairs']},{r['seq_len']} | {r['layer'] + 1}.{r['head']} | "
              + " | ".join(f"{r[c]:.3f}" for c in COLUMNS) + " |")
    if args.out:
        write_probe_json(args, rows)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
