#!/usr/bin/env bash
# gpu-profile.sh DIR OUT [TRANSFORMER TEXT_ENCODER] — where the time of a whole
# 1328 x 1328 generation goes, op by op (MOLD_CUDA_PROFILE=1, src/backend/cuda/profile.cu).
# DIR: an unpacked scripts/build-gpu.sh bundle (scripts/gpu-env.sh on LD_LIBRARY_PATH).
# Writes OUT/profile-<types>.txt: the per-op table of one `mold run` (1 step, CFG: one DiT
# forward on a batch of two, one VAE decode) after a warm-up run; random weights at the real
# shapes from `mold synth` (speed does not depend on values).
set -euo pipefail
G=$1 OUT=$2 TT=${3:-q4_0} TE=${4:-q8_0}
W=${MOLD_BENCH_WORK:-/tmp/mold-profile}
rm -rf "$W" && mkdir -p "$W" "$OUT"
"$G/mold" synth --preset qwen-image-2512 --transformer "$TT" --text-encoder "$TE" \
    --tokenizer "$G/tokenizer-qwen2_5" "$W/m" >"$W/synth.log" 2>&1 || { tail -5 "$W/synth.log"; exit 1; }
cat "$W"/m/transformer/* "$W"/m/text_encoder/* >/dev/null
args=("$W/m" "a lighthouse on a cliff at night" --device cuda --width 1328 --height 1328 --steps 1 --seed 1)
"$G/mold" run "${args[@]}" -o "$W/warm.png" >/dev/null 2>&1
MOLD_CUDA_PROFILE=1 "$G/mold" run "${args[@]}" -o "$W/p.png" >"$W/run.log" 2>"$OUT/profile-$TT-$TE.txt"
grep -A40 "cuda profile" "$OUT/profile-$TT-$TE.txt" | head -45
rm -rf "$W"
