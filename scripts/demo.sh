#!/usr/bin/env bash
# demo.sh BUILD_DIR — `make demo`: shows the bundled tiny model with
# `mold inspect` (image generation replaces this once the pipeline lands).
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$BUILD/mold" inspect "$ROOT/tests/fixtures/qwen-image-tiny/model"
