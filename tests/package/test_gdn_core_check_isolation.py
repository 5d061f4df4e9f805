"""``benchmarks/gpu_gdn_core_check.py`` runs each comparison in a process of its own, because a CUDA fault
poisons the whole context (its first H200 run died of an illegal memory access in its first comparison and
recorded nothing). A part that fails or hangs must come back as that part's error, and a part that succeeds as
its JSON."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "gpu_gdn_core_check.py"


def _check():
    spec = importlib.util.spec_from_file_location("gpu_gdn_core_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_part_that_succeeds_returns_its_json():
    ok = _check().run_part("p", 60, [sys.executable, "-c", 'print("noise"); print(\'{"p": {"max_abs": 0.5}}\')'])
    assert ok == {"p": {"max_abs": 0.5}}


def test_a_part_that_dies_is_recorded_as_its_error():
    died = _check().run_part("p", 60, [sys.executable, "-c",
                                       "import sys; sys.exit('CUDA error: an illegal memory access')"])
    assert died == {"p": {"error": "exit 1: CUDA error: an illegal memory access"}}


def test_a_cuda_failure_keeps_its_own_line_beside_the_generic_hint():
    script = ("import sys; print('RuntimeError: CUDA error: device-side assert triggered', file=sys.stderr); "
              "sys.exit('Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.')")
    died = _check().run_part("p", 60, [sys.executable, "-c", script])
    assert died["p"]["error"].startswith("exit 1: RuntimeError: CUDA error: device-side assert triggered | Compile")


def test_a_part_that_hangs_is_cut_and_recorded():
    hung = _check().run_part("p", 1, [sys.executable, "-c", "import time; time.sleep(30)"])
    assert hung == {"p": {"error": "timed out after 1 s"}}


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the real part succeeds")
def test_a_real_part_fails_alone_without_cuda():
    """Without CUDA a real part fails in its child process, and the caller gets that part's error."""
    check = _check()
    result = check.run_part("core_fp32", 120)
    assert set(result) == {"core_fp32"} and result["core_fp32"]["error"].startswith("exit 1")


def test_results_are_written_after_every_part_and_a_failed_timing_is_kept(tmp_path):
    """A check cut short keeps the parts it finished; a timings failure is recorded, not dropped."""
    module = _check()
    out = tmp_path / "check.json"
    seen = []

    def run(name):
        if seen:  # every earlier part is on disk before the next one starts
            assert set(json.loads(out.read_text())["agreement"]) == {f"{n}_x" for n in seen if n != "timings"}
        seen.append(name)
        if name == "timings":
            return {"timings": {"error": "exit 1: torch.OutOfMemoryError: CUDA out of memory"}}
        return {f"{name}_x": {"max_abs": 0.0, "max_rel": 0.0, "rel_rms": 0.0}}

    results = module.run_parts({"device": "test"}, run, str(out))
    assert seen == list(module.PARTS)
    assert json.loads(out.read_text()) == results
    assert results["timings"] == [] and "out of memory" in results["timings_error"]
