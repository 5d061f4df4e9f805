"""`ramnet train/eval/plot` end to end on a few steps, and the CLI's error contract: one line, non-zero exit,
no traceback, every argument checked before any work."""
import json

import pytest
import torch

from ramnet.checkpoint import load_checkpoint
from ramnet.cli import main

TINY = ["--task", "mqar", "--preset", "tiny", "--set", "vocab_size=80", "--seq-len", "16", "--num-kv-pairs", "2",
        "--batch-size", "4", "--num-train", "32", "--num-eval", "16", "--device", "cpu"]


def test_train_eval_plot_round_trip(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "3", "--eval-every", "2", "--out", str(out)]) == 0
    assert {"model.safetensors", "config.json", "metrics.json"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps_run"] == 3 and [h["step"] for h in metrics["history"]] == [2, 3]
    assert metrics["train"]["device"] == "cpu" and metrics["train"]["precision"] == "fp32"
    assert load_checkpoint(out).config.vocab_size == 80
    capsys.readouterr()
    # eval reads the setting saved with the run (T=16, N=2 over vocab 80), with no setting flags
    assert main(["eval", "--checkpoint", str(out), "--num-examples", "8", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["accuracy"] <= 1.0
    assert (result["setting"]["seq_len"], result["setting"]["num_kv_pairs"], result["setting"]["vocab_size"]) == (16, 2, 80)
    assert main(["plot", str(out)]) == 0
    assert (out / "curves.png").stat().st_size > 1000


def test_set_values_are_parsed_by_the_field_type(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--set", "short_conv=false", "--set", "gamma=0.5", "--steps", "1",
                 "--out", str(out)]) == 0
    config = load_checkpoint(out).config
    assert config.short_conv is False and config.gamma == 0.5


BAD_ARGUMENTS = [
    (["train", "--steps", "0"], "--steps must be an integer >= 1"),
    (["train", "--eval-every", "0"], "--eval-every must be an integer >= 1"),
    (["train", "--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["train", "--lr", "nan"], "--lr must be a finite number"),
    (["train", "--set", "foo=1"], "unknown config key 'foo'; known keys: vocab_size"),
    (["train", "--set", "gamma"], "expected KEY=VALUE"),
    (["train", "--set", "short_conv=yes"], "short_conv must be true or false"),
    (["train", "--set", "alpha_init=nan"], "alpha_init must be a finite number"),
    (["train", "--task", "foo"], "--task 'foo' is not available; tasks: mqar, lm"),
    (["train", "--data", "x.txt"], "--data: flags of --task lm, not of --task mqar"),
    (["train", "--device", "tpu"], "device must be"),
    (["train", "--preset", "tiny", "--seq-len", "64", "--num-kv-pairs", "4", "--vocab-size", "4096"], "exceeds the model's vocab_size"),
    (["eval", "--checkpoint", "/nonexistent", "--num-examples", "0"], "--num-examples must be an integer >= 1"),
    (["eval", "--checkpoint", "/nonexistent"], "must be a directory with model.safetensors"),
    (["export", "--format", "tensorrt", "-o", "x.onnx"], "--format tensorrt is not available"),
    (["export", "--opset", "99", "-o", "x.onnx"], "--opset must be in [18,"),
    (["export", "-o", "."], "is a directory"),
    (["export", "--format", "aoti", "-o", "x.onnx"], "must end in .pt2"),
    (["train", "--seed", "-1"], "--seed must be an integer >= 0"),
    (["train", "--vocab-size", "0"], "--vocab-size must be an integer >= 1"),
    (["train", "--preset", "tiny"], "defaults: 256, 64"),
    (["train", "--set", "init_std=-1"], "init_std > 0"),
    (["validate", "--batch", "0"], "--batch must be an integer >= 1"),
]


@pytest.mark.parametrize("argv,message", BAD_ARGUMENTS, ids=[" ".join(a[:3]) for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_one_line_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("ramnet: error: ") and message in err, err
    assert not (tmp_path / "runs").exists(), "an argument error must come before any work"


def test_argparse_usage_errors_keep_their_usage_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--precision", "fp8"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ") and "invalid choice: 'fp8'" in err.splitlines()[-1]


def test_debug_shows_the_traceback():
    with pytest.raises(ValueError, match="--steps must be"):
        main(["train", "--steps", "0", "--debug"])


def test_a_non_empty_out_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["train", *TINY, "--steps", "1", "--out", str(out)]) == 2
    assert "is not empty; pass --resume" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert main(["train", *TINY, "--steps", "1", "--out", str(out), "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "keep me" and (out / "model.safetensors").is_file()
    file_out = tmp_path / "a-file"
    file_out.write_text("x")
    assert main(["train", *TINY, "--steps", "1", "--out", str(file_out)]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_resume_from_step_2_ends_with_the_weights_of_the_uninterrupted_run(tmp_path):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    assert main(["train", *TINY, "--steps", "4", "--eval-every", "2", "--save-every", "2", "--out", str(full)]) == 0
    assert sorted(p.name for p in (full / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    step2 = full / "checkpoints" / "step-00000002"
    assert {"model.safetensors", "config.json", "trainer_state.json", "trainer_state.pt"} <= {p.name for p in step2.iterdir()}
    # no training flags: the model, the setting and every argument (steps, batch, data, schedule) come from it
    assert main(["train", "--device", "cpu", "--resume", str(step2), "--out", str(resumed)]) == 0
    a, b = load_checkpoint(full).state_dict(), load_checkpoint(resumed).state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert [h["step"] for h in metrics["history"]] == [2, 4] and metrics["train"]["batch_size"] == 4
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == ["step-00000004"]  # --save-every carried


@pytest.fixture
def run_with_checkpoints(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "4", "--save-every", "2", "--out", str(run)]) == 0
    return run


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ramnet: error: "), err
    return err


@pytest.mark.parametrize("flags,message", [
    (["--seq-len", "32"], "the checkpoint was trained on"),
    (["--lr", "0.5"], "--lr 0.5 (checkpoint: 0.001)"),
    (["--batch-size", "8"], "--batch-size 8 (checkpoint: 4)"),
    (["--alpha-lr-mult", "10"], "--alpha-lr-mult 10.0 (checkpoint: 1.0)"),
    (["--set", "gamma=0.5"], "gamma=0.5 (checkpoint: 1.0)"),
    (["--steps", "2"], "--steps must exceed it"),
])
def test_resume_refuses_what_would_change_the_run(run_with_checkpoints, flags, message, capsys, tmp_path):
    step2 = run_with_checkpoints / "checkpoints" / "step-00000002"
    capsys.readouterr()
    assert main(["train", "--device", "cpu", "--resume", str(step2), "--out", str(tmp_path / "new"), *flags]) == 2
    assert message in _error(capsys)
    assert not (tmp_path / "new").exists(), "an argument error must leave no output directory"


def test_resume_refuses_another_runs_directory_and_newer_checkpoints(run_with_checkpoints, capsys, tmp_path):
    other = tmp_path / "other"
    assert main(["train", *TINY, "--steps", "1", "--out", str(other)]) == 0
    before = (other / "model.safetensors").read_bytes()
    capsys.readouterr()
    step2 = run_with_checkpoints / "checkpoints" / "step-00000002"
    assert main(["train", "--device", "cpu", "--resume", str(step2), "--out", str(other)]) == 2
    assert "is not the run being resumed" in _error(capsys)
    assert (other / "model.safetensors").read_bytes() == before
    assert main(["train", "--device", "cpu", "--resume", str(step2), "--out", str(run_with_checkpoints)]) == 2
    assert "newer than the resumed step 2 (step-00000004)" in _error(capsys)


def test_overwrite_removes_nothing_when_the_arguments_are_bad(run_with_checkpoints, capsys):
    capsys.readouterr()
    files = sorted(p.relative_to(run_with_checkpoints) for p in run_with_checkpoints.rglob("*"))
    assert main(["train", *TINY, "--set", "init_std=-1", "--overwrite", "--out", str(run_with_checkpoints)]) == 2
    assert "init_std > 0" in _error(capsys)
    assert sorted(p.relative_to(run_with_checkpoints) for p in run_with_checkpoints.rglob("*")) == files


def test_train_help_gives_the_lm_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default mqar-small, --task lm: tiny;" in text
    assert "--task lm: tokens per packed row (default 512)" in text
    assert "(default 100; --task lm: steps // 20, at most 2000)" in text and "--task lm: None" not in text
