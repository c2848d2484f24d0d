#!/usr/bin/env bash
# build-gpu.sh DEST — builds the CUDA mold binary for the GPU machine on this
# machine and packs it with what it needs there into DEST/mold-gpu.tar.xz:
#   mold (stripped; third-party libraries static, see MOLD_STATIC_DEPS),
#   libspng.so.0 (Debian ships no static libspng; found via the $ORIGIN rpath),
#   tokenizer-qwen2_5/ (for `mold synth` of the full-size model).
# On the GPU machine: mkdir -p /tmp/g && tar xJf DEST/mold-gpu.tar.xz -C /tmp/g
# then run /tmp/g/mold (libcublasLt.so.13 comes from the machine's CUDA).
set -euo pipefail
DEST=${1:?usage: build-gpu.sh DEST_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/build-gpu
cmake -S "$ROOT" -B "$B" -DMOLD_CUDA=ON -DMOLD_STATIC_DEPS=ON -DMOLD_TESTS=OFF \
      -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$B" -j"$(nproc)" --target mold
bash "$ROOT/scripts/fetch-tokenizer.sh" "$B" >/dev/null
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp "$B/mold" "$STAGE/mold" && strip "$STAGE/mold"
cp -L /usr/lib/x86_64-linux-gnu/libspng.so.0 "$STAGE/"
cp -r "$B/tokenizer-qwen2_5" "$STAGE/"
mkdir -p "$DEST"
tar cf - -C "$STAGE" . | xz -T0 -6 > "$DEST/mold-gpu.tar.xz"
ls -la "$DEST/mold-gpu.tar.xz"
