"""Two processes (torchrun, gloo on CPU): the acceptance command, loss equal to one process on the same global
batch (fp32, relative 1e-5) with FSDP2, with DDP + gradient accumulation and with compiled blocks + activation
checkpointing under FSDP2, a checkpoint written by 2 processes
resumed by 1, and ``ramnet convert`` of that checkpoint to a native and a Hugging Face model."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from ramnet.cli import main

from .corpus import write_corpus

pytest.importorskip("datasets")
pytest.importorskip("transformers")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("needs torch.distributed with gloo", allow_module_level=True)

COMMAND = ["train", "--task", "lm", "--preset", "tiny", "--data", "corpus.txt", "--seq-len", "64", "--steps", "8",
           "--device", "cpu"]


def _torchrun(cwd, *argv, procs=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                             str(procs),
                             "-m", "ramnet", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _losses(run):
    return [h["loss"] for h in json.loads((run / "metrics.json").read_text())["history"]]


def _close(a, b, rel=1e-5):
    return len(a) == len(b) and all(abs(x - y) <= rel * abs(y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The acceptance command with 2 processes (FSDP2, checkpoints at steps 4 and 8) and with one."""
    root = tmp_path_factory.mktemp("lm-dist")
    os.environ.setdefault("HF_DATASETS_CACHE", str(root / "hf-cache"))
    write_corpus(root / "corpus.txt")
    _torchrun(root, *COMMAND, "--save-every", "4", "--out", "runs/lm2")
    cwd = os.getcwd()
    try:
        os.chdir(root)
        assert main([*COMMAND, "--out", "runs/lm1"]) == 0
    finally:
        os.chdir(cwd)
    return root


def test_two_processes_write_world_size_2_and_a_falling_loss(runs):
    metrics = json.loads((runs / "runs/lm2/metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["dist"] == "fsdp"
    losses = [h["loss"] for h in metrics["history"]]
    assert len(losses) == 8 and losses[-1] < losses[0] - 0.3 and all(b < a for a, b in zip(losses, losses[1:]))


def test_fsdp_on_two_processes_equals_one_process(runs):
    two, one = _losses(runs / "runs/lm2"), _losses(runs / "runs/lm1")
    assert _close(two, one), (two, one)
    a, b = load_file(runs / "runs/lm2/model.safetensors"), load_file(runs / "runs/lm1/model.safetensors")
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_ddp_with_gradient_accumulation_equals_one_process(runs):
    _torchrun(runs, *COMMAND, "--dist", "ddp", "--grad-accum", "2", "--out", "runs/ddp")
    metrics = json.loads((runs / "runs/ddp/metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["dist"] == "ddp"
    assert _close(_losses(runs / "runs/ddp"), _losses(runs / "runs/lm1"))


def test_compiled_blocks_with_activation_checkpointing_under_fsdp2_equal_eager_one_process(runs):
    _torchrun(runs, *COMMAND, "--compile", "--activation-checkpointing", "--out", "runs/compiled")
    assert json.loads((runs / "runs/compiled/metrics.json").read_text())["args"]["compile"] is True
    assert _close(_losses(runs / "runs/compiled"), _losses(runs / "runs/lm1"))


def test_a_checkpoint_of_two_processes_resumes_with_one(runs):
    checkpoint = runs / "runs/lm2/checkpoints/step-00000004"
    assert json.loads((checkpoint / "trainer_state.json").read_text())["world_size"] == 2
    out = runs / "runs/resumed"
    assert main(["train", "--task", "lm", "--resume", str(checkpoint), "--out", str(out), "--device", "cpu"]) == 0
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["world_size"] == 1
    assert _close(_losses(out), _losses(runs / "runs/lm2"))


def test_convert_gives_the_final_model_as_native_and_hugging_face(runs, capsys):
    checkpoint = runs / "runs/lm2/checkpoints/step-00000008"
    native, hf = runs / "native", runs / "hf"
    assert main(["convert", str(checkpoint), "--out", str(native)]) == 0
    final, converted = load_file(runs / "runs/lm2/model.safetensors"), load_file(native / "model.safetensors")
    assert set(final) == set(converted) and all(torch.equal(final[k], converted[k]) for k in final)
    capsys.readouterr()
    assert main(["eval", "--task", "lm", "--checkpoint", str(native), "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["ppl"] > 1
    assert main(["convert", str(runs / "runs/lm2"), "--out", str(hf), "--format", "hf"]) == 0
    import ramnet.hf  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ramnet.checkpoint import load_checkpoint

    model = AutoModelForCausalLM.from_pretrained(str(hf))
    tok = AutoTokenizer.from_pretrained(str(hf))
    ids = torch.tensor([tok("the cat sat")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, load_checkpoint(native)(ids), rtol=0, atol=0)
    assert main(["convert", str(checkpoint), "--out", str(native)]) == 2  # an existing model is not overwritten


def test_one_process_under_torchrun_runs_the_distributed_path_with_one_process_losses(runs):
    """``torchrun --nproc-per-node 1`` joins a process group and wraps with FSDP2, as on one GPU with NCCL; the
    losses are those of the plain single-process run."""
    _torchrun(runs, *COMMAND, "--out", "runs/lm1-torchrun", procs=1)
    metrics = json.loads((runs / "runs/lm1-torchrun/metrics.json").read_text())
    assert metrics["world_size"] == 1 and metrics["dist"] == "fsdp"
    assert json.loads((runs / "runs/lm1/metrics.json").read_text())["dist"] is None
    assert _close(_losses(runs / "runs/lm1-torchrun"), _losses(runs / "runs/lm1"))
