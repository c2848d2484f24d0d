#!/usr/bin/env bash
# synth-bench.sh MOLD TOKENIZER_DIR SCRATCH [CONFIG...] — times
# `mold synth --preset qwen-image-2512` one component at a time and deletes
# each output before the next (the bf16 transformer alone is 41 GB).
#
# A CONFIG is "<component>:<type>" (transformer:q4_0, text_encoder:bf16,
# vae:bf16, ...); the default list covers every supported combination.
# Prints one line per config: bytes, wall seconds (including the final fsync
# of every file), GB/s and the peak resident memory of the process.
# SCRATCH must be on the disk to measure (a tmpfs measures generation alone).
set -euo pipefail
MOLD=${1:?usage: synth-bench.sh MOLD TOKENIZER_DIR SCRATCH [CONFIG...]}
TOK=${2:?tokenizer dir}
SCRATCH=${3:?scratch dir}
shift 3
CONFIGS=("$@")
if [ ${#CONFIGS[@]} -eq 0 ]; then
  CONFIGS=(transformer:q4_0 transformer:q4_K transformer:q8_0 transformer:bf16
           text_encoder:q4_K text_encoder:q8_0 text_encoder:bf16 vae:bf16)
fi
mkdir -p "$SCRATCH"
printf "%-22s %10s %8s %7s %10s\n" config GB seconds GB/s "max RSS MB"
for c in "${CONFIGS[@]}"; do
  comp=${c%%:*}
  type=${c#*:}
  out="$SCRATCH/synth-bench"
  rm -rf "$out"
  args=(--preset qwen-image-2512 --tokenizer "$TOK" --only "$comp")
  case $comp in
    transformer) args+=(--transformer "$type") ;;
    text_encoder) args+=(--text-encoder "$type") ;;
  esac
  t0=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$SCRATCH/rss.txt" "$MOLD" synth "${args[@]}" "$out" >/dev/null 2>&1
  t1=$(date +%s.%N)
  bytes=$(du -sb "$out/$comp" | cut -f1)
  rss=$(cat "$SCRATCH/rss.txt")
  awk -v c="$c" -v b="$bytes" -v t0="$t0" -v t1="$t1" -v r="$rss" \
    'BEGIN { s = t1 - t0; printf "%-22s %10.3f %8.2f %7.2f %10.0f\n", c, b / 1e9, s, b / 1e9 / s, r / 1024 }'
  rm -rf "$out"
done
