"""Library calls leave process-wide state as they found it: threads, the global RNG, module modes, the
matplotlib backend, autocast."""
import json

import pytest
import torch

from ramnet import RamNetConfig, RamNetForCausalLM
from ramnet.data.mqar import MQARSetting, multiquery_ar
from ramnet.train import TrainArgs, evaluate, train_mqar

SETTING = MQARSetting(vocab_size=80, seq_len=16, num_kv_pairs=2)


def test_train_mqar_restores_threads_and_never_touches_the_global_rng(tmp_path):
    threads = torch.get_num_threads()
    torch.manual_seed(1234)
    rng = torch.get_rng_state()
    args = TrainArgs(steps=2, batch_size=4, num_train=16, num_eval=8, eval_every=1, device="cpu",
                     threads=1 if threads != 1 else 2)
    train_mqar(RamNetConfig.from_name("tiny", vocab_size=80), SETTING, args, progress=False)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng)


def test_train_mqar_restores_threads_when_it_fails(monkeypatch):
    import ramnet.train as T

    def broken_evaluate(*args, **kwargs):
        raise RuntimeError("evaluation broke")

    monkeypatch.setattr(T, "evaluate", broken_evaluate)
    threads = torch.get_num_threads()
    args = TrainArgs(steps=1, batch_size=4, num_train=16, num_eval=8, device="cpu", threads=1 if threads != 1 else 2)
    with pytest.raises(RuntimeError, match="evaluation broke"):
        train_mqar(RamNetConfig.from_name("tiny", vocab_size=80), SETTING, args, progress=False)
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_hands_every_module_back_in_its_mode(training):
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny", vocab_size=80)).train(training)
    model.blocks[0].train(not training)  # a mixed state must survive too
    before = {name: m.training for name, m in model.named_modules()}
    x, y = multiquery_ar(SETTING, 4, seed=0)
    evaluate(model, x, y)
    assert {name: m.training for name, m in model.named_modules()} == before


def test_plot_leaves_the_matplotlib_backend_alone(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    from ramnet.plots import plot_history

    before = matplotlib.get_backend()
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"history": [{"step": 1, "loss": 1.0, "accuracy": 0.5}], "setting": {}}))
    matplotlib.use("svg")  # a caller's own choice, which plotting must not switch to Agg
    try:
        plot_history(metrics)
        assert matplotlib.get_backend() == "svg" and (tmp_path / "curves.png").is_file()
    finally:
        matplotlib.use(before)


def test_export_leaves_the_module_mode_alone(tmp_path):
    pytest.importorskip("onnxscript")
    from ramnet.export.onnx import to_onnx

    model = RamNetForCausalLM(RamNetConfig.from_name("tiny")).train()
    model.blocks[1].eval()
    before = {name: m.training for name, m in model.named_modules()}
    to_onnx(model, tmp_path / "m.onnx")
    assert {name: m.training for name, m in model.named_modules()} == before


def test_an_fp32_run_inside_a_callers_autocast_stays_fp32():
    args = TrainArgs(steps=2, batch_size=4, num_train=16, num_eval=8, eval_every=2, device="cpu")
    config = RamNetConfig.from_name("tiny", vocab_size=80)
    plain = train_mqar(config, SETTING, args, progress=False)["history"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = train_mqar(config, SETTING, args, progress=False)["history"]
    assert [h["loss"] for h in inside] == [h["loss"] for h in plain]
