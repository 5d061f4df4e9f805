"""Which writes bind an MQAR pair in a gated RAM-Net checkpoint: the queries for the first, the middle and the last
pair written, as trained and with the writes shut at one offset after each of those pairs' key (in each layer
alone and in all), scored by the label's mean probability and by how many are right.

    python benchmarks/mqar_pair_writes.py RUN/model --settings 256,1024 --num-examples 24 --offsets 1 2 3

With the short conv on keys and values, a pair's key still stands in the convolution window for a few tokens
after it, so the writes at its value (offset 1) and at the next tokens can all bind it. For every pair but the
last those next tokens are the next pair; for the last they are the query phase's first tokens (at 256 pairs a
query, then a random token), so a binding that leans on the later writes holds less for the last pair. Offset 0 (the key's
own position) binds the pair before. ``--first-random-token`` adds two variants that change the data instead:
the token two after the last pair's value (where every other pair has the next pair's value; at 256 pairs the
token before it is always a query, so it is the query phase's first random token) set in every sequence to a
key-range token, then to a value-range token, each drawn at random among those the sequence does not hold.
``--swap-gates`` (with ``--first-random-token``) then gives that position, in each layer alone and in all, the
gate the other token had there: what the gate lets through, apart from what the token writes. Each offset variant
shuts that offset's writes after all three probed pairs at once. Each variant is one forward pass over the
sequences: fp32 on the CPU.

    python benchmarks/mqar_pair_writes.py RUN/model --settings 256,1024 --num-examples 96 --offsets \
        --first-random-token --swap-gates
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a sibling module, not a package
from common import checkpoint_name, parse_probe_args, probe_parser, report_row  # noqa: E402
from ramnet.analysis_gates import write_gates, write_gates_replaced_where, writes_closed_where  # noqa: E402
from ramnet.data.mqar import IGNORE_INDEX, MQARSetting, multiquery_ar  # noqa: E402


def chosen_pairs(num_kv_pairs: int) -> dict[str, int]:
    """The pairs probed: the first, the middle and the last written."""
    return {"first": 0, "middle": num_kv_pairs // 2, "last": num_kv_pairs - 1}


def query_positions(ids: torch.Tensor, labels: torch.Tensor, pair: int, num_kv_pairs: int) -> list[int]:
    """Each sequence's position of the query for ``pair`` (its key asked again in the query phase)."""
    asked = (ids == ids[:, 2 * pair].unsqueeze(1)) & (labels != IGNORE_INDEX)
    asked[:, :2 * num_kv_pairs] = False
    if not bool(asked.any(1).all()):
        raise ValueError(f"pair {pair} is not asked in every sequence")
    return asked.float().argmax(1).tolist()


def with_first_random_token(ids: torch.Tensor, num_kv_pairs: int, vocab_size: int, key_range: bool,
                            seed: int) -> torch.Tensor:
    """``ids`` with the query phase's first random token (position ``2 * num_kv_pairs + 1``) replaced in each
    sequence by a token drawn at random (``seed``) from the key range (1 to ``vocab_size // 2 - 1``) or the
    value range (``vocab_size // 2`` up), among those the sequence does not hold; a ValueError if none is left."""
    low, high = (1, vocab_size // 2) if key_range else (vocab_size // 2, vocab_size)
    generator = torch.Generator().manual_seed(seed)
    out = ids.clone()
    for row in out:
        absent = sorted(set(range(low, high)) - set(row.tolist()))
        if not absent:
            raise ValueError(f"a sequence holds every token of the {'key' if key_range else 'value'} range")
        row[2 * num_kv_pairs + 1] = absent[int(torch.randint(len(absent), (1,), generator=generator))]
    return out


@torch.no_grad()
def scores(model, ids, labels, queries: dict[str, list[int]], closed, layers, swap=None,
           chunk: int = 16) -> dict[str, dict]:
    """``{pair name: {"p_label", "right"}}`` with the writes at ``closed [B, T]`` (None: none) shut in ``layers``,
    or with ``swap = (where [B, T], gates per layer of layers)`` the gates replaced there instead; ``chunk``
    sequences a pass, so that a long setting's logits fit in memory"""
    rows = torch.arange(len(ids))
    mask = torch.zeros(ids.shape, dtype=torch.bool) if closed is None else closed
    picked = {name: [] for name in queries}
    for lo in range(0, len(ids), chunk):
        part = slice(lo, lo + chunk)
        intervention = writes_closed_where(model, mask[part], layers) if swap is None else \
            write_gates_replaced_where(model, swap[0][part], [g[part] for g in swap[1]], layers)
        with intervention:
            logits = model(ids[part]).float()
        for name, positions in queries.items():
            picked[name].append(logits[torch.arange(logits.shape[0]), positions[part]].softmax(-1))
    out = {}
    for name, positions in queries.items():
        probs = torch.cat(picked[name])
        wanted = labels[rows, positions]
        out[name] = {"p_label": float(probs[rows, wanted].mean()),
                     "right": int((probs.argmax(-1) == wanted).sum())}
    return out


def swapped_gate_variants(model, changed: dict[str, torch.Tensor], num_kv_pairs: int,
                          chunk: int = 16) -> list[tuple]:
    """For the key- and value-range first random tokens (``changed``), variants that give that position, in each
    layer alone and in all, the gate the other token's sequences have there."""
    gates = {kind: [torch.cat(layer) for layer in zip(*(write_gates(model, ids[lo:lo + chunk])
                                                        for lo in range(0, len(ids), chunk)))]
             for kind, ids in changed.items()}  # in chunks, as ``scores`` passes them
    where = torch.zeros(changed["key"].shape, dtype=torch.bool)
    where[:, 2 * num_kv_pairs + 1] = True
    out = []
    for kind, other in (("key", "value"), ("value", "key")):
        for layers in [[i] for i in range(model.config.n_layers)] + [None]:
            chosen = range(model.config.n_layers) if layers is None else layers
            where_text = "every layer" if layers is None else f"layer {layers[0] + 1}"
            out.append((f"first random token a {kind}-range token, with the {other}-range token's gate there in "
                        f"{where_text}", None, None, layers, changed[kind], (where, [gates[other][i] for i in chosen])))
    return out


def main(argv=None) -> int:
    parser = probe_parser(__doc__.split("\n\n")[0], 24, "gated model checkpoint directories (a sweep's RUN/model)")
    parser.add_argument("--offsets", nargs="*", type=int, default=[0, 1, 2, 3],
                        help="positions after each probed pair's key whose writes to shut (default 0 1 2 3; "
                             "none when given no value)")
    parser.add_argument("--first-random-token", action="store_true",
                        help="also set the query phase's first random token to a key-range, then a value-range token")
    parser.add_argument("--swap-gates", action="store_true",
                        help="with --first-random-token: also give each of its tokens the other's gate there")
    args, checkpoints = parse_probe_args(parser, argv, gated=True)
    if args.swap_gates and not args.first_random_token:
        parser.error("--swap-gates needs --first-random-token (it swaps the gates of its two tokens)")
    if any(o < 0 for o in args.offsets):
        parser.error(f"--offsets must be >= 0, got {args.offsets}")
    for pairs, length in args.settings:  # the last pair's key sits at 2 * pairs - 2
        if pairs < 3:
            parser.error(f"--settings {pairs},{length}: needs at least 3 pairs (a first, a middle and a last)")
        reach = max([*args.offsets, *([3] if args.first_random_token else [])], default=0)  # that token: offset 3
        if 2 * pairs - 2 + reach >= length:
            parser.error(f"--offsets {reach} runs past the length of --settings {pairs},{length}")
    rows = []
    print("| checkpoint | setting | writes shut | first pair: p(label), right | middle | last |")
    print("|---|---|---|---|---|---|")
    for path, model in checkpoints:
        name = checkpoint_name(path)
        n_layers = model.config.n_layers
        for pairs, length in args.settings:
            setting = MQARSetting(vocab_size=model.config.vocab_size, seq_len=length, num_kv_pairs=pairs)
            ids, labels = multiquery_ar(setting, args.num_examples, seed=args.seed)
            probed = chosen_pairs(pairs)
            queries = {k: query_positions(ids, labels, pair, pairs) for k, pair in probed.items()}
            variants = [("none (as trained)", None, None, None, ids)]
            for offset in args.offsets:
                closed = torch.zeros(ids.shape, dtype=torch.bool)
                closed[:, [2 * p + offset for p in probed.values()]] = True
                for layers in [None] + [[i] for i in range(n_layers)]:
                    where = "every layer" if layers is None else f"layer {layers[0] + 1}"
                    variants.append((f"offset {offset} in {where}", offset, closed, layers, ids))
            if args.first_random_token:
                changed = {}
                for key_range, kind in ((True, "key"), (False, "value")):
                    try:
                        changed[kind] = with_first_random_token(ids, pairs, model.config.vocab_size, key_range,
                                                                args.seed)
                    except ValueError as error:
                        parser.exit(2, f"mqar_pair_writes.py: --first-random-token: {error}\n")
                    variants.append((f"none; first random token a {kind}-range token", None, None, None,
                                     changed[kind]))
                if args.swap_gates:
                    variants += swapped_gate_variants(model, changed, pairs)
            for label, offset, closed, layers, inputs, *swap in variants:
                result = scores(model, inputs, labels, queries, closed, layers, *swap)
                swapped = (list(range(n_layers)) if layers is None else layers) if swap else None
                cells = " | ".join(f"{result[k]['p_label']:.3f}, {result[k]['right']} of {len(ids)}" for k in probed)
                report_row(args, rows, {"checkpoint": name, "path": str(Path(path).resolve()), "pairs": pairs,
                                        "seq_len": length, "variant": label, "offset": offset,
                                        "closed_layers": None if swap else layers, "swapped_layers": swapped,
                                        "pairs_probed": probed, **result},
                           f"| {name} | {pairs},{length} | {label} | {cells} |")
    if args.out:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
