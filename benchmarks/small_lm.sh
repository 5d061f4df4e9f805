#!/usr/bin/env bash
# The small-LM comparison (issue 13, item 4): RAM-Net, a Transformer++ (SDPA) and fla's DeltaNet at about 20M
# parameters, trained one after another by the same loop (ramnet train --task lm --arch ...), with the same byte
# tokenizer, corpus, context, batch, steps, learning rate and schedule; validation perplexity of each.
#
#   bash benchmarks/small_lm.sh                      # all three on the GPU (ramnet attention deltanet)
#   bash benchmarks/small_lm.sh attention            # some of them; results/small_lm.json keeps the others' rows
#   DEVICE=cpu SIZE=tiny STEPS=4 BATCH=2 SEQ_LEN=128 MAX_FILES=40 bash benchmarks/small_lm.sh ramnet attention
#
# Corpus: the CPython standard-library sources of the running interpreter (benchmarks/small_lm_corpus.py: one
# document per .py file in sorted path order, every 20th file held out for validation; corpus.json records the
# file counts, bytes and hashes). Default budget: 1000 steps x 32 rows x 1024 tokens = 32.8M byte tokens per model,
# bf16 autocast, AdamW lr 1e-3 (cosine to 1e-4, 50 warm-up steps), validation on the first 256 rows of 1024 tokens
# of the held-out files every 250 steps.
# Sizes (d_model 384, 6 heads): RAM-Net paper geometry (U=5, d_p=4, K=8, d_v=64, CAPE 4+4 layers) with 13 layers
# and d_ff 1024 (20.59M); Transformer++ and DeltaNet 12 layers, d_ff 960 (20.56M, 20.64M); each run prints its count.
# The GPU image has transformers but not datasets: carry datasets 5.2.0, dill 0.4.1 and multiprocess 0.70.19 as
# wheels (in .whl, next to fla's) and pip install them with --target before this script (datasets 5.2.0
# needs pyarrow >= 24 and fsspec <= 2026.9.0 from the image: check them in the first call).
# Writes benchmarks/results/small_lm.json (and, when $OUT is set, a copy plus each run's metrics.json under $OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-1000}
BATCH=${BATCH:-32}
SEQ_LEN=${SEQ_LEN:-1024}
LR=${LR:-1e-3}
PRECISION=${PRECISION:-bf16}
VAL_ROWS=${VAL_ROWS:-256}
EVAL_EVERY=${EVAL_EVERY:-250}
SIZE=${SIZE:-20m}
WORK=${WORK:-/tmp/ramnet_small_lm}
RESULTS=${RAMNET_BENCH_DIR:-benchmarks/results}
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(ramnet attention deltanet)

if [ "$SIZE" = tiny ]; then  # the CPU smoke check of this script
  ramnet_size=(--preset tiny --d-model 64 --n-layers 2 --n-heads 2 --d-ff 128)
  base_size=(--d-model 64 --n-layers 2 --n-heads 2 --d-ff 128)
else
  ramnet_size=(--preset paper-340m --d-model 384 --n-heads 6 --n-layers 13 --d-ff 1024)
  base_size=(--d-model 384 --n-heads 6 --n-layers 12 --d-ff 960)
fi

failed=0
mkdir -p "$WORK" "$RESULTS"
$PY benchmarks/small_lm_corpus.py "$WORK/corpus" ${MAX_FILES:+--max-files "$MAX_FILES"}

for arch in "${archs[@]}"; do
  case $arch in
    ramnet) size=("${ramnet_size[@]}") ;;
    attention|deltanet) size=("${base_size[@]}") ;;
    *) echo "small_lm.sh: unknown arch $arch (ramnet, attention, deltanet)" >&2; exit 2 ;;
  esac
  start=$(date +%s.%N)
  status=0
  $PY -m ramnet train --task lm --arch "$arch" "${size[@]}" \
    --data "$WORK/corpus/train.jsonl" --val-data "$WORK/corpus/val.jsonl" --tokenizer byte \
    --seq-len "$SEQ_LEN" --batch-size "$BATCH" --steps "$STEPS" --lr "$LR" --precision "$PRECISION" \
    --val-rows "$VAL_ROWS" --eval-every "$EVAL_EVERY" --device "$DEVICE" --seed 0 \
    --out "$WORK/runs/$arch" --overwrite || status=$?
  [ "$status" = 0 ] || failed=1
  $PY - "$arch" "$WORK" "$RESULTS/small_lm.json" "$start" "$(date +%s.%N)" "$status" <<'EOF'
import json, sys, time
from pathlib import Path
import torch
arch, work, path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
wall, status = float(sys.argv[5]) - float(sys.argv[4]), int(sys.argv[6])
results = json.loads(path.read_text()) if path.exists() else {"rows": []}
results["corpus"] = json.loads((work / "corpus" / "corpus.json").read_text())
metrics_path = work / "runs" / arch / "metrics.json"
row = {"model": arch, "status": status, "wall_seconds": wall,
       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
if status == 0 and metrics_path.is_file():
    m = json.loads(metrics_path.read_text())
    a = m["args"]
    row.update(params=m["parameters"], non_embedding_params=m["non_embedding_parameters"],
               val_loss=m["final_val_loss"], val_ppl=m["final_val_ppl"], final_train_loss=m["final_loss"],
               tokens=m["steps_run"] * a["batch_size"] * a["seq_len"], seconds=m["seconds"],
               tokens_per_s=m["steps_run"] * a["batch_size"] * a["seq_len"] / m["seconds"],
               device=m["device"], device_name=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
               budget={k: a[k] for k in ("steps", "batch_size", "seq_len", "lr", "min_lr_ratio", "precision",
                                         "tokenizer", "val_rows", "seed")},
               config=m["config"])
results["rows"] = [r for r in results["rows"] if r.get("model") != arch] + [row]
path.write_text(json.dumps(results, indent=2))
print(json.dumps({k: row.get(k) for k in ("model", "status", "params", "val_loss", "val_ppl", "tokens", "seconds",
                                          "tokens_per_s", "wall_seconds")}))
EOF
  if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT/small_lm"
    cp "$RESULTS/small_lm.json" "$OUT/small_lm.json"
    [ -f "$WORK/runs/$arch/metrics.json" ] && cp "$WORK/runs/$arch/metrics.json" "$OUT/small_lm/$arch.metrics.json"
  fi
done
echo "results: $RESULTS/small_lm.json"
exit $failed
