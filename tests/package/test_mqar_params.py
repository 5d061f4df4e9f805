"""``benchmarks/mqar_params.py`` counts the parameters of the sweep's models, built on the meta device."""
import subprocess
import sys
from pathlib import Path

import torch
import yaml

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "mqar_params.py"
sys.path.insert(0, str(SCRIPT.parent))
import mqar_params  # noqa: E402

from ramnet.sweep_run import build_model  # noqa: E402


def test_the_meta_count_is_the_count_of_the_model_the_sweep_trains():
    spec = yaml.safe_load((SCRIPT.parent / "mqar" / "main.yaml").read_text())
    entry = next(m for m in spec["models"] if m["label"] == "ramnet-8k-h4-m256-k16")
    real, state, _ = build_model({k: v for k, v in entry.items() if k not in ("label", "tags", "lrs")}, 8192, 1024)
    rows = mqar_params.table(SCRIPT.parent / "mqar" / "main.yaml", ["ramnet-8k-h4-m256-k16"])
    total = sum(p.numel() for p in real.parameters())
    embedding = real.embed.weight.numel() + real.lm_head.weight.numel()
    assert rows == [["ramnet-8k-h4-m256-k16", f"{state:,}", f"{total:,}", f"{total - embedding:,}"]]
    assert state == 8192


def test_a_tied_weight_counts_once():
    model = torch.nn.Module()
    model.embed = torch.nn.Embedding(10, 4)
    model.mixer = torch.nn.Linear(4, 3)
    model.lm_head = torch.nn.Linear(4, 10, bias=False)
    model.lm_head.weight = model.embed.weight
    assert mqar_params.count(model) == (40 + 15, 15)


def _cli(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_the_cli_prints_one_row_per_matching_label_in_the_spec_order():
    done = _cli("--only", "ramnet-16k,ramnet-3k")
    assert done.returncode == 0, done.stderr
    labels = [line.split(" | ")[0].lstrip("| ") for line in done.stdout.splitlines()[2:]]
    assert labels == ["ramnet-3k", "ramnet-16k"]


def test_the_cli_answers_bad_arguments_in_one_line(tmp_path):
    for args, message in ((("--only", "no-such-model"), "--only: no model label"),
                          (("--spec", str(tmp_path / "missing.yaml")), "--spec: no such file")):
        done = _cli(*args)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
