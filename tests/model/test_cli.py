"""`ramnet train/eval/plot` end to end on a few steps: checkpoint (safetensors), metrics JSON, reload."""
import json

import pytest
import torch

from ramnet.cli import main
from ramnet.train import load_checkpoint


def test_train_eval_plot_round_trip(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--task", "mqar", "--preset", "tiny", "--set", "vocab_size=80", "--seq-len", "16",
               "--num-kv-pairs", "2", "--steps", "3", "--batch-size", "4", "--num-train", "32", "--num-eval", "16",
               "--eval-every", "2", "--out", str(out)])
    assert rc == 0
    assert {"model.safetensors", "config.json", "metrics.json"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps_run"] == 3 and [h["step"] for h in metrics["history"]] == [2, 3]
    assert 0.0 <= metrics["final_accuracy"] <= 1.0
    model = load_checkpoint(out)
    assert model.config.vocab_size == 80
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), "--seq-len", "16", "--num-kv-pairs", "2", "--num-examples", "8"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["accuracy"] <= 1.0
    assert main(["plot", str(out)]) == 0
    assert (out / "curves.png").stat().st_size > 1000


def test_checkpoint_loading_requires_safetensors(tmp_path):
    torch.save({"x": 1}, tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_checkpoint(tmp_path)


def test_unknown_task_is_an_error(capsys):
    assert main(["train", "--task", "lm", "--steps", "1"]) == 2
    assert "unknown task" in capsys.readouterr().err
