"""One MQAR query of a trained gated RAM-Net, taken apart: where its key stands earlier in the sequence and which
token follows it there, the model's answer as trained, and its answer with chosen tokens' writes shut
(``ramnet.analysis_gates.writes_closed_where``), in every layer and in each alone.

    python benchmarks/mqar_one_query.py RUN/model --setting N4-T64 --seed 0 --query 442:38 --close 12-16 13,14

The sequence is the one a protocol sweep evaluated (the spec in --sweep, by default
benchmarks/results/mqar_sweep.json: its settings, vocabulary and evaluation size) for runs of --seed, so a query
that a run's ``final_profile`` lists as wrong (``SEQ:POS``) can be looked at here. A key that came back in the
query phase as a random token is followed there by another token: a memory that binds the key to whatever
follows it last answers that token, where the label is the value of the key-value phase. fp32 on the CPU, one
forward pass per row.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling scripts, not a package
from mqar_doc_io import SummaryError, read_json  # noqa: E402
from mqar_error_profile import evaluation_data  # noqa: E402

from ramnet.analysis_gates import writes_closed_where  # noqa: E402
from ramnet.data.mqar import IGNORE_INDEX  # noqa: E402


def parse_positions(text: str) -> list[int]:
    """``"12-16"`` -> [12, ..., 16]; ``"13,14"`` -> [13, 14]; a ValueError otherwise"""
    positions = []
    for part in text.split(","):
        low, dash, high = (s.strip() for s in part.partition("-"))
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"--close: {text!r} is not a list of positions (e.g. 12-16 or 13,14)")
        if dash and int(high) < int(low):
            raise ValueError(f"--close: {text!r}: a range must run upwards")
        positions += list(range(int(low), int(high) + 1)) if dash else [int(low)]
    return sorted(set(positions))


def earlier_copies(sequence: torch.Tensor, position: int, num_kv_pairs: int) -> list[tuple[int, str, int | None]]:
    """``(position, phase, token after it)`` for each earlier place of the token at ``position``"""
    key = int(sequence[position])
    return [(p, "key-value phase" if p < 2 * num_kv_pairs else "query phase",
             int(sequence[p + 1]) if p + 1 < len(sequence) else None)
            for p in range(position) if int(sequence[p]) == key]


@torch.no_grad()
def answer(model, sequence: torch.Tensor, position: int, label: int, closed: list[int], layers) -> tuple:
    """(the top token at ``position``, its probability, the label's) with ``closed`` positions' writes shut"""
    mask = torch.zeros(1, len(sequence), dtype=torch.bool)
    mask[0, closed] = True
    with writes_closed_where(model, mask, layers):
        probs = model(sequence.unsqueeze(0))[0, position].float().softmax(-1)  # the model returns logits
    top = int(probs.argmax())
    return top, float(probs[top]), float(probs[label])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a gated RAM-Net checkpoint folder (a sweep's RUN/model)")
    parser.add_argument("--sweep", type=Path, default=Path(__file__).parent / "results" / "mqar_sweep.json",
                        help="the sweep summary whose spec made the evaluation data (default: mqar_sweep.json)")
    parser.add_argument("--setting", required=True, help="the setting's name, e.g. N4-T64")
    parser.add_argument("--seed", type=int, default=0, help="the runs' seed (default 0)")
    parser.add_argument("--query", required=True, help="SEQ:POS, as a run's final_profile lists a wrong query")
    parser.add_argument("--close", nargs="*", default=[], help="sets of positions whose writes to shut, e.g. 12-16")
    args = parser.parse_args(argv)
    try:
        closes = [parse_positions(text) for text in args.close]
        seq_text, _, pos_text = args.query.partition(":")
        if not (seq_text.isdigit() and pos_text.isdigit()):
            raise ValueError(f"--query must be SEQ:POS (two whole numbers), got {args.query!r}")
        index, position = int(seq_text), int(pos_text)
        if args.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {args.seed}")
        spec = read_json(args.sweep, dict).get("spec")
        if not isinstance(spec, dict) or not {"settings", "vocab_size", "num_eval"} <= set(spec):
            raise ValueError(f"--sweep: {args.sweep} holds no sweep spec with settings, vocab_size and num_eval")
        inputs, labels, pairs = evaluation_data(spec, args.seed, args.setting)
    except (ValueError, SummaryError, KeyError, OSError) as error:
        parser.exit(2, f"mqar_one_query.py: {error}\n")
    length = inputs.shape[1]
    if index >= inputs.shape[0] or position >= length or int(labels[index, position]) == IGNORE_INDEX:
        parser.exit(2, f"mqar_one_query.py: --query: {args.query} is not a query of {args.setting}'s "
                       f"{inputs.shape[0]} sequences of {length} tokens\n")
    if any(p >= length for c in closes for p in c):
        parser.exit(2, f"mqar_one_query.py: --close: positions must be below the length, {length}\n")
    from ramnet.checkpoint import load_checkpoint
    try:
        model = load_checkpoint(args.checkpoint).eval()
    except (OSError, ValueError, RuntimeError) as error:
        parser.exit(2, f"mqar_one_query.py: {args.checkpoint}: {error}\n")
    if not model.config.write_gate or model.config.vocab_size < spec["vocab_size"]:
        parser.exit(2, f"mqar_one_query.py: {args.checkpoint}: needs a write gate and a vocabulary of at least "
                       f"{spec['vocab_size']} (has write_gate={model.config.write_gate}, {model.config.vocab_size})\n")
    sequence, label = inputs[index], int(labels[index, position])
    print(f"{args.setting}, seed {args.seed}, sequence {index}, query at {position}: key {int(sequence[position])}, "
          f"label {label}")
    copies = earlier_copies(sequence, position, pairs)
    print("the key stands earlier at: " + ("; ".join(f"{p} ({phase}, followed by {after})"
                                                      for p, phase, after in copies) or "nowhere"))
    print()
    print("| writes shut at | in layers | answer | its probability | the label's probability |")
    print("|---|---|---|---|---|")
    top, p_top, p_label = answer(model, sequence, position, label, [], None)
    print(f"| none (as trained) | - | {top} | {p_top:.4f} | {p_label:.4f} |")
    n_layers = model.config.n_layers
    for closed in closes:
        for layers in [None] + [[i] for i in range(n_layers)]:
            top, p_top, p_label = answer(model, sequence, position, label, closed, layers)
            where = "all" if layers is None else str(layers[0] + 1)
            print(f"| {','.join(map(str, closed))} | {where} | {top} | {p_top:.4f} | {p_label:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
