"""``benchmarks/mqar_tables.py`` prints RESULTS.md's MQAR tables from the sweep summaries. Its verdicts (the paper's
points, RAM-Net against the best baseline at equal state) must follow the numbers, and a bad folder gets one line."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "mqar_tables.py"
_spec = importlib.util.spec_from_file_location("mqar_tables", SCRIPT)  # a script, not a package: load it by path
_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tables)


def _row(label, model, state, accuracy, short_conv=True, tags=None, lrs=2):
    lr_sweep = {"0.001": accuracy, "0.003": accuracy / 2, "0.01": accuracy / 3}
    return {"label": label, "model": model, "state_size": state, "accuracy": accuracy, "lr": 0.001,
            "short_conv": short_conv, "seconds": 10.0, "lr_sweep": dict(list(lr_sweep.items())[:lrs]),
            "tags": tags or {}}


def _write(folder: Path, name: str, rows: list[dict]) -> None:
    (folder / f"{name}.json").write_text(json.dumps(rows))
    runs = [{"label": r["label"], "lr": r["lr"], "accuracies": {"N4-T64": 0.5}} for r in rows]
    (folder / f"{name}_sweep.json").write_text(json.dumps({"runs": runs}))


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def _line(out: str, start: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(start))


def test_verdicts_follow_the_numbers(tmp_path):
    _write(tmp_path, "mqar", [
        _row("ram-8k", "ramnet", 8192, 0.70),       # 0.78 - 0.08: below
        _row("ram-16k", "ramnet", 16384, 0.90),     # 0.87 + 0.03: within
        _row("ram-27k", "ramnet", 26624, 0.99),     # 0.97 + 0.02: within
        _row("dn-8k", "deltanet", 8192, 0.75),      # beats ram-8k
        _row("gla-19k", "gla", 19000, 0.50),        # 19000 / 16384 < 1.35 < 26624 / 19000: ram-16k only
        _row("dn-40k", "deltanet", 40000, 0.99),    # 40000 / 26624 > 1.35: not compared with ram-27k
        _row("ram-3k", "ramnet", 3072, 0.68),
        _row("dn-4k", "deltanet", 4096, 0.0, lrs=1),  # one lr only: maybe the plateau, so no verdict yet
        _row("ram-66k", "ramnet", 65536, 0.96),
        _row("dn-66k", "deltanet", 65536, 1.0, lrs=1),  # one lr, but above RAM-Net: more lrs only raise it
    ])
    result = _run("--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "| -0.080 | below |" in _line(out, "| 7.7e+03 | 0.78 | ram-8k")
    assert "| +0.030 | within 0.05 |" in _line(out, "| 1.4e+04 | 0.87 | ram-16k")
    assert _line(out, "| ram-8k | 8,192 |").endswith("| dn-8k | 8,192 | 0.750 | no |")
    assert _line(out, "| ram-16k | 16,384 |").endswith("| gla-19k | 19,000 | 0.500 | yes |")
    assert "(none run)" in _line(out, "| ram-27k | 26,624 |")
    assert _line(out, "| ram-3k | 3,072 |").endswith("| dn-4k | 4,096 | 0.000 | not yet (baseline at 1 lr) |")
    assert _line(out, "| ram-66k | 65,536 |").endswith("| dn-66k | 65,536 | 1.000 | no |")
    assert "Ablations" not in out  # no ablations.json: no table


def test_ablations_show_the_base_row_beside_each_change(tmp_path):
    _write(tmp_path, "ablations", [
        _row("M256-U4", "ramnet", 17408, 0.9, tags={"ablation": "U", "M": 256, "U": 4}),
        _row("K2", "ramnet", 17408, 0.4, tags={"ablation": "K", "K": 2}),
    ])
    result = _run("--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    k_table = result.stdout.split("**K**")[1]
    assert "| M256-U4 | base |" in k_table and "| K2 | 2 |" in k_table


def test_a_folder_without_summaries_gets_one_line(tmp_path):
    for args in (["--results", str(tmp_path)], ["--results", str(tmp_path / "missing")]):
        result = _run(*args)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error:")


def test_a_summary_that_is_not_what_a_sweep_writes_gets_one_line_naming_it(tmp_path):
    """A corrupt file, a JSON of the wrong kind, or a row without a field the tables need: one line on stderr and
    exit 2, never a traceback."""
    cases = [("mqar.json", "{not json", "mqar.json cannot be read as JSON"),
             ("mqar.json", '{"runs": []}', "mqar.json holds a JSON dict, not the list a sweep writes"),
             ("mqar.json", '[{"label": "x"}]', "is not what a sweep writes (KeyError: "),
             ("mqar_sweep.json", "[]", "mqar_sweep.json holds a JSON list, not the dict a sweep writes"),
             ("mqar_seeds_sweep.json", b"\xff\xfe", "mqar_seeds_sweep.json cannot be read as JSON")]
    for name, content, message in cases:
        folder = tmp_path / name.replace(".", "_") / str(len(content))
        folder.mkdir(parents=True)
        _write(folder, "mqar", [_row("ram-8k", "ramnet", 8192, 0.7)])
        target = folder / name
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
        result = _run("--results", str(folder))
        assert result.returncode == 2 and result.stdout == "", (name, result)
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and message in result.stderr, \
            (name, result.stderr)


def test_seeds_come_together_from_both_summaries_and_decide_by_the_mean(tmp_path):
    """seed 0 from mqar_sweep.json (same label, lr and model config), seeds 1 and 2 from mqar_seeds_sweep.json; the
    verdict uses the means, and only at equal seed counts."""
    def run(label, model, state, lr, seed, accuracy, config=None):
        return {"label": label, "model": model, "state_size": state, "lr": lr, "seed": seed, "accuracy": accuracy,
                "accuracies": {"N4-T64": accuracy}, "config": config or {"d_v": 11}}

    _write(tmp_path, "mqar", [_row("ram-3k", "ramnet", 3072, 0.70), _row("dn-4k", "deltanet", 4096, 0.72)])
    main = json.loads((tmp_path / "mqar_sweep.json").read_text())
    main["runs"] = [run("ram-3k", "ramnet", 3072, 0.001, 0, 0.70), run("dn-4k", "deltanet", 4096, 0.003, 0, 0.72),
                    run("ram-3k", "ramnet", 3072, 0.003, 0, 0.10),  # another lr: not part of the seed rows
                    run("ram-16k", "ramnet", 16384, 0.001, 0, 0.90, config={"d_v": 15}),
                    run("dn-16k", "deltanet", 16384, 0.003, 0, 0.95)]
    (tmp_path / "mqar_sweep.json").write_text(json.dumps(main))
    seeds = [run("ram-3k", "ramnet", 3072, 0.001, 1, 0.80), run("ram-3k", "ramnet", 3072, 0.001, 2, 0.78),
             run("dn-4k", "deltanet", 4096, 0.003, 1, 0.70), run("dn-4k", "deltanet", 4096, 0.003, 2, 0.70),
             run("ram-16k", "ramnet", 16384, 0.001, 1, 0.91, config={"d_v": 16}),  # main's seed 0 differs
             run("dn-16k", "deltanet", 16384, 0.003, 1, 0.90)]
    (tmp_path / "mqar_seeds_sweep.json").write_text(json.dumps({"runs": seeds}))  # no mqar_seeds.json needed
    result = _run("--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout.split("More seeds")[1]
    assert _line(out, "| ram-3k | 0.001 |") == \
        "| ram-3k | 0.001 | 3,072 | 0.7000 | 0.8000 | 0.7800 | **0.7600** | 0.1000 | 3 |"
    assert _line(out, "| ram-16k | 0.001 |") == "| ram-16k | 0.001 | 16,384 | - | 0.9100 | - | **0.9100** | - | 1 |"
    assert _line(out, "| ram-3k | 0.001 | 0.7600 (3) |").endswith("| dn-4k | 0.003 | 0.7067 (3) | +0.0533 | yes |")
    assert _line(out, "| ram-16k | 0.001 | 0.9100 (1) |").endswith(
        "| dn-16k | 0.003 | 0.9250 (2) | -0.0150 | not yet (1 against 2 seeds) |")


def test_seed_means_near_the_ceiling_keep_their_difference(tmp_path):
    """Means of 0.9999 against 1.0000 differ in the fourth decimal; the pair table must not print them as equal
    ("1.000", "-0.000")."""
    def run(label, model, state, seed, accuracy):
        return {"label": label, "model": model, "state_size": state, "lr": 0.001, "seed": seed, "accuracy": accuracy,
                "accuracies": {"N4-T64": accuracy}, "config": {}}

    _write(tmp_path, "mqar", [_row("ram-88k", "ramnet", 88064, 0.99988), _row("dn-66k", "deltanet", 65536, 0.99998)])
    (tmp_path / "mqar_sweep.json").write_text(json.dumps({"runs": [
        run("ram-88k", "ramnet", 88064, 0, 0.99988), run("dn-66k", "deltanet", 65536, 0, 0.99998)]}))
    (tmp_path / "mqar_seeds_sweep.json").write_text(json.dumps({"runs": [
        run("ram-88k", "ramnet", 88064, 1, 0.99992), run("ram-88k", "ramnet", 88064, 2, 0.99989),
        run("dn-66k", "deltanet", 65536, 1, 0.99998), run("dn-66k", "deltanet", 65536, 2, 0.99996)]}))
    result = _run("--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout.split("More seeds")[1]
    assert _line(out, "| ram-88k | 0.001 | 0.9999 (3) |").endswith("| dn-66k | 0.001 | 1.0000 (3) | -0.0001 | no |")
    assert _line(out, "| ram-88k | 0.001 | 88,064 |") == \
        "| ram-88k | 0.001 | 88,064 | 0.9999 | 0.9999 | 0.9999 | **0.9999** | 0.0000 | 3 |"
    assert _line(out, "| dn-66k | 0.001 | 65,536 |") == \
        "| dn-66k | 0.001 | 65,536 | 1.0000 | 1.0000 | 1.0000 | **1.0000** | 0.0000 | 3 |"


def test_state_to_match_picks_the_smallest_ramnet_that_reaches_each_baseline(tmp_path):
    """Single runs: the smallest RAM-Net row at or above the best baseline of each state, and the ratio; none when
    no row reaches it. Seed means: only labels with three seeds count."""
    _write(tmp_path, "mqar", [
        _row("ram-4k", "ramnet", 4096, 0.70), _row("ram-8k", "ramnet", 8192, 0.95),
        _row("ram-16k", "ramnet", 16384, 0.97),
        _row("dn-4k", "deltanet", 4096, 0.90), _row("gla-4k", "gla", 4096, 0.20),  # the best at 4,096 is dn-4k
        _row("dn-16k", "deltanet", 16384, 0.99),
        _row("gla-2k", "gla", 2048, 0.01),  # on the plateau: every RAM-Net row would "reach" it
    ])

    def run(label, model, state, seed, accuracy):
        return {"label": label, "model": model, "state_size": state, "lr": 0.001, "seed": seed, "accuracy": accuracy,
                "accuracies": {"N4-T64": accuracy}, "config": {}}
    main = {"runs": [run("ram-8k", "ramnet", 8192, 0, 0.95), run("ram-16k", "ramnet", 16384, 0, 0.97),
                     run("dn-4k", "deltanet", 4096, 0, 0.90)]}
    (tmp_path / "mqar_sweep.json").write_text(json.dumps(main))
    seeds = [run("ram-8k", "ramnet", 8192, 1, 0.80), run("ram-8k", "ramnet", 8192, 2, 0.80),  # mean 0.85
             run("ram-16k", "ramnet", 16384, 1, 0.97),  # two seeds only: left out of the means
             run("dn-4k", "deltanet", 4096, 1, 0.80), run("dn-4k", "deltanet", 4096, 2, 0.80)]  # mean 0.833
    (tmp_path / "mqar_seeds_sweep.json").write_text(json.dumps({"runs": seeds}))
    result = _run("--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout.split("How much state")[1]
    assert _line(out, "| dn-4k |") == \
        "| dn-4k | 4,096 | 0.900 | ram-8k | 8,192 | 0.950 | 2.00x | 0.833 | ram-8k | 8,192 | 0.850 | 2.00x |"
    assert _line(out, "| dn-16k |") == \
        "| dn-16k | 16,384 | 0.990 | (none) |  |  | best 0.9700 (ram-16k) | - | - | - | - | - |"
    assert "gla-4k" not in out
    assert _line(out, "| gla-2k |").startswith("| gla-2k | 2,048 | 0.010 | (baseline did not learn) |")


def test_missing_seeds_that_cannot_change_the_verdict_give_it_with_both_bounds(tmp_path):
    """Two RAM-Net seeds at 0.99853 and 0.99573 against three baseline seeds with a mean of 0.99848: even a third
    seed at 1.0 leaves RAM-Net at most 0.99809, so the table says "no" now, with both bounds."""
    def run(label, model, state, seed, accuracy):
        return {"label": label, "model": model, "state_size": state, "lr": 0.001, "seed": seed, "accuracy": accuracy,
                "accuracies": {"N4-T64": accuracy}, "config": {}}

    seeds = {"ram-44k": ("ramnet", 44032, [0.99853, 0.99573]), "dn-33k": ("deltanet", 32768, [0.99912, 0.99768, 0.99863])}
    _write(tmp_path, "mqar", [_row(label, model, state, accs[0]) for label, (model, state, accs) in seeds.items()])
    runs = [run(label, model, state, seed, acc) for label, (model, state, accs) in seeds.items()
            for seed, acc in enumerate(accs)]
    (tmp_path / "mqar_sweep.json").write_text(json.dumps({"runs": [r for r in runs if r["seed"] == 0]}))
    (tmp_path / "mqar_seeds_sweep.json").write_text(json.dumps({"runs": [r for r in runs if r["seed"] > 0]}))
    result = _run("--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert _line(result.stdout.split("More seeds")[1], "| ram-44k | 0.001 | 0.9971 (2) |").endswith(
        "| -0.0013 | no (over 3 seeds RAM-Net at most 0.99809, the best baseline at least 0.99847) |")


def test_seed_verdicts_decide_only_what_no_missing_seed_can_change():
    """Dyadic accuracies, so that the ties are exact in floating point. The verdict is on means over three seeds
    (or more, if a row has more); each row's missing seeds may land anywhere in [0, 1]."""
    verdict = _tables._seed_verdict
    # complete rows: the means decide, and a tie is "yes"
    assert verdict([0.5] * 3, [[0.75, 0.25, 0.5]]) == "yes"
    assert verdict([0.5, 0.5, 0.25], [[0.75, 0.25, 0.5]]) == "no"
    # RAM-Net short of seeds: its lowest mean ties the baseline's (yes), or its highest only ties it (open)
    assert verdict([0.75, 0.75], [[0.5] * 3]) == \
        "yes (over 3 seeds RAM-Net at least 0.50000, the best baseline at most 0.50000)"
    assert verdict([0.75, 0.75], [[1.0, 1.0, 0.5]]) == "not yet (2 against 3 seeds)"
    assert verdict([0.25, 0.25], [[0.75] * 3]) == \
        "no (over 3 seeds RAM-Net at most 0.50000, the best baseline at least 0.75000)"
    # the baseline short of seeds
    assert verdict([0.875] * 3, [[0.75, 0.25]]) == \
        "yes (over 3 seeds RAM-Net at least 0.87500, the best baseline at most 0.66667)"
    assert verdict([0.25] * 3, [[0.5, 0.5]]) == \
        "no (over 3 seeds RAM-Net at most 0.25000, the best baseline at least 0.33333)"
    assert verdict([0.75] * 3, [[0.75, 0.75]]) == "not yet (3 against 2 seeds)"
    # equal but short counts are still open: three seeds are the protocol
    assert verdict([0.75, 0.75], [[0.5, 0.5]]) == "not yet (2 against 2 seeds)"
    # a second baseline with fewer seeds could still overtake the best one now
    assert verdict([0.875] * 3, [[0.75] * 3, [0.75]]) == "not yet (a baseline in the band has fewer than 3 seeds)"
    assert verdict([0.875] * 3, [[0.75] * 3, [0.25]]) == \
        "yes (over 3 seeds RAM-Net at least 0.87500, the best baseline at most 0.75000)"
    assert verdict([0.25] * 3, [[0.75] * 3, [0.0]]) == \
        "no (over 3 seeds RAM-Net at most 0.25000, the best baseline at least 0.75000)"
    # a row with more seeds than three sets the count
    assert verdict([0.5] * 4, [[0.75] * 3]) == \
        "no (over 4 seeds RAM-Net at most 0.50000, the best baseline at least 0.56250)"


def test_printed_bounds_round_away_from_the_verdict():
    """A bound of 0.998413 prints as "at most 0.99842", never 0.99841 (which would claim more than is known)."""
    assert _tables._round_out(0.998413, up=True) == "0.99842"
    assert _tables._round_out(0.998477, up=False) == "0.99847"


def test_band_table_puts_each_baselines_best_seeded_rival_beside_it(tmp_path):
    """One line per baseline state with three seeds: its best baseline, and the RAM-Net row within 1.35x that
    answers the goal best (a "yes" before a higher mean; a row short of seeds left out however high its mean), with
    both seed ranges. The verdict is against every seeded baseline near the RAM-Net row's own state, one short of
    seeds included, and names that baseline when it is not the band's own. Decoys come first in the files, so that
    a "take the first" bug shows."""
    def seeded(label, model, state, accs, lr=0.001):
        return [{"label": label, "model": model, "state_size": state, "lr": lr, "seed": seed, "accuracy": acc,
                 "accuracies": {"N4-T64": acc}, "config": {}} for seed, acc in enumerate(accs)]

    _write(tmp_path, "mqar", [_row("dn-4k", "deltanet", 4096, 0.5)])
    runs = [*seeded("dn-4k-low", "deltanet", 4096, [0.25] * 3, lr=0.01),  # the same state, lower: not the band's
            *seeded("dn-4k", "deltanet", 4096, [0.5] * 3),
            *seeded("ram-5k", "ramnet", 5120, [0.25] * 3, lr=0.003),         # the same label's lower lr
            *seeded("ram-5k", "ramnet", 5120, [0.75, 0.625, 0.625]),         # every seed above: yes
            *seeded("ram-4k", "ramnet", 4096, [1.0, 1.0]),                   # two seeds only: left out
            *seeded("dn-16k", "deltanet", 16384, [0.75, 0.5, 0.5]),
            *seeded("ram-22k", "ramnet", 22016, [0.75, 0.5, 0.75]),          # the higher mean, but a "no" ...
            *seeded("ram-17k", "ramnet", 17408, [0.625] * 3),                # ... and this one a "yes"
            *seeded("dn-28k", "deltanet", 28000, [0.875] * 3),               # near ram-22k (1.27x), not dn-16k
            *seeded("dn-66k", "deltanet", 65536, [0.5] * 3),
            *seeded("ram-80k", "ramnet", 80000, [0.75] * 3),                 # above dn-66k, below dn-100k
            *seeded("dn-100k", "deltanet", 100000, [0.875] * 3),             # near ram-80k, not near 65,536
            *seeded("dn-131k", "deltanet", 131072, [0.5] * 3),
            *seeded("ram-140k", "ramnet", 140000, [0.625] * 3),
            *seeded("dn-150k", "deltanet", 150000, [0.875] * 2),             # two seeds: no band, but a rival
            *seeded("dn-1m", "deltanet", 1000000, [1.0] * 3)]                # no RAM-Net row near it
    (tmp_path / "mqar_sweep.json").write_text(json.dumps({"runs": [r for r in runs if r["seed"] == 0]}))
    (tmp_path / "mqar_seeds_sweep.json").write_text(json.dumps({"runs": [r for r in runs if r["seed"] > 0]}))
    result = _run("--results", str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout.split("band by band")[1].split("More seeds")[0]
    assert _line(out, "| 4,096 |") == ("| 4,096 | dn-4k (0.001) | 0.50000 (0.50000-0.50000) | ram-5k (0.001) | 1.25x "
                                       "| 0.66667 (0.62500-0.75000) | +0.16667 | every RAM-Net seed above every "
                                       "baseline seed | yes |")
    assert _line(out, "| 16,384 |").endswith("| ram-17k (0.001) | 1.06x | 0.62500 (0.62500-0.62500) | +0.04167 "
                                             "| ranges overlap | yes |")
    assert _line(out, "| 28,000 |").endswith("| ram-22k (0.001) | 0.79x | 0.66667 (0.50000-0.75000) | -0.20833 "
                                             "| every baseline seed above every RAM-Net seed | no |")
    assert _line(out, "| 65,536 |").endswith("| ram-80k (0.001) | 1.22x | 0.75000 (0.75000-0.75000) | +0.25000 "
                                             "| every RAM-Net seed above every baseline seed | no (against dn-100k) |")
    assert _line(out, "| 131,072 |").endswith("| +0.12500 | every RAM-Net seed above every baseline seed "
                                              "| not yet (3 against 2 seeds) (against dn-150k) |")
    assert "| 150,000 |" not in out and "(no RAM-Net row with 3 seeds)" in _line(out, "| 1,000,000 |")


def test_differences_a_few_millionths_apart_keep_a_digit_and_their_sign():
    """Three-seed means 0.9999754 and 0.9999730 (the 66k band after session AS) round to "+0.00000"; the tables
    widen such a difference until a digit shows, and leave the rest at their own width."""
    assert _tables.signed_difference(0.9999754 - 0.9999730, 5) == "+0.000002"
    assert _tables.signed_difference(0.9999730 - 0.9999754, 4) == "-0.000002"
    assert _tables.signed_difference(0.04025, 5) == "+0.04025"
    assert _tables.signed_difference(-0.00016, 5) == "-0.00016"
    assert _tables.signed_difference(0.0, 5) == "+0.00000"
    assert _tables.signed_difference(-0.0, 5) == "+0.00000"
    assert _tables.signed_difference(0.9999730 - 0.9999730000000001, 4) == "+0.0000"  # float noise, not a lead
    assert _tables.signed_difference(0.0000096, 5) == "+0.00001"  # rounds up: no widening needed
    assert _tables.signed_difference(3e-8, 5) == "+0.00000003"
    assert _tables.signed_difference(2e-10, 5) == "+0.000000000"  # nine places at most
