"""``make demo``: train mqar-tiny with torch.compile (on the GPU when one is present, else the CPU), print its accuracy, the state
accounting and the eager-vs-compiled difference; then export it (ONNX, both flavours), generate through ONNX
Runtime against eager, and print the ``ramnet validate`` table (compiled, four ONNX graphs, AOTInductor)."""
from __future__ import annotations

import json
import time

import torch

from . import RamNetConfig, state_accounting
from .data.mqar import multiquery_ar
from .plots import plot_history
from .train import TrainArgs, train_mqar
from .train_recipes import CI_MQAR_RECIPE


def main() -> None:
    recipe = CI_MQAR_RECIPE
    config = RamNetConfig.from_name(recipe.preset)
    start = time.perf_counter()
    out_dir = "runs/demo"
    metrics = train_mqar(config, recipe.setting, TrainArgs(**{**recipe.train_kwargs, "compile": True}), out_dir=out_dir,
                         overwrite=True)
    model = metrics.pop("model").eval()
    device = next(model.parameters()).device
    x, _ = multiquery_ar(recipe.setting, 64, seed=999)
    x = x.to(device)
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, fullgraph=True)(x)
    diff = (eager - compiled).abs().max().item()
    acct = state_accounting(config)
    plot = plot_history(f"{out_dir}/metrics.json")
    print("\n== ramnet demo")
    print(f"trained on {device} ({metrics['train']['precision']})")
    print(f"MQAR {recipe.setting}: accuracy {metrics['final_accuracy']:.3f} after {metrics['steps_run']} steps "
          f"({metrics['seconds']:.0f} s training, {time.perf_counter() - start:.0f} s total)")
    print(f"state accounting (mqar-tiny): {json.dumps(acct)}")
    print(f"paper-340m state accounting: {json.dumps(state_accounting(RamNetConfig.from_name('paper-340m')))}")
    print(f"eager vs torch.compile(fullgraph=True) logits: max abs diff {diff:.2e}")
    print(f"checkpoint: {out_dir}/model.safetensors   curves: {plot}")
    export_and_validate(model.cpu(), x[:2, :16].cpu(), out_dir)


def export_and_validate(model, prompt, out_dir: str) -> None:
    import logging
    import warnings

    from ramnet.export.onnx import to_onnx

    # the exporters' deprecation and registration chatter (torchvision ops, pytree) is not this demo's business
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    from ramnet.runtime.ort import OrtGenerator
    from ramnet.runtime.validate import format_table, validate

    print("\n== export + ONNX Runtime")
    paths = {(f, g): to_onnx(model, f"{out_dir}/{f}-{g}.onnx", flavor=f, graph=g)
             for f in ("standard", "custom") for g in ("prefill", "decode")}
    eager = model.generate(prompt, 16)
    for flavor in ("standard", "custom"):
        generated = OrtGenerator(paths[(flavor, "prefill")], paths[(flavor, "decode")]).generate(prompt, 16)
        same = bool((generated == eager).all())
        print(f"ORT {flavor:8s} generate(16 tokens, greedy) == eager generate: {same}   "
              f"({paths[(flavor, 'prefill')]}, {paths[(flavor, 'decode')]})")
    print("\n== ramnet validate (prefill + 4 decode steps, batch 2)")
    print(format_table(validate(model, workdir=f"{out_dir}/validate",
                                progress=lambda m: print(f"[validate] {m}", flush=True))))


if __name__ == "__main__":
    main()
