#!/usr/bin/env bash
# End-to-end: `mold run` with GGUF component overrides on the tiny model (issue 8 acceptance).
#  - for each plan (q8_0, mixed-legacy, mixed-k): --transformer transformer-<plan>.gguf
#    --text-encoder text-encoder-<plan>.gguf with the pipeline case's prompt, size, steps and
#    noise must match gguf/pipeline-<plan>.golden.safetensors: prompt_embeds, final_latents
#    (= the trace's last latents_step) and image_float within rel 1e-4, image_u8 within 1;
#  - a model directory without tokenizer/ and text_encoder/: the tokenizer and the text config
#    come from the GGUF metadata, same golden;
#  - the hd128 model (head dim 128, 256-wide rows) with gguf-hd128's Q4_K/Q5_K/Q6_K/Q5_1 files
#    against gguf-hd128/pipeline-mixed-k.golden.safetensors (112x80, 2 steps, CFG 3);
#  - no model directory at all (hd128): --transformer/--text-encoder GGUF + --vae vae/ folder; the
#    DiT config comes from the tensor shapes, the scheduler config is the built-in published one;
#  - a truncated GGUF override fails with a message naming the file.
# usage: test_gguf_run.sh MOLD FIXTURES BUILD_DIR
set -uo pipefail
MOLD=$1 FIX=$2 BUILD=$3
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL=$FIX/qwen-image-tiny/model
CASES=$FIX/qwen-image-tiny/cases
G=$FIX/gguf
TMP=$(mktemp -d "$BUILD/e2e-gguf.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fails=0 passes=0
ok()  { echo "ok   $*"; passes=$((passes+1)); }
bad() { echo "FAIL $*"; fails=$((fails+1)); }
compare() { # TRACE GOLDEN
  python3 - "$1" "$2" <<'PY'
import math, os, sys
sys.path.insert(0, os.environ['HERE'])
from st_read import read_safetensors
t, g = read_safetensors(sys.argv[1]), read_safetensors(sys.argv[2])
steps = [k for k in t if k.startswith('latents_step')]
alias = {'final_latents': max(steps, key=lambda k: int(k[len('latents_step'):]))}
failed = 0
for k in sorted(g):
    gd, gs, gv = g[k]
    td, ts, tv = t[alias.get(k, k)]
    if list(ts) != list(gs):
        print('  FAIL %s shape %s, golden %s' % (k, ts, gs)); failed += 1; continue
    if gd == 'U8':
        mx = max(abs(a - b) for a, b in zip(tv, gv))
        print('  %-14s max |diff| %d (tol 1)' % (k, mx)); failed += mx > 1
    else:
        rel = math.sqrt(sum((a - b) ** 2 for a, b in zip(tv, gv)) / sum(b * b for b in gv))
        bad = any(not math.isfinite(a) for a in tv)
        print('  %-14s rel %.3e (tol 1e-4)' % (k, rel)); failed += bad or rel > 1e-4
sys.exit(1 if failed else 0)
PY
}
export HERE

run_case() { # NAME MODEL_DIR|"" PLAN [GGUF_DIR CASES_DIR W H STEPS CFG [EXTRA ARGS...]]
  local name=$1 dir=$2 plan=$3 gd=${4:-$G} cases=${5:-$CASES} w=${6:-96} h=${7:-64} steps=${8:-3} cfg=${9:-4}
  shift 9 2>/dev/null || shift $#
  local prompt model=()
  [ -n "$dir" ] && model=("$dir")
  prompt=$(python3 -c "import json;print(json.load(open('$cases/manifest.json'))['prompt'])")
  if "$MOLD" run "${model[@]}" "$prompt" -n " " --width "$w" --height "$h" --steps "$steps" --guidance "$cfg" \
        --noise "$cases/pipeline.safetensors" --transformer "$gd/transformer-$plan.gguf" \
        --text-encoder "$gd/text-encoder-$plan.gguf" --dump "$TMP/$name" -o "$TMP/$name.png" \
        "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"; then
    if compare "$TMP/$name/trace.safetensors" "$gd/pipeline-$plan.golden.safetensors"; then
      ok "$name"; else bad "$name: differs from the golden"; fi
  else
    cat "$TMP/$name.err"; bad "$name: mold run failed"
  fi
}

for plan in q8_0 mixed-legacy mixed-k; do run_case "gguf-$plan" "$MODEL" "$plan"; done
run_case "gguf-hd128-mixed-k" "$FIX/qwen-image-hd128/model" mixed-k "$FIX/gguf-hd128" \
  "$FIX/qwen-image-hd128/cases" 80 112 2 3
run_case "gguf-hd128-no-model-dir" "" mixed-k "$FIX/gguf-hd128" "$FIX/qwen-image-hd128/cases" \
  80 112 2 3 --vae "$FIX/qwen-image-hd128/model/vae"

# tokenizer and text config from the GGUF metadata: a model dir without tokenizer/ text_encoder/
mkdir -p "$TMP/notok"
cp -r "$MODEL/scheduler" "$MODEL/vae" "$MODEL/transformer" "$TMP/notok/"
python3 -c "
import json; d = json.load(open('$MODEL/model_index.json'))
for k in ('text_encoder', 'tokenizer'): d.pop(k, None)
json.dump(d, open('$TMP/notok/model_index.json', 'w'))"
run_case "gguf-metadata-tokenizer" "$TMP/notok" mixed-k

# a truncated GGUF override: clear error naming the file, non-zero exit
head -c 150000 "$G/transformer-q8_0.gguf" >"$TMP/cut.gguf"
out=$("$MOLD" run "$MODEL" "x" --width 32 --height 32 --steps 1 --transformer "$TMP/cut.gguf" \
      -o "$TMP/cut.png" 2>&1 >/dev/null); rc=$?
if [ $rc -ne 0 ] && grep -q "cut.gguf" <<<"$out" && grep -q "truncated" <<<"$out"; then
  ok "truncated GGUF (rc $rc): $(tail -1 <<<"$out")"
else
  bad "truncated GGUF: rc $rc, got: $out"
fi

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
