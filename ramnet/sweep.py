"""``ramnet sweep SPEC``: a grid of MQAR runs (model x learning rate x seed) on the protocol of
``ramnet.data.mqar_protocol``, several at once on one GPU, resumable, with Zoology's best-learning-rate summary.

A spec (YAML or JSON) names the models and the grid; everything else has a default (``DEFAULTS``)::

    name: mqar-main
    out: runs/mqar-main
    lrs: [3.0e-4, 1.0e-3, 3.0e-3]
    parallel: 4
    models:
      - {label: ramnet-s17k, model: ramnet, preset: mqar-small, overrides: {num_factors: 4, d_v: 16}}
      - {label: attention, model: attention, d_model: 128, n_layers: 2, n_heads: 2}
      - {label: ramnet-U2, model: ramnet, overrides: {num_factors: 2, d_p: 32}, tags: {ablation: U, U: 2}}

Each run writes ``OUT/runs/<id>/result.json``; a run whose result exists is skipped, so the same command
continues a sweep across sessions. ``OUT/mqar_sweep.json`` alone is enough to continue on another machine: the
results it holds are written back into their run directories first. ``OUT/mqar_sweep.json`` then holds every run and ``OUT/mqar.json`` one row
per model at its best learning rate (mean accuracy over seeds), with the entry's ``tags`` (for ablations).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from .baselines import MODELS
from .data.mqar_protocol import PROTOCOL_SETTINGS, PROTOCOL_VOCAB, protocol_settings
from .sweep_run import RESULT_FILE, RUN_FILE, run as run_one, write_json_atomic

DEFAULTS = {"name": "mqar", "out": None, "steps": 4000, "batch_size": 128, "lrs": [3e-4, 1e-3, 3e-3], "seeds": [0],
            "warmup_steps": 100, "min_lr_ratio": 0.1, "weight_decay": 0.1, "grad_clip": 1.0,
            "num_train": 20_000, "num_eval": 1000, "eval_every": 500, "settings": [list(s) for s in PROTOCOL_SETTINGS],
            "vocab_size": PROTOCOL_VOCAB, "precision": "bf16", "device": None, "parallel": 1, "models": None}
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ROW_KEYS = ("model", "state_size", "accuracy", "lr", "config", "short_conv", "steps", "seconds")


class SpecError(ValueError):
    """A sweep spec that cannot run; the message names the key."""


def load_spec(path: str | Path) -> dict:
    """Read a ``.yaml``/``.yml`` or ``.json`` spec and return it checked, with the defaults filled in."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"sweep spec {path} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as error:
            raise SpecError("a YAML spec needs pyyaml (pip install pyyaml), or write the spec as .json") from error
        data = yaml.safe_load(text)
    elif path.suffix == ".json":
        data = json.loads(text)
    else:
        raise SpecError(f"sweep spec must be .yaml, .yml or .json, got {path.name}")
    return check_spec(data, default_out=Path("runs") / path.stem)


def _positive_int(key, value, low=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SpecError(f"{key} must be an int >= {low}, got {value!r}")


def check_spec(data, default_out: Path | None = None) -> dict:
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
    for key in ("steps", "batch_size", "num_train", "num_eval", "eval_every", "parallel", "vocab_size"):
        _positive_int(key, spec[key])
    _positive_int("warmup_steps", spec["warmup_steps"], 0)
    if not isinstance(spec["lrs"], list) or not spec["lrs"] or \
            not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in spec["lrs"]):
        raise SpecError(f"lrs must be a non-empty list of numbers > 0, got {spec['lrs']!r}")
    if not isinstance(spec["seeds"], list) or not spec["seeds"]:
        raise SpecError(f"seeds must be a non-empty list of ints >= 0, got {spec['seeds']!r}")
    for seed in spec["seeds"]:
        _positive_int("each seed", seed, 0)
    try:
        protocol_settings(spec["settings"], spec["vocab_size"])
    except (ValueError, TypeError) as error:
        raise SpecError(f"settings: {error}") from error
    models = spec["models"]
    if not isinstance(models, list) or not models:
        raise SpecError("models must be a non-empty list of {label, model, ...} entries")
    labels = set()
    for entry in models:
        if not isinstance(entry, dict) or not isinstance(entry.get("label"), str) or not LABEL.match(entry["label"]):
            raise SpecError(f"each model needs a label of letters, digits, '_', '.', '-', got {entry!r}")
        if entry.get("model") not in MODELS:
            raise SpecError(f"model {entry['label']}: model must be one of {', '.join(MODELS)}, got "
                            f"{entry.get('model')!r}")
        tags = entry.get("tags", {})
        if not isinstance(tags, dict) or not all(isinstance(k, str) for k in tags):
            raise SpecError(f"model {entry['label']}: tags must be a mapping of names to values, got {tags!r}")
        known = {"label", "model", "tags", "preset", "overrides", "d_model", "n_layers", "n_heads", "d_ff", "layer"}
        if set(entry) - known:
            raise SpecError(f"model {entry['label']}: unknown key(s) {sorted(set(entry) - known)}; known: "
                            f"{sorted(known)}")
        if entry["label"] in labels:
            raise SpecError(f"model label {entry['label']!r} is used twice")
        labels.add(entry["label"])
    return spec


def expand(spec: dict) -> list[dict]:
    """Every run of the grid (model x lr x seed), each with its ``id`` and every training argument."""
    common = {k: spec[k] for k in ("steps", "batch_size", "warmup_steps", "min_lr_ratio", "weight_decay",
                                   "grad_clip", "num_train", "num_eval", "eval_every", "settings", "vocab_size",
                                   "precision", "device")}
    runs = []
    for entry in spec["models"]:
        model_spec = {k: v for k, v in entry.items() if k not in ("label", "tags")}
        for lr in spec["lrs"]:
            for seed in spec["seeds"]:
                runs.append({**common, "id": f"{entry['label']}-lr{lr:g}-s{seed}", "label": entry["label"],
                             "spec": model_spec, "lr": float(lr), "seed": seed})
    return runs


def run_dir(spec: dict, run: dict) -> Path:
    return Path(spec["out"]) / "runs" / run["id"]


def pending(spec: dict, runs: list[dict]) -> list[dict]:
    """The runs without a result yet."""
    return [r for r in runs if not (run_dir(spec, r) / RESULT_FILE).is_file()]


def execute(spec: dict, runs: list[dict], progress: bool = True, on_done=None) -> list[str]:
    """Run ``runs``: in this process when ``parallel`` is 1, else as that many worker processes at a time
    (``python -m ramnet.sweep_run``; each run's output goes to its ``log.txt``). ``on_done()`` is called after
    each run ends. Returns the ids that failed."""
    failed = []
    bar = tqdm(total=len(runs), disable=not progress, desc=f"sweep {spec['name']}", unit="run")

    def finished(run_id: str, ok: bool) -> None:
        if not ok:
            failed.append(run_id)
        bar.update(1)
        if on_done is not None:
            on_done()

    queue, active = list(runs), []
    for r in runs:
        run_dir(spec, r).mkdir(parents=True, exist_ok=True)
        (run_dir(spec, r) / RUN_FILE).write_text(json.dumps(r, indent=2))
    if spec["parallel"] == 1:
        for r in queue:
            try:
                write_json_atomic(run_dir(spec, r) / RESULT_FILE, run_one(r))
                finished(r["id"], True)
            except Exception as error:  # noqa: BLE001 - one failed run must not stop the sweep; recorded
                (run_dir(spec, r) / "error.txt").write_text(f"{type(error).__name__}: {error}\n")
                finished(r["id"], False)
        bar.close()
        return failed
    while queue or active:
        while queue and len(active) < spec["parallel"]:
            r = queue.pop(0)
            log = open(run_dir(spec, r) / "log.txt", "w")
            proc = subprocess.Popen([sys.executable, "-m", "ramnet.sweep_run", str(run_dir(spec, r))],
                                    stdout=log, stderr=subprocess.STDOUT)
            active.append((r, proc, log))
        time.sleep(0.2)
        for item in list(active):
            r, proc, log = item
            if proc.poll() is not None:
                log.close()
                active.remove(item)
                finished(r["id"], proc.returncode == 0)
    bar.close()
    return failed


def summarize(spec: dict, runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """``(every result, one row per model label at its best lr)``; the best lr maximises the mean accuracy over
    seeds. Runs without a result are left out."""
    results = [json.loads((run_dir(spec, r) / RESULT_FILE).read_text()) for r in runs
               if (run_dir(spec, r) / RESULT_FILE).is_file()]
    best = []
    tags = {entry["label"]: entry.get("tags", {}) for entry in spec["models"]}
    for label in dict.fromkeys(r["label"] for r in results):
        by_lr = {}
        for r in (r for r in results if r["label"] == label):
            by_lr.setdefault(r["lr"], []).append(r)
        lr, group = max(by_lr.items(), key=lambda item: sum(r["accuracy"] for r in item[1]) / len(item[1]))
        row = {k: group[0][k] for k in ROW_KEYS}
        row.update(label=label, lr=lr, accuracy=sum(r["accuracy"] for r in group) / len(group), seeds=len(group),
                   seconds=sum(r["seconds"] for r in group) / len(group),
                   lr_sweep={f"{k:g}": sum(r["accuracy"] for r in v) / len(v) for k, v in sorted(by_lr.items())},
                   tags=tags.get(label, {}))
        best.append(row)
    return results, best


def saved_results(spec: dict) -> dict[str, dict]:
    """The results held by ``OUT/mqar_sweep.json``, by run id (empty when there is none)."""
    summary = Path(spec["out"]) / "mqar_sweep.json"
    if not summary.is_file():
        return {}
    try:
        return {r["id"]: r for r in json.loads(summary.read_text())["runs"]}
    except (ValueError, KeyError, TypeError) as error:
        raise SpecError(f"{summary} is not a sweep summary written by ramnet sweep: {error}") from error


def write_summaries(spec: dict, runs: list[dict]) -> list[dict]:
    """``OUT/mqar_sweep.json`` (every result so far) and ``OUT/mqar.json`` (best lr per model); returns the rows."""
    results, best = summarize(spec, runs)
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "mqar_sweep.json", {"spec": spec, "runs": results})
    write_json_atomic(out / "mqar.json", best)
    return best


def restore_results(spec: dict, runs: list[dict]) -> int:
    """Write back the ``result.json`` of every run of ``runs`` that ``OUT/mqar_sweep.json`` holds but whose run
    directory is gone: a sweep continued on another machine needs only that one file. Returns how many."""
    saved = saved_results(spec)
    restored = 0
    for r in runs:
        path = run_dir(spec, r) / RESULT_FILE
        if r["id"] in saved and not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, saved[r["id"]])
            restored += 1
    return restored


def sweep(spec: dict, *, dry_run: bool = False, progress: bool = True) -> dict:
    """Run what is missing of ``spec`` and write the summaries. Returns counts and the summary rows."""
    runs = expand(spec)
    if not dry_run:
        restore_results(spec, runs)
    done_before = set(saved_results(spec)) if dry_run else set()
    todo = [r for r in pending(spec, runs) if r["id"] not in done_before]
    if dry_run:
        return {"runs": len(runs), "pending": [r["id"] for r in todo], "done": len(runs) - len(todo)}
    # the summaries are rewritten after every run: a sweep stopped by a time limit keeps what finished
    failed = execute(spec, todo, progress, on_done=lambda: write_summaries(spec, runs)) if todo else []
    best = write_summaries(spec, runs)
    return {"runs": len(runs), "ran": len(todo) - len(failed), "skipped": len(runs) - len(todo),
            "failed": failed, "best": best}
