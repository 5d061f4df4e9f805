"""MQAR training: AdamW with linear warm-up and cosine decay, tqdm progress, accuracy on labelled positions,
safetensors checkpoints and a JSON of metrics."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import RamNetConfig
from .data.mqar import IGNORE_INDEX, MQARSetting, multiquery_ar
from .model import RamNetForCausalLM


@dataclass
class TrainArgs:
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    num_train: int = 20000
    num_eval: int = 1000
    eval_every: int = 100
    seed: int = 0
    compile: bool = False
    threads: int | None = None
    target_accuracy: float | None = None  # stop early once eval accuracy reaches it


def cosine_lr(step: int, args: TrainArgs) -> float:
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    progress = (step - args.warmup_steps) / max(1, args.steps - args.warmup_steps)
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


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
def evaluate(model, inputs, labels, batch_size: int = 256) -> float:
    model.eval()
    positions = labelled_positions(labels)
    correct = 0
    for i in range(0, len(inputs), batch_size):
        logits = labelled_logits(model, inputs[i:i + batch_size], positions[i:i + batch_size])
        correct += (logits.argmax(-1) == labels[i:i + batch_size].gather(1, positions[i:i + batch_size])).sum().item()
    model.train()
    return correct / positions.numel()


def train_mqar(config: RamNetConfig, setting: MQARSetting, args: TrainArgs, out_dir: str | Path | None = None,
               progress: bool = True) -> dict:
    """Train ``config`` on MQAR ``setting``. Returns the metrics dict (also written to ``out_dir/metrics.json``
    with ``model.safetensors`` and ``config.json`` when ``out_dir`` is given)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = RamNetForCausalLM(config)
    train_x, train_y = multiquery_ar(setting, args.num_train, seed=args.seed)
    eval_x, eval_y = multiquery_ar(setting, args.num_eval, seed=args.seed + 10_000)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))
    train_pos = labelled_positions(train_y)
    train_targets = train_y.gather(1, train_pos)

    def loss_fn(inputs, positions, targets):
        return F.cross_entropy(labelled_logits(model, inputs, positions).flatten(0, 1), targets.flatten())

    loss_step = torch.compile(loss_fn, fullgraph=True) if args.compile else loss_fn
    gen = torch.Generator().manual_seed(args.seed)
    history, start = [], time.perf_counter()
    bar = tqdm(range(args.steps), desc=f"mqar T={setting.seq_len} N={setting.num_kv_pairs}", disable=not progress)
    best = 0.0
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, args)
        idx = torch.randint(0, args.num_train, (args.batch_size,), generator=gen)
        loss = loss_step(train_x[idx], train_pos[idx], train_targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            acc = evaluate(model, eval_x, eval_y)
            best = max(best, acc)
            history.append({"step": step + 1, "loss": loss.item(), "accuracy": acc,
                            "seconds": time.perf_counter() - start})
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.3f}")
            if args.target_accuracy is not None and acc >= args.target_accuracy:
                break
    metrics = {"task": "mqar", "setting": asdict(setting), "train": asdict(args), "config": config.to_dict(),
               "final_accuracy": history[-1]["accuracy"], "best_accuracy": best,
               "steps_run": history[-1]["step"], "seconds": time.perf_counter() - start, "history": history}
    if out_dir is not None:
        save_checkpoint(model, out_dir)
        Path(out_dir, "metrics.json").write_text(json.dumps(metrics, indent=2))
    metrics["model"] = model
    return metrics


def save_checkpoint(model: RamNetForCausalLM, out_dir: str | Path) -> None:
    """``out_dir/model.safetensors`` + ``out_dir/config.json``."""
    from safetensors.torch import save_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2))


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> RamNetForCausalLM:
    """Load a checkpoint directory written by :func:`save_checkpoint` (safetensors only; no pickle)."""
    from safetensors.torch import load_model

    path = Path(path)
    if not (path / "model.safetensors").is_file() or not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} must be a directory with model.safetensors and config.json")
    model = RamNetForCausalLM(RamNetConfig.from_dict(json.loads((path / "config.json").read_text())))
    load_model(model, str(path / "model.safetensors"), device=map_location)
    return model
