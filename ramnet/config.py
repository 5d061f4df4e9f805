"""``RamNetConfig``: every architecture choice, including those the paper leaves open (SPEC.md), is a field.

Presets: ``RamNetConfig.from_name("tiny" | "mqar-tiny" | "paper-340m")``. Defaults where the paper is silent are
argued in ``docs/DECISIONS.md``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

CONFIG_VERSION = 1
NORM_TYPES = ("layernorm", "rmsnorm")


@dataclass
class RamNetConfig:
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
    eps: float = 1e-6             # read normaliser
    proxy_eps: float = 1e-3       # e of the proxy decay gradient
    alpha_init: float = 0.0       # per-head log temperature on Wq, Wk
    norm: str = "layernorm"       # the paper's figure shows LayerNorm
    norm_eps: float = 1e-5
    cape_all_heads_layers: int = 4    # layers [0, n) use CAPE on every head
    cape_half_heads_layers: int = 4   # the next n layers use CAPE on the first half of the heads
    cape_prev_token_init: float = 0.0  # > 0: CAPE heads get learnable q/k address biases, initialised so that each
    #                                    token reads the previous token's write (see docs/DECISIONS.md); 0 = paper
    short_conv: bool = False      # causal depthwise conv on the mixer input (Zoology's MQAR recipe); off in the paper
    short_conv_kernel: int = 4
    tie_embeddings: bool = False
    init_std: float = 0.02
    version: int = CONFIG_VERSION
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        positive = ("vocab_size", "d_model", "n_layers", "n_heads", "d_v", "num_factors", "d_ff", "max_seq_len",
                    "short_conv_kernel")
        for key in positive:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RamNetConfig.{key} must be an int >= 1, got {value!r}")
        if not isinstance(self.d_p, int) or self.d_p < 2:
            raise ValueError(f"RamNetConfig.d_p must be an int >= 2, got {self.d_p!r}")
        if not 1 <= self.top_k <= self.num_slots:
            raise ValueError(f"RamNetConfig.top_k must be in [1, M={self.num_slots}], got {self.top_k}")
        if self.gamma < 0:
            raise ValueError(f"RamNetConfig.gamma must be >= 0, got {self.gamma}")
        if self.tau <= 0 or self.eps < 0 or not 0 <= self.proxy_eps < 1:
            raise ValueError("RamNetConfig needs tau > 0, eps >= 0 and proxy_eps in [0, 1)")
        if self.cape_prev_token_init < 0:
            raise ValueError(f"RamNetConfig.cape_prev_token_init must be >= 0, got {self.cape_prev_token_init}")
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

    def cape_mask(self, layer: int) -> list[bool]:
        """Which heads of ``layer`` (0-based) use CAPE: all heads of the first ``cape_all_heads_layers`` layers,
        the first half of the heads of the next ``cape_half_heads_layers``, none after (the paper's schedule)."""
        if layer < self.cape_all_heads_layers:
            return [True] * self.n_heads
        if layer < self.cape_all_heads_layers + self.cape_half_heads_layers:
            return [h < self.n_heads // 2 for h in range(self.n_heads)]
        return [False] * self.n_heads

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RamNetConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown RamNetConfig fields: {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def from_name(cls, name: str, **overrides) -> "RamNetConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], "name": name, **overrides})


PRESETS: dict[str, dict] = {
    # the paper's language model (SPEC.md): 340.8M parameters without input embeddings
    "paper-340m": dict(),
    # smallest useful model: fast CPU tests, export and validate
    "tiny": dict(vocab_size=128, d_model=64, n_layers=2, n_heads=2, d_v=16, num_factors=3, d_p=4, top_k=4,
                 d_ff=128, max_seq_len=256),
    # the CPU MQAR model (docs/DECISIONS.md, "MQAR on CPU"): Zoology's short conv, no CAPE (a CAPE head cannot
    # match content at varying distances, and the conv already supplies the previous-token feature)
    "mqar-tiny": dict(vocab_size=128, d_model=64, n_layers=2, n_heads=2, d_v=32, num_factors=3, d_p=4, top_k=4,
                      d_ff=128, max_seq_len=64, short_conv=True, cape_all_heads_layers=0, cape_half_heads_layers=0),
}


def state_accounting(config: RamNetConfig) -> dict:
    """State sizes in numbers (SPEC.md, Table 2 of the paper).

    ``total = layers * heads * M * (d_v + 1)`` (the ``+1`` is ``z``); ``active_per_token`` counts one write set
    and one read set: ``2 * layers * heads * K * (d_v + 1)``.
    """
    per_slot = config.d_v + 1
    heads = config.n_layers * config.n_heads
    return {"total": heads * config.num_slots * per_slot, "active_per_token": 2 * heads * config.top_k * per_slot}
