"""``benchmarks/mqar_interference.py`` probes trained checkpoints for how much the pairs of an MQAR sequence share
slots. Checked on a small untrained checkpoint: it is measured twice (as "trained" and as a fresh init)."""
import json
from pathlib import Path

from .probe_cases import run_script, small_checkpoint

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "mqar_interference.py"


def test_every_head_at_each_offset_of_the_conv_window_and_one_binding_head(tmp_path):
    out = tmp_path / "probe.json"
    done = run_script(SCRIPT, str(small_checkpoint(tmp_path)), "--settings", "4,32", "--num-examples", "3",
                      "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2 * 2 * 2  # untrained and trained, 2 layers, 2 heads
    # kernel 4: the key stays in the conv window of value + 0, 1 or 2
    assert {r["checkpoint"] for r in rows} == {"run"} and all(0 <= r["write_offset"] <= 2 for r in rows)
    assert sum(bool(r.get("binding")) for r in rows) == 1
    assert all(r["chance"] == 4 * 4 / 64 and 0 <= r["write_shared"] <= 4 for r in rows)
    assert "The binding head" in done.stdout and done.stdout.count("| run | 4,32 |") == 1


def test_two_checkpoints_with_one_run_name_stay_apart(tmp_path):
    """Rows are grouped by the checkpoint's path, not its run folder's name."""
    first, second = small_checkpoint(tmp_path / "a"), small_checkpoint(tmp_path / "b", top_k=8)
    out = tmp_path / "probe.json"
    done = run_script(SCRIPT, str(first), str(second), "--settings", "4,32", "--num-examples", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len({r["path"] for r in rows}) == 2 and sum(bool(r.get("binding")) for r in rows) == 2
    assert done.stdout.count("| run | 4,32 |") == 2
