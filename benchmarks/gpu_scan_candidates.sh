#!/usr/bin/env bash
# The segment scan's and the address kernel's candidate variants side by side in one lease: kernel times (profile_op.py), GPU-busy time and
# peak memory of one fwd+bwd, at the P1 shapes that matter. Run after `pip install --no-deps -e .`:
#   bash benchmarks/gpu_scan_candidates.sh [OUTDIR]
set -u
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp}}
export PYTHONUNBUFFERED=1
shapes="4,4096,16,128 1,8192,96,128 8,1024,8,64"
# segment: the default (derived read rows, saved rows in the values' dtype, backward in head groups of <= 256 MiB
# of rows); the other: all heads at once (the earlier default)
for variant in segment "segment:rows_budget_mib=none"; do
  name=$(echo "$variant" | tr ':=,' '___')
  timeout 120 python3 benchmarks/profile_op.py --shapes $shapes --scan "$variant" --out "$out/prof_$name.json" \
    > "$out/prof_$name.log" 2>&1
  echo "== $variant"; grep "^### " "$out/prof_$name.log"
done
for rows in 1 4 16; do  # the address forward, several rows per program (TritonAddress.rows_per_program)
  echo "== address rows_per_program=$rows"
  RAMNET_BENCH_DIR=/tmp/ramnet-bench timeout 60 python3 benchmarks/bench_address.py --rows-per-program $rows > "$out/address_rows$rows.log" 2>&1
  grep "^|" "$out/address_rows$rows.log" || tail -5 "$out/address_rows$rows.log"  # the error, where it failed
done
