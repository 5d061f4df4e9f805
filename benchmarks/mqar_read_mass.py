"""How much weight a trained RAM-Net model's reads give the pair each MQAR query asks for, against the heaviest other
pair, for the queries it answers right and wrong (``ramnet.analysis_reads.pair_read_mass``).

    python benchmarks/mqar_read_mass.py RUN/model [RUN/model ...] --settings 128,512 256,1024 \\
        --num-examples 256 --out benchmarks/results/mqar_read_mass.json

Slot counts (benchmarks/mqar_interference.py) saturate in a wide model: with 8 heads of M=64 slots and K=16 at 256
pairs every read slot holds many pairs' writes. The weights do not: a read is a weighted sum of the values written
before it, and this probe takes each pair's weight in it. For each checkpoint, setting, layer and head it prints,
at the write offset where the head gives the own pair the largest lead (the short conv lets a head bind a pair up
to kernel - 2 tokens after its value): the read's weight on the own pair, on the heaviest other pair, the share of
queries whose own pair is the heaviest, and the row's whole weight, each for the right and the wrong answers, and
the share of the wrong answers that are the value of the other pair the head weighs most. Then, per checkpoint and
setting, the head whose own pair is most often the heaviest. The MQAR sequences are the generator's at --seed
(default 123, as the interference probe's), not the training data's. On this CPU a 256-pair sequence of the
256-wide 8-head model takes about 4.5 s.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import checkpoint_name, parse_probe_args, probe_parser, write_probe_json  # noqa: E402
from ramnet.analysis_reads import pair_read_mass  # noqa: E402
from ramnet.data.mqar import MQARSetting, multiquery_ar  # noqa: E402

GROUPS = ("right", "wrong")


def over_all(entry: dict, key: str) -> float:
    """``key``'s mean over every query, right and wrong."""
    n = entry["right"] + entry["wrong"]
    return sum(entry[f"{key}_{g}"] * entry[g] for g in GROUPS if entry[g]) / n


def lead(entry: dict) -> float:
    """The own pair's weight less the heaviest other pair's, over every query."""
    return over_all(entry, "own") - over_all(entry, "max_other")


def _fmt(x: float, digits: int = 4) -> str:
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def _pair(entry: dict, key: str, digits: int = 4) -> str:
    return " / ".join(_fmt(entry[f"{key}_{g}"], digits) for g in GROUPS)


def main(argv=None) -> int:
    args, checkpoints = parse_probe_args(probe_parser(__doc__.split("\n\n")[0], 64), argv)
    rows = []
    for path, model in checkpoints:
        name = checkpoint_name(path)
        c = model.config
        for pairs, length in args.settings:
            setting = MQARSetting(vocab_size=c.vocab_size, seq_len=length, num_kv_pairs=pairs)
            ids, labels = multiquery_ar(setting, args.num_examples, seed=args.seed)
            # the key stays in the conv window of value + offset for offset <= kernel - 2
            offsets = range(min(c.short_conv_kernel - 1, length - 2 * pairs + 1) if c.short_conv else 1)
            by_offset = pair_read_mass(model, ids, labels, pairs, list(offsets), progress=True)
            for layer in range(len(model.blocks)):
                for head in range(c.n_heads):
                    offset = max(by_offset, key=lambda o: lead(by_offset[o][layer][head]))
                    entry = by_offset[offset][layer][head]
                    rows.append({"checkpoint": name, "path": str(Path(path).resolve()), "pairs": pairs,
                                 "seq_len": length, "layer": layer, "head": head, "write_offset": offset,
                                 "accuracy": entry["right"] / (entry["right"] + entry["wrong"]), **entry})
    print("| checkpoint | setting | layer.head | offset | accuracy (wrong) | own: right / wrong | "
          "heaviest other: right / wrong | own heaviest: right / wrong | whole row: right / wrong | "
          "wrong answers: the heaviest other's value |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['checkpoint']} | {r['pairs']},{r['seq_len']} | {r['layer'] + 1}.{r['head']} | "
              f"{r['write_offset']} | {r['accuracy']:.4f} ({r['wrong']}) | {_pair(r, 'own')} | "
              f"{_pair(r, 'max_other')} | {_pair(r, 'own_top', 3)} | {_pair(r, 'total', 3)} | "
              f"{_fmt(r['took_other_wrong'], 3)} |")
    print("\nThe head whose own pair is most often the heaviest, per checkpoint and setting:\n")
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["path"], r["pairs"], r["seq_len"]), []).append(r)
    for group in groups.values():
        top = max(group, key=lambda r: over_all(r, "own_top"))
        top["binding"] = True
        print(f"- {top['checkpoint']} at {top['pairs']},{top['seq_len']}: head {top['layer'] + 1}.{top['head']} "
              f"(offset {top['write_offset']}); own pair heaviest for {_fmt(top['own_top_right'], 3)} of the right "
              f"answers and {_fmt(top['own_top_wrong'], 3)} of the {top['wrong']} wrong ones; of the wrong answers "
              f"{_fmt(top['took_other_wrong'], 3)} are the value of the pair this head weighs most, and "
              f"{_fmt(top['other_value_wrong'], 3)} some other pair's value")
    if args.out:
        write_probe_json(args, rows)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
