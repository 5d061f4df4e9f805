"""Bounded probe of the AOTInductor loader on this machine: which compile/load paths work for a plain aten-only
model (no ramnet ops) and for the ramnet decode graph. Each case runs in a fresh subprocess with faulthandler,
so a segfault is reported with its return code and Python stack instead of killing the probe.

    python3 benchmarks/aoti_loader_probe.py [--out DIR]      # prints a table; writes DIR/aoti_probe.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PLAIN = """
import torch
class M(torch.nn.Module):
    def __init__(self):
        super().__init__(); self.l = torch.nn.Linear(16, 16)
    def forward(self, x):
        return torch.relu(self.l(x)) * 2
dev = "{device}"
m = M().to(dev).eval(); x = torch.randn(4, 16, device=dev)
ep = torch.export.export(m, (x,))
"""

CASES = {
    "plain-package-same-process": PLAIN + """
p = torch._inductor.aoti_compile_and_package(ep, package_path="{work}/plain.pt2")
r = torch._inductor.aoti_load_package(p)
print("max_err", float((r(x) - m(x)).abs().max()))
""",
    "plain-package-compile-only": PLAIN + """
p = torch._inductor.aoti_compile_and_package(ep, package_path="{work}/plain2.pt2")
print("compiled", p)
""",
    "plain-package-fresh-load": """
import torch
r = torch._inductor.aoti_load_package("{work}/plain2.pt2")
x = torch.randn(4, 16, device="{device}")
print("ran", tuple(r(x).shape))
""",
    "plain-so-aot_compile": PLAIN + """
so = torch._export.aot_compile(m, (x,), options={{"aot_inductor.output_path": "{work}/plain.so"}})
r = torch._export.aot_load(so, "{device}")
print("max_err", float((r(x) - m(x)).abs().max()))
""",
    "plain-package-runner-direct": PLAIN + """
p = torch._inductor.aoti_compile_and_package(ep, package_path="{work}/plain3.pt2")
from torch._C._aoti import AOTIModelPackageLoader
loader = AOTIModelPackageLoader(p, "model", False, 1, -1)
print("loaded; constants", len(loader.get_constant_fqns()))
out = loader.run([x])
print("max_err", float((out[0] - m(x)).abs().max()))
""",
    "plain-cpu-package-on-this-machine": PLAIN.replace('dev = "{device}"', 'dev = "cpu"') + """
p = torch._inductor.aoti_compile_and_package(ep, package_path="{work}/plain_cpu.pt2")
r = torch._inductor.aoti_load_package(p)
print("max_err", float((r(x) - m(x)).abs().max()))
""",
    "plain-cuda-embed-kernel-binary": PLAIN + """
p = torch._inductor.aoti_compile_and_package(ep, package_path="{work}/plain_embed.pt2",
                                             inductor_configs={{"aot_inductor.embed_kernel_binary": True}})
r = torch._inductor.aoti_load_package(p)
print("max_err", float((r(x) - m(x)).abs().max()))
""",
    "plain-cuda-no-triton-kernels": PLAIN.replace("torch.relu(self.l(x)) * 2", "self.l(x)") + """
p = torch._inductor.aoti_compile_and_package(ep, package_path="{work}/plain_mm.pt2",
                                             inductor_configs={{"max_autotune": False}})
r = torch._inductor.aoti_load_package(p)
print("max_err", float((r(x) - m(x)).abs().max()))
""",
    "plain-so-ldd-and-dlopen": """
import ctypes, glob, subprocess, zipfile
import torch
z = zipfile.ZipFile("{work}/plain2.pt2"); z.extractall("{work}/plain2")
so = [p for p in glob.glob("{work}/plain2/**/*.so", recursive=True)]
print("so files", so)
for p in so:
    out = subprocess.run(["ldd", p], capture_output=True, text=True).stdout
    print("ldd not found:", [l.strip() for l in out.splitlines() if "not found" in l])
    print("ldd libs:", [l.split()[0] for l in out.splitlines()][:12])
    ctypes.CDLL(p)
    print("dlopen ok", p)
""",
    "plain-package-gdb-backtrace": """
import shutil, subprocess, sys
gdb = shutil.which("gdb")
print("gdb", gdb)
if gdb:
    code = "import torch; r = torch._inductor.aoti_load_package('{work}/plain2.pt2')"
    out = subprocess.run([gdb, "-batch", "-ex", "run", "-ex", "bt 25", "--args", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=200)
    print(chr(10).join(l for l in out.stdout.splitlines() if l.startswith("#"))[:3000])
""",
    "ramnet-decode-package": """
import torch
from ramnet import RamNetConfig, RamNetForCausalLM
from ramnet.export.aoti import to_aoti
from ramnet.runtime.aoti import load
from ramnet.export.onnx import example_states
torch.manual_seed(0)
m = RamNetForCausalLM(RamNetConfig.from_name("tiny")).to("{device}").eval()
p = to_aoti(m, "{work}/decode.pt2", graph="decode", device="{device}")
r = load(p)
states = [s.to("{device}") for s in example_states(m, 3)]
tok = torch.randint(0, m.config.vocab_size, (3,), device="{device}")
pos = torch.zeros(3, dtype=torch.long, device="{device}")
out = r(tok, pos, *states)
from ramnet.export.onnx import DecodeGraph
with torch.no_grad():
    ref = DecodeGraph(m)(tok, pos, *states)
print("max_err", max(float((a - b).abs().max()) for a, b in zip(out, ref)))
""",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cases", nargs="*", default=None, help="run only these cases (default: all)")
    args = parser.parse_args()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            sys.exit("aoti_loader_probe.py: --device cuda needs a CUDA GPU (none here); --device cpu probes the CPU")
    work = Path(tempfile.mkdtemp(prefix="aoti-probe-"))
    results = {}
    for name, code in CASES.items():
        if args.cases and name not in args.cases:
            continue
        script = textwrap.dedent(code).format(device=args.device, work=work)
        proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c", script], capture_output=True, text=True,
                              timeout=400)
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-25:]
        results[name] = {"returncode": proc.returncode, "tail": tail}
        print(f"== {name}: rc={proc.returncode}\n   " + "\n   ".join(tail), flush=True)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / f"aoti_probe_{args.device}.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
