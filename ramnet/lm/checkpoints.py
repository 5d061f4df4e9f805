"""LM training checkpoints: ``<run>/checkpoints/step-<NNNNNNNN>/`` holding

- ``dcp/``: model and optimizer state, written by every process (``torch.distributed.checkpoint``);
- ``trainer_state.json``: task ``lm``, step, the run's arguments, the LR schedule, the history so far and the
  number of processes that wrote it;
- ``config.json`` (the model's ``RamNetConfig``) and the tokenizer's files.

It is written under ``.step-<N>.tmp`` and renamed into place by the first process once every process has
written its shards, so an interruption leaves whole checkpoints only. Resuming reads it with any number of
processes; ``ramnet convert`` turns it into a safetensors model checkpoint."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .. import checkpoint as ckpt
from ..config import RamNetConfig
from . import dist as D

TASK = "lm"


def save(out: Path, step: int, module, optimizer, info: dict, config: RamNetConfig, tokenizer, procs) -> Path:
    """Write the checkpoint of ``step`` (a collective: every process calls it). Returns its directory."""
    final = out / ckpt.CHECKPOINTS_DIR / f"step-{step:08d}"
    tmp = final.with_name(f".{final.name}.tmp")
    if procs.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    procs.barrier()
    D.save_state(tmp / D.DCP_DIR, module, optimizer)
    procs.barrier()
    if procs.is_main:
        (tmp / ckpt.CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2))
        tokenizer.save_pretrained(str(tmp))
        (tmp / ckpt.STATE_JSON).write_text(json.dumps({**info, "task": TASK, "step": step}, indent=2))
        ckpt._replace_dir(tmp, final)
    procs.barrier()
    return final


def read(path: str | Path, flag: str = "--resume") -> tuple[Path, dict]:
    """``(checkpoint directory, trainer state)`` of the LM checkpoint at (or newest under) ``path``; ``flag``
    names the argument that gave ``path`` in the error when there is none."""
    try:
        found = ckpt.find_training_checkpoint(path)
    except FileNotFoundError:
        if flag == "--resume":
            raise
        raise FileNotFoundError(f"{flag} {path}: neither a training checkpoint (with {ckpt.STATE_JSON}) nor a run "
                                f"directory with {ckpt.CHECKPOINTS_DIR}/step-*") from None
    info = ckpt.read_json(found / ckpt.STATE_JSON, "training state")
    if info.get("task") != TASK:
        raise ValueError(f"{found} is a {info.get('task', 'mqar')!r} checkpoint, not an LM one (--task lm)")
    missing = [k for k in ("step", "args", "history", "world_size", "schedule") if k not in info]
    if missing or not (found / D.DCP_DIR / ".metadata").is_file():
        raise ValueError(f"LM checkpoint {found} is incomplete (lacks {missing or [D.DCP_DIR + '/.metadata']})")
    return found, info
