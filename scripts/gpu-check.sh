#!/usr/bin/env bash
# gpu-check.sh — checks of the CUDA backend on a machine with an NVIDIA GPU.
#
# Usage: scripts/gpu-check.sh [--bin DIR] [--quick] [--sanitize] [--no-golden]
#   --bin DIR    use prebuilt test_cuda_ops and cuda_check from DIR (built on
#                another machine with -DMOLD_CUDA=ON); default: configure and
#                build build-gpu/ here (cmake -DMOLD_CUDA=ON).
#   --quick      smaller weight-upload figure in cuda_check.
#   --sanitize   also run test_cuda_ops under compute-sanitizer (memcheck).
#   --no-golden  skip the golden tests.
#   --peers      also time PyTorch's SDPA / linear / conv2d at the same sizes
#                (scripts/torch_peers.py; needs python3 with torch).
#
# Runs, in order:
#   1. test_cuda_ops: every op, CUDA vs the CPU backend, small odd shapes;
#   2. cuda_check: CUDA vs CPU at real Qwen-Image sizes (matmul 6921x3072 by
#      3072x12288, attention S = 6921 + 32 with 24 heads x 128, 3x3 conv of
#      96 channels at 1328 x 1328 compared on a crop, ...), printed as a table
#      with timings;
#   3. the golden tests on the CUDA backend (ctest -L golden with
#      MOLD_TEST_BACKEND=cuda), when the build dir is a local build.
# Exits non-zero when any step fails.
set -uo pipefail
cd "$(dirname "$0")/.."

BIN=""; QUICK=""; SANITIZE=0; GOLDEN=1; PEERS=0
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN="$2"; shift 2 ;;
        --quick) QUICK="--quick"; shift ;;
        --sanitize) SANITIZE=1; shift ;;
        --no-golden) GOLDEN=0; shift ;;
        --peers) PEERS=1; shift ;;
        *) echo "gpu-check: unknown argument $1" >&2; exit 2 ;;
    esac
done

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv \
    || { echo "gpu-check: no NVIDIA GPU here" >&2; exit 2; }

LOCAL_BUILD=0
if [ -z "$BIN" ]; then
    BIN=build-gpu
    LOCAL_BUILD=1
    cmake -S . -B "$BIN" -DMOLD_CUDA=ON -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1
    cmake --build "$BIN" -j"$(nproc)" --target test_cuda_ops cuda_check || exit 1
fi

# cuBLASLt is linked dynamically; find it when the loader does not.
if ldd "$BIN/test_cuda_ops" | grep -q "not found"; then
    for d in /usr/local/cuda/lib64 /usr/local/cuda-*/lib64 /usr/local/cuda*/targets/x86_64-linux/lib; do
        [ -e "$d/libcublasLt.so.13" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}" && break
    done
    if ldd "$BIN/test_cuda_ops" | grep -q "not found"; then
        lib=$(find / -xdev -name 'libcublasLt.so.13' 2>/dev/null | head -1)
        [ -n "$lib" ] && export LD_LIBRARY_PATH="$(dirname "$lib"):${LD_LIBRARY_PATH:-}"
    fi
    ldd "$BIN/test_cuda_ops" | grep "not found" && { echo "gpu-check: missing libraries" >&2; exit 1; }
fi

FAIL=0
echo "== 1. test_cuda_ops (CUDA vs CPU, every op)"
"$BIN/test_cuda_ops" || FAIL=1

echo "== 2. cuda_check (real sizes, CUDA vs CPU)"
"$BIN/cuda_check" $QUICK || FAIL=1

if [ "$PEERS" = 1 ]; then
    echo "== 2a. PyTorch peers (same sizes)"
    python3 scripts/torch_peers.py || echo "gpu-check: torch peers failed (not counted)"
fi

if [ "$SANITIZE" = 1 ]; then
    echo "== 2b. compute-sanitizer memcheck test_cuda_ops"
    SLOG=${OUT:-/tmp}/sanitizer.log
    compute-sanitizer --tool memcheck --error-exitcode 9 "$BIN/test_cuda_ops" >"$SLOG" 2>&1
    rc=$?
    grep -E "ERROR SUMMARY|Invalid|out of bounds" "$SLOG" | head -20
    [ $rc = 0 ] || { echo "gpu-check: compute-sanitizer rc=$rc (log: $SLOG)"; grep -A12 -m1 "Invalid" "$SLOG"; FAIL=1; }
    echo "== 2c. compute-sanitizer racecheck (attention tests: shared-memory hazards)"
    MOLD_CUDA_TEST_FILTER=test_attention compute-sanitizer --tool racecheck --error-exitcode 9 \
        "$BIN/test_cuda_ops" >"${SLOG%.log}-race.log" 2>&1
    rc=$?
    grep -E "RACECHECK SUMMARY|ERROR SUMMARY|hazard" "${SLOG%.log}-race.log" | head -10
    [ $rc = 0 ] || { echo "gpu-check: racecheck rc=$rc"; FAIL=1; }
fi

if [ "$GOLDEN" = 1 ] && [ "$LOCAL_BUILD" = 1 ]; then
    echo "== 3. golden tests on CUDA"
    cmake --build "$BIN" -j"$(nproc)" || exit 1
    MOLD_TEST_BACKEND=cuda ctest --test-dir "$BIN" -L golden --output-on-failure || FAIL=1
fi

echo "gpu-check: $([ $FAIL = 0 ] && echo PASS || echo FAIL)"
exit $FAIL
