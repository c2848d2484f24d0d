#!/usr/bin/env bash
# End-to-end tests of `mold run` on the bundled tiny model:
#  - the golden pipeline case through the real binary (--noise, --dump) against diffusers;
#  - same seed twice, and --threads 1 vs 2, give byte-identical PNGs;
#  - the PNG metadata reads back with an independent reader and holds the request;
#  - every validation error exits non-zero with a message naming the parameter.
# usage: test_run.sh MOLD FIXTURES BUILD_DIR
set -uo pipefail
MOLD=$1 FIX=$2 BUILD=$3
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL=$FIX/qwen-image-tiny/model
CASES=$FIX/qwen-image-tiny/cases
TMP=$(mktemp -d "$BUILD/e2e-run.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fails=0 passes=0
ok()   { echo "ok   $*"; passes=$((passes+1)); }
bad()  { echo "FAIL $*"; fails=$((fails+1)); }

PROMPT=$(python3 -c "import json;print(json.load(open('$CASES/manifest.json'))['prompt'])")

# 1. golden pipeline
if "$MOLD" run "$MODEL" "$PROMPT" -n " " --width 96 --height 64 --steps 3 --guidance 4 \
      --noise "$CASES/pipeline.safetensors" --dump "$TMP/dump" -o "$TMP/golden.png" \
      >"$TMP/run.out" 2>"$TMP/run.err"; then
  if python3 "$HERE/compare_trace.py" "$TMP/dump/trace.safetensors" "$CASES/pipeline.safetensors" \
       --rel 1e-4 --u8-max 1; then ok "golden pipeline"; else bad "golden pipeline"; fi
else
  cat "$TMP/run.err"; bad "golden pipeline: mold run failed"
fi

# 1b. the hd128 pipeline case (head dim 128, real RoPE axes, odd 7x5 token grid, CFG 3)
H=$FIX/qwen-image-hd128
read -r HH HW HS HG < <(python3 -c "
import json; m = json.load(open('$H/cases/manifest.json')); print(m['height'], m['width'], m['steps'], m['true_cfg_scale'])")
HP=$(python3 -c "import json;print(json.load(open('$H/cases/manifest.json'))['prompt'])")
HN=$(python3 -c "import json;print(json.load(open('$H/cases/manifest.json'))['negative_prompt'])")
if "$MOLD" run "$H/model" "$HP" -n "$HN" --height "$HH" --width "$HW" --steps "$HS" --guidance "$HG" \
      --noise "$H/cases/pipeline.safetensors" --dump "$TMP/dump128" -o "$TMP/hd128.png" >/dev/null 2>"$TMP/run128.err" \
   && python3 "$HERE/compare_trace.py" "$TMP/dump128/trace.safetensors" "$H/cases/pipeline.safetensors" \
        --rel 1e-4 --u8-max 1; then ok "golden pipeline hd128"; else cat "$TMP/run128.err"; bad "golden pipeline hd128"; fi

# 2. determinism: same seed twice; 1 vs 2 threads
run_seed() { "$MOLD" run "$MODEL" "a lighthouse" --width 64 --height 48 --steps 2 --seed 1234 \
               --no-metadata "$@" 2>>"$TMP/det.err"; }
run_seed -o "$TMP/a.png" >/dev/null && run_seed -o "$TMP/b.png" >/dev/null \
  && run_seed --threads 1 -o "$TMP/t1.png" >/dev/null && run_seed --threads 2 -o "$TMP/t2.png" >/dev/null
if [ $? -ne 0 ]; then cat "$TMP/det.err"; bad "determinism runs failed"
else
  cmp -s "$TMP/a.png" "$TMP/b.png" && ok "same seed twice: identical PNG" || bad "same seed twice differs"
  cmp -s "$TMP/t1.png" "$TMP/t2.png" && ok "--threads 1 vs 2: identical PNG" || bad "--threads 1 vs 2 differ"
  "$MOLD" run "$MODEL" "a lighthouse" --width 64 --height 48 --steps 2 --seed 1235 --no-metadata \
     -o "$TMP/c.png" >/dev/null 2>&1
  cmp -s "$TMP/a.png" "$TMP/c.png" && bad "different seeds gave the same image" || ok "different seed differs"
fi

# 3. metadata through an independent reader
"$MOLD" run "$MODEL" "un renard roux — 狐" -n "blurry" --width 48 --height 32 --steps 1 \
   --guidance 2.5 --seed 77 -o "$TMP/meta.png" >/dev/null 2>"$TMP/meta.err" || { cat "$TMP/meta.err"; bad "metadata run"; }
if python3 -c "
import json, sys
sys.path.insert(0, '$HERE')
from st_read import read_png
w, h, px, t = read_png('$TMP/meta.png')
assert (w, h) == (48, 32), (w, h)
assert len(px) == 48 * 32 * 3
want = {'mold:prompt': 'un renard roux — 狐', 'mold:negative_prompt': 'blurry', 'mold:seed': '77',
        'mold:steps': '1', 'mold:guidance': '2.5', 'mold:width': '48', 'mold:height': '32',
        'mold:model': 'qwen-image-tiny'}
for k, v in want.items():
    assert t.get(k) == v, (k, t.get(k), v)
assert 'mold:version' in t
p = json.loads(t['mold:parameters'])
assert p['prompt'] == want['mold:prompt'] and p['seed'] == 77 and p['steps'] == 1, p
assert abs(p['guidance'] - 2.5) < 1e-9 and p['width'] == 48 and p['height'] == 32, p
print('  metadata:', {k: t[k] for k in sorted(t) if k != 'mold:parameters'})
"; then ok "PNG metadata reads back"; else bad "PNG metadata"; fi

# 4. -o - writes the PNG to stdout
"$MOLD" run "$MODEL" "a cat" --width 32 --height 32 --steps 1 --seed 5 -o - >"$TMP/stdout.png" 2>/dev/null \
  && python3 -c "
import sys; sys.path.insert(0, '$HERE')
from st_read import read_png
w, h, px, t = read_png('$TMP/stdout.png'); assert (w, h) == (32, 32)" \
  && ok "-o - writes a PNG to stdout" || bad "-o - stdout PNG"

# 5. --batch K: K files, seeds S..S+K-1; image i equals a single run with seed S+i
if ("$MOLD" run "$MODEL" "a lighthouse" --width 64 --height 48 --steps 2 --seed 1234 \
      --batch 2 --no-metadata -o "$TMP/batch.png" >"$TMP/batch.out" 2>"$TMP/batch.err"); then
  grep -q "seed: 1235" "$TMP/batch.err" && cmp -s "$TMP/batch-0.png" "$TMP/a.png" \
    && [ -f "$TMP/batch-1.png" ] && ! cmp -s "$TMP/batch-1.png" "$TMP/a.png" \
    && "$MOLD" run "$MODEL" "a lighthouse" --width 64 --height 48 --steps 2 --seed 1235 --no-metadata \
         -o "$TMP/s1235.png" >/dev/null 2>&1 && cmp -s "$TMP/batch-1.png" "$TMP/s1235.png" \
    && ok "--batch 2: seeds 1234 and 1235, each equal to its single run" || bad "--batch 2"
else cat "$TMP/batch.err"; bad "--batch run failed"; fi

# 6. validation errors: exit code != 0 and a message naming the parameter
expect_error() { # NEEDLE ARGS...
  local needle=$1; shift
  local out rc
  out=$("$MOLD" run "$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -ne 0 ] && grep -qi -- "$needle" <<<"$out"; then ok "error '$needle' (rc $rc): $(head -1 <<<"$out")"
  else bad "expected error '$needle', rc $rc, got: $out"; fi
}
expect_error "width" "$MODEL" "x" --width 100 --height 64
expect_error "height" "$MODEL" "x" --width 64 --height 72
expect_error "1.8 MP" "$MODEL" "x" --width 1600 --height 1200
expect_error "steps" "$MODEL" "x" --steps 0
expect_error "steps" "$MODEL" "x" --steps 101
expect_error "guidance" "$MODEL" "x" --guidance -1
expect_error "guidance" "$MODEL" "x" --guidance 101
expect_error "guidance" "$MODEL" "x" --guidance abc
expect_error "prompt" "$MODEL" "$(head -c 77001 /dev/zero | tr '\0' 'a')"
expect_error "/nonexistent-model" /nonexistent-model "x"
mkdir -p "$TMP/incomplete" && cp -r "$MODEL"/model_index.json "$MODEL"/transformer "$MODEL"/scheduler "$TMP/incomplete/"
expect_error "missing" "$TMP/incomplete" "x" --width 32 --height 32 --steps 1
expect_error "unknown option" "$MODEL" "x" --bogus
expect_error "seed: expected 0..9007199254740991" "$MODEL" "x" --width 32 --height 32 --steps 1 --seed 9007199254740991 --batch 2 -o "$TMP/seed.png"

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
