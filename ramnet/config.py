"""``RamNetConfig``: every architecture choice, including those the paper leaves open, is a field.

Presets: ``RamNetConfig.from_name("tiny" | "mqar-tiny" | "mqar-small" | "paper-340m")``. Defaults where the paper is silent are
argued in ``docs/DECISIONS.md``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ramnet.ops.checks import MIN_TAU
from ramnet.ops.constants import DEFAULT_EPS, DEFAULT_PROXY_EPS

CONFIG_VERSION = 1
MAX_SLOTS = 2**31 - 1  # slot ids are int64, but per-head tensors of M rows must stay addressable
NORM_TYPES = ("layernorm", "rmsnorm")


class DictConfig:
    """``to_dict`` / ``from_dict`` for a dataclass config; ``from_dict`` refuses fields the class lacks."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**data)


@dataclass
class RamNetConfig(DictConfig):
    vocab_size: int = 32000
    d_model: int = 1024
    n_layers: int = 27
    n_heads: int = 16
    d_v: int = 64                 # value width per head
    num_factors: int = 5          # U
    d_p: int = 4                  # factor width; key width d_k = U * d_p, memory M = d_p ** U
    top_k: int = 8                # K
    d_ff: int = 2816              # SwiGLU hidden width
    max_seq_len: int = 4096       # training context (no positional embedding; CAPE period is M)
    tau: float = 1.0              # address softmax temperature
    gamma: float = 1.0            # PDMA decay exponent (1 = EMA)
    eps: float = DEFAULT_EPS      # read normaliser
    proxy_eps: float = DEFAULT_PROXY_EPS  # e of the proxy decay gradient
    alpha_init: float = 0.0       # per-head log temperature on Wq, Wk
    norm: str = "layernorm"       # the paper's figure shows LayerNorm
    norm_eps: float = 1e-5
    cape_all_heads_layers: int = 4    # layers [0, n) use CAPE on every head
    cape_half_heads_layers: int = 4   # the next n layers use CAPE on the first half of the heads
    cape_prev_token_init: float = 0.0  # > 0: CAPE heads get learnable q/k address biases, initialised so that each
    #                                    token reads the previous token's write (see docs/DECISIONS.md); 0 = paper
    short_conv: bool = False      # causal depthwise conv on the q/k/v projections (Zoology's MQAR recipe); off in the paper
    short_conv_kernel: int = 4
    tie_embeddings: bool = False
    init_std: float = 0.02
    write_gate: bool = False      # a learned write strength sigmoid(x W_g) per token and head that scales the K write
    #                               weights (DeltaNet's beta); off in the paper, where every token writes at least K/M
    write_gate_offset: float = 0.0  # a fixed number added to the gate's logit, sigmoid(x W_g + offset): the gate starts
    #                                 near sigmoid(offset) (0.5 at 0, 0.88 at 2); needs write_gate
    write_gate_conv: bool = False  # the gate's logit goes through the short conv too (H more channels, started as the
    #                                identity), so a token's gate can see the kernel - 1 tokens before it (its own
    #                                kernel's, see below) through their gate logits; needs write_gate and short_conv
    #                                (see docs/DECISIONS.md)
    write_gate_conv_kernel: int = 0  # >= 1: the gate channels' own conv kernel, so the gate can see further back (or
    #                                  less far) than q/k/v: the conv window is the longer of the two kernels, and each
    #                                  channel's taps beyond its own kernel stay 0; 0 = short_conv_kernel; needs
    #                                  write_gate_conv
    version: int = CONFIG_VERSION
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "bool" and not isinstance(value, bool):
                raise TypeError(f"RamNetConfig.{f.name} must be a bool (True or False), got {value!r}")
            if f.type == "float":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"RamNetConfig.{f.name} must be a finite number, got {value!r}")
                setattr(self, f.name, float(value))
            if f.type == "str" and not isinstance(value, str):
                raise TypeError(f"RamNetConfig.{f.name} must be a str, got {value!r}")
        positive = ("vocab_size", "d_model", "n_layers", "n_heads", "d_v", "num_factors", "d_ff", "max_seq_len",
                    "short_conv_kernel")
        for key in positive:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RamNetConfig.{key} must be an int >= 1, got {value!r}")
        if isinstance(self.d_p, bool) or not isinstance(self.d_p, int) or self.d_p < 2:
            raise ValueError(f"RamNetConfig.d_p must be an int >= 2, got {self.d_p!r}")
        if not 1 <= self.top_k <= self.num_slots:
            raise ValueError(f"RamNetConfig.top_k must be in [1, M={self.num_slots}], got {self.top_k}")
        if self.gamma < 0:
            raise ValueError(f"RamNetConfig.gamma must be >= 0, got {self.gamma}")
        if self.tau < MIN_TAU or self.eps < 0 or not 0 <= self.proxy_eps < 1:
            raise ValueError(f"RamNetConfig needs tau >= {MIN_TAU}, eps >= 0 and proxy_eps in [0, 1), got tau="
                             f"{self.tau}, eps={self.eps}, proxy_eps={self.proxy_eps}")
        for key in ("cape_all_heads_layers", "cape_half_heads_layers"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"RamNetConfig.{key} must be an int >= 0, got {value!r}")
        if self.num_slots > MAX_SLOTS:
            raise ValueError(f"RamNetConfig: M = d_p ** num_factors = {self.d_p}**{self.num_factors} exceeds "
                             f"{MAX_SLOTS} slots per head")
        if self.init_std <= 0 or self.norm_eps <= 0:
            raise ValueError(f"RamNetConfig needs init_std > 0 and norm_eps > 0, got {self.init_std}, {self.norm_eps}")
        if self.cape_prev_token_init < 0:
            raise ValueError(f"RamNetConfig.cape_prev_token_init must be >= 0, got {self.cape_prev_token_init}")
        if self.write_gate_offset != 0 and not self.write_gate:
            raise ValueError(f"RamNetConfig.write_gate_offset={self.write_gate_offset} needs write_gate=True (it "
                             "offsets the write gate's logit; without the gate it would do nothing)")
        if self.write_gate_conv and not (self.write_gate and self.short_conv):
            raise ValueError("RamNetConfig.write_gate_conv=True needs write_gate=True and short_conv=True (it passes "
                             f"the write gate's logit through the short conv), got write_gate={self.write_gate}, "
                             f"short_conv={self.short_conv}")
        value = self.write_gate_conv_kernel
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"RamNetConfig.write_gate_conv_kernel must be an int >= 0 (0 = short_conv_kernel), got "
                             f"{value!r}")
        if value and not self.write_gate_conv:
            raise ValueError(f"RamNetConfig.write_gate_conv_kernel={value} needs write_gate_conv=True (it sets the "
                             "kernel of the write gate's conv channels; leave it 0 without them)")
        if self.norm not in NORM_TYPES:
            raise ValueError(f"RamNetConfig.norm must be one of {NORM_TYPES}, got {self.norm!r}")
        if self.version != CONFIG_VERSION:
            raise ValueError(f"RamNetConfig.version {self.version} is not supported (this build reads {CONFIG_VERSION})")

    @property
    def d_k(self) -> int:
        return self.num_factors * self.d_p

    @property
    def num_slots(self) -> int:
        return self.d_p**self.num_factors

    @property
    def conv_channels(self) -> int:
        """Channels of a layer's short conv (and of its decode cache): q, k and v of every head, plus the write
        gate's logit per head with ``write_gate_conv``."""
        return self.n_heads * (2 * self.d_k + self.d_v + (1 if self.write_gate_conv else 0))

    @property
    def conv_window(self) -> int:
        """The short conv's window: each layer's decode cache keeps the last ``conv_window - 1`` inputs. The longer
        of ``short_conv_kernel`` and, with ``write_gate_conv``, the gate channels' kernel (``write_gate_conv_kernel``,
        0 = ``short_conv_kernel``)."""
        if self.write_gate_conv:
            return max(self.short_conv_kernel, self.write_gate_conv_kernel or self.short_conv_kernel)
        return self.short_conv_kernel

    def cape_mask(self, layer: int) -> list[bool]:
        """Which heads of ``layer`` (0-based) use CAPE: all heads of the first ``cape_all_heads_layers`` layers,
        the first half of the heads of the next ``cape_half_heads_layers``, none after (the paper's schedule)."""
        if layer < self.cape_all_heads_layers:
            return [True] * self.n_heads
        if layer < self.cape_all_heads_layers + self.cape_half_heads_layers:
            return [h < self.n_heads // 2 for h in range(self.n_heads)]
        return [False] * self.n_heads

    def differences(self, other: "RamNetConfig") -> dict:
        """``{field: (self's value, other's value)}`` for every compared field that differs."""
        return {f.name: (getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self)
                if f.compare and getattr(self, f.name) != getattr(other, f.name)}

    @classmethod
    def field_types(cls) -> dict[str, str]:
        """Field name -> type name (``"int"``, ``"float"``, ``"bool"``, ``"str"``), for parsers such as the CLI's."""
        return {f.name: str(f.type) for f in dataclasses.fields(cls)}

    @classmethod
    def parse_field(cls, key: str, raw: str):
        """Parse the text ``raw`` as the value of field ``key`` by the field's type: ``true``/``false`` for bools,
        integers for ints, finite numbers for floats. Raises ``ValueError`` naming the key (and, for an unknown
        key, listing the known ones)."""
        types = cls.field_types()
        if key not in types or key in ("version", "name"):
            known = ", ".join(k for k in types if k not in ("version", "name"))
            raise ValueError(f"unknown config key {key!r}; known keys: {known}")
        kind, text = types[key], raw.strip()
        if kind == "bool":
            if text.lower() not in ("true", "false"):
                raise ValueError(f"{key} must be true or false, got {raw!r}")
            return text.lower() == "true"
        if kind == "int":
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"{key} must be an integer, got {raw!r}") from None
        if kind == "float":
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{key} must be a number, got {raw!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"{key} must be a finite number, got {raw!r}")
            return value
        return text

    @classmethod
    def from_name(cls, name: str, **overrides) -> "RamNetConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], "name": name, **overrides})


PRESETS: dict[str, dict] = {
    # the paper's language model: 340.8M parameters without input embeddings. Every value is pinned here, so that
    # changing a default (which follows the MQAR evidence) never changes the paper model.
    "paper-340m": dict(vocab_size=32000, d_model=1024, n_layers=27, n_heads=16, d_v=64, num_factors=5, d_p=4,
                       top_k=8, d_ff=2816, max_seq_len=4096, tau=1.0, gamma=1.0, eps=1e-6, proxy_eps=1e-3,
                       alpha_init=0.0, norm="layernorm", norm_eps=1e-5, cape_all_heads_layers=4,
                       cape_half_heads_layers=4, cape_prev_token_init=0.0, short_conv=False, short_conv_kernel=4,
                       tie_embeddings=False, init_std=0.02, write_gate=False, write_gate_offset=0.0,
                       write_gate_conv=False, write_gate_conv_kernel=0),
    # smallest useful model: fast CPU tests, export and validate
    "tiny": dict(vocab_size=128, d_model=64, n_layers=2, n_heads=2, d_v=16, num_factors=3, d_p=4, top_k=4,
                 d_ff=128, max_seq_len=256),
    # the CPU MQAR model (docs/DECISIONS.md, "MQAR on CPU"): Zoology's short conv, no CAPE (a CAPE head cannot
    # match content at varying distances, and the conv already supplies the previous-token feature)
    "mqar-tiny": dict(vocab_size=128, d_model=64, n_layers=2, n_heads=2, d_v=32, num_factors=3, d_p=4, top_k=4,
                      d_ff=128, max_seq_len=64, short_conv=True, cape_all_heads_layers=0, cape_half_heads_layers=0),
    # the GPU MQAR model (README, "Training on a GPU"): Zoology's width (d_model 128), the paper's address geometry
    # (U=5, d_p=4: M=1024 slots, K=8), short conv, no CAPE; state 2 * 2 * 1024 * 65 = 266k numbers
    "mqar-small": dict(vocab_size=8192, d_model=128, n_layers=2, n_heads=2, d_v=64, num_factors=5, d_p=4, top_k=8,
                       d_ff=256, max_seq_len=1024, short_conv=True, cape_all_heads_layers=0,
                       cape_half_heads_layers=0),
}


def state_accounting(config: RamNetConfig) -> dict:
    """State sizes in numbers (Table 2 of the paper).

    ``total = layers * heads * M * (d_v + 1)`` (the ``+1`` is ``z``); ``active_per_token`` counts one write set
    and one read set: ``2 * layers * heads * K * (d_v + 1)``.
    """
    per_slot = config.d_v + 1
    heads = config.n_layers * config.n_heads
    return {"total": heads * config.num_slots * per_slot, "active_per_token": 2 * heads * config.top_k * per_slot}
