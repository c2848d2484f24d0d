#!/usr/bin/env bash
# demo.sh BUILD_DIR — `make demo`: generates an image with the bundled tiny
# model (random weights: the picture is noise-like, but every stage of the real
# pipeline runs) and prints where the PNG is.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODEL="$ROOT/tests/fixtures/qwen-image-tiny/model"
OUT="$ROOT/out"
mkdir -p "$OUT"
"$BUILD/mold" inspect "$MODEL" | head -20
png=$("$BUILD/mold" run "$MODEL" "A red fox sitting in fresh snow, 35mm photo, golden hour." \
        --width 256 --height 256 --steps 8 --seed 42 -o "$OUT/demo.png")
echo "demo image: $png"
