"""``RamNetHFConfig``: :class:`ramnet.RamNetConfig` as a ``transformers`` config (model type ``"ramnet"``).

The fields, their names and their defaults are those of ``RamNetConfig``; ``RamNetConfig`` stays the one place
that validates them (every ``RamNetHFConfig`` builds one at construction and at save time). Hugging Face's
standard names are aliases through ``attribute_map``: ``hidden_size -> d_model``, ``num_hidden_layers ->
n_layers``, ``num_attention_heads -> n_heads``, ``intermediate_size -> d_ff`` and ``tie_word_embeddings ->
tie_embeddings`` (so the default stays untied, as in ``RamNetConfig``).
"""
import dataclasses

from transformers import PretrainedConfig

from ramnet.config import PRESETS, RamNetConfig
from ramnet.ops.constants import DEFAULT_EPS, DEFAULT_PROXY_EPS

# the HF-only fields, which do not exist in RamNetConfig
_HF_ONLY = ("use_cache", "pad_token_id", "bos_token_id", "eos_token_id")


class RamNetHFConfig(PretrainedConfig):
    """Hugging Face config for RAM-Net. Field meanings: :class:`ramnet.RamNetConfig`.

    Build it from keywords (``RamNetHFConfig(d_model=64, ...)``, HF aliases such as ``hidden_size`` work too),
    from a preset (``RamNetHFConfig.from_preset("tiny", short_conv=True)``) or from a native config
    (``RamNetHFConfig.from_ramnet_config(cfg)``); ``to_ramnet_config()`` goes back. Bad values raise the
    ``ValueError`` of ``RamNetConfig``.
    """

    model_type = "ramnet"
    attribute_map = {
        "hidden_size": "d_model",
        "num_hidden_layers": "n_layers",
        "num_attention_heads": "n_heads",
        "intermediate_size": "d_ff",
        "tie_word_embeddings": "tie_embeddings",
    }

    # transformers turns these class annotations into dataclass fields; keep them equal to RamNetConfig's
    # (tests/model/test_hf.py checks names and defaults, and from_ramnet_config refuses fields it does not know)
    vocab_size: int = 32000
    d_model: int = 1024
    n_layers: int = 27
    n_heads: int = 16
    d_v: int = 64
    num_factors: int = 5
    d_p: int = 4
    top_k: int = 8
    d_ff: int = 2816
    max_seq_len: int = 4096
    tau: float = 1.0
    gamma: float = 1.0
    eps: float = DEFAULT_EPS
    proxy_eps: float = DEFAULT_PROXY_EPS
    alpha_init: float = 0.0
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    cape_all_heads_layers: int = 4
    cape_half_heads_layers: int = 4
    cape_prev_token_init: float = 0.0
    short_conv: bool = False
    short_conv_kernel: int = 4
    tie_embeddings: bool = False
    init_std: float = 0.02
    write_gate: bool = False
    write_gate_offset: float = 0.0
    write_gate_conv: bool = False
    write_gate_conv_kernel: int = 0
    version: int = 1
    name: str = "custom"
    # Hugging Face generation fields
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # validate now, with RamNetConfig's messages, rather than at the first forward; keep its normalised
        # values (ints given for float fields become floats)
        native = self.to_ramnet_config()
        for f in dataclasses.fields(RamNetConfig):
            setattr(self, f.name, getattr(native, f.name))

    def validate(self):
        """``save_pretrained`` calls this: the construction checks again (fields may have been set since)."""
        self.to_ramnet_config()
        if hasattr(self, "validate_token_ids"):  # transformers' own check (a warning for out-of-vocab token ids)
            self.validate_token_ids()

    def to_ramnet_config(self) -> RamNetConfig:
        """The native config with these field values (raises ``ValueError`` on a bad value)."""
        return RamNetConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(RamNetConfig)})

    @classmethod
    def from_ramnet_config(cls, config: RamNetConfig, **hf_kwargs) -> "RamNetHFConfig":
        """Wrap a native config; ``hf_kwargs`` sets HF-only fields (``eos_token_id``, ``use_cache``, ...)."""
        if not isinstance(config, RamNetConfig):
            raise TypeError(f"config must be a ramnet.RamNetConfig, got {type(config).__name__}")
        values = config.to_dict()
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:  # a field added to RamNetConfig but not here would otherwise be dropped silently
            raise ValueError(f"RamNetHFConfig does not know the RamNetConfig fields {sorted(unknown)}")
        clash = set(hf_kwargs) & set(values)
        if clash:
            raise ValueError(f"{sorted(clash)} come from the RamNetConfig; change them there")
        return cls(**values, **hf_kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "RamNetHFConfig":
        """A ``RamNetConfig`` preset (``preset_names()``: ``"tiny"``, ``"mqar-tiny"``, ``"paper-340m"``, ...) with
        field overrides (HF aliases such as ``hidden_size`` too); HF-only fields (``eos_token_id``, ...) as well."""
        overrides = {cls.attribute_map.get(k, k): v for k, v in overrides.items()}  # HF aliases too
        hf_kwargs = {k: overrides.pop(k) for k in _HF_ONLY if k in overrides}
        return cls.from_ramnet_config(RamNetConfig.from_name(name, **overrides), **hf_kwargs)

    @staticmethod
    def preset_names() -> list[str]:
        return sorted(PRESETS)
