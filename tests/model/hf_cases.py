"""Shared helpers of the Hugging Face tests: a tiny model, left padding, the cache field's name."""
import torch
from transformers.modeling_outputs import CausalLMOutputWithPast

from ramnet.hf import RamNetHFConfig, RamNetHFForCausalLM

PAD = 0
# transformers renamed the cache argument and output field `past_key_values` -> `cache` after 5.17
CACHE_KW = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def make_model(seed=0, dtype=torch.float64, **overrides):
    torch.manual_seed(seed)
    return RamNetHFForCausalLM(RamNetHFConfig.from_preset("tiny", **overrides)).to(dtype).eval()


def cache_of(out):
    return out.get(CACHE_KW)


def left_pad(rows, pad=PAD):
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, T - len(r):] = torch.tensor(r)
        mask[i, T - len(r):] = 1
    return ids, mask

