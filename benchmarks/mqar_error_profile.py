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
run's seed); a run that did not list them gets "-" of that count, and its error count is the one its accuracy
implies. In the evaluation sets of 256 pairs there are 30-37 such queries a seed, about as many as
``deltanet-66k``'s errors there (36-38 at lr 3e-3); the column tells whether those are where the errors are.
The next column widens the trap: the queries whose key stood anywhere earlier in the query phase, as a random
token, so that a model binding each token to the next may have bound the key to a random token since its pair
(3,847-3,909 of 256,000 queries at 256 pairs a seed). Session AK's count: 3 of them among RAM-Net's 160 errors
there and 1 among DeltaNet's 36, so these queries are not where most errors are (too few errors fall on them to
compare their rate with the others').
The counts for the 66k band, before any run of it had a profile::

    python benchmarks/mqar_error_profile.py 'ramnet-88k-w256-h8-m64-k16-gate-lr0.0005-*' 'deltanet-66k-lr0.003-*'

``--overlap`` then lists, for each two runs that listed their wrong queries on the same seed's data, how many
they share against how many two random lists of those sizes would: whether the errors are queries hard for every
model or each run's own (session AK, at 256 pairs on seed 0: 0-5 shared where chance gives 0.02-0.66)::

    python benchmarks/mqar_error_profile.py 'ramnet-88k-w256-h*' 'deltanet-66k-lr0.003-*' --overlap

Each run is listed once per sweep file that holds it, with the file: ``profile.yaml``'s reruns have the ids of
``main.yaml``'s runs, and a rerun on a GPU is a new sample (runs are not bit-reproducible there), so its errors
are set beside the original's count rather than in its place.
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a sibling script, not a package
from mqar_at_step import SWEEPS  # noqa: E402
from mqar_doc_io import SummaryError, read_json  # noqa: E402

from ramnet.data.mqar_protocol import eval_set, protocol_settings, setting_name  # noqa: E402
from ramnet.mqar_errors import parse_error_queries  # noqa: E402

SWEEPS_WITH_PROFILES = SWEEPS + ("mqar_profile_sweep.json",)


def evaluation_data(spec: dict, seed: int, setting: str):
    """``(inputs, labels, num_kv_pairs)`` of ``setting``'s evaluation set for a run of ``seed`` in the sweep of
    ``spec``."""
    settings = protocol_settings([tuple(pair) for pair in spec["settings"]], spec["vocab_size"])
    names = [setting_name(s) for s in settings]
    if setting not in names:
        raise ValueError(f"the sweep's settings {names} do not include {setting}")
    index = names.index(setting)
    return (*eval_set(settings[index], index, spec["num_eval"], seed), settings[index].num_kv_pairs)


def check_listed(inputs, labels, setting: str, wrong: list[tuple[int, int]] | None) -> None:
    """A listed wrong query that is not a query of the evaluation set ``inputs, labels`` is a ValueError (the data
    or the list is not the run's)."""
    for b, t in wrong or []:
        if not (0 <= b < len(inputs) and 1 <= t < inputs.shape[1]) or labels[b, t] == -100:
            raise ValueError(f"{b}:{t} is not a query of {setting}'s evaluation set ({len(inputs)} sequences)")


def after_same_key(inputs, labels, setting: str, wrong: list[tuple[int, int]] | None) -> tuple[int | None, int]:
    """(wrong queries whose previous token is their own key, or None when the run listed none; such queries in the
    evaluation set ``inputs, labels``); ``wrong`` is checked first (``check_listed``)."""
    check_listed(inputs, labels, setting, wrong)
    queries = (labels != -100).nonzero()
    trapped = inputs[queries[:, 0], queries[:, 1] - 1] == inputs[queries[:, 0], queries[:, 1]]
    caught = None if wrong is None else sum(int(inputs[b, t - 1] == inputs[b, t]) for b, t in wrong)
    return caught, int(trapped.sum())


def earlier_copy_mask(inputs, labels, num_kv_pairs: int):
    """``[B, T]`` bool: the queries whose key token already stood at an earlier position of the query phase (the
    positions from ``2 * num_kv_pairs`` on), as a random token. A model that binds each token to the one after it
    may by then have bound the key to a random token."""
    rows, length = inputs.shape
    start = 2 * num_kv_pairs
    phase = inputs[:, start:]
    positions = torch.arange(start, length, device=inputs.device).expand(rows, -1)
    # one id per (row, token), so a single scatter finds each token's first position in each row
    ids = phase + torch.arange(rows, device=inputs.device).unsqueeze(1) * (int(inputs.max()) + 1)
    first = torch.full((int(ids.max()) + 1,), length, dtype=torch.long, device=inputs.device)
    first.scatter_reduce_(0, ids.flatten(), positions.flatten(), reduce="amin")
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, start:] = first[ids] < positions
    return mask & (labels != -100)


def last_pair_mask(inputs, labels, num_kv_pairs: int, key_vocab: int | None = None):
    """``[B, T]`` bool: the queries that ask for the last pair written, the one right before the query phase; with
    ``key_vocab``, only in the sequences whose token two after that pair's value (the first random token of the
    query phase, where the next pair's value stands for every other pair) is a key-range token (below
    ``key_vocab``)."""
    last_key = inputs[:, 2 * num_kv_pairs - 2].unsqueeze(1)
    mask = (inputs == last_key) & (labels != -100)
    mask[:, :2 * num_kv_pairs] = False
    if key_vocab is not None:
        mask &= (inputs[:, 2 * num_kv_pairs + 1] < key_vocab).unsqueeze(1)
    return mask


def _caught(inputs, labels, setting: str, mask, wrong: list[tuple[int, int]] | None) -> tuple[int | None, int]:
    """(wrong queries inside ``mask``, or None when the run listed none; the queries inside ``mask``); ``wrong``
    is checked first (``check_listed``)."""
    check_listed(inputs, labels, setting, wrong)
    caught = None if wrong is None else sum(int(mask[b, t]) for b, t in wrong)
    return caught, int(mask.sum())


def after_earlier_copy(inputs, labels, setting: str, num_kv_pairs: int,
                       wrong: list[tuple[int, int]] | None) -> tuple[int | None, int]:
    """(wrong queries whose key stood earlier in the query phase, or None when the run listed none; such queries in
    the evaluation set)"""
    return _caught(inputs, labels, setting, earlier_copy_mask(inputs, labels, num_kv_pairs), wrong)


def on_last_pair(inputs, labels, setting: str, num_kv_pairs: int, wrong: list[tuple[int, int]] | None,
                 key_vocab: int | None = None) -> tuple[int | None, int]:
    """(wrong queries that ask for the last pair written, or None when the run listed none; such queries), with
    ``key_vocab`` only those followed two after the pair's value by a key-range token (``last_pair_mask``)"""
    return _caught(inputs, labels, setting, last_pair_mask(inputs, labels, num_kv_pairs, key_vocab), wrong)


def _quarters(values) -> str:
    return "-" if values is None else " / ".join("-" if v is None else f"{v:.4f}" for v in values)


def table_row(file: str, spec: dict, run: dict, setting: str) -> str | None:
    """One run's line of the table, or None when it was not scored on ``setting``."""
    accuracy = run["accuracies"].get(setting)
    if accuracy is None:
        return None
    profile = run.get("final_profile") or {}
    counts = profile.get("settings", {}).get(setting, {})
    fp32 = (profile.get("fp32_accuracies") or {}).get(setting)  # None: trained in fp32, or refused it
    inputs, labels, pairs = evaluation_data(spec, run["seed"], setting)
    if counts:
        errors = f"{counts['errors']:,} of {counts['queries']:,}"
    else:  # no profile: the count the accuracy implies (the accuracy is a fraction of the labelled positions)
        queries = int((labels != -100).sum())
        errors = f"{round((1 - accuracy) * queries):,} of {queries:,} (from the accuracy; " + \
            (f"profile failed: {profile['error']})" if "error" in profile else "no profile)")
    wrong = counts.get("error_queries")
    wrong = None if wrong is None else parse_error_queries(wrong)
    caught, held = after_same_key(inputs, labels, setting, wrong)
    same_key = f"{'-' if caught is None else f'{caught:,}'} of {held:,}"
    caught, held = after_earlier_copy(inputs, labels, setting, pairs, wrong)
    earlier = f"{'-' if caught is None else f'{caught:,}'} of {held:,}"
    caught, held = on_last_pair(inputs, labels, setting, pairs, wrong)
    keyed, keyed_held = on_last_pair(inputs, labels, setting, pairs, wrong, key_vocab=spec["vocab_size"] // 2)
    last = (f"{'-' if caught is None else f'{caught:,}'} of {held:,} "
            f"({'-' if keyed is None else f'{keyed:,}'} of {keyed_held:,} after a key-range token)")
    return (f"| {run['id']} | {file} | {run['state_size']:,} | {accuracy:.5f} ({run['precision']}) | "
            f"{'-' if fp32 is None else f'{fp32:.5f}'} | {errors} | {_quarters(counts.get('by_pair_quarter'))} | "
            f"{_quarters(counts.get('by_query_quarter'))} | {same_key} | {earlier} | {last} |")


def table_rows(results: Path, patterns: list[str], setting: str) -> tuple[int, list[str], list[tuple]]:
    """(finished runs matching ``patterns``, the lines of those scored on ``setting``, and ``(id, file, seed,
    queries, wrong queries)`` of those that listed theirs there), in the files' order. A file whose runs lack a
    field or hold one of the wrong kind is a SummaryError naming it."""
    matched, lines, listed = 0, [], []
    for name in SWEEPS_WITH_PROFILES:
        path = results / name
        if not path.is_file():
            continue
        sweep = read_json(path, dict)
        try:
            for run in sweep.get("runs", []):
                if not any(fnmatch.fnmatchcase(run["id"], p) for p in patterns):
                    continue
                matched += 1
                line = table_row(name, sweep.get("spec", {}), run, setting)
                if line is not None:
                    lines.append(line)
                counts = (run.get("final_profile") or {}).get("settings", {}).get(setting, {})
                if line is not None and counts.get("error_queries") is not None:
                    listed.append((run["id"], name, run["seed"], counts["queries"],
                                   set(parse_error_queries(counts["error_queries"]))))
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as error:
            raise SummaryError(f"{path} is not what a sweep writes ({type(error).__name__}: {error})") from None
    return matched, lines, listed


def overlap_lines(listed: list[tuple]) -> list[str]:
    """For each two runs that listed their wrong queries on the same seed's data: how many they share, beside how
    many two lists of those sizes drawn at random from the set's queries would share on average (a * b / queries).
    Far more than that: the errors sit on queries that are hard for both; about that: each run errs on its own."""
    lines = []
    for i, (id_a, file_a, seed_a, queries, wrong_a) in enumerate(listed):
        for id_b, file_b, seed_b, _, wrong_b in listed[i + 1:]:
            if seed_a == seed_b:
                chance = len(wrong_a) * len(wrong_b) / queries
                lines.append(f"| {id_a} ({file_a}) | {id_b} ({file_b}) | {len(wrong_a):,} | {len(wrong_b):,} | "
                             f"{len(wrong_a & wrong_b):,} | {chance:.2f} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("patterns", nargs="+", help="fnmatch patterns on run ids")
    parser.add_argument("--setting", default="N256-T1024", help="the setting's name (default: N256-T1024)")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results",
                        help="folder with the sweep files (default: benchmarks/results)")
    parser.add_argument("--overlap", action="store_true",
                        help="also list how many wrong queries each two runs on the same seed's data share")
    args = parser.parse_args(argv)
    if not args.results.is_dir():
        print(f"mqar_error_profile.py: --results: no folder {args.results}", file=sys.stderr)
        return 2
    try:
        matched, lines, listed = table_rows(args.results, args.patterns, args.setting)
    except SummaryError as error:
        print(f"mqar_error_profile.py: --results: {error}", file=sys.stderr)
        return 2
    if not matched:
        print(f"no finished run matches {args.patterns}", file=sys.stderr)
        return 1
    if not lines:
        print(f"mqar_error_profile.py: --setting: no matching run was scored on {args.setting!r} (names look like "
              "N256-T1024)", file=sys.stderr)
        return 2
    print(f"{args.setting}: accuracy by quarter of the pairs (first written first) and of each sequence's queries "
          "(first asked first)")
    print()
    print("| run | file | state | accuracy | in fp32 | errors of queries | by pair quarter | by query quarter "
          "| errors after the same key, of such queries | errors after an earlier copy of the key, of such queries "
          "| errors on the last pair written, of such queries (of those whose first random token is a key-range "
          "token) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(lines))
    pairs = overlap_lines(listed) if args.overlap else []
    if args.overlap:
        print()
        print("wrong queries two runs share (runs that listed theirs, on the same seed's data):" if pairs else
              "no two matching runs listed their wrong queries on the same seed's data")
    if pairs:
        print()
        print("| run | other run | its errors | the other's | shared | shared by chance |")
        print("|---|---|---|---|---|---|")
        print("\n".join(pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
