"""``ramnet validate``: run eager, torch.compile and every exportable artifact on the same random inputs (a
prefill, then several decode steps carrying the state) and report the max abs / rel error per artifact.

Artifacts: ``compiled``, ``onnx-custom-prefill``, ``onnx-custom-decode``, ``onnx-standard-prefill``,
``onnx-standard-decode`` and ``aoti`` (AOTInductor prefill + decode packages, on the model's device). Each decode
artifact starts from the eager prefill states, so its error is its own. With ``layers=True`` each artifact also
reports the error of every layer's state outputs (``S_i, z_i, conv_i``), to locate where numerics drift.
"""
from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import numpy as np
import torch

TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9}  # max relative error (to the output's max magnitude)
SKIPPED: dict[str, str] = {}


def _errors(got, ref) -> tuple[float, float]:
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    abs_err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    return abs_err, abs_err / max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-30)


def _bump(entry: dict, a: float, r: float) -> None:
    entry["max_abs_err"] = max(entry.get("max_abs_err", 0.0), a)
    entry["max_rel_err"] = max(entry.get("max_rel_err", 0.0), r)


def _merge(results: dict, name: str, got, ref, layer: int | None = None) -> None:
    a, r = _errors(got, ref)
    entry = results.setdefault(name, {"max_abs_err": 0.0, "max_rel_err": 0.0})
    _bump(entry, a, r)
    if layer is not None:
        _bump(entry.setdefault("layers", {}).setdefault(str(layer), {}), a, r)


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().copy()  # a copy: the decode cache is updated in place


class _Case:
    """The shared inputs and eager references: prompt logits and states, and each decode step's logits and
    states (the decode path in place, ``decode_step``)."""

    def __init__(self, model, batch: int, prompt_len: int, decode_steps: int, seed: int):
        from ramnet.export.onnx import state_names

        self.model, self.batch, self.prompt_len = model, batch, prompt_len
        self.names = state_names(model.config)
        self.per_layer = len(self.names) // model.config.n_layers
        gen = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, model.config.vocab_size, (batch, prompt_len + decode_steps), generator=gen)
        device = next(model.parameters()).device
        with torch.no_grad():
            logits, states = model(self.ids[:, :prompt_len].to(device), return_states=True)
            self.logits = _np(logits)
            self.states = [_np(t) for layer in states for t in layer if t is not None]
            _, cache = model.prefill(self.ids[:, :prompt_len].to(device))
            self.steps = []
            for t in range(prompt_len, self.ids.shape[1]):
                step_logits = _np(model.decode_step(self.ids[:, t].to(device), cache))
                flat = [_np(x) for layer in cache.layers for x in layer if x is not None]
                self.steps.append((step_logits, flat))

    def layer(self, i: int) -> int:
        return i // self.per_layer

    def check_prefill(self, results, key, out: dict, layers: bool) -> None:
        _merge(results, key, out["logits"], self.logits)
        for i, (n, ref) in enumerate(zip(self.names, self.states)):
            _merge(results, key, out[n], ref, self.layer(i) if layers else None)

    def check_decode(self, results, key, step_fn, layers: bool) -> None:
        """``step_fn(token np [B], position np [B], {name: state}) -> {logits, name_out...}``."""
        carried = dict(zip(self.names, self.states))
        for i, (ref_logits, ref_states) in enumerate(self.steps):
            t = self.prompt_len + i
            out = step_fn(self.ids[:, t].numpy(), np.full(self.batch, t, dtype=np.int64), carried)
            _merge(results, key, out["logits"], ref_logits)
            for j, (n, ref) in enumerate(zip(self.names, ref_states)):
                _merge(results, key, out[n + "_out"], ref, self.layer(j) if layers else None)
            carried = {n: out[n + "_out"] for n in self.names}


def _check_onnx(case: _Case, results: dict, work: Path, layers: bool, progress) -> None:
    from ramnet.export.onnx import to_onnx
    from ramnet.runtime.ort import run, session

    for flavor in ("custom", "standard"):
        if flavor == "custom" and importlib.util.find_spec("onnxruntime_extensions") is None:
            # the ramnet-domain nodes run in ORT through onnxruntime-extensions' Python ops (the [onnx] extra)
            results.setdefault("skipped", {})["onnx-custom"] = "onnxruntime-extensions is not installed ([onnx] extra)"
            continue
        progress(f"onnx {flavor}: export + ORT")
        prefill = session(to_onnx(case.model, work / f"{flavor}-prefill.onnx", flavor=flavor, graph="prefill"))
        case.check_prefill(results, f"onnx-{flavor}-prefill",
                           run(prefill, {"input_ids": case.ids[:, :case.prompt_len].numpy()}), layers)
        decode = session(to_onnx(case.model, work / f"{flavor}-decode.onnx", flavor=flavor, graph="decode"))
        case.check_decode(results, f"onnx-{flavor}-decode",
                          lambda tok, pos, st: run(decode, {"token": tok, "position": pos, **st}), layers)


def _check_aoti(case: _Case, results: dict, work: Path, layers: bool, progress) -> None:
    from ramnet.export.aoti import to_aoti
    from ramnet.runtime.aoti import load

    device = next(case.model.parameters()).device
    progress(f"aoti: compile prefill + decode packages ({device.type})")
    prefill = load(to_aoti(case.model, work / "prefill.pt2", graph="prefill", device=device))
    decode = load(to_aoti(case.model, work / "decode.pt2", graph="decode", device=device))
    as_np = lambda outs, names: {n: _np(o) for n, o in zip(names, outs)}
    with torch.no_grad():
        out = prefill(case.ids[:, :case.prompt_len].to(device))
    case.check_prefill(results, "aoti", as_np(out, ["logits"] + case.names), layers)

    def step(tok, pos, states):
        args = [torch.from_numpy(tok), torch.from_numpy(pos)] + [torch.from_numpy(states[n]) for n in case.names]
        with torch.no_grad():
            outs = decode(*[a.to(device) for a in args])
        return as_np(outs, ["logits"] + [n + "_out" for n in case.names])

    case.check_decode(results, "aoti", step, layers)


def validate(model, *, batch: int = 2, prompt_len: int = 8, decode_steps: int = 4, seed: int = 0,
             workdir: str | Path | None = None, layers: bool = False, aoti: bool = True, progress=None) -> dict:
    """Returns ``{artifact: {max_abs_err, max_rel_err, passed[, layers: {i: {...}}]}}`` plus ``skipped``."""
    from ramnet.model import RamNetForCausalLM

    if not isinstance(model, RamNetForCausalLM):
        raise TypeError(f"model must be a RamNetForCausalLM, got {type(model).__name__}")
    for name, value, low in (("batch", batch, 1), ("prompt_len", prompt_len, 1), ("decode_steps", decode_steps, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    progress = progress or (lambda message: None)
    from ramnet.modes import eval_mode

    with eval_mode(model):  # every module's mode is left as found
        return _validate(model, batch, prompt_len, decode_steps, seed, workdir, layers, aoti, progress)


def _validate(model, batch, prompt_len, decode_steps, seed, workdir, layers, aoti, progress) -> dict:
    tol = TOLERANCE.get(next(model.parameters()).dtype, 1e-2)
    case = _Case(model, batch, prompt_len, decode_steps, seed)
    results: dict = {}
    skipped = dict(SKIPPED)

    progress("compiled: torch.compile(fullgraph=True)")
    device = next(model.parameters()).device
    with torch.no_grad():  # the prompt with its states, against eager
        compiled = torch.compile(model, fullgraph=True)
        logits, states = compiled(case.ids[:, :prompt_len].to(device), return_states=True)
    case.check_prefill(results, "compiled", dict(zip(["logits"] + case.names,
                       [_np(logits)] + [_np(t) for layer in states for t in layer if t is not None])), layers)

    work = Path(workdir or tempfile.mkdtemp(prefix="ramnet-validate-"))
    work.mkdir(parents=True, exist_ok=True)
    _check_onnx(case, results, work, layers, progress)
    if aoti:
        _check_aoti(case, results, work, layers, progress)
    else:
        skipped["aoti"] = "disabled (--no-aoti)"
    skipped.update(results.pop("skipped", {}))
    for entry in results.values():
        entry["passed"] = bool(entry["max_rel_err"] <= tol)
    results["skipped"] = skipped
    return results


def format_table(results: dict) -> str:
    lines = ["| artifact | max abs err | max rel err | passed |", "|---|---|---|---|"]
    for name, r in results.items():
        if name == "skipped":
            continue
        lines.append(f"| {name} | {r['max_abs_err']:.2e} | {r['max_rel_err']:.2e} | {r['passed']} |")
        for layer, e in r.get("layers", {}).items():
            lines.append(f"|   {name} layer {layer} (states) | {e['max_abs_err']:.2e} | {e['max_rel_err']:.2e} | |")
    for name, why in results.get("skipped", {}).items():
        lines.append(f"| {name} | - | - | skipped: {why} |")
    return "\n".join(lines)
