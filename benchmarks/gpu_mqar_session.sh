#!/usr/bin/env bash
# One GPU session of the three MQAR sweeps side by side on the card, in the order the results need next.
#   bash benchmarks/gpu_mqar_session.sh start SECONDS [--mps]   # returns at once; the sweeps run on (detached)
#   bash benchmarks/gpu_mqar_session.sh collect                 # progress; summaries (and saved models) into $OUT
# `start` gives each sweep SECONDS of budget and starts no run after SECONDS - RUN_SECONDS (default 700: a RAM-Net
# run with the card shared by 13 workers took 430-790 s; fla's, once their autotuning is cached, far less), so the
# budget cuts few runs; a cut run keeps its curve (`unfinished`), not a result. The workers
# are split 10 / 5 / 1 between main.yaml, ablations.yaml and paper_arch.yaml (MAIN_PARALLEL, ABL_PARALLEL,
# ARCH_PARALLEL), and each sweep runs its pending runs in the order of its priority patterns below (override with
# MAIN_ONLY, ABL_ONLY, ARCH_ONLY; the empty string runs the spec's own order). `--mps` first tries CUDA MPS
# (gpu_sweep_background.sh mps-start; it stops itself when a CUDA process cannot join it).
# After `collect`, commit $OUT's NAME_sweep.json and NAME.json to benchmarks/results/: the next session continues
# from them.
set -u
cd "$(dirname "$0")/.."
bg=benchmarks/gpu_sweep_background.sh
# the baselines at the lr that left the plateau in the CPU probe first (fla's DeltaNet and GLA spend their first
# ~11 minutes compiling and autotuning, so they start at once; their runs at 1e-3 then reuse the tuning), then the
# baselines at 1e-3, then the rest
MAIN_ONLY=${MAIN_ONLY-'deltanet-*-lr0.003-*,gla-*-lr0.003-*,gdn-*-lr0.003-*,attention-lr0.003-*,deltanet-*-lr0.001-*,gla-*-lr0.001-*,gdn-*-lr0.001-*,attention-lr0.001-*,*-lr0.003-*,*'}
# the U ablation's missing runs at 1e-3 first, then CAPE, gamma and K at 1e-3 (one lr for every row before a
# second), then M=1024 at lr 3e-3 (at 1e-3 U=1 and U=5 sat on the loss plateau, which lr 3e-3 lifted for ramnet-66k,
# the same memory), then the rest. The U=1, M=1024 run holds about 44 GB.
ABL_ONLY=${ABL_ONLY-'M*-lr0.001-*,*-lr0.001-*,M1024-*-lr0.003-*,*'}
# the paper's architecture at M=64, K=16 at lr 3e-3 (its d_v 64 run keeps its model for the slot plot), then the
# paper's M=1024, K=8 at 3e-3 (at 1e-3 it sat on the loss plateau, which 3e-3 lifted for the short-conv ramnet-66k),
# then the other variants at 3e-3 before 1e-3
ARCH_ONLY=${ARCH_ONLY-'paper-m64-k16-lr0.003-*,paper-lr0.003-*,paper-m64-k16-dv*,*-lr0.003-*,*'}
case "${1:-}" in
  start)
    budget=${2:?usage: start SECONDS [--mps]}
    case "$budget" in ''|*[!0-9]*) echo "SECONDS must be a whole number of seconds, got '$budget'" >&2; exit 2;; esac
    [ "${3:-}" = --mps ] && bash "$bg" mps-start
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    export SWEEP_STOP_STARTING_AFTER=$(( budget > ${RUN_SECONDS:-700} ? budget - ${RUN_SECONDS:-700} : 0 ))
    SWEEP_PARALLEL=${MAIN_PARALLEL:-10} SWEEP_ONLY=$MAIN_ONLY bash "$bg" start benchmarks/mqar/main.yaml mqar "$budget"
    SWEEP_PARALLEL=${ABL_PARALLEL:-5} SWEEP_ONLY=$ABL_ONLY bash "$bg" start benchmarks/mqar/ablations.yaml ablations "$budget"
    SWEEP_PARALLEL=${ARCH_PARALLEL:-1} SWEEP_ONLY=$ARCH_ONLY \
      bash "$bg" start benchmarks/mqar/paper_arch.yaml mqar_paper_arch "$budget"
    echo "no run starts after ${SWEEP_STOP_STARTING_AFTER} s" ;;
  collect)
    bash "$bg" collect mqar ablations mqar_paper_arch ;;
  *) echo "usage: $0 start SECONDS [--mps] | collect" >&2; exit 2 ;;
esac
