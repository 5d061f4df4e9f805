"""What the two MQAR probe scripts share: the write offsets they measure and their answers to bad arguments."""
import json
from pathlib import Path

import pytest

from .probe_cases import run_script, small_checkpoint

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"
SCRIPTS = [BENCHMARKS / "mqar_interference.py", BENCHMARKS / "mqar_read_mass.py"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_without_the_short_conv_only_the_value_position_is_probed(script, tmp_path):
    out = tmp_path / "probe.json"
    done = run_script(script, str(small_checkpoint(tmp_path, short_conv=False)), "--settings", "4,32",
                      "--num-examples", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert {r["write_offset"] for r in json.loads(out.read_text())["rows"]} == {0}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_bad_arguments_get_one_line(script, tmp_path):
    cases = [(["--settings", "4x32"], "NUM_KV_PAIRS,SEQ_LEN"), (["--num-examples", "0"], ">= 1"),
             (["--settings", "9,32"], "--settings 9,32 for"), (["--settings", "1,32"], "at least 2 pairs")]
    if script.stem == "mqar_read_mass":
        cases.append((["--seed", "-1"], "--seed must be >= 0"))
    for args, message in cases:
        done = run_script(script, str(small_checkpoint(tmp_path)), *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    done = run_script(script, str(tmp_path / "missing"))
    assert done.returncode == 2 and "missing" in done.stderr and "Traceback" not in done.stderr
    done = run_script(script, str(small_checkpoint(tmp_path)), "--out", str(tmp_path / "no" / "such" / "probe.json"))
    assert done.returncode == 2 and "--out: the folder" in done.stderr and "Traceback" not in done.stderr
    done = run_script(script, str(small_checkpoint(tmp_path)), "--out", str(tmp_path))
    assert done.returncode == 2 and "is a folder" in done.stderr and "Traceback" not in done.stderr
