"""Merge the P1 rows a ``bench_attention.py`` run printed into ``results/summary.json``, for a run cut short before
it could record them (bench_attention.py now records each shape as soon as it is measured; before that change a
timeout during the last shape lost the shapes already printed). The rows are the ones that run measured, read
back from its printed per-shape tables; nothing is re-measured. Runs on CPU.

    RAMNET_BENCH_DIR=benchmarks/results python benchmarks/p1_rows_from_log.py LOG [--shapes 4,4096,16,128 ...]
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


SHAPE = re.compile(r"^\d+(,\d+){3}$")  # B,T,H,D


def printed_rows(text: str) -> list[dict]:
    """Every distinct shape's row (first print wins) from the markdown tables in ``text`` whose first column is
    ``shape``. A table ends at any other header (another benchmark's table may follow without a blank line)."""
    rows, header = {}, None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if set(cells[0]) <= {"-"}:
            continue  # the separator under a header
        if not SHAPE.match(cells[0]):
            header = cells if cells[0] == "shape" else None
        elif header and cells[0] not in rows:
            rows[cells[0]] = {k: (v if k == "shape" else float(v)) for k, v in zip(header, cells) if v != ""}
    return list(rows.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, help="the printed output of a bench_attention.py run")
    parser.add_argument("--shapes", nargs="*", help="only these B,T,H,D shapes (default: every printed one)")
    args = parser.parse_args()
    if not args.log.is_file():
        parser.error(f"log: no such file: {args.log}")
    rows = [r for r in printed_rows(args.log.read_text()) if not args.shapes or r["shape"] in args.shapes]
    if not rows:
        parser.error(f"log: no P1 rows{' of ' + ', '.join(args.shapes) if args.shapes else ''} in {args.log}")
    from bench_attention import record_row  # noqa: E402 - after the argument checks (it imports torch)

    for row in rows:
        record_row(row, stamp=False)  # the summary's header is that of the machine that measured them
        print(f"recorded {row['shape']}")


if __name__ == "__main__":
    main()
