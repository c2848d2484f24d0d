#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD for SECONDS each, seeded from
# tests/fuzz/corpus/<name>/ when present. Any crash, leak or sanitizer report
# fails the run.
set -euo pipefail
BUILD=${1:-build-fuzz}
SECONDS_EACH=${2:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# Fixture paths for targets that load one (absolute: the cwd may be anywhere).
export MOLD_FUZZ_TOKENIZER=${MOLD_FUZZ_TOKENIZER:-$ROOT/tests/fixtures/qwen-image-tiny/model/tokenizer}
fail=0
n=0
for f in "$BUILD"/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f")
  work="$BUILD/corpus-$name"
  mkdir -p "$work"
  seeds=()
  [ -d "$ROOT/tests/fuzz/corpus/$name" ] && seeds+=("$ROOT/tests/fuzz/corpus/$name")
  echo "fuzz: $name for ${SECONDS_EACH}s"
  if ! "$f" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$BUILD/$name-" "$work" "${seeds[@]}" >"$BUILD/$name.log" 2>&1; then
    echo "fuzz: $name FAILED; see $BUILD/$name.log"; tail -40 "$BUILD/$name.log"; fail=1
  else
    grep -E "^(#[0-9]+|Done)" "$BUILD/$name.log" | tail -1
  fi
  n=$((n+1))
done
echo "fuzz: $n targets run"
exit $fail
