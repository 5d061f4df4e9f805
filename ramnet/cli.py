"""``ramnet`` command line: ``train | eval | export | validate | bench | plot`` (each with ``--help``)."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from .config import PRESETS, RamNetConfig
from .data.mqar import MQARSetting
from .train import TrainArgs


def _add_setting_args(p):
    p.add_argument("--seq-len", type=int, default=64, help="MQAR sequence length (default 64)")
    p.add_argument("--num-kv-pairs", type=int, default=4, help="MQAR key-value pairs (default 4)")
    p.add_argument("--vocab-size", type=int, default=None, help="MQAR vocabulary (default: the preset's)")


def _setting(args, config) -> MQARSetting:
    return MQARSetting(vocab_size=args.vocab_size or config.vocab_size, seq_len=args.seq_len,
                       num_kv_pairs=args.num_kv_pairs)


def _overrides(pairs):
    """``--set key=value`` config overrides, parsed as JSON when possible (``--set gamma=0.5``)."""
    out = {}
    for pair in pairs or []:
        key, _, raw = pair.partition("=")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def cmd_train(args) -> int:
    from .train import train_mqar

    if args.task != "mqar":
        print(f"unknown task {args.task!r}; available: mqar", file=sys.stderr)
        return 2
    config = RamNetConfig.from_name(args.preset, **_overrides(args.set))
    train_kw = {f.name: getattr(args, f.name) for f in fields(TrainArgs) if getattr(args, f.name, None) is not None}
    metrics = train_mqar(config, _setting(args, config), TrainArgs(**train_kw), out_dir=args.out)
    metrics.pop("model")
    print(json.dumps({k: metrics[k] for k in ("final_accuracy", "best_accuracy", "steps_run", "seconds")}))
    print(f"checkpoint and metrics written to {args.out}")
    return 0


def cmd_eval(args) -> int:
    from .data.mqar import multiquery_ar
    from .train import evaluate, load_checkpoint

    model = load_checkpoint(args.checkpoint)
    setting = _setting(args, model.config)
    x, y = multiquery_ar(setting, args.num_examples, seed=args.seed)
    print(json.dumps({"accuracy": evaluate(model, x, y), "setting": setting.__dict__}))
    return 0


def _load_model(args):
    from .model import RamNetForCausalLM
    from .train import load_checkpoint

    if args.checkpoint:
        return load_checkpoint(args.checkpoint)
    import torch

    torch.manual_seed(args.seed)
    return RamNetForCausalLM(RamNetConfig.from_name(args.preset))


def cmd_export(args) -> int:
    if args.format == "onnx":
        from ramnet.export.onnx import to_onnx

        path = to_onnx(_load_model(args), args.output, flavor=args.flavor, graph=args.graph, opset=args.opset)
    elif args.format == "aoti":
        from ramnet.export.aoti import to_aoti

        print(f"[export] AOTInductor {args.graph} package on {args.device} (compiles C++; tens of seconds)",
              file=sys.stderr, flush=True)
        path = to_aoti(_load_model(args), args.output, graph=args.graph, device=args.device)
    else:  # tensorrt: see ramnet.export.tensorrt (import-guarded, unverified here)
        print(f"--format {args.format} is not available from the CLI; formats: onnx, aoti. TensorRT: build the "
              "engine from the custom ONNX graph with the ramnet plugins (README, 'TensorRT')", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def cmd_validate(args) -> int:
    from ramnet.runtime.validate import format_table, validate

    progress = None if args.json else (lambda message: print(f"[validate] {message}", file=sys.stderr, flush=True))
    results = validate(_load_model(args), batch=args.batch, prompt_len=args.prompt_len,
                       decode_steps=args.decode_steps, seed=args.seed, layers=args.layers, aoti=args.aoti,
                       progress=progress)
    print(format_table(results))
    failed = [k for k, v in results.items() if k != "skipped" and not v["passed"]]
    if args.json:
        print(json.dumps(results))
    return 1 if failed else 0


def _add_model_source(p):
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="random-init preset (default tiny)")
    src.add_argument("--checkpoint", default=None, help="directory with model.safetensors and config.json")
    p.add_argument("--seed", type=int, default=0)


def cmd_plot(args) -> int:
    from .plots import plot_history

    path = plot_history(Path(args.run) / "metrics.json", args.out)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ramnet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (MQAR) with AdamW + cosine schedule")
    p.add_argument("--task", default="mqar", help="training task (default mqar)")
    p.add_argument("--preset", default="mqar-tiny", choices=sorted(PRESETS), help="model preset (default mqar-tiny)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field, e.g. gamma=0.5")
    _add_setting_args(p)
    defaults = TrainArgs()
    for f in fields(TrainArgs):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, dest=f.name, action="store_true", default=None, help=f"(default {defaults.compile})")
        else:
            kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], float)
            p.add_argument(flag, dest=f.name, type=kind, default=None,
                           help=f"(default {getattr(defaults, f.name)})")
    p.add_argument("--out", default="runs/mqar", help="output directory (default runs/mqar)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="MQAR accuracy of a checkpoint")
    p.add_argument("--checkpoint", required=True, help="directory with model.safetensors and config.json")
    _add_setting_args(p)
    p.add_argument("--num-examples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=12345)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="export a model (ONNX custom flavour; prefill or decode graph)")
    _add_model_source(p)
    p.add_argument("--format", default="onnx", choices=["onnx", "aoti", "tensorrt"],
                   help="onnx (default) or aoti (an AOTInductor .pt2 package)")
    p.add_argument("--flavor", default="custom", choices=["standard", "custom"],
                   help="ONNX only. custom: ramnet-domain nodes (default); standard: standard ops only")
    p.add_argument("--device", default="cpu", help="aoti only: the device to compile for (default cpu)")
    p.add_argument("--graph", default="prefill", choices=["prefill", "decode"])
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("-o", "--output", required=True, help="output path")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("validate", help="eager vs compiled vs exported artifacts on the same inputs")
    _add_model_source(p)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--prompt-len", type=int, default=8)
    p.add_argument("--decode-steps", type=int, default=4)
    p.add_argument("--json", action="store_true", help="print one JSON object (keyed by artifact) as the last line")
    p.add_argument("--layers", action="store_true", help="add a per-layer diff of the state outputs")
    p.add_argument("--no-aoti", dest="aoti", action="store_false",
                   help="skip the AOTInductor artifact (it compiles C++: about 30 s on CPU)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plot", help="plot a run's loss and accuracy curves")
    p.add_argument("run", help="run directory with metrics.json")
    p.add_argument("--out", default=None, help="PNG path (default: <run>/curves.png)")
    p.set_defaults(func=cmd_plot)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
