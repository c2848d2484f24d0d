#!/usr/bin/env bash
# gpu-plan-check.sh BUNDLE OUT — the planner on a GPU machine (DESIGN.md principles 1-2):
#   A. tiny model on CUDA: batched vs sequential CFG traces; the text encoder on the host CPU
#      (--batch 2 keeps weights resident, a --memory-budget leaves no room on the device);
#   B. the full-size model (random weights from `mold synth`, q4_0 transformer + q8_0 text
#      encoder) at 1024x1024, 2 steps, under several --memory-budget values: the plan chosen,
#      and after each stage the device peak measured (memory_stats) next to the predicted one.
# BUNDLE comes from scripts/build-gpu.sh. Writes OUT/plan-check.txt (plans and checks) and
# OUT/*.log (each run's stderr).
set -uo pipefail
BUNDLE=${1:?usage: gpu-plan-check.sh BUNDLE OUT}
OUT=${2:?usage: gpu-plan-check.sh BUNDLE OUT}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
G=/tmp/mold-plan-gpu
WORK=${MOLD_PLAN_WORK:-/tmp/mold-plan-work}
mkdir -p "$OUT" "$WORK"
eval "$(bash "$ROOT/scripts/gpu-env.sh" "$BUNDLE" "$G")"
MOLD=$G/mold
TINY=$ROOT/tests/fixtures/qwen-image-tiny/model
CASES=$ROOT/tests/fixtures/qwen-image-tiny/cases
SUM=$OUT/plan-check.txt
: >"$SUM"
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader >>"$SUM"

# summary LABEL LOG: the plan's decisions and the check lines
summary() {
  echo "== $1" >>"$SUM"
  python3 - "$2" >>"$SUM" <<'EOF'
import json, sys
for l in open(sys.argv[1]):
    if " plan {" in l:
        p = json.loads(l.split(" plan ", 1)[1])
        c = p["components"]
        print("plan: budget %.2f GiB, cfg %s, vae %s, %s" % (
            p["budget"] / 2**30, p["cfg"], p["vae"].get("tile", "full"),
            ", ".join("%s %s %s %.2f GiB" % (k, v["on"], v["live"], v["bytes"] / 2**30)
                      for k, v in c.items())))
        print("      predicted peaks: " + ", ".join("%s %.3f" % (k, v["peak"] / 2**30)
                                                    for k, v in p["stages"].items()))
    elif "plan check" in l or "unloaded" in l or "loaded text encoder" in l or "error" in l.lower():
        print("      " + l.split("] ", 1)[-1].strip())
EOF
}

# ---- A. tiny model ----
PROMPT=$(python3 -c "import json;print(json.load(open('$CASES/manifest.json'))['prompt'])")
golden() { "$MOLD" run "$TINY" "$PROMPT" -n " " --width 96 --height 64 --steps 3 --guidance 4 \
             --noise "$CASES/pipeline.safetensors" --device cuda --no-metadata "$@"; }
golden --dump "$WORK/b2" -o "$WORK/b2.png" >/dev/null 2>"$OUT/tiny-b2.log"
golden --cfg-batch 1 --dump "$WORK/b1" -o "$WORK/b1.png" >/dev/null 2>"$OUT/tiny-b1.log"
summary "tiny cuda, default" "$OUT/tiny-b2.log"
summary "tiny cuda, --cfg-batch 1" "$OUT/tiny-b1.log"
echo "-- sequential vs batched CFG on CUDA:" >>"$SUM"
python3 "$ROOT/tests/e2e/compare_trace.py" "$WORK/b1/trace.safetensors" "$WORK/b2/trace.safetensors" \
  --rel 1e-3 --u8-max 1 >>"$SUM" 2>&1
echo "-- CUDA batched vs the diffusers golden:" >>"$SUM"
python3 "$ROOT/tests/e2e/compare_trace.py" "$WORK/b2/trace.safetensors" "$CASES/pipeline.safetensors" \
  --rel 2e-2 --u8-max 8 | tail -1 >>"$SUM" 2>&1
# text encoder on the host: room for everything but it on the device, weights kept (--batch 2)
B=$(python3 - "$OUT/tiny-b2.log" <<'EOF'
import json, sys
p = [json.loads(l.split(" plan ", 1)[1]) for l in open(sys.argv[1]) if " plan {" in l][0]
te = p["components"]["text_encoder"]["bytes"]
print(max(s["peak"] for s in p["stages"].values()) - te)
EOF
)
golden --memory-budget "$B" --batch 2 -o "$WORK/host.png" >/dev/null 2>"$OUT/tiny-host.log"
summary "tiny cuda, --memory-budget $B --batch 2 (text encoder on the host?)" "$OUT/tiny-host.log"
python3 - "$WORK/b2.png" "$WORK/host-0.png" >>"$SUM" 2>&1 <<EOF
import sys
sys.path.insert(0, "$ROOT/tests/e2e")
from st_read import read_png
a, b = read_png(sys.argv[1])[2], read_png(sys.argv[2])[2]
print("-- host text encoder vs device text encoder image: max |diff| %d, mean %.4f" %
      (max(abs(x - y) for x, y in zip(a, b)), sum(abs(x - y) for x, y in zip(a, b)) / len(a)))
EOF

# ---- B. full size ----
M=$WORK/model-q4
rm -rf "$M"
t0=$(date +%s)
"$MOLD" synth --preset qwen-image-2512 --transformer q4_0 --text-encoder q8_0 \
  --tokenizer "$G/tokenizer-qwen2_5" "$M" >/dev/null 2>"$OUT/synth.log" || { cat "$OUT/synth.log"; exit 1; }
echo "synth q4_0 + q8_0: $(( $(date +%s) - t0 )) s, $(du -sh "$M" | cut -f1)" >>"$SUM"
cat "$M"/transformer/* "$M"/text_encoder/* >/dev/null
full() { "$MOLD" run "$M" "a lighthouse on a cliff at night, oil painting" --device cuda \
           --width 1024 --height 1024 --steps 2 --seed 3 --no-metadata -o "$WORK/full.png" "$@"; }
for budget in "" 16G 12G; do
  log=$OUT/full-${budget:-free}.log
  t0=$(date +%s%N)
  if [ -n "$budget" ]; then full --memory-budget "$budget" >/dev/null 2>"$log"
  else full >/dev/null 2>"$log"; fi
  rc=$?
  summary "full 1024x1024 q4_0+q8_0, budget ${budget:-device} (rc $rc, $(( ($(date +%s%N) - t0) / 1000000 )) ms)" "$log"
done
log=$OUT/full-16G-batch2.log
full --memory-budget 16G --batch 2 >/dev/null 2>"$log"
summary "full 1024x1024, budget 16G, --batch 2 (keep resident)" "$log"
rm -rf "$M"
cat "$SUM"
