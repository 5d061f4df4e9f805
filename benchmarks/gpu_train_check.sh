#!/usr/bin/env bash
# GPU acceptance for training: the GPU tests of the model package (bf16/fp16 vs fp32), then the README's GPU MQAR
# recipe and variants side by side on one card (small runs share it well). Summary: $OUT/train_check.json.
#   usage (device tool): bash benchmarks/gpu_train_check.sh [variant ...]   variants: NAME="extra flags"
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" runs
python3 -m pip install -q --no-build-isolation --no-deps -e . >/dev/null 2>&1 || { echo "install failed"; exit 1; }
python3 -m pytest -q -p no:cacheprovider tests/model -m gpu -rA 2>&1 | tail -8
BASE="--task mqar --preset mqar-small --seq-len 256 --num-kv-pairs 64 --vocab-size 8192 --device cuda"
declare -A VARIANTS=([recipe-bf16]="--precision bf16")
for v in "$@"; do VARIANTS[${v%%=*}]="${v#*=}"; done
for name in "${!VARIANTS[@]}"; do
  ( start=$(date +%s)
    python3 -m ramnet train $BASE ${VARIANTS[$name]} --out runs/$name --overwrite >"$OUT/$name.log" 2>&1
    echo "$name rc=$? wall_s=$(( $(date +%s) - start ))" >>"$OUT/walls.txt" ) &
done
wait
python3 - "$OUT" "${!VARIANTS[@]}" <<'PY'
import json, sys
out, names = sys.argv[1], sys.argv[2:]
walls = dict(line.split(" ", 1) for line in open(f"{out}/walls.txt").read().splitlines())
summary = {}
for n in names:
    try:
        m = json.load(open(f"runs/{n}/metrics.json"))
        summary[n] = {"final": m["final_accuracy"], "best": m["best_accuracy"], "steps": m["steps_run"],
                      "train_s": round(m["seconds"], 1), "wall": walls.get(n), "train": m["train"],
                      "history": [(h["step"], round(h["accuracy"], 4), round(h["seconds"], 1)) for h in m["history"]]}
    except Exception as e:
        summary[n] = {"error": repr(e), "wall": walls.get(n), "log_tail": open(f"{out}/{n}.log").read()[-600:]}
    print(n, {k: v for k, v in summary[n].items() if k not in ("train", "history")})
    print("   ", summary[n].get("history"))
json.dump(summary, open(f"{out}/train_check.json", "w"), indent=1)
PY
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -c "import torch, triton, transformers; print(torch.__version__, triton.__version__, transformers.__version__)"
