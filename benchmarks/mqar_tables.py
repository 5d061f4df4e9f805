"""The MQAR tables of docs/RESULTS.md, printed as Markdown from the committed sweep summaries.

    python benchmarks/mqar_tables.py                       # every table, from benchmarks/results/
    python benchmarks/mqar_tables.py --results DIR         # summaries elsewhere (mqar*.json, ablations*.json)
    python benchmarks/mqar_tables.py --write docs/RESULTS.md   # replace the tables between the document's markers

Reads NAME.json (one row per model at its best lr) and NAME_sweep.json (every run) for NAME in mqar,
mqar_paper_arch, mqar_seeds and ablations; a missing file leaves its tables out. Accuracies are 7-setting means.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a sibling script, not a package
from mqar_doc_io import BEGIN_MARKER, END_MARKER, SummaryError, load, read_json, write_into  # noqa: E402,F401

PAPER_POINTS = ((7.7e3, 0.78), (1.4e4, 0.87), (2.6e4, 0.97))  # the paper's RAM-Net MQAR points (state, accuracy)
BASELINES = ("deltanet", "gated_deltanet", "gla")
EQUAL_STATE = 1.35  # "equal state": sizes within this factor of each other
MIN_BASELINE_LRS = 2  # learning rates a baseline must have run at before RAM-Net is judged against it
SEEDS = 3  # seeds per equal-state row (seed 0 in main.yaml, 1 and 2 in seeds.yaml): the seed verdicts' count
LEARNED = 0.05  # a 7-setting mean below this is the loss plateau (chance is about 1 / 4,096 values)
SETTINGS = ("N4-T64", "N8-T64", "N16-T64", "N32-T128", "N64-T256", "N128-T512", "N256-T1024")


def per_setting(sweep: dict, row: dict) -> list[str]:
    """The row's accuracy on each setting, from its run at the row's lr (first seed)."""
    for run in sweep.get("runs", []):
        if run["label"] == row["label"] and run["lr"] == row["lr"]:
            return [f"{run['accuracies'].get(s, float('nan')):.2f}" for s in SETTINGS]
    return ["-"] * len(SETTINGS)


def lr_sweep(row: dict) -> str:
    return ", ".join(f"{float(lr):g}: {acc:.3f}" for lr, acc in row["lr_sweep"].items())


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def model_table(rows: list[dict], sweep: dict, short_conv_columns: bool = True) -> str:
    extra = (lambda r: [r["model"], "yes" if r.get("short_conv") else "no"]) if short_conv_columns else \
        (lambda r: [])
    body = [[r["label"], *extra(r), f"{r['state_size']:,}", f"**{r['accuracy']:.3f}**", *per_setting(sweep, r),
             lr_sweep(r), f"{r['seconds']:.0f}"] for r in sorted(rows, key=lambda r: (r["model"], r["state_size"]))]
    header = ["label", *(["model", "short conv"] if short_conv_columns else []), "state", "mean", *SETTINGS,
              "lr: mean", "s"]
    return table(header, body)


def paper_points(rows: list[dict]) -> str:
    """Each paper point against the RAM-Net rows within EQUAL_STATE of its state size."""
    body = []
    for state, accuracy in PAPER_POINTS:
        near = [r for r in rows if r["model"] == "ramnet" and 1 / EQUAL_STATE <= r["state_size"] / state <= EQUAL_STATE]
        for r in sorted(near, key=lambda r: -r["accuracy"]):
            gap = r["accuracy"] - accuracy
            verdict = "above" if gap > 0.05 else ("within 0.05" if gap >= -0.05 else "below")
            body.append([f"{state:.2g}", accuracy, r["label"], "short conv" if r["short_conv"] else "paper (no conv)",
                         f"{r['state_size']:,}", f"{r['accuracy']:.3f}", f"{gap:+.3f}", verdict])
        if not near:
            body.append([f"{state:.2g}", accuracy, "(no run)", "", "", "", "", ""])
    return table(["paper state", "paper acc", "ours", "architecture", "state", "acc", "ours - paper", "verdict"],
                 body)


def against_baselines(rows: list[dict]) -> str:
    """Each RAM-Net row against the best fla baseline within EQUAL_STATE of its state size."""
    body = []
    for r in sorted((r for r in rows if r["model"] == "ramnet"), key=lambda r: r["state_size"]):
        near = [b for b in rows if b["model"] in BASELINES
                and 1 / EQUAL_STATE <= b["state_size"] / r["state_size"] <= EQUAL_STATE]
        if not near:
            body.append([r["label"], f"{r['state_size']:,}", f"{r['accuracy']:.3f}", "(none run)", "", "", ""])
            continue
        b = max(near, key=lambda b: b["accuracy"])
        # a baseline at one learning rate may just sit on the loss plateau, so a RAM-Net row at or above it gets no
        # verdict before the baseline's lr sweep; one below it is a "no" already (more lrs only raise its best)
        if r["accuracy"] < b["accuracy"]:
            verdict = "no"
        elif len(b["lr_sweep"]) >= MIN_BASELINE_LRS:
            verdict = "yes"
        else:
            verdict = f"not yet (baseline at {len(b['lr_sweep'])} lr)"
        body.append([r["label"], f"{r['state_size']:,}", f"{r['accuracy']:.3f}", b["label"], f"{b['state_size']:,}",
                     f"{b['accuracy']:.3f}", verdict])
    return table(["RAM-Net", "state", "acc", "best fla baseline within 1.35x", "state", "acc", "RAM-Net >="], body)


def _same_model(a: dict, b: dict) -> bool:
    return json.dumps(a.get("config"), sort_keys=True) == json.dumps(b.get("config"), sort_keys=True)


def seed_runs(main_sweep: dict, seeds_sweep: dict) -> dict[tuple[str, float], dict[int, dict]]:
    """(label, lr) -> {seed: run} for every (label, lr) of the seeds sweep, with main.yaml's runs of the same label,
    lr and model config (a changed entry's seed 0 is left out, not averaged in)."""
    runs: dict[tuple[str, float], dict[int, dict]] = {}
    for run in seeds_sweep.get("runs", []):
        runs.setdefault((run["label"], run["lr"]), {})[run["seed"]] = run
    for run in main_sweep.get("runs", []):
        group = runs.get((run["label"], run["lr"]))
        if group and run["seed"] not in group and _same_model(run, next(iter(group.values()))):
            group[run["seed"]] = run
    return runs


def _mean_range(accs: list[float], seeds: int) -> tuple[float, float]:
    """The lowest and highest mean over ``seeds`` seeds that ``accs`` can end at: the missing seeds at 0, then at 1
    (an accuracy's bounds). Summed as one list, as the table's mean is, so a complete row gives its mean exactly."""
    missing = seeds - len(accs)
    return sum([*accs, *[0.0] * missing]) / seeds, sum([*accs, *[1.0] * missing]) / seeds


def _round_out(value: float, up: bool) -> str:
    """Five decimals, rounded away from the verdict's side, so a printed bound is never stronger than the true one."""
    scaled = value * 1e5
    return f"{(math.ceil(scaled) if up else math.floor(scaled)) / 1e5:.5f}"


def _seed_verdict(ramnet_accs: list[float], baselines: list[list[float]]) -> str:
    """Is RAM-Net's mean over seeds at or above the best baseline's (``baselines``: the accuracies per seed of
    every baseline row in its band)? The verdict is on means over k = max(SEEDS, every row's count) seeds, each
    row's missing seeds filled at 0 and at 1. With no seed missing that is "yes" / "no" on the means. With some
    missing, the verdict is given only if no filling can change it (RAM-Net's highest mean below the best
    baseline's lowest: "no"; its lowest at or above every baseline's highest: "yes"), with the two bounds that
    decide it; otherwise "not yet"."""
    k = max(SEEDS, len(ramnet_accs), *map(len, baselines))
    ram_low, ram_high = _mean_range(ramnet_accs, k)
    ranges = [_mean_range(accs, k) for accs in baselines]
    base_low, base_high = max(low for low, _ in ranges), max(high for _, high in ranges)
    complete = all(len(accs) == k for accs in (ramnet_accs, *baselines))
    if ram_high < base_low:
        return "no" if complete else (f"no (over {k} seeds RAM-Net at most {_round_out(ram_high, up=True)}, "
                                      f"the best baseline at least {_round_out(base_low, up=False)})")
    if ram_low >= base_high:
        return "yes" if complete else (f"yes (over {k} seeds RAM-Net at least {_round_out(ram_low, up=False)}, "
                                       f"the best baseline at most {_round_out(base_high, up=True)})")
    best = max(baselines, key=lambda accs: sum(accs) / len(accs))
    if len(ramnet_accs) == len(best) == k:  # another baseline of the band could still overtake the best
        return f"not yet (a baseline in the band has fewer than {k} seeds)"
    return f"not yet ({len(ramnet_accs)} against {len(best)} seeds)"


def signed_difference(difference: float, places: int) -> str:
    """``difference`` with a sign and ``places`` decimals, or as many more (up to 9) as it takes to show a digit
    that is not 0: two seed means a few millionths apart must not print as "+0.00000" beside a "yes". A
    difference under 1e-12 is float noise from averaging equal means and prints as "+0.000..." at ``places``."""
    if abs(difference) < 1e-12:
        return f"{0.0:+.{places}f}"
    while places < 9 and round(abs(difference), places) == 0:
        places += 1
    return f"{difference:+.{places}f}"


def seeds_table(main_sweep: dict, seeds_sweep: dict) -> str:
    """Every (label, lr) of seeds.yaml with its accuracy per seed, the mean and the spread, and each RAM-Net row
    against the best baseline within EQUAL_STATE by the mean over seeds (a verdict once no missing seed can change
    it: see _seed_verdict)."""
    runs = seed_runs(main_sweep, seeds_sweep)
    seeds = sorted({seed for group in runs.values() for seed in group})
    rows = []
    for (label, lr), by_seed in runs.items():
        accs = [run["accuracy"] for run in by_seed.values()]
        first = next(iter(by_seed.values()))
        rows.append({"label": label, "lr": lr, "model": first["model"], "state_size": first["state_size"],
                     "accs": {s: run["accuracy"] for s, run in by_seed.items()}, "mean": sum(accs) / len(accs),
                     "spread": max(accs) - min(accs) if len(accs) > 1 else None})
    rows.sort(key=lambda r: (r["state_size"], r["model"] != "ramnet", r["label"]))
    body = [[r["label"], f"{r['lr']:g}", f"{r['state_size']:,}",
             *[f"{r['accs'][s]:.4f}" if s in r["accs"] else "-" for s in seeds],  # four decimals: see the pairs
             f"**{r['mean']:.4f}**", "-" if r["spread"] is None else f"{r['spread']:.4f}", len(r["accs"])]
            for r in rows]
    out = [table(["label", "lr", "state", *[f"seed {s}" for s in seeds], "mean", "max - min", "seeds"], body)]
    pairs = []
    for r in (r for r in rows if r["model"] == "ramnet"):
        near = [b for b in rows if b["model"] in BASELINES
                and 1 / EQUAL_STATE <= b["state_size"] / r["state_size"] <= EQUAL_STATE]
        if near:
            b = max(near, key=lambda b: b["mean"])
            n, m = len(r["accs"]), len(b["accs"])
            verdict = _seed_verdict(list(r["accs"].values()), [list(near_b["accs"].values()) for near_b in near])
            # four decimals: near the ceiling the pairs differ by 0.0001-0.0003, which three decimals print as
            # "1.000 ... -0.000"
            pairs.append([r["label"], f"{r['lr']:g}", f"{r['mean']:.4f} ({n})", b["label"], f"{b['lr']:g}",
                          f"{b['mean']:.4f} ({m})",
                          signed_difference(r['mean'] - b['mean'], 4), verdict])
    if pairs:
        out.append(table(["RAM-Net", "lr", "mean (seeds)", "best fla baseline within 1.35x", "lr", "mean (seeds)",
                          "difference", "RAM-Net >="], pairs))
    return "\n\n".join(out)


def _seeded_rows(main_sweep: dict, seeds_sweep: dict) -> list[dict]:
    """Every (label, lr) row of the seeds sweep (with main.yaml's seed 0), with its accuracies and their mean."""
    rows = []
    for (label, lr), by_seed in seed_runs(main_sweep, seeds_sweep).items():
        first, accs = next(iter(by_seed.values())), [run["accuracy"] for run in by_seed.values()]
        rows.append({"label": label, "lr": lr, "model": first["model"], "state_size": first["state_size"],
                     "accs": accs, "mean": sum(accs) / len(accs)})
    return rows


def _seeds_apart(ramnet_accs: list[float], baseline_accs: list[float]) -> str:
    if min(ramnet_accs) > max(baseline_accs):
        return "every RAM-Net seed above every baseline seed"
    if max(ramnet_accs) < min(baseline_accs):
        return "every baseline seed above every RAM-Net seed"
    return "ranges overlap"


def band_table(main_sweep: dict, seeds_sweep: dict) -> str:
    """The goal "RAM-Net >= the best fla baseline at equal state", one line per state size of a baseline with at
    least SEEDS seeds: that size's best such baseline (by its mean over seeds) and the RAM-Net row within
    EQUAL_STATE of it that answers the goal best. Only RAM-Net rows with at least SEEDS seeds count. Each gets
    _seed_verdict's verdict against every seeded baseline within EQUAL_STATE of its own state (a baseline short of
    seeds included, so that a verdict it could still change is withheld, as in the seed pairs). The row shown is a
    "yes" if there is one, else the highest mean; its verdict names the deciding baseline when that is not the
    band's own. Ties go to the smaller state, then the label, so the table does not depend on the files' order."""
    rows = _seeded_rows(main_sweep, seeds_sweep)
    baselines = [r for r in rows if r["model"] in BASELINES]
    full = [b for b in baselines if len(b["accs"]) >= SEEDS]

    def within(row: dict, state: int) -> bool:
        return 1 / EQUAL_STATE <= row["state_size"] / state <= EQUAL_STATE

    def rank(x: dict) -> tuple:
        return x["mean"], -x["state_size"], x["label"], -x["lr"]

    def seeds(row: dict) -> str:
        return f"{row['mean']:.5f} ({min(row['accs']):.5f}-{max(row['accs']):.5f})"

    def verdict_of(r: dict) -> str:
        return _seed_verdict(r["accs"], [x["accs"] for x in baselines if within(x, r["state_size"])])

    body = []
    for state in sorted({b["state_size"] for b in full}):
        b = max((x for x in full if x["state_size"] == state), key=rank)
        line = [f"{state:,}", f"{b['label']} ({b['lr']:g})", seeds(b)]
        near = [(r, verdict_of(r)) for r in rows
                if r["model"] == "ramnet" and len(r["accs"]) >= SEEDS and within(r, state)]
        if not near:
            body.append([*line, f"(no RAM-Net row with {SEEDS} seeds)", *[""] * 5])
            continue
        r, verdict = max(near, key=lambda pair: (pair[1].startswith("yes"), *rank(pair[0])))
        rival = max((x for x in baselines if within(x, r["state_size"])), key=rank)
        if rival["mean"] > b["mean"]:
            verdict += f" (against {rival['label']})"
        body.append([*line, f"{r['label']} ({r['lr']:g})", f"{r['state_size'] / state:.2f}x", seeds(r),
                     signed_difference(r['mean'] - b['mean'], 5), _seeds_apart(r["accs"], b["accs"]), verdict])
    return table(["fla state", "best fla baseline (lr)", "mean over seeds (range)",
                  f"best RAM-Net within {EQUAL_STATE}x (lr)", "its state", "mean over seeds (range)",
                  "difference", "seeds", "RAM-Net >="], body)


def state_to_match(rows: list[dict], main_sweep: dict, seeds_sweep: dict) -> str:
    """For each state size of the fla baselines, its best baseline and the smallest RAM-Net row that reaches it:
    first by single runs (every row at its best lr, seed 0), then by the mean over three seeds where both have them.
    The ratio of the two state sizes says how much state the smallest such row has: an upper bound on what RAM-Net
    needs, on the grid of rows that ran (at most EQUAL_STATE counts as equal). A baseline below LEARNED gets no
    ratio."""
    means = {}
    for (label, lr), by_seed in seed_runs(main_sweep, seeds_sweep).items():
        if len(by_seed) >= SEEDS:
            first = next(iter(by_seed.values()))
            mean = sum(run["accuracy"] for run in by_seed.values()) / len(by_seed)
            if mean > means.get(label, {}).get("mean", -1):
                means[label] = {"label": label, "model": first["model"], "state_size": first["state_size"],
                                "mean": mean}

    def smallest_reaching(candidates: list[dict], key: str, target: float) -> list[str]:
        reach = [r for r in candidates if r["model"] == "ramnet" and r[key] >= target]
        if not reach:
            best = max((r for r in candidates if r["model"] == "ramnet"), key=lambda r: r[key], default=None)
            return ["(none)", "", "", "" if best is None else f"best {best[key]:.4f} ({best['label']})"]
        r = min(reach, key=lambda r: (r["state_size"], -r[key]))
        return [r["label"], f"{r['state_size']:,}", f"{r[key]:.3f}", f"{r['state_size'] / state:.2f}x"]

    body = []
    for state in sorted({r["state_size"] for r in rows if r["model"] in BASELINES}):
        b = max((r for r in rows if r["model"] in BASELINES and r["state_size"] == state), key=lambda r: r["accuracy"])
        if b["accuracy"] < LEARNED:  # any RAM-Net row "reaches" a baseline on the plateau: no ratio to give
            body.append([b["label"], f"{state:,}", f"{b['accuracy']:.3f}", "(baseline did not learn)", *[""] * 3,
                         *["-"] * 5])
            continue
        line = [b["label"], f"{state:,}", f"{b['accuracy']:.3f}", *smallest_reaching(rows, "accuracy", b["accuracy"])]
        bm = means.get(b["label"])
        line += (["-"] * 5 if bm is None else
                 [f"{bm['mean']:.3f}", *smallest_reaching(list(means.values()), "mean", bm["mean"])])
        body.append(line)
    return table(["best fla baseline", "state", "acc", "smallest RAM-Net at or above", "state", "acc", "ratio",
                  "baseline 3-seed mean", "smallest RAM-Net at or above (3-seed mean)", "state", "mean", "ratio"],
                 body)


def ablation_tables(rows: list[dict], sweep: dict) -> str:
    """One table per ablation; CAPE, gamma and K also show their base row, M256-U4."""
    base = next((r for r in rows if r["label"] == "M256-U4"), None)
    out = []
    for kind in dict.fromkeys((r.get("tags") or {}).get("ablation") for r in rows):
        group = [r for r in rows if (r.get("tags") or {}).get("ablation") == kind]
        if kind != "U" and base is not None:
            group = [base, *group]
        keys = [k for k in (group[-1].get("tags") or {}) if k != "ablation"]
        body = [[r["label"], *[(r.get("tags") or {}).get(k, "base") for k in keys], f"{r['state_size']:,}",
                 f"**{r['accuracy']:.3f}**", *per_setting(sweep, r), lr_sweep(r)] for r in group]
        out.append(f"**{kind}**\n\n" + table(["label", *keys, "state", "mean", *SETTINGS, "lr: mean"], body))
    return "\n\n".join(out)


def _tables(results: Path) -> str | None:
    """Every table from the summaries in ``results``, or None when it holds none."""
    main_rows, main_sweep = load(results, "mqar")
    arch_rows, arch_sweep = load(results, "mqar_paper_arch")
    abl_rows, abl_sweep = load(results, "ablations")
    if not (main_rows or arch_rows or abl_rows):
        return None
    sections = []
    if main_rows:
        sections += ["### Every model at its best learning rate (main.yaml)", model_table(main_rows, main_sweep)]
    if arch_rows:
        sections += ["### The paper's architecture and its candidate fixes (paper_arch.yaml)",
                     model_table(arch_rows, arch_sweep)]
    if main_rows or arch_rows:
        sections += ["### The paper's points", paper_points(main_rows + arch_rows)]
    if main_rows:
        sections += ["### RAM-Net against the fla baselines at equal state", against_baselines(main_rows)]
    seeds_file = results / "mqar_seeds_sweep.json"  # its runs are enough; mqar_seeds.json is not needed
    seeds_sweep = read_json(seeds_file, dict) if seeds_file.is_file() else {}
    if seeds_sweep.get("runs"):
        sections += ["### RAM-Net against the best fla baseline, band by band (means over seeds)",
                     band_table(main_sweep, seeds_sweep)]
        sections += ["### More seeds for the equal-state pairs (seeds.yaml, seed 0 from main.yaml)",
                     seeds_table(main_sweep, seeds_sweep)]
    if main_rows:
        sections += ["### How much state RAM-Net needs to reach each fla baseline",
                     state_to_match(main_rows, main_sweep, seeds_sweep)]
    if abl_rows:
        sections += ["### Ablations (ablations.yaml)", ablation_tables(abl_rows, abl_sweep)]
    return "\n\n".join(sections)



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(Path(__file__).parent / "results"),
                        help="folder with the sweep summaries (default: benchmarks/results)")
    parser.add_argument("--write", metavar="DOC", default=None,
                        help="put the tables into DOC between its marker lines instead of printing them")
    args = parser.parse_args(argv)
    results = Path(args.results)
    if not results.is_dir():
        print(f"error: --results {results} is not a folder", file=sys.stderr)
        return 2
    try:
        tables = _tables(results)
    except SummaryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, AttributeError) as error:  # a row or run without a field the tables need
        print(f"error: a summary in {results} is not what a sweep writes ({type(error).__name__}: {error})",
              file=sys.stderr)
        return 2
    if tables is None:
        print(f"error: no sweep summary (mqar.json, mqar_paper_arch.json, ablations.json) in {results}",
              file=sys.stderr)
        return 2
    if args.write is None:
        print(tables)
        return 0
    error = write_into(Path(args.write), tables)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote the tables into {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
