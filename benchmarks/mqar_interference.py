"""Do trained RAM-Net models keep the pairs of an MQAR sequence in separate slots, and are their wrong answers the
reads that land in other pairs' writes? A probe of trained checkpoints (``ramnet.analysis.pair_interference_by_offset``).

    ramnet sweep benchmarks/mqar/cpu_interference.json          # trains the toy models (CPU, about 15 minutes)
    python benchmarks/mqar_interference.py runs/mqar-cpu-interference/runs/*/model \\
        --out benchmarks/results/mqar_cpu_interference.json

For each checkpoint and setting it prints, per layer and head: the slots that two pairs' write sets share against
chance (K^2/M), and the slots of a query's read set that the other pairs' writes and its own pair's write hold,
for the queries answered right and wrong. With the short conv a head can bind a pair at the value or up to
kernel - 2 tokens after it (the conv window still holds the key and the value), so each head is measured at the
write offset where it is most selective (the `offset` column): where its queries' reads hold the most of their
own pair's write slots beyond what they hold of another pair's (a head that writes and reads the same slots at
every token holds its own pair's slots too, but no more than any other pair's). The binding head of a model is
its most selective head. Each
checkpoint is also measured untrained (the same config, freshly initialised with seed 0) at the same offsets, so
the table shows what training changed. The MQAR sequences are the generator's at seed 123 (not the training
data's seed).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import check_probe_args, checkpoint_name, load_probe_checkpoints, setting_pair  # noqa: E402
from ramnet.analysis import pair_interference_by_offset  # noqa: E402
from ramnet.data.mqar import MQARSetting, multiquery_ar  # noqa: E402
from ramnet.model import RamNetForCausalLM  # noqa: E402

EVAL_SEED = 123


def measure(model: RamNetForCausalLM, pairs: int, length: int, examples: int) -> dict[int, list[list[dict]]]:
    """``{write_offset: [layer][head] dicts}`` for every offset the short conv's window allows."""
    setting = MQARSetting(vocab_size=model.config.vocab_size, seq_len=length, num_kv_pairs=pairs)
    inputs, labels = multiquery_ar(setting, examples, seed=EVAL_SEED)
    c = model.config
    # the key (at value - 1) stays in the conv window of value + offset for offset <= kernel - 2
    offsets = range(min(c.short_conv_kernel - 1, length - 2 * pairs + 1) if c.short_conv else 1)
    return pair_interference_by_offset(model, inputs, labels, pairs, offsets)


def _over_all_queries(entry: dict, key: str) -> float:
    total = sum(entry[f"{key}_{g}"] * entry[g] for g in ("right", "wrong") if entry[g])
    return total / (entry["right"] + entry["wrong"])


def own_hits(entry: dict) -> float:
    """Mean own-pair slots of a query's read set, over all queries, right and wrong."""
    return _over_all_queries(entry, "bound")


def selectivity(entry: dict, pairs: int) -> float:
    """Own-pair slots of a query's read set less the mean it holds of one other pair's write set."""
    return own_hits(entry) - _over_all_queries(entry, "hits") / (pairs - 1)


def print_binding_heads(rows: list[dict]) -> None:
    """Per checkpoint and setting, the trained head that is most selective (the head that binds), beside the same
    head untrained; marks it ``binding`` in ``rows``."""
    print("\nThe binding head of each checkpoint and setting (trained; write shared also untrained):\n")
    print("| checkpoint | setting | accuracy (wrong) | head, offset | own hits / K | write shared: untrained, "
          "trained / chance | other hits: right / wrong |")
    print("|---|---|---|---|---|---|---|")
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["path"], r["pairs"], r["seq_len"]), []).append(r)
    for (_, pairs, length), group in groups.items():
        name = group[0]["checkpoint"]
        trained = [r for r in group if r["trained"]]
        top = max(trained, key=lambda r: selectivity(r, pairs))
        top["binding"] = True
        before = next(r for r in group if not r["trained"] and (r["layer"], r["head"]) == (top["layer"], top["head"]))
        K = top["top_k"]
        print(f"| {name} | {pairs},{length} | {top['accuracy']:.3f} ({top['wrong']}) | "
              f"{top['layer'] + 1}.{top['head']}, {top['write_offset']} | {own_hits(top):.2f} / {K} | "
              f"{before['write_shared']:.2f}, {top['write_shared']:.2f} / {top['chance']:.2f} | "
              f"{_fmt(top['hits_right'])} / {_fmt(top['hits_wrong'])} |")


def _fmt(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="model checkpoint directories (a sweep's RUN/model)")
    parser.add_argument("--settings", nargs="+", type=setting_pair, default=[(8, 64), (16, 64)],
                        help="NUM_KV_PAIRS,SEQ_LEN settings to probe (default: 8,64 16,64)")
    parser.add_argument("--num-examples", type=int, default=64, help="sequences per setting (default 64)")
    parser.add_argument("--out", type=Path, help="write every figure here as JSON")
    args = parser.parse_args(argv)
    check_probe_args(parser, args)
    rows = []
    print("| checkpoint | trained | setting | layer.head | offset | accuracy | write shared / chance | "
          "other hits: right / wrong | own hits: right / wrong |")
    print("|---|---|---|---|---|---|---|---|---|")
    checkpoints = load_probe_checkpoints(parser, args.checkpoints, args.settings)
    for path, trained in checkpoints:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            untrained = RamNetForCausalLM(trained.config)
        name = checkpoint_name(path)
        for pairs, length in args.settings:
            by_model = {False: measure(untrained, pairs, length, args.num_examples),
                        True: measure(trained, pairs, length, args.num_examples)}
            heads = [(li, h) for li, layer in enumerate(by_model[True][0]) for h in range(len(layer))]
            # each head at the offset where the trained model's head is most selective
            best = {(li, h): max(by_model[True], key=lambda o: selectivity(by_model[True][o][li][h], pairs))
                    for li, h in heads}
            for is_trained in (False, True):
                for li, h in heads:
                    offset = best[(li, h)]
                    e = by_model[is_trained][offset][li][h]
                    accuracy = e["right"] / (e["right"] + e["wrong"])
                    rows.append({"checkpoint": name, "path": str(Path(path).resolve()), "trained": is_trained,
                                 "pairs": pairs, "seq_len": length, "layer": li, "head": h, "write_offset": offset,
                                 "accuracy": accuracy, "top_k": trained.config.top_k,
                                 "num_slots": trained.config.num_slots, **e})
                    print(f"| {name} | {'yes' if is_trained else 'no'} | {pairs},{length} | {li + 1}.{h} | {offset} | "
                          f"{accuracy:.3f} | {e['write_shared']:.2f} / {e['chance']:.2f} | "
                          f"{_fmt(e['hits_right'])} / {_fmt(e['hits_wrong'])} | "
                          f"{_fmt(e['bound_right'])} / {_fmt(e['bound_wrong'])} |")
    print_binding_heads(rows)
    if args.out:
        clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
        args.out.write_text(json.dumps({"eval_seed": EVAL_SEED, "num_examples": args.num_examples,
                                        "rows": clean}, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
