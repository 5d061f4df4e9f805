"""Hugging Face ``transformers`` integration (needs the ``[hf]`` extra: ``transformers>=5,<6``).

Importing this package registers model type ``"ramnet"`` with ``AutoConfig`` and ``AutoModelForCausalLM``.
``import ramnet`` does not import it (nor transformers).
"""
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .cache import RamNetHFCache, RamNetLayerState
from .config import RamNetHFConfig
from .model import RamNetHFForCausalLM


def _register() -> None:
    """Register once; a re-import (``importlib.reload``) re-registers its new classes, but a *different* config
    already registered as "ramnet" is an error rather than something to overwrite silently."""
    model_type = RamNetHFConfig.model_type
    if model_type in CONFIG_MAPPING:
        existing = CONFIG_MAPPING[model_type]
        if (existing.__module__, existing.__qualname__) != (RamNetHFConfig.__module__, RamNetHFConfig.__qualname__):
            raise ValueError(f"model type {model_type!r} is already registered by {existing.__module__}."
                             f"{existing.__qualname__}")
        if existing is RamNetHFConfig:
            return
    AutoConfig.register(model_type, RamNetHFConfig, exist_ok=True)
    AutoModelForCausalLM.register(RamNetHFConfig, RamNetHFForCausalLM, exist_ok=True)


_register()

__all__ = ["RamNetHFCache", "RamNetHFConfig", "RamNetHFForCausalLM", "RamNetLayerState"]
