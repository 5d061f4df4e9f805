"""``benchmarks/mqar_read_mass.py`` prints, per head, the weight the reads give each query's own pair. Checked on
a small untrained checkpoint; the figures themselves are tested in tests/model/test_analysis_reads.py."""
import json
from pathlib import Path

from .probe_cases import run_script, small_checkpoint

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "mqar_read_mass.py"


def test_every_head_at_its_best_offset_and_one_binding_head_per_setting(tmp_path):
    out = tmp_path / "mass.json"
    done = run_script(SCRIPT, str(small_checkpoint(tmp_path)), "--settings", "4,32", "8,32", "--num-examples", "3",
                      "--out", str(out))
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

