"""Parameter counts of the MQAR sweep's models, beside their state sizes.

    python benchmarks/mqar_params.py                                   # every model of main.yaml
    python benchmarks/mqar_params.py --only 'ramnet-8k-*,deltanet-8k'  # fnmatch patterns on the labels

"Equal state" fixes the recurrent state, not the model: a baseline's state grows with its head widths, so fla's
DeltaNet reaches 131,072 numbers with d_model 512, while RAM-Net's state is set by M, d_v and the heads at
d_model 128. This table says how far the parameter counts of the models compared apart are. The models are built
on the meta device (no memory, no kernels), exactly as the sweep builds them (`ramnet.sweep_run.build_model`).
`non-embedding` leaves out the token embedding, the LM head and learned positions, which scale with the
vocabulary (8,192) and not with the mixer. fla's models need its wheels (`pip install -e '.[bench]'`); without
them their rows say so.
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ramnet.data.mqar_protocol import protocol_settings  # noqa: E402
from ramnet.sweep_run import build_model  # noqa: E402
from ramnet.sweep_spec import DEFAULTS, expand  # noqa: E402

EMBEDDING_NAMES = ("emb", "lm_head", "pos")  # token embedding, output head, learned positions


def count(model: torch.nn.Module) -> tuple[int, int]:
    """(all parameters, those outside the embedding, LM head and learned positions). Tied weights count once."""
    params = dict(model.named_parameters())  # named_parameters() yields a shared tensor once
    total = sum(p.numel() for p in params.values())
    embedding = sum(p.numel() for name, p in params.items() if any(key in name for key in EMBEDDING_NAMES))
    return total, total - embedding


def table(spec_path: Path, patterns: list[str]) -> list[list[str]]:
    """One row per model label of the spec that matches a pattern, in the spec's order."""
    spec = {**DEFAULTS, **yaml.safe_load(spec_path.read_text())}
    rows, seen = [], set()
    for run in expand(spec):
        label = run["label"]
        if label in seen or not any(fnmatch.fnmatchcase(label, p) for p in patterns):
            continue
        seen.add(label)
        try:
            with torch.device("meta"):
                max_len = max(s.seq_len for s in protocol_settings(run["settings"], run["vocab_size"]))
                model, state, _ = build_model(run["spec"], run["vocab_size"], max_len)
        except ImportError as error:  # fla's models without its wheels
            rows.append([label, "-", f"not built: {error}", "-"])
            continue
        total, non_embedding = count(model)
        rows.append([label, f"{state:,}", f"{total:,}", f"{non_embedding:,}"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "benchmarks" / "mqar" / "main.yaml",
                        help="a sweep spec (default: benchmarks/mqar/main.yaml)")
    parser.add_argument("--only", default="*", help="comma-separated fnmatch patterns on the model labels")
    args = parser.parse_args(argv)
    if not args.spec.is_file():
        parser.error(f"--spec: no such file: {args.spec}")
    rows = table(args.spec, [p for p in args.only.split(",") if p])
    if not rows:
        parser.error(f"--only: no model label of {args.spec.name} matches {args.only!r}")
    print("| model | state | parameters | non-embedding |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
