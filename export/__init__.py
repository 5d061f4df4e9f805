"""``ramnet.export``: ONNX (``to_onnx``), AOTInductor (``to_aoti``) and TensorRT (``ramnet.export.tensorrt``,
unverified) exporters of a ``RamNetForCausalLM``.

``to_onnx`` and ``to_aoti`` are loaded on first use (a module ``__getattr__``), so ``import ramnet.export`` stays
cheap: it imports neither ``onnx`` / ``onnxscript`` nor the exporter modules until one is asked for.
"""
from __future__ import annotations

import importlib

# public name -> (submodule, attribute)
_LAZY = {"to_onnx": ("onnx", "to_onnx"), "to_aoti": ("aoti", "to_aoti")}
_SUBMODULES = ("onnx", "onnx_schemas", "onnx_standard", "onnx_standard_scan", "aoti", "tensorrt", "tensorrt_contract")

__all__ = ["to_onnx", "to_aoti"]


def __getattr__(name: str):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
        globals()[name] = value  # later look-ups skip this hook
        return value
    if name in _SUBMODULES:  # ``ramnet.export.onnx`` without importing it first
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
