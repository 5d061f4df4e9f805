"""Baseline language models for the MQAR protocol, with the interface the MQAR trainer uses (``features``,
``lm_head``): pre-norm blocks ``x += Mixer(Norm(x)); x += SwiGLU(Norm(x))`` around

- ``attention``: causal multi-head softmax attention (``F.scaled_dot_product_attention``), the ceiling; its "state"
  is the KV cache, ``2 * layers * d_model * T``. Positions are learned absolute embeddings, or rotary ones with
  ``layer: {positions: rope}`` (RoPE, base 10000, as the LM's Transformer++);
- ``deltanet``, ``gated_deltanet``, ``gla``: fla's layers (``flash-linear-attention``, CUDA only), whose state
  is ``layers * heads * head_k_dim * head_v_dim``. ``gated_deltanet`` takes ``layer: {core: torch}``: fla's
  GatedDeltaNet parameters run through ramnet's PyTorch chunked gated delta rule (``ramnet.gated_delta_torch``)
  instead of fla's kernel, whose backward refuses to run on Hopper with Triton 3.4-3.7.0 (fla#640).

:func:`build_model` makes any of them, RAM-Net included, from one spec and reports its state size.
"""
from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F
from torch import nn

from .config import RamNetConfig, state_accounting
from .gated_delta_torch import chunk_gated_delta_rule_torch
from .layers import SwiGLU
from .model import RamNetForCausalLM
from .rope import apply_rope, rope_tables

FLA_LAYERS = {"deltanet": ("fla.layers", "DeltaNet"), "gated_deltanet": ("fla.layers", "GatedDeltaNet"),
              "gla": ("fla.layers", "GatedLinearAttention")}
MODELS = ("ramnet", "attention", *FLA_LAYERS)
CORES = {"gated_deltanet": ("fla", "torch")}  # the ``core`` layer option: what computes the recurrence
ATTENTION_POSITIONS = ("learned", "rope")  # the attention baseline's one layer option, ``positions``
ROPE_THETA = 10000.0


class CausalAttention(nn.Module):
    """Causal SDPA attention on ``x [B, T, d_model]``; ``rope=True`` rotates q and k by their positions."""

    def __init__(self, d_model: int, n_heads: int, rope: bool = False):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if rope and (d_model // n_heads) % 2:
            raise ValueError(f"positions 'rope' needs an even head width, got d_model / n_heads = {d_model // n_heads}")
        self.n_heads, self.rope = n_heads, rope
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        if self.rope:
            cos, sin = rope_tables(torch.arange(T, device=x.device).unsqueeze(0), D // self.n_heads, ROPE_THETA)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(o.transpose(1, 2).reshape(B, T, D))


class FlaMixer(nn.Module):
    """One of fla's token mixers (``FLA_LAYERS``); fla returns ``(o, attentions, cache)``, this returns ``o``.
    ``core="torch"`` (gated_deltanet only) runs the fla layer's parameters through
    :func:`gated_deltanet_torch_forward` instead of fla's forward; the parameters and state size are the same."""

    def __init__(self, kind: str, d_model: int, n_heads: int, core: str = "fla", **layer_kwargs):
        super().__init__()
        module_name, class_name = FLA_LAYERS[kind]
        cores = CORES.get(kind, ("fla",))
        if core not in cores:
            raise ValueError(f"{kind}: layer option core must be {' or '.join(map(repr, cores))}, got {core!r}"
                             + ("" if kind in CORES else f" (only {', '.join(CORES)} has another core)"))
        self.core = core
        if kind == "gated_deltanet":  # fla sizes GDN heads by head_dim (default 256) and expand_v (2), not by
            layer_kwargs = {"head_dim": d_model // n_heads, "expand_v": 1, **layer_kwargs}  # hidden_size
        try:
            layer_class = getattr(importlib.import_module(module_name), class_name)
        except ImportError as error:
            raise ImportError(f"model {kind!r} needs fla (pip install flash-linear-attention fla-core einops); "
                              f"importing {module_name} failed: {error}") from error
        self.layer = layer_class(hidden_size=d_model, num_heads=n_heads, **layer_kwargs)
        if core == "torch" and self.layer.num_v_heads != self.layer.num_heads:
            raise ValueError(f"{kind}: core 'torch' does not do grouped value heads (num_v_heads != num_heads)")

    def state_numbers(self) -> int:
        layer = self.layer
        missing = [a for a in ("num_heads", "head_k_dim", "head_v_dim") if not hasattr(layer, a)]
        if missing:
            raise AttributeError(f"{type(layer).__name__} has no {', '.join(missing)}: cannot count its state")
        return layer.num_heads * layer.head_k_dim * layer.head_v_dim

    def forward(self, x):
        return gated_deltanet_torch_forward(self.layer, x) if self.core == "torch" else self.layer(x)[0]


def _short_conv(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """fla's ShortConvolution (depthwise, causal, then its activation) on ``x [B, T, D]``, in PyTorch."""
    y = F.conv1d(x.transpose(1, 2), conv.weight, conv.bias, padding=conv.kernel_size[0] - 1,
                 groups=conv.groups)[..., :x.shape[1]].transpose(1, 2)
    return F.silu(y) if conv.activation in ("silu", "swish") else y


def _rms_norm(norm: nn.Module, x: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
    """fla's RMSNorm / FusedRMSNormGated (``x * rstd * weight``, then ``* act(gate)``) in float32; x's dtype out."""
    y = x.float() * torch.rsqrt(x.float().square().mean(-1, keepdim=True) + norm.eps)
    if norm.weight is not None:
        y = y * norm.weight.float()
    if getattr(norm, "bias", None) is not None:
        y = y + norm.bias.float()
    if gate is not None:
        gate = gate.float()
        y = y * (torch.sigmoid(gate) if norm.activation == "sigmoid" else F.silu(gate))
    return y.to(x.dtype)


def gated_deltanet_torch_forward(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """fla's ``GatedDeltaNet.forward`` on ``x [B, T, hidden]`` for training (no cache, no attention mask, no
    varlen), with the recurrence computed by :func:`chunk_gated_delta_rule_torch` instead of fla's kernel."""
    B, T, _ = x.shape
    projections = (layer.q_proj(x), layer.k_proj(x), layer.v_proj(x))
    if layer.use_short_conv:
        q, k, v = (_short_conv(conv, p) for conv, p in zip((layer.q_conv1d, layer.k_conv1d, layer.v_conv1d),
                                                           projections))
    else:
        q, k, v = (F.silu(p) for p in projections)
    q, k = q.view(B, T, layer.num_heads, layer.head_k_dim), k.view(B, T, layer.num_heads, layer.head_k_dim)
    v = v.view(B, T, layer.num_v_heads, layer.head_v_dim)
    beta = layer.b_proj(x).float().sigmoid() * (2.0 if layer.allow_neg_eigval else 1.0)
    g = -layer.A_log.float().exp() * F.softplus(layer.a_proj(x).float() + layer.dt_bias.float())
    o, _ = chunk_gated_delta_rule_torch(q, k, v, g, beta, use_qk_l2norm=True)
    gate = layer.g_proj(x).view(B, T, layer.num_v_heads, layer.head_v_dim) if layer.use_gate else None
    return layer.o_proj(_rms_norm(layer.o_norm, o, gate).reshape(B, T, layer.value_dim))


class BaselineLM(nn.Module):
    """``input_ids [B, T] -> logits [B, T, vocab]`` with ``mixer`` blocks (see the module docstring)."""

    def __init__(self, model: str, vocab_size: int, d_model: int, n_layers: int, n_heads: int, d_ff: int,
                 max_seq_len: int, **layer_kwargs):
        super().__init__()
        if model not in MODELS or model == "ramnet":
            raise ValueError(f"BaselineLM model must be one of {', '.join(m for m in MODELS if m != 'ramnet')}, "
                             f"got {model!r}")
        self.model_name, self.d_model, self.n_layers = model, d_model, n_layers
        self.embed = nn.Embedding(vocab_size, d_model)
        positions = "learned"
        if model == "attention":
            unknown = sorted(set(layer_kwargs) - {"positions"})
            if unknown:
                raise ValueError(f"the attention baseline takes only the layer option positions, got {unknown}")
            positions = layer_kwargs.get("positions", "learned")
            if positions not in ATTENTION_POSITIONS:
                raise ValueError(f"attention: layer option positions must be one of {ATTENTION_POSITIONS}, "
                                 f"got {positions!r}")
        self.positions = nn.Embedding(max_seq_len, d_model) if model == "attention" and positions == "learned" \
            else None
        make = (lambda: CausalAttention(d_model, n_heads, rope=positions == "rope")) if model == "attention" else \
            (lambda: FlaMixer(model, d_model, n_heads, **layer_kwargs))
        self.mixers = nn.ModuleList(make() for _ in range(n_layers))
        self.mixer_norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.mlps = nn.ModuleList(SwiGLU(d_model, d_ff) for _ in range(n_layers))
        self.mlp_norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)

    def state_size(self, seq_len: int) -> int:
        """State numbers: the KV cache at ``seq_len`` for attention, the recurrent state for fla's layers."""
        if self.model_name == "attention":
            return 2 * self.n_layers * self.d_model * seq_len
        return sum(m.state_numbers() for m in self.mixers)

    def features(self, input_ids):
        x = self.embed(input_ids)
        if self.positions is not None:
            if input_ids.shape[1] > self.positions.num_embeddings:
                raise ValueError(f"sequence length {input_ids.shape[1]} exceeds max_seq_len "
                                 f"{self.positions.num_embeddings}")
            x = x + self.positions(torch.arange(input_ids.shape[1], device=input_ids.device))
        for mixer, mixer_norm, mlp, mlp_norm in zip(self.mixers, self.mixer_norms, self.mlps, self.mlp_norms):
            x = x + mixer(mixer_norm(x))
            x = x + mlp(mlp_norm(x))
        return self.norm(x), None

    def forward(self, input_ids):
        return self.lm_head(self.features(input_ids)[0])


def build_model(spec: dict, vocab_size: int, max_seq_len: int) -> tuple[nn.Module, int, dict]:
    """``(model, state size, resolved config)`` from a sweep entry: ``{"model": "ramnet", "preset": ...,
    "overrides": {...}}`` or ``{"model": <baseline>, "d_model", "n_layers", "n_heads", "d_ff", "layer": {...}}``.
    The state size follows the paper's Table 2 for RAM-Net (``state_accounting``: ``layers * heads * M *
    (d_v + 1)``), the recurrent state for fla's layers and the KV cache at ``max_seq_len`` for attention."""
    kind = spec.get("model")
    if kind == "ramnet":
        overrides = {**spec.get("overrides", {}), "vocab_size": vocab_size, "max_seq_len": max_seq_len}
        config = RamNetConfig.from_name(spec.get("preset", "mqar-small"), **overrides)
        return RamNetForCausalLM(config), state_accounting(config)["total"], config.to_dict()
    if kind not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {kind!r}")
    sizes = {key: spec.get(key, default) for key, default in
             (("d_model", 128), ("n_layers", 2), ("n_heads", 2), ("d_ff", 256))}
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{kind}: {key} must be an int >= 1, got {value!r}")
    layer = spec.get("layer", {})
    if not isinstance(layer, dict):
        raise ValueError(f"{kind}: layer must be a mapping of the layer's keyword arguments, got {layer!r}")
    model = BaselineLM(kind, vocab_size, max_seq_len=max_seq_len, **sizes, **layer)
    # fla's DeltaNet and GDN have a short conv by default: read it from the built layers
    short_conv = all(getattr(getattr(m, "layer", None), "use_short_conv", False) for m in model.mixers)
    return model, model.state_size(max_seq_len), {"model": kind, **sizes, "layer": dict(layer),
                                                  "short_conv": short_conv}
