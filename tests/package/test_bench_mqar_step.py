"""``benchmarks/bench_mqar_step.py`` times one MQAR training step per spec model. On CPU (a smoke test of the
script, not a timing) it must build the models from their spec entries, report their state sizes, put a model's
failure in its own row, and answer bad arguments with one line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bench_mqar_step.py"


def _run(tmp_path, *args):
    # without the test session's Triton interpreter: on CPU the ops then take their PyTorch reference path
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"RAMNET_BENCH_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


def test_equal_state_models_are_timed_side_by_side(tmp_path):
    out = _run(tmp_path, "--device", "cpu", "--precision", "fp32", "--labels", "ramnet-3k", "ramnet-3k-h4-m64-k16",
               "--settings", "4,64", "8,64", "--batch-size", "2", "--reps", "1")
    assert out.returncode == 0, out.stderr[-2000:]
    saved = json.loads((tmp_path / "mqar_step.json").read_text())
    rows = saved["rows"]
    assert [(r["label"], r["setting"]) for r in rows] == [
        ("ramnet-3k", "N4-T64"), ("ramnet-3k", "N8-T64"),
        ("ramnet-3k-h4-m64-k16", "N4-T64"), ("ramnet-3k-h4-m64-k16", "N8-T64")]
    assert {r["state"] for r in rows} == {3072}  # layers * heads * M * (d_v + 1): 2*2*64*12 and 2*4*64*6
    assert all(r["step_ms"] > 0 and r["batch"] == 2 for r in rows)
    assert rows[0]["ratio"] == rows[1]["ratio"] == 1.0
    assert rows[2]["ratio"] == pytest.approx(rows[2]["step_ms"] / rows[0]["step_ms"])
    assert saved["precision"] == "fp32" and saved["device_kind"] == "cpu"


def test_a_model_that_cannot_run_gets_an_error_row(tmp_path):
    """fla's GLA cannot run on CPU (its Triton kernels need a GPU driver, or fla is not installed): that model's
    row says why, and the others run."""
    out = _run(tmp_path, "--device", "cpu", "--precision", "fp32", "--labels", "gla-2k", "ramnet-3k",
               "--settings", "4,64", "--batch-size", "2", "--reps", "1")
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads((tmp_path / "mqar_step.json").read_text())["rows"]
    assert rows[0]["label"] == "gla-2k" and rows[0]["error"] and "step_ms" not in rows[0]
    assert rows[1]["label"] == "ramnet-3k" and rows[1]["ratio"] == 1.0  # the base is the first model that ran


@pytest.mark.parametrize("args, message", [
    (["--labels", "nope"], "--labels: nope not in"),
    (["--labels", "ramnet-3k", "--settings", "4x64"], "a setting is NUM_KV_PAIRS,SEQ_LEN"),
    (["--labels", "ramnet-3k", "--batch-size", "0"], "--batch-size and --reps must be >= 1"),
    (["--labels", "ramnet-3k", "--spec", "missing.yaml"], "missing.yaml does not exist"),
    (["--labels", "ramnet-3k", "--name", "../x"], "--name: letters, digits"),
])
def test_bad_arguments_get_one_line(tmp_path, args, message):
    out = _run(tmp_path, "--device", "cpu", *args)
    assert out.returncode == 2 and message in out.stderr.strip().splitlines()[-1]
    assert "Traceback" not in out.stderr  # argparse's usage, then the message in one line
    assert not (tmp_path / "mqar_step.json").exists()
