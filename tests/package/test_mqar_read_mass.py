"""``benchmarks/mqar_read_mass.py`` prints, per head, the weight the reads give each query's own pair. Checked on
a small untrained checkpoint (its figures are compared with the library's in tests/model/test_analysis_reads.py)."""
import json
import subprocess
import sys
from pathlib import Path

import torch

from ramnet import RamNetConfig, RamNetForCausalLM
from ramnet.checkpoint import write_model

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "mqar_read_mass.py"


def _cli(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def _checkpoint(tmp_path, **overrides):
    torch.manual_seed(1)
    model = RamNetForCausalLM(RamNetConfig.from_name("mqar-tiny", max_seq_len=32, **overrides))
    write_model(model, tmp_path / "run" / "model")
    return tmp_path / "run" / "model"


def test_every_head_at_its_best_offset_and_one_binding_head_per_setting(tmp_path):
    out = tmp_path / "mass.json"
    done = _cli(str(_checkpoint(tmp_path)), "--settings", "4,32", "8,32", "--num-examples", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    saved = json.loads(out.read_text())
    rows = saved["rows"]
    assert saved["seed"] == 123 and saved["num_examples"] == 3
    assert len(rows) == 2 * 2 * 2  # 2 settings, 2 layers, 2 heads
    assert all(0 <= r["write_offset"] <= 2 for r in rows)  # kernel 4: value + 0, 1 or 2
    assert all(r["right"] + r["wrong"] == 3 * r["pairs"] for r in rows)  # every key is asked once
    assert all(r["own_top_wrong"] is None or 0 <= r["own_top_wrong"] <= 1 for r in rows)
    assert sum(bool(r.get("binding")) for r in rows) == 2
    assert done.stdout.count("| run | 4,32 |") == 4 and "The head whose own pair" in done.stdout


def test_without_the_short_conv_only_the_value_position_is_probed(tmp_path):
    out = tmp_path / "mass.json"
    done = _cli(str(_checkpoint(tmp_path, short_conv=False)), "--settings", "4,32", "--num-examples", "2",
                "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert {r["write_offset"] for r in json.loads(out.read_text())["rows"]} == {0}


def test_bad_arguments_get_one_line(tmp_path):
    for args, message in ((["--settings", "4x32"], "NUM_KV_PAIRS,SEQ_LEN"), (["--num-examples", "0"], ">= 1"),
                          (["--seed", "-1"], "--seed must be >= 0"),
                          (["--settings", "9,32"], "--settings 9,32 for"), (["--settings", "1,32"], "at least 2 pairs")):
        done = _cli(str(_checkpoint(tmp_path)), *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    done = _cli(str(tmp_path / "missing"))
    assert done.returncode == 2 and "missing" in done.stderr and "Traceback" not in done.stderr
    done = _cli(str(_checkpoint(tmp_path)), "--out", str(tmp_path / "no" / "such" / "mass.json"))
    assert done.returncode == 2 and "--out: the folder" in done.stderr and "Traceback" not in done.stderr
