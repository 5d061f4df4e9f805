"""A sweep entry's own step budget (``steps`` in a model entry): it replaces the spec's for that entry's runs,
enters their fingerprint, leaves every other entry's fingerprint as it was, and bad values are refused by name."""
import json

import pytest

from ramnet.cli import main
from ramnet.sweep import SpecError, check_spec, expand

RAM = {"label": "ram", "model": "ramnet", "preset": "tiny"}
ATTN = {"label": "attn", "model": "attention", "d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64}


def _spec(tmp_path, models):
    return {"name": "t", "out": str(tmp_path / "out"), "steps": 4, "batch_size": 8, "lrs": [1e-3],
            "num_train": 32, "num_eval": 8, "eval_every": 2, "settings": [[2, 16], [4, 32]], "vocab_size": 64,
            "precision": "fp32", "device": "cpu", "models": models}


def test_an_entry_steps_replace_the_spec_steps_for_its_runs_only(tmp_path):
    (plain_ram, plain_attn) = expand(check_spec(_spec(tmp_path, [RAM, ATTN])))
    (long_ram, same_attn) = expand(check_spec(_spec(tmp_path, [{**RAM, "steps": 6}, ATTN])))
    assert (plain_ram["steps"], long_ram["steps"], same_attn["steps"]) == (4, 6, 4)
    assert long_ram["fingerprint"] != plain_ram["fingerprint"]
    assert same_attn["fingerprint"] == plain_attn["fingerprint"]
    assert "steps" not in long_ram["spec"]  # not a model key: build_model never sees it
    # the same budget given as the entry's own is the same run as the spec's
    (restated,) = expand(check_spec(_spec(tmp_path, [{**RAM, "steps": 4}])))
    assert restated["fingerprint"] == plain_ram["fingerprint"]


@pytest.mark.parametrize("entry", [RAM, ATTN], ids=["ramnet", "baseline"])
@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "6", None])
def test_a_bad_entry_steps_is_refused_with_the_entry_and_the_key(tmp_path, entry, bad):
    with pytest.raises(SpecError, match=rf"model {entry['label']}: steps must be an int >= 1, got {bad!r}"):
        check_spec(_spec(tmp_path, [{**entry, "steps": bad}]))


def test_a_run_trains_for_its_entry_steps(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(_spec(tmp_path, [{**RAM, "steps": 6}, ATTN])))
    assert main(["sweep", str(path), "--quiet"]) == 0
    assert "2 ran, 0 skipped" in capsys.readouterr().out
    runs = {r["label"]: r for r in json.loads((tmp_path / "out" / "mqar_sweep.json").read_text())["runs"]}
    assert [h["step"] for h in runs["ram"]["history"]] == [2, 4, 6] and runs["ram"]["steps"] == 6
    assert [h["step"] for h in runs["attn"]["history"]] == [2, 4] and runs["attn"]["steps"] == 4
    assert main(["sweep", str(path), "--quiet"]) == 0
    assert "0 ran, 2 skipped" in capsys.readouterr().out


def test_the_dry_run_shows_an_entry_own_budget(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(_spec(tmp_path, [{**RAM, "steps": 6000}, ATTN])))
    assert main(["sweep", str(path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  ram-lr0.001-s0 (6,000 steps; the spec's: 4)" in lines and "  attn-lr0.001-s0" in lines
