/*
 * qwen2_tokenizer_gguf.c — Qwen2 tokenizer from GGUF tokenizer.ggml.* keys.
 *
 * Owner: the gguf helper. The GGUF vocabulary is turned into the equivalent
 * Hugging Face tokenizer.json (model BPE, NFC normalizer, the Qwen2
 * Split+ByteLevel pre-tokenizer, added tokens) and handed to the regular
 * loader, so encoding is exactly the tested tokenizer.json path. The field
 * meanings follow llama.cpp's convert_hf_to_gguf.py (get_vocab_base) and
 * gguf-py's TokenType: 1 normal, 2 unknown, 3 control, 4 user-defined,
 * 5 unused, 6 byte.
 */
#include "qwen2_tokenizer_gguf.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "qwen2_tokenizer_impl.h" /* defines: MOLD_TOK_QWEN2_PATTERN */

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

int mold_gguf_has_tokenizer(const mold_gguf *g) {
    const mold_gguf_value *v = mold_gguf_find_kv(g, "tokenizer.ggml.tokens");
    return v && v->type == MOLD_GGUF_ARR && v->elem_type == MOLD_GGUF_STR;
}

static mold_status oom(const char *what) {
    return MOLD_ERR(MOLD_E_NOMEM, "%s: out of memory building the tokenizer", what);
}

/* The fixed parts of a Qwen2 tokenizer.json. */
static json_t *qwen2_pretokenizer(void) {
    return json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]}", "type",
                     "Sequence", "pretokenizers", "type", "Split", "pattern", "Regex",
                     MOLD_TOK_QWEN2_PATTERN, "behavior", "Isolated", "invert", 0, "type",
                     "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0, "use_regex", 0);
}

/* Checks tokenizer.ggml.model / .pre name the Qwen2 byte-level BPE. */
static mold_status check_kind(const mold_gguf *g) {
    const char *what = mold_gguf_path(g), *model = NULL, *pre = NULL;
    MOLD_TRY(mold_gguf_get_str(g, "tokenizer.ggml.model", true, &model));
    if (strcmp(model, "gpt2"))
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: tokenizer.ggml.model: expected gpt2 (byte-level "
                        "BPE), got %s", what, model);
    MOLD_TRY(mold_gguf_get_str(g, "tokenizer.ggml.pre", false, &pre));
    if (pre && strcmp(pre, "qwen2"))
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: tokenizer.ggml.pre: expected qwen2, got %s",
                        what, pre);
    return MOLD_OK;
}

/* Fills vocab (normal tokens) and added (control / user-defined). */
static mold_status split_tokens(const mold_gguf *g, json_t *vocab, json_t *added) {
    const char *what = mold_gguf_path(g);
    const mold_gguf_str *toks;
    uint64_t n;
    MOLD_TRY(mold_gguf_get_str_array(g, "tokenizer.ggml.tokens", true, &toks, &n));
    const mold_gguf_value *types = mold_gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (types && (types->type != MOLD_GGUF_ARR || types->elem_type == MOLD_GGUF_STR ||
                  types->elem_type == MOLD_GGUF_ARR || types->elem_type == MOLD_GGUF_F32 ||
                  types->elem_type == MOLD_GGUF_F64 || types->n != n))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: tokenizer.ggml.token_type: expected %llu integers",
                        what, (unsigned long long)n);
    if (n > TOK_MAX_ID)
        return MOLD_ERR(MOLD_E_RANGE, "%s: tokenizer.ggml.tokens: %llu tokens, at most %u",
                        what, (unsigned long long)n, TOK_MAX_ID);
    for (uint64_t i = 0; i < n; i++) {
        int64_t tt = types ? mold_gguf_array_int(types, i) : TT_NORMAL;
        if (tt == TT_UNKNOWN || tt == TT_UNUSED || tt == TT_BYTE) continue;
        if (tt != TT_NORMAL && tt != TT_CONTROL && tt != TT_USER)
            return MOLD_ERR(MOLD_E_FORMAT, "%s: tokenizer.ggml.token_type[%llu]: expected 1..6, "
                            "got %lld", what, (unsigned long long)i, (long long)tt);
        if (strlen(toks[i].s) != toks[i].len)
            return MOLD_ERR(MOLD_E_FORMAT, "%s: tokenizer.ggml.tokens[%llu]: NUL byte in token",
                            what, (unsigned long long)i);
        json_t *id = json_integer((json_int_t)i);
        if (!id) return oom(what);
        if (tt == TT_NORMAL) {
            if (json_object_set_new(vocab, toks[i].s, id))
                return MOLD_ERR(MOLD_E_FORMAT, "%s: tokenizer.ggml.tokens[%llu]: not valid UTF-8",
                                what, (unsigned long long)i);
            continue;
        }
        json_t *s = json_stringn(toks[i].s, (size_t)toks[i].len);
        json_t *t = s ? json_pack("{s:o, s:o, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", s,
                                  "special", tt == TT_CONTROL, "single_word", 0, "lstrip", 0,
                                  "rstrip", 0, "normalized", 0)
                      : NULL;
        if (!s) {
            json_decref(id);
            return MOLD_ERR(MOLD_E_FORMAT, "%s: tokenizer.ggml.tokens[%llu]: not valid UTF-8",
                            what, (unsigned long long)i);
        }
        if (!t || json_array_append_new(added, t)) return oom(what);
    }
    return MOLD_OK;
}

static mold_status merges_array(const mold_gguf *g, json_t *merges) {
    const char *what = mold_gguf_path(g);
    const mold_gguf_str *m;
    uint64_t n;
    MOLD_TRY(mold_gguf_get_str_array(g, "tokenizer.ggml.merges", true, &m, &n));
    for (uint64_t i = 0; i < n; i++) {
        json_t *s = json_stringn(m[i].s, (size_t)m[i].len);
        if (!s)
            return MOLD_ERR(MOLD_E_FORMAT, "%s: tokenizer.ggml.merges[%llu]: not valid UTF-8",
                            what, (unsigned long long)i);
        if (json_array_append_new(merges, s)) return oom(what);
    }
    return MOLD_OK;
}

mold_status mold_tokenizer_from_gguf(const mold_gguf *g, mold_tokenizer **out) {
    *out = NULL;
    const char *what = mold_gguf_path(g);
    MOLD_TRY(check_kind(g));
    json_t *vocab = json_object(), *added = json_array(), *merges = json_array();
    json_t *top = NULL;
    mold_status st = vocab && added && merges ? MOLD_OK : oom(what);
    if (st == MOLD_OK) st = split_tokens(g, vocab, added);
    if (st == MOLD_OK) st = merges_array(g, merges);
    if (st == MOLD_OK) {
        top = json_pack("{s:o, s:{s:s}, s:o, s:{s:s, s:n, s:n, s:O, s:O}}", "added_tokens",
                        added, "normalizer", "type", "NFC", "pre_tokenizer", qwen2_pretokenizer(),
                        "model", "type", "BPE", "dropout", "unk_token", "vocab", vocab, "merges",
                        merges);
        added = NULL; /* stolen by "o" (also on failure) */
        if (!top) st = oom(what);
    }
    char *text = NULL;
    if (st == MOLD_OK && !(text = json_dumps(top, JSON_COMPACT))) st = oom(what);
    json_decref(top);
    json_decref(vocab);
    json_decref(merges);
    json_decref(added);
    if (st != MOLD_OK) return st;
    char label[512];
    snprintf(label, sizeof label, "%s (tokenizer.ggml.*)", what);
    st = mold_tokenizer_load_json_buf(text, strlen(text), label, out);
    free(text);
    return st;
}
