"""Where finished MQAR sweep runs go wrong: for each run matching the patterns, one setting's errors split by the
quarter of the pairs they ask for (by when the pair was written) and by the quarter of each sequence's queries
(by when the query is asked), and its score in fp32 beside the score in its training precision.

    python benchmarks/mqar_error_profile.py 'ramnet-88k-w256-h8-*' 'deltanet-66k-lr0.003-*' --setting N256-T1024

Runs record this profile after their last step (``ramnet.mqar_errors``) since session AF; older runs have none
and are listed as such. Errors on the first quarter of the pairs point at the oldest writes being diluted by later
ones; errors on the last quarter of the queries at the writes that follow the pairs (in the larger settings every
query is followed by a random token, which a model can bind as a new pair).

A run that listed its wrong queries also gets how many of them follow a random token equal to their own key
("after the same key"), beside how many such queries its evaluation set holds (its data is made again from the
run's seed). In the evaluation sets of 256 pairs there are 30-37 such queries a seed, as many as
``deltanet-66k``'s errors there (36-38 at lr 3e-3); the column tells whether those are where the errors are.
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a sibling script, not a package
from mqar_at_step import SWEEPS  # noqa: E402
from mqar_doc_io import SummaryError, read_json  # noqa: E402

from ramnet.data.mqar_protocol import eval_set, protocol_settings, setting_name  # noqa: E402

# the reruns made to profile finished runs come first: a run id in two files is read from the first
SWEEPS_WITH_PROFILES = ("mqar_profile_sweep.json",) + SWEEPS


def after_same_key(spec: dict, run: dict, setting: str, wrong: list[list[int]]) -> tuple[int, int]:
    """(wrong queries whose previous token is their own key, such queries in the evaluation set) for ``run``'s
    ``setting``; its evaluation data is made again from the sweep's ``spec`` and the run's seed."""
    settings = protocol_settings([tuple(pair) for pair in spec["settings"]], spec["vocab_size"])
    index = [setting_name(s) for s in settings].index(setting)
    inputs, labels = eval_set(settings[index], index, spec["num_eval"], run["seed"])
    queries = (labels != -100).nonzero()
    trapped = inputs[queries[:, 0], queries[:, 1] - 1] == inputs[queries[:, 0], queries[:, 1]]
    return sum(int(inputs[b, t - 1] == inputs[b, t]) for b, t in wrong), int(trapped.sum())


def profile_rows(results: Path, patterns: list[str], setting: str) -> list[dict]:
    """One row per finished run whose id matches a pattern (files' order, a run id once): ``{id, state_size,
    precision, accuracy, fp32, queries, errors, by_pair, by_query, same_key, failed}``; ``fp32`` to ``same_key``
    are None without a profile, ``same_key`` (see ``after_same_key``) also when the run did not list its errors;
    ``failed`` is the profile's error when it failed, else None."""
    rows, seen = [], set()
    for name in SWEEPS_WITH_PROFILES:
        path = results / name
        if not path.is_file():
            continue
        sweep = read_json(path, dict)
        for run in sweep.get("runs", []):
            if run["id"] in seen or not any(fnmatch.fnmatchcase(run["id"], p) for p in patterns):
                continue
            seen.add(run["id"])
            profile = run.get("final_profile") or {}
            counts = profile.get("settings", {}).get(setting, {})
            wrong = counts.get("error_queries")
            rows.append({"same_key": None if wrong is None else after_same_key(sweep["spec"], run, setting, wrong),
                         "failed": "profile failed: " + profile["error"] if "error" in profile else None,
                         "id": run["id"], "state_size": run["state_size"], "precision": run["precision"],
                         "accuracy": run["accuracies"].get(setting),
                         "fp32": profile.get("fp32_accuracies", {}).get(setting),
                         "queries": counts.get("queries"), "errors": counts.get("errors"),
                         "by_pair": counts.get("by_pair_quarter"), "by_query": counts.get("by_query_quarter")})
    return rows


def _quarters(values) -> str:
    return "-" if values is None else " / ".join("-" if v is None else f"{v:.4f}" for v in values)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("patterns", nargs="+", help="fnmatch patterns on run ids")
    parser.add_argument("--setting", default="N256-T1024", help="the setting's name (default: N256-T1024)")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results",
                        help="folder with the sweep files (default: benchmarks/results)")
    args = parser.parse_args(argv)
    if not args.results.is_dir():
        parser.error(f"--results: no folder {args.results}")
    try:
        rows = profile_rows(args.results, args.patterns, args.setting)
    except SummaryError as error:
        parser.error(f"--results: {error}")
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as error:  # a field missing or out of range
        parser.error(f"--results: a sweep file in {args.results} is not what a sweep writes "
                     f"({type(error).__name__}: {error})")
    if not rows:
        print(f"no finished run matches {args.patterns}", file=sys.stderr)
        return 1
    if all(row["accuracy"] is None for row in rows):
        parser.error(f"--setting: no matching run was scored on {args.setting!r} (names look like N256-T1024)")
    print(f"{args.setting}: accuracy by quarter of the pairs (first written first) and of each sequence's queries "
          "(first asked first)")
    print()
    print("| run | state | accuracy | in fp32 | errors of queries | by pair quarter | by query quarter "
          "| errors after the same key, of such queries |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        accuracy = "-" if row["accuracy"] is None else f"{row['accuracy']:.5f} ({row['precision']})"
        fp32 = "-" if row["fp32"] is None else f"{row['fp32']:.5f}"
        errors = row["failed"] or ("no profile" if row["queries"] is None else
                                   f"{row['errors']:,} of {row['queries']:,}")
        same_key = "-" if row["same_key"] is None else f"{row['same_key'][0]:,} of {row['same_key'][1]:,}"
        print(f"| {row['id']} | {row['state_size']:,} | {accuracy} | {fp32} | {errors} | "
              f"{_quarters(row['by_pair'])} | {_quarters(row['by_query'])} | {same_key} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
