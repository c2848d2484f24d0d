/*
 * gguf_convert.c — safetensors transformer / text encoder -> quantized GGUF
 * (see gguf_convert.h for the output conventions).
 *
 * Owner: the gguf helper. References (facts, not code): city96
 * ComfyUI-GGUF tools/convert.py + lcpp.patch (transformer rules, spec 4.5),
 * llama.cpp convert_hf_to_gguf.py (Qwen2VL metadata, get_vocab_base token
 * types) and llama-quantize's llama_tensor_get_type (output.weight, "_M"
 * bumps with use_more_bits, K-quant fallbacks).
 *
 * Flow: open the input set, decide the kind from its tensor names, build a
 * plan (output name, dtype, dims per tensor), add metadata, then stream the
 * tensors through the GGUF writer: each is converted to f32 and quantized
 * in row chunks on a thread pool straight into the writer's buffer.
 */
#include "gguf_convert.h"

#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/fs.h"
#include "../base/json.h"
#include "../base/log.h"
#include "../base/quant.h"
#include "../base/threadpool.h"
#include "gguf.h"
#include "modeldir.h"
#include "safetensors.h"

/* ---- per-tensor rules ----------------------------------------------------------- */

mold_dtype mold_quantize_parse_type(const char *s) {
    static const mold_dtype ok[] = {MOLD_Q8_0, MOLD_Q4_0, MOLD_Q4_1, MOLD_Q5_0,
                                    MOLD_Q5_1, MOLD_Q4_K, MOLD_Q5_K, MOLD_Q6_K};
    mold_dtype t = s ? mold_dtype_from_name(s) : MOLD_DTYPE_INVALID;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (ok[i] == t) return t;
    return MOLD_DTYPE_INVALID;
}

static bool has(const char *s, const char *part) { return strstr(s, part) != NULL; }
static bool is_k(mold_dtype t) { return t >= MOLD_Q2_K && t <= MOLD_Q6_K; }
static mold_dtype tmax(mold_dtype a, mold_dtype b) {
    /* "more bits" order of the types a bump can produce */
    static const mold_dtype order[] = {MOLD_Q4_0, MOLD_Q4_1, MOLD_Q4_K, MOLD_Q5_0, MOLD_Q5_1,
                                       MOLD_Q5_K, MOLD_Q6_K, MOLD_Q8_0};
    int ia = -1, ib = -1;
    for (int i = 0; i < 8; i++) {
        if (order[i] == a) ia = i;
        if (order[i] == b) ib = i;
    }
    return ib > ia ? b : a;
}

/* Layer index after "<prefix>N." in name, or -1. */
static int layer_of(const char *name, const char *prefix) {
    const char *p = strstr(name, prefix);
    if (!p) return -1;
    p += strlen(prefix);
    char *end;
    long v = strtol(p, &end, 10);
    return end != p && *end == '.' && v >= 0 && v < 100000 ? (int)v : -1;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers and
 * every third one in between. */
static bool use_more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* city96 transformer. --rules city96 (the Q4_K_M / Q5_K_M / Q4_0 / Q5_0 mixes):
 *   .to_v / .add_v_proj weights: q4_K, q5_K -> q6_K;
 *   ffn down (.img_mlp.net.2 / .txt_mlp.net.2): q4_K, q5_K -> q6_K, q4_0 -> q4_1,
 *   q5_0 -> q5_1;
 *   first and last transformer block: q4_K -> q5_K, q5_K -> q6_K;
 * bumps never lower a type (the largest applies). */
static mold_dtype transformer_type(const char *name, int n_layers, mold_dtype base, bool rules) {
    mold_dtype t = base;
    if (!rules) return t;
    bool k45 = base == MOLD_Q4_K || base == MOLD_Q5_K;
    if ((has(name, ".to_v.weight") || has(name, ".add_v_proj.weight")) && k45) t = MOLD_Q6_K;
    if (has(name, "_mlp.net.2.weight")) {
        if (k45) t = MOLD_Q6_K;
        else if (base == MOLD_Q4_0) t = MOLD_Q4_1;
        else if (base == MOLD_Q5_0) t = MOLD_Q5_1;
    }
    int layer = layer_of(name, "transformer_blocks.");
    if (layer >= 0 && (layer == 0 || layer == n_layers - 1) && k45)
        t = tmax(t, base == MOLD_Q4_K ? MOLD_Q5_K : MOLD_Q6_K);
    return t;
}

/* llama.cpp text model. Always: output.weight -> q6_K (q8_0 stays). With
 * --rules city96 (the "_M" mixes): attn_v and ffn_down of use_more_bits
 * layers -> q6_K for q4_K / q5_K. */
static mold_dtype text_type(const char *name, int n_layers, mold_dtype base, bool rules) {
    if (!strcmp(name, "output.weight")) return base == MOLD_Q8_0 ? base : MOLD_Q6_K;
    int layer = layer_of(name, "blk.");
    if (rules && (base == MOLD_Q4_K || base == MOLD_Q5_K) && layer >= 0 &&
        (has(name, ".attn_v.weight") || has(name, ".ffn_down.weight")) &&
        use_more_bits(layer, n_layers))
        return MOLD_Q6_K;
    return base;
}

/* llama-quantize's fallback for rows that are not a whole number of 256-value
 * K blocks. */
static mold_dtype text_fallback(mold_dtype t) {
    switch (t) {
    case MOLD_Q2_K: case MOLD_Q3_K: case MOLD_Q4_K: return MOLD_Q5_0;
    case MOLD_Q5_K: return MOLD_Q5_1;
    case MOLD_Q6_K: return MOLD_Q8_0;
    default: return t;
    }
}

mold_dtype mold_quantize_tensor_type(mold_quant_kind kind, const char *name, int n_dims,
                                     const int64_t *shape, int n_layers, mold_dtype base,
                                     bool city96_rules) {
    int64_t n = 1;
    for (int d = 0; d < n_dims; d++) n *= shape[d];
    int64_t cols = n_dims ? shape[n_dims - 1] : 1;
    if (kind == MOLD_QUANT_TRANSFORMER) {
        if (n_dims <= 1 || n <= 1024) return MOLD_F32; /* convert.py */
        mold_dtype t = transformer_type(name, n_layers, base, city96_rules);
        return cols % mold_dtype_get(t)->block_elems ? MOLD_F16 : t;
    }
    if (n_dims <= 1) return MOLD_F32;
    mold_dtype t = text_type(name, n_layers, base, city96_rules);
    if (is_k(t) && cols % 256) t = text_fallback(t);
    return cols % mold_dtype_get(t)->block_elems ? MOLD_F16 : t;
}

/* ---- the plan ------------------------------------------------------------------- */

typedef struct plan_entry {
    const mold_tensor *src;  /* borrowed from the safetensors set */
    char *name;              /* output name (owned) */
    mold_dtype dtype;        /* output dtype */
} plan_entry;

typedef struct convert {
    const char *in;
    const mold_quantize_opts *o;
    mold_safetensors *st;
    mold_quant_kind kind;
    const char *strip;       /* transformer: name prefix to strip ("" when none) */
    int n_layers;
    plan_entry *plan;
    size_t n_plan;
    mold_quantize_stats stats;
    mold_pool *pool;
} convert;

static const char *const DIT_PROBE = "time_text_embed.timestep_embedder.linear_2.weight";

/* Decides transformer vs text encoder from the names present. */
static mold_status detect_kind(convert *c) {
    static const char *const prefixes[] = {"", "model.diffusion_model.", "model."};
    char buf[256];
    for (size_t i = 0; i < 3; i++) {
        snprintf(buf, sizeof buf, "%s%s", prefixes[i], DIT_PROBE);
        if (mold_safetensors_find(c->st, buf)) {
            c->kind = MOLD_QUANT_TRANSFORMER;
            c->strip = prefixes[i];
            return MOLD_OK;
        }
    }
    if (mold_safetensors_find(c->st, "model.embed_tokens.weight") ||
        mold_safetensors_find(c->st, "model.language_model.embed_tokens.weight")) {
        c->kind = MOLD_QUANT_TEXT;
        c->strip = "";
        return MOLD_OK;
    }
    return MOLD_ERR(MOLD_E_FORMAT, "%s: neither a Qwen-Image transformer (expected tensor '%s') "
                    "nor a Qwen2.5-VL text encoder (expected 'model.embed_tokens.weight')",
                    c->in, DIT_PROBE);
}

/* Output name of source tensor `name`, or NULL to skip it (malloc'd). */
static char *out_name(const convert *c, const char *name) {
    if (c->kind == MOLD_QUANT_TRANSFORMER) {
        size_t n = strlen(c->strip);
        return strncmp(name, c->strip, n) ? strdup(name) : strdup(name + n);
    }
    char buf[512];
    return mold_gguf_llm_name(name, buf, sizeof buf) ? strdup(buf) : NULL;
}

static mold_status build_plan(convert *c) {
    size_t n = mold_safetensors_count(c->st);
    c->plan = calloc(n ? n : 1, sizeof *c->plan);
    if (!c->plan) return MOLD_ERR(MOLD_E_NOMEM, "quantize: out of memory");
    const char *layer_prefix = c->kind == MOLD_QUANT_TRANSFORMER ? "transformer_blocks." : "blk.";
    for (size_t i = 0; i < n; i++) { /* names first: the layer count feeds the rules */
        const mold_tensor *t = mold_safetensors_at(c->st, i);
        char *name = out_name(c, t->name);
        if (!name) {
            c->stats.n_skipped++;
            continue;
        }
        if (t->dtype != MOLD_F32 && t->dtype != MOLD_F16 && t->dtype != MOLD_BF16) {
            free(name);
            return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: tensor '%s': dtype %s, expected f32, f16 or "
                            "bf16", c->in, t->name, mold_dtype_name(t->dtype));
        }
        if (t->n_dims > MOLD_GGUF_MAX_DIMS) {
            free(name);
            return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: tensor '%s': %d dims, GGUF holds at most %d",
                            c->in, t->name, t->n_dims, MOLD_GGUF_MAX_DIMS);
        }
        int layer = layer_of(name, layer_prefix);
        if (layer + 1 > c->n_layers) c->n_layers = layer + 1;
        c->plan[c->n_plan++] = (plan_entry){t, name, MOLD_DTYPE_INVALID};
    }
    for (size_t i = 0; i < c->n_plan; i++) {
        plan_entry *p = &c->plan[i];
        p->dtype = mold_quantize_tensor_type(c->kind, p->name, p->src->n_dims, p->src->shape,
                                             c->n_layers, c->o->type, c->o->city96_rules);
    }
    return MOLD_OK;
}

/* ---- metadata ------------------------------------------------------------------- */

/* llama.cpp's general.file_type for the mix that --type / --rules produce. */
static uint32_t llama_ftype(mold_dtype t, bool rules) {
    switch (t) {
    case MOLD_Q4_0: return 2;
    case MOLD_Q4_1: return 3;
    case MOLD_Q8_0: return 7;
    case MOLD_Q5_0: return 8;
    case MOLD_Q5_1: return 9;
    case MOLD_Q4_K: return rules ? 15 : 14; /* Q4_K_M : Q4_K_S */
    case MOLD_Q5_K: return rules ? 17 : 16; /* Q5_K_M : Q5_K_S */
    case MOLD_Q6_K: return 18;
    default: return 0;
    }
}

static char *default_name(const char *in) {
    char *copy = strdup(in), *b;
    if (!copy) return NULL;
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/') copy[--n] = 0;
    b = strdup(basename(copy));
    free(copy);
    char *dot = b ? strrchr(b, '.') : NULL;
    if (dot && dot != b) *dot = 0;
    return b;
}

static mold_status put_general(convert *c, mold_gguf_writer *w, const char *arch) {
    char *name = c->o->name ? strdup(c->o->name) : default_name(c->in);
    if (!name) return MOLD_ERR(MOLD_E_NOMEM, "quantize: out of memory");
    mold_status st = mold_gguf_writer_add_str(w, "general.architecture", arch);
    if (!st) st = mold_gguf_writer_add_str(w, "general.name", name);
    if (!st) st = mold_gguf_writer_add_u32(w, "general.file_type",
                                           llama_ftype(c->o->type, c->o->city96_rules));
    if (!st) st = mold_gguf_writer_add_u32(w, "general.quantization_version", 2);
    free(name);
    return st;
}

/* Directory holding the input (the input itself when it is a directory). */
static char *input_dir(const char *in) {
    if (mold_path_is_dir(in)) return strdup(in);
    char *copy = strdup(in);
    if (!copy) return NULL;
    char *d = strdup(dirname(copy));
    free(copy);
    return d;
}

/* convert_hf_to_gguf's does_token_look_special. */
static bool looks_special(const char *s) {
    size_t n = strlen(s);
    if (!strcmp(s, "<pad>") || !strcmp(s, "<mask>") || !strcmp(s, "<2mass>") ||
        !strcmp(s, "[@BOS@]"))
        return true;
    if (n >= 4 && !strncmp(s, "<|", 2) && !strcmp(s + n - 2, "|>")) return true;
    return n >= 8 && !strncmp(s, "<unused", 7) && s[n - 1] == '>';
}

typedef struct vocab {
    char **tok;      /* [n] token strings ("[PAD<i>]" fillers included), owned */
    int32_t *type;   /* [n] gguf token types */
    uint64_t n;
    char **merges;   /* owned "a b" strings */
    uint64_t n_merges;
} vocab;

static void vocab_free(vocab *v) {
    for (uint64_t i = 0; v->tok && i < v->n; i++) free(v->tok[i]);
    for (uint64_t i = 0; v->merges && i < v->n_merges; i++) free(v->merges[i]);
    free(v->tok);
    free(v->type);
    free(v->merges);
}

static mold_status vocab_set(vocab *v, const char *what, int64_t id, const char *s, int32_t type) {
    if (id < 0 || (uint64_t)id >= v->n)
        return MOLD_ERR(MOLD_E_RANGE, "%s: token '%s': id %lld outside the vocabulary size "
                        "%llu", what, s, (long long)id, (unsigned long long)v->n);
    free(v->tok[id]);
    if (!(v->tok[id] = strdup(s))) return MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    v->type[id] = type;
    return MOLD_OK;
}

/* Reads tokenizer.json into token strings / types / merges (llama.cpp's
 * get_vocab_base: ids without a token become "[PAD<id>]", type unused). */
static mold_status read_vocab(const char *path, int64_t vocab_size, vocab *v) {
    json_t *j;
    MOLD_TRY(mold_json_load_file(path, &j));
    json_t *model = json_object_get(j, "model"), *vo = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges"), *added = json_object_get(j, "added_tokens");
    mold_status st = MOLD_OK;
    if (!json_is_object(vo) || !json_is_array(merges))
        st = MOLD_ERR(MOLD_E_FORMAT, "%s: expected model.vocab (object) and model.merges (array)",
                      path);
    int64_t max_id = -1;
    const char *key;
    json_t *val;
    size_t i;
    json_object_foreach(vo, key, val) if (json_integer_value(val) > max_id) max_id = json_integer_value(val);
    json_array_foreach(added, i, val) {
        int64_t id = json_integer_value(json_object_get(val, "id"));
        if (id > max_id) max_id = id;
    }
    v->n = (uint64_t)(vocab_size > max_id + 1 ? vocab_size : max_id + 1);
    v->n_merges = json_array_size(merges);
    v->tok = calloc(v->n, sizeof *v->tok);
    v->type = calloc(v->n, sizeof *v->type);
    v->merges = calloc(v->n_merges ? v->n_merges : 1, sizeof *v->merges);
    if (!st && (!v->tok || !v->type || !v->merges)) st = MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    if (!st) json_object_foreach(vo, key, val) {
        if (!json_is_integer(val) ||
            (st = vocab_set(v, path, json_integer_value(val), key, 1)))
            break;
    }
    if (!st) json_array_foreach(added, i, val) {
        const char *content = json_string_value(json_object_get(val, "content"));
        bool special = json_is_true(json_object_get(val, "special"));
        if (!content) {
            st = MOLD_ERR(MOLD_E_FORMAT, "%s: added_tokens[%zu]: expected a content string", path, i);
            break;
        }
        int32_t type = special || looks_special(content) ? 3 : 4;
        if ((st = vocab_set(v, path, json_integer_value(json_object_get(val, "id")), content, type)))
            break;
    }
    for (uint64_t k = 0; !st && k < v->n; k++) {
        if (v->tok[k]) continue;
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%llu]", (unsigned long long)k);
        st = vocab_set(v, path, (int64_t)k, pad, 5);
    }
    if (!st) json_array_foreach(merges, i, val) {
        char buf[1024];
        if (json_is_string(val)) { /* "a b" */
            snprintf(buf, sizeof buf, "%s", json_string_value(val));
        } else if (json_is_array(val) && json_array_size(val) == 2) { /* ["a", "b"] */
            snprintf(buf, sizeof buf, "%s %s", json_string_value(json_array_get(val, 0)),
                     json_string_value(json_array_get(val, 1)));
        } else {
            st = MOLD_ERR(MOLD_E_FORMAT, "%s: model.merges[%zu]: expected \"a b\" or [a, b]", path, i);
            break;
        }
        if (!(v->merges[i] = strdup(buf))) st = MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    }
    json_decref(j);
    return st;
}

/* Id of the token `s` (exact match), or -1. */
static int64_t token_id(const vocab *v, const char *s) {
    for (uint64_t i = 0; s && i < v->n; i++)
        if (!strcmp(v->tok[i], s)) return (int64_t)i;
    return -1;
}

static mold_status find_tokenizer_json(convert *c, const char *dir, char **out) {
    const char *given = c->o->tokenizer_path;
    char *cands[3] = {0};
    if (given) {
        cands[0] = mold_path_is_dir(given) ? mold_path_join(given, "tokenizer.json") : strdup(given);
    } else {
        char *up = mold_path_join(dir, "../tokenizer");
        cands[0] = up ? mold_path_join(up, "tokenizer.json") : NULL;
        cands[1] = mold_path_join(dir, "tokenizer.json");
        free(up);
    }
    *out = NULL;
    for (int i = 0; i < 3; i++) {
        if (!*out && cands[i] && mold_path_exists(cands[i])) *out = cands[i];
        else free(cands[i]);
    }
    if (*out) return MOLD_OK;
    return MOLD_ERR(MOLD_E_NOTFOUND, "%s: no tokenizer.json found (looked in %s/../tokenizer and "
                    "%s; give --tokenizer DIR)", c->in, dir, dir);
}

static mold_status put_tokenizer(convert *c, mold_gguf_writer *w, const char *dir,
                                 int64_t vocab_size) {
    char *path;
    MOLD_TRY(find_tokenizer_json(c, dir, &path));
    vocab v = {0};
    mold_status st = read_vocab(path, vocab_size, &v);
    if (!st) st = mold_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
    if (!st) st = mold_gguf_writer_add_str(w, "tokenizer.ggml.pre", "qwen2");
    if (!st) st = mold_gguf_writer_add_str_array(w, "tokenizer.ggml.tokens",
                                                 (const char *const *)v.tok, v.n);
    if (!st) st = mold_gguf_writer_add_array(w, "tokenizer.ggml.token_type", MOLD_GGUF_I32,
                                             v.type, v.n);
    if (!st) st = mold_gguf_writer_add_str_array(w, "tokenizer.ggml.merges",
                                                 (const char *const *)v.merges, v.n_merges);
    /* Qwen2.5: <|im_end|> ends a turn, <|endoftext|> pads and begins */
    int64_t eos = token_id(&v, "<|im_end|>"), pad = token_id(&v, "<|endoftext|>");
    if (!st && eos >= 0) st = mold_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (!st && pad >= 0) st = mold_gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)pad);
    if (!st && pad >= 0) st = mold_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)pad);
    if (!st) st = mold_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false);
    vocab_free(&v);
    free(path);
    return st;
}

/* qwen2vl.* hyper-parameters from text_encoder/config.json. */
static mold_status put_text_hparams(convert *c, mold_gguf_writer *w, const char *dir,
                                    int64_t *vocab_size) {
    char *cfg_path = mold_path_join(dir, "config.json");
    if (!cfg_path) return MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    mold_text_config tc;
    mold_status st = mold_text_config_load(cfg_path, &tc);
    int64_t ctx = 128000;
    json_t *j = NULL;
    if (!st) st = mold_json_load_file(cfg_path, &j);
    if (!st) {
        json_t *tcfg = json_object_get(j, "text_config"); /* transformers 5.x layout */
        const json_t *holder = json_object_get(j, "max_position_embeddings") || !tcfg ? j : tcfg;
        st = mold_json_get_int(holder, "max_position_embeddings", cfg_path, false, &ctx);
    }
    json_decref(j);
    free(cfg_path);
    MOLD_TRY(st);
    const int32_t sec[4] = {tc.mrope_section[0], tc.mrope_section[1], tc.mrope_section[2], 0};
    st = mold_gguf_writer_add_u32(w, "qwen2vl.block_count", (uint32_t)tc.num_hidden_layers);
    if (!st) st = mold_gguf_writer_add_u32(w, "qwen2vl.context_length", (uint32_t)ctx);
    if (!st) st = mold_gguf_writer_add_u32(w, "qwen2vl.embedding_length", (uint32_t)tc.hidden_size);
    if (!st) st = mold_gguf_writer_add_u32(w, "qwen2vl.feed_forward_length",
                                           (uint32_t)tc.intermediate_size);
    if (!st) st = mold_gguf_writer_add_u32(w, "qwen2vl.attention.head_count",
                                           (uint32_t)tc.num_attention_heads);
    if (!st) st = mold_gguf_writer_add_u32(w, "qwen2vl.attention.head_count_kv",
                                           (uint32_t)tc.num_key_value_heads);
    if (!st) st = mold_gguf_writer_add_f32(w, "qwen2vl.rope.freq_base", (float)tc.rope_theta);
    if (!st) st = mold_gguf_writer_add_f32(w, "qwen2vl.attention.layer_norm_rms_epsilon",
                                           (float)tc.rms_norm_eps);
    if (!st) st = mold_gguf_writer_add_array(w, "qwen2vl.rope.dimension_sections", MOLD_GGUF_I32,
                                             sec, 4);
    *vocab_size = tc.vocab_size;
    return st;
}

static mold_status put_metadata(convert *c, mold_gguf_writer *w) {
    if (c->kind == MOLD_QUANT_TRANSFORMER) return put_general(c, w, "qwen_image");
    char *dir = input_dir(c->in);
    if (!dir) return MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    int64_t vocab_size = 0;
    mold_status st = put_general(c, w, "qwen2vl");
    if (!st) st = put_text_hparams(c, w, dir, &vocab_size);
    if (!st) st = put_tokenizer(c, w, dir, vocab_size);
    free(dir);
    return st;
}

/* ---- streaming quantization ------------------------------------------------------ */

typedef struct qjob {
    const mold_tensor *src;
    mold_dtype dtype;
    uint8_t *dst;
    int64_t rows, cols;
    uint64_t in_row_bytes, out_row_bytes;
    atomic_int failed;      /* first failure wins the message */
    mold_status st;
    char msg[512];
} qjob;

static void quant_item(void *ud, int index, int count) {
    qjob *j = ud;
    int64_t r0 = j->rows * index / count, r1 = j->rows * (index + 1) / count;
    const int64_t chunk = j->cols >= 65536 ? 1 : 65536 / j->cols; /* ~256 KB of f32 */
    float *buf = malloc((size_t)(chunk * j->cols) * sizeof(float));
    mold_status st = buf ? MOLD_OK : MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    for (int64_t r = r0; r < r1 && !st && !atomic_load(&j->failed); r += chunk) {
        int64_t nr = r1 - r < chunk ? r1 - r : chunk;
        const uint8_t *in = (const uint8_t *)j->src->data + (uint64_t)r * j->in_row_bytes;
        st = mold_convert_to_f32(j->src->dtype, in, buf, (size_t)(nr * j->cols));
        if (!st) st = mold_quantize(j->dtype, buf, j->dst + (uint64_t)r * j->out_row_bytes,
                                    nr * j->cols);
        if (st) mold_error_prefix("rows %lld..%lld", (long long)r, (long long)(r + nr - 1));
    }
    free(buf);
    if (st && !atomic_exchange(&j->failed, 1)) {
        j->st = st;
        snprintf(j->msg, sizeof j->msg, "%s", mold_error_message());
    }
}

static mold_status fill(void *ud, size_t index, void *dst, uint64_t n_bytes) {
    convert *c = ud;
    const plan_entry *p = &c->plan[index];
    const mold_tensor *t = p->src;
    int64_t cols = t->n_dims ? t->shape[t->n_dims - 1] : 1, n = mold_tensor_nelems(t);
    qjob j = {.src = t, .dtype = p->dtype, .dst = dst, .rows = cols ? n / cols : 0, .cols = cols};
    j.in_row_bytes = (uint64_t)cols * mold_dtype_get(t->dtype)->block_bytes;
    MOLD_TRY(mold_dtype_row_bytes(p->dtype, (uint64_t)cols, &j.out_row_bytes));
    MOLD_ASSERT(j.out_row_bytes * (uint64_t)j.rows == n_bytes);
    if (j.rows) mold_pool_run(c->pool, mold_pool_size(c->pool), quant_item, &j);
    if (j.failed)
        return MOLD_ERR(j.st, "%s: tensor '%s' -> %s: %s", c->in, t->name, mold_dtype_name(p->dtype),
                        j.msg);
    c->stats.bytes_in += t->n_bytes;
    c->stats.bytes_out += n_bytes;
    MOLD_LOGD("quantize: %s -> %s %s", t->name, p->name, mold_dtype_name(p->dtype));
    return MOLD_OK;
}

static mold_status add_tensors(convert *c, mold_gguf_writer *w) {
    for (size_t i = 0; i < c->n_plan; i++) {
        const plan_entry *p = &c->plan[i];
        int64_t ne[MOLD_GGUF_MAX_DIMS];
        for (int d = 0; d < p->src->n_dims; d++) ne[d] = p->src->shape[p->src->n_dims - 1 - d];
        MOLD_TRY(mold_gguf_writer_add_tensor(w, p->name, p->dtype, p->src->n_dims, ne, NULL));
        c->stats.n_by_type[p->dtype]++;
    }
    c->stats.n_tensors = c->n_plan;
    return MOLD_OK;
}

mold_status mold_gguf_quantize(const char *in, const char *out, const mold_quantize_opts *opts,
                               mold_quantize_stats *stats) {
    if (mold_quantize_parse_type(mold_dtype_name(opts->type)) == MOLD_DTYPE_INVALID)
        return MOLD_ERR(MOLD_E_INVALID, "quantize: --type %s: expected q8_0, q4_0, q4_1, q5_0, "
                        "q5_1, q4_K, q5_K or q6_K", mold_dtype_name(opts->type));
    convert c = {.in = in, .o = opts};
    mold_gguf_writer *w = NULL;
    mold_status st = mold_safetensors_open(in, &c.st);
    if (!st) st = detect_kind(&c);
    if (!st) st = build_plan(&c);
    if (!st) st = mold_pool_create(opts->n_threads, &c.pool);
    if (!st) st = mold_gguf_writer_create(&w);
    if (!st) st = put_metadata(&c, w);
    if (!st) st = add_tensors(&c, w);
    if (!st) st = mold_gguf_writer_write(w, out, fill, &c);
    c.stats.kind = c.kind;
    if (stats) *stats = c.stats;
    mold_gguf_writer_free(w);
    mold_pool_free(c.pool);
    for (size_t i = 0; i < c.n_plan; i++) free(c.plan[i].name);
    free(c.plan);
    mold_safetensors_close(c.st);
    return st;
}
