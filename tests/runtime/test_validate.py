"""`ramnet export` and `ramnet validate --json` on CPU: exit codes, the JSON last line, failure detection."""
import json

import pytest
import torch

pytest.importorskip("onnxruntime_extensions", reason="needs the [onnx] extra")

import onnx  # noqa: E402

from ramnet.cli import main  # noqa: E402
from ramnet.runtime import validate as V  # noqa: E402


def test_validate_tiny_json(capsys):
    assert main(["validate", "--preset", "tiny", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("compiled", "onnx-custom-prefill", "onnx-custom-decode", "onnx-standard-decode"):
        assert result[key]["passed"] is True and result[key]["max_rel_err"] < 1e-4
    assert set(result["skipped"]) == {"onnx-standard-prefill", "aoti"}


def test_validate_fails_loudly_above_tolerance(monkeypatch, capsys):
    monkeypatch.setitem(V.TOLERANCE, torch.float32, 0.0)  # any rounding difference now fails
    assert main(["validate", "--preset", "tiny", "--decode-steps", "1", "--json"]) == 1
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not all(v["passed"] for k, v in result.items() if k != "skipped")


def test_export_cli_writes_custom_onnx(tmp_path, capsys):
    out = tmp_path / "decode.onnx"
    assert main(["export", "--preset", "tiny", "--format", "onnx", "--flavor", "custom", "--graph", "decode",
                 "-o", str(out)]) == 0
    assert {n.op_type for n in onnx.load(str(out)).graph.node if n.domain == "ramnet"} == {"Address", "PdmaScan"}


def test_export_cli_refuses_unbuilt_formats(capsys, tmp_path):
    assert main(["export", "--preset", "tiny", "--format", "aoti", "-o", str(tmp_path / "x.pt2")]) == 2
    assert "not built yet" in capsys.readouterr().err


@pytest.mark.parametrize("kw,exc,match", [(dict(batch=0), ValueError, "batch must be an int >= 1"),
                                          (dict(prompt_len=0), ValueError, "prompt_len must be an int >= 1"),
                                          (dict(decode_steps=-1), ValueError, "decode_steps must be an int >= 0")])
def test_validate_rejects_bad_arguments(kw, exc, match):
    from ramnet import RamNetConfig, RamNetForCausalLM

    with pytest.raises(exc, match=match):
        V.validate(RamNetForCausalLM(RamNetConfig.from_name("tiny")), **kw)
    with pytest.raises(TypeError, match="model must be a RamNetForCausalLM"):
        V.validate(torch.nn.Linear(2, 2))
