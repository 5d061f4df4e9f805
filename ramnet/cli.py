"""``ramnet`` command line: ``train | eval | generate | convert | export | validate | sweep | plot`` (each with
``--help``). ``train`` and ``eval`` take ``--task mqar`` (the default) or ``--task lm`` (``ramnet.lm``).

Errors print one line, ``ramnet: error: ...``, and exit non-zero (2 for a bad argument, 1 for a failure during
the work); ``--debug`` shows the traceback instead. Every argument and the output directory are checked before
any work starts."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from .cli_args import add_setting_args, check_seed, config_overrides, mqar_setting, saved_setting
from .config import PRESETS, RamNetConfig
from .cli_plot import cmd_plot
from .precision import PRECISIONS
from .train import TrainArgs

# a resumed run takes these from its checkpoint unless a flag gives them (the device is this machine's choice)
RESUMED_ARGS = tuple(f.name for f in fields(TrainArgs) if f.name not in ("device", "threads"))
DEFAULT_PRESET = "mqar-small"  # with T=256, N=64 and TrainArgs' defaults: the GPU MQAR recipe
ARGUMENT_ERRORS = (ValueError, TypeError, FileExistsError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                   PermissionError)


def cmd_train(args) -> int:
    from .precision import resolve_device
    from .train import train_mqar

    if args.task == "lm":
        from .lm import commands as lm

        return lm.train(args, config_overrides(args.set))
    if args.task != "mqar":
        raise ValueError(f"--task {args.task!r} is not available; tasks: mqar, lm")
    from .lm.commands import lm_flags_given

    if lm_flags_given(args):
        raise ValueError(f"{', '.join(lm_flags_given(args))}: flags of --task lm, not of --task mqar")
    args.out = args.out or "runs/mqar"
    explicit = {f.name: getattr(args, f.name) for f in fields(TrainArgs) if getattr(args, f.name, None) is not None}
    saved_config, saved_info = None, {}
    if args.resume is not None:  # the checkpoint's model, setting and arguments, unless flags name others
        from .checkpoint import find_training_checkpoint, read_config, read_json, STATE_JSON

        path = find_training_checkpoint(args.resume)
        saved_config, saved_info = read_config(path), read_json(path / STATE_JSON, "training state")
    inherited = {k: v for k, v in saved_info.get("train", {}).items() if k in RESUMED_ARGS}
    train_args = TrainArgs(**{**inherited, **explicit})
    resolve_device(train_args.device)
    if saved_config is None:
        config = RamNetConfig.from_name(args.preset or DEFAULT_PRESET, **config_overrides(args.set))
    elif args.preset is not None:
        config = RamNetConfig.from_name(args.preset, **config_overrides(args.set))
    else:
        config = RamNetConfig.from_dict({**saved_config.to_dict(), **config_overrides(args.set)})
    setting = mqar_setting(args, config.vocab_size, saved_info.get("setting"))
    metrics = train_mqar(config, setting, train_args, out_dir=args.out, resume=args.resume,
                         overwrite=args.overwrite)
    metrics.pop("model")
    print(json.dumps({k: metrics[k] for k in ("final_accuracy", "best_accuracy", "steps_run", "seconds")}))
    print(f"checkpoint and metrics written to {args.out}")
    return 0


def cmd_eval(args) -> int:
    if args.task == "lm":
        from .lm import commands as lm

        return lm.evaluate(args)
    if args.task != "mqar":
        raise ValueError(f"--task {args.task!r} is not available; tasks: mqar, lm")
    lm_only = [f for f, v in (("--data", args.data), ("--tokenizer", args.tokenizer)) if v is not None]
    if lm_only:
        raise ValueError(f"{', '.join(lm_only)}: flags of --task lm, not of --task mqar")
    from .checkpoint import load_checkpoint
    from .data.mqar import multiquery_ar
    from .precision import check_precision, resolve_device
    from .train import evaluate

    if args.num_examples < 1:
        raise ValueError(f"--num-examples must be an integer >= 1, got {args.num_examples}")
    check_seed(args.seed)
    device = resolve_device(args.device)
    check_precision(args.precision)
    model = load_checkpoint(args.checkpoint, map_location=device)
    setting = mqar_setting(args, model.config.vocab_size, saved_setting(Path(args.checkpoint)))
    x, y = multiquery_ar(setting, args.num_examples, seed=args.seed)
    accuracy = evaluate(model, x, y, precision=args.precision)
    print(json.dumps({"accuracy": accuracy, "setting": setting.__dict__, "device": str(device),
                      "precision": args.precision}))
    return 0


def _load_model(args):
    import torch

    from .checkpoint import load_checkpoint
    from .model import RamNetForCausalLM
    from .precision import resolve_device

    device = resolve_device(args.device)
    check_seed(args.seed)
    if args.checkpoint:
        return load_checkpoint(args.checkpoint, map_location=device)
    with torch.random.fork_rng(devices=[]):  # a seeded random init that leaves the caller's RNG alone
        torch.random.default_generator.manual_seed(args.seed)
        return RamNetForCausalLM(RamNetConfig.from_name(args.preset)).to(device)


def cmd_export(args) -> int:
    if args.format == "tensorrt":  # import-guarded and unverified: see the README's "TensorRT" section
        raise ValueError("--format tensorrt is not available from the CLI (TensorRT is unverified here); formats: "
                         "onnx, aoti. See the README section 'TensorRT (unverified)'")
    if args.format == "onnx":
        import onnx

        from ramnet.export.onnx import check_output_path

        if not 18 <= args.opset <= onnx.defs.onnx_opset_version():
            raise ValueError(f"--opset must be in [18, {onnx.defs.onnx_opset_version()}], got {args.opset}")
        check_output_path(args.output)
    elif not args.output.endswith(".pt2"):
        raise ValueError(f"--output must end in .pt2 for --format aoti, got {args.output!r}")
    model = _load_model(args)
    if args.format == "onnx":
        from ramnet.export.onnx import to_onnx

        path = to_onnx(model, args.output, flavor=args.flavor, graph=args.graph, opset=args.opset)
    else:
        from ramnet.export.aoti import to_aoti

        print(f"[export] AOTInductor {args.graph} package on {args.device} (compiles C++; tens of seconds)",
              file=sys.stderr, flush=True)
        path = to_aoti(model, args.output, graph=args.graph, device=args.device)
    print(f"wrote {path}")
    return 0


def cmd_validate(args) -> int:
    from ramnet.runtime.validate import format_table, validate

    for name, low in (("batch", 1), ("prompt_len", 1), ("decode_steps", 0)):
        if getattr(args, name) < low:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {getattr(args, name)}")
    progress = None if args.json else (lambda message: print(f"[validate] {message}", file=sys.stderr, flush=True))
    results = validate(_load_model(args), batch=args.batch, prompt_len=args.prompt_len,
                       decode_steps=args.decode_steps, seed=args.seed, layers=args.layers, aoti=args.aoti,
                       progress=progress)
    print(format_table(results))
    failed = [k for k, v in results.items() if k != "skipped" and not v["passed"]]
    if args.json:
        print(json.dumps(results))
    return 1 if failed else 0


def cmd_sweep(args) -> int:
    from .sweep import load_spec, sweep
    from .sweep_workers import sigint_interrupts

    spec = load_spec(args.spec)
    for key in ("parallel", "device", "out"):
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    if spec["parallel"] < 1:
        raise ValueError(f"--parallel must be >= 1, got {spec['parallel']}")
    with sigint_interrupts():  # a time budget is a SIGINT: stop on it even as a background job (cmd &)
        report = sweep(spec, dry_run=args.dry_run, progress=not args.quiet, only=args.only,
                       stop_starting_after=args.stop_starting_after)
    left = f" ({report['left']} more pending, left out by --only)" if args.only is not None else ""
    if args.dry_run:
        print(f"{report['runs']} runs, {report['done']} done, {len(report['pending'])} to run{left}")
        for run_id in report["pending"]:
            own = report["own_steps"].get(run_id)
            print(f"  {run_id}" + (f" ({own:,} steps; the spec's: {spec['steps']:,})" if own is not None else ""))
        return 0
    late = f", {report['not_started']} not started (--stop-starting-after)" if report["not_started"] else ""
    print(f"{report['ran']} ran, {report['skipped']} skipped (results exist), {len(report['failed'])} failed"
          f"{late}{left}; summary in {Path(spec['out']) / 'mqar.json'}")
    for row in report["best"]:
        print(f"  {row['label']}: accuracy {row['accuracy']:.4f} at lr {row['lr']:g}, state {row['state_size']}")
    if report["failed"]:
        print(f"failed runs (see their log.txt or error.txt): {', '.join(report['failed'])}", file=sys.stderr)
    return 1 if report["failed"] else 0


def _add_model_source(p):
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="random-init preset (default tiny)")
    src.add_argument("--checkpoint", default=None, help="directory with model.safetensors and config.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")


# --task lm defaults that are a rule rather than a value (LMArgs holds None for them)
LM_DEFAULT_NOTES = {"warmup_steps": "steps // 20, at most 2000"}


def _add_train_parser(sub, common):
    from .lm.args import LMArgs

    p = sub.add_parser("train", parents=[common], help="train a model on MQAR or as a language model (--task lm; "
                                                       "also under torchrun)")
    p.add_argument("--task", default="mqar", help="training task: mqar (default) or lm")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help=f"model preset (default {DEFAULT_PRESET}, --task lm: {LMArgs.preset}; when resuming: the "
                        "checkpoint's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field, parsed by its type: --set gamma=0.5 --set short_conv=false")
    add_setting_args(p, "default when resuming: the checkpoint's",
                      f"; --task lm: tokens per packed row (default {LMArgs.seq_len})")

    defaults, lm_defaults = TrainArgs(), LMArgs()
    choices = {"precision": list(PRECISIONS)}
    helps = {"device": "cpu, cuda or cuda:N (default: cuda when available)",
             "precision": "fp32 (default), or bf16 / fp16: autocast over fp32 weights (GradScaler for fp16); "
                          "--task lm: fp32 or bf16",
             "save_every": "write a resumable checkpoint every N steps under OUT/checkpoints (default: none)",
             "alpha_lr_mult": "the lr of RAM-Net's per-head temperatures alpha, as a multiple of --lr, under the same "
                              "schedule (default 1.0; --task mqar only)"}
    for f in fields(TrainArgs):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        lm_default = getattr(lm_defaults, f.name, default)
        lm_default = LM_DEFAULT_NOTES.get(f.name, lm_default)
        lm_note = f"; --task lm: {lm_default}" if lm_default != default else ""
        help_text = helps.get(f.name, f"(default {default}{lm_note})")
        if f.type in ("bool", bool):
            p.add_argument(flag, dest=f.name, action="store_true", default=None, help=help_text)
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(f.type).split(" ")[0], float)
            p.add_argument(flag, dest=f.name, type=kind, default=None, choices=choices.get(f.name), help=help_text)
    from .lm.commands import add_train_flags

    add_train_flags(p)
    p.add_argument("--out", default=None, help="output directory (default runs/mqar, or runs/lm for --task lm); "
                   "must be empty or new unless --resume or --overwrite")
    p.add_argument("--resume", default=None, metavar="DIR",
                   help="continue from a training checkpoint, or from the newest one in a run directory")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    p.set_defaults(func=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's default must not reset a --debug given before the subcommand
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error")
    parser = argparse.ArgumentParser(prog="ramnet", description=__doc__, parents=[common],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"ramnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_parser(sub, common)

    p = sub.add_parser("eval", parents=[common], help="MQAR accuracy, or LM perplexity (--task lm), of a checkpoint")
    p.add_argument("--task", default="mqar", help="mqar (default): accuracy; lm: loss and perplexity on text")
    p.add_argument("--checkpoint", required=True, help="directory with model.safetensors and config.json")
    add_setting_args(p, "default: the setting saved with the checkpoint")
    p.add_argument("--num-examples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--precision", default="fp32", choices=list(PRECISIONS), help="(default fp32)")
    p.add_argument("--data", nargs="+", default=None,
                   help="LM: text files to score (default: the run's validation rows); --seq-len: row length "
                        "(default: the run's; without --data, only the run's, and only its tokenizer)")
    p.add_argument("--data-format", default=None, choices=["text", "json", "parquet"], help="LM (default: extension)")
    p.add_argument("--text-field", default="text", help="LM: the column holding the text (default text)")
    p.add_argument("--sample-by", default="paragraph", choices=["line", "paragraph", "document"],
                   help="LM, text files: what a document is (default paragraph)")
    p.add_argument("--max-rows", type=int, default=64, help="LM: score at most this many rows (default 64)")
    p.add_argument("--batch-rows", type=int, default=8, help="LM: rows per forward (default 8)")
    p.add_argument("--tokenizer", default=None, help="LM: tokenizer (default: the one saved with the checkpoint)")
    p.set_defaults(func=cmd_eval)

    from .lm.commands import add_generate_and_convert_parsers

    add_generate_and_convert_parsers(sub, common)

    p = sub.add_parser("export", parents=[common], help="export a model (ONNX or AOTInductor; prefill or decode)")
    _add_model_source(p)
    p.add_argument("--format", default="onnx", choices=["onnx", "aoti", "tensorrt"],
                   help="onnx (default) or aoti (an AOTInductor .pt2 package); tensorrt: see the README")
    p.add_argument("--flavor", default="standard", choices=["standard", "custom"],
                   help="ONNX only. standard: standard ops only (default, as to_onnx); custom: ramnet-domain nodes")
    p.add_argument("--graph", default="prefill", choices=["prefill", "decode"])
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("-o", "--output", required=True, help="output path")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("validate", parents=[common], help="eager vs compiled vs exported artifacts on the same inputs")
    _add_model_source(p)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--prompt-len", type=int, default=8)
    p.add_argument("--decode-steps", type=int, default=4)
    p.add_argument("--json", action="store_true", help="print one JSON object (keyed by artifact) as the last line")
    p.add_argument("--layers", action="store_true", help="add a per-layer diff of the state outputs")
    p.add_argument("--no-aoti", dest="aoti", action="store_false",
                   help="skip the AOTInductor artifact (it compiles C++: about 30 s on CPU)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("sweep", parents=[common],
                       help="a grid of MQAR runs (model x lr x seed) on the 7-setting protocol; resumable")
    p.add_argument("spec", help="sweep spec, .yaml or .json (see ramnet.sweep)")
    p.add_argument("--parallel", type=int, default=None, help="runs at once (worker processes); default: the spec's")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the spec's, else cuda if present)")
    p.add_argument("--out", default=None, help="output directory (default: the spec's out)")
    p.add_argument("--only", default=None, metavar="PATTERNS",
                   help="comma-separated fnmatch patterns on run ids (e.g. 'ramnet-8k-*,*-lr0.001-*'): run "
                        "only the pending runs that match, in the order of the patterns")
    p.add_argument("--stop-starting-after", type=float, default=None, metavar="SECONDS",
                   help="start no run later than this after the sweep starts (runs in flight finish): a time "
                        "budget then cuts no run that could not have finished")
    p.add_argument("--dry-run", action="store_true", help="list the runs still to do (in their order) and stop")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("plot", parents=[common], help="plot a run's curves, a sweep (state or curves), the U "
                                                      "ablation or slot traces (needs [plot])")
    p.add_argument("run", nargs="?", default=None, help="run directory with metrics.json (loss and accuracy curves)")
    p.add_argument("--mqar", default=None, nargs="+", metavar="SUMMARY",
                   help="one or more sweeps' mqar.json: accuracy against state size, paper overlaid")
    p.add_argument("--ablations", default=None, help="an ablation sweep's summary: accuracy against U per M")
    p.add_argument("--curves", default=None, metavar="SWEEP",
                   help="a sweep's NAME_sweep.json: loss and accuracy against step for its runs")
    p.add_argument("--only", default=None, metavar="PATTERNS",
                   help="--curves: comma-separated fnmatch patterns on run ids (default: every run)")
    p.add_argument("--slots", default=None, help="a checkpoint: top-1 write/read slots over time (CAPE vs content)")
    p.add_argument("--seq-len", type=int, default=256, help="--slots: MQAR sequence length (default 256)")
    p.add_argument("--num-kv-pairs", type=int, default=16, help="--slots: key-value pairs (default 16)")
    p.add_argument("--num-examples", type=int, default=8,
                   help="--slots: sequences the read/write overlap is averaged over (default 8; the plot: the first)")
    p.add_argument("--out", default=None, help="PNG path (default for a run: <run>/curves.png)")
    p.set_defaults(func=cmd_plot)
    return parser


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return f"ramnet: error: {text}"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.debug = getattr(args, "debug", False)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("ramnet: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the CLI's contract: one line, no traceback (--debug for it)
        if args.debug:
            raise
        print(_one_line(error), file=sys.stderr)
        return 2 if isinstance(error, ARGUMENT_ERRORS) else 1


if __name__ == "__main__":
    sys.exit(main())
