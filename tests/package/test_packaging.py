"""The package metadata installs anywhere torch does: no exact triton pin, one torch range that the Makefile's
pins satisfy, a single-sourced version, a LICENSE, ``python -m ramnet``."""
import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

import ramnet

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements(group=None):
    project = PYPROJECT["project"]
    raw = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return {Requirement(r).name: Requirement(r) for r in raw}


def _makefile_pins() -> dict:
    """``name==version`` pins in the Makefile's pip install lines."""
    text = (ROOT / "Makefile").read_text()
    return dict(re.findall(r"\b([A-Za-z][\w.-]*)==([\w.+-]+)", text))


def test_triton_is_a_lower_bound_on_linux_only():
    triton = _requirements()["triton"]
    assert not any(s.operator in ("==", "===", "~=") for s in triton.specifier), f"exact triton pin: {triton}"
    assert any(s.operator == ">=" for s in triton.specifier), f"triton needs a lower bound: {triton}"
    assert triton.marker is not None and "platform_system" in str(triton.marker), triton
    assert triton.marker.evaluate({"platform_system": "Linux"}) and not triton.marker.evaluate({"platform_system": "Darwin"})


def test_the_makefile_pins_satisfy_the_declared_ranges():
    pins, deps = _makefile_pins(), _requirements()
    assert "torch" in pins, "the Makefile must pin the torch that CI installs"
    for name, pinned in pins.items():
        if name in deps:
            assert deps[name].specifier.contains(pinned, prereleases=True), \
                f"Makefile pins {name}=={pinned}, outside the declared {deps[name].specifier}"


def test_the_torch_range_is_stated_once_and_is_2_11_to_2_14():
    torch_req = _requirements()["torch"]
    assert all(torch_req.specifier.contains(v) for v in ("2.11.0", "2.14.1"))
    assert not torch_req.specifier.contains("2.10.0") and not torch_req.specifier.contains("2.15.0")
    for group in PYPROJECT["project"]["optional-dependencies"]:
        assert "torch" not in _requirements(group), f"extra [{group}] restates the torch range"


def test_matplotlib_is_an_extra_and_hf_targets_transformers_5():
    assert "matplotlib" not in _requirements() and "matplotlib" in _requirements("plot")
    transformers = _requirements("hf")["transformers"]
    assert transformers.specifier.contains("5.17.0") and not transformers.specifier.contains("4.57.0")


def test_version_is_single_sourced_and_license_present():
    assert "version" in PYPROJECT["project"]["dynamic"] and "version" not in PYPROJECT["project"]
    assert version("ramnet") == ramnet.__version__
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def test_python_dash_m_ramnet():
    out = subprocess.run([sys.executable, "-m", "ramnet", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "train" in out.stdout and "bench" not in out.stdout
