"""MQAR training: AdamW with linear warm-up and cosine decay, on any device, in fp32 / bf16 / fp16, with tqdm
progress, accuracy on labelled positions, periodic resumable checkpoints and a JSON of metrics.

The library leaves process-wide state as it found it: the thread count is restored, the global RNG is never
drawn from (model init runs under ``torch.random.fork_rng``, batches come from a local ``torch.Generator``), and
``evaluate`` puts the model back in the mode it had."""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from .config import RamNetConfig
from .data.mqar import IGNORE_INDEX, MQARSetting, multiquery_ar
from .model import RamNetForCausalLM
from .modes import eval_mode
from .precision import autocast, check_precision, grad_scaler, resolve_device

# files a run writes into its output directory (``--overwrite`` removes exactly these)
RUN_FILES = (ckpt.MODEL_FILE, ckpt.CONFIG_FILE, "metrics.json", "curves.png")


@dataclass
class TrainArgs:
    """Training arguments. The defaults are the GPU MQAR recipe (README, "Training on a GPU"): ``mqar-small`` at
    T=256 with 64 pairs reaches >= 0.99 with them."""

    steps: int = 4000
    batch_size: int = 128
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    num_train: int = 100_000
    num_eval: int = 1000
    eval_every: int = 250
    seed: int = 0
    compile: bool = False
    threads: int | None = None
    target_accuracy: float | None = None  # stop early once eval accuracy reaches it
    device: str | None = None             # None: cuda when available, else cpu
    precision: str = "fp32"               # fp32 | bf16 | fp16 (autocast over fp32 weights)
    save_every: int | None = None         # a resumable checkpoint every N steps (None: none)
    alpha_lr_mult: float = 1.0            # the learning rate of RAM-Net's per-head temperatures alpha, in lrs

    def __post_init__(self):
        for name in ("steps", "batch_size", "num_train", "num_eval", "eval_every"):
            _check_int(name, getattr(self, name), 1)
        _check_int("warmup_steps", self.warmup_steps, 0)
        _check_int("seed", self.seed, 0)
        if self.seed >= 2**62:
            raise ValueError(f"--seed must be below 2**62, got {self.seed}")
        for name in ("threads", "save_every"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        _check_float("lr", self.lr, 0.0, open_low=True)
        _check_float("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        _check_float("weight_decay", self.weight_decay, 0.0)
        _check_float("grad_clip", self.grad_clip, 0.0, open_low=True)
        _check_float("alpha_lr_mult", self.alpha_lr_mult, 0.0, open_low=True)
        if self.target_accuracy is not None:
            _check_float("target_accuracy", self.target_accuracy, 0.0, 1.0, open_low=True)
        if not isinstance(self.compile, bool):
            raise TypeError(f"compile must be a bool, got {self.compile!r}")
        check_precision(self.precision)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{_flag(name)} must be an integer >= {low}, got {value!r}")


def _check_float(name, value, low, high=math.inf, open_low=False):
    try:  # an int too large for a float overflows in isfinite: not a finite number either
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:
        ok = False
    ok = ok and (value > low if open_low else value >= low) and value <= high
    if not ok:
        bound = f"{'>' if open_low else '>='} {low}" + ("" if high == math.inf else f" and <= {high}")
        raise ValueError(f"{_flag(name)} must be a finite number {bound}, got {value!r}")


def lr_factor(step: int, args: TrainArgs) -> float:
    """The schedule as a multiple of ``args.lr``: linear warm-up over ``warmup_steps``, then cosine decay to
    ``min_lr_ratio`` at ``steps``."""
    if step < args.warmup_steps:
        return (step + 1) / args.warmup_steps
    progress = (step - args.warmup_steps) / max(1, args.steps - args.warmup_steps)
    return args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model, args: TrainArgs):
    """AdamW (betas 0.9, 0.98; weight decay on matrices other than embeddings) and the :func:`lr_factor`
    schedule: ``(optimizer, scheduler)``. RAM-Net's per-head temperatures (parameters named ``alpha``) get
    ``lr * alpha_lr_mult``: the paper trains them as a re-parameterisation whose step size is its own choice."""
    params = list(model.named_parameters())
    is_alpha = [n.rsplit(".", 1)[-1] == "alpha" for n, _ in params]
    if args.alpha_lr_mult != 1.0 and not any(is_alpha):
        raise ValueError(f"--alpha-lr-mult {args.alpha_lr_mult} needs a model with alpha temperatures "
                         f"(RAM-Net); this {type(model).__name__} has none")
    alpha_apart = args.alpha_lr_mult != 1.0  # one group as before otherwise, so that old checkpoints resume
    decay = [p for n, p in params if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for (n, p), a in zip(params, is_alpha)
                if not (p.dim() >= 2 and "embed" not in n) and not (alpha_apart and a)]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if alpha_apart:
        groups.append({"params": [p for (_, p), a in zip(params, is_alpha) if a], "weight_decay": 0.0,
                       "lr": args.lr * args.alpha_lr_mult})
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.98))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, args))


def optimizer_step(loss, model, opt, schedule, scaler, grad_clip: float) -> None:
    """Backward of ``loss`` (scaled for fp16), gradient clipping to ``grad_clip``, one optimizer and schedule step."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(opt)
    scaler.update()
    schedule.step()


def labelled_positions(labels: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` labels -> ``[B, N]`` positions of the labelled tokens (MQAR has exactly N per row)."""
    mask = labels != IGNORE_INDEX
    counts = mask.sum(1)
    if not bool((counts == counts[0]).all()):
        raise ValueError("every row must have the same number of labelled positions")
    return torch.nonzero(mask)[:, 1].view(labels.shape[0], -1)


def labelled_logits(model, inputs, positions):
    """Logits at the labelled positions only, ``[B, N, V]``: the LM head over every position would cost
    ``T / N`` times more (16x at T=64, N=4) and teach nothing, since other labels are -100."""
    hidden, _ = model.features(inputs)
    picked = hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    return model.lm_head(picked)


@torch.no_grad()
def evaluate(model, inputs, labels, batch_size: int = 256, precision: str = "fp32") -> float:
    """MQAR accuracy of ``model`` on ``inputs, labels [N, T]`` (moved to the model's device batch by batch).
    The model runs in eval mode; every module gets its own mode back afterwards."""
    device = next(model.parameters()).device
    with eval_mode(model):
        positions = labelled_positions(labels)
        correct = 0
        for i in range(0, len(inputs), batch_size):
            x, pos = inputs[i:i + batch_size].to(device), positions[i:i + batch_size].to(device)
            with autocast(device, precision):
                logits = labelled_logits(model, x, pos)
            correct += (logits.argmax(-1) == labels[i:i + batch_size].to(device).gather(1, pos)).sum().item()
    return correct / positions.numel()


# arguments a resumed run must share with the run it continues: they decide its data, batches and optimizer
LOCKED_ON_RESUME = ("batch_size", "lr", "min_lr_ratio", "warmup_steps", "weight_decay", "grad_clip", "num_train",
                    "seed", "precision", "alpha_lr_mult")


def _run_dir_of(checkpoint: Path) -> Path | None:
    return checkpoint.parent.parent if checkpoint.parent.name == ckpt.CHECKPOINTS_DIR else None


def prepare_out_dir(out_dir, *, resume: Path | None = None, resume_step: int = 0, overwrite: bool = False) -> Path:
    """Check ``out_dir`` and create it; nothing in it is removed here (see ``checkpoint.clear_previous_run``).

    Refused: a file; a directory that is not writable; a non-empty directory, unless ``overwrite`` or it is the
    run that ``resume`` belongs to and holds no checkpoint newer than ``resume_step``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        if resume is None:
            raise FileExistsError(f"--out {out} is not empty; pass --resume to continue that run or --overwrite to "
                                  "replace it")
        run = _run_dir_of(resume)
        if run is None or run.resolve() != out.resolve():
            raise FileExistsError(f"--out {out} is not empty and is not the run being resumed ({run or resume}); "
                                  "choose a new directory, or pass --overwrite to replace it")
        newer = [c.name for c in ckpt.list_training_checkpoints(out) if ckpt.checkpoint_step(c) > resume_step]
        if newer:
            raise FileExistsError(f"--out {out} holds checkpoints newer than the resumed step {resume_step} "
                                  f"({', '.join(newer)}); resume from the newest, or pass --overwrite to drop them")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"--out {out}: cannot create it ({error.strerror or error})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {out} is not writable")
    return out


def _resume_state(resume, config, setting, args):
    """Load the training checkpoint at ``resume`` and check that ``config``, ``setting`` and the locked training
    arguments match it (None: take the checkpoint's)."""
    path, info, tensors = ckpt.load_training_checkpoint(resume)
    saved_config = ckpt.read_config(path)
    saved_setting = MQARSetting(**info["setting"])
    if config is not None and config != saved_config:
        diff = ", ".join(f"{k}={b!r} (checkpoint: {a!r})" for k, (a, b) in saved_config.differences(config).items())
        raise ValueError(f"--resume {path}: the model config differs from the checkpoint's: {diff}")
    if setting is not None and setting != saved_setting:
        raise ValueError(f"--resume {path}: the checkpoint was trained on {saved_setting}, not {setting}")
    saved_args = {"alpha_lr_mult": 1.0, **info.get("train", {})}  # checkpoints from before the key had 1.0
    diff = [f"{_flag(k)} {getattr(args, k)!r} (checkpoint: {saved_args[k]!r})" for k in LOCKED_ON_RESUME
            if k in saved_args and saved_args[k] != getattr(args, k)]
    if diff:
        raise ValueError(f"--resume {path}: a resumed run keeps the data, batches and optimizer of the run it "
                         f"continues; these differ: {'; '.join(diff)}")
    if info["step"] >= args.steps:
        raise ValueError(f"--resume {path} is at step {info['step']}; --steps must exceed it, got {args.steps}")
    return path, info, tensors, saved_config, saved_setting


def train_mqar(config: RamNetConfig | None, setting: MQARSetting | None, args: TrainArgs,
               out_dir: str | Path | None = None, progress: bool = True, *, resume: str | Path | None = None,
               overwrite: bool = False) -> dict:
    """Train ``config`` on MQAR ``setting``; returns the metrics dict, with the trained model under ``"model"``.

    With ``out_dir``: the final ``model.safetensors``, ``config.json`` and ``metrics.json`` go there, and with
    ``args.save_every`` a resumable checkpoint every N steps under ``out_dir/checkpoints/``. ``resume``: a training
    checkpoint (or a run directory: its newest checkpoint) to continue from; ``config`` / ``setting`` may then be
    None (taken from it), and the arguments in ``LOCKED_ON_RESUME`` must equal the checkpoint's. Everything is
    checked before the first step; ``overwrite`` removes the previous run's files only once the checks passed."""
    device = resolve_device(args.device)
    state = None
    if resume is not None:
        path, info, tensors, config, setting = _resume_state(resume, config, setting, args)
        state = (path, info, tensors)
    if config is None or setting is None:
        raise ValueError("config and setting are required unless resuming")
    if setting.vocab_size > config.vocab_size:
        raise ValueError(f"the MQAR vocabulary ({setting.vocab_size}) exceeds the model's vocab_size "
                         f"({config.vocab_size})")
    if args.save_every is not None and out_dir is None:
        raise ValueError("--save-every needs an output directory")
    resume_step = None if state is None else state[1]["step"]
    out = None if out_dir is None else prepare_out_dir(out_dir, resume=None if state is None else state[0],
                                                       resume_step=resume_step or 0, overwrite=overwrite)
    threads = torch.get_num_threads()
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        clear = (lambda: ckpt.clear_previous_run(out, resume_step, RUN_FILES)) if overwrite and out is not None else None
        # a caller's autocast region must not reach the backward or the optimizer; the loss sets its own precision
        with torch.autocast(device.type, enabled=False):
            return _train(config, setting, args, device, out, state, progress, clear)
    finally:
        torch.set_num_threads(threads)


def _train(config, setting, args, device, out, state, progress, clear_previous_run) -> dict:
    with torch.random.fork_rng(devices=[]):  # the init draws from the CPU RNG; the caller's stream is restored
        torch.random.default_generator.manual_seed(args.seed)
        model = RamNetForCausalLM(config)
    if state is not None:
        ckpt.load_weights(model, state[0])
    model.to(device).train()
    train_x, train_y = multiquery_ar(setting, args.num_train, seed=args.seed)
    eval_x, eval_y = multiquery_ar(setting, args.num_eval, seed=args.seed + 10_000)
    train_pos = labelled_positions(train_y)
    train_x, train_pos = train_x.to(device), train_pos.to(device)
    train_targets = train_y.to(device).gather(1, train_pos)
    opt, schedule = make_optimizer(model, args)
    scaler = grad_scaler(device, args.precision)
    gen = torch.Generator().manual_seed(args.seed)
    history, best, start_step = [], 0.0, 0
    if state is not None:
        _, info, tensors = state
        opt.load_state_dict(tensors["optimizer"])
        schedule.load_state_dict(tensors["schedule"])
        if tensors["scaler"]:  # empty when the run was not fp16
            scaler.load_state_dict(tensors["scaler"])
        gen.set_state(tensors["generator"])
        history, best, start_step = info["history"], info["best_accuracy"], info["step"]

    def loss_fn(inputs, positions, targets):
        with autocast(device, args.precision):
            logits = labelled_logits(model, inputs, positions)
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())

    loss_step = torch.compile(loss_fn, fullgraph=True) if args.compile else loss_fn
    if clear_previous_run is not None:
        clear_previous_run()
    if out is not None:
        ckpt.remove_stale_temporaries(out)
    start = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    bar = tqdm(range(start_step, args.steps), initial=start_step, total=args.steps, disable=not progress,
               desc=f"mqar T={setting.seq_len} N={setting.num_kv_pairs} {device.type} {args.precision}")
    step_done = start_step
    for step in bar:
        idx = torch.randint(0, args.num_train, (args.batch_size,), generator=gen).to(device)
        loss = loss_step(train_x[idx], train_pos[idx], train_targets[idx])
        optimizer_step(loss, model, opt, schedule, scaler, args.grad_clip)
        step_done = step + 1
        stop = False
        if step_done % args.eval_every == 0 or step_done == args.steps:
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"training diverged: the loss is {loss_value} at step {step_done} "
                                         "(try a lower --lr or --precision fp32)")
            acc = evaluate(model, eval_x, eval_y, precision=args.precision)
            best = max(best, acc)
            history.append({"step": step_done, "loss": loss_value, "accuracy": acc,
                            "seconds": time.perf_counter() - start})
            bar.set_postfix(loss=f"{loss_value:.3f}", acc=f"{acc:.3f}")
            stop = args.target_accuracy is not None and acc >= args.target_accuracy
        if args.save_every is not None and (step_done % args.save_every == 0 or stop):
            info = {"task": "mqar", "setting": asdict(setting), "train": asdict(args), "history": history,
                    "best_accuracy": best}
            tensors = {"optimizer": opt.state_dict(), "schedule": schedule.state_dict(),
                       "scaler": scaler.state_dict(), "generator": gen.get_state()}
            ckpt.save_training_checkpoint(out, step_done, model, info, tensors)
        if stop:
            break
    bar.close()
    metrics = {"task": "mqar", "setting": asdict(setting), "train": {**asdict(args), "device": str(device)},
               "config": config.to_dict(), "final_accuracy": history[-1]["accuracy"], "best_accuracy": best,
               "steps_run": step_done, "seconds": time.perf_counter() - start, "history": history}
    if out is not None:
        ckpt.save_model_atomic(model, out)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    metrics["model"] = model
    return metrics


# kept here for the existing import paths (``from ramnet.train import load_checkpoint``)
load_checkpoint = ckpt.load_checkpoint
save_checkpoint = ckpt.write_model
