#!/usr/bin/env bash
# One GPU session of the MQAR sweeps side by side on the card, in the order the results need next.
#   bash benchmarks/gpu_mqar_session.sh start SECONDS [--mps]   # returns at once; the sweeps run on (detached)
#   bash benchmarks/gpu_mqar_session.sh wait SECONDS            # until every sweep has stopped, at most SECONDS
#   bash benchmarks/gpu_mqar_session.sh collect                 # progress; summaries (and saved models) into $OUT
# `start` gives each sweep SECONDS of budget and starts no run after SECONDS - RUN_SECONDS (default 700: most 2-head
# RAM-Net runs with the card shared by 13-16 workers took 394-1,068 s (the U=1 ablations up to 1,457 s), the 4- and
# 8-head ones 1,018-1,411 s, and fla's 815-1,411 s), so the budget cuts few runs; a cut run keeps its curve
# (`unfinished`), not a result. The workers are split 1 / 1 / 0 / 0 / 0 / 0 / 0 between seeds.yaml, main.yaml,
# ablations.yaml, paper_arch.yaml, probe.yaml, profile.yaml and long.yaml (SEEDS_PARALLEL, MAIN_PARALLEL, ABL_PARALLEL,
# ARCH_PARALLEL, PROBE_PARALLEL, PROFILE_PARALLEL, LONG_PARALLEL; 0 leaves a sweep out): workers held
# 6,036-10,762 MiB each (peak_mib, sessions D and E; 15 of them filled 132,626 of the H200's 143,771 MiB). Every
# run of ablations.yaml, main.yaml and seeds.yaml has run (the last ones in session AK)
# (main.yaml's lr grid was cut to the runs made, see its header; session U's six runs took 239-851 s side by side
# and its four seeds 151-325 s).
# Session R ran nine side by side: each ran about 7x slower than alone and the machine went back before any
# finished; session S ran four (462-661 s) and then three (cut at steps 2,000-3,500 when the machine went
# back); session T ran five (669-968 s).
# paper_arch.yaml is done but for the one run left out on purpose (its two alpha-lr variants ran in session L).
# probe.yaml is done (session L): it reran three main.yaml runs keeping their models,
# for the interference probe (benchmarks/mqar_interference.py); `collect` brings such models back as
# NAME_models.tar beside session.tgz (in 15 MiB pieces when larger: the tool brings back 16 MiB a file). Each sweep runs its
# pending runs in the order of its
# priority patterns below (override with SEEDS_ONLY, MAIN_ONLY, ABL_ONLY, ARCH_ONLY, PROFILE_ONLY; the empty
# string runs the spec's own order). `--mps` first tries CUDA MPS
# (gpu_sweep_background.sh mps-start; it stops itself when a CUDA process cannot join it).
# After `collect`, `python benchmarks/mqar_take_session.py TGZ ...` copies the summaries in session.tgz
# (NAME_sweep.json, NAME.json) into benchmarks/results/ when they add runs; commit them: the next session continues
# from them.
set -u
cd "$(dirname "$0")/.."
bg=benchmarks/gpu_sweep_background.sh
# Pending after session AU: nothing. Session AU ran seeds.yaml's seed 2 of the 44,032 4-token-gate row at lr 5e-4
# (0.99932: three seeds 0.99909 against DeltaNet-33k's 0.99848, so the 33k band turned) and long.yaml's ramnet-88k
# seed 2 (0.99997, for the record); docs/MQAR_SESSIONS.md, "Session AU", keeps its two calls:
#   SEEDS_PARALLEL=1 MAIN_PARALLEL=0 LONG_PARALLEL=0 SEEDS_ONLY='ramnet-44k-*-gconv4-*-s2'
#     RUN_SECONDS=330 MIN_SWEEP_SECONDS=360 ... start 420; ... wait 415
#   SEEDS_PARALLEL=0 MAIN_PARALLEL=0 LONG_PARALLEL=1 LONG_ONLY='ramnet-88k-*'
#     RUN_SECONDS=480 MIN_SWEEP_SECONDS=490 ... start 560; ... wait 555
# A new row goes into its spec and runs one a call with MAIN_ONLY or SEEDS_ONLY, as those did.
# paper_arch.yaml's duplicate is left out on purpose.
# Geometry at 88,064 is closed: K (8, 16, 32), heads (4, 8, 16), M (64, 256) and lr have all been tried, and none
# lifts 256 pairs to DeltaNet-66k at 4,000 steps (docs/MQAR_SESSIONS.md, sessions AK and AL). Alone on the card an 8-head 44,032 K=32 run
# took 260-273 s of training (sessions AC and AD) and an 88,064 one 338 s, plus 58-83 s of install, set-up and
# start-up per call; the 176,128 row alone took 363-379 s (sessions AA and AB). Side by side these runs gain
# nothing: three 176,128 runs made about 10.5 steps a second between them (session AA), and two 44,032 K=32 runs
# about 7.3 each, 14.5 between them, against 15.3 for one alone (session AD, whose two were cut off at step 3,500).
# So run them one at a time, one run per call, each call whole in itself (install, PYTHONPATH, start, wait,
# collect), and a new RAMNET_SESSION_DIR in each call (a warm machine refuses a second `start` in the same folder):
# a machine left idle past 30 s between two calls goes back with its runs (sessions P, Z and AA among those that
# lost runs so).
# (calls 1-5 ran in sessions AJ (1-4) and AK (5); they stay as the commands used. Session AK's new rows ran the
# same way as call 1: MAIN_ONLY='ramnet-86k-*', then 'ramnet-88k-w256-h4-m256-*' (RUN_SECONDS=420
# MIN_SWEEP_SECONDS=450 ... start 520; ... wait 515), then 'ramnet-88k-w256-h16-*' (RUN_SECONDS=450
# MIN_SWEEP_SECONDS=470 ... start 540; ... wait 535); 133-334 s a run alone on an H100)
#   call 1: RAMNET_SESSION_DIR=/tmp/ramnet-session1 SEEDS_PARALLEL=0 MAIN_PARALLEL=1 \
#           MAIN_ONLY='*-k8-*' RUN_SECONDS=420 MIN_SWEEP_SECONDS=450 ... start 520; ... wait 515; ... collect
#   call 2: RAMNET_SESSION_DIR=/tmp/ramnet-session2 SEEDS_PARALLEL=0 MAIN_PARALLEL=0 PROFILE_PARALLEL=1 \
#           PROFILE_ONLY='deltanet-*' RUN_SECONDS=420 MIN_SWEEP_SECONDS=450 ... start 520; ... wait 515; ... collect
#   call 3: RAMNET_SESSION_DIR=/tmp/ramnet-session3 SEEDS_PARALLEL=0 MAIN_PARALLEL=0 PROFILE_PARALLEL=1 \
#           PROFILE_ONLY='ramnet-*' RUN_SECONDS=420 MIN_SWEEP_SECONDS=450 ... start 520; ... wait 515; ... collect
#   (the profile at a run's end adds an fp32 pass, which may autotune fla's kernels anew for fp32: hence the
#   margin of call 2; the result is written before the profile, so a cut profile costs only itself; call 3's
#   run keeps its model, 21 MiB, which comes back beside session.tgz as mqar_profile_models.tar.part00-of-02 and
#   .part01-of-02; a later call on the same warm machine brings it back again, since the sweep's folder stays)
#   call 4: RAMNET_SESSION_DIR=/tmp/ramnet-session4 SEEDS_PARALLEL=0 MAIN_PARALLEL=1 \
#           MAIN_ONLY='*-lr0.001-*' RUN_SECONDS=420 MIN_SWEEP_SECONDS=450 ... start 520; ... wait 515; ... collect
#   call 5: RAMNET_SESSION_DIR=/tmp/ramnet-session5 SEEDS_PARALLEL=1 MAIN_PARALLEL=0 \
#           SEEDS_ONLY='*-lr0.0005-s2' RUN_SECONDS=330 MIN_SWEEP_SECONDS=360 ... start 420; ... wait 415; ... collect
# (deltanet-66k's seeds took 188-189 s two side by side; fla's bf16 kernels are tuned from gpu_cache, see below.)
# A session's 1,800 s of device time held three such calls in session AC (1,601 s with the idle time between them)
# and four in session AJ (1,299 s on one H100, whose profile runs were short).
# (`start` refuses a SECONDS below RUN_SECONDS + 60 + about 20 s of set-up unless MIN_SWEEP_SECONDS is lowered.)
# (`wait` returns as soon as the run has stopped, so the generous RUN_SECONDS costs nothing.)
# Take each call's summaries in (mqar_take_session.py) before the next call, so a fresh machine does not rerun them
# (session AB took call 1's in only after call 4, on another machine: `mqar_take_session.py --merge` joined them).
# `collect` flags a run on course to miss SECONDS. Each call sets its own environment: export
# PYTHONPATH to fla's wheels in every call that starts a sweep (session Z lost one so; `start` warns, `collect`
# shows a failed sweep), and a second `start` on the same machine needs RAMNET_SESSION_DIR set to a new folder.
# Earlier timings: the 88,064 8-head row's seeds took 463-465 s two side by side (session Z), 561 s beside two
# others (session Y), and 8 heads at 21,504 143 s alone.
# Session X's five 16k-band runs side by side were at step 2,500-3,000 after about 390 s; its three 8-head
# 21,504 runs side by side took 376-377 s of training. Session W's three 8-head 44,032 runs took 511-515 s
# (five side by side were at step 1,500 after 310 s); session V's four reached step 3,500 at 593-602 s, and its
# 760 s SECONDS cut them off: SECONDS must cover the slowest run's training, start-up and a margin.
# The widest runs want few at once (session T's five took 669-968 s; session Q ran SEEDS_PARALLEL=2 MAIN_PARALLEL=5: seven
# 4-head runs at 20,480-88,064 state took 554-869 s, the 88,064 one the longest; session P's six at 10,752 and
# 22,016 took 458-524 s; session N's two 5k runs with the card to themselves took 154-155 s each)
# fla's DeltaNet and GLA spend their first ~11 minutes compiling and autotuning on a fresh machine unless
# benchmarks/gpu_cache/triton_autotune.tgz holds their shapes (gpu_session_lm_mqar.sh restores it)
# main.yaml: nothing pending after session AU; a new row runs one a call, picked with MAIN_ONLY (the plan above)
MAIN_ONLY=${MAIN_ONLY-'*'}
# seeds.yaml: nothing pending after session AU (the 44,032 4-token gate row's seed 2 ran last); a new seed runs one
# a call, picked with SEEDS_ONLY (the plan above)
SEEDS_ONLY=${SEEDS_ONLY-'*'}
# ablations.yaml (no workers by default): every row has run at lr 1e-3 and 3e-3 (M1024-U1 at 3e-3 last, in session
# N: 991 s beside 9 other runs, 29,338 MiB; in session A four runs next to it ran out of memory)
ABL_ONLY=${ABL_ONLY-'M256-*-lr0.003-*,[!M]*-lr0.003-*,*'}
# paper_arch.yaml (no workers by default): every variant ran (the alpha-lr pair in session L); the 3e-3 copy of
# paper-m64-k16-saved is left out (that lr did not learn)
ARCH_ONLY=${ARCH_ONLY-'*-alpha-lr-*'}
# profile.yaml (no workers by default; added in session AF): main.yaml's two seed-0 runs of the 66k band made again
# to record where their errors sit, DeltaNet's first (the shorter run)
PROFILE_ONLY=${PROFILE_ONLY-'deltanet-*,*'}
# long.yaml (no workers by default; added in session AL): the 66k and 16k pairs at twice the step budget, and (session
# AO) the 33k pair at 6,000: three seeds each, ramnet-88k's seed 2 last (session AU, 496 s alone on an H100);
# nothing pending
LONG_ONLY=${LONG_ONLY-'*'}
case "${1:-}" in
  start)
    budget=${2:?usage: start SECONDS [--mps]}
    case "$budget" in ''|*[!0-9]*) echo "SECONDS must be a whole number of seconds, got '$budget'" >&2; exit 2;; esac
    # the workers per sweep: seeds.yaml, main.yaml, ablations.yaml, paper_arch.yaml (defaults set once, here)
    # 15 in all in sessions E, F and H-K (15-23 small runs each); wide runs want few at once (session
    # R's nine side by side ran about 7x slower each than one alone). ablations.yaml, paper_arch.yaml, probe.yaml
    # are done; main.yaml and seeds.yaml hold one run each (session AD): one worker each by default, and the
    # plan above runs them one per call
    SEEDS_PARALLEL=${SEEDS_PARALLEL:-1} MAIN_PARALLEL=${MAIN_PARALLEL:-1} ABL_PARALLEL=${ABL_PARALLEL:-0}
    ARCH_PARALLEL=${ARCH_PARALLEL:-0} PROBE_PARALLEL=${PROBE_PARALLEL:-0} PROFILE_PARALLEL=${PROFILE_PARALLEL:-0}
    LONG_PARALLEL=${LONG_PARALLEL:-0}
    for workers in "$SEEDS_PARALLEL" "$MAIN_PARALLEL" "$ABL_PARALLEL" "$ARCH_PARALLEL" "$PROBE_PARALLEL" \
        "$PROFILE_PARALLEL" "$LONG_PARALLEL"; do
      case "$workers" in ''|*[!0-9]*)
        echo "*_PARALLEL must be a whole number of workers (0 leaves a sweep out), got '$workers'" >&2; exit 2;; esac
    done
    run_seconds=${RUN_SECONDS:-700}
    case "$run_seconds" in ''|*[!0-9]*) echo "RUN_SECONDS must be a whole number of seconds, got '$run_seconds'" >&2; exit 2;; esac
    # no run may start later than SECONDS - RUN_SECONDS: a budget at or under RUN_SECONDS would start none (session
    # O lost a call to that, with the sweeps idle and reporting nothing pending as done)
    if [ $(( 10#$budget )) -le $(( 10#$run_seconds )) ]; then
      echo "SECONDS ($budget) must exceed RUN_SECONDS ($run_seconds, one run's time): no run could start; lower RUN_SECONDS" >&2
      exit 2
    fi
    # seeds.yaml and main.yaml name fla models, and a sweep checks every entry before its first run: without fla
    # on the path they end at once (session Z lost a call so: PYTHONPATH is set per call, not per machine)
    if [ $(( 10#$SEEDS_PARALLEL + 10#$MAIN_PARALLEL + 10#$PROFILE_PARALLEL + 10#$LONG_PARALLEL )) -gt 0 ] &&  # find_spec: no torch import, no time lost
        ! python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('fla') is None)" 2>/dev/null; then
      echo "WARNING: fla is not on the path (is PYTHONPATH set to the wheels' folder in this call?): seeds.yaml, main.yaml, profile.yaml and long.yaml name fla models and will fail" >&2
    fi
    [ "${3:-}" = --mps ] && bash "$bg" mps-start
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    export SWEEP_STOP_STARTING_AFTER=$(( 10#$budget - 10#$run_seconds ))
    start_sweep() {  # WORKERS SPEC NAME PATTERNS: a sweep with its share of the workers, none when WORKERS is 0
      [ $(( 10#$1 )) -eq 0 ] && { echo "$3: left out (0 workers)"; return 0; }
      SWEEP_PARALLEL=$1 SWEEP_ONLY=$4 bash "$bg" start "$2" "$3" "$budget"
    }
    start_sweep "$SEEDS_PARALLEL" benchmarks/mqar/seeds.yaml mqar_seeds "$SEEDS_ONLY"
    start_sweep "$MAIN_PARALLEL" benchmarks/mqar/main.yaml mqar "$MAIN_ONLY"
    start_sweep "$ABL_PARALLEL" benchmarks/mqar/ablations.yaml ablations "$ABL_ONLY"
    start_sweep "$ARCH_PARALLEL" benchmarks/mqar/paper_arch.yaml mqar_paper_arch "$ARCH_ONLY"
    start_sweep "$PROBE_PARALLEL" benchmarks/mqar/probe.yaml mqar_probe ''
    start_sweep "$PROFILE_PARALLEL" benchmarks/mqar/profile.yaml mqar_profile "$PROFILE_ONLY"
    start_sweep "$LONG_PARALLEL" benchmarks/mqar/long.yaml mqar_long "$LONG_ONLY"
    echo "no run starts after ${SWEEP_STOP_STARTING_AFTER} s" ;;
  wait)
    # block until no sweep holds its work folder's lock, or SECONDS pass: a tool call's own limit bounds its wait.
    # (A `pgrep -f "ramnet sweep"` loop matches the shell that runs it and never ends: session O lost a call so.)
    limit=${2:?usage: wait SECONDS}
    case "$limit" in ''|*[!0-9]*) echo "SECONDS must be a whole number of seconds, got '$limit'" >&2; exit 2;; esac
    end=$(( $(date +%s) + 10#$limit ))
    while :; do
      busy=""
      for lock in /tmp/ramnet-sweep-*/.lock; do
        [ -e "$lock" ] || continue
        flock -n "$lock" true || busy="$busy ${lock%/.lock}"
      done
      [ -z "$busy" ] && { echo "no sweep running"; exit 0; }
      [ "$(date +%s)" -ge "$end" ] && { echo "still running after $limit s:$busy"; exit 0; }
      sleep 5
    done ;;
  collect)
    bash "$bg" collect mqar_seeds mqar ablations mqar_paper_arch mqar_probe mqar_profile mqar_long ;;
  *) echo "usage: $0 start SECONDS [--mps] | wait SECONDS | collect" >&2; exit 2 ;;
esac
