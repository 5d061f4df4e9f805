#!/usr/bin/env bash
# One run of every GPU benchmark into one summary.json (the numbers quoted in docs/BENCHMARKS.md).
#   RAMNET_BENCH_DIR=benchmarks/results bash benchmarks/run_all.sh [ops|model|all|extra|long|scan-ab|lm]
# "all" fits the device tool's 10-minute command limit with two of the P1 shapes (about 450 s on an H200); "extra"
# then adds the other four and P6 (long context) to the same summary.json (about 400 s; run it right after "all",
# on the same machine). bench_attention.py records each shape as it finishes, so a timeout keeps the finished ones.
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
part=${1:-all}
if [ "$part" = ops ] || [ "$part" = all ]; then
  rm -f "${RAMNET_BENCH_DIR:-benchmarks/results}/summary.json"
  timeout 120 python3 benchmarks/bench_decode.py
  timeout 90 python3 benchmarks/bench_address.py
fi
if [ "$part" = model ] || [ "$part" = all ]; then
  timeout 150 python3 benchmarks/bench_model.py
  timeout 400 python3 benchmarks/bench_attention.py --shapes 4,4096,16,128 8,1024,8,64
fi
if [ "$part" = extra ]; then
  timeout 420 python3 benchmarks/bench_attention.py --shapes 4,2048,16,128 2,16384,16,128 4,4096,64,128 1,8192,96,128
fi
if [ "$part" = extra ] || [ "$part" = long ]; then  # P6: the op from T=8192 to 131072, paper-340m at T=131072
  timeout 150 python3 benchmarks/bench_long_context.py --skip-plain
fi
if [ "$part" = scan-ab ]; then  # the scan backends A/B: recurrent against segment (results/scan_ab.json)
  timeout 500 python3 benchmarks/bench_scan_ab.py
fi
if [ "$part" = lm ]; then  # P5: LM training tokens/s and MFU, paper-340m against a Transformer++ and DeltaNet
  timeout 540 python3 benchmarks/bench_lm_throughput.py
fi
