#!/usr/bin/env bash
# Run (or continue) an MQAR sweep on the device machine within a time budget, and bring its summaries back.
#   bash benchmarks/gpu_mqar_sweep.sh SPEC NAME [SECONDS]
# The sweep works in /tmp (its run directories are too deep and too many to come back through $OUT). It starts
# from benchmarks/results/NAME_sweep.json when that exists (the runs already done are skipped), and copies
# NAME_sweep.json and NAME.json into $OUT (or benchmarks/results/ when $OUT is unset) when it stops: finished or
# out of time. The summaries are rewritten after every run and on the budget's interrupt, so a run cut off by the
# budget loses only its result: its curve so far is in the summary's `unfinished` list (not a result).
# fla baselines need fla's wheels installed first (see docs/RESULTS.md). SWEEP_PARALLEL=N overrides the spec's
# `parallel` (runs at once), e.g. to share the card between two sweeps. SWEEP_ONLY=PATTERNS runs only the pending
# runs whose ids match (comma-separated fnmatch patterns, in their order: `ramnet sweep --only`).
# SWEEP_STOP_STARTING_AFTER=S starts no run after S seconds (set it to the budget less one run's time).
set -u
spec=${1:?usage: gpu_mqar_sweep.sh SPEC NAME [SECONDS]}
name=${2:?usage: gpu_mqar_sweep.sh SPEC NAME [SECONDS]}
budget=${3:-540}
case "$budget" in ''|*[!0-9]*) echo "SECONDS must be a whole number of seconds, got '$budget'" >&2; exit 2;; esac
budget=$((10#$budget))  # 0540 is 540 seconds, not octal
spec=$(realpath "$spec")  # before the cd below
cd "$(dirname "$0")/.."
dest=${OUT:-benchmarks/results}
work=/tmp/ramnet-sweep-$name
mkdir -p "$work" "$dest"
exec 9>"$work/.lock"  # one sweep per work folder: a second would delete the first one's run files
flock -n 9 || { echo "another sweep is running in $work (NAME $name): not starting a second" >&2; exit 2; }
rm -f "$work/.exit"  # this sweep's exit status, written when it ends (gpu_sweep_background.sh collect reports it)
# when the budget's interrupt comes (epoch seconds): gpu_sweep_background.sh collect sets each run's expected end
# beside it, so that a run which cannot finish in time shows before the session loses it (session V lost four so)
echo $(( $(date +%s) + budget )) > "$work/.deadline"
if [ -f "benchmarks/results/${name}_sweep.json" ] && [ ! -f "$work/mqar_sweep.json" ]; then
  cp "benchmarks/results/${name}_sweep.json" "$work/mqar_sweep.json"
fi
export PYTHONUNBUFFERED=1
# Keep every kernel's Triton autotuning results on disk, shared by every run on this machine (fla 0.6.0 already
# does so for most of its kernels): fla's DeltaNet and GLA runs spent 660-683 s of their first 500 steps compiling
# and tuning with the card shared by 13 processes, then about 30 s per 500 steps (mqar_sweep.json histories,
# 2026-12-01). A later run of the same kernels and shapes reuses the timings.
export TRITON_CACHE_AUTOTUNING=${TRITON_CACHE_AUTOTUNING-1}
# 16 packed workers filled the H200's 140 GB in session C and nine first attempts ran out of memory: let each
# process's caching allocator grow and give back segments instead of holding fixed blocks (fragmentation)
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF-expandable_segments:True}
timeout --signal=INT --kill-after=30 "$budget" python3 -m ramnet sweep "$spec" --out "$work" --quiet \
  ${SWEEP_PARALLEL:+--parallel "$SWEEP_PARALLEL"} ${SWEEP_ONLY:+--only "$SWEEP_ONLY"} \
  ${SWEEP_STOP_STARTING_AFTER:+--stop-starting-after "$SWEEP_STOP_STARTING_AFTER"}
status=$?
# a sweep that failed before its first run (session Z: fla not on PYTHONPATH) otherwise shows in `collect` only as
# "0 runs with results, 0 failed"
echo "$status" > "$work/.exit"
[ -f "$work/mqar_sweep.json" ] && cp "$work/mqar_sweep.json" "$dest/${name}_sweep.json"
[ -f "$work/mqar.json" ] && cp "$work/mqar.json" "$dest/${name}.json"
python3 -m ramnet sweep "$spec" --out "$work" --dry-run 2>/dev/null | sed -n 1p
exit $status
