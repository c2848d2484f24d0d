#!/usr/bin/env bash
# Edge cases of `mold run` found in review:
#  - an empty prompt and an empty negative prompt are legal requests: the
#    image is generated and saved (libspng refuses zero-length text chunks;
#    the PNG must still be written, its mold:parameters holding the prompt);
#  - --memory-budget values that round to 0 bytes are refused (0 would
#    silently mean "no budget").
# usage: test_cli_edge.sh MOLD FIXTURES BUILD_DIR
set -uo pipefail
MOLD=$1 FIX=$2 BUILD=$3
MODEL=$FIX/qwen-image-tiny/model
TMP=$(mktemp -d "$BUILD/e2e-edge.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fails=0 passes=0
ok()   { echo "ok   $*"; passes=$((passes+1)); }
bad()  { echo "FAIL $*"; fails=$((fails+1)); }

# 1. empty prompt and negative prompt
if "$MOLD" run "$MODEL" "" -n "" --width 32 --height 32 --steps 1 --seed 3 -o "$TMP/empty.png" \
     >/dev/null 2>"$TMP/empty.err"; then
  if python3 - "$TMP/empty.png" <<'PY'
import json, struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
off, chunks = 8, {}
while off < len(data):
    n, = struct.unpack('>I', data[off:off + 4]); kind = data[off + 4:off + 8]
    body = data[off + 8:off + 8 + n]; off += 12 + n
    if kind == b'iTXt':
        key, rest = body.split(b'\0', 1)
        comp = rest[0]; rest = rest[2:]
        _lang, rest = rest.split(b'\0', 1); _tk, text = rest.split(b'\0', 1)
        chunks[key.decode()] = (zlib.decompress(text) if comp else text).decode()
p = json.loads(chunks['mold:parameters'])
print('  parameters:', p)
assert p['prompt'] == '' and p['negative_prompt'] == '' and p['seed'] == 3, p
assert 'mold:prompt' not in chunks
PY
  then ok "empty prompt: PNG saved with its parameters"; else bad "empty prompt: PNG metadata"; fi
else
  cat "$TMP/empty.err"; bad "empty prompt: mold run failed"
fi

# 2. budgets that round to 0 bytes
for b in 0.5 0.0001K; do
  "$MOLD" run "$MODEL" "a cat" --width 32 --height 32 --steps 1 --memory-budget "$b" \
     -o "$TMP/b.png" >/dev/null 2>"$TMP/b.err"
  rc=$?
  if [ $rc -eq 2 ] && grep -q -- "--memory-budget" "$TMP/b.err" && [ ! -e "$TMP/b.png" ]; then
    ok "--memory-budget $b refused: $(head -1 "$TMP/b.err")"
  else
    bad "--memory-budget $b: expected exit 2 naming the option, got $rc: $(head -1 "$TMP/b.err")"
  fi
  rm -f "$TMP/b.png"
done

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
