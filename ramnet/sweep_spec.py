"""The sweep spec of ``ramnet sweep``: reading it (YAML or JSON), checking every key before any run starts, and
expanding it into runs. Each run carries a fingerprint of everything that decides its result, so a result
written under other arguments is never taken for this run's."""
from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import torch

from .baselines import MODELS, build_model
from .mapping_files import parse_mapping_file
from .data.mqar_protocol import PROTOCOL_SETTINGS, PROTOCOL_VOCAB, protocol_settings
from .precision import resolve_device
from .train import TrainArgs

DEFAULTS = {"name": "mqar", "out": None, "steps": 4000, "batch_size": 128, "lrs": [3e-4, 1e-3, 3e-3], "seeds": [0],
            "warmup_steps": 100, "min_lr_ratio": 0.1, "weight_decay": 0.1, "grad_clip": 1.0,
            "num_train": 20_000, "num_eval": 1000, "eval_every": 500, "settings": [list(s) for s in PROTOCOL_SETTINGS],
            "vocab_size": PROTOCOL_VOCAB, "precision": "bf16", "device": None, "parallel": 1, "models": None}
# the keys a model entry may have, by kind
# save_model (RAM-Net only): keep the trained model in the run directory (``model/``, safetensors), e.g. for
# ``ramnet plot --slots``; it does not change what a run computes, so it is not part of the fingerprint
# lrs: this entry's learning rates instead of the spec's (e.g. more seeds at a model's best lr only); the run's lr
# is part of its fingerprint, the list is not, so a run keeps its fingerprint across specs
# alpha_lr_mult (RAM-Net only): the alpha temperatures' lr as a multiple of the run's; in the fingerprint only
# when other than 1.0, so the runs recorded before the key existed keep theirs
# steps: this entry's step budget instead of the spec's (the cosine schedule spans it); the run's steps are part of
# its fingerprint as before, so an entry without the key keeps the fingerprints it had
ENTRY_KEYS = {"ramnet": {"label", "model", "tags", "preset", "overrides", "save_model", "lrs", "alpha_lr_mult",
                         "steps"},
              "baseline": {"label", "model", "tags", "d_model", "n_layers", "n_heads", "d_ff", "layer", "lrs",
                           "steps"}}
# entry keys that do not describe the model (model_spec leaves them out)
NOT_MODEL_KEYS = ("label", "tags", "save_model", "lrs", "alpha_lr_mult", "steps")
# TrainArgs' names for the spec's keys, to name the spec key in its errors
TRAIN_KEYS = {"steps": "steps", "batch_size": "batch_size", "warmup_steps": "warmup_steps",
              "min_lr_ratio": "min_lr_ratio", "weight_decay": "weight_decay", "grad_clip": "grad_clip",
              "num_train": "num_train", "num_eval": "num_eval", "eval_every": "eval_every", "precision": "precision"}
LABEL_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class SpecError(ValueError):
    """A sweep spec that cannot run; the message names the key."""


def load_spec(path: str | Path) -> dict:
    """Read a ``.yaml``/``.yml`` or ``.json`` spec and return it checked, with the defaults filled in."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"sweep spec {path} does not exist")
    text = path.read_text()
    data = parse_mapping_file(path, text, f"sweep spec {path}", "pip install pyyaml", error=SpecError)
    return check_spec(data, default_out=Path("runs") / path.stem)


def _int(key, value, low=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SpecError(f"{key} must be an int >= {low}, got {value!r}")


def _distinct(key, values, check):
    if not isinstance(values, list) or not values:
        raise SpecError(f"{key} must be a non-empty list, got {values!r}")
    for value in values:
        check(value)
    if len(set(values)) != len(values):
        raise SpecError(f"{key} must not repeat a value, got {values!r}")


def _lr(value):
    # an int beyond float's range compares below inf but cannot become a float lr
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= sys.float_info.max:
        raise SpecError(f"each of lrs must be a finite number > 0, got {value!r}")


def check_spec(data, default_out: Path | None = None) -> dict:
    """``data`` with the defaults filled in, every key checked (the models are built on the meta device)."""
    if not isinstance(data, dict):
        raise SpecError(f"a sweep spec is a mapping of keys, got {type(data).__name__}")
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise SpecError(f"unknown key(s) {unknown} in the sweep spec; known: {sorted(DEFAULTS)}")
    spec = {**DEFAULTS, **data}
    if spec["out"] is None:
        if default_out is None:
            raise SpecError("out (the sweep's output directory) is required")
        spec["out"] = str(default_out)
    if not isinstance(spec["out"], str) or not spec["out"].strip():
        raise SpecError(f"out must be a directory path, got {spec['out']!r}")
    if Path(spec["out"]).exists() and not Path(spec["out"]).is_dir():
        raise SpecError(f"out {spec['out']} exists and is not a directory")
    for key in ("parallel", "vocab_size"):
        _int(key, spec[key])
    if not isinstance(spec["name"], str):
        raise SpecError(f"name must be a string, got {spec['name']!r}")
    _distinct("lrs", spec["lrs"], _lr)
    _distinct("seeds", spec["seeds"], lambda s: _int("each of seeds", s, 0))
    for lr in spec["lrs"]:  # TrainArgs checks the training keys; its messages name them as flags
        for seed in spec["seeds"]:
            try:
                TrainArgs(lr=float(lr), seed=seed, **{arg: spec[key] for key, arg in TRAIN_KEYS.items()})
            except (ValueError, TypeError) as error:
                raise SpecError(f"sweep spec: {str(error).replace('--', '').replace('-', '_')}") from None
    if spec["device"] is not None:
        try:
            resolve_device(spec["device"])
        except (ValueError, RuntimeError, TypeError) as error:
            raise SpecError(f"device: {error}") from None
    try:
        protocol_settings(spec["settings"], spec["vocab_size"])
    except (ValueError, TypeError) as error:
        raise SpecError(f"settings: {error}") from None
    _check_models(spec)
    return spec


def _check_models(spec: dict) -> None:
    models = spec["models"]
    if not isinstance(models, list) or not models:
        raise SpecError("models must be a non-empty list of {label, model, ...} entries")
    labels = set()
    max_len = max(int(s[1]) for s in spec["settings"])
    for entry in models:
        if not isinstance(entry, dict) or not isinstance(entry.get("label"), str) or not entry["label"] or \
                not set(entry["label"]) <= LABEL_CHARS or entry["label"][0] in ".-":
            raise SpecError(f"each model needs a label of letters, digits, '_', '.', '-', got {entry!r}")
        label = entry["label"]
        if entry.get("model") not in MODELS:
            raise SpecError(f"model {label}: model must be one of {', '.join(MODELS)}, got {entry.get('model')!r}")
        known = ENTRY_KEYS["ramnet" if entry["model"] == "ramnet" else "baseline"]
        if set(entry) - known:
            raise SpecError(f"model {label}: unknown key(s) {sorted(set(entry) - known)} for a {entry['model']} "
                            f"entry; known: {sorted(known)}")
        if "lrs" in entry:
            try:
                _distinct("lrs", entry["lrs"], _lr)
            except SpecError as error:
                raise SpecError(f"model {label}: {error}") from None
        if "alpha_lr_mult" in entry:
            try:
                TrainArgs(alpha_lr_mult=entry["alpha_lr_mult"])
            except (ValueError, TypeError):
                raise SpecError(f"model {label}: alpha_lr_mult must be a finite number > 0, got "
                                f"{entry['alpha_lr_mult']!r}") from None
        if "steps" in entry:
            try:  # the int check first (TrainArgs' own message names a flag), then TrainArgs with the spec's keys,
                # as for the spec's own steps, so a check across training keys covers entries too
                _int("steps", entry["steps"])
                TrainArgs(**({arg: spec[key] for key, arg in TRAIN_KEYS.items()} | {"steps": entry["steps"]}))
            except SpecError as error:
                raise SpecError(f"model {label}: {error}") from None
            except (ValueError, TypeError) as error:
                raise SpecError(f"model {label}: {str(error).replace('--', '').replace('-', '_')}") from None
        if not isinstance(entry.get("save_model", False), bool):
            raise SpecError(f"model {label}: save_model must be true or false, got {entry['save_model']!r}")
        tags = entry.get("tags", {})
        if not isinstance(tags, dict) or not all(isinstance(k, str) for k in tags):
            raise SpecError(f"model {label}: tags must be a mapping of names to values, got {tags!r}")
        try:
            json.dumps(tags)
        except TypeError as error:
            raise SpecError(f"model {label}: tags must hold plain values (numbers, strings, booleans): {error}") \
                from None
        if label in labels:
            raise SpecError(f"model label {label!r} is used twice")
        labels.add(label)
        try:
            with torch.device("meta"):  # builds the config and the modules, allocates nothing
                build_model(model_spec(entry), spec["vocab_size"], max_len)
        except ImportError as error:
            raise SpecError(f"model {label}: {error}") from None
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise SpecError(f"model {label}: {error}") from None


def model_spec(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k not in NOT_MODEL_KEYS}


# Raised when the harness changes what a run computes, so that results recorded before are run again. 2: the
# autocast weight cache no longer freezes the bf16 forward at the first step's weights (ramnet.precision).
HARNESS_VERSION = 2


def fingerprint(run: dict) -> str:
    """A hash of everything that decides a run's result (not its id, device or worker count), and of
    ``HARNESS_VERSION``."""
    decisive = {k: v for k, v in run.items() if k not in ("id", "label", "device", "fingerprint", "save_model")}
    decisive["harness"] = HARNESS_VERSION
    return hashlib.sha256(json.dumps(decisive, sort_keys=True).encode()).hexdigest()[:16]


def expand(spec: dict) -> list[dict]:
    """Every run of the grid (model x lr x seed), each with its ``id``, every training argument and its
    ``fingerprint``. The order is lr by lr (as ``lrs`` lists them, then the entries' own ``lrs``), then seed,
    then model: a sweep cut short by its time budget has every model at the first lr before any model at the
    second. An entry with ``lrs`` runs at those learning rates only."""
    common = {k: spec[k] for k in ("steps", "batch_size", "warmup_steps", "min_lr_ratio", "weight_decay",
                                   "grad_clip", "num_train", "num_eval", "eval_every", "settings", "vocab_size",
                                   "precision", "device")}
    runs = []
    all_lrs = dict.fromkeys([*spec["lrs"], *(lr for e in spec["models"] for lr in e.get("lrs", []))])
    for lr in all_lrs:
        for seed in spec["seeds"]:
            for entry in spec["models"]:
                if lr not in entry.get("lrs", spec["lrs"]):
                    continue
                run = {**common, "id": f"{entry['label']}-lr{float(lr)!r}-s{seed}", "label": entry["label"],
                       "spec": model_spec(entry), "lr": float(lr), "seed": seed,
                       "save_model": entry.get("save_model", False)}
                if "steps" in entry:
                    run["steps"] = entry["steps"]
                if float(entry.get("alpha_lr_mult", 1.0)) != 1.0:  # 1.0 is the default: the same run as without
                    run["alpha_lr_mult"] = float(entry["alpha_lr_mult"])
                runs.append({**run, "fingerprint": fingerprint(run)})
    return runs


__all__ = ["DEFAULTS", "SpecError", "check_spec", "expand", "fingerprint", "load_spec", "model_spec"]
