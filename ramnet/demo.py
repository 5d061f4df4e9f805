"""``make demo``: train mqar-tiny with torch.compile on CPU (GPU when present), then print its accuracy, the state
accounting and the eager-vs-compiled difference."""
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
    metrics = train_mqar(config, recipe.setting, TrainArgs(**{**recipe.train_kwargs, "compile": True}), out_dir=out_dir)
    model = metrics.pop("model").eval()
    x, _ = multiquery_ar(recipe.setting, 64, seed=999)
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, fullgraph=True)(x)
    diff = (eager - compiled).abs().max().item()
    acct = state_accounting(config)
    plot = plot_history(f"{out_dir}/metrics.json")
    print("\n== ramnet demo")
    print(f"MQAR {recipe.setting}: accuracy {metrics['final_accuracy']:.3f} after {metrics['steps_run']} steps "
          f"({metrics['seconds']:.0f} s training, {time.perf_counter() - start:.0f} s total)")
    print(f"state accounting (mqar-tiny): {json.dumps(acct)}")
    print(f"paper-340m state accounting: {json.dumps(state_accounting(RamNetConfig.from_name('paper-340m')))}")
    print(f"eager vs torch.compile(fullgraph=True) logits: max abs diff {diff:.2e}")
    print(f"checkpoint: {out_dir}/model.safetensors   curves: {plot}")


if __name__ == "__main__":
    main()
