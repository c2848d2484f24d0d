#!/usr/bin/env bash
# gpu-env.sh BUNDLE DIR — unpacks a scripts/build-gpu.sh bundle into DIR and
# prints the `export LD_LIBRARY_PATH=...` that lets it find the machine's
# libcublasLt.so.13. Usage on the GPU machine:
#   eval "$(bash scripts/gpu-env.sh .gpu/mold-gpu.tar.xz /tmp/g)"
set -euo pipefail
BUNDLE=$1 DIR=$2
mkdir -p "$DIR" && tar xJf "$BUNDLE" -C "$DIR"
lib=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64; do
  [ -e "$d/libcublasLt.so.13" ] && lib=$d && break
done
[ -n "$lib" ] || lib=$(dirname "$(find / -xdev -name 'libcublasLt.so.13' 2>/dev/null | head -1)")
[ -z "$lib" ] && lib=$(python3 -c "import nvidia.cublas, os; print(os.path.join(nvidia.cublas.__path__[0], 'lib'))" 2>/dev/null || true)
echo "export LD_LIBRARY_PATH=$DIR:$lib:\${LD_LIBRARY_PATH:-}"
