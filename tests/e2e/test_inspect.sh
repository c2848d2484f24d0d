#!/usr/bin/env bash
# test_inspect.sh — `mold inspect` on the bundled tiny model reports the right
# counts. Args: $1 mold binary, $2 fixtures dir, $3 build dir.
# The reference counts are computed here independently: python3 reads every
# safetensors header (u64 length + JSON) with struct/json and sums the
# elements, bytes and tensors of each component's shards.
set -euo pipefail
MOLD=$1
FIX=$2
BUILD=$3
MODEL="$FIX/qwen-image-tiny/model"
OUT="$BUILD/e2e_inspect"
mkdir -p "$OUT"

"$MOLD" inspect "$MODEL" --json >"$OUT/inspect.json"
"$MOLD" inspect "$MODEL" >"$OUT/inspect.txt"

python3 - "$MODEL" "$OUT/inspect.json" "$OUT/inspect.txt" <<'PY'
import glob, json, os, struct, sys
model, jpath, tpath = sys.argv[1:4]
report = json.load(open(jpath))  # --json must be one valid JSON object
text = open(tpath).read()
assert report["kind"] == "model", report["kind"]

def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))

SIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "U8": 1}
totals = [0, 0, 0]
for comp in ("transformer", "text_encoder", "vae"):
    files = sorted(glob.glob(os.path.join(model, comp, "*.safetensors")))
    n = params = nbytes = 0
    for f in files:
        for name, e in header(f).items():
            if name == "__metadata__":
                continue
            elems = 1
            for d in e["shape"]:
                elems *= d
            n += 1
            params += elems
            nbytes += elems * SIZE[e["dtype"]]
    got = report["components"][comp]
    print(f"{comp}: reference tensors {n} params {params} bytes {nbytes}; "
          f"mold tensors {got['tensors']} params {got['parameters']} bytes {got['bytes']}")
    assert got["tensors"] == n, comp
    assert got["parameters"] == params, comp
    assert got["bytes"] == nbytes, comp
    assert got["shards"] == [os.path.basename(f) for f in files], (comp, got["shards"])
    assert f"parameters  {params}" in text, f"text output lacks parameters {params}"
    totals = [a + b for a, b in zip(totals, (n, params, nbytes))]

t = report["totals"]
assert [t["tensors"], t["parameters"], t["bytes"]] == totals, (t, totals)
# key config values straight from the config files
dit = json.load(open(os.path.join(model, "transformer", "config.json")))
cfg = report["components"]["transformer"]["config"]
for k in ("num_layers", "num_attention_heads", "attention_head_dim", "joint_attention_dim",
          "axes_dims_rope", "patch_size", "in_channels", "out_channels"):
    assert cfg[k] == dit[k], k
te = json.load(open(os.path.join(model, "text_encoder", "config.json")))
cfg = report["components"]["text_encoder"]["config"]
assert cfg["hidden_size"] == te["hidden_size"] and cfg["rope_theta"] == te["rope_theta"]
assert cfg["mrope_section"] == te["rope_scaling"]["mrope_section"]
sch = json.load(open(os.path.join(model, "scheduler", "scheduler_config.json")))
assert report["components"]["scheduler"]["config"]["max_image_seq_len"] == sch["max_image_seq_len"]
assert "tokenizer" in report["components"]
print("inspect: counts and configs match")
PY

# --tensors lists every tensor; a bad path fails cleanly with status 1
n=$("$MOLD" inspect "$MODEL/transformer" --json --tensors |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(len(r["components"]["weights"]["tensor_list"]))')
[ "$n" = 77 ] || { echo "expected 77 listed tensors, got $n"; exit 1; }
set +e
"$MOLD" inspect "$OUT/does-not-exist" 2>"$OUT/err.txt"; rc=$?
set -e
[ $rc -eq 1 ] || { echo "expected exit 1 for a missing path, got $rc"; exit 1; }
grep -q "does-not-exist" "$OUT/err.txt" || { echo "error does not name the path"; exit 1; }
echo "inspect: ok"
