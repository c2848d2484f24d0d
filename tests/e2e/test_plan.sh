#!/usr/bin/env bash
# End-to-end tests of the planner's decisions carried out by `mold run` (tiny model, CPU):
#  - the plan is logged as one JSON line, and every stage's predicted peak fits its budget;
#  - CFG as two forwards of one (--cfg-batch 1) gives the batched run's trace within 1e-5
#    relative (latents, velocities, decoded image) on the golden pipeline case;
#  - a --memory-budget with no room for the text encoder beside the transformer makes the
#    plan free it after the encode, and the image is byte-identical to the unconstrained one;
#  - a budget below a whole-image decode makes the plan tile the VAE (384x384, latent 48);
#  - a budget that fits nothing fails with the planner's message;
#  - --batch 2 (keep resident): the second image skips the encode stage (prompt cache) and
#    nothing is loaded twice.
# usage: test_plan.sh MOLD FIXTURES BUILD_DIR
set -uo pipefail
MOLD=$1 FIX=$2 BUILD=$3
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL=$FIX/qwen-image-tiny/model
CASES=$FIX/qwen-image-tiny/cases
TMP=$(mktemp -d "$BUILD/e2e-plan.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fails=0 passes=0
ok()   { echo "ok   $*"; passes=$((passes+1)); }
bad()  { echo "FAIL $*"; fails=$((fails+1)); }

# plan_field LOG N EXPR: evaluates EXPR (python, `p` = the N-th plan JSON of LOG, 1-based)
plan_field() {
  python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
log, n, expr = sys.argv[1], int(sys.argv[2]), sys.argv[3]
plans = [json.loads(l.split(" plan ", 1)[1]) for l in open(log) if " plan {" in l]
p = plans[n - 1]
print(eval(expr))
EOF
}

# every plan of LOG: one line each, peaks within the budget
plans_fit() {
  python3 - "$1" <<'EOF'
import json, sys
n = 0
for l in open(sys.argv[1]):
    if " plan {" not in l:
        continue
    p = json.loads(l.split(" plan ", 1)[1])
    for name, s in p["stages"].items():
        assert s["peak"] <= p["budget"], (name, s["peak"], p["budget"])
    n += 1
assert n > 0, "no plan line"
print("%d plan(s), peaks within budget" % n)
EOF
}

PROMPT=$(python3 -c "import json;print(json.load(open('$CASES/manifest.json'))['prompt'])")
golden() { "$MOLD" run "$MODEL" "$PROMPT" -n " " --width 96 --height 64 --steps 3 --guidance 4 \
             --noise "$CASES/pipeline.safetensors" --no-metadata "$@"; }

# 1. batched vs sequential CFG on the golden case
if golden --dump "$TMP/b2" -o "$TMP/b2.png" >/dev/null 2>"$TMP/b2.log" \
   && golden --cfg-batch 1 --dump "$TMP/b1" -o "$TMP/b1.png" >/dev/null 2>"$TMP/b1.log"; then
  [ "$(plan_field "$TMP/b2.log" 1 'p["cfg"]')" = batch2 ] && ok "default plan: cfg batch2" \
    || bad "default plan: cfg $(plan_field "$TMP/b2.log" 1 'p["cfg"]')"
  [ "$(plan_field "$TMP/b1.log" 1 'p["cfg"]')" = sequential ] && ok "--cfg-batch 1: cfg sequential" \
    || bad "--cfg-batch 1: cfg $(plan_field "$TMP/b1.log" 1 'p["cfg"]')"
  plans_fit "$TMP/b2.log" >/dev/null && ok "plan JSON parses, peaks fit" || bad "plan JSON / peaks"
  if python3 "$HERE/compare_trace.py" "$TMP/b1/trace.safetensors" "$TMP/b2/trace.safetensors" \
       --rel 1e-5 --u8-max 1; then ok "sequential CFG == batched CFG (rel 1e-5, u8 +-1)"
  else bad "sequential CFG differs from batched"; fi
  python3 "$HERE/compare_trace.py" "$TMP/b1/trace.safetensors" "$CASES/pipeline.safetensors" \
    --rel 1e-4 --u8-max 1 >/dev/null && ok "sequential CFG matches the diffusers golden" \
    || bad "sequential CFG vs golden"
else
  cat "$TMP/b2.log" "$TMP/b1.log"; bad "golden runs failed"
fi

# 2. a budget with room for each stage's own weights only (the VAE dominates the tiny model:
#    the decode must run without the text encoder and the transformer)
if golden -o "$TMP/free.png" >/dev/null 2>"$TMP/free.log"; then
  BUDGET=$(python3 - "$TMP/free.log" <<'EOF'
import json, sys
p = [json.loads(l.split(" plan ", 1)[1]) for l in open(sys.argv[1]) if " plan {" in l][0]
c, s = p["components"], p["stages"]
te, dit, vae = (c[k]["bytes"] for k in ("text_encoder", "transformer", "vae"))
# each stage alone: its own weights (and the VAE's)
enc = s["encode"]["peak"] - dit
den = s["denoise"]["peak"] - te
dec = s["decode"]["peak"] - te - dit
print(max(enc, den, dec))
EOF
)
  if golden --memory-budget "$BUDGET" -o "$TMP/tight.png" >/dev/null 2>"$TMP/tight.log"; then
    live=$(plan_field "$TMP/tight.log" 1 'p["components"]["text_encoder"]["live"]')
    [ "$live" = "E--" ] && ok "budget $BUDGET: text encoder live $live" || bad "budget $BUDGET: text encoder live $live"
    dlive=$(plan_field "$TMP/tight.log" 1 'p["components"]["transformer"]["live"]')
    [ "${dlive:2:1}" = "-" ] && ok "budget $BUDGET: transformer live $dlive" || bad "transformer live $dlive"
    grep -q "unloaded text encoder" "$TMP/tight.log" && grep -q "unloaded transformer" "$TMP/tight.log" \
      && ok "text encoder and transformer unloaded" || bad "no unloads logged"
    plans_fit "$TMP/tight.log" >/dev/null && ok "tight plan peaks fit" || bad "tight plan peaks"
    cmp -s "$TMP/free.png" "$TMP/tight.png" && ok "tight budget: identical PNG" || bad "tight budget: PNG differs"
  else
    cat "$TMP/tight.log"; bad "tight budget run failed"
  fi
else
  cat "$TMP/free.log"; bad "unconstrained run failed"
fi

# 3. tiled decode when the whole image does not fit (384x384: latent 48 > the 32 minimum tile)
big() { "$MOLD" run "$MODEL" "a lighthouse" --width 384 --height 384 --steps 1 --seed 5 \
          --no-metadata "$@"; }
if big -o "$TMP/big.png" >/dev/null 2>"$TMP/big.log"; then
  BUDGET=$(python3 - "$TMP/big.log" <<'EOF'
import json, sys
p = [json.loads(l.split(" plan ", 1)[1]) for l in open(sys.argv[1]) if " plan {" in l][0]
s = p["stages"]
# above every other stage, below the whole decode
print(max(s["encode"]["peak"], s["denoise"]["peak"], s["decode"]["peak"] - s["decode"]["ws"] // 2))
EOF
)
  if big --memory-budget "$BUDGET" -o "$TMP/tiled.png" >/dev/null 2>"$TMP/tiled.log"; then
    mode=$(plan_field "$TMP/tiled.log" 1 'p["vae"]["mode"]')
    tile=$(plan_field "$TMP/tiled.log" 1 'p["vae"].get("tile", 0)')
    [ "$mode" = tiled ] && [ "$tile" -ge 32 ] && [ "$tile" -lt 48 ] \
      && ok "budget $BUDGET: VAE tiled, tile $tile" || bad "budget $BUDGET: VAE $mode tile $tile"
    plans_fit "$TMP/tiled.log" >/dev/null && ok "tiled plan peaks fit" || bad "tiled plan peaks"
  else
    cat "$TMP/tiled.log"; bad "tiled budget run failed"
  fi
else
  cat "$TMP/big.log"; bad "384x384 run failed"
fi

# 4. nothing fits: the planner's error, exit 1
if golden --memory-budget 100K -o "$TMP/none.png" >/dev/null 2>"$TMP/none.log"; then
  bad "100K budget succeeded"
else
  grep -q "does not fit: the .* stage needs .* short by" "$TMP/none.log" \
    && ok "100K budget: $(grep -o 'plan: [a-z_]* does not fit: the [a-z]* stage' "$TMP/none.log")" \
    || { cat "$TMP/none.log"; bad "100K budget: unexpected message"; }
  [ -e "$TMP/none.png" ] && bad "an image was written" || ok "no image written"
fi

# 5. --batch 2: the second request finds its prompts cached and the weights resident
if "$MOLD" run "$MODEL" "a lighthouse" --width 64 --height 48 --steps 1 --seed 9 --batch 2 \
     -o "$TMP/batch.png" >/dev/null 2>"$TMP/batch.log"; then
  second=$(plan_field "$TMP/batch.log" 2 '"encode" in p["stages"]')
  [ "$second" = False ] && ok "second image: no encode stage" || bad "second image encodes again"
  for comp in "text encoder" transformer VAE; do
    n=$(grep -c "loaded $comp in" "$TMP/batch.log")
    [ "$n" = 1 ] && ok "--batch 2: $comp loaded once" || bad "--batch 2: $comp loaded $n times"
  done
  grep -q "unloaded" "$TMP/batch.log" && bad "--batch 2 unloaded something" || ok "--batch 2: nothing unloaded"
else
  cat "$TMP/batch.log"; bad "--batch 2 run failed"
fi

# 6. bad values name the option
"$MOLD" run "$MODEL" x --cfg-batch 3 2>"$TMP/e1" >/dev/null && bad "--cfg-batch 3 accepted" \
  || { grep -q -- "--cfg-batch" "$TMP/e1" && ok "--cfg-batch 3 rejected" || bad "--cfg-batch 3 message"; }
"$MOLD" run "$MODEL" x --memory-budget 12Q 2>"$TMP/e2" >/dev/null && bad "--memory-budget 12Q accepted" \
  || { grep -q -- "--memory-budget" "$TMP/e2" && ok "--memory-budget 12Q rejected" || bad "--memory-budget message"; }
"$MOLD" run "$MODEL" x --guidance 1 --cfg-batch 2 2>"$TMP/e3" >/dev/null && bad "--cfg-batch 2 without cfg accepted" \
  || { grep -q "cfg_batch" "$TMP/e3" && ok "--cfg-batch 2 without cfg rejected" || bad "--cfg-batch 2 message"; }

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
