"""``benchmarks/bench_mqar_step.py`` times one MQAR training step per spec model. On CPU (a smoke test of the
script, not a timing) it must build only the chosen models from their spec entries, report their state sizes as
the sweep does, keep going past a model that fails, and answer bad arguments with one line."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[2] / "benchmarks"
SCRIPT = BENCH / "bench_mqar_step.py"


def _run(tmp_path, *args):
    # without the test session's Triton interpreter: on CPU the ops then take their PyTorch reference path
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"RAMNET_BENCH_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def bench(monkeypatch, tmp_path):
    """The script as a module, writing its results under ``tmp_path``."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_mqar_step_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import common
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    return module


def test_equal_state_models_are_timed_side_by_side(tmp_path):
    out = _run(tmp_path, "--device", "cpu", "--precision", "fp32", "--labels", "ramnet-3k", "ramnet-3k-h4-m64-k16",
               "attention", "--settings", "4,64", "8,64", "--batch-size", "2", "--samples", "1")
    assert out.returncode == 0, out.stderr[-2000:]
    saved = json.loads((tmp_path / "mqar_step.json").read_text())
    rows = saved["rows"]
    assert [(r["label"], r["setting"]) for r in rows] == [
        ("ramnet-3k", "N4-T64"), ("ramnet-3k", "N8-T64"), ("ramnet-3k-h4-m64-k16", "N4-T64"),
        ("ramnet-3k-h4-m64-k16", "N8-T64"), ("attention", "N4-T64"), ("attention", "N8-T64")]
    # RAM-Net: layers * heads * M * (d_v + 1), 2*2*64*12 and 2*4*64*6; attention: its KV cache at the spec's
    # longest setting (T=1024), as the sweep builds it, whatever the timed settings
    assert [r["state"] for r in rows] == [3072] * 4 + [524288] * 2
    assert all(r["step_ms"] > 0 and r["batch"] == 2 and r["samples"] == 1 for r in rows)
    assert {r["base"] for r in rows} == {"ramnet-3k"} and rows[0]["ratio"] == rows[1]["ratio"] == 1.0
    assert rows[2]["ratio"] == pytest.approx(rows[2]["step_ms"] / rows[0]["step_ms"])
    assert saved["precision"] == "fp32" and saved["device_kind"] == "cpu"


def test_a_failing_model_gets_its_row_and_the_rest_run(bench, tmp_path, monkeypatch):
    """Even an error without a message (a bare AssertionError) is a row; the base is the first model that ran."""
    def fake_step_ms(entry, spec, settings, device, batch_size, samples):
        if entry["label"] == "ramnet-3k":
            raise AssertionError()
        return 16384, [2.0 if entry["label"] == "ramnet-16k" else 3.0]

    monkeypatch.setattr(bench, "step_ms", fake_step_ms)
    assert bench.main(["--device", "cpu", "--labels", "ramnet-3k", "ramnet-16k", "ramnet-16k-k16",
                       "--settings", "4,64"]) == 0
    rows = json.loads((tmp_path / "mqar_step.json").read_text())["rows"]
    assert rows[0] == {"label": "ramnet-3k", "error": "AssertionError: "}
    assert [(r["label"], r["base"], r["ratio"]) for r in rows[1:]] == [
        ("ramnet-16k", "ramnet-16k", 1.0), ("ramnet-16k-k16", "ramnet-16k", 1.5)]


def test_only_the_chosen_models_are_built(bench, monkeypatch):
    """Without fla, RAM-Net's rows of main.yaml can still be timed; an fla row is refused by name."""
    # import fla now fails, also where fla is installed and an earlier test imported its submodules
    for name in ["fla", *(m for m in list(sys.modules) if m.startswith("fla."))]:
        monkeypatch.setitem(sys.modules, name, None)
    spec = bench.read_spec(str(BENCH / "mqar" / "main.yaml"), ["ramnet-16k", "ramnet-3k"])
    assert [e["label"] for e in spec["models"]] == ["ramnet-16k", "ramnet-3k"]
    with pytest.raises(bench.SpecError, match="model deltanet-16k"):
        bench.read_spec(str(BENCH / "mqar" / "main.yaml"), ["deltanet-16k"])


@pytest.mark.parametrize("args, message", [
    (["--labels", "nope"], "--labels: nope not in"),
    (["--labels", "ramnet-3k", "--settings", "4x64"], "a setting is NUM_KV_PAIRS,SEQ_LEN"),
    (["--labels", "ramnet-3k", "--settings", "64,64"], "--settings:"),
    (["--labels", "ramnet-3k", "--batch-size", "0"], "--batch-size and --samples must be >= 1"),
    (["--labels", "ramnet-3k", "--spec", "missing.yaml"], "missing.yaml does not exist"),
    (["--labels", "ramnet-3k", "--name", "../x"], "--name: letters, digits"),
])
def test_bad_arguments_get_one_line(bench, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as stop:
        bench.main(["--device", "cpu", *args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err.strip().splitlines()[-1]
    assert not (tmp_path / "mqar_step.json").exists()
