#!/usr/bin/env bash
# One run of every GPU benchmark into one summary.json (the numbers quoted in docs/BENCHMARKS.md).
#   RAMNET_BENCH_DIR=benchmarks/results bash benchmarks/run_all.sh [ops|model|all|extra|long|scan-ab|lm]
# The device tool limits one command to 10 minutes, so the run is two commands, back to back on one machine:
# "all" (P2, P3, two P1 shapes) and "extra" (P4, the other four P1 shapes, P6). Each step's timeout keeps a part's
# sum under 600 s. On the H200 of 2026-12-01 (the earlier split): P2 + P3 + P4 about 150 s (552 s in all, less
# the 400 s at which bench_attention was cut); on a cold compile cache (fla's autotuning) two P1 shapes did not
# finish a third within those 400 s; with a warm cache three other shapes and P6 took 243 s, 1,8192,96,128 alone
# 129 s. bench_attention.py records each shape as it finishes, so a timeout keeps the finished ones: run a shape
# it did not reach alone (bench_attention.py --shapes B,T,H,D) right after, on the same machine.
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
part=${1:-all}
if [ "$part" = ops ] || [ "$part" = all ]; then
  rm -f "${RAMNET_BENCH_DIR:-benchmarks/results}/summary.json"
  timeout 100 python3 benchmarks/bench_decode.py
  timeout 60 python3 benchmarks/bench_address.py
fi
if [ "$part" = all ]; then
  timeout 420 python3 benchmarks/bench_attention.py --shapes 4,4096,16,128 8,1024,8,64
fi
if [ "$part" = model ] || [ "$part" = extra ]; then
  timeout 150 python3 benchmarks/bench_model.py
fi
if [ "$part" = extra ]; then
  timeout 320 python3 benchmarks/bench_attention.py --shapes 4,2048,16,128 2,16384,16,128 4,4096,64,128 1,8192,96,128
fi
if [ "$part" = extra ] || [ "$part" = long ]; then  # P6: the op from T=8192 to 131072, paper-340m at T=131072
  timeout 120 python3 benchmarks/bench_long_context.py --skip-plain
fi
if [ "$part" = scan-ab ]; then  # the scan backends A/B: recurrent against segment (results/scan_ab.json)
  timeout 500 python3 benchmarks/bench_scan_ab.py
fi
if [ "$part" = lm ]; then  # P5: LM training tokens/s and MFU, paper-340m against a Transformer++ and DeltaNet
  timeout 540 python3 benchmarks/bench_lm_throughput.py
fi
