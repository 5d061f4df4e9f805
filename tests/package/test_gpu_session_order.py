"""The GPU session script (``benchmarks/gpu_mqar_session.sh``) runs each sweep's pending runs in the order of its
priority patterns (``ramnet sweep --only``). A run that falls out of every pattern by mistake would never run,
and a session would not say so: check the orders against the committed
summaries with ``--dry-run``."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_mqar_session.sh"
SWEEPS = {"MAIN_ONLY": ("main.yaml", "mqar"), "ABL_ONLY": ("ablations.yaml", "ablations"),
          "ARCH_ONLY": ("paper_arch.yaml", "mqar_paper_arch")}
# runs left out on purpose: the kept-model copy of paper-m64-k16 at 3e-3 (that lr did not learn, 0.004)
LEFT_OUT = {"ARCH_ONLY": 1}


def _patterns(variable: str) -> str:
    match = re.search(rf"^{variable}=\$\{{{variable}-'([^']*)'\}}$", SCRIPT.read_text(), re.M)
    assert match, f"{variable} default not found in {SCRIPT.name}"
    return match.group(1)


def _dry_run(variable: str, tmp_path: Path) -> tuple[str, list[str]]:
    spec, name = SWEEPS[variable]
    shutil.copy(ROOT / "benchmarks" / "results" / f"{name}_sweep.json", tmp_path / "mqar_sweep.json")
    done = subprocess.run([sys.executable, "-m", "ramnet", "sweep", str(ROOT / "benchmarks" / "mqar" / spec),
                           "--out", str(tmp_path), "--dry-run", "--only", _patterns(variable)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    return lines[0], [line.strip() for line in lines[1:] if line.startswith("  ")]


@pytest.mark.parametrize("variable", sorted(SWEEPS))
def test_only_the_intended_runs_are_left_out(variable, tmp_path):
    header, order = _dry_run(variable, tmp_path)
    left_out = int(re.search(r"\((\d+) more pending, left out by --only\)", header).group(1))
    assert left_out == LEFT_OUT.get(variable, 0), header
    assert len(order) == len(set(order))
    if variable == "ARCH_ONLY":
        assert "paper-m64-k16-saved-lr0.003-s0" not in order
