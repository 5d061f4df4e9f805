#!/usr/bin/env bash
# One GPU session of the MQAR sweeps side by side on the card, in the order the results need next.
#   bash benchmarks/gpu_mqar_session.sh start SECONDS [--mps]   # returns at once; the sweeps run on (detached)
#   bash benchmarks/gpu_mqar_session.sh collect                 # progress; summaries (and saved models) into $OUT
# `start` gives each sweep SECONDS of budget and starts no run after SECONDS - RUN_SECONDS (default 700: most 2-head
# RAM-Net runs with the card shared by 13-16 workers took 394-1,068 s (the U=1 ablations up to 1,457 s), the 4- and
# 8-head ones 1,018-1,411 s, and fla's 815-1,411 s), so the budget cuts few runs; a cut run keeps its curve
# (`unfinished`), not a result. The workers are split 6 / 8 / 1 / 0 between seeds.yaml, main.yaml, ablations.yaml
# and paper_arch.yaml
# (SEEDS_PARALLEL, MAIN_PARALLEL, ABL_PARALLEL, ARCH_PARALLEL; 0 leaves a sweep out): workers held 6,036-10,762 MiB
# each (peak_mib, sessions D and E; 15 of them filled 132,626 of the H200's 143,771 MiB), and the runs that decide
# the goals come first. seeds.yaml has 6 runs left (seeds 1 and 2 of ramnet-8k-h4-m256-k16, ramnet-131k-h4-m256-k16
# and deltanet-131k). The ablations that the goals name have run at 1e-3, and the U sweep at M=256, CAPE, gamma and
# K=4/16 at 3e-3 too; K=32 at 3e-3 is next there.
# Of the paper-architecture variants, the M=64 ones left are at 3e-3, where both M=64 runs so far stayed on the
# plateau, and the rest are M=1024, K=8 ones, whose base did not learn at either lr. Each sweep runs its pending runs
# in the order of its priority patterns below (override with MAIN_ONLY, ABL_ONLY, ARCH_ONLY; the empty
# string runs the spec's own order); seeds.yaml's runs all start at once. `--mps` first tries CUDA MPS
# (gpu_sweep_background.sh mps-start; it stops itself when a CUDA process cannot join it).
# After `collect`, commit $OUT's NAME_sweep.json and NAME.json to benchmarks/results/: the next session continues
# from them.
set -u
cd "$(dirname "$0")/.."
bg=benchmarks/gpu_sweep_background.sh
# main.yaml (8 workers): 4 heads of M=256 slots, K=16 at lr 1e-3 reached 0.897 at 8k (DeltaNet 0.884, seed 0), 0.995
# at 102k and 0.9997 at 131k (DeltaNet 0.9999), but 0.949 at 16k and 0.920-0.965 at 27k-33k (session I). Next: M=1024
# slots with 4 heads at 16k, 33k and 66k at both 1e-3 and 3e-3 (in the U ablation 2-head M=1024 with K=8 learned only
# at 3e-3 at U=2 and U=5), 4 heads of M=256 at DeltaNet-4k's 4,096 (both lrs), K=32 at 16k (1e-3; K=32's step is 1.48x
# K=16's, so it may run close to the budget), then the rest (mostly lr 1e-2, the 2-head rows' third). seeds.yaml runs
# seeds 1 and 2 of the 8k M=256 row and of both 131k models beside them (main.yaml then gets 8 workers: the M=1024 and
# 4,096 rows start at once, the rest as workers come free before the cut-off). Every 4-head row from 8k up was lower
# at 3e-3 than at 1e-3 (sessions H, I), and a 4-head step costs 2.45-4.33x a 2-head one at T=1024
# (docs/BENCHMARKS.md).
# fla's DeltaNet and GLA spend their first ~11 minutes compiling and autotuning on a fresh machine unless
# benchmarks/gpu_cache/triton_autotune.tgz holds their shapes (gpu_session_lm_mqar.sh restores it)
MAIN_ONLY=${MAIN_ONLY-'ramnet-*-h4-m1024-k16-lr0.00[13]-*,ramnet-4k-h4-m256-k16-lr0.00[13]-*,ramnet-16k-h4-m256-k32-lr0.001-*,*-lr0.001-*,*'}
# ablations.yaml (when given workers): every row has run at lr 1e-3, and the M=256 U sweep and CAPE at 3e-3 too
# (all lower than at 1e-3, session F), gamma (sessions G, H) and K4/K16 (session I); next K32 at 3e-3; M1024-U1 at
# 3e-3 last (it holds about 44 GB; cut at step 2,000 in session D, accuracy 0.002).
ABL_ONLY=${ABL_ONLY-'M256-*-lr0.003-*,[!M]*-lr0.003-*,*'}
# paper_arch.yaml (when given workers): the variants at 3e-3 before 1e-3 (paper-m64-k16-saved, the slot-plot model, ran in
# session D; its 3e-3 copy is left out: that lr did not learn)
ARCH_ONLY=${ARCH_ONLY-'paper-m64-k16-saved-lr0.001-*,paper-m64-k16-dv*-lr0.003-*,prev-token-*-lr0.003-*,[!p]*-lr0.003-*,prev-token-*,[!p]*'}
case "${1:-}" in
  start)
    budget=${2:?usage: start SECONDS [--mps]}
    case "$budget" in ''|*[!0-9]*) echo "SECONDS must be a whole number of seconds, got '$budget'" >&2; exit 2;; esac
    # the workers per sweep: seeds.yaml, main.yaml, ablations.yaml, paper_arch.yaml (defaults set once, here)
    # 15 in all, as in sessions E, F, H and I (17-22 runs each); session G's 12 finished their last run about 400 s
    # before the budget's end, with no run allowed to start after 776 s. seeds.yaml gets 6, so that its 6 runs
    # (8k and 131k pairs) start at once: a run that waits for a worker would start after the cut-off
    SEEDS_PARALLEL=${SEEDS_PARALLEL:-6} MAIN_PARALLEL=${MAIN_PARALLEL:-8} ABL_PARALLEL=${ABL_PARALLEL:-1}
    ARCH_PARALLEL=${ARCH_PARALLEL:-0}
    for workers in "$SEEDS_PARALLEL" "$MAIN_PARALLEL" "$ABL_PARALLEL" "$ARCH_PARALLEL"; do
      case "$workers" in ''|*[!0-9]*)
        echo "*_PARALLEL must be a whole number of workers (0 leaves a sweep out), got '$workers'" >&2; exit 2;; esac
    done
    [ "${3:-}" = --mps ] && bash "$bg" mps-start
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    export SWEEP_STOP_STARTING_AFTER=$(( budget > ${RUN_SECONDS:-700} ? budget - ${RUN_SECONDS:-700} : 0 ))
    start_sweep() {  # WORKERS SPEC NAME PATTERNS: a sweep with its share of the workers, none when WORKERS is 0
      [ $(( 10#$1 )) -eq 0 ] && { echo "$3: left out (0 workers)"; return 0; }
      SWEEP_PARALLEL=$1 SWEEP_ONLY=$4 bash "$bg" start "$2" "$3" "$budget"
    }
    start_sweep "$SEEDS_PARALLEL" benchmarks/mqar/seeds.yaml mqar_seeds ''
    start_sweep "$MAIN_PARALLEL" benchmarks/mqar/main.yaml mqar "$MAIN_ONLY"
    start_sweep "$ABL_PARALLEL" benchmarks/mqar/ablations.yaml ablations "$ABL_ONLY"
    start_sweep "$ARCH_PARALLEL" benchmarks/mqar/paper_arch.yaml mqar_paper_arch "$ARCH_ONLY"
    echo "no run starts after ${SWEEP_STOP_STARTING_AFTER} s" ;;
  collect)
    bash "$bg" collect mqar_seeds mqar ablations mqar_paper_arch ;;
  *) echo "usage: $0 start SECONDS [--mps] | collect" >&2; exit 2 ;;
esac
