#!/usr/bin/env bash
# gpu-bench.sh BUILD OUT [STAGE ...] — full-size benchmark on a GPU machine, mold side by side
# with the diffusers baseline in the same call (issue: full-size benchmark).
#
# Stages (default: all): baseline  diffusers bf16 (scripts/perf/diffusers_baseline.py) — needs
#                                  .ref/diffusers-src.tar.xz (a git archive of diffusers' src/)
#                        q4_0      synth q4_0 transformer + q8_0 text encoder, bench, whole mold run
#                        q4_K      synth q4_K transformer + q4_K text encoder, bench
#                        bf16      synth bf16 transformer + bf16 text encoder, bench
#                        table     print the ratio table from what OUT holds
# Models are random weights at the real shapes (`mold synth`); speed does not depend on values.
# Results: OUT/diffusers.jsonl, OUT/mold.jsonl, OUT/runs.jsonl, OUT/table.txt.
set -euo pipefail
BUILD=${1:?usage: gpu-bench.sh BUILD OUT [STAGE ...]}
OUT=${2:?usage: gpu-bench.sh BUILD OUT [STAGE ...]}
shift 2
STAGES=${*:-baseline q4_0 q4_K bf16 table}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MOLD=$BUILD/mold
WORK=${MOLD_BENCH_WORK:-/tmp/mold-bench}
TOK=$BUILD/tokenizer-qwen2_5
mkdir -p "$OUT" "$WORK"

baseline() {
  local src=$WORK/diffusers
  if [ ! -d "$src/src/diffusers" ]; then mkdir -p "$src" && tar xJf "$ROOT/.ref/diffusers-src.tar.xz" -C "$src"; fi
  PYTHONUNBUFFERED=1 PYTHONPATH=$src/src python3 "$ROOT/scripts/perf/diffusers_baseline.py" \
    | tee "$OUT/diffusers.jsonl"
}

# synth_and_bench LABEL TRANSFORMER_TYPE TEXT_TYPE
synth_and_bench() {
  local label=$1 tt=$2 te=$3 dir=$WORK/model-$1
  rm -rf "$WORK"/model-*
  local t0=$(date +%s%N)
  "$MOLD" synth --preset qwen-image-2512 --transformer "$tt" --text-encoder "$te" --tokenizer "$TOK" "$dir"
  echo "synth $label: $(( ($(date +%s%N) - t0) / 1000000 )) ms, $(du -sh "$dir" | cut -f1)"
  cat "$dir"/transformer/* "$dir"/text_encoder/* >/dev/null   # warm the page cache
  # text encode of 66 and 162 templated tokens (27 / 123 prompt words + 39), as the baseline
  for run in "1024 27" "1328 123"; do
    set -- $run
    "$MOLD" bench "$dir" --device cuda --width $1 --height $1 --text-tokens 32 \
        --encode-words $2 --repeats ${MOLD_BENCH_REPEATS:-3} | tee "$WORK/bench.txt"
    tail -1 "$WORK/bench.txt" | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r['label']='$label'; print(json.dumps(r))" >>"$OUT/mold.jsonl"
  done
  if [ "$label" = "q4_0/q8_0" ]; then
    for steps in 1 4; do
      for rep in 1 2; do   # the second run is the warm one
        local t1=$(date +%s%N)
        "$MOLD" run "$dir" "a lighthouse on a cliff at night" --device cuda --width 1328 --height 1328 \
            --steps $steps --seed 1 -o "$WORK/run.png" >/dev/null
        local wall_ms=$(( ($(date +%s%N) - t1) / 1000000 ))
      done
      echo "{\"label\": \"$label\", \"side\": 1328, \"steps\": $steps, \"wall_s\": $(( wall_ms / 1000 )).$(printf %03d $(( wall_ms % 1000 )))}" | tee -a "$OUT/runs.jsonl"
    done
  fi
  rm -rf "$dir"
}

for s in $STAGES; do
  case $s in
    baseline) baseline ;;
    q4_0) synth_and_bench q4_0/q8_0 q4_0 q8_0 ;;
    q4_K) synth_and_bench q4_K/q4_K q4_K q4_K ;;
    bf16) synth_and_bench bf16/bf16 bf16 bf16 ;;
    table) python3 "$ROOT/scripts/perf/ratio_table.py" "$OUT/diffusers.jsonl" "$OUT/mold.jsonl" \
             "$OUT/runs.jsonl" | tee "$OUT/table.txt" ;;
    *) echo "gpu-bench: unknown stage '$s'"; exit 2 ;;
  esac
done
