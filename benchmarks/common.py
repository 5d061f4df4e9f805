"""Shared helpers for the benchmark scripts: device facts, median timing, merging into summary.json, a one-line
exit where there is no CUDA device, and backend variants named on the command line."""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import sys
from pathlib import Path

import torch

RESULTS = Path(os.environ.get("RAMNET_BENCH_DIR", Path(__file__).parent / "results"))


def header() -> dict:
    import triton

    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"device": dev, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
            "triton": triton.__version__}


def require_cuda(script: str) -> None:
    """Exit with one line, not a traceback, where there is no CUDA device (the GPU benchmarks time CUDA kernels)."""
    if not torch.cuda.is_available():
        sys.exit(f"{Path(script).name}: needs a CUDA GPU (torch.cuda.is_available() is False on this machine)")


def _knob(text: str):
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    try:
        return int(text, 0)
    except ValueError:
        return text.strip()


def backend_variant(op: str, spec: str):
    """The ``op`` backend named by ``spec``: a backend name (``"segment"``), or a name and knob values
    (``"segment:num_warps=2,atomic_read=false"``) for a variant of it (``dataclasses.replace``)."""
    from ramnet.ops.address.backends import ADDRESS
    from ramnet.ops.memory.backends import SCAN, STEP

    tables = {"address": ADDRESS, "scan": SCAN, "step": STEP}
    name, _, knobs = spec.partition(":")
    backend = tables[op].get(name.strip())
    if not knobs:
        return backend
    fields = {f.name for f in dataclasses.fields(backend)}
    values = {}
    for item in filter(None, (part.strip() for part in knobs.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in fields:
            raise ValueError(f"{op} variant {spec!r}: knobs of {name!r} are {', '.join(sorted(fields)) or 'none'}, "
                             f"given as key=value")
        values[key.strip()] = _knob(value)
    return dataclasses.replace(backend, **values)


def bench_ms(fn, warmup: int = 10, rep: int = 50) -> float:
    """Median milliseconds of ``fn()`` (``triton.testing.do_bench`` on CUDA)."""
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def copy_bandwidth(gib: int = 1) -> float:
    """The card's achievable bandwidth in bytes/s: a ``gib`` GiB device-to-device copy (read plus write bytes over
    the median time). The P2 and P3 floors use this, measured in the same run, instead of a paper figure."""
    import torch

    src = torch.empty(gib * 2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = bench_ms(lambda: dst.copy_(src))
    del src, dst
    torch.cuda.empty_cache()
    return 2 * gib * 2**30 / (ms * 1e-3)


def cpu_median_ms(fn, reps: int = 20, warmup: int = 2) -> float:
    """Median wall milliseconds of ``fn()`` on CPU (``do_bench`` needs CUDA)."""
    import time

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def record(updates: dict, stamp: bool = True) -> dict:
    """Merge ``updates`` (plus this machine's header, unless ``stamp`` is False: values measured elsewhere) into
    ``results/summary.json`` and return the whole summary."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "summary.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(summary.get(key), dict):
            summary[key].update(value)
        elif isinstance(value, list) and isinstance(summary.get(key), list):  # table rows: later runs append
            summary[key] = summary[key] + value
        else:
            summary[key] = value
    if stamp:
        summary.update(header())
    path.write_text(json.dumps(summary, indent=2))
    return summary


def save_rows(name: str, rows: list[dict], **extra):
    """Write ``results/<name>`` as the header, ``extra`` and the table ``rows``; return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps({**header(), **extra, "rows": rows}, indent=2))
    return path


def table(rows: list[dict]) -> str:
    """A markdown table of ``rows``; its columns are every row's keys in first-seen order (a row without a key,
    such as an error row, leaves that cell empty)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    cell = lambda x: "" if x is None else f"{x:.4g}" if isinstance(x, float) else str(x)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(cell(r.get(k)) for k in keys) + " |")
    return "\n".join(lines)


def check_probe_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The shared arguments of the MQAR probe scripts: ``--num-examples`` >= 1 and an ``--out`` file (not a
    folder) in a folder that exists; a bad one exits with one line (status 2)."""
    if args.num_examples < 1:
        parser.error(f"--num-examples must be >= 1, got {args.num_examples}")
    if args.out and not args.out.parent.is_dir():
        parser.error(f"--out: the folder {args.out.parent} does not exist")
    if args.out and args.out.is_dir():
        parser.error(f"--out: {args.out} is a folder; give a file name")


def load_probe_checkpoints(parser: argparse.ArgumentParser, paths: list[str], settings: list[tuple[int, int]]
                           ) -> list[tuple[str, "torch.nn.Module"]]:
    """``[(path, model)]`` of the RAM-Net checkpoints a probe of MQAR pairs is given, each checked with every
    setting (at least 2 pairs, sizes the generator accepts for its vocabulary) before the first (slow) measurement;
    a bad one exits with one line (status 2)."""
    from ramnet.checkpoint import load_checkpoint
    from ramnet.data.mqar import MQARSetting
    checkpoints = []
    for path in paths:
        try:
            model = load_checkpoint(path)
        except (FileNotFoundError, ValueError) as error:
            parser.exit(2, f"{path}: {error}\n")
        for pairs, length in settings:
            try:
                if pairs < 2:
                    raise ValueError(f"the probe needs at least 2 pairs, got {pairs}")
                MQARSetting(vocab_size=model.config.vocab_size, seq_len=length, num_kv_pairs=pairs)
            except ValueError as error:
                parser.exit(2, f"--settings {pairs},{length} for {path}: {error}\n")
        checkpoints.append((path, model))
    return checkpoints


def setting_pair(text: str) -> tuple[int, int]:
    """argparse type of an MQAR setting: ``"64,256"`` -> ``(64, 256)`` (pairs, sequence length)."""
    try:
        pairs, length = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a setting is NUM_KV_PAIRS,SEQ_LEN (e.g. 64,256), got {text!r}") from None
    return pairs, length


def probe_parser(description: str, num_examples: int, checkpoints_help: str = "model checkpoint directories "
                 "(a sweep's RUN/model)") -> argparse.ArgumentParser:
    """The arguments the MQAR probe scripts share: checkpoints, ``--settings`` (default 256,1024),
    ``--num-examples``, ``--seed`` (of the MQAR generator, default 123) and ``--out``; scripts add their own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("checkpoints", nargs="+", help=checkpoints_help)
    parser.add_argument("--settings", nargs="+", type=setting_pair, default=[(256, 1024)],
                        help="NUM_KV_PAIRS,SEQ_LEN settings to probe (default: 256,1024)")
    parser.add_argument("--num-examples", type=int, default=num_examples,
                        help=f"sequences per setting (default {num_examples})")
    parser.add_argument("--seed", type=int, default=123, help="the MQAR generator's seed (default 123)")
    parser.add_argument("--out", type=Path, help="write every figure here as JSON")
    return parser


def parse_probe_args(parser: argparse.ArgumentParser, argv, gated: bool = False):
    """``(args, [(path, model)])`` from a :func:`probe_parser`: every argument checked and every checkpoint loaded
    before the first (slow) measurement; with ``gated``, each model must have the write gate. A bad one exits
    with one line (status 2)."""
    args = parser.parse_args(argv)
    check_probe_args(parser, args)
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    checkpoints = load_probe_checkpoints(parser, args.checkpoints, args.settings)
    for path, model in checkpoints if gated else []:
        if not model.config.write_gate:
            parser.exit(2, f"{path}: this model has no write gate (config.write_gate is false)\n")
    return args, checkpoints


def checkpoint_name(path: str) -> str:
    """A checkpoint's name in the probes' tables: its run's folder for a sweep's ``RUN/model``, else its own."""
    return Path(path).parent.name if Path(path).name == "model" else Path(path).name


def write_probe_json(args: argparse.Namespace, rows: list[dict]) -> None:
    """A probe's ``--out`` file: ``{"seed", "num_examples", "rows"}`` with NaN as null, written whole (through a
    ``.part`` file), so that a probe may call it after every row of a long run."""
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
    part = args.out.with_name(args.out.name + ".part")
    part.write_text(json.dumps({"seed": args.seed, "num_examples": args.num_examples, "rows": clean}, indent=1) + "\n")
    part.replace(args.out)


def report_row(args: argparse.Namespace, rows: list[dict], row: dict, line: str) -> None:
    """Add ``row`` to ``rows``, print its table ``line`` at once, and rewrite ``--out`` (when given) with every row
    so far: a probe's variants take minutes each on a CPU, and a stopped run keeps the ones it finished."""
    rows.append(row)
    print(line, flush=True)
    if args.out:
        write_probe_json(args, rows)
