"""``benchmarks/bench_mqar_data.py`` times the MQAR sampler's fast path against the old one and must say when they
disagree; bad counts get one line."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bench_mqar_data.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_a_tiny_run_prints_the_table_and_finds_the_data_identical():
    done = _run("--num-train", "12", "--num-eval", "3")
    assert done.returncode == 0, done.stderr
    assert "| Gumbel scores (before) |" in done.stdout
    assert "| uniform draws + torch.topk (now) |" in done.stdout and "identical data: yes" in done.stdout


def test_bad_counts_get_one_line():
    for flag in ("--repeats", "--num-train", "--num-eval"):
        done = _run(flag, "0")
        assert done.returncode == 2 and done.stderr == f"error: {flag} must be >= 1, got 0\n", done.stderr
