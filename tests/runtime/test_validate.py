"""`ramnet export` and `ramnet validate --json` on CPU: exit codes, the JSON last line, failure detection."""
import json

import pytest
import torch

pytest.importorskip("onnxruntime_extensions", reason="needs the [onnx] extra")

import onnx  # noqa: E402

from ramnet.cli import main  # noqa: E402
from ramnet.runtime import validate as V  # noqa: E402


ALL_KEYS = ("compiled", "onnx-custom-prefill", "onnx-custom-decode", "onnx-standard-prefill", "onnx-standard-decode",
            "aoti")


def test_validate_tiny_json_with_layers(capsys):
    assert main(["validate", "--preset", "tiny", "--json", "--layers"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ALL_KEYS:
        assert result[key]["passed"] is True and result[key]["max_rel_err"] < 1e-4, key
        assert set(result[key]["layers"]) == {"0", "1"}, key
    assert result["skipped"] == {}


def test_validate_catches_a_drifting_layer(monkeypatch):
    """A perturbation in one layer's decode state must show up in that layer's row and fail the artifact."""
    from ramnet import RamNetConfig, RamNetForCausalLM
    from ramnet.runtime import ort as O

    real_run = O.run

    def drifting_run(sess, feeds):
        out = real_run(sess, feeds)
        if "S_1_out" in out:
            out["S_1_out"] = out["S_1_out"] * 1.01
        return out

    monkeypatch.setattr(O, "run", drifting_run)
    torch.manual_seed(0)
    result = V.validate(RamNetForCausalLM(RamNetConfig.from_name("tiny")), decode_steps=2, layers=True, aoti=False)
    bad = result["onnx-custom-decode"]
    assert not bad["passed"] and bad["layers"]["1"]["max_rel_err"] > 100 * bad["layers"]["0"]["max_rel_err"]
    assert result["onnx-custom-prefill"]["passed"] and result["skipped"] == {"aoti": "disabled (--no-aoti)"}


def test_validate_fails_loudly_above_tolerance(monkeypatch, capsys):
    monkeypatch.setitem(V.TOLERANCE, torch.float32, 0.0)  # any rounding difference now fails
    assert main(["validate", "--preset", "tiny", "--decode-steps", "1", "--json", "--no-aoti"]) == 1
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not all(v["passed"] for k, v in result.items() if k != "skipped")


def test_export_cli_writes_custom_onnx(tmp_path, capsys):
    out = tmp_path / "decode.onnx"
    assert main(["export", "--preset", "tiny", "--format", "onnx", "--flavor", "custom", "--graph", "decode",
                 "-o", str(out)]) == 0
    assert {n.op_type for n in onnx.load(str(out)).graph.node if n.domain == "ramnet"} == {"Address", "PdmaScan"}


def test_export_cli_writes_aoti_package_that_runs(tmp_path):
    from ramnet.runtime.aoti import load

    out = tmp_path / "prefill.pt2"
    assert main(["export", "--preset", "tiny", "--format", "aoti", "--graph", "prefill", "-o", str(out)]) == 0
    runner = load(out)
    assert runner.metadata["ramnet_graph"] == "prefill"
    logits = runner(torch.randint(0, 64, (3, 7)))[0]
    assert logits.shape[:2] == (3, 7) and torch.isfinite(logits).all()


def test_export_cli_refuses_tensorrt_with_a_pointer(capsys, tmp_path):
    assert main(["export", "--preset", "tiny", "--format", "tensorrt", "-o", str(tmp_path / "x.engine")]) == 2
    assert "TensorRT" in capsys.readouterr().err


@pytest.mark.parametrize("kw,exc,match", [(dict(batch=0), ValueError, "batch must be an int >= 1"),
                                          (dict(prompt_len=0), ValueError, "prompt_len must be an int >= 1"),
                                          (dict(decode_steps=-1), ValueError, "decode_steps must be an int >= 0")])
def test_validate_rejects_bad_arguments(kw, exc, match):
    from ramnet import RamNetConfig, RamNetForCausalLM

    with pytest.raises(exc, match=match):
        V.validate(RamNetForCausalLM(RamNetConfig.from_name("tiny")), **kw)
    with pytest.raises(TypeError, match="model must be a RamNetForCausalLM"):
        V.validate(torch.nn.Linear(2, 2))


def test_validate_skips_the_custom_graphs_without_onnxruntime_extensions(monkeypatch):
    import importlib.util

    from ramnet import RamNetConfig, RamNetForCausalLM

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime_extensions" else real(name, *a))
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny")).train()
    result = V.validate(model, aoti=False)
    assert "onnxruntime-extensions" in result["skipped"]["onnx-custom"]
    assert not any(k.startswith("onnx-custom-") for k in result)
    assert result["onnx-standard-decode"]["passed"] and model.training  # the caller's mode is left as found


@pytest.mark.parametrize("gate_conv", [False, True])
def test_validate_a_write_gated_model(gate_conv):
    """The optional write gate rides through every artifact (its gate is standard ops before the scan op), and so
    does its conv'd form (``write_gate_conv``: a wider conv state), here with random gate taps."""
    from ramnet import RamNetConfig, RamNetForCausalLM

    torch.manual_seed(0)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny", write_gate=True, short_conv=True,
                                                     write_gate_conv=gate_conv))
    if gate_conv:
        with torch.no_grad():
            for block in model.blocks:
                block.mixer.conv.weight[-model.config.n_heads:].normal_()
    result = V.validate(model, decode_steps=2)
    for key in ALL_KEYS:
        assert result[key]["passed"] is True and result[key]["max_abs_err"] < 1e-5, key
