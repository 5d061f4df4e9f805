"""P4: torch.compile against eager for a training step of a 12-layer d_model=768 RAM-Net, and CUDA graphs
(``mode="reduce-overhead"``) against eager for batch-1 decode.

    python benchmarks/bench_model.py
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import bench_ms, record, require_cuda, table  # noqa: E402

import ramnet.ops as R  # noqa: E402
from ramnet import RamNetConfig, RamNetForCausalLM  # noqa: E402


def train_step_ms(model, ids, compiled: bool):
    fwd = torch.compile(model) if compiled else model

    def step():
        loss = fwd(ids).float().logsumexp(-1).mean()
        loss.backward()
    for _ in range(3):
        step()
    return bench_ms(step, warmup=3, rep=20)


class DecodeLayers(torch.nn.Module):
    """One decode token through the 12 layers' memories, states as buffers (CUDA-graph friendly)."""

    def __init__(self, cfg, B):
        super().__init__()
        self.model = RamNetForCausalLM(cfg).cuda().to(torch.bfloat16)
        for i in range(cfg.n_layers):
            S, z = R.initial_state(B, cfg.n_heads, cfg.num_slots, cfg.d_v, device="cuda")
            self.register_buffer(f"S{i}", S)
            self.register_buffer(f"z{i}", z)

    def forward(self, token, position):
        x = self.model.embed(token)
        for i, block in enumerate(self.model.blocks):
            x = block.step(x, (getattr(self, f"S{i}"), getattr(self, f"z{i}"), None), position)
        return self.model.lm_head(self.model.norm(x))


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    require_cuda(__file__)
    cfg = RamNetConfig.from_name("paper-340m", n_layers=12, d_model=768, n_heads=12, d_ff=2048,
                                 cape_all_heads_layers=4, cape_half_heads_layers=4)
    model = RamNetForCausalLM(cfg).cuda().to(torch.bfloat16)
    ids = torch.randint(0, cfg.vocab_size, (4, 1024), device="cuda")
    eager = train_step_ms(model, ids, False)
    compiled = train_step_ms(model, ids, True)
    dec = DecodeLayers(cfg, 1).eval()
    token = torch.zeros(1, dtype=torch.long, device="cuda")
    pos = torch.zeros(1, dtype=torch.long, device="cuda")
    with torch.no_grad():
        eager_dec = bench_ms(lambda: dec(token, pos))
        graphed = torch.compile(dec, mode="reduce-overhead", fullgraph=True)
        for _ in range(3):
            graphed(token, pos)
        graph_dec = bench_ms(lambda: graphed(token, pos))
    rows = [{"what": "train step 12L d768 B4 T1024 (ms)", "eager": eager, "optimized": compiled, "speedup": eager / compiled},
            {"what": "decode B1 (ms)", "eager": eager_dec, "optimized": graph_dec, "speedup": eager_dec / graph_dec}]
    print(table(rows))
    record({"P4_compile_speedup_train": eager / compiled, "P4_cudagraph_decode_speedup_b1": eager_dec / graph_dec,
            "P4_graphed_decode_ms_b1": graph_dec, "P4_rows": rows})


if __name__ == "__main__":
    main()
