"""One run of an MQAR sweep: a model (RAM-Net or a baseline) trained on the protocol's settings
(``ramnet.data.mqar_protocol``) and scored on each. ``python -m ramnet.sweep_run RUN_DIR`` runs the
``run.json`` in ``RUN_DIR`` and writes ``result.json`` there (atomically: a result file is always whole), once
when training ends and again with the final model's error profile (``ramnet.mqar_errors``). After every
evaluation it rewrites ``progress.json`` there (the history so far): a run cut off by a time budget leaves its
curve up to its last evaluation."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .baselines import build_model
from .checkpoint import save_model_atomic
from .data.mqar_protocol import ProtocolData, protocol_settings, setting_name, setting_schedule
from .mqar_errors import final_profile
from .precision import autocast, grad_scaler, resolve_device
from .train import TrainArgs, evaluate, labelled_logits, make_optimizer, optimizer_step

RUN_FILE, RESULT_FILE, ERROR_FILE, LOG_FILE = "run.json", "result.json", "error.txt", "log.txt"
PROGRESS_FILE = "progress.json"
MODEL_DIR = "model"  # the trained model of an entry with save_model: true
# TEST HOOK, for the sweep's tests only: a comma-separated list of run ids that raise a simulated CUDA
# out-of-memory error on their first attempt (while their run directory holds no error_oom_1.txt yet).
TEST_OOM_ENV = "RAMNET_SWEEP_TEST_OOM"


def evaluate_protocol(model, data: ProtocolData, precision: str) -> dict[str, float]:
    """Accuracy per setting name."""
    return {setting_name(s): evaluate(model, x, y, precision=precision) for s, (x, y) in zip(data.settings,
                                                                                           data.eval)}


def _test_hook_oom(run: dict, out_dir: Path | None) -> None:
    """TEST HOOK (``RAMNET_SWEEP_TEST_OOM``): simulate a CUDA out-of-memory failure on a run's first attempt."""
    ids = os.environ.get(TEST_OOM_ENV, "")
    if out_dir is not None and run["id"] in ids.split(",") and not (Path(out_dir) / "error_oom_1.txt").exists():
        raise torch.OutOfMemoryError(f"CUDA out of memory (simulated by the test hook {TEST_OOM_ENV})")


def peak_mib(device: torch.device | str) -> float | None:
    """The CUDA memory this process has reserved at its peak, in MiB (None off CUDA). A sweep's worker runs one
    run per process, so it is that run's footprint on the card: what decides how many runs fit side by side."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_reserved(device) / 2**20, 1)


def progress_record(run: dict, state_size: int, history: list[dict], peak: float | None = None) -> dict:
    """What ``progress.json`` holds: the run's identity and its history so far (not a result)."""
    last = history[-1] if history else {}
    return {"id": run["id"], "fingerprint": run["fingerprint"], "label": run["label"], "model": run["spec"]["model"],
            "lr": run["lr"], "seed": run["seed"], "state_size": state_size, "step": last.get("step", 0),
            "total_steps": run["steps"], "accuracy": last.get("accuracy"), "seconds": last.get("seconds", 0.0),
            "peak_mib": peak, "history": history}


def protocol_step(model, inputs, positions, targets, opt, schedule, scaler, args: TrainArgs) -> torch.Tensor:
    """One training step of a sweep run on a batch of one setting (``inputs [B, T]``, the labelled ``positions``
    and their ``targets [B, N]``): the logits at the labelled positions under ``args.precision``, cross-entropy,
    backward, clipping to ``args.grad_clip`` and one optimizer and schedule step. Returns the loss (not synced).
    ``benchmarks/bench_mqar_step.py`` times this same step."""
    device = inputs.device
    with autocast(device, args.precision):
        logits = labelled_logits(model, inputs, positions)
    loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
    optimizer_step(loss, model, opt, schedule, scaler, args.grad_clip)
    return loss


def run(run: dict, progress: bool = False, out_dir: Path | None = None) -> dict:
    """Train and score one sweep run (``run``: an entry of ``ramnet.sweep.expand``). Returns the result dict.
    With ``out_dir`` (its run directory), ``progress.json`` there is rewritten after every evaluation."""
    args = TrainArgs(steps=run["steps"], batch_size=run["batch_size"], lr=run["lr"], seed=run["seed"],
                     warmup_steps=run["warmup_steps"], min_lr_ratio=run["min_lr_ratio"],
                     weight_decay=run["weight_decay"], grad_clip=run["grad_clip"], num_train=run["num_train"],
                     num_eval=run["num_eval"], eval_every=run["eval_every"], device=run["device"],
                     precision=run["precision"], alpha_lr_mult=run.get("alpha_lr_mult", 1.0))
    device = resolve_device(args.device)
    settings = protocol_settings(run["settings"], run["vocab_size"])
    max_len = max(s.seq_len for s in settings)
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(args.seed)
        model, state_size, config = build_model(run["spec"], run["vocab_size"], max_len)
    if out_dir is not None:  # a record from the start: a run that fails before its first evaluation is listed too
        write_json_atomic(Path(out_dir) / PROGRESS_FILE, progress_record(run, state_size, []))
    _test_hook_oom(run, out_dir)
    model.to(device).train()
    data = ProtocolData.make(settings, args.num_train, args.num_eval, args.seed).to(device)
    opt, schedule = make_optimizer(model, args)
    scaler = grad_scaler(device, args.precision)
    gen = torch.Generator().manual_seed(args.seed)
    schedule_of_settings = setting_schedule(len(settings), args.steps, gen)
    history, start = [], time.perf_counter()
    # the logged loss is the mean over the steps since the last entry: one batch's loss depends on its setting
    loss_sum, loss_steps = torch.zeros((), device=device), 0
    bar = tqdm(range(args.steps), disable=not progress, desc=run["id"])
    with torch.autocast(device.type, enabled=False):
        for step in bar:
            x, pos, targets = data.train[schedule_of_settings[step]]
            idx = torch.randint(0, x.shape[0], (args.batch_size,), generator=gen).to(device)
            loss = protocol_step(model, x[idx], pos[idx], targets[idx], opt, schedule, scaler, args)
            loss_sum, loss_steps = loss_sum + loss.detach(), loss_steps + 1
            if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
                loss_value = loss_sum.item() / loss_steps
                loss_sum, loss_steps = torch.zeros((), device=device), 0
                accuracies = evaluate_protocol(model, data, args.precision) if math.isfinite(loss_value) else {}
                mean = sum(accuracies.values()) / len(accuracies) if accuracies else 0.0
                history.append({"step": step + 1, "loss": loss_value, "accuracy": mean, "accuracies": accuracies,
                                "seconds": time.perf_counter() - start})
                bar.set_postfix(loss=f"{loss_value:.3f}", acc=f"{mean:.3f}")
                if out_dir is not None:
                    write_json_atomic(Path(out_dir) / PROGRESS_FILE,
                                      progress_record(run, state_size, history, peak_mib(device)))
                if not math.isfinite(loss_value):
                    break  # diverged: recorded with accuracy 0, the sweep moves on
    if run.get("save_model") and out_dir is not None:
        save_model_atomic(model, Path(out_dir) / MODEL_DIR)
    last = history[-1]
    diverged = not math.isfinite(last["loss"])
    spec = run["spec"]
    result = {"id": run["id"], "fingerprint": run["fingerprint"], "label": run["label"], "model": spec["model"],
              "state_size": state_size,
              "lr": args.lr, "seed": args.seed, "steps": last["step"], "accuracy": last["accuracy"],
              "accuracies": last["accuracies"], "seconds": time.perf_counter() - start, "config": config,
              "short_conv": bool(config.get("short_conv", False)),
              "device": str(device), "precision": args.precision, "diverged": diverged,
              "peak_mib": peak_mib(device), "history": history, "final_profile": None,
              **({"alpha_lr_mult": args.alpha_lr_mult} if "alpha_lr_mult" in run else {})}
    if diverged:
        return result
    # Where the final model's errors sit, and its fp32 score (ramnet.mqar_errors; not in the fingerprint: training
    # is unchanged). A diagnostic must never cost a trained run its result: the result is written first, so a
    # deadline's interrupt during the profile leaves it whole (with final_profile null), and a profile that fails
    # (an fla kernel refusing fp32, say) is recorded as its error, whatever it is
    if out_dir is not None:
        write_json_atomic(Path(out_dir) / RESULT_FILE, result)
    profile_start = time.perf_counter()
    try:
        profile = final_profile(model, data, args.precision)
    except Exception as error:  # noqa: BLE001
        profile = {"error": f"{type(error).__name__}: {error}"[:500]}
    # its own time, and the run's peak memory with the profile's evaluations counted (the run's own is above)
    profile.update(seconds=round(time.perf_counter() - profile_start, 1), peak_mib=peak_mib(device))
    return {**result, "final_profile": profile}


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m ramnet.sweep_run RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[0])
    spec = json.loads((run_dir / RUN_FILE).read_text())
    try:
        result = run(spec, progress=False, out_dir=run_dir)
    except Exception as error:  # the same one-line record as an in-process run's (the traceback is in the log)
        (run_dir / ERROR_FILE).write_text(f"{type(error).__name__}: {error}\n")
        raise
    write_json_atomic(run_dir / RESULT_FILE, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
