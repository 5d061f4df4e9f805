"""Shared by the tests of the MQAR probe scripts (benchmarks/mqar_interference.py, benchmarks/mqar_read_mass.py):
a small untrained checkpoint, running a script as a user would, and loading one to test its parts."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import torch

from ramnet import RamNetConfig, RamNetForCausalLM
from ramnet.checkpoint import write_model


def run_script(script: Path, *args):
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)


def load_script(script: Path):
    """A benchmark script loaded as a module by its path (the scripts are not a package), to test its parts."""
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_checkpoint(tmp_path: Path, **overrides) -> Path:
    """An ``mqar-tiny`` model (seed 1) written as ``tmp_path/run/model``."""
    torch.manual_seed(1)
    model = RamNetForCausalLM(RamNetConfig.from_name("mqar-tiny", max_seq_len=32, **overrides))
    write_model(model, tmp_path / "run" / "model")
    return tmp_path / "run" / "model"
