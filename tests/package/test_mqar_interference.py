"""``benchmarks/mqar_interference.py`` probes trained checkpoints for how much the pairs of an MQAR sequence share
slots. Checked on a small untrained checkpoint: it is measured twice (as "trained" and as a fresh init)."""
import json
import subprocess
import sys
from pathlib import Path

import torch

from ramnet import RamNetConfig, RamNetForCausalLM
from ramnet.checkpoint import write_model

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "mqar_interference.py"


def _cli(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def _checkpoint(tmp_path, **overrides):
    torch.manual_seed(1)
    model = RamNetForCausalLM(RamNetConfig.from_name("mqar-tiny", max_seq_len=32, **overrides))
    write_model(model, tmp_path / "run" / "model")
    return tmp_path / "run" / "model"


def test_every_head_at_each_offset_of_the_conv_window_and_one_binding_head(tmp_path):
    out = tmp_path / "probe.json"
    done = _cli(str(_checkpoint(tmp_path)), "--settings", "4,32", "--num-examples", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2 * 2 * 2  # untrained and trained, 2 layers, 2 heads
    # kernel 4: the key stays in the conv window of value + 0, 1 or 2
    assert {r["checkpoint"] for r in rows} == {"run"} and all(0 <= r["write_offset"] <= 2 for r in rows)
    assert sum(bool(r.get("binding")) for r in rows) == 1
    assert all(r["chance"] == 4 * 4 / 64 and 0 <= r["write_shared"] <= 4 for r in rows)
    assert "The binding head" in done.stdout and done.stdout.count("| run | 4,32 |") == 1


def test_without_the_short_conv_only_the_value_position_is_probed(tmp_path):
    out = tmp_path / "probe.json"
    done = _cli(str(_checkpoint(tmp_path, short_conv=False)), "--settings", "4,32", "--num-examples", "2",
                "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert {r["write_offset"] for r in json.loads(out.read_text())["rows"]} == {0}


def test_bad_arguments_get_one_line(tmp_path):
    for args, message in ((["--settings", "4x32"], "NUM_KV_PAIRS,SEQ_LEN"), (["--num-examples", "0"], ">= 1"),
                          (["--settings", "9,32"], "--settings 9,32 for"), (["--settings", "1,32"], "at least 2 pairs")):
        done = _cli(str(_checkpoint(tmp_path)), *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    done = _cli(str(tmp_path / "missing"))
    assert done.returncode == 2 and "missing" in done.stderr and "Traceback" not in done.stderr
    done = _cli(str(_checkpoint(tmp_path)), "--out", str(tmp_path / "no" / "such" / "probe.json"))
    assert done.returncode == 2 and "--out: the folder" in done.stderr and "Traceback" not in done.stderr


def test_two_checkpoints_with_one_run_name_stay_apart(tmp_path):
    """Rows are grouped by the checkpoint's path, not its run folder's name."""
    first, second = _checkpoint(tmp_path / "a"), _checkpoint(tmp_path / "b", top_k=8)
    out = tmp_path / "probe.json"
    done = _cli(str(first), str(second), "--settings", "4,32", "--num-examples", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len({r["path"] for r in rows}) == 2 and sum(bool(r.get("binding")) for r in rows) == 2
    assert done.stdout.count("| run | 4,32 |") == 2
