#!/usr/bin/env bash
# `mold bench` on the tiny model: the table prints and the last line is one JSON
# object whose stage times are positive and whose byte counts match the files.
# usage: test_bench.sh MOLD FIXTURES BUILD_DIR
set -euo pipefail
MOLD=$1 FIX=$2
out=$("$MOLD" bench "$FIX/qwen-image-tiny/model" --width 64 --height 48 --repeats 2 --text-tokens 8 2>/dev/null)
echo "$out"
tail -1 <<<"$out" | python3 -c "
import json, sys
r = json.loads(sys.stdin.read())
for k in ('encode_ms', 'dit_step_ms', 'dit_cfg_step_ms', 'vae_decode_ms', 'png_encode_ms'):
    assert r[k] > 0, (k, r[k])
assert r['width'] == 64 and r['height'] == 48 and r['repeats'] == 2
# the tiny transformer's files hold 340,480 bf16 parameters (see mold inspect)
assert r['bytes_dit'] == 340480 * 2, r['bytes_dit']
assert r['peak_host_bytes'] > 0
print('1 passed, 0 failed')
"
"$MOLD" bench "$FIX/qwen-image-tiny/model" --width 50 2>/dev/null && { echo "width 50 accepted"; exit 1; }
# A model directory whose transformer/ and text_encoder/ hold one .gguf each
# loads as it is (no --transformer/--text-encoder needed).
TMP=$(mktemp -d "$3/e2e-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
"$MOLD" synth --preset tiny --transformer q4_K --text-encoder q8_0 \
    --tokenizer "$FIX/qwen-image-tiny/model/tokenizer" "$TMP/m" >/dev/null 2>&1
"$MOLD" bench "$TMP/m" --width 32 --height 32 --repeats 1 2>/dev/null | tail -1 | python3 -c "
import json, sys
r = json.loads(sys.stdin.read())
assert r['bytes_dit'] > 0 and r['bytes_text'] > 0 and r['dit_step_ms'] > 0, r
print('gguf model directory: transformer %d B, text encoder %d B of GGUF tensors' % (r['bytes_dit'], r['bytes_text']))
print('1 passed, 0 failed')"
exit 0
