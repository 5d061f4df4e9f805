"""The time of one MQAR training step for models of a sweep spec, side by side in one process: models of equal
state can differ a lot in cost (4 heads of K=16 write 4x the slots per token of 2 heads of K=8).

    python benchmarks/bench_mqar_step.py --labels ramnet-16k ramnet-16k-h4-m64-k16 deltanet-16k
    python benchmarks/bench_mqar_step.py --spec benchmarks/mqar/main.yaml --labels ... --settings 64,256 256,1024

Each step is the sweep's (``ramnet.sweep_run``): a batch of one MQAR setting (``--settings NUM_KV_PAIRS,SEQ_LEN``,
default Zoology's (64, 256) and (256, 1024)), the logits at the labelled positions under the spec's precision,
cross-entropy, backward, gradient clipping and AdamW. Prints a table (median ms per step; ``ratio``: against the
first label that ran, at the same setting) and writes ``results/mqar_step.json`` (``--name``). A model that cannot be built or run here
(fla missing, out of memory) gets a row with its error, and the others still run. ``--device cpu`` is for a smoke
test only: its times are not the card's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_ms, cpu_median_ms, save_rows, table  # noqa: E402

from ramnet.baselines import build_model  # noqa: E402
from ramnet.data.mqar_protocol import ProtocolData, protocol_settings, setting_name  # noqa: E402
from ramnet.precision import autocast, grad_scaler  # noqa: E402
from ramnet.sweep_spec import SpecError, load_spec, model_spec  # noqa: E402
from ramnet.train import TrainArgs, labelled_logits, make_optimizer, optimizer_step  # noqa: E402

MAIN_SPEC = Path(__file__).parent / "mqar" / "main.yaml"


def setting_pair(text: str) -> tuple[int, int]:
    try:
        pairs, length = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a setting is NUM_KV_PAIRS,SEQ_LEN (e.g. 64,256), got {text!r}") from None
    return pairs, length


def step_ms(entry: dict, spec: dict, settings, device: torch.device, batch_size: int, reps: int) -> list[float]:
    """Median ms of one training step of ``entry``'s model at each of ``settings``; its state size first."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(0)
        model, state_size, _ = build_model(model_spec(entry), spec["vocab_size"], max(s.seq_len for s in settings))
    model.to(device).train()
    args = TrainArgs(steps=10**6, batch_size=batch_size, lr=1e-3, device=device.type, precision=spec["precision"],
                     warmup_steps=spec["warmup_steps"], min_lr_ratio=spec["min_lr_ratio"],
                     weight_decay=spec["weight_decay"], grad_clip=spec["grad_clip"])
    opt, schedule = make_optimizer(model, args)
    scaler = grad_scaler(device, spec["precision"])
    data = ProtocolData.make(settings, batch_size, 1, seed=0).to(device)
    times = []
    for x, pos, targets in data.train:
        def step():
            with autocast(device, spec["precision"]):
                logits = labelled_logits(model, x, pos)
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
            optimizer_step(loss, model, opt, schedule, scaler, spec["grad_clip"])
        times.append(bench_ms(step, warmup=5, rep=max(reps, 1) * 10) if device.type == "cuda"
                     else cpu_median_ms(step, reps=reps, warmup=1))
    return [state_size, *times]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(MAIN_SPEC), help="a sweep spec (default: benchmarks/mqar/main.yaml)")
    parser.add_argument("--labels", nargs="+", required=True, help="the spec's model labels; the first is the base")
    parser.add_argument("--settings", nargs="+", type=setting_pair, default=[(64, 256), (256, 1024)],
                        metavar="PAIRS,LEN", help="MQAR settings to time (default: 64,256 256,1024)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the spec's batch_size")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=None,
                        help="default: the spec's precision")
    parser.add_argument("--reps", type=int, default=5, help="CPU: timed steps per median (CUDA: 10x as many)")
    parser.add_argument("--name", default="mqar_step", help="the results file: results/NAME.json")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
    except SpecError as err:
        parser.error(str(err))
    entries = {e["label"]: e for e in spec["models"]}
    unknown = [label for label in args.labels if label not in entries]
    if unknown:
        parser.error(f"--labels: {', '.join(unknown)} not in {args.spec} (its labels: {', '.join(entries)})")
    batch_size = spec["batch_size"] if args.batch_size is None else args.batch_size
    if not args.name or not all(c.isalnum() or c in "_-." for c in args.name):
        parser.error(f"--name: letters, digits, '_', '-' and '.' only, got {args.name!r}")
    if batch_size < 1 or args.reps < 1:
        parser.error(f"--batch-size and --reps must be >= 1, got {batch_size} and {args.reps}")
    try:
        settings = protocol_settings(args.settings, spec["vocab_size"])
    except ValueError as err:
        parser.error(f"--settings: {err}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU on this machine (use --device cpu for a smoke test)")
    device = torch.device(args.device)
    spec = {**spec, "precision": args.precision or spec["precision"]}
    rows, base = [], {}
    for label in args.labels:
        try:
            state_size, *times = step_ms(entries[label], spec, settings, device, batch_size, args.reps)
        except Exception as err:  # noqa: BLE001 - one model's failure (fla missing, OOM) is its row, not the run's
            rows.append({"label": label, "error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"})
        else:
            for setting, ms in zip(settings, times):
                name = setting_name(setting)
                base.setdefault(name, ms)
                rows.append({"label": label, "state": state_size, "setting": name, "batch": batch_size,
                             "step_ms": ms, "ratio": ms / base[name]})
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(table(rows[-len(settings):]) if "error" not in rows[-1] else rows[-1]["error"], flush=True)
    print(table(rows))
    path = save_rows(f"{args.name}.json", rows, spec=str(args.spec), precision=spec["precision"],
                     device_kind=args.device)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
