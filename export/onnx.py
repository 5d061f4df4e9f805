"""``to_onnx``: export a ``RamNetForCausalLM`` as a prefill or a decode ONNX graph with explicit state I/O.

Graph I/O (per layer i): prefill ``input_ids [B, T] -> logits [B, T, V], S_i [B, H, M, d_v], z_i [B, H, M]``
(``conv_i [B, conv_window - 1, C]`` too with a short conv); decode ``token [B], position [B], S_i, z_i(, conv_i) ->
logits [B, V], S_i', z_i'(, conv_i')``. Batch and sequence length are dynamic.

Flavours: ``custom`` emits ``ramnet``-domain nodes (``export/onnx_schemas.py``); ``standard`` uses standard ONNX
ops only (``export/onnx_standard.py``; the prefill scan is a ``Loop`` over T).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

FLAVORS = ("standard", "custom")
GRAPHS = ("prefill", "decode")


class PrefillGraph(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        logits, states = self.model(input_ids, return_states=True)
        return (logits, *[t for layer in states for t in layer if t is not None])


class DecodeGraph(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.per_layer = 3 if model.config.short_conv else 2

    def forward(self, token, position, *flat_states):
        n = self.per_layer
        states = [tuple(flat_states[i:i + n]) + ((None,) if n == 2 else ()) for i in range(0, len(flat_states), n)]
        logits, new_states = self.model.decode_functional(token, states, position)
        return (logits, *[t for layer in new_states for t in layer if t is not None])


def state_names(config) -> list[str]:
    per = ["S", "z"] + (["conv"] if config.short_conv else [])
    return [f"{p}_{i}" for i in range(config.n_layers) for p in per]


def example_states(model, batch: int):
    """Zero-valued example states of the right shapes (``S = 0``, ``z = 1/M``, ``conv = 0``)."""
    from ramnet.ops import initial_state

    c = model.config
    device = next(model.parameters()).device
    out = []
    for _ in range(c.n_layers):
        S, z = initial_state(batch, c.n_heads, c.num_slots, c.d_v, device=device)
        out += [S, z]
        if c.short_conv:
            out.append(torch.zeros(batch, c.conv_window - 1, c.conv_channels, device=device))
    return out


def check_output_path(path) -> Path:
    """Refuse, before any work, an output path that cannot become a file: a directory, or one whose folder cannot
    be created or written."""
    path = Path(path)
    if str(path) in ("", ".") or path.is_dir():
        raise IsADirectoryError(f"output path {str(path)!r} is a directory; give a file name")
    try:  # the folder is made now, so that a path that cannot be written fails before the export's work
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NotADirectoryError(f"output path {path}: cannot create its folder ({error.strerror or error})") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise PermissionError(f"output path {path}: {path.parent} is not writable")
    return path


def to_onnx(model, path, *, flavor: str = "standard", graph: str = "prefill", opset: int = 18):
    """Export ``model`` to ``path`` (see the module docstring for the graph I/O). Returns the path."""
    from ramnet.model import RamNetForCausalLM

    if not isinstance(model, RamNetForCausalLM):
        raise TypeError(f"model must be a RamNetForCausalLM, got {type(model).__name__}")
    if flavor not in FLAVORS:
        raise ValueError(f"flavor must be one of {FLAVORS}, got {flavor!r}")
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not 18 <= opset <= newest:
        raise ValueError(f"opset must be an int in [18, {newest}] (18: ScatterND reduction, TopK; {newest}: this "
                         f"onnx), got {opset!r}")
    check_output_path(path)
    if flavor == "standard":
        from .onnx_standard import standard_translation_table as translation_table
    else:
        from .onnx_schemas import custom_translation_table as translation_table

    from ramnet.modes import eval_mode

    with eval_mode(model):  # every module's mode is left as found
        return _export(model, path, flavor, graph, opset, translation_table)


def _export(model, path, flavor, graph, opset, translation_table):
    device = next(model.parameters()).device
    B, T = torch.export.Dim("B", min=1), torch.export.Dim("T", min=1)
    names = state_names(model.config)
    if graph == "prefill":
        module, args = PrefillGraph(model).eval(), (torch.zeros(2, 5, dtype=torch.long, device=device),)
        input_names, output_names = ["input_ids"], ["logits"] + names
        dynamic = {"input_ids": {0: B, 1: T}}
    else:
        module = DecodeGraph(model).eval()
        args = (torch.zeros(2, dtype=torch.long, device=device), torch.zeros(2, dtype=torch.long, device=device),
                *example_states(model, 2))
        input_names = ["token", "position"] + names
        output_names = ["logits"] + [n + "_out" for n in names]
        dynamic = {"token": {0: B}, "position": {0: B}, "flat_states": tuple({0: B} for _ in names)}
    # onnxscript's constant folder warns about the Loop's carried shapes (harmless): keep the CLI output clean
    folder_log = logging.getLogger("onnxscript.optimizer._constant_folding")
    level, _ = folder_log.level, folder_log.setLevel(logging.ERROR)
    with torch.no_grad():
        program = torch.onnx.export(module, args, dynamo=True, opset_version=opset, input_names=input_names,
                                    output_names=output_names, dynamic_shapes=dynamic,
                                    custom_translation_table=translation_table(), verbose=False)
    folder_log.setLevel(level)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))
    _finish(path, flavor == "standard", json.dumps(model.config.to_dict()))
    return path


def _finish(path: Path, standard: bool, config_json: str) -> None:
    """Record the model config as ``ramnet_config`` metadata (the runners read gamma from it, as from an AOTI
    package), and for the standard flavour make the graph standard-only and loadable: inline any local function
    left (the scan is an onnxscript function, ``export/onnx_standard_scan.py``), drop the function's opset import,
    and drop the intermediate shape annotations, where the exporter records the ``Loop`` outputs as scalars (the
    function declares no output shapes); they are optional, and the runtime infers them."""
    import onnx
    from onnx import inliner

    model = onnx.load(str(path))
    kept_meta = [p for p in model.metadata_props if p.key != "ramnet_config"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept_meta)
    model.metadata_props.add(key="ramnet_config", value=config_json)
    if not standard:
        onnx.save(model, str(path))
        return
    if model.functions:
        model = inliner.inline_local_functions(model)
    del model.graph.value_info[:]
    kept = [o for o in model.opset_import if o.domain in {"", "ai.onnx"}]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, str(path))
