"""Checkpoints: the model alone (for inference), and training checkpoints (for resuming).

A model checkpoint is a directory with ``model.safetensors`` and ``config.json``; loading it never unpickles.

A training checkpoint is ``<run>/checkpoints/step-<NNNNNNNN>/`` holding a model checkpoint plus

- ``trainer_state.json``: task, step, the MQAR setting, the training arguments and the metrics history so far;
- ``trainer_state.pt``: optimizer and LR-schedule state, the batch sampler's ``torch.Generator`` state and the
  GradScaler state (fp16), read back with ``torch.load(weights_only=True)``: tensors and plain containers only.

Each is written under a temporary name and renamed into place, so a crash leaves either the previous checkpoint
or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from .config import RamNetConfig

MODEL_FILE, CONFIG_FILE = "model.safetensors", "config.json"
STATE_JSON, STATE_TENSORS = "trainer_state.json", "trainer_state.pt"
CHECKPOINTS_DIR = "checkpoints"


def write_model(model, out_dir: str | Path) -> None:
    """``out_dir/model.safetensors`` + ``out_dir/config.json`` (``out_dir`` is created)."""
    from safetensors.torch import save_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out / MODEL_FILE))
    (out / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"):
    """A ``RamNetForCausalLM`` from a model checkpoint directory (safetensors only; no pickle)."""
    from safetensors.torch import load_model

    from .model import RamNetForCausalLM

    path = Path(path)
    if not (path / MODEL_FILE).is_file() or not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{path} must be a directory with {MODEL_FILE} and {CONFIG_FILE}")
    model = RamNetForCausalLM(RamNetConfig.from_dict(json.loads((path / CONFIG_FILE).read_text())))
    load_model(model, str(path / MODEL_FILE), device=str(map_location))
    return model.to(map_location)


def _replace_dir(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` is moved aside first and removed after."""
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def save_model_atomic(model, out_dir: str | Path) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``out_dir``, each under a temporary name first and
    then renamed over the old file, so a reader never sees half a file. Other files in ``out_dir`` stay."""
    out = Path(out_dir)
    tmp = out / f".model.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    write_model(model, tmp)
    for name in (MODEL_FILE, CONFIG_FILE):
        os.replace(tmp / name, out / name)
    tmp.rmdir()
    return out


def save_training_checkpoint(run_dir: str | Path, step: int, model, info: dict, tensors: dict) -> Path:
    """``run_dir/checkpoints/step-<step>/``: the model, ``info`` as JSON and ``tensors`` (state dicts) as a
    ``weights_only`` torch file. Returns the checkpoint directory."""
    final = Path(run_dir) / CHECKPOINTS_DIR / f"step-{step:08d}"
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write_model(model, tmp)
    (tmp / STATE_JSON).write_text(json.dumps({**info, "step": step}, indent=2))
    torch.save(tensors, tmp / STATE_TENSORS)
    _replace_dir(tmp, final)
    return final


def find_training_checkpoint(path: str | Path) -> Path:
    """``path`` itself when it is a training checkpoint, else the newest one under ``path/checkpoints``."""
    path = Path(path)
    if (path / STATE_JSON).is_file():
        return path
    candidates = sorted((path / CHECKPOINTS_DIR).glob("step-*")) if (path / CHECKPOINTS_DIR).is_dir() else []
    candidates = [c for c in candidates if (c / STATE_JSON).is_file()]
    if not candidates:
        raise FileNotFoundError(f"--resume {path}: neither a training checkpoint (with {STATE_JSON}) nor a run "
                                f"directory with {CHECKPOINTS_DIR}/step-*")
    return candidates[-1]


def load_training_checkpoint(path: str | Path, map_location="cpu") -> tuple[Path, dict, dict]:
    """``(checkpoint dir, info, tensors)`` of the training checkpoint at (or newest under) ``path``."""
    ckpt = find_training_checkpoint(path)
    for name in (MODEL_FILE, CONFIG_FILE, STATE_TENSORS):
        if not (ckpt / name).is_file():
            raise FileNotFoundError(f"training checkpoint {ckpt} lacks {name}")
    info = json.loads((ckpt / STATE_JSON).read_text())
    tensors = torch.load(ckpt / STATE_TENSORS, map_location=map_location, weights_only=True)
    return ckpt, info, tensors
