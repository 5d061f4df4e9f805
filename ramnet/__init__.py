"""RAM-Net: linear attention with a huge, sparsely addressed memory (arXiv 2602.11958), as torch.library ops.

Functional ops live in :mod:`ramnet.ops`; the layer is :class:`RamNetMixer`; the model :class:`RamNetForCausalLM`.
"""
from .cache import RamCache
from .config import PRESETS, RamNetConfig, state_accounting
from .layers import RamNetMixer
from .model import RamNetBlock, RamNetForCausalLM

from ._version import __version__
__all__ = ["__version__", "PRESETS", "RamCache", "RamNetBlock", "RamNetConfig", "RamNetForCausalLM", "RamNetMixer",
           "state_accounting"]
