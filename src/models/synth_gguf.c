/*
 * synth_gguf.c — the GGUF outputs of `mold synth`: per-tensor types as the
 * published quantizations choose them, and the two file conventions.
 *
 * Owner: the synth helper. References:
 *   transformer: city96/ComfyUI-GGUF tools/convert.py (source bf16 -> BF16;
 *     1-D and <= 1024-element tensors -> F32; names verbatim,
 *     general.architecture = "qwen_image") and tools/lcpp.patch @ 8f6d81e
 *     (img_tensor_get_type + the qwen_image "quantize" filter): img_in, txt_in,
 *     time_text_embed, proj_out, norm_out stay BF16 (never quantized);
 *     .to_v / .add_v_proj: Q4_K_M -> Q6_K; img_mlp.net.2 / txt_mlp.net.2:
 *     Q4_K_M -> Q6_K, Q4_0 -> Q4_1; every matrix of the first and last block:
 *     Q4_0 / Q4_K_M -> Q5_K (the patch hard-codes blocks 0 and 59; here it is
 *     the first and last of the preset, the same for 60 blocks); a K-quant row
 *     that is not a multiple of 256 falls back to F16. (Spec 4.5 describes the
 *     older patch where img_in was quantized and fell back to F16.)
 *   text encoder: llama.cpp convert_hf_to_gguf.py (Qwen2VL: arch "qwen2vl",
 *     blk.N.* names, qwen2vl.* hyper-parameters, gpt2 tokenizer metadata with
 *     [PADn] fill up to vocab_size) and llama-quant.cpp for Q4_K_M (attn_v and
 *     ffn_down of the use_more_bits layers -> Q6_K; K-quant fallback
 *     Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0). No output.weight (lm_head)
 *     is written; token_embd keeps the file type as in published files that
 *     have an output tensor.
 * `uniform` skips the per-tensor bumps: every quantizable matrix gets the
 * requested type (with the same fallbacks), for kernel benchmarks.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../base/json.h"      // defines: mold_json_load_file, mold_json_get_child
#include "../formats/gguf.h"   // defines: mold_gguf_writer_*, mold_gguf_llm_name
#include "synth_impl.h"

/* llama.cpp's llama_ftype numbers for general.file_type. */
#define FTYPE_MOSTLY_Q4_0 2
#define FTYPE_MOSTLY_Q8_0 7
#define FTYPE_MOSTLY_Q4_K_M 15
#define GGML_QUANT_VERSION 2

/* llama.cpp token types (llama_token_type / gguf.TokenType). */
enum { TOK_NORMAL = 1, TOK_CONTROL = 3, TOK_USER_DEFINED = 4, TOK_UNUSED = 5 };

static bool has(const char *s, const char *needle) { return strstr(s, needle) != NULL; }

static bool is_kquant(mold_dtype t) {
    return t == MOLD_Q2_K || t == MOLD_Q3_K || t == MOLD_Q4_K || t == MOLD_Q5_K || t == MOLD_Q6_K;
}

static uint32_t file_type(mold_dtype ft) {
    return ft == MOLD_Q4_0 ? FTYPE_MOSTLY_Q4_0 : ft == MOLD_Q8_0 ? FTYPE_MOSTLY_Q8_0
                                                                  : FTYPE_MOSTLY_Q4_K_M;
}

/* convert.py: 1-D tensors and tiny ones are F32. */
static bool keep_f32(const synth_tensor *t) {
    return t->n_dims == 1 || mold_synth_nelems(t) <= 1024;
}

/* ---- per-tensor types ---- */

void mold_synth_dit_gguf_types(synth_list *l, mold_dtype ft, int n_layers, bool uniform) {
    static const char *const unquantized[] = {"img_in.", "txt_in.", "time_text_embed.",
                                              "proj_out.", "norm_out."};
    for (size_t i = 0; i < l->n; i++) {
        synth_tensor *t = &l->t[i];
        if (keep_f32(t)) {
            t->dtype = MOLD_F32;
            continue;
        }
        bool quantize = true;
        for (size_t k = 0; k < sizeof unquantized / sizeof *unquantized; k++)
            if (!strncmp(t->name, unquantized[k], strlen(unquantized[k]))) quantize = false;
        if (!quantize) {
            t->dtype = MOLD_BF16;
            continue;
        }
        mold_dtype d = ft;
        if (!uniform) {
            if (has(t->name, ".to_v.weight") || has(t->name, ".add_v_proj.weight")) {
                if (ft == MOLD_Q4_K) d = MOLD_Q6_K;
            } else if (has(t->name, ".img_mlp.net.2.weight") ||
                       has(t->name, ".txt_mlp.net.2.weight")) {
                if (ft == MOLD_Q4_K) d = MOLD_Q6_K;
                if (ft == MOLD_Q4_0) d = MOLD_Q4_1;
            }
            if ((t->layer == 0 || t->layer == n_layers - 1) && (ft == MOLD_Q4_0 || ft == MOLD_Q4_K))
                d = MOLD_Q5_K;
        }
        if (is_kquant(d) && t->shape[t->n_dims - 1] % 256) d = MOLD_F16;
        t->dtype = d;
    }
}

/* llama.cpp's use_more_bits: the first and last eighth, and every third layer between. */
static bool use_more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

void mold_synth_text_gguf_types(synth_list *l, mold_dtype ft, int n_layers, bool uniform) {
    for (size_t i = 0; i < l->n; i++) {
        synth_tensor *t = &l->t[i];
        if (t->n_dims == 1) {
            t->dtype = MOLD_F32;
            continue;
        }
        mold_dtype d = ft;
        if (!uniform && ft == MOLD_Q4_K && t->layer >= 0 &&
            (has(t->name, ".v_proj.weight") || has(t->name, ".down_proj.weight")) &&
            use_more_bits(t->layer, n_layers))
            d = MOLD_Q6_K;
        if (is_kquant(d) && t->shape[t->n_dims - 1] % 256)
            d = d == MOLD_Q4_K ? MOLD_Q5_0 : d == MOLD_Q5_K ? MOLD_Q5_1 : MOLD_Q8_0;
        t->dtype = d;
    }
}

/* ---- writing ---- */

typedef struct fill_ctx {
    synth_gen *gen;
    const synth_list *l;
} fill_ctx;

static mold_status fill_tensor(void *ud, size_t index, void *dst, uint64_t n_bytes) {
    const fill_ctx *f = ud;
    const synth_tensor *t = &f->l->t[index];
    uint64_t want;
    MOLD_TRY(mold_synth_bytes(t, &want));
    MOLD_ASSERT(want == n_bytes);
    return mold_synth_gen_fill(f->gen, t, 0, mold_synth_nelems(t), dst);
}

/* Adds l's tensors (ggml order: dims reversed), renamed to llama.cpp names
 * when llm_names. */
static mold_status add_tensors(mold_gguf_writer *w, const synth_list *l, bool llm_names) {
    for (size_t i = 0; i < l->n; i++) {
        const synth_tensor *t = &l->t[i];
        int64_t ne[MOLD_GGUF_MAX_DIMS];
        MOLD_ASSERT(t->n_dims <= MOLD_GGUF_MAX_DIMS);
        for (int d = 0; d < t->n_dims; d++) ne[d] = t->shape[t->n_dims - 1 - d];
        char name[160];
        if (llm_names && !mold_gguf_llm_name(t->name, name, sizeof name))
            return MOLD_ERR(MOLD_E_INVALID, "synth: tensor '%s' has no llama.cpp name", t->name);
        MOLD_TRY(mold_gguf_writer_add_tensor(w, llm_names ? name : t->name, t->dtype, t->n_dims,
                                             ne, NULL));
    }
    return MOLD_OK;
}

static mold_status finish(mold_gguf_writer *w, synth_gen *g, const synth_list *l,
                          const char *path, uint64_t *n_bytes) {
    fill_ctx f = {g, l};
    MOLD_TRY(mold_gguf_writer_write(w, path, fill_tensor, &f));
    struct stat sb;
    if (stat(path, &sb) == 0) *n_bytes = (uint64_t)sb.st_size;
    return MOLD_OK;
}

mold_status mold_synth_write_dit_gguf(synth_gen *g, const synth_list *l, mold_dtype ft,
                                      const char *path, uint64_t *n_bytes) {
    mold_gguf_writer *w;
    MOLD_TRY(mold_gguf_writer_create(&w));
    mold_status st = mold_gguf_writer_add_str(w, "general.architecture", "qwen_image");
    if (!st) st = mold_gguf_writer_add_u32(w, "general.quantization_version", GGML_QUANT_VERSION);
    if (!st) st = mold_gguf_writer_add_u32(w, "general.file_type", file_type(ft));
    if (!st) st = add_tensors(w, l, false);
    if (!st) st = finish(w, g, l, path, n_bytes);
    mold_gguf_writer_free(w);
    return st;
}

/* ---- tokenizer metadata ---- */

typedef struct vocab {
    json_t *doc;          /* tokenizer.json (owned); token strings are borrowed from it */
    const char **tok;     /* (n) token text by id */
    int32_t *type;        /* (n) llama.cpp token type */
    char *pads;           /* "[PADi]" texts of ids the tokenizer leaves unused */
    size_t n;             /* == vocab_size of the model */
    const char **merges;  /* (n_merges) "a b" */
    char *merge_text;     /* joined merges of the [a, b] form */
    size_t n_merges;
    int64_t eos, pad;     /* <|im_end|>, <|endoftext|> */
} vocab;

static void vocab_free(vocab *v) {
    json_decref(v->doc);
    free(v->tok);
    free(v->type);
    free(v->pads);
    free(v->merges);
    free(v->merge_text);
}

/* Places token `text` at id, checking the range. */
static mold_status put_token(vocab *v, const char *path, const char *text, json_int_t id,
                             int32_t type) {
    if (id < 0 || (uint64_t)id >= v->n)
        return MOLD_ERR(MOLD_E_RANGE, "%s: token '%s': expected an id below the model's "
                        "vocab_size %zu, got %" JSON_INTEGER_FORMAT, path, text, v->n, id);
    v->tok[id] = text;
    v->type[id] = type;
    return MOLD_OK;
}

static mold_status load_tokens(vocab *v, const char *path) {
    json_t *model, *vmap, *added = NULL;
    MOLD_TRY(mold_json_get_child(v->doc, "model", path, true, JSON_OBJECT, &model));
    MOLD_TRY(mold_json_get_child(model, "vocab", path, true, JSON_OBJECT, &vmap));
    MOLD_TRY(mold_json_get_child(v->doc, "added_tokens", path, false, JSON_ARRAY, &added));
    const char *key;
    json_t *val;
    json_object_foreach(vmap, key, val) {
        if (!json_is_integer(val))
            return MOLD_ERR(MOLD_E_FORMAT, "%s: model.vocab['%s']: expected integer", path, key);
        MOLD_TRY(put_token(v, path, key, json_integer_value(val), TOK_NORMAL));
    }
    size_t i;
    json_array_foreach(added, i, val) {
        const char *text;
        int64_t id;
        bool special = false;
        MOLD_TRY(mold_json_get_str(val, "content", path, true, &text));
        MOLD_TRY(mold_json_get_int(val, "id", path, true, &id));
        MOLD_TRY(mold_json_get_bool(val, "special", path, false, &special));
        size_t len = strlen(text);
        bool looks = len >= 4 && !strncmp(text, "<|", 2) && !strcmp(text + len - 2, "|>");
        MOLD_TRY(put_token(v, path, text, id, special || looks ? TOK_CONTROL : TOK_USER_DEFINED));
        if (!strcmp(text, "<|im_end|>")) v->eos = id;
        if (!strcmp(text, "<|endoftext|>")) v->pad = id;
    }
    if (v->eos < 0 || v->pad < 0)
        return MOLD_ERR(MOLD_E_NOTFOUND, "%s: added_tokens: expected <|im_end|> and "
                        "<|endoftext|>, got %s missing", path, v->eos < 0 ? "<|im_end|>"
                                                                         : "<|endoftext|>");
    return MOLD_OK;
}

/* Ids no token uses become "[PADi]", UNUSED (convert_hf_to_gguf's padding). */
static mold_status fill_pads(vocab *v) {
    size_t n_holes = 0;
    for (size_t i = 0; i < v->n; i++) n_holes += !v->tok[i];
    if (!n_holes) return MOLD_OK;
    size_t cap = n_holes * 24, used = 0;
    if (!(v->pads = malloc(cap))) return MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory");
    for (size_t i = 0; i < v->n; i++) {
        if (v->tok[i]) continue;
        int k = snprintf(v->pads + used, cap - used, "[PAD%zu]", i);
        v->tok[i] = v->pads + used;
        v->type[i] = TOK_UNUSED;
        used += (size_t)k + 1;
    }
    return MOLD_OK;
}

/* model.merges as "a b" strings; both the string and the [a, b] forms. */
static mold_status load_merges(vocab *v, const char *path) {
    json_t *model, *m;
    MOLD_TRY(mold_json_get_child(v->doc, "model", path, true, JSON_OBJECT, &model));
    MOLD_TRY(mold_json_get_child(model, "merges", path, true, JSON_ARRAY, &m));
    size_t n = json_array_size(m), text = 0, i;
    json_t *e;
    json_array_foreach(m, i, e) {
        if (json_is_array(e) && json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
            json_is_string(json_array_get(e, 1)))
            text += strlen(json_string_value(json_array_get(e, 0))) +
                    strlen(json_string_value(json_array_get(e, 1))) + 2;
        else if (!json_is_string(e))
            return MOLD_ERR(MOLD_E_FORMAT, "%s: model.merges[%zu]: expected \"a b\" or [a, b]",
                            path, i);
    }
    v->merges = calloc(n ? n : 1, sizeof *v->merges);
    v->merge_text = malloc(text ? text : 1);
    if (!v->merges || !v->merge_text) return MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory");
    size_t used = 0;
    json_array_foreach(m, i, e) {
        if (json_is_string(e)) {
            v->merges[i] = json_string_value(e);
            continue;
        }
        int k = snprintf(v->merge_text + used, text - used, "%s %s",
                         json_string_value(json_array_get(e, 0)),
                         json_string_value(json_array_get(e, 1)));
        v->merges[i] = v->merge_text + used;
        used += (size_t)k + 1;
    }
    v->n_merges = n;
    return MOLD_OK;
}

static mold_status vocab_load(vocab *v, const char *path, size_t vocab_size) {
    memset(v, 0, sizeof *v);
    v->eos = v->pad = -1;
    v->n = vocab_size;
    MOLD_TRY(mold_json_load_file(path, &v->doc));
    if (!(v->tok = calloc(vocab_size, sizeof *v->tok)) ||
        !(v->type = calloc(vocab_size, sizeof *v->type)))
        return MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory for %zu tokens", vocab_size);
    MOLD_TRY(load_tokens(v, path));
    MOLD_TRY(fill_pads(v));
    return load_merges(v, path);
}

static mold_status add_tokenizer(mold_gguf_writer *w, const vocab *v) {
    MOLD_TRY(mold_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2"));
    MOLD_TRY(mold_gguf_writer_add_str(w, "tokenizer.ggml.pre", "qwen2"));
    MOLD_TRY(mold_gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", v->tok, v->n));
    MOLD_TRY(mold_gguf_writer_add_array(w, "tokenizer.ggml.token_type", MOLD_GGUF_I32, v->type,
                                        v->n));
    MOLD_TRY(mold_gguf_writer_add_str_array(w, "tokenizer.ggml.merges", v->merges, v->n_merges));
    MOLD_TRY(mold_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos));
    MOLD_TRY(mold_gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v->pad));
    MOLD_TRY(mold_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->pad));
    return mold_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", false);
}

/* qwen2vl.* keys as convert_hf_to_gguf.py writes them for Qwen2-VL / 2.5-VL. */
static mold_status add_text_hparams(mold_gguf_writer *w, const synth_text_hparams *hp) {
    MOLD_TRY(mold_gguf_writer_add_u32(w, "qwen2vl.block_count", (uint32_t)hp->n_layers));
    MOLD_TRY(mold_gguf_writer_add_u32(w, "qwen2vl.context_length", (uint32_t)hp->context));
    MOLD_TRY(mold_gguf_writer_add_u32(w, "qwen2vl.embedding_length", (uint32_t)hp->hidden));
    MOLD_TRY(mold_gguf_writer_add_u32(w, "qwen2vl.feed_forward_length", (uint32_t)hp->ffn));
    MOLD_TRY(mold_gguf_writer_add_u32(w, "qwen2vl.attention.head_count", (uint32_t)hp->heads));
    MOLD_TRY(mold_gguf_writer_add_u32(w, "qwen2vl.attention.head_count_kv",
                                      (uint32_t)hp->kv_heads));
    MOLD_TRY(mold_gguf_writer_add_f32(w, "qwen2vl.rope.freq_base", (float)hp->rope_theta));
    MOLD_TRY(mold_gguf_writer_add_f32(w, "qwen2vl.attention.layer_norm_rms_epsilon",
                                      (float)hp->rms_eps));
    const int32_t sections[4] = {hp->mrope[0], hp->mrope[1], hp->mrope[2], 0};
    return mold_gguf_writer_add_array(w, "qwen2vl.rope.dimension_sections", MOLD_GGUF_I32,
                                      sections, 4);
}

mold_status mold_synth_write_text_gguf(synth_gen *g, const synth_list *l,
                                       const synth_text_hparams *hp, mold_dtype ft,
                                       const char *tokenizer_json, const char *path,
                                       uint64_t *n_bytes) {
    vocab v;
    mold_status st = vocab_load(&v, tokenizer_json, (size_t)hp->vocab);
    mold_gguf_writer *w = NULL;
    if (!st) st = mold_gguf_writer_create(&w);
    if (!st) st = mold_gguf_writer_add_str(w, "general.architecture", "qwen2vl");
    if (!st) st = mold_gguf_writer_add_str(w, "general.name", hp->name);
    if (!st) st = mold_gguf_writer_add_u32(w, "general.file_type", file_type(ft));
    if (!st) st = mold_gguf_writer_add_u32(w, "general.quantization_version", GGML_QUANT_VERSION);
    if (!st) st = add_text_hparams(w, hp);
    if (!st) st = add_tokenizer(w, &v);
    if (!st) st = add_tensors(w, l, true);
    if (!st) st = finish(w, g, l, path, n_bytes);
    mold_gguf_writer_free(w);
    vocab_free(&v);
    return st;
}
