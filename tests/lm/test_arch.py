"""``ramnet train --task lm --arch attention|deltanet``: the baselines train in the LM loop, attention keeps packed
documents apart, ``eval --task lm`` reads their checkpoints, and DeltaNet refuses a CPU device."""
import json

import pytest
import torch

from ramnet.cli import main
from ramnet.lm.arch import BaselineConfig, BaselineForCausalLM
from ramnet.lm.data import make_batch

pytest.importorskip("datasets")
pytest.importorskip("transformers")


def _train(corpus, out, *extra):
    argv = ["train", "--task", "lm", "--data", str(corpus), "--seq-len", "32", "--batch-size", "4",
            "--device", "cpu", "--out", str(out), *extra]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


def test_attention_trains_in_the_lm_loop_and_eval_reads_its_checkpoint(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    metrics = _train(corpus, out, "--arch", "attention", "--d-model", "64", "--n-layers", "2", "--n-heads", "2",
                     "--d-ff", "128", "--steps", "12", "--lr", "3e-3", "--eval-every", "6", "--save-every", "12")
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    assert printed["arch"] == "attention" and printed["parameters"] == metrics["parameters"]
    assert metrics["config"]["arch"] == "attention" and metrics["config"]["d_model"] == 64
    history = metrics["history"]
    assert history[-1]["loss"] < history[0]["loss"] - 0.5
    assert main(["eval", "--task", "lm", "--checkpoint", str(out), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["loss"] == pytest.approx(history[-1]["val_loss"], rel=1e-5)
    for argv in (["generate", "--checkpoint", str(out), "--prompt", "a"],
                 ["convert", str(out), "--out", str(tmp_path / "c")],
                 ["train", "--task", "lm", "--resume", str(out), "--steps", "20", "--out", str(out)]):
        assert main(argv) != 0
        assert "--arch attention" in capsys.readouterr().err


def _attention(rows: int = 1, seq_len: int = 16):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = BaselineForCausalLM(BaselineConfig(arch="attention", vocab_size=50, d_model=32, n_layers=2,
                                                   n_heads=2, d_ff=64, max_seq_len=seq_len))
    return model.eval()


def test_attention_does_not_see_across_a_document_boundary():
    model = _attention()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 50, (2, 16), generator=gen)
    starts = torch.zeros(2, 16, dtype=torch.bool)
    starts[0, 6] = True  # row 0: documents [0, 6) and [6, 16); row 1: a third document
    x, _, cu = make_batch(ids, starts)
    assert cu.tolist() == [0, 6, 16, 32]
    changed = x.clone()
    changed[0, 2] = (changed[0, 2] + 1) % 50  # a token of document 1
    with torch.no_grad():
        a, b = model(x, cu_seqlens=cu), model(changed, cu_seqlens=cu)
        alone = model(x[:, 6:16])  # document 2 on its own: positions restart there
    assert not torch.allclose(a[0, 2:6], b[0, 2:6])
    torch.testing.assert_close(a[0, 6:], b[0, 6:], rtol=0, atol=0)
    torch.testing.assert_close(a[0, 6:16], alone[0], rtol=1e-5, atol=1e-5)
    # rows of one document each run as plain causal attention, equal to the rows as a batch
    one = make_batch(ids, torch.zeros(2, 16, dtype=torch.bool))
    with torch.no_grad():
        torch.testing.assert_close(model(one[0], cu_seqlens=one[2])[0].view(2, 16, -1), model(ids),
                                   rtol=1e-5, atol=1e-5)


def test_deltanet_needs_cuda(corpus, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the refusal is for CPU-only machines")
    assert main(["train", "--task", "lm", "--arch", "deltanet", "--data", str(corpus), "--device", "cpu",
                 "--steps", "2", "--out", str(tmp_path / "d")]) != 0
    assert "--arch deltanet needs a CUDA device" in capsys.readouterr().err


def test_deltanet_trains_on_cuda(corpus, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("fla's DeltaNet runs Triton kernels, which need CUDA; this machine has none")
    pytest.importorskip("fla")
    metrics = _train(corpus, tmp_path / "d", "--arch", "deltanet", "--d-model", "64", "--n-layers", "2",
                     "--n-heads", "2", "--d-ff", "128", "--steps", "12", "--lr", "3e-3", "--device", "cuda")
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"] - 0.5


def test_size_flags_and_refusals(corpus, tmp_path, capsys):
    from ramnet.lm.args import LMArgs

    assert LMArgs(d_model=96, n_layers=3).model_config(257).d_model == 96  # ramnet: the preset's sizes overridden
    with pytest.raises(ValueError, match="--arch must be one of"):
        LMArgs(arch="mamba")
    with pytest.raises(ValueError, match="not for --arch attention"):
        LMArgs(arch="attention", model={"gamma": 0.5})
    with pytest.raises(ValueError, match="multiple of --n-heads"):
        LMArgs(arch="attention", d_model=30, n_heads=4).model_config(257)
