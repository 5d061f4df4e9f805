#!/usr/bin/env bash
# The GPU parts of the LM-training issue that need the card to themselves, in one call (about 5 minutes):
#   1. P5: paper-340m training tokens/s and MFU against a Transformer++ and fla's DeltaNet
#      (benchmarks/bench_lm_throughput.py, recorded into $RAMNET_BENCH_DIR/summary.json);
#   2. the README's torchrun command on CUDA: one process on NCCL (`--nproc-per-node 1`), 40 steps, whose
#      metrics.json must say world_size 1 and dist fsdp, with a falling loss.
# Run on the device machine after `python3 -m pip install -q --no-build-isolation --no-deps -e .` (and fla's wheels
# for DeltaNet):   RAMNET_BENCH_DIR=$OUT bash benchmarks/gpu_lm_checks.sh
# Writes into $RAMNET_BENCH_DIR (default benchmarks/results): summary.json (P5 keys), lm_nccl_metrics.json and
# gpu_lm_checks.log. Nothing else should run on the card meanwhile: P5 is a timing.
set -uo pipefail
cd "$(dirname "$0")/.."
dest=${RAMNET_BENCH_DIR:-benchmarks/results}
mkdir -p "$dest"
export PYTHONUNBUFFERED=1 RAMNET_BENCH_DIR=$dest
log=$dest/gpu_lm_checks.log
failed=0
{
  echo "== P5 (bench_lm_throughput.py), $(date -u +%FT%TZ)"
  timeout 360 python3 benchmarks/bench_lm_throughput.py
  rc=$?; echo "P5 rc=$rc"; [ $rc -eq 0 ] || failed=1

  echo "== NCCL: torchrun --nproc-per-node 1, $(date -u +%FT%TZ)"
  work=/tmp/ramnet_lm_nccl
  rm -rf "$work" "$dest/lm_nccl_metrics.json" && mkdir -p "$work"
  cat README.md docs/*.md > "$work/corpus.txt"
  timeout 180 torchrun --standalone --nproc-per-node 1 -m ramnet train --task lm --preset tiny \
    --data "$work/corpus.txt" --seq-len 64 --steps 40 --device cuda --out "$work/run"
  rc=$?; echo "NCCL rc=$rc"; [ $rc -eq 0 ] || failed=1
  cp "$work/run/metrics.json" "$dest/lm_nccl_metrics.json" 2>/dev/null
  python3 - "$dest/lm_nccl_metrics.json" <<'PY' || failed=1
import json, sys
try:
    m = json.load(open(sys.argv[1]))
except OSError as error:
    sys.exit(f"NCCL run wrote no metrics.json: {error}")
losses = [h["loss"] for h in m["history"] if "loss" in h]
print(f"NCCL run: world_size {m['world_size']}, dist {m.get('dist')}, loss {losses[0]:.3f} -> {losses[-1]:.3f} "
      f"over {len(losses)} logged steps")
if m["world_size"] != 1 or m.get("dist") != "fsdp" or not losses[-1] < losses[0]:
    sys.exit("NCCL run: expected world_size 1, dist fsdp and a falling loss")
PY
  echo "gpu_lm_checks: $([ $failed -eq 0 ] && echo passed || echo FAILED)"
  exit $failed
} 2>&1 | tee "$log"
