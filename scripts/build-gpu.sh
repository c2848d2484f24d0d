#!/usr/bin/env bash
# build-gpu.sh DEST — builds the CUDA mold binary for the GPU machine on this
# machine and packs it with what it needs there into DEST/mold-gpu.tar.xz:
#   mold (stripped; third-party libraries static, see MOLD_STATIC_DEPS),
#   libspng.so.0 (Debian ships no static libspng; found via the $ORIGIN rpath),
#   tokenizer-qwen2_5/ (for `mold synth` of the full-size model).
#   the test binaries $MOLD_GPU_TESTS (default test_dit test_vae test_cuda_ops cuda_check;
#   the goldens run on the GPU with MOLD_TEST_BACKEND=cuda and
#   MOLD_TEST_FIXTURES=<repo>/tests/fixtures) + libcmocka.so.0.
# On the GPU machine: eval "$(bash scripts/gpu-env.sh DEST/mold-gpu.tar.xz /tmp/g)".
set -euo pipefail
DEST=${1:?usage: build-gpu.sh DEST_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/build-gpu
GOLDEN=${MOLD_GPU_TESTS:-"test_dit test_vae test_cuda_ops cuda_check"}
cmake -S "$ROOT" -B "$B" -DMOLD_CUDA=ON -DMOLD_STATIC_DEPS=ON -DMOLD_TESTS=ON \
      -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$B" -j"$(nproc)" --target mold $GOLDEN
bash "$ROOT/scripts/fetch-tokenizer.sh" "$B" >/dev/null
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp "$B/mold" "$STAGE/mold" && strip "$STAGE/mold"
cp -L /usr/lib/x86_64-linux-gnu/libspng.so.0 /usr/lib/x86_64-linux-gnu/libcmocka.so.0 "$STAGE/"
for t in $GOLDEN; do cp "$B/$t" "$STAGE/" && strip "$STAGE/$t"; done
cp -r "$B/tokenizer-qwen2_5" "$STAGE/"
mkdir -p "$DEST"
# One xz stream with a 64 MiB dictionary: the binaries share most of their
# bytes (each links the same CUDA kernels), which a single-threaded -9 finds
# across files (4 binaries: 3.5 MB instead of 10 MB with -T0 -6). The GPU
# call carries the tracked tree too, and both must fit its 64 MiB.
tar cf - -C "$STAGE" . | xz -T1 -9 > "$DEST/mold-gpu.tar.xz"
ls -la "$DEST/mold-gpu.tar.xz"
