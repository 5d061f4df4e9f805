#!/usr/bin/env bash
# One GPU session of the three MQAR sweeps side by side on the card, in the order the results need next.
#   bash benchmarks/gpu_mqar_session.sh start SECONDS [--mps]   # returns at once; the sweeps run on (detached)
#   bash benchmarks/gpu_mqar_session.sh collect                 # progress; summaries (and saved models) into $OUT
# `start` gives each sweep SECONDS of budget and starts no run after SECONDS - RUN_SECONDS (default 700: most RAM-Net
# runs with the card shared by 13-16 workers took 394-790 s, but two took 1,408-1,423 s on a card whose memory was
# full, and fla's took 815-1,266 s while they autotuned), so the budget cuts few runs; a cut run keeps its curve
# (`unfinished`), not a result. The workers
# are split 10 / 4 / 1 between main.yaml, ablations.yaml and paper_arch.yaml (MAIN_PARALLEL, ABL_PARALLEL,
# ARCH_PARALLEL), and each sweep runs its pending runs in the order of its priority patterns below (override with
# MAIN_ONLY, ABL_ONLY, ARCH_ONLY; the empty string runs the spec's own order). `--mps` first tries CUDA MPS
# (gpu_sweep_background.sh mps-start; it stops itself when a CUDA process cannot join it).
# After `collect`, commit $OUT's NAME_sweep.json and NAME.json to benchmarks/results/: the next session continues
# from them.
set -u
cd "$(dirname "$0")/.."
bg=benchmarks/gpu_sweep_background.sh
# First (one round of 10 workers starts together): the fla baselines that give the missing equal-state verdicts
# (GLA at 8k and 33k at 1e-3, GLA-33k at 3e-3, DeltaNet-131k), which are the longest runs (1,100-1,270 s, more on a
# fresh machine that autotunes) and would not finish if started later; beside them the RAM-Net rows that may close
# the gap to DeltaNet (K=16, width 256, both; 66k at 3e-3, its best lr). Then the other missing rows, the rest.
# fla's DeltaNet and GLA spend their first ~11 minutes compiling and autotuning on a fresh machine unless
# benchmarks/gpu_cache/triton_autotune.tgz holds their shapes (gpu_session_lm_mqar.sh restores it)
MAIN_ONLY=${MAIN_ONLY-'gla-8k-lr0.001-*,gla-33k-lr0.001-*,gla-33k-lr0.003-*,deltanet-131k-lr0.003-*,ramnet-16k-w256-k16-lr0.001-*,ramnet-16k-k16-lr0.001-*,ramnet-66k-w256-k16-lr0.003-*,ramnet-66k-k16-lr0.003-*,ramnet-3k-k16-lr0.001-*,ramnet-16k-w256-lr0.001-*,gdn-4k-lr0.001-*,ramnet-3k-w256-k16-lr0.001-*,ramnet-27k-k16-lr0.001-*,ramnet-16k-w256-k16-lr0.003-*,ramnet-16k-k16-lr0.003-*,ramnet-3k-k16-lr0.003-*,ramnet-16k-k32-lr0.001-*,attention-rope-lr0.003-*,gdn-66k-lr0.001-*,gla-2k-lr0.003-*,ramnet-*-k16-lr0.001-*,ramnet-*-lr0.003-*,*-131k-lr0.003-*,*-lr0.003-*,*-lr0.001-*,*'}
# K=16 and gamma=0.5 at 1e-3 (the rows the ablation list still misses), K=32, then M=1024 at lr 3e-3 (at 1e-3 U=1,
# 2 and 5 sat on the loss plateau, which lr 3e-3 lifted for ramnet-66k, the same memory) from U=10 down: U=1 last,
# since it holds about 44 GB. Then the rest.
ABL_ONLY=${ABL_ONLY-'K16-lr0.001-*,gamma-0.5-lr0.001-*,K32-lr0.001-*,M1024-U10-lr0.003-*,M1024-U5-lr0.003-*,M1024-U2-lr0.003-*,M1024-U1-lr0.003-*,*-lr0.001-*,*'}
# the paper's architecture at M=64, K=16 at lr 1e-3 again with its model kept for the slot plot (its 1e-3 run learned,
# 0.803; the kept 3e-3 run did not, so its 3e-3 run is left out), then the other variants, 3e-3 before 1e-3
ARCH_ONLY=${ARCH_ONLY-'paper-m64-k16-saved-lr0.001-*,paper-m64-k16-dv*-lr0.003-*,prev-token-*-lr0.003-*,[!p]*-lr0.003-*,prev-token-*,[!p]*'}
case "${1:-}" in
  start)
    budget=${2:?usage: start SECONDS [--mps]}
    case "$budget" in ''|*[!0-9]*) echo "SECONDS must be a whole number of seconds, got '$budget'" >&2; exit 2;; esac
    [ "${3:-}" = --mps ] && bash "$bg" mps-start
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    export SWEEP_STOP_STARTING_AFTER=$(( budget > ${RUN_SECONDS:-700} ? budget - ${RUN_SECONDS:-700} : 0 ))
    SWEEP_PARALLEL=${MAIN_PARALLEL:-10} SWEEP_ONLY=$MAIN_ONLY bash "$bg" start benchmarks/mqar/main.yaml mqar "$budget"
    SWEEP_PARALLEL=${ABL_PARALLEL:-4} SWEEP_ONLY=$ABL_ONLY bash "$bg" start benchmarks/mqar/ablations.yaml ablations "$budget"
    SWEEP_PARALLEL=${ARCH_PARALLEL:-1} SWEEP_ONLY=$ARCH_ONLY \
      bash "$bg" start benchmarks/mqar/paper_arch.yaml mqar_paper_arch "$budget"
    echo "no run starts after ${SWEEP_STOP_STARTING_AFTER} s" ;;
  collect)
    bash "$bg" collect mqar ablations mqar_paper_arch ;;
  *) echo "usage: $0 start SECONDS [--mps] | collect" >&2; exit 2 ;;
esac
