"""Hugging Face integration (ramnet.hf), the config side: RamNetHFConfig's fields, presets, validation, JSON
round trip, Auto registration, and that ``import ramnet`` does not import transformers. CPU, nothing downloaded."""
import dataclasses
import importlib
import subprocess
import sys

import pytest

pytest.importorskip("transformers")

from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig  # noqa: E402

import ramnet.hf  # noqa: E402
from ramnet import RamNetConfig  # noqa: E402
from ramnet.hf import RamNetHFConfig, RamNetHFForCausalLM  # noqa: E402

from .hf_cases import make_model  # noqa: E402


# ---- config ---------------------------------------------------------------------------------------------------
def test_config_has_the_native_fields_and_defaults():
    hf = RamNetHFConfig()
    for f in dataclasses.fields(RamNetConfig):
        assert getattr(hf, f.name) == f.default, f.name
    assert hf.to_ramnet_config() == RamNetConfig()
    assert (hf.hidden_size, hf.num_hidden_layers, hf.num_attention_heads, hf.intermediate_size) == (1024, 27, 16, 2816)
    assert hf.tie_word_embeddings is False
    assert RamNetHFConfig(tie_word_embeddings=True).tie_embeddings is True
    assert RamNetHFConfig(tie_embeddings=True).tie_word_embeddings is True
    assert RamNetHFConfig(hidden_size=96).d_model == 96
    assert isinstance(RamNetHFConfig(tau=2).tau, float)  # normalised as RamNetConfig does


def test_config_presets_and_native_round_trip():
    for name in RamNetHFConfig.preset_names():
        native = RamNetConfig.from_name(name)
        hf = RamNetHFConfig.from_preset(name)
        assert hf.to_ramnet_config() == native and hf.name == name
        assert RamNetHFConfig.from_ramnet_config(native).to_ramnet_config() == native
    hf = RamNetHFConfig.from_preset("tiny", short_conv=True, hidden_size=32, eos_token_id=3)
    assert (hf.d_model, hf.short_conv, hf.eos_token_id, hf.top_k) == (32, True, 3, 4)


def test_config_rejects_bad_values_with_the_native_messages(tmp_path):
    with pytest.raises(ValueError, match="top_k must be in"):
        RamNetHFConfig.from_preset("tiny", top_k=65)
    with pytest.raises(ValueError, match="d_model must be an int >= 1"):
        RamNetHFConfig(d_model=0)
    with pytest.raises(ValueError, match="norm must be one of"):
        RamNetHFConfig(norm="batchnorm")
    with pytest.raises(ValueError, match="unknown preset"):
        RamNetHFConfig.from_preset("huge")
    with pytest.raises(TypeError, match="RamNetConfig"):
        RamNetHFConfig.from_ramnet_config({"d_model": 4})
    cfg = RamNetHFConfig.from_preset("tiny")
    cfg.gamma = -1.0  # set after construction: caught when saving
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        cfg.save_pretrained(tmp_path)


def test_config_json_round_trip_and_auto_config(tmp_path):
    cfg = RamNetHFConfig.from_preset("mqar-tiny", eos_token_id=7)
    cfg.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is RamNetHFConfig and loaded.model_type == "ramnet"
    assert loaded.to_ramnet_config() == cfg.to_ramnet_config() and loaded.eos_token_id == 7
    assert type(AutoConfig.for_model("ramnet")) is RamNetHFConfig


def test_memory_top_k_is_not_the_sampling_top_k(tmp_path):
    """`top_k` is a model field (the memory's K); transformers must not seed generation's top-k with it."""
    model = make_model(top_k=3)
    assert model.generation_config.top_k != 3
    model.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").unlink()  # loading then derives it from config.json
    assert RamNetHFForCausalLM.from_pretrained(tmp_path).generation_config.top_k != 3
    clashing = set(GenerationConfig().to_dict()) & {f.name for f in dataclasses.fields(RamNetConfig)}
    assert clashing == {"top_k"}  # a new clash must be added to the list in ramnet/hf/model.py


# ---- registration, import ------------------------------------------------------------------------------------
def test_auto_model_and_double_registration():
    model = AutoModelForCausalLM.from_config(RamNetHFConfig.from_preset("tiny"))
    assert type(model) is RamNetHFForCausalLM
    importlib.reload(ramnet.hf)  # registering again must not raise
    assert type(AutoConfig.for_model("ramnet")).__name__ == "RamNetHFConfig"


def test_import_ramnet_does_not_import_transformers():
    code = "import sys, ramnet; assert 'transformers' not in sys.modules and 'ramnet.hf' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
