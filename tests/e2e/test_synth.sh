#!/usr/bin/env bash
# test_synth.sh — `mold synth --preset tiny` writes a model with the tiny
# fixture's tensor names and shapes, deterministically.
# Args: $1 mold binary, $2 fixtures dir, $3 build dir.
#
# The references are read here independently of mold: python3 parses the
# safetensors headers (u64 length + JSON) and the GGUF headers (struct
# unpacking of the GGUF v3 layout) of the synthesized files and of the bundled
# tiny model. The synthesized model must hold exactly the fixture's tensors
# (same names, same shapes) minus the ones text-to-image never reads: lm_head
# and the VAE encoder (encoder.*, quant_conv.*). Both variants then generate
# a small PNG through `mold run`.
set -euo pipefail
MOLD=$1
FIX=$2
BUILD=$3
REF="$FIX/qwen-image-tiny/model"
OUT="$BUILD/e2e_synth"
rm -rf "$OUT"
mkdir -p "$OUT"
TOK="$REF/tokenizer"

synth() { "$MOLD" synth --preset tiny --tokenizer "$TOK" "$@" 2>/dev/null; }

synth --seed 1 "$OUT/a"
synth --seed 1 "$OUT/b"
synth --seed 2 "$OUT/c"
synth --seed 1 --transformer q4_K --text-encoder q8_0 "$OUT/g"
synth --seed 1 --transformer q4_0 --text-encoder q4_K --uniform "$OUT/u"

# same seed: byte-identical trees; another seed: every weight file differs
diff -r "$OUT/a" "$OUT/b" >/dev/null || { echo "seed 1 twice gave different files"; exit 1; }
n=0
for f in $(cd "$OUT/a" && find . -name '*.safetensors'); do
  if cmp -s "$OUT/a/$f" "$OUT/c/$f"; then echo "seed 2 left $f unchanged"; exit 1; fi
  n=$((n + 1))
done
echo "determinism: a == b byte for byte; $n weight files differ with seed 2"

"$MOLD" inspect "$OUT/a" --json >"$OUT/inspect.json"

python3 - "$REF" "$OUT" <<'PY'
import glob, json, os, struct, sys
ref, out = sys.argv[1:3]

def st_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n

def st_tensors(d):
    t = {}
    for p in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        h, _ = st_header(p)
        for k, v in h.items():
            if k != "__metadata__":
                assert k not in t, k
                t[k] = (v["dtype"], tuple(v["shape"]))
    return t

SKIP = lambda k: k == "lm_head.weight" or k.startswith(("encoder.", "quant_conv."))
expect = {}
for comp in ("transformer", "text_encoder", "vae"):
    r = {k: v for k, v in st_tensors(os.path.join(ref, comp)).items() if not SKIP(k)}
    s = st_tensors(os.path.join(out, "a", comp))
    assert set(r) == set(s), (comp, sorted(set(r) ^ set(s))[:8])
    for k in r:
        assert r[k][1] == s[k][1], (k, r[k], s[k])
        assert s[k][0] == "BF16", (k, s[k])
    expect[comp] = {k: v[1] for k, v in r.items()}
    print(f"{comp}: {len(s)} tensors, names and shapes == fixture (minus lm_head / VAE encoder)")

# sharded components: the index covers exactly the shards' tensors, total_size right
SIZE = {"BF16": 2, "F32": 4}
for comp, stem in (("transformer", "diffusion_pytorch_model"), ("text_encoder", "model")):
    d = os.path.join(out, "a", comp)
    idx = json.load(open(os.path.join(d, stem + ".safetensors.index.json")))
    shards = sorted(glob.glob(os.path.join(d, "*.safetensors")))
    assert len(shards) >= 2, (comp, shards)
    total, seen = 0, {}
    for p in shards:
        h, hlen = st_header(p)
        end = 0
        for k, v in h.items():
            if k == "__metadata__":
                continue
            n = 1
            for x in v["shape"]:
                n *= x
            b, e = v["data_offsets"]
            assert e - b == n * SIZE[v["dtype"]], k
            total += e - b
            end = max(end, e)
            seen[k] = os.path.basename(p)
        assert os.path.getsize(p) == hlen + end, p  # no trailing or missing bytes
    assert idx["weight_map"] == seen, comp
    assert idx["metadata"]["total_size"] == total, (idx["metadata"], total)
    print(f"{comp}: {len(shards)} shards, index weight_map and total_size {total} consistent")

# configs: the fixture's, but for the diffusers version string
for comp, name in (("transformer", "config.json"), ("vae", "config.json"),
                   ("text_encoder", "config.json"), ("scheduler", "scheduler_config.json"),
                   (".", "model_index.json")):
    a = json.load(open(os.path.join(ref, comp, name)))
    b = json.load(open(os.path.join(out, "a", comp, name)))
    a.pop("_diffusers_version", None)
    b.pop("_diffusers_version", None)
    assert a == b, (comp, {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)})
print("configs == fixture configs")
for f in os.listdir(os.path.join(ref, "tokenizer")):
    assert open(os.path.join(ref, "tokenizer", f), "rb").read() == \
        open(os.path.join(out, "a", "tokenizer", f), "rb").read(), f

rep = json.load(open(os.path.join(out, "inspect.json")))
for comp in expect:
    assert rep["components"][comp]["tensors"] == len(expect[comp]), comp
print("mold inspect: tensor counts agree")

# ---- GGUF: an independent reader of the header ----
GGML = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
        6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 12: ("Q4_K", 256, 144),
        13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 30: ("BF16", 1, 2)}
SCAL = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
        11: "<q", 12: "<d"}

def gguf_read(path):
    data = open(path, "rb").read()
    pos = 0
    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v[0]
    def string():
        nonlocal pos
        n = take("<Q")
        s = data[pos:pos + n].decode("utf-8")
        pos += n
        return s
    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("<I"), take("<Q")
            return [value(et) for _ in range(n)]
        return take(SCAL[t])
    assert data[:4] == b"GGUF"
    pos = 4
    version, n_t, n_kv = take("<I"), take("<Q"), take("<Q")
    assert version == 3
    kv = {}
    for _ in range(n_kv):
        k = string()
        kv[k] = value(take("<I"))
    tensors = []
    for _ in range(n_t):
        name = string()
        nd = take("<I")
        ne = [take("<Q") for _ in range(nd)]
        tensors.append((name, ne, take("<I"), take("<Q")))
    align = kv.get("general.alignment", 32)
    start = (pos + align - 1) // align * align
    end = 0
    for name, ne, ty, off in tensors:
        _, be, bb = GGML[ty]
        n = 1
        for x in ne:
            n *= x
        assert ne[0] % be == 0 and off % align == 0 and off >= end, name
        end = off + n // be * bb
    assert len(data) == start + (end + align - 1) // align * align, path
    return kv, {name: (GGML[ty][0], tuple(reversed(ne))) for name, ne, ty, off in tensors}

LLM = [("model.embed_tokens.", "token_embd."), ("model.norm.", "output_norm.")]
LAYER = [("input_layernorm.", "attn_norm."), ("self_attn.q_proj.", "attn_q."),
         ("self_attn.k_proj.", "attn_k."), ("self_attn.v_proj.", "attn_v."),
         ("self_attn.o_proj.", "attn_output."), ("post_attention_layernorm.", "ffn_norm."),
         ("mlp.gate_proj.", "ffn_gate."), ("mlp.up_proj.", "ffn_up."), ("mlp.down_proj.", "ffn_down.")]
def llm_name(k):
    for a, b in LLM:
        if k.startswith(a):
            return b + k[len(a):]
    _, _, i, rest = k.split(".", 3)
    for a, b in LAYER:
        if rest.startswith(a):
            return f"blk.{i}.{b}{rest[len(a):]}"
    raise KeyError(k)

tok = json.load(open(os.path.join(ref, "tokenizer", "tokenizer.json")))
vocab = dict(tok["model"]["vocab"])
vocab.update({t["content"]: t["id"] for t in tok["added_tokens"]})
for variant, dit_file, te_file in (("g", "qwen-image-tiny-Q4_K_M.gguf", "qwen2.5-vl-tiny-Q8_0.gguf"),
                                   ("u", "qwen-image-tiny-Q4_0-uniform.gguf",
                                    "qwen2.5-vl-tiny-Q4_K_M-uniform.gguf")):
    kv, t = gguf_read(os.path.join(out, variant, "transformer", dit_file))
    assert kv["general.architecture"] == "qwen_image"
    assert {k: v[1] for k, v in t.items()} == expect["transformer"]
    assert all(v[0] == "F32" for k, v in t.items() if len(v[1]) == 1)
    types = sorted(set(v[0] for v in t.values()))
    kv2, t2 = gguf_read(os.path.join(out, variant, "text_encoder", te_file))
    assert kv2["general.architecture"] == "qwen2vl"
    assert kv2["qwen2vl.block_count"] == 2 and kv2["qwen2vl.embedding_length"] == 64
    assert kv2["qwen2vl.rope.dimension_sections"] == [2, 3, 3, 0]
    assert {k: v[1] for k, v in t2.items()} == {llm_name(k): v for k, v in expect["text_encoder"].items()}
    toks = kv2["tokenizer.ggml.tokens"]
    assert len(toks) == 662 and all(toks[i] == s for s, i in vocab.items())
    assert kv2["tokenizer.ggml.model"] == "gpt2" and kv2["tokenizer.ggml.eos_token_id"] == vocab["<|im_end|>"]
    assert len(kv2["tokenizer.ggml.merges"]) == len(tok["model"]["merges"])
    print(f"GGUF {dit_file} ({', '.join(types)}) and {te_file}: names, shapes, layout, metadata ok")
PY

# the synthesized models generate through `mold run` (bf16 directory; GGUF
# files as component overrides), writing a PNG
"$MOLD" run "$OUT/a" "a red fox" --width 64 --height 48 --steps 2 --seed 3 -o "$OUT/a.png" \
  >/dev/null 2>&1
"$MOLD" run "$OUT/g" "a red fox" --width 64 --height 48 --steps 2 --seed 3 -o "$OUT/g.png" \
  --transformer "$OUT/g/transformer/qwen-image-tiny-Q4_K_M.gguf" \
  --text-encoder "$OUT/g/text_encoder/qwen2.5-vl-tiny-Q8_0.gguf" >/dev/null 2>&1
python3 - "$OUT/a.png" "$OUT/g.png" <<'PY'
import struct, sys
for p in sys.argv[1:]:
    b = open(p, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", p
    w, h = struct.unpack(">II", b[16:24])
    assert (w, h) == (64, 48), (p, w, h)
print("mold run: 64x48 PNGs from the bf16 directory and from the GGUF files")
PY

# usage errors exit 2, runtime failures 1 (a non-empty OUTDIR is refused)
set +e
"$MOLD" synth --preset tiny --tokenizer "$TOK" "$OUT/a" 2>"$OUT/err.txt"; rc=$?
"$MOLD" synth --preset tiny --transformer q9_9 "$OUT/x" 2>/dev/null; rc2=$?
set -e
[ $rc -eq 1 ] || { echo "expected exit 1 for a non-empty OUTDIR, got $rc"; exit 1; }
grep -q "expected a new or empty output directory" "$OUT/err.txt"
[ $rc2 -eq 2 ] || { echo "expected exit 2 for an unknown type, got $rc2"; exit 1; }
rm -rf "$OUT"
echo "synth e2e: ok"
