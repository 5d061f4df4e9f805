"""Baseline language models for ``ramnet train --task lm --arch attention|deltanet``: the same loop, data,
tokenizer and recipe as RAM-Net, another token mixer.

:class:`BaselineForCausalLM` is a Transformer++ stack, pre-norm ``x += Mixer(RMSNorm(x)); x += SwiGLU(RMSNorm(x))``,
a final RMSNorm and an untied LM head, with

- ``attention``: causal multi-head softmax attention (``F.scaled_dot_product_attention``) with rotary positions
  (RoPE, base ``rope_theta``);
- ``deltanet``: fla's ``DeltaNet`` layer (``flash-linear-attention``; its Triton kernels need CUDA).

Packed documents (``cu_seqlens``, as :mod:`ramnet.lm.data` makes them) are kept apart: the attention mask is
block-diagonal causal (a token sees earlier tokens of its own document only) and RoPE positions restart at each
document; fla's layer takes ``cu_seqlens`` itself. Every packed row starts a document, so attention runs per row of
``max_seq_len`` tokens (a ``[rows, 1, T, T]`` mask), not over the whole packed sequence.

The interface is the one :class:`ramnet.lm.loop.LMObjective` uses: ``features(input_ids, cu_seqlens=...)`` ->
``(hidden, None)``, ``lm_head``, ``blocks`` (what FSDP2 shards and ``--compile`` compiles), ``config`` (written as
``config.json`` with an ``arch`` key, which :func:`load_lm_model` reads back)."""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import DictConfig
from ..layers import RMSNorm, SwiGLU
from ..rope import apply_rope, rope_tables

ARCHS = ("ramnet", "attention", "deltanet")
BASELINE_ARCHS = ("attention", "deltanet")


@dataclass
class BaselineConfig(DictConfig):
    arch: str = "attention"
    vocab_size: int = 257
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 704
    max_seq_len: int = 512
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02

    def __post_init__(self):
        if self.arch not in BASELINE_ARCHS:
            raise ValueError(f"BaselineConfig.arch must be one of {', '.join(BASELINE_ARCHS)}, got {self.arch!r}")
        for key in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_seq_len"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be an integer >= 1, got {value!r}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"--d-model {self.d_model} must be a multiple of --n-heads {self.n_heads} with an even "
                             "head width")

    def differences(self, other) -> dict:
        a, b = self.to_dict(), other.to_dict()
        return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


# ---- document layout ---------------------------------------------------------------------------------------------
def packed_layout(n_tokens: int, cu_seqlens: torch.Tensor | None, row_len: int, device):
    """``(rows, doc ids [R, L], positions [R, L], single)`` of a packed ``[1, N]`` sequence: the rows attention
    runs over (rows of ``row_len`` when ``N`` is a multiple of it and every row starts a document, else one row of
    ``N``), each token's document index and its position inside its document; ``single`` when every row is one
    document (plain causal attention suffices)."""
    if cu_seqlens is None:
        pos = torch.arange(n_tokens, device=device).unsqueeze(0)
        return 1, torch.zeros_like(pos), pos, True
    cu = cu_seqlens.to(device=device, dtype=torch.int64)
    starts = torch.zeros(n_tokens, dtype=torch.bool, device=device)
    starts[cu[:-1]] = True
    doc = torch.cumsum(starts.to(torch.int64), 0) - 1
    pos = torch.arange(n_tokens, device=device) - cu[doc]
    rows = n_tokens // row_len if n_tokens % row_len == 0 and bool(starts[::row_len].all()) else 1
    single = len(cu) - 1 == rows
    return rows, doc.view(rows, -1), pos.view(rows, -1), single


class RopeAttention(nn.Module):
    """Causal SDPA attention with RoPE; ``layout`` (from :func:`packed_layout`) keeps documents apart."""

    def __init__(self, d_model: int, n_heads: int, theta: float):
        super().__init__()
        self.n_heads, self.theta = n_heads, theta
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x, layout):
        B, N, D = x.shape
        rows, cos, sin, mask = layout
        if rows > 1:  # packed rows: [1, R * L] -> [R, L]
            x = x.reshape(rows, N // rows, D)
        R, L, _ = x.shape
        q, k, v = self.qkv(x).view(R, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if mask is None:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(o.transpose(1, 2).reshape(B, N, D))


class DeltaNetMixer(nn.Module):
    """fla's ``DeltaNet`` layer (its defaults: short conv, SiLU + L2-normalised q/k, beta); returns its output."""

    def __init__(self, d_model: int, n_heads: int, layer_idx: int):
        super().__init__()
        try:
            layer_class = importlib.import_module("fla.layers").DeltaNet
        except ImportError as error:
            raise ImportError("--arch deltanet needs fla (pip install flash-linear-attention fla-core einops): "
                              f"{error}") from error
        self.layer = layer_class(hidden_size=d_model, num_heads=n_heads, layer_idx=layer_idx)

    def forward(self, x, cu_seqlens):
        if cu_seqlens is None:
            return self.layer(x)[0]
        return self.layer(x, cu_seqlens=cu_seqlens.to(device=x.device, dtype=torch.int64))[0]  # fla: a LongTensor


class BaselineBlock(nn.Module):
    def __init__(self, config: BaselineConfig, layer_idx: int):
        super().__init__()
        self.arch = config.arch
        self.mixer_norm = RMSNorm(config.d_model, config.norm_eps)
        self.mixer = (RopeAttention(config.d_model, config.n_heads, config.rope_theta) if config.arch == "attention"
                      else DeltaNetMixer(config.d_model, config.n_heads, layer_idx))
        self.mlp_norm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = SwiGLU(config.d_model, config.d_ff)

    def forward(self, x, layout, cu_seqlens):
        h = self.mixer_norm(x)
        x = x + (self.mixer(h, layout) if self.arch == "attention" else self.mixer(h, cu_seqlens))
        return x + self.mlp(self.mlp_norm(x))


class BaselineForCausalLM(nn.Module):
    """``input_ids [B, T] -> logits [B, T, vocab]`` (see the module docstring)."""

    def __init__(self, config: BaselineConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(BaselineBlock(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=config.init_std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        self.activation_checkpointing = False

    def set_activation_checkpointing(self, enabled: bool = True) -> "BaselineForCausalLM":
        self.activation_checkpointing = bool(enabled)
        return self

    def num_parameters(self, exclude_embeddings: bool = True) -> int:
        total = sum(p.numel() for p in self.parameters())
        return total - self.embed.weight.numel() if exclude_embeddings else total

    def _layout(self, input_ids, cu_seqlens):
        """What the attention blocks share: ``(rows, cos, sin, mask or None)``."""
        if self.config.arch != "attention":
            return None
        B, N = input_ids.shape
        if cu_seqlens is not None and B != 1:
            raise ValueError(f"cu_seqlens needs input_ids of shape [1, N], got {tuple(input_ids.shape)}")
        rows, doc, pos, single = packed_layout(N, cu_seqlens, self.config.max_seq_len, input_ids.device)
        if cu_seqlens is None:
            pos = pos.expand(B, -1)
            rows = 1
        cos, sin = rope_tables(pos, self.config.d_model // self.config.n_heads, self.config.rope_theta)
        mask = None
        if not single:
            L = doc.shape[1]
            causal = torch.ones(L, L, dtype=torch.bool, device=input_ids.device).tril()
            mask = ((doc.unsqueeze(-1) == doc.unsqueeze(-2)) & causal).unsqueeze(1)
        return rows, cos, sin, mask

    def features(self, input_ids, *, cu_seqlens=None):
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape [B, T], got {tuple(input_ids.shape)}")
        x = self.embed(input_ids)
        layout = self._layout(input_ids, cu_seqlens)
        recompute = self.activation_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint(block, x, layout, cu_seqlens, use_reentrant=False) if recompute else \
                block(x, layout, cu_seqlens)
        return self.norm(x), None

    def forward(self, input_ids, *, cu_seqlens=None):
        return self.lm_head(self.features(input_ids, cu_seqlens=cu_seqlens)[0])


def make_config(args, vocab_size: int) -> BaselineConfig:
    """The baseline's config from an :class:`~ramnet.lm.args.LMArgs` (``arch`` and its size flags)."""
    sizes = {k: getattr(args, k) for k in ("d_model", "n_layers", "n_heads", "d_ff") if getattr(args, k) is not None}
    return BaselineConfig(arch=args.arch, vocab_size=vocab_size, max_seq_len=args.seq_len, **sizes)


def build(config):
    """A model for ``config``: :class:`~ramnet.model.RamNetForCausalLM` for a ``RamNetConfig``, else the baseline."""
    if isinstance(config, BaselineConfig):
        return BaselineForCausalLM(config)
    from ..model import RamNetForCausalLM

    return RamNetForCausalLM(config)


def check_device(arch: str, device) -> None:
    """fla's DeltaNet runs Triton kernels: CUDA only."""
    if arch == "deltanet" and torch.device(device).type != "cuda":
        raise ValueError(f"--arch deltanet needs a CUDA device (fla's Triton kernels), got --device {device}")


def check_not_hf(checkpoint: str | Path, flag: str = "--checkpoint") -> None:
    """A ``ValueError`` when ``checkpoint`` is a Hugging Face checkpoint (``ramnet convert --format hf``'s output:
    ``config.json`` with ``model_type`` / ``architectures``), which the native loaders do not read."""
    path = Path(checkpoint) / "config.json"
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return
    if isinstance(data, dict) and ("architectures" in data or "model_type" in data):
        raise ValueError(f"{flag} {checkpoint} is a Hugging Face checkpoint; load it with ramnet.hf / "
                         "AutoModelForCausalLM.from_pretrained, or convert without --format hf")


def read_arch(checkpoint: str | Path) -> str:
    """The ``arch`` of a model checkpoint's ``config.json`` (``ramnet`` when it has none)."""
    path = Path(checkpoint) / "config.json"
    if not path.is_file():
        return "ramnet"
    try:
        return json.loads(path.read_text()).get("arch", "ramnet")
    except (ValueError, AttributeError):
        return "ramnet"


def load_lm_model(checkpoint: str | Path, map_location="cpu"):
    """The model in a checkpoint directory: a baseline (``config.json`` with ``arch``) or RAM-Net."""
    from .. import checkpoint as ckpt

    checkpoint = Path(checkpoint)
    check_not_hf(checkpoint)
    if read_arch(checkpoint) == "ramnet":
        return ckpt.load_checkpoint(checkpoint, map_location=map_location)
    config = BaselineConfig.from_dict(ckpt.read_json(checkpoint / ckpt.CONFIG_FILE, "model config"))
    check_device(config.arch, map_location)
    with torch.random.fork_rng(devices=[]):  # the placeholder init must not move the caller's RNG
        model = BaselineForCausalLM(config)
    ckpt.load_weights(model, checkpoint, map_location)
    return model.to(map_location)
