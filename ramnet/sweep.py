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

The runs go lr by lr; ``--only PATTERNS`` (``sweep(..., only=...)``: comma-separated fnmatch patterns on run ids
such as ``ramnet-8k-lr0.001-s0``) runs only the pending runs that match, in the order of the patterns (every
match of the first, in grid order, then the second's...): the command line sets the priority of a limited
session. A pattern that matches no run of the spec is an error; the summaries still cover the whole spec.
``--stop-starting-after SECONDS`` starts no run after that time, so a time budget cuts no run that could not
have finished in it (the runs not started stay pending). An entry with ``save_model: true`` (RAM-Net) keeps
its trained model in ``runs/<id>/model`` (for ``ramnet plot --slots``).

A run that fails with CUDA out of memory (a neighbour run may hold the memory) goes back to the end of the
queue once: its first attempt's ``error.txt`` (and ``log.txt``) become ``error_oom_1.txt`` (``log_oom_1.txt``),
and in worker mode it starts again only while at most half of ``parallel`` (rounded up) runs are active. That
counts this sweep's workers only: other processes on the card (another sweep) are not seen.

Every run rewrites ``progress.json`` (its history so far) in its directory after each evaluation. The
``unfinished`` list of ``OUT/mqar_sweep.json`` holds those records for the runs without a result (in flight
when the summary was written, cut off by a time budget, or failed: then with their ``error``). They are not
results: they never enter ``runs``, ``mqar.json`` or the results restored on another machine.
"""
from __future__ import annotations

import fnmatch
import gc
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .sweep_run import (ERROR_FILE, LOG_FILE, MODEL_DIR, PROGRESS_FILE, RESULT_FILE, RUN_FILE, run as run_one,
                        write_json_atomic)
from .sweep_spec import SpecError, check_spec, expand, load_spec  # noqa: F401 (the sweep's public names)
from .sweep_workers import sigint_ignored, stop_workers

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


def only_patterns(only) -> list[str]:
    """``--only``'s patterns: a comma-separated string or a list of fnmatch patterns (blank ones dropped)."""
    items = only.split(",") if isinstance(only, str) else list(only)
    if not all(isinstance(p, str) for p in items) or not any(p.strip() for p in items):
        raise SpecError(f"--only takes comma-separated fnmatch patterns on run ids, got {only!r}")
    return [p.strip() for p in items if p.strip()]


def select_runs(runs: list[dict], only) -> list[dict]:
    """The runs matching ``only`` (see ``only_patterns``) in the order of the patterns: every run matching the
    first pattern (in the order of ``runs``), then those matching the second, and so on; each run once. A
    pattern that matches none of ``runs`` is a ``SpecError`` naming it."""
    chosen = {}
    for pattern in only_patterns(only):
        matched = [r for r in runs if fnmatch.fnmatchcase(r["id"], pattern)]
        if not matched:
            example = f" (ids look like {runs[0]['id']})" if runs else ""
            raise SpecError(f"--only: pattern {pattern!r} matches no run of the spec{example}")
        chosen.update((r["id"], r) for r in matched if r["id"] not in chosen)
    return list(chosen.values())


def is_oom_text(text: str) -> bool:
    """Whether a run's ``error.txt`` records a CUDA out-of-memory failure."""
    return text.startswith("OutOfMemoryError") or "CUDA out of memory" in text or \
        "CUDA error: out of memory" in text  # the latter: no room for a CUDA context or a cuBLAS workspace


def is_oom_error(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or is_oom_text(f"{type(error).__name__}: {error}")


def retry_room(parallel: int) -> int:
    """How many runs may be active, the retried one included, when a run retried after running out of
    memory starts: half of ``parallel``, rounded up, at least 1."""
    return max(1, (parallel + 1) // 2)


def next_to_start(queue: list[tuple[dict, int]], active: list, parallel: int) -> int | None:
    """The index in ``queue`` (``(run, attempt)`` pairs, attempt 2 for an out-of-memory retry) of the run to
    start now, or None. Only the head of the queue starts (nothing overtakes, so the order is the priority): a
    first attempt while fewer than ``parallel`` runs are active, a retry while fewer than ``retry_room``."""
    if not queue or len(active) >= parallel:
        return None
    _, attempt = queue[0]
    return 0 if attempt == 1 or len(active) < retry_room(parallel) else None


def _retry_after_oom(spec: dict, run: dict) -> None:
    """Keep the first attempt's record of a run that ran out of memory, and clear the way for the second."""
    path = run_dir(spec, run)
    for name, kept in ((ERROR_FILE, "error_oom_1.txt"), (LOG_FILE, "log_oom_1.txt")):
        if (path / name).exists():
            os.replace(path / name, path / kept)
    (path / PROGRESS_FILE).unlink(missing_ok=True)


def worker_env(parallel: int, environ=None, cpu_count=None) -> dict:
    """The environment of the worker processes: each gets ``cores // parallel`` (at least 1) intra-op threads
    through ``OMP_NUM_THREADS``, unless the caller set it. Left to torch's default, every worker starts a pool
    of all the cores, and ``parallel`` of them oversubscribe the machine."""
    env = dict(os.environ if environ is None else environ)
    cores = (os.cpu_count() or 1) if cpu_count is None else cpu_count
    env.setdefault("OMP_NUM_THREADS", str(max(1, cores // parallel)))
    return env


def execute(spec: dict, runs: list[dict], progress: bool = True, on_done=None, start_until=None) -> list[str]:
    """Run ``runs`` in their order: in this process when ``parallel`` is 1, else as that many worker processes at
    a time (``python -m ramnet.sweep_run``; each run's output goes to its ``log.txt``). A failed run leaves a
    one-line ``error.txt`` either way; one that ran out of CUDA memory is retried once at the end of the queue
    (see ``next_to_start``). ``on_done()`` is called after each run ends (for good). Returns the ids that
    failed. Interrupted (a time budget's SIGINT), the worker mode interrupts its workers and waits for them.
    ``start_until`` (a ``time.monotonic()`` value) stops starting runs after it; those left stay pending."""
    may_start = lambda: start_until is None or time.monotonic() < start_until
    failed = []
    bar = tqdm(total=len(runs), disable=not progress, desc=f"sweep {spec['name']}", unit="run")

    def finished(run_id: str, ok: bool) -> None:
        if not ok:
            failed.append(run_id)
        bar.update(1)
        if on_done is not None:
            on_done()

    def retry(r: dict) -> None:
        _retry_after_oom(spec, r)
        queue.append((r, 2))
        tqdm.write(f"sweep {spec['name']}: {r['id']} ran out of CUDA memory; retrying it once at the end of the "
                   f"queue (first attempt: error_oom_1.txt)", file=sys.stderr)

    for r in runs:
        path = run_dir(spec, r)
        path.mkdir(parents=True, exist_ok=True)
        for stale in (RESULT_FILE, ERROR_FILE, LOG_FILE, PROGRESS_FILE):  # other arguments, an old failure
            (path / stale).unlink(missing_ok=True)
        for stale in [*path.glob("error_oom_*.txt"), *path.glob("log_oom_*.txt")]:
            stale.unlink()
        shutil.rmtree(path / MODEL_DIR, ignore_errors=True)  # a model saved by a run of other arguments
        (path / RUN_FILE).write_text(json.dumps(r, indent=2))
    queue = [(r, 1) for r in runs]
    if spec["parallel"] == 1:
        while queue and may_start():
            r, attempt = queue.pop(0)
            try:
                result = run_one(r, out_dir=run_dir(spec, r))
            except Exception as error:  # noqa: BLE001 - one failed run must not stop the sweep; recorded
                (run_dir(spec, r) / ERROR_FILE).write_text(f"{type(error).__name__}: {error}\n")
                result, oom = None, is_oom_error(error)
            else:
                write_json_atomic(run_dir(spec, r) / RESULT_FILE, result)
            if result is not None:
                finished(r["id"], True)
                continue
            if oom:  # out of the except block: its traceback no longer holds the run's tensors
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            if oom and attempt == 1:
                retry(r)
            else:
                finished(r["id"], False)
        bar.close()
        return failed
    active = []
    env = worker_env(spec["parallel"])
    try:
        while active or (queue and may_start()):
            while may_start() and (index := next_to_start(queue, active, spec["parallel"])) is not None:
                r, attempt = queue.pop(index)
                log = open(run_dir(spec, r) / LOG_FILE, "w")
                proc = subprocess.Popen([sys.executable, "-m", "ramnet.sweep_run", str(run_dir(spec, r))],
                                        stdout=log, stderr=subprocess.STDOUT, env=env)
                active.append((r, attempt, proc, log))
            time.sleep(0.2)
            for item in list(active):
                r, attempt, proc, log = item
                if proc.poll() is not None:
                    log.close()
                    active.remove(item)
                    if proc.returncode != 0 and attempt == 1 and _error_is_oom(spec, r):
                        retry(r)
                    else:
                        finished(r["id"], proc.returncode == 0)
    except KeyboardInterrupt:
        with sigint_ignored():
            stop_workers([(proc, log) for _, _, proc, log in active])
        raise
    finally:
        bar.close()
    return failed


def _error_is_oom(spec: dict, run: dict) -> bool:
    try:
        return is_oom_text((run_dir(spec, run) / ERROR_FILE).read_text())
    except OSError:
        return False


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
    """The results held by ``OUT/mqar_sweep.json``, by run id (empty when there is none). Only its ``runs``:
    the ``unfinished`` progress records are not results."""
    summary = Path(spec["out"]) / SUMMARY
    if not summary.is_file():
        return {}
    try:
        saved = {r["id"]: r for r in json.loads(summary.read_text())["runs"]}
    except (ValueError, KeyError, TypeError) as error:
        raise SpecError(f"{summary} is not a sweep summary written by ramnet sweep: {error}") from None
    return saved


def _progress(spec: dict, run: dict) -> dict | None:
    """This run's ``progress.json`` (of its own arguments), with its ``error`` when it failed, or None."""
    path = run_dir(spec, run)
    try:
        record = json.loads((path / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != run["fingerprint"]:
        return None
    try:
        record["error"] = (path / ERROR_FILE).read_text().strip().splitlines()[0]
    except (OSError, IndexError):
        pass
    return record


def unfinished(spec: dict, runs: list[dict]) -> list[dict]:
    """The progress records of the runs of ``runs`` without a result: in flight, cut off or failed. A run with
    no ``progress.json`` here keeps the record ``OUT/mqar_sweep.json`` holds for it (from another machine)."""
    saved = {}
    summary = Path(spec["out"]) / SUMMARY
    if summary.is_file():
        try:
            listed = json.loads(summary.read_text()).get("unfinished", [])
            saved = {r["id"]: r for r in listed if isinstance(r, dict) and "id" in r}
        except (ValueError, AttributeError, TypeError):
            saved = {}
    records = []
    for r in runs:
        if _result(spec, r) is not None:
            continue
        record = _progress(spec, r)
        if record is None and saved.get(r["id"], {}).get("fingerprint") == r["fingerprint"]:
            record = saved[r["id"]]
        if record is not None:
            records.append(record)
    return records


def write_summaries(spec: dict, runs: list[dict]) -> list[dict]:
    """``OUT/mqar_sweep.json`` (every result so far, and the ``unfinished`` runs' progress) and ``OUT/mqar.json``
    (best lr per model); returns the rows. Results already in the file whose runs are not in this grid (a wider
    spec before) are kept."""
    results, best = summarize(spec, runs)
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    ids = {r["id"] for r in runs}
    kept = [r for run_id, r in saved_results(spec).items() if run_id not in ids]
    write_json_atomic(out / SUMMARY, {"spec": spec, "runs": results + kept, "unfinished": unfinished(spec, runs)})
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


def sweep(spec: dict, *, dry_run: bool = False, progress: bool = True, only=None,
          stop_starting_after: float | None = None) -> dict:
    """Run what is missing of ``spec`` and write the summaries. Returns counts and the summary rows. ``only``
    (comma-separated fnmatch patterns on run ids, or a list of them) runs only the pending runs that match, in
    the order of the patterns (``select_runs``); ``left`` counts the pending runs it leaves out.
    ``stop_starting_after`` (seconds): no run starts later than that after the call, so that a time budget
    does not cut runs that cannot finish in it; those not started stay pending (``not_started``)."""
    if stop_starting_after is not None and not stop_starting_after >= 0:
        raise ValueError(f"--stop-starting-after must be >= 0 seconds, got {stop_starting_after}")
    start_until = None if stop_starting_after is None else time.monotonic() + stop_starting_after
    runs = expand(spec)
    chosen = runs if only is None else select_runs(runs, only)  # a pattern matching nothing: before any work
    if dry_run:
        saved = saved_results(spec)
        todo = [r for r in pending(spec, runs) if saved.get(r["id"], {}).get("fingerprint") != r["fingerprint"]]
        ids = {r["id"] for r in todo}
        selected = [r for r in chosen if r["id"] in ids]
        return {"runs": len(runs), "pending": [r["id"] for r in selected], "done": len(runs) - len(todo),
                "left": len(todo) - len(selected),
                # the pending runs whose entry sets its own step budget (shown beside their ids)
                "own_steps": {r["id"]: r["steps"] for r in selected if r["steps"] != spec["steps"]}}
    restore_results(spec, runs)
    ids = {r["id"] for r in pending(spec, runs)}
    todo = [r for r in chosen if r["id"] in ids]
    # the summaries are rewritten after every run: a sweep stopped by a time limit keeps what finished, and on
    # the interrupt itself, with how far the runs in flight got (``unfinished``)
    try:
        failed = execute(spec, todo, progress, on_done=lambda: write_summaries(spec, runs),
                         start_until=start_until) if todo else []
    except KeyboardInterrupt:
        with sigint_ignored():  # a second SIGINT (timeout signals the process group too) must not cut it short
            write_summaries(spec, runs)
        raise
    best = write_summaries(spec, runs)
    not_started = sum(1 for r in todo if r["id"] not in failed and _result(spec, r) is None)
    return {"runs": len(runs), "ran": len(todo) - len(failed) - not_started, "skipped": len(runs) - len(ids),
            "left": len(ids) - len(todo), "not_started": not_started, "failed": failed, "best": best}
