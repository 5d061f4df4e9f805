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
import re
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
    from .model import RamNetForCausalLM

    path = Path(path)
    if not (path / MODEL_FILE).is_file() or not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{path} must be a directory with {MODEL_FILE} and {CONFIG_FILE}")
    with torch.random.fork_rng(devices=[]):  # the placeholder init must not move the caller's RNG
        model = RamNetForCausalLM(read_config(path))
    load_weights(model, path, map_location)
    return model.to(map_location)


def load_weights(model, checkpoint: str | Path, map_location="cpu") -> None:
    """Load ``checkpoint/model.safetensors`` into ``model``; a damaged or foreign file is a ``ValueError``."""
    from safetensors.torch import load_model

    path = Path(checkpoint) / MODEL_FILE
    try:
        load_model(model, str(path), device=str(map_location))
    except Exception as error:  # noqa: BLE001 - safetensors raises several types for damaged or foreign files
        first = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        raise ValueError(f"{path} does not hold this config's weights: {first}") from None


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


STEP_DIR = re.compile(r"step-(\d{8})")


def checkpoint_step(path: Path) -> int:
    return int(STEP_DIR.fullmatch(path.name).group(1))


def clear_previous_run(out: Path, resume_step: int | None, run_files, run_dirs=()) -> None:
    """``--overwrite``: remove the previous run's files, just before training starts (all checks passed):
    ``run_files`` and ``run_dirs`` under ``out`` and its checkpoints. When resuming into the same run
    (``resume_step``), only its checkpoints newer than the resumed step go."""
    import shutil

    if resume_step is None:
        for name in run_files:
            (out / name).unlink(missing_ok=True)
        for name in (*run_dirs, CHECKPOINTS_DIR):
            shutil.rmtree(out / name, ignore_errors=True)
    else:
        for c in list_training_checkpoints(out):
            if checkpoint_step(c) > resume_step:
                shutil.rmtree(c)


def list_training_checkpoints(run_dir: str | Path) -> list[Path]:
    """The complete training checkpoints under ``run_dir/checkpoints``, oldest first (temporaries and
    ``.old`` copies left by an interrupted save are not checkpoints)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [c for c in root.iterdir() if STEP_DIR.fullmatch(c.name) and (c / STATE_JSON).is_file()]
    return sorted(found, key=checkpoint_step)


def remove_stale_temporaries(run_dir: str | Path) -> None:
    """Remove what an interrupted save left under ``run_dir/checkpoints`` (``.step-*.tmp-*``, ``step-*.old``)."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if root.is_dir():
        for c in root.iterdir():
            if c.name.startswith(".step-") or c.name.endswith(".old"):
                shutil.rmtree(c, ignore_errors=True)


def find_training_checkpoint(path: str | Path) -> Path:
    """``path`` itself when it is a training checkpoint, else the newest one under ``path/checkpoints``."""
    path = Path(path)
    if (path / STATE_JSON).is_file():
        return path
    candidates = list_training_checkpoints(path)
    if not candidates:
        raise FileNotFoundError(f"--resume {path}: neither a training checkpoint (with {STATE_JSON}) nor a run "
                                f"directory with {CHECKPOINTS_DIR}/step-*")
    return candidates[-1]


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path``; a missing, unreadable or malformed file is a ``ValueError`` naming it."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{what} {path} cannot be read: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a JSON object")
    return data


# Fields added to RamNetConfig after checkpoints were written, with the value that reproduces those checkpoints'
# models (the feature off): a config without one of them is an older checkpoint, not a partial config.
ADDED_FIELDS = {"write_gate": False, "write_gate_offset": 0.0, "write_gate_conv": False,
                "write_gate_conv_kernel": 0}


def read_config(checkpoint: str | Path) -> RamNetConfig:
    """The ``RamNetConfig`` of a checkpoint directory; every field must be present (a partial config would
    silently take the 340M defaults), but for those in ``ADDED_FIELDS``, which older checkpoints lack."""
    path = Path(checkpoint) / CONFIG_FILE
    data = {**ADDED_FIELDS, **read_json(path, "model config")}
    missing = [f for f in RamNetConfig.field_types() if f not in data and f != "name"]
    if missing:
        raise ValueError(f"model config {path} lacks the fields {missing}")
    return RamNetConfig.from_dict(data)


def load_training_checkpoint(path: str | Path, map_location="cpu") -> tuple[Path, dict, dict]:
    """``(checkpoint dir, info, tensors)`` of the training checkpoint at (or newest under) ``path``."""
    ckpt = find_training_checkpoint(path)
    for name in (MODEL_FILE, CONFIG_FILE, STATE_TENSORS):
        if not (ckpt / name).is_file():
            raise FileNotFoundError(f"training checkpoint {ckpt} lacks {name}")
    info = read_json(ckpt / STATE_JSON, "training state")
    missing = [k for k in ("step", "setting", "train", "history", "best_accuracy") if k not in info]
    if missing:
        raise ValueError(f"training state {ckpt / STATE_JSON} lacks {missing}")
    try:
        tensors = torch.load(ckpt / STATE_TENSORS, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load raises many types for a damaged file
        raise ValueError(f"training state {ckpt / STATE_TENSORS} cannot be read ({type(error).__name__}: "
                         f"{error})") from None
    if not isinstance(tensors, dict) or {"optimizer", "schedule", "scaler", "generator"} - set(tensors):
        raise ValueError(f"training state {ckpt / STATE_TENSORS} lacks the optimizer / schedule / scaler / "
                         "generator states")
    return ckpt, info, tensors
