"""``benchmarks/mqar/seeds.yaml`` adds seeds to runs of ``main.yaml``: its entries must be main.yaml's models, so
that ``mqar_tables.py`` may put the seeds of both summaries together (by label and lr)."""
from pathlib import Path

import yaml

from ramnet.sweep_spec import DEFAULTS, expand

MQAR = Path(__file__).parents[2] / "benchmarks" / "mqar"


def _spec(name: str) -> dict:
    return {**DEFAULTS, **yaml.safe_load((MQAR / name).read_text())}


def _run_keys(spec: dict) -> dict:
    """(label, lr) -> the fingerprint of its run at seed 1, with spec-level training keys the same"""
    spec = {**spec, "seeds": [1]}
    return {(r["label"], r["lr"]): r["fingerprint"] for r in expand(spec)}


def test_every_seed_run_is_a_main_run_with_another_seed():
    main, seeds = _spec("main.yaml"), _spec("seeds.yaml")
    main_runs = _run_keys(main)
    seed_runs = _run_keys(seeds)
    assert seed_runs and 0 not in seeds["seeds"]  # seed 0 is main.yaml's own
    for key, fingerprint in seed_runs.items():
        assert key in main_runs, f"{key} is not a run of main.yaml"
        assert main_runs[key] == fingerprint, f"{key}: the model or training keys differ from main.yaml's"


def test_the_check_above_catches_a_changed_model():
    main, seeds = _spec("main.yaml"), _spec("seeds.yaml")
    changed = {**seeds, "models": [{**seeds["models"][0], "overrides": {"num_factors": 3, "d_v": 12}}]}
    key, fingerprint = next(iter(_run_keys(changed).items()))
    assert _run_keys(main)[key] != fingerprint


def test_every_probe_run_is_a_main_run_that_keeps_its_model():
    """``probe.yaml`` reruns main.yaml's seed-0 runs with ``save_model``, which is not part of the fingerprint."""
    main, probe = _spec("main.yaml"), _spec("probe.yaml")
    main_runs = {(r["label"], r["lr"]): r["fingerprint"] for r in expand(main)}
    probe_runs = expand(probe)
    assert probe_runs and probe["seeds"] == [0] and all(r["save_model"] for r in probe_runs)
    for run in probe_runs:
        key = (run["label"], run["lr"])
        assert main_runs.get(key) == run["fingerprint"], f"{key}: not main.yaml's seed-0 run"


def test_every_profile_run_is_a_main_seed_0_run():
    """``profile.yaml`` reruns main.yaml's seed-0 runs to record where their errors sit: same fingerprints."""
    main, profile = _spec("main.yaml"), _spec("profile.yaml")
    main_runs = {(r["label"], r["lr"]): r["fingerprint"] for r in expand(main)}
    profile_runs = expand(profile)
    assert len(profile_runs) == 2 and profile["seeds"] == [0]
    for run in profile_runs:
        key = (run["label"], run["lr"])
        assert main_runs.get(key) == run["fingerprint"], f"{key}: not main.yaml's seed-0 run"


def _long_suffix(long: dict, entry: dict) -> str:
    """The label suffix of a long.yaml entry, from its step budget (its own ``steps``, else the spec's): 8,000
    steps -> ``-8k-steps``"""
    return f"-{entry.get('steps', long['steps']) // 1000}k-steps"


def _long_runs_as_main(long: dict) -> dict:
    """long.yaml's runs with main.yaml's step budget and labels: (label, lr, seed) -> fingerprint"""
    as_main = {**long, "steps": _spec("main.yaml")["steps"],
               "models": [{**{k: v for k, v in m.items() if k != "steps"},
                           "label": m["label"].removesuffix(_long_suffix(long, m))} for m in long["models"]]}
    return {(r["label"], r["lr"], r["seed"]): r["fingerprint"] for r in expand(as_main)}


def test_every_long_run_is_a_main_run_with_more_steps():
    """``long.yaml`` trains main.yaml's models for more steps than its budget (the spec's 8,000, or an entry's
    own); everything else (model, lr, data, training keys) must be main.yaml's, and each label carries the
    suffix, from its budget, that keeps it out of main.yaml's tables."""
    main, long = _spec("main.yaml"), _spec("long.yaml")
    assert long["steps"] == 2 * main["steps"]
    for m in long["models"]:
        steps = m.get("steps", long["steps"])
        assert steps > main["steps"] and steps % 1000 == 0, m["label"]
        assert m["label"].endswith(_long_suffix(long, m)), m["label"]
    runs = {r["label"]: r["steps"] for r in expand(long)}
    assert runs["deltanet-33k-6k-steps"] == 6000 and runs["deltanet-66k-8k-steps"] == 8000
    main_runs = {(r["label"], r["lr"], r["seed"]): r["fingerprint"] for r in expand({**main, "seeds": long["seeds"]})}
    long_runs = _long_runs_as_main(long)
    assert long_runs
    for key, fingerprint in long_runs.items():
        assert main_runs.get(key) == fingerprint, f"{key}: not main.yaml's run but for the step budget"


def test_the_long_check_catches_a_changed_model():
    """Same label and lr as main.yaml's, another d_v: the fingerprints differ, so the check above would fail."""
    main, long = _spec("main.yaml"), _spec("long.yaml")
    first = long["models"][0]
    changed = {**long, "models": [{**first, "overrides": {**first["overrides"], "d_v": first["overrides"]["d_v"] + 1}}]}
    main_runs = {(r["label"], r["lr"], r["seed"]): r["fingerprint"] for r in expand({**main, "seeds": long["seeds"]})}
    long_runs = _long_runs_as_main(changed)
    assert set(long_runs) <= set(main_runs)  # every (label, lr, seed) is main.yaml's: only the fingerprint differs
    assert any(main_runs[k] != f for k, f in long_runs.items())
