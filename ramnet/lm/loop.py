"""``ramnet train --task lm``: next-token training on packed documents, in one process or several (torchrun).

AdamW (betas 0.9, 0.95; weight decay on matrices other than embeddings), transformers' cosine schedule with
linear warm-up down to ``min_lr_ratio``, gradient accumulation and clipping, optional per-block activation
checkpointing and ``torch.compile`` of each block, validation loss and perplexity every ``eval_every`` steps,
resumable checkpoints. The loss of a step is the mean over every target token of the global batch, whatever the
number of processes: each process sums its tokens' losses and divides by the global token count (all-reduced
before the backward), so one process and ``W`` processes on the same global batch compute the same loss and
gradient (up to summation order in fp32).

The library leaves process-wide state as it found it: the thread count is restored, the model init runs under
``torch.random.fork_rng``, batches never draw from the global RNG, a caller's autocast is switched off inside,
and a process group created here is destroyed here."""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .. import checkpoint as ckpt
from ..losses import IGNORE_INDEX, chunked_cross_entropy, upcast_logits
from ..modes import eval_mode
from ..precision import autocast
from . import checkpoints as lm_ckpt
from . import dist as D
from .arch import build, check_device
from .args import LOCKED_ON_RESUME, LMArgs
from .data import LMData, resolve_source
from .metrics import CSV_FILE, JSON_FILE, TB_DIR, RunLog
from .tokenizer import load_tokenizer, vocab_size

# files an LM run writes into its output directory (``--overwrite`` removes exactly these)
RUN_FILES = (ckpt.MODEL_FILE, ckpt.CONFIG_FILE, JSON_FILE, CSV_FILE, "tokenizer.json", "tokenizer_config.json",
             "special_tokens_map.json")


class LMObjective(nn.Module):
    """``(input_ids [1, N], targets [1, N], cu_seqlens [P + 1]) -> summed cross-entropy`` (fp32 scalar) of
    ``model`` over the targets that are not ``IGNORE_INDEX``. The module that FSDP2 / DDP wrap, so that the
    embedding, the final norm and the LM head are gathered around the whole step."""

    def __init__(self, model: nn.Module, chunk_size: int | None = None):
        super().__init__()
        self.model, self.chunk_size = model, chunk_size

    def forward(self, input_ids, targets, cu_seqlens):
        hidden, _ = self.model.features(input_ids, cu_seqlens=cu_seqlens)
        if self.chunk_size is None:
            logits = upcast_logits(self.model.lm_head(hidden))
            return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                                   reduction="sum")
        return chunked_cross_entropy(hidden, self.model.lm_head.weight, targets, chunk_size=self.chunk_size,
                                     reduction="sum")


def make_optimizer(module: nn.Module, args: LMArgs):
    """AdamW over ``module``'s parameters (betas 0.9, 0.95; weight decay on matrices other than the embedding)
    and transformers' ``get_cosine_with_min_lr_schedule_with_warmup``: ``(optimizer, schedule)``."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    named = list(module.named_parameters())
    decay = [p for n, p in named if p.dim() >= 2 and "embed" not in n]
    rest = [p for n, p in named if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95))
    schedule = get_cosine_with_min_lr_schedule_with_warmup(opt, args.warmup, args.steps,
                                                           min_lr_rate=args.min_lr_ratio)
    return opt, schedule


@torch.no_grad()
def evaluate(module: nn.Module, batches, procs: D.Processes, precision: str = "fp32") -> dict:
    """Mean next-token loss and perplexity of ``module`` (an :class:`LMObjective`, wrapped or not) over
    ``batches`` (this process's share; sums are all-reduced): ``{"val_loss", "val_ppl", "val_tokens"}``."""
    total = torch.zeros((), dtype=torch.float64)
    count = torch.zeros((), dtype=torch.float64)
    with eval_mode(module):
        for ids, targets, cu in batches:
            with autocast(procs.device, precision):
                loss_sum = module(ids.to(procs.device), targets.to(procs.device), cu.to(procs.device))
            total += loss_sum.detach().double().cpu()
            count += (targets != IGNORE_INDEX).sum()
    total, count = procs.sum(total), procs.sum(count)
    loss = (total / count.clamp(min=1)).item()
    return {"val_loss": loss, "val_ppl": math.exp(min(loss, 700.0)), "val_tokens": int(count.item())}


def check_resume(args: LMArgs, saved: dict, path: Path, step: int) -> None:
    """A resumed run keeps every argument that decides its data, their order, the model, the optimizer and the LR
    schedule (``--steps`` and the warm-up: the cosine decay is laid out over ``--steps``)."""
    def locked_value(values: dict, key: str):
        if key == "warmup_steps":  # the warm-up that ran: None stands for steps // 20, at most 2000
            given = values.get("warmup_steps")
            return given if given is not None else min(2000, values["steps"] // 20)
        return values[key]

    now = args.to_dict()
    diff = [f"--{k.replace('_', '-')} {locked_value(now, k)!r} (checkpoint: {locked_value(saved, k)!r})"
            for k in LOCKED_ON_RESUME if k in saved and locked_value(saved, k) != locked_value(now, k)]
    if diff:
        raise ValueError(f"--resume {path}: a resumed run keeps the data, batches, model, optimizer and LR schedule "
                         f"(--steps, --warmup-steps) of the run it continues; these differ: {'; '.join(diff)}")
    if step >= args.steps:
        raise ValueError(f"--resume {path} is at step {step}, the run's last (--steps {args.steps}): there is "
                         "nothing left to run")


def train_lm(args: LMArgs, out_dir: str | Path | None = None, *, resume: str | Path | None = None,
             overwrite: bool = False, progress: bool = True) -> dict:
    """Train a language model as ``args`` describe; returns the metrics dict (``metrics.json``'s content), with
    the trained model under ``"model"`` (on the first process; None on the others).

    Under torchrun (``WORLD_SIZE > 1``) every process calls this; the process group is created here when none
    exists. ``out_dir``: the final ``model.safetensors``, ``config.json``, the tokenizer, ``metrics.json`` /
    ``metrics.csv`` (and TensorBoard events when installed); checkpoints every ``args.save_every`` steps under
    ``out_dir/checkpoints``. ``resume``: an LM checkpoint or a run directory (its newest); ``args`` must keep the
    checkpoint's ``LOCKED_ON_RESUME`` values. Everything is checked before the first step."""
    from ..train import prepare_out_dir

    if args.data is None:
        raise ValueError("--data is required for --task lm (text files, or a dataset name when online)")
    state = None
    if resume is not None and args.arch != "ramnet":
        raise ValueError(f"--resume continues RAM-Net runs only; --arch {args.arch} runs cannot be resumed")
    if resume is not None:
        path, info = lm_ckpt.read(resume)
        check_resume(args, info["args"], path, info["step"])
        state = (path, info)
    if args.save_every is not None and out_dir is None:
        raise ValueError("--save-every needs an output directory")
    # checked before the output directory is touched: the sources exist, the tokenizer loads, the model config
    resolve_source(args.data, args.data_format, args.dataset_config)
    if args.val_data is not None:
        resolve_source(args.val_data, args.data_format, args.dataset_config, "--val-data")
    tokenizer = load_tokenizer(args.tokenizer if state is None else str(state[0]))
    config = args.model_config(vocab_size(tokenizer))
    check_device(args.arch, args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if state is not None:
        saved = ckpt.read_config(state[0])
        if saved != config:
            raise ValueError(f"--resume {state[0]}: the model config differs from the checkpoint's: "
                             f"{saved.differences(config)}")
    rank, world, _ = D.launched_world()
    data = LMData(args, tokenizer, rank, world)  # reads (and checks) the training and validation rows
    resume_step = None if state is None else state[1]["step"]
    out = None if out_dir is None else prepare_out_dir(out_dir, resume=None if state is None else state[0],
                                                       resume_step=resume_step or 0, overwrite=overwrite)
    threads = torch.get_num_threads()
    try:
        with D.processes(args.device) as procs:  # destroys a group it created, whatever happens inside
            if args.threads:
                torch.set_num_threads(args.threads)
            with torch.autocast(procs.device.type, enabled=False):
                return _train(args, procs, out, state, overwrite, progress, tokenizer, config, data)
    finally:
        torch.set_num_threads(threads)


def _train(args: LMArgs, procs: D.Processes, out: Path | None, state, overwrite: bool, progress: bool, tokenizer,
           config, data: LMData) -> dict:
    with torch.random.fork_rng(devices=[]):  # the init draws from the CPU RNG; the caller's stream is restored
        torch.random.default_generator.manual_seed(args.seed)
        model = build(config)
    model.set_activation_checkpointing(args.activation_checkpointing)
    objective = LMObjective(model, args.chunk_size)
    module = D.wrap(objective, model.blocks, procs, args.dist, args.compile)
    module.train()
    opt, schedule = make_optimizer(module, args)
    history, start_step = [], 0
    # the logged loss is the mean of the step losses since the last entry: each process sums its share of every
    # step's loss (its summed token losses over the step's global token count), all-reduced at a log step
    window_loss, window_steps = torch.zeros((), dtype=torch.float64), 0
    if state is not None:
        path, info = state
        D.load_state(path / D.DCP_DIR, module, opt)
        schedule.load_state_dict(info["schedule"])
        history, start_step = info["history"], info["step"]
        saved_window = info.get("loss_window") or {"sum": 0.0, "steps": 0}  # a checkpoint between two log steps
        window_steps = int(saved_window["steps"])
        if procs.is_main:  # the saved sum is over all processes: the first one carries it
            window_loss += float(saved_window["sum"])
    if overwrite and out is not None and procs.is_main:
        ckpt.clear_previous_run(out, None if state is None else start_step, RUN_FILES, (TB_DIR,))
    if out is not None and procs.is_main:
        ckpt.remove_stale_temporaries(out)
    procs.barrier()
    log = RunLog(out, history, enabled=procs.is_main)
    summary = {"task": "lm", "world_size": procs.world_size, "dist": args.dist if procs.distributed else None,
               "device": str(procs.device), "args": args.to_dict(), "config": config.to_dict(),
               "tokenizer": args.tokenizer, "vocab_size": config.vocab_size, "data": data.describe(),
               "arch": args.arch, "parameters": sum(p.numel() for p in model.parameters()),
               "non_embedding_parameters": model.num_parameters(exclude_embeddings=True)}
    if procs.is_main and progress:
        print(f"--arch {args.arch}: {summary['parameters']:,} parameters ({summary['non_embedding_parameters']:,} "
              "without the input embedding)", file=sys.stderr, flush=True)
    tokens_per_step = args.batch_size * args.seq_len
    start = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    bar = tqdm(range(start_step, args.steps), initial=start_step, total=args.steps,
               disable=not (progress and procs.is_main), unit="step",
               desc=f"lm T={args.seq_len} x{args.batch_size} {procs.device.type} {args.precision} W={procs.world_size}")
    steps = data.train_steps(start_step)
    window_start, window_tokens = time.perf_counter(), 0
    val = None
    try:
        for step in bar:
            micro = next(steps)
            count = procs.sum(sum((t != IGNORE_INDEX).sum() for _, t, _ in micro).double()).clamp(min=1)
            scale = procs.world_size / count.item()  # FSDP2 / DDP average the gradients over the processes
            opt.zero_grad(set_to_none=True)
            loss_sum = torch.zeros((), dtype=torch.float64)
            for m, (ids, targets, cu) in enumerate(micro):
                with D.gradient_sync(module, m == len(micro) - 1):
                    with autocast(procs.device, args.precision):
                        part = module(ids.to(procs.device), targets.to(procs.device), cu.to(procs.device))
                    (part * scale).backward()
                loss_sum += part.detach().double().cpu()
            grad_norm = torch.nn.utils.clip_grad_norm_(module.parameters(), args.grad_clip)
            lr = opt.param_groups[0]["lr"]
            opt.step()
            schedule.step()
            done = step + 1
            window_tokens += tokens_per_step
            window_loss += loss_sum / count
            window_steps += 1
            last = done == args.steps
            validate = done % args.eval_every == 0 or last
            if done % args.log_period == 0 or validate:
                loss = (procs.sum(window_loss) / window_steps).item()
                window_loss, window_steps = torch.zeros((), dtype=torch.float64), 0
                if not math.isfinite(loss):
                    raise FloatingPointError(f"training diverged: the loss is {loss} at step {done} (try a lower "
                                             "--lr or --precision fp32)")
                now = time.perf_counter()
                rate = window_tokens / max(now - window_start, 1e-9)
                entry = {"step": done, "loss": loss, "lr": lr, "grad_norm": float(_full(grad_norm)),
                         "tokens": done * tokens_per_step, "tokens_per_s": rate, "seconds": now - start}
                if validate:
                    val = evaluate(module, data.val_batches(), procs, args.precision)
                    entry.update(val_loss=val["val_loss"], val_ppl=val["val_ppl"])
                log.record(entry)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:,.0f}",
                                **({"val_ppl": f"{val['val_ppl']:.2f}"} if validate and val else {}))
                window_start, window_tokens = time.perf_counter(), 0
            if args.save_every is not None and (done % args.save_every == 0 or last) and out is not None:
                info = {"args": args.to_dict(), "history": log.history, "world_size": procs.world_size,
                        "loss_window": {"sum": procs.sum(window_loss).item(), "steps": window_steps},
                        "schedule": _schedule_state(schedule)}
                lm_ckpt.save(out, done, module, opt, info, config, tokenizer, procs)
                log.write_json({**summary, "steps_run": done, "seconds": time.perf_counter() - start})
        bar.close()
        full = D.full_model_state(module) if procs.distributed else None
        trained = model if not procs.distributed else (_rebuild(config, full) if procs.is_main else None)
        metrics = {**summary, "steps_run": args.steps, "seconds": time.perf_counter() - start,
                   "final_loss": log.history[-1]["loss"] if log.history else None,
                   "final_val_loss": None if val is None else val["val_loss"],
                   "final_val_ppl": None if val is None else val["val_ppl"]}
        if out is not None and procs.is_main:
            ckpt.save_model_atomic(trained, out)
            tokenizer.save_pretrained(str(out))
            log.write_json(metrics)
        procs.barrier()
    finally:
        log.close()
    return {**metrics, "history": log.history, "model": trained}


def _full(value):
    """A clip norm as a plain tensor (FSDP2 returns a replicated DTensor)."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value


def _schedule_state(schedule) -> dict:
    """The LR schedule's state as JSON values (transformers' schedule is a LambdaLR over a partial)."""
    return schedule.state_dict()


def _rebuild(config, full_state: dict) -> nn.Module:
    """A plain CPU model holding ``full_state`` (keys of :class:`LMObjective`: ``model.``-prefixed)."""
    with torch.random.fork_rng(devices=[]):
        model = build(config)
    model.load_state_dict({k.removeprefix("model."): v for k, v in full_state.items()})
    return model
