#!/usr/bin/env bash
# One device session for the LM issue's GPU parts and then the MQAR sweeps, detached so that it outlives the tool
# call that starts it (the machine keeps it while calls keep the machine warm):
#   bash benchmarks/gpu_session_lm_mqar.sh start SECONDS   # returns at once; everything must end SECONDS from now
#   bash benchmarks/gpu_session_lm_mqar.sh wait SECONDS    # until the sweeps have stopped, at most SECONDS
#   bash benchmarks/gpu_session_lm_mqar.sh collect         # the log's tail, sweep progress; all results in one
#                                                          # tar, $OUT/session.tgz (the tool returns 8 files at most),
#                                                          # and kept models beside it (NAME_models.tar[.partNN])
# Steps, in order, each with the card to itself until the sweeps:
#   0. det: the deterministic mode's cost (bench_scan_ab.py, segment against segment in that mode) and its GPU
#      bit-repeat test (tests/ops/test_gpu.py -k deterministic), about a minute;
#      cost: one MQAR training step of the equal-state models at 16k, 27k/33k and 66k (bench_mqar_step.py: 2 heads
#      of K=8 and K=16, 4 and 8 heads of M=64, DeltaNet, GLA), a few minutes;
#   1. benchmarks/gpu_gdn_core_check.py (the PyTorch gated delta rule against fla's kernels; timed);
#   2. benchmarks/gpu_lm_checks.sh (P5 throughput, then the NCCL torchrun run);
#   3. benchmarks/small_lm.sh (the three ~20M language models), when `datasets` imports;
#   4. benchmarks/gpu_mqar_session.sh start with the seconds that remain (at least MIN_SWEEP_SECONDS, by default
#      RUN_SECONDS + 60 = 760: gpu_mqar_session.sh starts no run after SECONDS - RUN_SECONDS).
# The step gdn_alongside runs step 1 in the background next to the sweeps instead, until the session's end (the card
# to itself costs minutes of a session; its timings are then not the card's own, and its JSON says so).
# Triton's autotuning results (fla's kernels cache theirs on disk; the sweeps ask the same of every kernel) are
# lost with the machine. `collect` packs them into session.tgz (triton_autotune.tgz); commit that file as
# benchmarks/gpu_cache/triton_autotune.tgz (about 40 kB: a copy kept only in an ignored folder was lost with a
# checkout), and the next `start` unpacks it into Triton's cache, so the same image skips the tuning that cost
# fla's runs minutes on a shared card. Entries of another Triton, GPU or kernel source are keyed apart and unused.
# SESSION_STEPS picks steps by name (default "gdn lm small_lm mqar"), e.g. SESSION_STEPS="gdn mqar" once the LM
# results are in. Everything is written under /tmp/ramnet-session, or RAMNET_SESSION_DIR (results/ holds summary.json,
# small_lm.json, ...).
set -u
cd "$(dirname "$0")/.."
S=${RAMNET_SESSION_DIR:-/tmp/ramnet-session}

run_steps() {
  local end=$1 steps=" ${SESSION_STEPS:-gdn lm small_lm mqar} "
  mkdir -p "$S/results"
  echo "== session start $(date -u +%FT%TZ), ends by $(date -u -d "@$end" +%T)"
  nvidia-smi --query-gpu=name,uuid,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  if [[ $steps == *" det "* ]]; then
    echo "== 0. deterministic mode: cost and bit-repeat test $(date -u +%T)"
    RAMNET_BENCH_DIR=$S/results timeout 300 python3 benchmarks/bench_scan_ab.py --shapes 4,4096,16,128 8,1024,8,64 \
      --baseline segment --variants segment --deterministic-variants
    echo "bench_scan_ab rc=$?"
    timeout 300 python3 -m pytest -q -p no:cacheprovider -m gpu tests/ops/test_gpu.py -k deterministic 2>&1 | tail -n 5
  fi
  if [[ $steps == *" cost "* ]]; then
    echo "== 0. the step cost of the equal-state MQAR models $(date -u +%T)"
    for group in "16k ramnet-16k ramnet-16k-k16 ramnet-16k-h4-m64-k16 ramnet-16k-h8-m64-k16 deltanet-16k" \
                 "27k ramnet-27k ramnet-27k-h4-m64-k16 deltanet-33k gla-33k-conv" \
                 "66k ramnet-66k ramnet-66k-k16 ramnet-66k-h4-m64-k16 deltanet-66k"; do
      set -- $group
      name=mqar_step_$1; shift
      # a group's models compile and autotune first (the sweeps' cache settings); start one only while its 240 s
      # limit still leaves the sweeps 1,300 s
      [ $(( end - $(date +%s) )) -ge 1540 ] || { echo "$name skipped: the sweeps need the time left"; continue; }
      TRITON_CACHE_AUTOTUNING=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True RAMNET_BENCH_DIR=$S/results \
        timeout 240 python3 benchmarks/bench_mqar_step.py --name "$name" --labels "$@"
      echo "bench_mqar_step $name rc=$?"
    done
  fi
  if [[ $steps == *" gdn "* ]]; then
    echo "== 1. GDN core check $(date -u +%T)"
    timeout 400 python3 benchmarks/gpu_gdn_core_check.py --out "$S/results/gdn_core_check.json"
    echo "GDN check rc=$?"
  fi
  if [[ $steps == *" lm "* ]]; then
    echo "== 2. P5 and NCCL $(date -u +%T)"
    RAMNET_BENCH_DIR=$S/results bash benchmarks/gpu_lm_checks.sh
    echo "gpu_lm_checks rc=$?"
  fi
  if [[ $steps == *" small_lm "* ]]; then
    echo "== 3. small LMs $(date -u +%T)"
    if python3 -c "import datasets, pyarrow, fsspec
print('datasets', datasets.__version__, 'pyarrow', pyarrow.__version__, 'fsspec', fsspec.__version__)"; then
      RAMNET_BENCH_DIR=$S/results WORK=$S/small_lm timeout "${SMALL_LM_SECONDS:-1000}" bash benchmarks/small_lm.sh
      echo "small_lm rc=$?"
    else
      echo "small_lm skipped: datasets does not import"
    fi
  fi
  if [[ $steps == *" gdn_alongside "* ]]; then  # next to the sweeps only, so no LM timing shares the card with it
    echo "== 1. GDN core check in the background, alongside the sweeps $(date -u +%T) (log gdn_core_check.log)"
    setsid nohup timeout $(( end - $(date +%s) )) python3 benchmarks/gpu_gdn_core_check.py --part-timeout 300 \
      --card-shared --out "$S/results/gdn_core_check.json" > "$S/gdn_core_check.log" 2>&1 < /dev/null &
  fi
  if [[ $steps == *" mqar "* ]]; then
    local left=$(( end - $(date +%s) ))
    echo "== 4. MQAR sweeps $(date -u +%T), $left s left"
    if [ "$left" -ge "$MIN_SWEEP_SECONDS" ]; then  # set by start
      bash benchmarks/gpu_mqar_session.sh start "$left" ${SWEEP_MPS:+--mps}
    else
      echo "too little time left for a sweep: $left s, MIN_SWEEP_SECONDS wants $MIN_SWEEP_SECONDS"
    fi
  fi
  echo "== steps done $(date -u +%T)"
}

case "${1:-}" in
  start)
    seconds=${2:?usage: start SECONDS}
    case "$seconds" in ''|*[!0-9]*) echo "SECONDS must be a whole number of seconds, got '$seconds'" >&2; exit 2;; esac
    for step in ${SESSION_STEPS:-}; do
      case $step in det|cost|gdn|gdn_alongside|lm|small_lm|mqar) ;; *) echo "SESSION_STEPS: unknown step '$step' (det cost gdn gdn_alongside lm small_lm mqar)" >&2; exit 2;; esac
    done
    if [[ " ${SESSION_STEPS:-} " == *" gdn "* && " ${SESSION_STEPS:-} " == *" gdn_alongside "* ]]; then
      echo "SESSION_STEPS: gdn and gdn_alongside both run the GDN check (into one file): pick one" >&2; exit 2
    fi
    [ -e "$S/session.log" ] && { echo "a session already ran here: $S/session.log (set RAMNET_SESSION_DIR to start another)" >&2; exit 2; }
    # the set-up (cache restore, start-up) takes 5-11 s of SECONDS (20 s allowed); a sweeps-only session that could not start
    # its sweeps would only spend device time
    export MIN_SWEEP_SECONDS=${MIN_SWEEP_SECONDS:-$(( ${RUN_SECONDS:-700} + 60 ))}
    if [[ " ${SESSION_STEPS:-} " == " mqar " && $seconds -lt $(( MIN_SWEEP_SECONDS + 20 )) ]]; then
      echo "SECONDS $seconds leaves the sweeps less than MIN_SWEEP_SECONDS ($MIN_SWEEP_SECONDS, by default RUN_SECONDS + 60) after about 20 s of set-up: give at least $(( MIN_SWEEP_SECONDS + 20 ))" >&2; exit 2
    fi
    mkdir -p "$S"
    end=$(( $(date +%s) + seconds ))
    tuned=benchmarks/gpu_cache/triton_autotune.tgz
    if [ -f "$tuned" ]; then
      cache=$(python3 -c "import triton; print(triton.knobs.cache.dir)") && mkdir -p "$cache" &&
        tar -xzf "$tuned" -C "$cache" &&
        echo "restored $(tar -tzf "$tuned" | grep -c autotune.json) autotuning results into $cache"
    fi
    export -f run_steps
    # the steps run holding $S/.lock (flock -o: the lock stays with flock, not with the sweeps they start), so that
    # `wait` can tell steps still running (the sweeps not yet started) from sweeps that have ended
    env -u OUT S="$S" setsid nohup flock -o "$S/.lock" bash -c "run_steps $end" > "$S/session.log" 2>&1 < /dev/null &
    pid=$!
    for _ in $(seq 120); do  # until the steps hold the lock (or have ended)
      kill -0 "$pid" 2>/dev/null || break
      flock -n "$S/.lock" true || break
      sleep 0.25
    done
    echo "session started; log $S/session.log" ;;
  wait)
    # while the steps run (their lock held), then until the sweeps they started stop; SECONDS in all. Session P's
    # `wait` right after `start` found no sweep yet and returned at once.
    limit=${2:?usage: wait SECONDS}
    case "$limit" in ''|*[!0-9]*) echo "SECONDS must be a whole number of seconds, got '$limit'" >&2; exit 2;; esac
    end=$(( $(date +%s) + 10#$limit ))
    while [ -e "$S/.lock" ] && ! flock -n "$S/.lock" true; do
      [ "$(date +%s)" -ge "$end" ] && { echo "session steps still running after $limit s"; exit 0; }
      sleep 5
    done
    bash benchmarks/gpu_mqar_session.sh wait "$(( end > $(date +%s) ? end - $(date +%s) : 0 ))" ;;
  collect)
    tail -n "${TAIL_LINES:-40}" "$S/session.log"
    mkdir -p "$S/mqar"
    OUT=$S/mqar bash benchmarks/gpu_mqar_session.sh collect 2>&1 | grep -v '^OUT is unset'
    cp "$S/small_lm/corpus/corpus.json" "$S/results/" 2>/dev/null
    [ -f "$S/gdn_core_check.log" ] && echo "GDN check (alongside): $(tail -n 3 "$S/gdn_core_check.log" | tr '\n' ' ')"
    cache=$(python3 -c "import triton; print(triton.knobs.cache.dir)" 2>/dev/null) && [ -d "$cache" ] &&
      (cd "$cache" && find . -name '*.autotune.json' | tar -czf "$S/triton_autotune.tgz" -T -) &&
      echo "autotuning results: $(tar -tzf "$S/triton_autotune.tgz" | grep -c autotune.json) (triton_autotune.tgz)"
    [ -n "${OUT:-}" ] && tar -czf "$OUT/session.tgz" -C "$S" --exclude='small_lm/corpus' --exclude='small_lm/runs/*/checkpoint*' \
      --exclude='*.safetensors' --exclude='*.pt' --exclude='*_models.tar' --exclude='*_models.tar.part*' . &&
      ls -la "$OUT/session.tgz"
    # the kept models beside session.tgz, not in it: a 256-wide model would take it past the 16 MiB a file that
    # comes back, and the summaries with it (the sweep's collect split larger tars into 15 MiB pieces)
    if [ -n "${OUT:-}" ] && compgen -G "$S/mqar/*_models.tar*" > /dev/null; then
      cp "$S"/mqar/*_models.tar* "$OUT"/ && ls -la "$OUT"/*_models.tar*
    fi ;;
  *) echo "usage: $0 start SECONDS | wait SECONDS | collect" >&2; exit 2 ;;
esac
