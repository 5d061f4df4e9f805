"""How fast MQAR sweep runs trained, from the committed sweep files: seconds to their first evaluation (per 500
steps) and in all, for the runs whose ids match the patterns.

    python benchmarks/mqar_pace.py 'ramnet-*-h4-m64-k16-lr0.001-s0' 'ramnet-16k-w256-lr0.003-s0'

Runs packed on one card share it by time-slicing, so these times are comparable only between runs that ran
side by side in one session (docs/MQAR_SESSIONS.md says which ran together); the first interval is the one in which
every worker of a session was running. A clean per-step cost with the card to itself is
``benchmarks/bench_mqar_step.py``'s.
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a sibling script, not a package
from mqar_doc_io import SummaryError, read_json  # noqa: E402

SWEEPS = ("mqar_sweep.json", "mqar_seeds_sweep.json", "ablations_sweep.json", "mqar_paper_arch_sweep.json")


def pace_rows(results: Path, patterns: list[str]) -> list[list]:
    """``[id, state, steps to the first evaluation, s per 500 steps there, s in all]`` for every finished run
    of the sweep files in ``results`` whose id matches one of ``patterns``, in the files' order."""
    rows = []
    for name in SWEEPS:
        path = results / name
        if not path.is_file():
            continue
        for run in read_json(path, dict).get("runs", []):
            history = run.get("history") or []
            if not history or not any(fnmatch.fnmatchcase(run["id"], p) for p in patterns):
                continue
            first = history[0]
            rows.append([run["id"], run["state_size"], first["step"], 500 * first["seconds"] / first["step"],
                         run["seconds"]])
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("patterns", nargs="+", help="fnmatch patterns on run ids")
    parser.add_argument("--results", default=str(Path(__file__).parent / "results"),
                        help="folder with the sweep files (default: benchmarks/results)")
    args = parser.parse_args(argv)
    results = Path(args.results)
    if not results.is_dir():
        parser.error(f"--results {results} is not a folder")
    try:
        rows = pace_rows(results, args.patterns)
    except SummaryError as error:
        parser.error(f"--results: {error}")
    except (KeyError, TypeError, AttributeError, ZeroDivisionError) as error:  # a run without a field this reads
        parser.error(f"--results: a sweep file in {results} is not what a sweep writes "
                     f"({type(error).__name__}: {error})")
    if not rows:
        parser.error(f"no finished run in {results} matches {' '.join(args.patterns)}")
    print("| run | state | first evaluation at step | s per 500 steps there | s in all |")
    print("|---|---|---|---|---|")
    for run_id, state, step, pace, total in rows:
        print(f"| {run_id} | {state:,} | {step} | {pace:.0f} | {total:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
