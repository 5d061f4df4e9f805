"""The ``--task lm`` side of the command line: ``train``, ``eval``, ``generate`` and ``convert``
(``ramnet/cli.py`` owns the parsers and the error contract)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .args import LMArgs, field_names, merge, read_run_file

# LMArgs fields that the train parser already has for MQAR (shared flags), and those only --task lm takes
SHARED = ("steps", "batch_size", "lr", "min_lr_ratio", "warmup_steps", "weight_decay", "grad_clip", "eval_every",
          "seed", "compile", "threads", "device", "precision", "save_every", "seq_len", "preset")
NOT_RESUMED = ("device", "threads")  # as the MQAR path (cli.RESUMED_ARGS): a resumed run picks its own
MQAR_ONLY = ("num_kv_pairs", "vocab_size", "num_train", "num_eval", "target_accuracy", "alpha_lr_mult")
LM_FLAG_HELP = {
    "data": "LM: text files (.txt, .jsonl, .parquet; globs, directories) or a dataset name when online",
    "data_format": "LM: text | json | parquet (default: from the extension)",
    "streaming": "LM: read the documents as a stream (datasets' streaming), not into memory",
    "val_data": "LM: validation files (default: every --holdout-every-th packed row is held out)",
    "tokenizer": "LM: 'byte' (default, no download) or an AutoTokenizer name or path",
    "dist": "LM under torchrun: fsdp (FSDP2, default) or ddp",
    "grad_accum": "LM: micro-steps per optimizer step (--batch-size counts rows over all of them)",
    "activation_checkpointing": "LM: recompute each block in the backward",
    "chunk_size": "LM: cross-entropy over this many tokens at a time (default: full logits)",
    "sample_by": "LM, text files: a document per line, per blank-line paragraph (default) or per file",
    "shuffle_buffer": "LM, streaming: shuffle documents in a buffer of this size (default 0: file order)",
    "val_split": "LM: the validation split of a dataset name (e.g. validation)",
    "holdout_every": "LM: without --val-data, packed row r is held out for validation when r %% N == 0 "
                     "(default 20, at least 2)",
    "val_rows": "LM: validate on at most this many rows (default 64)",
    "log_every": "LM: log the training loss, the mean since the last entry, every N steps (default: steps // "
                 "1000, at least 1)",
    "cache_dir": "LM: datasets' cache directory (default: datasets' own)",
    "dataset_config": "LM: the configuration of a dataset name",
    "split": "LM: the training split of a dataset name (default train)",
    "text_field": "LM: the column holding each document's text (default text)",
    "arch": "LM: ramnet (default), attention (Transformer++: RoPE, SDPA, SwiGLU) or deltanet (fla, CUDA only)",
    "d_model": "LM: model width (baselines, default 256; ramnet: overrides the preset's)",
    "n_layers": "LM: blocks (baselines, default 4; ramnet: overrides the preset's)",
    "n_heads": "LM: heads (baselines, default 4; ramnet: overrides the preset's)",
    "d_ff": "LM: SwiGLU width (baselines, default 704; ramnet: overrides the preset's)",
}


def add_train_flags(p) -> None:
    """The LM-only flags of ``ramnet train`` (defaults None: the run file's value, then LMArgs')."""
    from .args import DATA_FORMATS, DIST_MODES, SAMPLE_BY

    defaults = LMArgs()
    from .arch import ARCHS

    choices = {"data_format": DATA_FORMATS, "sample_by": SAMPLE_BY, "dist": DIST_MODES, "arch": ARCHS}
    p.add_argument("--config", default=None, metavar="FILE",
                   help="LM: the run described in a YAML or JSON file (keys as the flags); flags override it")
    for name in field_names():
        if name in SHARED or name == "model":
            continue
        flag, default = "--" + name.replace("_", "-"), getattr(defaults, name)
        help_text = LM_FLAG_HELP.get(name, f"LM (default {default})")
        if isinstance(default, bool):
            p.add_argument(flag, dest=name, action="store_true", default=None, help=help_text)
        elif name in ("data", "val_data"):
            p.add_argument(flag, dest=name, nargs="+", default=None, help=help_text)
        else:
            kind = int if name in ("shuffle_buffer", "holdout_every", "val_rows", "grad_accum", "log_every",
                                   "chunk_size", "d_model", "n_layers", "n_heads", "d_ff") else str
            p.add_argument(flag, dest=name, type=kind, default=None, choices=choices.get(name), help=help_text)


def lm_flags_given(args) -> list[str]:
    return ["--" + n.replace("_", "-") for n in field_names()
            if n not in SHARED and n != "model" and getattr(args, n, None) is not None] + \
        (["--config"] if getattr(args, "config", None) else [])


def train(args, overrides: dict) -> int:
    from . import checkpoints as lm_ckpt
    from .loop import train_lm

    given = ["--" + n.replace("_", "-") for n in MQAR_ONLY if getattr(args, n, None) is not None]
    if given:
        why = " (the vocabulary follows --tokenizer)" if "--vocab-size" in given else ""
        raise ValueError(f"{', '.join(given)}: MQAR flags, not for --task lm{why}")
    file_values = read_run_file(args.config) if args.config else {}
    flags = {n: getattr(args, n) for n in field_names() if n != "model" and getattr(args, n, None) is not None}
    base = {}
    if args.resume is not None:  # the checkpoint's arguments, unless the file or a flag names others; the device
        _, info = lm_ckpt.read(args.resume)  # and the thread count are this machine's choice, never inherited
        base = {k: v for k, v in info["args"].items() if k not in NOT_RESUMED}
    file_model = {**(base.get("model") or {}), **(file_values.get("model") or {})}
    lm_args = merge({**base, **file_values, "model": file_model}, flags, overrides)
    metrics = train_lm(lm_args, out_dir=args.out or "runs/lm", resume=args.resume, overwrite=args.overwrite)
    if metrics["model"] is not None:  # the first process reports
        print(json.dumps({k: metrics[k] for k in ("arch", "parameters", "non_embedding_parameters", "final_loss",
                                                  "final_val_loss", "final_val_ppl", "steps_run", "seconds",
                                                  "world_size")}))
        print(f"model, tokenizer and metrics written to {args.out or 'runs/lm'}")
    return 0


def evaluate(args) -> int:
    from ..precision import check_precision, resolve_device
    from .evaluate import eval_lm

    given = [f for f, v in (("--num-kv-pairs", args.num_kv_pairs), ("--vocab-size", args.vocab_size)) if v is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: MQAR flags, not for --task lm")
    check_precision(args.precision)
    if args.precision == "fp16":
        raise ValueError("--precision must be fp32 or bf16 for --task lm, got 'fp16'")
    result = eval_lm(args.checkpoint, data=args.data, seq_len=args.seq_len, max_rows=args.max_rows,
                     batch_rows=args.batch_rows, data_format=args.data_format, text_field=args.text_field,
                     sample_by=args.sample_by, tokenizer=args.tokenizer, device=resolve_device(args.device),
                     precision=args.precision)
    print(json.dumps(result))
    return 0


def generate(args) -> int:
    """Print the prompt and its continuation, sampled by ``RamNetForCausalLM.generate`` (``ramnet.sampling``)."""
    import torch

    from ..checkpoint import load_checkpoint
    from ..precision import resolve_device
    from ..sampling import sampling_args
    from .evaluate import checkpoint_tokenizer

    from .arch import check_not_hf, read_arch

    check_not_hf(args.checkpoint)
    if read_arch(args.checkpoint) != "ramnet":
        raise ValueError(f"--checkpoint {args.checkpoint} is an --arch {read_arch(args.checkpoint)} model: generate "
                         "serves RAM-Net checkpoints only")
    device = resolve_device(args.device)
    if not 0 <= args.seed < 2**62:
        raise ValueError(f"--seed must be an integer in [0, 2**62), got {args.seed}")
    tok = checkpoint_tokenizer(Path(args.checkpoint), args.tokenizer)
    # training packs documents after one another but never trains "end of text -> a document's first token", so
    # there is no start token to sample a new document from: the prompt must hold text
    ids = tok(args.prompt, add_special_tokens=True)["input_ids"] if args.prompt else []
    if not ids:
        raise ValueError(f"--prompt must hold at least one token: give the text to continue, got {args.prompt!r}")
    model = load_checkpoint(args.checkpoint, map_location=device).eval()
    eos = tok.eos_token_id
    sampling_args(args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                  eos_token_id=eos, vocab_size=model.config.vocab_size)  # every argument checked before the work
    prompt = torch.tensor([ids], dtype=torch.int64, device=device)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    out = model.generate(prompt, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, eos_token_id=eos, generator=gen)
    new = [t for t in out[0, prompt.shape[1]:].tolist() if t != eos]
    text = tok.decode(ids + new, skip_special_tokens=True)
    sys.stdout.write(text + "\n")
    return 0


def convert(args) -> int:
    from .arch import read_arch
    from .convert import convert as convert_checkpoint

    if read_arch(args.checkpoint) != "ramnet":
        raise ValueError(f"checkpoint {args.checkpoint} is an --arch {read_arch(args.checkpoint)} model: convert "
                         "serves RAM-Net checkpoints only")
    path = convert_checkpoint(args.checkpoint, args.out, args.format)
    print(f"wrote a {args.format} checkpoint to {path}")
    return 0


def add_generate_and_convert_parsers(sub, common) -> None:
    """The ``generate`` and ``convert`` subcommands of the ``ramnet`` CLI (``sub``: its subparsers; ``common``:
    the parent parser with ``--debug``)."""
    p = sub.add_parser("generate", parents=[common], help="text from an LM checkpoint (prompt + continuation)")
    p.add_argument("--checkpoint", required=True, help="a model checkpoint with its tokenizer (ramnet train --task "
                   "lm's output, or ramnet convert's)")
    p.add_argument("--prompt", required=True, help="the text to continue (at least one token)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.8, help="0 is greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--tokenizer", default=None, help="tokenizer (default: the one saved with the checkpoint)")
    p.set_defaults(func=generate)

    p = sub.add_parser("convert", parents=[common], help="an LM training checkpoint (DCP) -> safetensors model")
    p.add_argument("checkpoint", help="a training checkpoint (checkpoints/step-N) or a run directory (its newest)")
    p.add_argument("--out", required=True, help="the new model checkpoint directory (new or empty)")
    p.add_argument("--format", default="native", choices=["native", "hf"],
                   help="native (default: eval, export, validate read it) or hf (transformers' from_pretrained)")
    p.set_defaults(func=convert)
