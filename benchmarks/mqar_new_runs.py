"""The MQAR runs that a GPU session added: every run in the sweep summaries that a git commit did not have.

    python benchmarks/mqar_new_runs.py --since 24489fb          # mqar, ablations, mqar_seeds, mqar_paper_arch, mqar_profile
    python benchmarks/mqar_new_runs.py --since HEAD --names mqar  # e.g. after copying a session's summaries in

For each new run: its 7-setting mean, the two longest settings (where the equal-state gaps sit), the step at
which it first passed 0.5 (the loss plateau's end), its seconds and its peak memory. Then the counts per sweep,
and the runs that the summaries list as cut by a budget (`unfinished`: a curve so far, not a result).
This is the list a session's notes start from (docs/MQAR_SESSIONS.md, one paragraph per session).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("mqar", "ablations", "mqar_seeds", "mqar_paper_arch", "mqar_profile", "mqar_long")
LONGEST = ("N128-T512", "N256-T1024")


def new_runs(before: dict, after: dict) -> list[dict]:
    """The runs of summary ``after`` whose id is not in ``before`` (a summary: {"runs": [...]}), in after's order."""
    seen = {run["id"] for run in before.get("runs", [])}
    return [run for run in after.get("runs", []) if run["id"] not in seen]


def plateau_exit(run: dict, level: float = 0.5) -> int | None:
    """The first evaluated step with accuracy >= level, or None if the run never got there."""
    return next((point["step"] for point in run.get("history", []) if point["accuracy"] >= level), None)


def row(name: str, run: dict) -> list[str]:
    longest = [f"{run['accuracies'].get(s, float('nan')):.3f}" for s in LONGEST]
    exit_step = plateau_exit(run)
    return [name, run["id"], f"{run['state_size']:,}", f"**{run['accuracy']:.3f}**", *longest,
            "-" if exit_step is None else str(exit_step), f"{run['seconds']:.0f}", f"{run.get('peak_mib') or 0:,.0f}"]


def cut_line(name: str, entry: dict) -> str:
    """One line for a run cut by the budget (an ``unfinished`` entry: its last evaluation, not a result)."""
    accuracy = entry.get("accuracy")
    shown = "-" if accuracy is None else f"{accuracy:.3f}"
    return (f"- {name} {entry['id']}: cut at step {entry.get('step', 0)}/{entry.get('total_steps', '?')}, "
            f"accuracy {shown} there, {entry.get('seconds') or 0:.0f} s")


def summary_at(commit: str, name: str) -> dict:
    """The summary NAME_sweep.json as committed in benchmarks/results/ at ``commit``; {} when it was not there."""
    relative = f"benchmarks/results/{name}_sweep.json"
    done = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{relative}"], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since", required=True, help="the git commit before the session's results were copied in")
    parser.add_argument("--names", nargs="+", default=list(NAMES), choices=NAMES, help="the sweep summaries to read")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results",
                        help="the folder of NAME_sweep.json, compared with benchmarks/results/ at --since "
                             "(default: benchmarks/results)")
    args = parser.parse_args(argv)
    known = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{args.since}^{{commit}}"],
                           capture_output=True, text=True)
    if known.returncode != 0:
        print(f"--since: '{args.since}' is not a commit of {ROOT}", file=sys.stderr)
        return 2
    rows, counts, cut = [], [], []
    for name in args.names:
        path = args.results / f"{name}_sweep.json"
        if not path.is_file():
            counts.append(f"{name}: no {path.name}")
            continue
        try:
            after = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            print(f"--results: {path} is not a readable sweep summary ({error})", file=sys.stderr)
            return 2
        added = new_runs(summary_at(args.since, name), after)
        rows += [row(name, run) for run in added]
        cut += [cut_line(name, entry) for entry in after.get("unfinished", [])]
        counts.append(f"{name}: {len(added)} new, {len(after.get('runs', []))} in all")
    header = ["sweep", "run", "state", "mean", *LONGEST, "step >= 0.5", "s", "peak MiB"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    print("\n".join("| " + " | ".join(r) + " |" for r in rows))
    print(f"\n{len(rows)} new runs since {args.since}: " + "; ".join(counts))
    if cut:
        print(f"\n{len(cut)} runs cut by the budget (their curves so far, not results):\n" + "\n".join(cut))
    return 0


if __name__ == "__main__":
    sys.exit(main())
