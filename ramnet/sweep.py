"""``ramnet sweep SPEC``: a grid of MQAR runs (model x learning rate x seed) on the protocol of
``ramnet.data.mqar_protocol``, several at once on one GPU, resumable, with Zoology's best-learning-rate summary.

A spec (YAML or JSON; ``ramnet.sweep_spec`` checks it and lists the defaults) names the models and the grid::

    name: mqar-main
    out: runs/mqar-main
    lrs: [3.0e-4, 1.0e-3, 3.0e-3]
    parallel: 4
    models:
      - {label: ramnet-s17k, model: ramnet, preset: mqar-small, overrides: {num_factors: 4, d_v: 16}}
      - {label: attention, model: attention, d_model: 128, n_layers: 2, n_heads: 2}
      - {label: ramnet-U2, model: ramnet, overrides: {num_factors: 2, d_p: 32}, tags: {ablation: U, U: 2}}

Each run writes ``OUT/runs/<id>/result.json`` with the fingerprint of its arguments. A run whose result has its
fingerprint is skipped, so the same command continues a sweep across sessions; a result of other arguments (the
spec changed) is run again. ``OUT/mqar_sweep.json`` holds every result (also those of runs a narrower spec no
longer lists) and alone is enough to continue on another machine: its results are written back into their run
directories first. ``OUT/mqar.json`` holds one row per model at its best learning rate (mean accuracy over
seeds), with the entry's ``tags`` (for ablations).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from .sweep_run import ERROR_FILE, LOG_FILE, RESULT_FILE, RUN_FILE, run as run_one, write_json_atomic
from .sweep_spec import SpecError, check_spec, expand, load_spec  # noqa: F401 (the sweep's public names)

ROW_KEYS = ("model", "state_size", "accuracy", "lr", "config", "short_conv", "steps", "seconds")
SUMMARY, BEST = "mqar_sweep.json", "mqar.json"


def run_dir(spec: dict, run: dict) -> Path:
    return Path(spec["out"]) / "runs" / run["id"]


def _result(spec: dict, run: dict) -> dict | None:
    """This run's result, or None when it has none, an unreadable one, or one of other arguments (fingerprint)."""
    try:
        result = json.loads((run_dir(spec, run) / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("fingerprint") == run["fingerprint"] else None


def pending(spec: dict, runs: list[dict]) -> list[dict]:
    """The runs without a result of their own arguments yet."""
    return [r for r in runs if _result(spec, r) is None]


def worker_env(parallel: int, environ=None, cpu_count=None) -> dict:
    """The environment of the worker processes: each gets ``cores // parallel`` (at least 1) intra-op threads
    through ``OMP_NUM_THREADS``, unless the caller set it. Left to torch's default, every worker starts a pool
    of all the cores, and ``parallel`` of them oversubscribe the machine."""
    env = dict(os.environ if environ is None else environ)
    cores = (os.cpu_count() or 1) if cpu_count is None else cpu_count
    env.setdefault("OMP_NUM_THREADS", str(max(1, cores // parallel)))
    return env


def execute(spec: dict, runs: list[dict], progress: bool = True, on_done=None) -> list[str]:
    """Run ``runs``: in this process when ``parallel`` is 1, else as that many worker processes at a time
    (``python -m ramnet.sweep_run``; each run's output goes to its ``log.txt``). A failed run leaves a one-line
    ``error.txt`` either way. ``on_done()`` is called after each run ends. Returns the ids that failed."""
    failed = []
    bar = tqdm(total=len(runs), disable=not progress, desc=f"sweep {spec['name']}", unit="run")

    def finished(run_id: str, ok: bool) -> None:
        if not ok:
            failed.append(run_id)
        bar.update(1)
        if on_done is not None:
            on_done()

    for r in runs:
        run_dir(spec, r).mkdir(parents=True, exist_ok=True)
        for stale in (RESULT_FILE, ERROR_FILE, LOG_FILE):  # a result of other arguments, an old failure
            (run_dir(spec, r) / stale).unlink(missing_ok=True)
        (run_dir(spec, r) / RUN_FILE).write_text(json.dumps(r, indent=2))
    if spec["parallel"] == 1:
        for r in runs:
            try:
                write_json_atomic(run_dir(spec, r) / RESULT_FILE, run_one(r))
            except Exception as error:  # noqa: BLE001 - one failed run must not stop the sweep; recorded
                (run_dir(spec, r) / ERROR_FILE).write_text(f"{type(error).__name__}: {error}\n")
                finished(r["id"], False)
            else:
                finished(r["id"], True)
        bar.close()
        return failed
    queue, active = list(runs), []
    env = worker_env(spec["parallel"])
    while queue or active:
        while queue and len(active) < spec["parallel"]:
            r = queue.pop(0)
            log = open(run_dir(spec, r) / LOG_FILE, "w")
            proc = subprocess.Popen([sys.executable, "-m", "ramnet.sweep_run", str(run_dir(spec, r))],
                                    stdout=log, stderr=subprocess.STDOUT, env=env)
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
    """``(every result of runs, one row per model label at its best lr)``. The best lr maximises the mean
    accuracy over seeds; an lr whose seeds have not all finished is ranked only when no lr has all of them
    (``complete`` in the row says which). Runs without a result of their own arguments are left out."""
    results = [res for res in (_result(spec, r) for r in runs) if res is not None]
    tags = {entry["label"]: entry.get("tags", {}) for entry in spec["models"]}
    mean = lambda group: sum(r["accuracy"] for r in group) / len(group)
    best = []
    for label in dict.fromkeys(r["label"] for r in results):
        by_lr = {}
        for r in (r for r in results if r["label"] == label):
            by_lr.setdefault(r["lr"], []).append(r)
        complete = {lr: group for lr, group in by_lr.items() if len(group) == len(spec["seeds"])}
        lr, group = max((complete or by_lr).items(), key=lambda item: mean(item[1]))
        row = {k: group[0][k] for k in ROW_KEYS}
        row.update(label=label, lr=lr, accuracy=mean(group), seeds=len(group),
                   complete=len(group) == len(spec["seeds"]), seconds=sum(r["seconds"] for r in group) / len(group),
                   lr_sweep={repr(k): mean(v) for k, v in sorted(by_lr.items())}, tags=tags.get(label, {}))
        best.append(row)
    return results, best


def saved_results(spec: dict) -> dict[str, dict]:
    """The results held by ``OUT/mqar_sweep.json``, by run id (empty when there is none)."""
    summary = Path(spec["out"]) / SUMMARY
    if not summary.is_file():
        return {}
    try:
        saved = {r["id"]: r for r in json.loads(summary.read_text())["runs"]}
    except (ValueError, KeyError, TypeError) as error:
        raise SpecError(f"{summary} is not a sweep summary written by ramnet sweep: {error}") from None
    return saved


def write_summaries(spec: dict, runs: list[dict]) -> list[dict]:
    """``OUT/mqar_sweep.json`` (every result so far) and ``OUT/mqar.json`` (best lr per model); returns the rows.
    Results already in the file whose runs are not in this grid (a wider spec before) are kept."""
    results, best = summarize(spec, runs)
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    ids = {r["id"] for r in runs}
    kept = [r for run_id, r in saved_results(spec).items() if run_id not in ids]
    write_json_atomic(out / SUMMARY, {"spec": spec, "runs": results + kept})
    write_json_atomic(out / BEST, best)
    return best


def restore_results(spec: dict, runs: list[dict]) -> int:
    """Write back the ``result.json`` of every run of ``runs`` that ``OUT/mqar_sweep.json`` holds with the run's
    fingerprint but whose run directory has none: a sweep continued on another machine needs only that file."""
    saved = saved_results(spec)
    restored = 0
    for r in runs:
        path = run_dir(spec, r) / RESULT_FILE
        if saved.get(r["id"], {}).get("fingerprint") == r["fingerprint"] and _result(spec, r) is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, saved[r["id"]])
            restored += 1
    return restored


def sweep(spec: dict, *, dry_run: bool = False, progress: bool = True) -> dict:
    """Run what is missing of ``spec`` and write the summaries. Returns counts and the summary rows."""
    runs = expand(spec)
    if dry_run:
        saved = saved_results(spec)
        todo = [r for r in pending(spec, runs) if saved.get(r["id"], {}).get("fingerprint") != r["fingerprint"]]
        return {"runs": len(runs), "pending": [r["id"] for r in todo], "done": len(runs) - len(todo)}
    restore_results(spec, runs)
    todo = pending(spec, runs)
    # the summaries are rewritten after every run: a sweep stopped by a time limit keeps what finished
    failed = execute(spec, todo, progress, on_done=lambda: write_summaries(spec, runs)) if todo else []
    best = write_summaries(spec, runs)
    return {"runs": len(runs), "ran": len(todo) - len(failed), "skipped": len(runs) - len(todo),
            "failed": failed, "best": best}
