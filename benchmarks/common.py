"""Shared helpers for the benchmark scripts: device facts, median timing, and merging into summary.json."""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import torch

RESULTS = Path(os.environ.get("RAMNET_BENCH_DIR", Path(__file__).parent / "results"))


def header() -> dict:
    import triton

    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"device": dev, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
            "triton": triton.__version__}


def bench_ms(fn, warmup: int = 10, rep: int = 50) -> float:
    """Median milliseconds of ``fn()`` (``triton.testing.do_bench`` on CUDA)."""
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


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


def record(updates: dict) -> dict:
    """Merge ``updates`` (plus the header) into ``results/summary.json`` and return the whole summary."""
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
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")
    return "\n".join(lines)
