"""``to_aoti``: AOTInductor package (``.pt2``) of a ``RamNetForCausalLM`` prefill or decode graph.

The graph I/O is the ONNX export's (``export/onnx.py``): prefill ``input_ids -> logits, S_i, z_i(, conv_i)``;
decode ``token, position, S_i, z_i(, conv_i) -> logits, S_i', z_i'(, conv_i')``. Batch (and the prefill length) are
dynamic. The ``ramnet`` ops stay opaque ``custom_op`` nodes, so the compiled package calls them through the
dispatcher (AOTInductor's proxy executor): the loading process must import ``ramnet`` first
(``ramnet.runtime.aoti.load`` does).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .onnx import GRAPHS, DecodeGraph, PrefillGraph, check_output_path, example_states, state_names


def export_program(model, graph: str = "prefill", *, device: str | torch.device = "cpu"):
    """``torch.export`` of the prefill or decode graph on ``device``; returns the ``ExportedProgram``."""
    from ramnet.model import RamNetForCausalLM

    if not isinstance(model, RamNetForCausalLM):
        raise TypeError(f"model must be a RamNetForCausalLM, got {type(model).__name__}")
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")
    device = torch.device(device)
    model = model.eval().to(device)
    B = torch.export.Dim("B", min=1, max=4096)
    if graph == "prefill":
        module, args = PrefillGraph(model).eval(), (torch.zeros(2, 5, dtype=torch.long, device=device),)
        dynamic = {"input_ids": {0: B, 1: torch.export.Dim("T", min=1, max=1 << 20)}}
    else:
        module = DecodeGraph(model).eval()
        states = [s.to(device) for s in example_states(model, 2)]
        args = (torch.zeros(2, dtype=torch.long, device=device), torch.zeros(2, dtype=torch.long, device=device),
                *states)
        dynamic = {"token": {0: B}, "position": {0: B}, "flat_states": tuple({0: B} for _ in states)}
    with torch.no_grad():
        return torch.export.export(module, args, dynamic_shapes=dynamic, strict=False)


def to_aoti(model, path, *, graph: str = "prefill", device: str | torch.device = "cpu"):
    """Export and compile ``model`` into an AOTInductor package at ``path`` (``.pt2``). Returns the path.

    On CUDA the package holds Inductor's generated kernels; the ``ramnet`` ops run through the dispatcher (their
    Triton kernels on CUDA, the PyTorch kernels on CPU)."""
    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"path must end in .pt2 (an AOTInductor package), got {str(path)!r}")
    check_output_path(path)
    program = export_program(model, graph, device=device)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the input signature travels in the package so that the runner can check its inputs (runtime/aoti.py)
    specs = [node.meta["val"] for node in program.graph.nodes if node.op == "placeholder"
             and node.name in program.graph_signature.user_inputs]
    dims = lambda v: "x".join(str(d) if isinstance(d, int) else "?" for d in v.shape)  # "?": a dynamic dim
    signature = ",".join(f"{str(v.dtype).removeprefix('torch.')}:{dims(v)}" for v in specs)
    metadata = {"ramnet_graph": graph, "ramnet_inputs": signature, "ramnet_config": json.dumps(model.config.to_dict())}
    return Path(torch._inductor.aoti_compile_and_package(
        program, package_path=str(path), inductor_configs={"aot_inductor.metadata": metadata}))


__all__ = ["export_program", "to_aoti", "state_names"]
