#!/usr/bin/env bash
# Keep an MQAR sweep running on a warm device machine between tool calls, and copy its summaries back.
#   bash benchmarks/gpu_sweep_background.sh start SPEC NAME SECONDS   # returns at once; the sweep runs on
#   bash benchmarks/gpu_sweep_background.sh collect NAME [NAME ...]   # progress, and summaries into $OUT
# `start` detaches gpu_mqar_sweep.sh with setsid, so it outlives the call that started it (the machine keeps it
# until it is given back). The summaries are rewritten after every run, so `collect` can run at any time; it
# copies NAME_sweep.json and NAME.json into $OUT. Other work (tests, timings) can run in the calls between;
# timings measured next to a sweep share the card and are not to be reported.
set -u
cd "$(dirname "$0")/.."
case "${1:-}" in
  start)
    spec=${2:?usage: start SPEC NAME SECONDS}; name=${3:?usage: start SPEC NAME SECONDS}; budget=${4:?seconds}
    env -u OUT setsid nohup bash benchmarks/gpu_mqar_sweep.sh "$spec" "$name" "$budget" \
      > "/tmp/sweep-$name.log" 2>&1 < /dev/null &
    echo "started $name ($budget s budget); log /tmp/sweep-$name.log" ;;
  collect)
    shift
    [ $# -ge 1 ] || { echo "usage: collect NAME [NAME ...]" >&2; exit 2; }
    for name in "$@"; do
      work=/tmp/ramnet-sweep-$name
      done_runs=$(ls "$work"/runs/*/result.json 2>/dev/null | wc -l)
      failed=$(ls "$work"/runs/*/error.txt 2>/dev/null | wc -l)
      echo "$name: $done_runs runs with results, $failed failed"
      [ "$failed" -gt 0 ] && cat "$work"/runs/*/error.txt | cut -c1-160 | sort | uniq -c
      [ -f "$work/mqar_sweep.json" ] && cp "$work/mqar_sweep.json" "${OUT:?OUT is unset}/${name}_sweep.json"
      [ -f "$work/mqar.json" ] && cp "$work/mqar.json" "$OUT/${name}.json"
    done ;;
  *) echo "usage: $0 start SPEC NAME SECONDS | collect NAME [NAME ...]" >&2; exit 2 ;;
esac
