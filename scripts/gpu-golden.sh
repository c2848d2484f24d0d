#!/usr/bin/env bash
# gpu-golden.sh DIR OUT — the golden checks of the CUDA backend on a GPU machine, with binaries
# from scripts/build-gpu.sh unpacked in DIR (scripts/gpu-env.sh):
#   1. module goldens (test_dit, test_vae) with MOLD_TEST_BACKEND=cuda (bf16 tolerances);
#   2. the tiny and hd128 pipeline cases through `mold run --device cuda`: every intermediate
#      rel <= 1e-2, image_u8 max |diff| <= 8 and mean <= 1.0;
#   3. compute-sanitizer memcheck on the tiny pipeline run.
set -uo pipefail
DIR=$1 OUT=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FIX=$ROOT/tests/fixtures
fail=0
export MOLD_TEST_BACKEND=cuda MOLD_TEST_FIXTURES=$FIX MOLD_TEST_BUILD_DIR=/tmp
for t in "$DIR"/test_*; do
  "$t" >"$OUT/$(basename "$t").log" 2>&1 && echo "ok   $(basename "$t") on cuda" \
    || { echo "FAIL $(basename "$t")"; tail -20 "$OUT/$(basename "$t").log"; fail=1; }
done
pipeline() { # NAME [extra mold args]
  local name=$1; shift
  local c=$FIX/$name/cases m=$FIX/$name/model
  local args
  args=$(python3 -c "
import json; m = json.load(open('$c/manifest.json'))
print(m['height'], m['width'], m['steps'], m['true_cfg_scale'])")
  set -- $args "$@"
  local prompt neg
  prompt=$(python3 -c "import json; print(json.load(open('$c/manifest.json'))['prompt'])")
  neg=$(python3 -c "import json; print(json.load(open('$c/manifest.json'))['negative_prompt'])")
  "$DIR/mold" run "$m" "$prompt" -n "$neg" --height $1 --width $2 --steps $3 --guidance $4 \
      --noise "$c/pipeline.safetensors" --dump "/tmp/dump-$name" --device cuda -o "/tmp/$name.png" \
      >/dev/null 2>"$OUT/run-$name.log" || { echo "FAIL mold run $name"; cat "$OUT/run-$name.log"; return 1; }
  python3 "$ROOT/tests/e2e/compare_trace.py" "/tmp/dump-$name/trace.safetensors" "$c/pipeline.safetensors" \
      --rel 1e-2 --u8-max 8 --u8-mean 1.0 | tee "$OUT/pipeline-$name.txt" | tail -4
}
pipeline qwen-image-tiny || fail=1
pipeline qwen-image-hd128 || fail=1
if command -v compute-sanitizer >/dev/null; then
  c=$FIX/qwen-image-tiny/cases
  compute-sanitizer --tool memcheck --error-exitcode 9 "$DIR/mold" run "$FIX/qwen-image-tiny/model" \
      "a fox" --width 96 --height 64 --steps 2 --device cuda --seed 1 -o /tmp/san.png \
      >"$OUT/memcheck.log" 2>&1 && echo "ok   compute-sanitizer memcheck: $(grep -c 'Invalid\|ERROR SUMMARY: [1-9]' "$OUT/memcheck.log") errors ($(tail -1 "$OUT/memcheck.log"))" \
    || { echo "FAIL compute-sanitizer"; tail -30 "$OUT/memcheck.log"; fail=1; }
fi
exit $fail
