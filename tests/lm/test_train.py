"""``ramnet train --task lm`` in one process: outputs, the loss falling, resume equal to the uninterrupted run,
run files with flags over them, the CLI's one-line errors, ``eval --task lm`` and ``generate``."""
import json

import pytest
import torch
from safetensors.torch import load_file

from ramnet.cli import main
from ramnet.lm.args import LMArgs
from ramnet.lm.loop import train_lm

pytest.importorskip("datasets")
pytest.importorskip("transformers")


def _train(corpus, out, *extra):
    argv = ["train", "--task", "lm", "--preset", "tiny", "--data", str(corpus), "--seq-len", "32",
            "--batch-size", "4", "--device", "cpu", "--out", str(out), *extra]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


def test_train_writes_the_model_tokenizer_and_metrics_and_the_loss_falls(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    metrics = _train(corpus, out, "--steps", "12", "--lr", "3e-3", "--eval-every", "6")
    assert {"model.safetensors", "config.json", "tokenizer.json", "metrics.json", "metrics.csv"} <= \
        {p.name for p in out.iterdir()}
    assert metrics["world_size"] == 1 and metrics["vocab_size"] == 257
    history = metrics["history"]
    assert [h["step"] for h in history] == list(range(1, 13))
    assert all(h["tokens_per_s"] > 0 for h in history)
    assert history[-1]["loss"] < history[0]["loss"] - 0.5
    assert [h["step"] for h in history if "val_loss" in h] == [6, 12]
    assert history[-1]["val_ppl"] == pytest.approx(torch.tensor(history[-1]["val_loss"]).exp().item(), rel=1e-6)
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,lr") and len(rows) == 13
    assert load_file(out / "model.safetensors")["embed.weight"].shape == (257, 64)
    capsys.readouterr()
    # eval on the run's own validation rows gives the run's last validation loss (and leaves the global RNG alone)
    torch.manual_seed(7)
    rng = torch.get_rng_state()
    assert main(["eval", "--task", "lm", "--checkpoint", str(out), "--device", "cpu"]) == 0
    assert torch.equal(torch.get_rng_state(), rng)
    result = json.loads(capsys.readouterr().out)
    assert result["loss"] == pytest.approx(history[-1]["val_loss"], rel=1e-5)
    assert main(["eval", "--task", "lm", "--checkpoint", str(out), "--data", str(corpus), "--max-rows", "4",
                 "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] > 0
    # the run's validation rows exist at its --seq-len and tokenizer only: others need --data
    for flag, value in (("--seq-len", "16"), ("--tokenizer", "gpt2")):
        assert main(["eval", "--task", "lm", "--checkpoint", str(out), flag, value, "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ramnet: error: {flag} ") and "differs from the run's" in err and "--data" in err
    assert main(["eval", "--task", "lm", "--checkpoint", str(out), "--seq-len", "32", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] == pytest.approx(history[-1]["val_loss"], rel=1e-5)
    # generate: the prompt, then sampled bytes; the same seed gives the same text
    texts = []
    for _ in range(2):
        assert main(["generate", "--checkpoint", str(out), "--prompt", "the cat", "--max-new-tokens", "12",
                     "--seed", "3", "--device", "cpu"]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] and texts[0].startswith("the cat") and len(texts[0]) > len("the cat\n")
    assert torch.equal(torch.get_rng_state(), rng)


def test_resume_ends_with_the_weights_of_the_uninterrupted_run(corpus, tmp_path):
    flags = ("--steps", "4", "--save-every", "2", "--grad-accum", "2", "--eval-every", "2")
    whole = _train(corpus, tmp_path / "whole", *flags)
    part = tmp_path / "part"
    _train(corpus, part, *flags)
    # interrupted after the checkpoint of step 2: drop what came later
    import shutil

    shutil.rmtree(part / "checkpoints" / "step-00000004")
    for name in ("model.safetensors", "metrics.json"):
        (part / name).unlink()
    assert main(["train", "--task", "lm", "--resume", str(part), "--out", str(part), "--device", "cpu"]) == 0
    resumed = json.loads((part / "metrics.json").read_text())
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(part / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_flags_that_change_the_run(corpus, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    _train(corpus, out, "--steps", "2", "--save-every", "2", "--threads", "1")
    capsys.readouterr()
    assert main(["train", "--task", "lm", "--resume", str(out), "--out", str(out), "--steps", "4",
                 "--lr", "1e-2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ramnet: error: --resume") and "--lr 0.01 (checkpoint: 0.001)" in err
    # --steps lays out the cosine decay: a longer run would raise the LR mid-run
    assert "--steps 4 (checkpoint: 2)" in err and "LR schedule (--steps, --warmup-steps)" in err
    assert main(["train", "--task", "lm", "--resume", str(out), "--out", str(out), "--warmup-steps", "1"]) == 2
    assert "--warmup-steps 1 (checkpoint: 0)" in capsys.readouterr().err
    # the device and the thread count are not inherited (as for --task mqar)
    import ramnet.lm.loop as loop

    seen = {}

    def fake_train_lm(args, **kwargs):
        seen.update(device=args.device, threads=args.threads, steps=args.steps)
        raise ValueError("stop")

    monkeypatch.setattr(loop, "train_lm", fake_train_lm)
    assert main(["train", "--task", "lm", "--resume", str(out), "--out", str(out)]) == 2
    assert seen == {"device": None, "threads": None, "steps": 2}


def test_a_run_file_with_flags_over_it(corpus, tmp_path):
    pytest.importorskip("yaml")
    spec = tmp_path / "run.yaml"
    spec.write_text(f"data: {corpus}\nseq_len: 32\nbatch_size: 4\nsteps: 3\nlr: 2e-3\nlog_every: 2\n"
                    "streaming: true\nmodel:\n  short_conv: true\n")
    metrics = _train(corpus, tmp_path / "run", "--config", str(spec), "--steps", "2")
    assert metrics["args"]["steps"] == 2 and metrics["args"]["lr"] == 2e-3 and metrics["config"]["short_conv"]
    assert metrics["args"]["streaming"] and "train_rows" not in metrics["data"]
    assert [h["step"] for h in metrics["history"]] == [2]


def test_checkpointing_and_the_chunked_loss_change_nothing(corpus):
    base = dict(data=[str(corpus)], seq_len=32, batch_size=4, steps=2, device="cpu")
    plain = train_lm(LMArgs(**base), progress=False)
    other = train_lm(LMArgs(**base, activation_checkpointing=True, chunk_size=40), progress=False)
    for a, b in zip(plain["history"], other["history"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_tensorboard_gets_the_training_and_validation_scalars(corpus, tmp_path, monkeypatch):
    import ramnet.lm.metrics as M

    scalars = []

    class Writer:
        def add_scalar(self, tag, value, step):
            scalars.append((tag, step))

        def close(self):
            scalars.append(("closed", None))

    monkeypatch.setattr(M, "_summary_writer", lambda path: Writer())
    _train(corpus, tmp_path / "run", "--steps", "2", "--eval-every", "2")
    assert {("train/loss", 1), ("train/loss", 2), ("train/tokens_per_s", 2), ("val/val_ppl", 2)} <= set(scalars)
    assert scalars[-1] == ("closed", None)


def test_train_lm_leaves_threads_and_the_global_rng_alone(corpus):
    threads = torch.get_num_threads()
    torch.manual_seed(7)
    rng = torch.get_rng_state()
    train_lm(LMArgs(data=[str(corpus)], seq_len=32, batch_size=4, steps=1, device="cpu",
                    threads=1 if threads != 1 else 2), progress=False)
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)


BAD = [
    (["--seq-len", "1"], "--seq-len must be an integer >= 2"),
    (["--batch-size", "6", "--grad-accum", "4"], "--batch-size 6 must be a multiple of --grad-accum 4"),
    (["--precision", "fp16"], "fp16 is not offered for --task lm"),
    (["--num-kv-pairs", "4"], "--num-kv-pairs: MQAR flags, not for --task lm"),
    (["--data-format", "csv"], "invalid choice"),
    (["--set", "vocab_size=100"], "vocab_size must be an integer >= the tokenizer's 257"),
    (["--dist", "ddp", "--holdout-every", "0"], "--holdout-every must be an integer >= 2"),
    (["--holdout-every", "1"], "--holdout-every must be an integer >= 2, got 1"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_arguments_are_one_line_errors(extra, message, corpus, tmp_path, capsys):
    argv = ["train", "--task", "lm", "--data", str(corpus), "--steps", "1", "--out", str(tmp_path / "run"), *extra]
    if message == "invalid choice":
        with pytest.raises(SystemExit):
            main(argv)
        return
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ramnet: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_missing_data_and_bad_run_files_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "bad.json").write_text(json.dumps({"data": "x.txt", "learning_rate": 1}))
    cases = [(["--config", str(tmp_path / "bad.json")], "unknown keys ['learning_rate']"),
             ([], "--data is required"),
             (["--data", str(tmp_path / "none.txt")], "none.txt: no such file")]
    for extra, message in cases:
        assert main(["train", "--task", "lm", "--out", str(tmp_path / "run"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ramnet: error: ") and message in err, err


@pytest.mark.parametrize("text,message", [("", "--val-data {path}: cannot read it"),
                                          ("short text\n", "--val-data makes no row of --seq-len 32 tokens")],
                         ids=["empty", "shorter-than-a-row"])
def test_a_bad_val_data_is_refused_before_any_step(text, message, corpus, tmp_path, capsys):
    val = tmp_path / "val.txt"
    val.write_text(text)
    argv = ["train", "--task", "lm", "--data", str(corpus), "--val-data", str(val), "--seq-len", "32",
            "--steps", "1", "--device", "cpu", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err  # datasets' progress bars, then the one error line
    last = err.strip().splitlines()[-1]
    assert last.startswith("ramnet: error: ") and message.format(path=val) in last and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_an_empty_data_file_is_a_one_line_error_naming_data(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["train", "--task", "lm", "--data", str(empty), "--steps", "1", "--device", "cpu", "--out",
                 str(tmp_path / "run")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"ramnet: error: --data {empty}: cannot read it"), last
    assert not (tmp_path / "run").exists()


def test_generate_refuses_an_empty_prompt(tmp_path, capsys):
    # packing never trains "end of text -> first token", so an empty prompt has nothing to start from
    assert main(["generate", "--checkpoint", str(tmp_path), "--prompt", "", "--tokenizer", "byte",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ramnet: error: --prompt must hold at least one token") and err.count("\n") == 1, err
    with pytest.raises(SystemExit):  # no default prompt
        main(["generate", "--checkpoint", str(tmp_path), "--device", "cpu"])
    assert "--prompt" in capsys.readouterr().err


def test_convert_names_its_argument_and_eval_generate_name_an_hf_checkpoint(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nothere"), "--out", str(tmp_path / "c1")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ramnet: error: checkpoint {tmp_path / 'nothere'}: neither") and "--resume" not in err
    assert not (tmp_path / "c1").exists()
    hf = tmp_path / "hf"  # what convert --format hf writes: a transformers config
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"architectures": ["RamNetHFForCausalLM"], "model_type": "ramnet"}))
    for argv in (["eval", "--task", "lm", "--checkpoint", str(hf), "--device", "cpu"],
                 ["generate", "--checkpoint", str(hf), "--prompt", "a", "--device", "cpu"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"ramnet: error: --checkpoint {hf} is a Hugging Face checkpoint; load it with "
                              "ramnet.hf") and err.count("\n") == 1, err


def test_processes_destroys_the_group_it_created_when_a_later_check_fails(monkeypatch):
    import ramnet.lm.dist as D

    state = {"initialized": False, "destroyed": 0}
    for key, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(D.dist, "init_process_group", lambda backend: state.update(initialized=True))
    monkeypatch.setattr(D.dist, "is_initialized", lambda: state["initialized"])
    monkeypatch.setattr(D.dist, "get_world_size", lambda: 3)  # a group that disagrees with WORLD_SIZE

    def destroy():
        state.update(initialized=False, destroyed=state["destroyed"] + 1)

    monkeypatch.setattr(D.dist, "destroy_process_group", destroy)
    with pytest.raises(ValueError, match="WORLD_SIZE says 2"):
        with D.processes("cpu"):
            pass
    assert state == {"initialized": False, "destroyed": 1}


def test_the_logged_loss_is_the_mean_since_the_last_entry_also_across_a_resume(corpus, tmp_path):
    every = _train(corpus, tmp_path / "every", "--steps", "6", "--eval-every", "6")["history"]
    out = tmp_path / "third"
    third = _train(corpus, out, "--steps", "6", "--eval-every", "6", "--log-every", "3", "--save-every", "2")
    assert [h["step"] for h in third["history"]] == [3, 6]
    for entry, window in zip(third["history"], (every[0:3], every[3:6])):
        assert entry["loss"] == pytest.approx(sum(h["loss"] for h in window) / 3, rel=1e-6)
    # resumed from step 4, between two log steps: the window holds step 4 from before the interruption
    import shutil

    shutil.rmtree(out / "checkpoints" / "step-00000006")
    assert main(["train", "--task", "lm", "--resume", str(out / "checkpoints" / "step-00000004"), "--out",
                 str(tmp_path / "resumed"), "--device", "cpu"]) == 0
    resumed = json.loads((tmp_path / "resumed" / "metrics.json").read_text())["history"]
    assert [h["loss"] for h in resumed] == pytest.approx([h["loss"] for h in third["history"]], rel=1e-9)


def test_the_readme_cpu_figure_comes_with_its_recipe():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Language-model pretraining", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    assert "cat README.md docs/*.md > corpus.txt" in block  # the corpus of the figure
    assert "--threads 1" in block and "one CPU thread" in section  # the command measured is the one shown
