"""``benchmarks/sass_stats.py`` compiles the scan kernels for sm_90a on a CPU-only machine (Triton's bundled ptxas)
and reports their resources, at the launch settings of the scan backend objects (``RecurrentScan``,
``SegmentScan``). It runs in a subprocess: it compiles for real, so it drops ``TRITON_INTERPRET``."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ramnet.ops.memory.backends import RecurrentScan, SegmentScan

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "sass_stats.py"
KEYS = {"shared_bytes", "num_warps", "registers", "spill_store_bytes", "spill_load_bytes", "stack_bytes"}
# each kernel of the script and the warps its backend launches it with by default
DEFAULT_WARPS = {"recurrent-fwd": RecurrentScan().fwd_warps, "recurrent-bwd": RecurrentScan().bwd_warps,
                 "segment-fwd": SegmentScan().num_warps, "segment-bwd": SegmentScan().num_warps}


def _run(*args):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


def _stats(*args):
    out = _run(*args)
    if out.returncode != 0 and "ptxas" in out.stderr and "No such file" in out.stderr:
        pytest.skip("this Triton wheel ships no ptxas")
    assert out.returncode == 0, out.stderr[-2000:]
    stats = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    assert set(stats) == KEYS
    return stats


@pytest.mark.parametrize("kernel", sorted(DEFAULT_WARPS))
def test_every_scan_kernel_compiles_at_its_backend_launch_settings(kernel):
    stats = _stats(kernel, "--dv", "16", "--k", "2")
    assert stats["num_warps"] == DEFAULT_WARPS[kernel]
    assert 16 <= stats["registers"] <= 255
    assert stats["spill_store_bytes"] == stats["spill_load_bytes"] == 0  # a tiny tile fits in registers


def test_warps_option_sets_the_launch():
    assert _stats("recurrent-bwd", "--dv", "16", "--k", "2", "--warps", "2")["num_warps"] == 2
    assert _stats("segment-fwd", "--dv", "16", "--warps", "2", "--no-save", "--no-atomic-read",
                  "--int64-keys")["num_warps"] == 2


def test_segment_knobs_are_refused_for_the_recurrent_kernels():
    out = _run("recurrent-fwd", "--int64-keys")
    assert out.returncode == 2 and "knobs of the segment kernels" in out.stderr


@pytest.mark.parametrize("name", ["chunked-fwd", "pipelined-fwd"])
def test_unknown_kernel_is_refused(name):
    out = _run(name)
    assert out.returncode == 2 and "invalid choice" in out.stderr
