"""What torch.compile sees of the model, on CPU (no GPU needed): graph breaks and recompiles of a compiled
training step, and the op census of the captured batch-1 decode step (the launches a CUDA graph would replay
before Inductor fuses the pointwise ops). A 2-layer model with the P4 benchmark's widths (d_model 768, 12 heads,
d_ff 2048; one CAPE layer, one half-CAPE layer).

    python benchmarks/cpu_graph_census.py [--layers 2]
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent.parent))
import ramnet.ops as R  # noqa: E402
from ramnet import RamNetConfig, RamNetForCausalLM  # noqa: E402


def train_step_census(model, ids) -> dict:
    """Graph breaks and frame compiles of three compiled fwd+bwd steps (``torch._dynamo`` counters)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    fwd = torch.compile(model)
    for _ in range(3):
        fwd(ids).float().logsumexp(-1).mean().backward()
    return {"graph_breaks": sum(counters["graph_break"].values()),
            "unique_graphs": counters["stats"]["unique_graphs"]}


def decode_census(model, cfg) -> collections.Counter:
    """The call targets of the captured decode step of one token through every layer."""
    states = [R.initial_state(1, cfg.n_heads, cfg.num_slots, cfg.d_v) for _ in range(cfg.n_layers)]

    def step(token, position):
        x = model.embed(token)
        for block, (S, z) in zip(model.blocks, states):
            x = block.step(x, (S, z, None), position)
        return model.lm_head(model.norm(x))

    graphs = []

    def capture(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    with torch.no_grad():
        torch.compile(step, backend=capture, fullgraph=True)(torch.zeros(1, dtype=torch.long),
                                                              torch.zeros(1, dtype=torch.long))
    census = collections.Counter()
    for node in graphs[0].graph.nodes:
        if node.op == "call_function":
            census[getattr(node.target, "__name__", str(node.target))] += 1
        elif node.op == "call_method":
            census["." + node.target] += 1
    return census


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    if args.layers < 2:
        parser.error("--layers must be >= 2 (one CAPE and one half-CAPE layer)")
    cfg = RamNetConfig.from_name("paper-340m", n_layers=args.layers, d_model=768, n_heads=12, d_ff=2048,
                                 cape_all_heads_layers=1, cape_half_heads_layers=1, vocab_size=512)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = RamNetForCausalLM(cfg)
        ids = torch.randint(0, cfg.vocab_size, (2, 64))
    for dtype in (torch.float32, torch.bfloat16):
        print(f"train step, {str(dtype).replace('torch.', '')} weights: {train_step_census(model.to(dtype), ids)}")
    census = decode_census(model.float().eval(), cfg)
    print(f"decode step, {args.layers} layers: " + ", ".join(f"{name} x{n}" for name, n in census.most_common()))


if __name__ == "__main__":
    main()
