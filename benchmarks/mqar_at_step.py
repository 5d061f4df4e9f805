"""MQAR sweep runs compared at one training step or several, finished or cut off: the 7-setting mean (and the
hardest setting's accuracy) that each run's evaluation at a step gave, and the mean over the seeds of each (label,
lr, state size).

    python benchmarks/mqar_at_step.py --step 3500 'deltanet-33k-lr0.001-*' 'ramnet-44k-w256-h8-*-lr0.0005-*'
    python benchmarks/mqar_at_step.py --step 2000,2500,3000 '*-6k-steps-*'   # seed means along the curve

With several steps it prints one table of seed means, a column per step in the order given. A cell names its
seed count where fewer seeds reached that step than the most that reached any of the steps asked (the column
"most seeds"), and how many of its runs did not finish (cut off or failed); "-" marks a row with no run at that
step.

A run cut off by its session's deadline is not a result (the tables and ``mqar.json`` never use it), but the
sweep files keep its curve up to its last evaluation under ``unfinished``; this reads both lists, so that a cut-off
run can be set beside finished ones at a step that all of them reached. Every run is evaluated every 500 steps on
held-out examples drawn from its seed (runs of one seed share them), so the numbers at one step are comparable;
they are not the step-4,000 score. An evaluation after the loss diverged counts as 0 (as the sweep scores it); a
run that failed is marked so. Seed means are per (label, lr, state size): two specs may reuse a label for
other models (`gamma-0.5` in the ablations and in the paper-architecture sweep), while a row's seed 0 and its
seeds 1-2 sit in two sweep files.
"""
from __future__ import annotations

import argparse
import fnmatch
import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a sibling script, not a package
from mqar_doc_io import SummaryError, read_json  # noqa: E402

SWEEPS = ("mqar_sweep.json", "mqar_seeds_sweep.json", "ablations_sweep.json", "mqar_paper_arch_sweep.json",
          "mqar_long_sweep.json")


def matching_runs(results: Path, patterns: list[str]) -> list[tuple[dict, bool]]:
    """Each run record (finished or unfinished) in the sweep files whose id matches one of ``patterns``, with
    whether it finished, in the files' order."""
    matched = []
    for name in SWEEPS:
        path = results / name
        if not path.is_file():
            continue
        sweep = read_json(path, dict)
        for finished, key in ((True, "runs"), (False, "unfinished")):
            matched += [(run, finished) for run in sweep.get(key, [])
                        if any(fnmatch.fnmatchcase(run["id"], p) for p in patterns)]
    return matched


def rows_at_step(matched: list[tuple[dict, bool]], step: int) -> list[dict]:
    """Each of ``matched`` (from ``matching_runs``) that was evaluated at ``step``: ``{id, label, lr, seed,
    state_size, status, accuracy, hardest, hardest_name}``; ``status`` is "yes" (finished), "no (cut off)" or
    "no (failed)", and ``hardest`` is None after a divergence."""
    rows = []
    for run, finished in matched:
        entry = next((h for h in run.get("history") or [] if h.get("step") == step), None)
        if entry is None:
            continue
        accuracies = entry.get("accuracies") or {}  # empty once the loss diverged: scored 0
        hardest_name = list(accuracies)[-1] if accuracies else None  # the longest setting is listed last
        status = "yes" if finished else "no (failed)" if run.get("error") else "no (cut off)"
        rows.append({"id": run["id"], "label": run["label"], "lr": run["lr"],
                     "seed": run["seed"], "state_size": run["state_size"], "status": status,
                     "accuracy": entry.get("accuracy") or 0.0,
                     "hardest": accuracies.get(hardest_name), "hardest_name": hardest_name})
    return rows


def runs_at_step(results: Path, patterns: list[str], step: int) -> list[dict]:
    """``rows_at_step`` over the runs in ``results`` that match ``patterns``."""
    return rows_at_step(matching_runs(results, patterns), step)


def seed_groups(rows: list[dict]) -> dict[tuple[str, float, int], dict[int, dict]]:
    """``rows`` by (label, lr, state size), in first-seen order, then by seed. A seed seen twice (a run id in two
    sweep files) counts once, its finished record first."""
    groups: dict[tuple[str, float, int], dict[int, dict]] = defaultdict(dict)
    for row in rows:
        seeds = groups[(row["label"], row["lr"], row["state_size"])]
        if row["seed"] not in seeds or (row["status"] == "yes" and seeds[row["seed"]]["status"] != "yes"):
            seeds[row["seed"]] = row
    return groups


def seed_means(rows: list[dict]) -> list[tuple[str, float, int, int, float]]:
    """``(label, lr, state size, seeds, mean accuracy)`` per (label, lr, state size), as ``seed_groups`` groups."""
    return [(label, lr, state, len(seeds), sum(r["accuracy"] for r in seeds.values()) / len(seeds))
            for (label, lr, state), seeds in seed_groups(rows).items()]


def seed_means_along(results: Path, patterns: list[str], steps: list[int]) -> list[tuple]:
    """The several-step table's rows: ``(label, lr, state size, most seeds, {step: (seeds, mean, not finished)})``
    per (label, lr, state size), in first-seen order over the steps; the sweep files are read once."""
    matched = matching_runs(results, patterns)
    rows: dict[tuple[str, float, int], dict[int, tuple[int, float, int]]] = {}
    for step in steps:
        for key, seeds in seed_groups(rows_at_step(matched, step)).items():
            runs = seeds.values()
            rows.setdefault(key, {})[step] = (len(seeds), sum(r["accuracy"] for r in runs) / len(seeds),
                                              sum(r["status"] != "yes" for r in runs))
    return [(label, lr, state, max(cell[0] for cell in cells.values()), cells)
            for (label, lr, state), cells in rows.items()]


def _steps(text: str) -> list[int]:
    """``--step``'s value: one step or several, comma-separated, each a positive integer in ASCII digits and none
    repeated; raises ValueError otherwise."""
    if not re.fullmatch(r"[0-9]+(,[0-9]+)*", text):
        raise ValueError(text)
    steps = [int(part) for part in text.split(",")]
    if any(step <= 0 for step in steps) or len(set(steps)) != len(steps):
        raise ValueError(text)
    return steps


def _print_one(rows: list[dict], step: int) -> None:
    hardest_name = next((row["hardest_name"] for row in rows if row["hardest_name"]), "longest setting")
    print(f"| run | state | finished | mean at step {step} | {hardest_name} |")
    print("|---|---|---|---|---|")
    for row in rows:
        hardest = "diverged" if row["hardest"] is None else f"{row['hardest']:.4f}"
        print(f"| {row['id']} | {row['state_size']:,} | {row['status']} | {row['accuracy']:.5f} | {hardest} |")
    print()
    print(f"| label | lr | state | seeds | mean over seeds at step {step} |")
    print("|---|---|---|---|---|")
    for label, lr, state, n, mean in seed_means(rows):
        print(f"| {label} | {lr:g} | {state:,} | {n} | {mean:.5f} |")


def _print_along(rows: list[tuple], steps: list[int]) -> None:
    print("| label | lr | state | most seeds | " + " | ".join(f"step {step}" for step in steps) + " |")
    print("|---|---|---|---|" + "---|" * len(steps))
    for label, lr, state, most, cells in rows:
        shown = []
        for step in steps:
            if step not in cells:
                shown.append("-")
                continue
            n, mean, unfinished = cells[step]
            notes = ([] if n == most else [f"{n} seed{'s' * (n != 1)}"]) + (
                [f"{unfinished} not finished"] if unfinished else [])
            shown.append(f"{mean:.5f}" + (f" ({', '.join(notes)})" if notes else ""))
        print(f"| {label} | {lr:g} | {state:,} | {most} | " + " | ".join(shown) + " |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("patterns", nargs="+", help="fnmatch patterns on run ids")
    parser.add_argument("--step", required=True, metavar="STEP[,STEP...]",
                        help="the training step (a multiple of the sweep's eval_every, 500), or several, "
                        "comma-separated, for one table of seed means along them")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results",
                        help="folder with the sweep files (default: benchmarks/results)")
    args = parser.parse_args(argv)
    try:
        steps = _steps(args.step)
    except ValueError:
        parser.error(f"--step must be a positive step number, or several different ones separated by commas "
                     f"(2000,2500), got {args.step!r}")
    if not args.results.is_dir():
        parser.error(f"--results: no folder {args.results}")
    several = len(steps) > 1
    try:
        rows = (seed_means_along(args.results, args.patterns, steps) if several
                else runs_at_step(args.results, args.patterns, steps[0]))
    except SummaryError as error:
        parser.error(f"--results: {error}")
    except (KeyError, TypeError, AttributeError) as error:  # a run without a field this reads
        parser.error(f"--results: a sweep file in {args.results} is not what a sweep writes "
                     f"({type(error).__name__}: {error})")
    reached = {step for row in rows for step in row[4]} if several else set(steps) if rows else set()
    missing = [step for step in steps if step not in reached]
    if missing:  # a step no matched run reached: most likely a typo, so say so rather than print an empty column
        where = ", ".join(str(step) for step in missing)
        print(f"no run matching {args.patterns} was evaluated at step {where}", file=sys.stderr)
        return 1
    if several:
        _print_along(rows, steps)
    else:
        _print_one(rows, steps[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
