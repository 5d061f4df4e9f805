"""``generate()`` through ONNX Runtime (prefill + decode sessions, state carried explicitly) equals eager
``generate()`` token for token, for both ONNX flavours, greedy and sampled."""
import pytest
import torch

pytest.importorskip("onnxruntime_extensions", reason="needs the [onnx] extra")

from ramnet import RamNetConfig, RamNetForCausalLM  # noqa: E402
from ramnet.export.onnx import to_onnx  # noqa: E402
from ramnet.runtime.ort import OrtGenerator  # noqa: E402


@pytest.mark.parametrize("flavor", ["custom", "standard"])
def test_ort_generate_equals_eager_token_for_token(flavor, tmp_path):
    torch.manual_seed(3)
    model = RamNetForCausalLM(RamNetConfig.from_name("tiny", short_conv=True)).eval()
    gen = OrtGenerator(to_onnx(model, tmp_path / "p.onnx", flavor=flavor, graph="prefill"),
                       to_onnx(model, tmp_path / "d.onnx", flavor=flavor, graph="decode"))
    prompt = torch.randint(0, model.config.vocab_size, (3, 7))
    eager = model.generate(prompt, 12)
    assert torch.equal(gen.generate(prompt, 12), eager)
    sampled = lambda fn: fn(prompt, 10, temperature=0.8, top_k=20, top_p=0.9,
                            generator=torch.Generator().manual_seed(5))
    assert torch.equal(sampled(gen.generate), sampled(model.generate))
    eos = int(eager[1, 7])  # row 1's first generated token: row 1 stops there, the others go on
    with_eos = lambda fn: fn(prompt, 12, eos_token_id=eos, pad_token_id=0)
    assert torch.equal(with_eos(gen.generate), with_eos(model.generate))
    assert torch.equal(gen.generate(prompt, 0), prompt)
    with pytest.raises(ValueError, match="max_new_tokens"):
        gen.generate(prompt, -1)
    with pytest.raises(ValueError, match="temperature"):
        gen.generate(prompt, 2, temperature=-1)
    with pytest.raises(ValueError, match=r"eos_token_id must be an int in \[0, 128\)"):  # as eager generate
        gen.generate(prompt, 2, eos_token_id=1000)
