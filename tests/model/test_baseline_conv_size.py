"""fla's DeltaNet takes its short conv's kernel through the sweep entry's ``layer`` mapping (``conv_size``), so a
DeltaNet row can run with the same kernel as a RAM-Net row; needs fla (skipped where it is not installed)."""
import warnings

import pytest
import torch


def _build(layer):
    pytest.importorskip("fla")
    from ramnet.baselines import build_model
    spec = {"model": "deltanet", "d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "layer": layer}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fla: "Triton is not supported on current platform"
        return build_model(spec, vocab_size=48, max_seq_len=16)


@pytest.mark.parametrize("kernel", [2, 3])
def test_deltanet_conv_size_sets_every_short_conv_and_keeps_the_state(kernel):
    model, state, config = _build({"conv_size": kernel})
    default_model, default_state, default_config = _build({})
    convs = [getattr(m.layer, f"{p}_conv1d") for m in model.mixers for p in "qkv"]
    assert [c.kernel_size[0] for c in convs] == [kernel] * 6
    assert [m.layer.q_conv1d.kernel_size[0] for m in default_model.mixers] == [4, 4]  # so the option changed something
    assert state == default_state == 2 * 2 * 16 * 16  # the conv is not state the paper counts
    assert config["layer"] == {"conv_size": kernel} and config["short_conv"] and default_config["short_conv"]


def test_deltanet_conv_size_two_reaches_one_token_back_only():
    model, _, _ = _build({"conv_size": 2})
    conv = model.mixers[0].layer.k_conv1d
    from ramnet.baselines import _short_conv
    x = torch.randn(1, 6, conv.weight.shape[0])
    y = _short_conv(conv, x)
    x2 = x.clone()
    x2[:, 2] += 1.0  # a change at t=2 reaches t=2 and t=3, not t=4
    y2 = _short_conv(conv, x2)
    changed = (y2 - y).abs().amax(-1)[0] > 0
    assert changed.tolist() == [False, False, True, True, False, False]

