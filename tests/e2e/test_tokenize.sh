#!/usr/bin/env bash
# test_tokenize.sh MOLD FIXTURES BUILD — `mold tokenize` end to end.
#
# Expected ids come from the reference fixtures (golden.json of the Qwen2.5
# tokenizer, cases/tokenizer.json of the tiny model) or, for NUL bytes, from
# spec 2.5 (byte 0x00 is the byte-level symbol U+0100, id 188 in both
# vocabularies; no merge applies to it here). The real tokenizer is fetched by
# scripts/fetch-tokenizer.sh BUILD; without it this test fails and says so.
set -uo pipefail
MOLD=$1
FIX=$2
BUILD=$3
TINY="$FIX/qwen-image-tiny/model"
REAL="$BUILD/tokenizer-qwen2_5/tokenizer.json"
fails=0

check() { # name expected actual
  if [ "$2" == "$3" ]; then
    echo "ok   $1: $3"
  else
    echo "FAIL $1: expected '$2', got '$3'"
    fails=$((fails + 1))
  fi
}

if [ ! -f "$REAL" ]; then
  echo "FAIL: $REAL is missing: run scripts/fetch-tokenizer.sh $BUILD (make test does)"
  exit 1
fi

# Tiny model through --model (directory layout), golden case "Hello, World!!".
check "tiny --model --json" '{"ids":[39,68,426,11,220,54,360,0,0]}' \
  "$("$MOLD" tokenize --model "$TINY" --json 'Hello, World!!')"

# Real tokenizer, argument text.
check "real --json" '{"ids":[9707,11,1879,0]}' \
  "$("$MOLD" tokenize --tokenizer "$REAL" --json 'Hello, world!')"

# Text form: count line, ids line and one line per token with its string.
out=$("$MOLD" tokenize --tokenizer "$REAL" 'Hello, world!')
check "text form: count" "4 tokens" "$(sed -n 1p <<<"$out")"
check "text form: ids" "ids: 9707 11 1879 0" "$(sed -n 2p <<<"$out")"
check "text form: token 3" '1879  "Ġworld"' "$(sed -n 5p <<<"$out" | sed 's/^ *//')"

# stdin: raw bytes, CR and the trailing CRLF kept (golden 'line1\r\nline2\r\n').
check "stdin CRLF" '{"ids":[1056,16,319,1056,17,319]}' \
  "$(printf 'line1\r\nline2\r\n' | "$MOLD" tokenize --tokenizer "$REAL" --json -)"
# A trailing newline is text, not stripped ("\n" = 198).
check "stdin trailing LF" '{"ids":[64,198]}' \
  "$(printf 'a\n' | "$MOLD" tokenize --tokenizer "$REAL" --json -)"
# NUL bytes reach the tokenizer (a, U+0100 for 0x00, b).
check "stdin NUL" '{"ids":[64,188,65]}' \
  "$(printf 'a\0b' | "$MOLD" tokenize --tokenizer "$REAL" --json -)"
check "stdin NUL tiny" '{"ids":[87,188,88,201,198]}' \
  "$(printf 'x\0y\r\n' | "$MOLD" tokenize --model "$TINY" --json -)"
# Empty stdin: no tokens.
check "stdin empty" '{"ids":[]}' \
  "$("$MOLD" tokenize --tokenizer "$REAL" --json - </dev/null)"

# --template: spec 2.7 (34 prefix ids, the 9 prompt ids, 5 suffix ids).
want='{"ids":[151644,8948,198,74785,279,2168,553,44193,279,1894,11,6083,11,1379,11,10434,11,12194,11,1467,11,27979,11871,315,279,6171,323,4004,25,151645,198,151644,872,198,32,8251,9963,264,1841,429,2727,23811,1879,151645,198,151644,77091,198]}'
check "--template" "$want" \
  "$("$MOLD" tokenize --tokenizer "$REAL" --template --json 'A cat holding a sign that says hello world')"

# Invalid UTF-8: exit 1, the message names the byte offset.
err=$(printf 'ab\xffc' | "$MOLD" tokenize --tokenizer "$REAL" - 2>&1 >/dev/null)
rc=$?
check "invalid UTF-8 exit code" 1 "$rc"
check "invalid UTF-8 message" "yes" "$(grep -q 'byte offset 2' <<<"$err" && echo yes || echo "no: $err")"

# Usage errors: exit 2.
"$MOLD" tokenize 'x' >/dev/null 2>&1
check "no tokenizer -> exit 2" 2 $?
"$MOLD" tokenize --tokenizer "$REAL" >/dev/null 2>&1
check "no text -> exit 2" 2 $?
"$MOLD" tokenize --tokenizer "$REAL" --bogus x >/dev/null 2>&1
check "unknown option -> exit 2" 2 $?
# Missing tokenizer: exit 1 with the path named.
err=$("$MOLD" tokenize --tokenizer "$BUILD/no-such-tokenizer" x 2>&1 >/dev/null)
check "missing tokenizer exit" 1 $?
check "missing tokenizer message" "yes" \
  "$(grep -q 'no-such-tokenizer' <<<"$err" && echo yes || echo "no: $err")"

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
