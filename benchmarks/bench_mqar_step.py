"""The time of one MQAR training step for models of a sweep spec, side by side in one process: models of equal
state can differ a lot in cost (4 heads of K=16 write 4x the slots per token of 2 heads of K=8).

    python benchmarks/bench_mqar_step.py --labels ramnet-16k ramnet-16k-h4-m64-k16 deltanet-16k
    python benchmarks/bench_mqar_step.py --spec benchmarks/mqar/main.yaml --labels ... --settings 64,256 256,1024

Each step is the sweep's own (``ramnet.sweep_run.protocol_step``): a batch of one MQAR setting
(``--settings NUM_KV_PAIRS,SEQ_LEN``, default Zoology's (64, 256) and (256, 1024)), the logits at the labelled
positions under the spec's precision, cross-entropy, backward, gradient clipping and AdamW. A sweep's steps mix
all seven settings evenly, so these two are the mid and the long end of that mix, not its mean. Prints a table
(median ms per step over ``samples`` steps; ``ratio``: against ``base``, the first label that ran, at the same
setting) and rewrites ``results/mqar_step.json`` (``--name``) after every model, so a time limit keeps the
models done. Only the chosen labels are built: fla is needed only for fla's models. A model that fails to run
(out of memory, no kernel for this device) gets a row with its error, and the others still run. ``--device cpu``
is a smoke test only: its times are not the card's.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_ms, cpu_median_ms, save_rows, setting_pair, table  # noqa: E402

from ramnet.baselines import build_model  # noqa: E402
from ramnet.mapping_files import parse_mapping_file  # noqa: E402
from ramnet.data.mqar_protocol import ProtocolData, protocol_settings, setting_name  # noqa: E402
from ramnet.precision import grad_scaler  # noqa: E402
from ramnet.sweep_run import protocol_step  # noqa: E402
from ramnet.sweep_spec import SpecError, check_spec, model_spec  # noqa: E402
from ramnet.train import TrainArgs, make_optimizer  # noqa: E402

MAIN_SPEC = Path(__file__).parent / "mqar" / "main.yaml"


def median_ms(step, device: torch.device, samples: int) -> float:
    """Median ms of ``step()`` over about ``samples`` timed calls, after untimed ones that compile and autotune.
    On CUDA through ``do_bench``, whose warm-up and repetitions are given in ms: they are sized from one timed
    step, so a 300 ms step gets as many samples as a 3 ms one."""
    for _ in range(2):
        step()
    if device.type != "cuda":
        return cpu_median_ms(step, reps=samples, warmup=0)
    torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    torch.cuda.synchronize()
    estimate = max((time.perf_counter() - start) * 1e3, 0.01)
    return bench_ms(step, warmup=3 * estimate, rep=samples * estimate)


def step_ms(entry: dict, spec: dict, settings, device: torch.device, batch_size: int, samples: int):
    """``(state size, [median ms of one training step of entry's model at each of settings])``."""
    max_len = max([s.seq_len for s in settings] + [length for _, length in spec["settings"]])  # as the sweep builds
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(0)
        model, state_size, _ = build_model(model_spec(entry), spec["vocab_size"], max_len)
    model.to(device).train()
    args = TrainArgs(steps=10**6, batch_size=batch_size, lr=1e-3, device=device.type, precision=spec["precision"],
                     warmup_steps=spec["warmup_steps"], min_lr_ratio=spec["min_lr_ratio"],
                     weight_decay=spec["weight_decay"], grad_clip=spec["grad_clip"],
                     alpha_lr_mult=entry.get("alpha_lr_mult", 1.0))
    opt, schedule = make_optimizer(model, args)
    scaler = grad_scaler(device, spec["precision"])
    data = ProtocolData.make(settings, batch_size, 1, seed=0).to(device)
    times = [median_ms(lambda: protocol_step(model, x, pos, targets, opt, schedule, scaler, args), device, samples)
             for x, pos, targets in data.train]
    return state_size, times


def read_spec(path: str, labels: list[str]) -> dict:
    """The spec at ``path``, checked, with only the entries of ``labels`` (in that order): the others are not
    built, so fla is needed only when one of fla's models is chosen."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"sweep spec {path} does not exist")
    data = parse_mapping_file(path, path.read_text(), f"sweep spec {path}", "pip install pyyaml", error=SpecError)
    if not isinstance(data, dict):
        return check_spec(data)  # raises its error for a spec that is not a mapping
    entries = {e.get("label"): e for e in data.get("models") or [] if isinstance(e, dict)}
    unknown = [label for label in labels if label not in entries]
    if unknown:
        raise SpecError(f"--labels: {', '.join(unknown)} not in {path} (its labels: {', '.join(map(str, entries))})")
    return check_spec({**data, "models": [entries[label] for label in labels]}, default_out=Path("."))  # out: unused here


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
    parser.add_argument("--samples", type=int, default=20, help="timed steps per median (default 20)")
    parser.add_argument("--name", default="mqar_step", help="the results file: results/NAME.json")
    args = parser.parse_args(argv)
    if not args.name or not all(c.isalnum() or c in "_-." for c in args.name):
        parser.error(f"--name: letters, digits, '_', '-' and '.' only, got {args.name!r}")
    if (args.batch_size is not None and args.batch_size < 1) or args.samples < 1:
        parser.error(f"--batch-size and --samples must be >= 1, got {args.batch_size} and {args.samples}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU on this machine (use --device cpu for a smoke test)")
    try:
        spec = read_spec(args.spec, args.labels)
        settings = protocol_settings(args.settings, spec["vocab_size"])
    except SpecError as err:
        parser.error(str(err))
    except ValueError as err:
        parser.error(f"--settings: {err}")
    spec = {**spec, "precision": args.precision or spec["precision"]}
    batch_size = spec["batch_size"] if args.batch_size is None else args.batch_size
    device = torch.device(args.device)
    entries = {e["label"]: e for e in spec["models"]}
    rows, base = [], {}
    for label in args.labels:
        try:
            state_size, times = step_ms(entries[label], spec, settings, device, batch_size, args.samples)
        except Exception as err:  # noqa: BLE001 - one model's failure (OOM, no kernel here) is its row
            message = (str(err).splitlines() or [""])[0][:200]
            rows.append({"label": label, "error": f"{type(err).__name__}: {message}"})
            print(rows[-1]["error"], flush=True)
        else:
            for setting, ms in zip(settings, times):
                name = setting_name(setting)
                base.setdefault(name, (label, ms))
                rows.append({"label": label, "state": state_size, "setting": name, "batch": batch_size,
                             "samples": args.samples, "step_ms": ms, "base": base[name][0],
                             "ratio": ms / base[name][1]})
            print(table(rows[-len(settings):]), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        path = save_rows(f"{args.name}.json", rows, spec=str(args.spec), precision=spec["precision"],
                         device_kind=args.device)
    print(table(rows))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
