#!/usr/bin/env bash
# Keep an MQAR sweep running on a warm device machine between tool calls, and copy its summaries back.
#   bash benchmarks/gpu_sweep_background.sh start SPEC NAME SECONDS   # returns at once; the sweep runs on
#   bash benchmarks/gpu_sweep_background.sh collect NAME [NAME ...]   # progress, and summaries into $OUT
#   bash benchmarks/gpu_sweep_background.sh mps-start | mps-stop      # optional CUDA MPS daemon (see below)
# `start` detaches gpu_mqar_sweep.sh with setsid, so it outlives the call that started it (the machine keeps it
# until it is given back); SWEEP_PARALLEL and SWEEP_ONLY pass through to it. The summaries are rewritten after
# every run, so `collect` can run at any time; it copies NAME_sweep.json, NAME.json (and NAME_models.tar, the
# models of save_model entries, in 15 MiB pieces when larger) into $OUT, and lists the
# runs in flight (or cut off) with their last evaluation from their progress.json, and when each should end at
# its last interval's pace (flagged when that is after, or within 60 s of, the sweep's deadline), and the runs that
# finished on this machine with their accuracy and seconds. Other work (tests, timings)
# can run in the calls between; timings measured next to a sweep share the card and are not to be reported.
# MPS (opt-in, untested here): the GPU time-slices between processes; CUDA MPS may run the small kernels of
# several worker processes at once. `mps-start` (before any `start`) starts nvidia-cuda-mps-control -d with its
# pipes in /tmp/mps-pipe and logs in /tmp/mps-log, checks that a CUDA process can join it (else stops it), and
# `start` then passes CUDA_MPS_PIPE_DIRECTORY/CUDA_MPS_LOG_DIRECTORY to the sweep while /tmp/mps-pipe exists.
# Nothing here changes GPU settings (no compute mode change); without the binary the sweep runs as before.
set -u
cd "$(dirname "$0")/.."
MPS_PIPE=/tmp/mps-pipe MPS_LOG=/tmp/mps-log

mps_control() {  # the path of nvidia-cuda-mps-control, or nothing
  command -v nvidia-cuda-mps-control && return 0
  for dir in /usr/local/nvidia/bin /usr/bin; do
    [ -x "$dir/nvidia-cuda-mps-control" ] && { echo "$dir/nvidia-cuda-mps-control"; return 0; }
  done
  return 1
}

case "${1:-}" in
  start)
    spec=${2:?usage: start SPEC NAME SECONDS}; name=${3:?usage: start SPEC NAME SECONDS}; budget=${4:?seconds}
    mps_env=() mps_note=""
    if [ -d "$MPS_PIPE" ]; then
      mps_env=(CUDA_MPS_PIPE_DIRECTORY="$MPS_PIPE" CUDA_MPS_LOG_DIRECTORY="$MPS_LOG") mps_note=", under MPS"
    fi
    env -u OUT ${mps_env[@]+"${mps_env[@]}"} setsid nohup bash benchmarks/gpu_mqar_sweep.sh "$spec" "$name" \
      "$budget" > "/tmp/sweep-$name.log" 2>&1 < /dev/null &
    pid=$!
    # return once the sweep holds its work folder's lock (or has ended): a `wait` right after `start` otherwise
    # finds no lock held and returns at once (session P lost a call so)
    for _ in $(seq 120); do
      kill -0 "$pid" 2>/dev/null || break
      [ -e "/tmp/ramnet-sweep-$name/.lock" ] && ! flock -n "/tmp/ramnet-sweep-$name/.lock" true && break
      sleep 0.25
    done
    echo "started $name ($budget s budget$mps_note); log /tmp/sweep-$name.log" ;;
  collect)
    shift
    [ $# -ge 1 ] || { echo "usage: collect NAME [NAME ...]" >&2; exit 2; }
    for name in "$@"; do
      work=/tmp/ramnet-sweep-$name
      # a sweep left out of the session (0 workers) has no work folder: say so in one line, not with cd errors
      [ -d "$work" ] || { echo "$name: not started on this machine (no $work)"; continue; }
      done_runs=$(ls "$work"/runs/*/result.json 2>/dev/null | wc -l)
      failed=$(ls "$work"/runs/*/error.txt 2>/dev/null | wc -l)
      retried=$(ls "$work"/runs/*/error_oom_1.txt 2>/dev/null | wc -l)
      echo "$name: $done_runs runs with results, $failed failed, $retried retried after CUDA out of memory"
      [ "$failed" -gt 0 ] && cat "$work"/runs/*/error.txt | cut -c1-160 | sort | uniq -c
      # how the sweep itself ended (gpu_mqar_sweep.sh writes .exit): 124 is timeout's, the budget's interrupt; any
      # other failure shows with its log's error lines (session Z's sweep died on a missing fla before any run)
      exit_status=$(cat "$work/.exit" 2>/dev/null)
      case "$exit_status" in
        ''|0) ;;
        124) echo "  the sweep stopped at its budget" ;;
        130) echo "  the sweep was interrupted (SIGINT before its budget)" ;;
        137) echo "  the sweep was KILLED 30 s after its budget (it did not stop on the budget's SIGINT; its summary may lack the runs in flight)" ;;
        *) echo "  the sweep FAILED (exit status $exit_status; log /tmp/sweep-$name.log):"
           { grep -i "error" "/tmp/sweep-$name.log" 2>/dev/null || tail -n 3 "/tmp/sweep-$name.log" 2>/dev/null; } \
             | cut -c1-200 | sort | uniq -c | sort -rn | head -n 5 ;;
      esac
      python3 - "$work" <<'PY'
import json, pathlib, sys, time
work = pathlib.Path(sys.argv[1])
try:  # written by gpu_mqar_sweep.sh when the sweep started: when its budget's interrupt comes
    deadline = int((work / ".deadline").read_text())
except (OSError, ValueError):
    deadline = None
clock = lambda t: time.strftime("%H:%M:%S", time.gmtime(t))
MARGIN = 60  # s: the last evaluation and the summary's rewrite come after the last step
rows = []
for path in sorted(work.glob("runs/*/progress.json")):
    if (path.parent / "result.json").exists():
        continue
    try:
        p = json.loads(path.read_text())
    except ValueError:
        continue  # being rewritten: the next collect reads it
    acc = "-" if p.get("accuracy") is None else f"{p['accuracy']:.3f}"
    row = f"  {p['id']}: step {p['step']}/{p['total_steps']}, accuracy {acc}, {p['seconds']:.0f} s"
    history = [h for h in p.get("history") or [] if h.get("step") and h.get("seconds") is not None]
    if (path.parent / "error.txt").exists():
        row += ", failed (error.txt)"
    elif history and history[-1]["step"] < p["total_steps"]:
        # the pace of the last interval (runs slow down as others join the card), from the last evaluation (the
        # progress file's time) on
        last, before = history[-1], (history[-2] if len(history) > 1 else {"step": 0, "seconds": 0.0})
        pace = (last["seconds"] - before["seconds"]) / (last["step"] - before["step"])
        end = path.stat().st_mtime + (p["total_steps"] - last["step"]) * pace
        row += f", ends about {clock(end)} UTC"
        if deadline is not None and end > deadline - MARGIN:
            row += f": AFTER the sweep's deadline {clock(deadline)} (or within {MARGIN} s), so it may be cut off"
    rows.append(row)
print(f"  {len(rows)} unfinished (progress.json, no result)")
for row in rows:
    print(row)
# the runs that finished on this machine (run.json is written only for a run this machine starts; results
# restored from a committed summary have none): without them a run that ended between two calls goes unnamed
finished = []
for path in sorted(work.glob("runs/*/result.json")):
    if not (path.parent / "run.json").exists():
        continue
    try:
        r = json.loads(path.read_text())
        finished.append(f"  {r['id']}: accuracy {r['accuracy']:.5f}, {r['seconds']:.0f} s")
    except (ValueError, KeyError, TypeError):
        finished.append(f"  {path.parent.name}: result.json unreadable")
print(f"  {len(finished)} finished on this machine")
for row in finished:
    print(row)
PY
      [ -n "${OUT:-}" ] || { echo "OUT is unset: nothing copied" >&2; continue; }
      if [ -f "$work/mqar_sweep.json" ]; then cp "$work/mqar_sweep.json" "$OUT/${name}_sweep.json"; fi
      if [ -f "$work/mqar.json" ]; then cp "$work/mqar.json" "$OUT/${name}.json"; fi
      # the sweep's own log (short: --quiet), so that a sweep that ends oddly can be read after the machine is gone
      if [ -f "/tmp/sweep-$name.log" ]; then cp "/tmp/sweep-$name.log" "$OUT/${name}_sweep.log"; fi
      # models kept by save_model entries, one tar per sweep (for ramnet plot --slots and the interference probe
      # here). The device tool brings back files of 16 MiB at most, and one fp32 256-wide model is 21 MiB, so a
      # larger tar is left in pieces of 15 MiB, NAME_models.tar.part00-of-NN, ... (here: cat them in order)
      models=$(cd "$work" && ls -d runs/*/model 2>/dev/null)
      if [ -n "$models" ]; then
        tarfile="$OUT/${name}_models.tar"
        rm -f "$tarfile" "$tarfile".part*  # pieces of an earlier, larger tar would be joined to this one
        (cd "$work" && tar -cf "$tarfile" $models) && echo "  models: $models"
        if [ -f "$tarfile" ] && [ "$(stat -c %s "$tarfile")" -gt $((15 * 1024 * 1024)) ]; then
          # each piece's name carries the count (NAME_models.tar.part00-of-02), so a piece that did not come
          # back shows; a failed split leaves the whole tar and no pieces
          if split -b 15M -d -a 2 "$tarfile" "$tarfile.part"; then
            count=$(ls "$tarfile".part* | wc -l)
            for piece in "$tarfile".part*; do mv "$piece" "$piece-of-$(printf %02d "$count")"; done
            rm "$tarfile"
            echo "  in $count pieces: cat ${name}_models.tar.part* > ${name}_models.tar"
          else
            rm -f "$tarfile".part*
          fi
        fi
      fi
    done ;;
  mps-start)
    mps=$(mps_control) || {
      echo "nvidia-cuda-mps-control not found: MPS not started (the sweep runs without it)"; exit 0; }
    mkdir -p "$MPS_PIPE" "$MPS_LOG"
    if ! CUDA_MPS_PIPE_DIRECTORY="$MPS_PIPE" CUDA_MPS_LOG_DIRECTORY="$MPS_LOG" "$mps" -d; then
      rm -rf "$MPS_PIPE"; echo "MPS not started: $mps -d failed (the sweep runs without it)"; exit 0
    fi
    # a client must be able to join before a sweep is sent to it (in a container it may not)
    if ! CUDA_MPS_PIPE_DIRECTORY="$MPS_PIPE" CUDA_MPS_LOG_DIRECTORY="$MPS_LOG" timeout 120 python3 -c \
        "import torch; torch.ones(1, device='cuda').add_(1); torch.cuda.synchronize()" > "$MPS_LOG/check.txt" 2>&1; then
      echo quit | CUDA_MPS_PIPE_DIRECTORY="$MPS_PIPE" "$mps"; sleep 1; rm -rf "$MPS_PIPE"
      echo "MPS not in use: a CUDA process could not join the daemon (see $MPS_LOG/check.txt, $MPS_LOG/control.log)"
      exit 0
    fi
    echo "MPS daemon started; \`start\` passes it on. Other processes join it with:"
    echo "  export CUDA_MPS_PIPE_DIRECTORY=$MPS_PIPE CUDA_MPS_LOG_DIRECTORY=$MPS_LOG" ;;
  mps-stop)
    mps=$(mps_control) || { echo "nvidia-cuda-mps-control not found: no MPS daemon to stop"; exit 0; }
    if [ -d "$MPS_PIPE" ]; then
      echo quit | CUDA_MPS_PIPE_DIRECTORY="$MPS_PIPE" "$mps"; sleep 1; rm -rf "$MPS_PIPE"; echo "MPS daemon stopped"
    else
      echo "no MPS daemon started by mps-start ($MPS_PIPE is absent)"
    fi ;;
  *) echo "usage: $0 start SPEC NAME SECONDS | collect NAME [NAME ...] | mps-start | mps-stop" >&2; exit 2 ;;
esac
