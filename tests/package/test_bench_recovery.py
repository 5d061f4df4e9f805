"""``benchmarks/p1_rows_from_log.py`` merges P1 rows that a cut-short ``bench_attention.py`` run printed into
summary.json. It must read each shape once, keep the summary's device header (the rows were measured elsewhere),
and answer a bad log with one line."""
import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "p1_rows_from_log.py"

LOG = """1 GiB device-to-device copy: 4.25 TB/s
| shape | ram_fwd_ms | ram_fwdbwd_ms | ram_peak_MB | sdpa_fwdbwd_ms | fla_deltanet_fwdbwd_ms | fla_gdn_fwd_ms | fla_gdn_fwd_peak_MB |
|---|---|---|---|---|---|---|---|
| 4,4096,16,128 | 2.168 | 8.153 | 916.7 | 3.565 | 3.079 | 0.8513 | 1099 |
| shape | ram_fwd_ms | ram_fwdbwd_ms | ram_peak_MB | sdpa_fwdbwd_ms |
|---|---|---|---|---|
| 8,1024,8,64 | 1.72 | 4.85 | 712.3 | 0.4987 |
| shape | ram_fwd_ms | ram_fwdbwd_ms | ram_peak_MB | sdpa_fwdbwd_ms | fla_deltanet_fwdbwd_ms | fla_gdn_fwd_ms | fla_gdn_fwd_peak_MB |
|---|---|---|---|---|---|---|---|
| 4,4096,16,128 | 9 | 9 | 9 | 9 | 9 | 9 | 9 |
| T | op_fwdbwd_ms | op_peak_GiB |
|---|---|---|
| 8192 | 5.895 | 0.873 |
"""


def _run(tmp_path, *args):
    env = {**os.environ, "RAMNET_BENCH_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


def test_rows_merge_with_their_ratios_and_keep_the_header(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"device": "NVIDIA H200", "date": "2026-12-01"}))
    log = tmp_path / "run.log"
    log.write_text(LOG)
    out = _run(tmp_path, str(log))
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["device"] == "NVIDIA H200" and summary["date"] == "2026-12-01"
    # first print wins; the P6 table that follows without a blank line is not read as P1 rows
    assert [r["shape"] for r in summary["P1_rows"]] == ["4,4096,16,128", "8,1024,8,64"]
    assert summary["P1_fwdbwd_ratio_vs_fla_deltanet"] == {"4,4096,16,128": 8.153 / 3.079}
    assert summary["P1_fwd_ratio_vs_chunk_gdn"] == {"4,4096,16,128": 2.168 / 0.8513}
    assert summary["P1_fwdbwd_ratio_vs_sdpa"] == {"4,4096,16,128": 8.153 / 3.565, "8,1024,8,64": 4.85 / 0.4987}
    out = _run(tmp_path, str(log))  # merged again: a shape's row is replaced, not repeated
    assert out.returncode == 0, out.stderr[-2000:]
    again = json.loads((tmp_path / "summary.json").read_text())
    assert [r["shape"] for r in again["P1_rows"]] == ["4,4096,16,128", "8,1024,8,64"]


def test_a_missing_log_or_shape_is_one_line(tmp_path):
    out = _run(tmp_path, str(tmp_path / "absent.log"))
    assert out.returncode == 2 and "log: no such file" in out.stderr and "Traceback" not in out.stderr
    log = tmp_path / "run.log"
    log.write_text(LOG)
    out = _run(tmp_path, str(log), "--shapes", "1,2,3,4")
    assert out.returncode == 2 and "no P1 rows of 1,2,3,4" in out.stderr
    assert not (tmp_path / "summary.json").exists()
