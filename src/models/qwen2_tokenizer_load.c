/*
 * qwen2_tokenizer_load.c — loads a Qwen2 byte-level BPE tokenizer (spec 2.1,
 * 2.3) from either
 *   - tokenizer.json (Hugging Face `tokenizers` format), or
 *   - vocab.json + merges.txt, with the added tokens from
 *     tokenizer_config.json (`added_tokens_decoder`) and/or added_tokens.json.
 *
 * Why a hand-written JSON scanner: the published tokenizer.json is 7 MB
 * (151,643 vocab entries, 151,387 merges); jansson needs ~310 ms just to build
 * its DOM on the reference machine, more than the whole load budget. The
 * scanner below validates the complete JSON grammar (strings, escapes, UTF-8,
 * numbers, nesting) of the whole file, reads model.vocab and model.merges
 * straight into the tokenizer's tables, and hands every other (small) value to
 * jansson so configuration fields are checked through base/json.h.
 *
 * Checks on hostile input: duplicate keys, duplicate ids/tokens, ids that are
 * negative, non-integer or sparse (table indexed by id), NUL inside tokens,
 * merges naming unknown tokens or producing one not in the vocabulary,
 * unsupported model options (dropout, unk_token, byte_fallback, suffixes,
 * ignore_merges, added-token lstrip/rstrip/single_word) and any pre-tokenizer
 * other than the Qwen2 one. Every failure releases what was acquired.
 *
 * Reference: HF tokenizers `models/bpe/serialization.rs` (merge semantics:
 * "a b" strings or ["a","b"] pairs, later duplicates overwrite) and
 * transformers `tokenization_qwen2.py` (merges.txt header and splitting).
 */
#include <jansson.h>   // defines: json_t, json_loadb (small config values)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/fs.h"    // defines: mold_mmap_open, mold_file_read_all, paths
#include "../base/json.h"  // defines: mold_json_get_* (field errors)
#include "qwen2_tokenizer_impl.h"

/* ---- growable buffers ---- */

typedef struct sbuf {
    char *data;
    size_t len, cap;
} sbuf;

static mold_status sbuf_reserve(sbuf *b, size_t extra) {
    if (extra > SIZE_MAX / 2 - b->len)
        return MOLD_ERR(MOLD_E_RANGE, "tokenizer: buffer size overflow");
    size_t need = b->len + extra + 1; /* +1: room for a terminating NUL */
    if (need <= b->cap)
        return MOLD_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return MOLD_ERR(MOLD_E_NOMEM, "tokenizer: out of memory (%zu bytes)", cap);
    b->data = p;
    b->cap = cap;
    return MOLD_OK;
}

static mold_status sbuf_put(sbuf *b, const void *p, size_t n) {
    MOLD_TRY(sbuf_reserve(b, n));
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return MOLD_OK;
}

/* ---- loader state ---- */

typedef struct item {
    uint32_t id;
    uint32_t off;     /* string in ld->strs */
    uint32_t len;
    uint8_t special;
} item;

typedef struct items {
    item *v;
    size_t n, cap;
} items;

typedef struct loader {
    mold_tokenizer *tok;
    const char *what;   /* file being read, for messages */
    sbuf strs;          /* all token strings; moved into tok->strs */
    items vocab;        /* BPE vocabulary entries */
    items added;        /* added / special tokens */
    sbuf s1, s2, cat;   /* string scratch */
} loader;

static mold_status items_push(items *it, item x) {
    if (it->n == it->cap) {
        size_t cap = it->cap ? it->cap * 2 : 1024;
        item *v = realloc(it->v, cap * sizeof(*v));
        if (!v)
            return MOLD_ERR(MOLD_E_NOMEM, "tokenizer: out of memory (%zu items)", cap);
        it->v = v;
        it->cap = cap;
    }
    it->v[it->n++] = x;
    return MOLD_OK;
}

/* Appends a token string (no NUL inside) to the string arena; *off gets its
 * offset. The arena keeps a NUL after every string. */
static mold_status strs_add(loader *ld, const char *s, size_t n, uint32_t *off) {
    if (memchr(s, 0, n))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: token contains a NUL character", ld->what);
    if (ld->strs.len + n + 1 > UINT32_MAX)
        return MOLD_ERR(MOLD_E_RANGE, "%s: token strings exceed 4 GiB", ld->what);
    *off = (uint32_t)ld->strs.len;
    MOLD_TRY(sbuf_put(&ld->strs, s, n));
    return sbuf_put(&ld->strs, "", 1);
}

/* ---- JSON scanner ----
 * Works on [p, end) of a mapped file; every function leaves p after what it
 * consumed. Errors name the byte offset from base. */

typedef struct jscan {
    const uint8_t *p, *end, *base;
    const char *what;
} jscan;

#define JMAX_DEPTH 64

static mold_status jerr(const jscan *s, const char *expected) {
    size_t off = (size_t)(s->p - s->base);
    if (s->p >= s->end)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: byte %zu: expected %s, got end of input", s->what,
                        off, expected);
    uint8_t c = *s->p;
    if (c >= 0x20 && c < 0x7f)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: byte %zu: expected %s, got '%c'", s->what, off,
                        expected, c);
    return MOLD_ERR(MOLD_E_FORMAT, "%s: byte %zu: expected %s, got byte 0x%02x", s->what, off,
                    expected, c);
}

static void jws(jscan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
        s->p++;
}

/* Skips whitespace and consumes c if it is next. */
static bool jeat(jscan *s, char c) {
    jws(s);
    if (s->p < s->end && *s->p == (uint8_t)c) {
        s->p++;
        return true;
    }
    return false;
}

static int hexval(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static mold_status jhex4(jscan *s, uint32_t *out) {
    if (s->end - s->p < 4)
        return jerr(s, "4 hex digits");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(s->p[i]);
        if (h < 0) {
            s->p += i;
            return jerr(s, "a hex digit");
        }
        v = v * 16 + (uint32_t)h;
    }
    s->p += 4;
    *out = v;
    return MOLD_OK;
}

static size_t utf8_put(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* \uXXXX (after the backslash and 'u'), with surrogate pairs. */
static mold_status junicode(jscan *s, sbuf *out) {
    uint32_t cp;
    MOLD_TRY(jhex4(s, &cp));
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: byte %zu: lone low surrogate \\u%04X", s->what,
                        (size_t)(s->p - s->base), cp);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
            return jerr(s, "a low surrogate \\uDC00-\\uDFFF");
        s->p += 2;
        uint32_t lo;
        MOLD_TRY(jhex4(s, &lo));
        if (lo < 0xDC00 || lo > 0xDFFF)
            return MOLD_ERR(MOLD_E_FORMAT, "%s: byte %zu: expected a low surrogate, got \\u%04X",
                            s->what, (size_t)(s->p - s->base), lo);
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    char u[4];
    size_t n = utf8_put(cp, u);
    return out ? sbuf_put(out, u, n) : MOLD_OK;
}

/* Reads a JSON string into out (decoded, NUL-terminated; may contain NUL from
 * \u0000). out == NULL validates and skips. */
static mold_status jstring(jscan *s, sbuf *out) {
    if (out)
        out->len = 0;
    if (!jeat(s, '"'))
        return jerr(s, "'\"'");
    if (out)
        MOLD_TRY(sbuf_reserve(out, 0));
    for (;;) {
        const uint8_t *q = s->p;
        uint8_t high = 0;
        while (q < s->end && *q != '"' && *q != '\\' && *q >= 0x20)
            high |= *q++;
        if (q > s->p) {
            /* '"' and '\\' are ASCII, so a run never splits a UTF-8 sequence. */
            size_t bad = high & 0x80 ? mold_tok_utf8_check(s->p, (size_t)(q - s->p))
                                     : (size_t)(q - s->p);
            if (bad != (size_t)(q - s->p)) {
                s->p += bad;
                return jerr(s, "valid UTF-8");
            }
            if (out)
                MOLD_TRY(sbuf_put(out, s->p, (size_t)(q - s->p)));
            s->p = q;
        }
        if (s->p >= s->end)
            return jerr(s, "closing '\"'");
        uint8_t c = *s->p;
        if (c == '"') {
            s->p++;
            if (out)
                out->data[out->len] = 0;
            return MOLD_OK;
        }
        if (c < 0x20)
            return jerr(s, "no control character in a string");
        s->p++; /* backslash */
        if (s->p >= s->end)
            return jerr(s, "an escape character");
        char e = 0;
        switch (*s->p) {
        case '"': e = '"'; break;
        case '\\': e = '\\'; break;
        case '/': e = '/'; break;
        case 'b': e = '\b'; break;
        case 'f': e = '\f'; break;
        case 'n': e = '\n'; break;
        case 'r': e = '\r'; break;
        case 't': e = '\t'; break;
        case 'u':
            s->p++;
            MOLD_TRY(junicode(s, out));
            continue;
        default:
            return jerr(s, "one of \"\\/bfnrtu after '\\'");
        }
        s->p++;
        if (out)
            MOLD_TRY(sbuf_put(out, &e, 1));
    }
}

static bool isdig(uint8_t c) { return c >= '0' && c <= '9'; }

/* Validates a JSON number. */
static mold_status jnumber(jscan *s) {
    if (s->p < s->end && *s->p == '-')
        s->p++;
    if (s->p >= s->end || !isdig(*s->p))
        return jerr(s, "a digit");
    if (*s->p == '0')
        s->p++;
    else
        while (s->p < s->end && isdig(*s->p))
            s->p++;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (s->p >= s->end || !isdig(*s->p))
            return jerr(s, "a digit after '.'");
        while (s->p < s->end && isdig(*s->p))
            s->p++;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (s->p >= s->end || !isdig(*s->p))
            return jerr(s, "a digit in the exponent");
        while (s->p < s->end && isdig(*s->p))
            s->p++;
    }
    return MOLD_OK;
}

/* A non-negative integer id below TOK_MAX_ID. */
static mold_status jid(jscan *s, uint32_t *out) {
    jws(s);
    const uint8_t *start = s->p;
    MOLD_TRY(jnumber(s));
    uint64_t v = 0;
    for (const uint8_t *q = start; q < s->p; q++) {
        if (!isdig(*q) || v >= TOK_MAX_ID) {
            s->p = start;
            return jerr(s, "a token id (integer 0..16777215)");
        }
        v = v * 10 + (uint64_t)(*q - '0');
    }
    if (v >= TOK_MAX_ID) {
        s->p = start;
        return jerr(s, "a token id (integer 0..16777215)");
    }
    *out = (uint32_t)v;
    return MOLD_OK;
}

static mold_status jliteral(jscan *s, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return jerr(s, lit);
    s->p += n;
    return MOLD_OK;
}

/* Validates and skips any JSON value. */
static mold_status jskip(jscan *s, int depth) {
    if (depth > JMAX_DEPTH)
        return jerr(s, "nesting depth <= 64");
    jws(s);
    if (s->p >= s->end)
        return jerr(s, "a value");
    switch (*s->p) {
    case '"':
        return jstring(s, NULL);
    case 't': return jliteral(s, "true");
    case 'f': return jliteral(s, "false");
    case 'n': return jliteral(s, "null");
    case '{':
        s->p++;
        if (jeat(s, '}'))
            return MOLD_OK;
        do {
            MOLD_TRY(jstring(s, NULL));
            if (!jeat(s, ':'))
                return jerr(s, "':'");
            MOLD_TRY(jskip(s, depth + 1));
        } while (jeat(s, ','));
        return jeat(s, '}') ? MOLD_OK : jerr(s, "',' or '}'");
    case '[':
        s->p++;
        if (jeat(s, ']'))
            return MOLD_OK;
        do {
            MOLD_TRY(jskip(s, depth + 1));
        } while (jeat(s, ','));
        return jeat(s, ']') ? MOLD_OK : jerr(s, "',' or ']'");
    default:
        if (*s->p == '-' || isdig(*s->p))
            return jnumber(s);
        return jerr(s, "a JSON value");
    }
}

/* Handler for a "big" member: consumes the value at s->p. */
typedef mold_status (*jbig_fn)(void *ctx, size_t which, jscan *s);

/* Scans one object. The values of the keys in big[] (n_big of them) go to
 * on_big (which must consume them); every other value is parsed by jansson
 * into *rest (a new object, caller frees). Duplicate keys are an error. */
static mold_status jobject(jscan *s, const char *const *big, size_t n_big, jbig_fn on_big,
                           void *ctx, json_t **rest, sbuf *key) {
    bool seen[4] = {false};
    MOLD_ASSERT(n_big <= 4);
    *rest = json_object();
    if (!*rest)
        return MOLD_ERR(MOLD_E_NOMEM, "tokenizer: out of memory");
    if (!jeat(s, '{'))
        return jerr(s, "'{'");
    if (jeat(s, '}'))
        return MOLD_OK;
    do {
        MOLD_TRY(jstring(s, key));
        if (memchr(key->data, 0, key->len))
            return MOLD_ERR(MOLD_E_FORMAT, "%s: object key contains NUL", s->what);
        if (!jeat(s, ':'))
            return jerr(s, "':'");
        size_t i = 0;
        while (i < n_big && strcmp(big[i], key->data) != 0)
            i++;
        bool dup = i < n_big ? seen[i] : json_object_get(*rest, key->data) != NULL;
        if (dup)
            return MOLD_ERR(MOLD_E_FORMAT, "%s: duplicate key '%s'", s->what, key->data);
        jws(s);
        if (i < n_big) {
            seen[i] = true;
            MOLD_TRY(on_big(ctx, i, s)); /* may reuse key: not read after this */
            continue;
        }
        const uint8_t *start = s->p;
        MOLD_TRY(jskip(s, 1));
        json_error_t je;
        json_t *v = json_loadb((const char *)start, (size_t)(s->p - start), JSON_DECODE_ANY, &je);
        if (!v)
            return MOLD_ERR(MOLD_E_FORMAT, "%s: key '%s': %s", s->what, key->data, je.text);
        json_object_set_new(*rest, key->data, v);
    } while (jeat(s, ','));
    return jeat(s, '}') ? MOLD_OK : jerr(s, "',' or '}'");
}

/* ---- vocabulary and merges ---- */

/* Reads {"token": id, ...} into ld->vocab. */
static mold_status parse_vocab(loader *ld, jscan *s) {
    if (!jeat(s, '{'))
        return jerr(s, "'{' (the vocabulary object)");
    if (jeat(s, '}'))
        return MOLD_OK;
    do {
        MOLD_TRY(jstring(s, &ld->s1));
        if (!jeat(s, ':'))
            return jerr(s, "':'");
        item it = {0};
        MOLD_TRY(jid(s, &it.id));
        it.len = (uint32_t)ld->s1.len;
        MOLD_TRY(strs_add(ld, ld->s1.data, ld->s1.len, &it.off));
        MOLD_TRY(items_push(&ld->vocab, it));
    } while (jeat(s, ','));
    return jeat(s, '}') ? MOLD_OK : jerr(s, "',' or '}'");
}

static uint64_t merge_hash(uint64_t key) {
    key *= 0x9E3779B97F4A7C15ull;
    return key ^ (key >> 29);
}

static mold_status merges_grow(mold_tokenizer *tok) {
    size_t cap = tok->merge_slots ? (tok->merge_mask + 1) * 2 : 1024;
    tok_merge_slot *ns = malloc(cap * sizeof(*ns));
    if (!ns)
        return MOLD_ERR(MOLD_E_NOMEM, "tokenizer: out of memory (%zu merge slots)", cap);
    for (size_t i = 0; i < cap; i++)
        ns[i].key = UINT64_MAX;
    for (size_t i = 0; tok->merge_slots && i <= tok->merge_mask; i++) {
        tok_merge_slot *o = &tok->merge_slots[i];
        if (o->key == UINT64_MAX)
            continue;
        size_t j = merge_hash(o->key) & (cap - 1);
        while (ns[j].key != UINT64_MAX)
            j = (j + 1) & (cap - 1);
        ns[j] = *o;
    }
    free(tok->merge_slots);
    tok->merge_slots = ns;
    tok->merge_mask = cap - 1;
    return MOLD_OK;
}

/* Inserts or overwrites (a, b) -> (rank, id): a later duplicate wins, as in
 * the reference (its merge map is built by collecting into a hash map). */
static mold_status merge_put(mold_tokenizer *tok, uint32_t a, uint32_t b, uint32_t rank,
                             uint32_t id) {
    /* Load factor <= 3/4: keeps the Qwen2.5 table at 4 MB (2^18 slots); the
     * encoder's time is dominated by cache misses on this table. */
    if (!tok->merge_slots || (tok->n_merges + 1) * 4 > (tok->merge_mask + 1) * 3)
        MOLD_TRY(merges_grow(tok));
    uint64_t key = ((uint64_t)a << 32) | b;
    size_t j = merge_hash(key) & tok->merge_mask;
    while (tok->merge_slots[j].key != UINT64_MAX && tok->merge_slots[j].key != key)
        j = (j + 1) & tok->merge_mask;
    if (tok->merge_slots[j].key == UINT64_MAX)
        tok->n_merges++;
    tok->merge_slots[j] = (tok_merge_slot){key, rank, id};
    return MOLD_OK;
}

/* Adds merge number `rank` (0-based) of left a and right b. */
static mold_status add_merge(loader *ld, const char *a, size_t la, const char *b, size_t lb,
                             size_t rank) {
    if (rank >= UINT32_MAX)
        return MOLD_ERR(MOLD_E_RANGE, "%s: too many merges", ld->what);
    int32_t ia = mold_tok_vocab_find(ld->tok, a, la);
    int32_t ib = mold_tok_vocab_find(ld->tok, b, lb);
    if (ia < 0 || ib < 0)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: merge %zu ('%.*s' '%.*s'): expected tokens of the "
                        "vocabulary, got unknown '%.*s'", ld->what, rank, (int)la, a, (int)lb, b,
                        ia < 0 ? (int)la : (int)lb, ia < 0 ? a : b);
    ld->cat.len = 0;
    MOLD_TRY(sbuf_put(&ld->cat, a, la));
    MOLD_TRY(sbuf_put(&ld->cat, b, lb));
    int32_t im = mold_tok_vocab_find(ld->tok, ld->cat.data, ld->cat.len);
    if (im < 0)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: merge %zu: expected the merged token '%s' in the "
                        "vocabulary, it is missing", ld->what, rank, ld->cat.data);
    return merge_put(ld->tok, (uint32_t)ia, (uint32_t)ib, (uint32_t)rank, (uint32_t)im);
}

/* model.merges: ["a b", ...] or [["a", "b"], ...]. */
static mold_status parse_merges_json(loader *ld, jscan *s) {
    if (!jeat(s, '['))
        return jerr(s, "'[' (the merges array)");
    if (jeat(s, ']'))
        return MOLD_OK;
    size_t rank = 0;
    do {
        jws(s);
        if (s->p < s->end && *s->p == '[') {
            s->p++;
            MOLD_TRY(jstring(s, &ld->s1));
            if (!jeat(s, ','))
                return jerr(s, "',' (a merge pair has two strings)");
            MOLD_TRY(jstring(s, &ld->s2));
            if (!jeat(s, ']'))
                return jerr(s, "']' (a merge pair has two strings)");
            MOLD_TRY(add_merge(ld, ld->s1.data, ld->s1.len, ld->s2.data, ld->s2.len, rank));
        } else {
            MOLD_TRY(jstring(s, &ld->s1));
            const char *m = ld->s1.data;
            const char *sp = memchr(m, ' ', ld->s1.len);
            size_t la = sp ? (size_t)(sp - m) : 0;
            if (!sp || memchr(sp + 1, ' ', ld->s1.len - la - 1))
                return MOLD_ERR(MOLD_E_FORMAT, "%s: merge %zu: expected \"left right\" with one "
                                "space, got \"%s\"", ld->what, rank, m);
            MOLD_TRY(add_merge(ld, m, la, sp + 1, ld->s1.len - la - 1, rank));
        }
        rank++;
    } while (jeat(s, ','));
    return jeat(s, ']') ? MOLD_OK : jerr(s, "',' or ']'");
}

static bool is_ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* merges.txt: optional "#version" first line, then "left right" per line
 * (as tokenization_qwen2.py: lines are stripped, empty ones skipped). */
static mold_status parse_merges_txt(loader *ld, const char *buf, size_t n) {
    const char *p = buf, *end = buf + n;
    size_t rank = 0, line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *a = p, *e = nl ? nl : end;
        p = nl ? nl + 1 : end;
        line++;
        while (a < e && is_ascii_space(*a)) a++;
        while (e > a && is_ascii_space(e[-1])) e--;
        if (a == e || (line == 1 && e - a >= 9 && !memcmp(a, "#version:", 9)))
            continue;
        const char *ae = a;
        while (ae < e && !is_ascii_space(*ae)) ae++;
        const char *b = ae;
        while (b < e && is_ascii_space(*b)) b++;
        const char *be = b;
        while (be < e && !is_ascii_space(*be)) be++;
        if (b == e || be != e)
            return MOLD_ERR(MOLD_E_FORMAT, "%s: line %zu: expected \"left right\", got '%.*s'",
                            ld->what, line, (int)(e - a), a);
        MOLD_TRY(add_merge(ld, a, (size_t)(ae - a), b, (size_t)(be - b), rank++));
    }
    return MOLD_OK;
}

/* ---- added tokens ---- */

/* Refuses added-token options this tokenizer does not implement. */
static mold_status check_added_flags(const json_t *t, const char *what, const char *content) {
    static const char *const flags[] = {"lstrip", "rstrip", "single_word"};
    for (size_t i = 0; i < 3; i++) {
        bool v = false;
        MOLD_TRY(mold_json_get_bool(t, flags[i], what, false, &v));
        if (v)
            return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: added token '%s': expected %s false, got "
                            "true (not supported)", what, content, flags[i]);
    }
    return MOLD_OK;
}

static mold_status add_added(loader *ld, int64_t id, const char *content, bool special) {
    if (id < 0 || id >= TOK_MAX_ID)
        return MOLD_ERR(MOLD_E_RANGE, "%s: added token '%s': expected id 0..%u, got %lld",
                        ld->what, content, TOK_MAX_ID - 1, (long long)id);
    size_t n = strlen(content);
    if (n == 0)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: added token %lld: expected non-empty content",
                        ld->what, (long long)id);
    item it = {.id = (uint32_t)id, .len = (uint32_t)n, .special = special};
    MOLD_TRY(strs_add(ld, content, n, &it.off));
    return items_push(&ld->added, it);
}

/* tokenizer.json "added_tokens": [{"id", "content", "special", ...}]. */
static mold_status parse_added_array(loader *ld, const json_t *arr) {
    if (!json_is_array(arr))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: field 'added_tokens': expected array", ld->what);
    size_t i;
    json_t *t;
    json_array_foreach(arr, i, t) {
        int64_t id = 0;
        const char *content = NULL;
        bool special = false;
        if (!json_is_object(t))
            return MOLD_ERR(MOLD_E_FORMAT, "%s: added_tokens[%zu]: expected object", ld->what, i);
        MOLD_TRY(mold_json_get_int(t, "id", ld->what, true, &id));
        MOLD_TRY(mold_json_get_str(t, "content", ld->what, true, &content));
        MOLD_TRY(mold_json_get_bool(t, "special", ld->what, false, &special));
        MOLD_TRY(check_added_flags(t, ld->what, content));
        MOLD_TRY(add_added(ld, id, content, special));
    }
    return MOLD_OK;
}

/* tokenizer_config.json "added_tokens_decoder": {"151643": {"content", ...}}. */
static mold_status parse_added_decoder(loader *ld, const json_t *obj) {
    const char *key;
    json_t *t;
    json_object_foreach((json_t *)obj, key, t) {
        char *endp = NULL;
        long long id = strtoll(key, &endp, 10);
        if (!*key || *endp || !json_is_object(t))
            return MOLD_ERR(MOLD_E_FORMAT, "%s: added_tokens_decoder: expected \"<id>\": {...}, "
                            "got key '%s'", ld->what, key);
        const char *content = NULL;
        bool special = false;
        MOLD_TRY(mold_json_get_str(t, "content", ld->what, true, &content));
        MOLD_TRY(mold_json_get_bool(t, "special", ld->what, false, &special));
        MOLD_TRY(check_added_flags(t, ld->what, content));
        MOLD_TRY(add_added(ld, id, content, special));
    }
    return MOLD_OK;
}

/* added_tokens.json: {"<|endoftext|>": 151643, ...}. */
static mold_status parse_added_map(loader *ld, const json_t *obj) {
    if (!json_is_object(obj))
        return MOLD_ERR(MOLD_E_FORMAT, "%s: expected an object {\"token\": id}", ld->what);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        if (!json_is_integer(v))
            return MOLD_ERR(MOLD_E_FORMAT, "%s: token '%s': expected integer id", ld->what, key);
        MOLD_TRY(add_added(ld, json_integer_value(v), key, true));
    }
    return MOLD_OK;
}

/* ---- building the tables ---- */

static mold_status vocab_insert(loader *ld, uint32_t id) {
    mold_tokenizer *tok = ld->tok;
    const tok_entry *e = &tok->entries[id];
    const char *s = tok->strs + e->str_off;
    uint64_t h = mold_tok_hash(s, e->str_len);
    size_t j = h & tok->vocab_mask;
    for (uint64_t v; (v = tok->vocab_slots[j]) != 0; j = (j + 1) & tok->vocab_mask) {
        const tok_entry *o = &tok->entries[(uint32_t)v - 1];
        if ((v >> 32) == (h >> 32) && o->str_len == e->str_len &&
            !memcmp(tok->strs + o->str_off, s, e->str_len))
            return MOLD_ERR(MOLD_E_FORMAT, "%s: duplicate vocabulary token '%s' (ids %u and %u)",
                            ld->what, s, (uint32_t)v - 1, id);
    }
    tok->vocab_slots[j] = (h & 0xFFFFFFFF00000000ull) | (id + 1);
    return MOLD_OK;
}

/* Builds entries[] and the vocabulary hash from ld->vocab and ld->added.
 * The string arena must not grow afterwards (entries point into it). */
static mold_status build_tables(loader *ld) {
    mold_tokenizer *tok = ld->tok;
    size_t max_id = 0, n_all = ld->vocab.n + ld->added.n;
    if (ld->vocab.n == 0)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: expected a non-empty vocabulary", ld->what);
    for (size_t i = 0; i < ld->vocab.n; i++)
        max_id = ld->vocab.v[i].id > max_id ? ld->vocab.v[i].id : max_id;
    for (size_t i = 0; i < ld->added.n; i++)
        max_id = ld->added.v[i].id > max_id ? ld->added.v[i].id : max_id;
    /* The table is indexed by id: refuse sparse ids that would blow it up. */
    if (max_id >= 2 * n_all + 1024)
        return MOLD_ERR(MOLD_E_RANGE, "%s: expected dense token ids, got max id %zu for %zu "
                        "tokens", ld->what, max_id, n_all);
    tok->n_ids = max_id + 1;
    tok->entries = calloc(tok->n_ids, sizeof(*tok->entries));
    size_t slots = 1;
    while (slots < 2 * ld->vocab.n)
        slots *= 2;
    tok->vocab_slots = calloc(slots, sizeof(*tok->vocab_slots));
    if (!tok->entries || !tok->vocab_slots)
        return MOLD_ERR(MOLD_E_NOMEM, "tokenizer: out of memory (%zu ids)", tok->n_ids);
    tok->vocab_mask = slots - 1;
    tok->strs = ld->strs.data; /* moved: the arena is final from here on */
    tok->strs_bytes = ld->strs.len;
    ld->strs = (sbuf){0};
    for (size_t i = 0; i < ld->vocab.n; i++) {
        const item *it = &ld->vocab.v[i];
        tok_entry *e = &tok->entries[it->id];
        if (e->kind != TOK_NONE)
            return MOLD_ERR(MOLD_E_FORMAT, "%s: duplicate vocabulary id %u ('%s' and '%s')",
                            ld->what, it->id, tok->strs + e->str_off, tok->strs + it->off);
        *e = (tok_entry){.str_off = it->off, .str_len = it->len, .kind = TOK_VOCAB,
                         .in_vocab = 1};
        MOLD_TRY(vocab_insert(ld, it->id));
    }
    tok->n_vocab = ld->vocab.n;
    return MOLD_OK;
}

/* Marks the added tokens in entries[] and builds the longest-first list. */
static int added_cmp(const void *a, const void *b) {
    const tok_added *x = a, *y = b;
    return x->len != y->len ? (x->len < y->len ? 1 : -1) : (x->id > y->id) - (x->id < y->id);
}

static mold_status build_added(loader *ld) {
    mold_tokenizer *tok = ld->tok;
    tok->added = calloc(ld->added.n ? ld->added.n : 1, sizeof(*tok->added));
    if (!tok->added)
        return MOLD_ERR(MOLD_E_NOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < ld->added.n; i++) {
        const item *it = &ld->added.v[i];
        tok_entry *e = &tok->entries[it->id];
        const char *s = tok->strs + it->off;
        if (e->kind != TOK_NONE) {
            /* The same token may be declared twice (tokenizer_config.json and
             * added_tokens.json) or be a vocabulary entry; never two strings. */
            if (e->str_len != it->len || memcmp(tok->strs + e->str_off, s, it->len))
                return MOLD_ERR(MOLD_E_FORMAT, "%s: token id %u: expected '%s', got '%s'",
                                ld->what, it->id, tok->strs + e->str_off, s);
            if (e->kind == TOK_ADDED) {
                e->special |= it->special;
                continue;
            }
        } else {
            e->str_off = it->off;
            e->str_len = it->len;
        }
        e->kind = TOK_ADDED;
        e->special = it->special;
        for (size_t k = 0; k < tok->n_added; k++)
            if (tok->added[k].len == it->len && !memcmp(tok->added[k].content, s, it->len))
                return MOLD_ERR(MOLD_E_FORMAT, "%s: added token '%s' has two ids (%u and %u)",
                                ld->what, s, tok->added[k].id, it->id);
        tok->added[tok->n_added++] = (tok_added){it->id, it->len, s};
        tok->added_first[(uint8_t)s[0]] = 1;
    }
    qsort(tok->added, tok->n_added, sizeof(*tok->added), added_cmp);
    return MOLD_OK;
}

/* Decoded bytes of every token (ByteLevel decoder: a token whose characters
 * are all byte symbols decodes to those bytes, any other token to its own
 * UTF-8), and the single-byte symbol ids. */
static mold_status build_decoded(mold_tokenizer *tok) {
    tok->dec = malloc(tok->strs_bytes ? tok->strs_bytes : 1);
    if (!tok->dec)
        return MOLD_ERR(MOLD_E_NOMEM, "tokenizer: out of memory");
    int16_t inv[256 + 68]; /* code point -> byte; -1 for other characters */
    for (uint32_t cp = 0; cp < 256 + 68; cp++)
        inv[cp] = (int16_t)mold_tok_cp_to_byte(cp);
    size_t used = 0;
    for (size_t id = 0; id < tok->n_ids; id++) {
        tok_entry *e = &tok->entries[id];
        if (e->kind == TOK_NONE)
            continue;
        const uint8_t *s = (const uint8_t *)tok->strs + e->str_off;
        size_t i = 0, n = 0;
        uint8_t *o = tok->dec + used;
        while (i < e->str_len) {
            uint32_t cp = s[i];
            size_t k = cp < 0x80 ? 1 : cp < 0xE0 ? 2 : cp < 0xF0 ? 3 : 4;
            if (k == 2)
                cp = ((cp & 0x1F) << 6) | (s[i + 1] & 0x3F);
            int b = k <= 2 && cp < 256 + 68 ? inv[cp] : -1;
            if (b < 0)
                break;
            o[n++] = (uint8_t)b;
            i += k;
        }
        if (i < e->str_len) { /* not all byte symbols: the raw string */
            memcpy(o, s, e->str_len);
            n = e->str_len;
        }
        e->dec_off = (uint32_t)used;
        e->dec_len = (uint32_t)n;
        used += n;
    }
    tok->dec_bytes = used;
    for (int b = 0; b < 256; b++) {
        char u[4];
        size_t n = utf8_put(mold_tok_byte_to_cp((uint8_t)b), u);
        tok->byte_id[b] = mold_tok_vocab_find(tok, u, n);
    }
    return MOLD_OK;
}

/* ---- configuration checks (tokenizer.json) ---- */

static mold_status check_model(const json_t *m, const char *what) {
    const char *type = NULL, *s = NULL;
    MOLD_TRY(mold_json_get_str(m, "type", what, false, &type));
    if (type && strcmp(type, "BPE"))
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: model.type: expected BPE, got %s", what, type);
    static const char *const must_null[] = {"dropout", "unk_token"};
    for (size_t i = 0; i < 2; i++) {
        const json_t *v = json_object_get(m, must_null[i]);
        if (v && !json_is_null(v))
            return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: model.%s: expected null (not supported)",
                            what, must_null[i]);
    }
    static const char *const must_empty[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < 2; i++) {
        s = NULL;
        MOLD_TRY(mold_json_get_str(m, must_empty[i], what, false, &s));
        if (s && *s)
            return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: model.%s: expected empty, got '%s'", what,
                            must_empty[i], s);
    }
    static const char *const must_false[] = {"byte_fallback", "ignore_merges"};
    for (size_t i = 0; i < 2; i++) {
        bool v = false;
        MOLD_TRY(mold_json_get_bool(m, must_false[i], what, false, &v));
        if (v)
            return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: model.%s: expected false, got true", what,
                            must_false[i]);
    }
    return MOLD_OK;
}

/* The pre-tokenizer must be the Qwen2 one: Sequence[Split(regex, Isolated),
 * ByteLevel(add_prefix_space=false, use_regex=false)]. */
static mold_status check_pretok(const json_t *pt, const char *what) {
    const char *type = NULL, *pattern = NULL, *behavior = NULL;
    json_t *seq = NULL, *pat = NULL;
    bool flag = false;
    MOLD_TRY(mold_json_get_str(pt, "type", what, true, &type));
    if (strcmp(type, "Sequence"))
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: pre_tokenizer.type: expected Sequence, got %s",
                        what, type);
    MOLD_TRY(mold_json_get_child(pt, "pretokenizers", what, true, JSON_ARRAY, &seq));
    json_t *split = json_array_get(seq, 0), *bl = json_array_get(seq, 1);
    if (json_array_size(seq) != 2 || !json_is_object(split) || !json_is_object(bl))
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: pre_tokenizer: expected [Split, ByteLevel], got "
                        "%zu entries", what, json_array_size(seq));
    MOLD_TRY(mold_json_get_str(split, "type", what, true, &type));
    MOLD_TRY(mold_json_get_child(split, "pattern", what, true, JSON_OBJECT, &pat));
    MOLD_TRY(mold_json_get_str(pat, "Regex", what, true, &pattern));
    MOLD_TRY(mold_json_get_str(split, "behavior", what, true, &behavior));
    MOLD_TRY(mold_json_get_bool(split, "invert", what, false, &flag));
    if (strcmp(type, "Split") || strcmp(pattern, MOLD_TOK_QWEN2_PATTERN) ||
        strcmp(behavior, "Isolated") || flag)
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: pre_tokenizer: expected Split(Qwen2 regex, "
                        "Isolated), got %s(%s, %s)", what, type, pattern, behavior);
    MOLD_TRY(mold_json_get_str(bl, "type", what, true, &type));
    MOLD_TRY(mold_json_get_bool(bl, "add_prefix_space", what, false, &flag));
    bool use_regex = true;
    MOLD_TRY(mold_json_get_bool(bl, "use_regex", what, false, &use_regex));
    if (strcmp(type, "ByteLevel") || flag || use_regex)
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: pre_tokenizer: expected ByteLevel("
                        "add_prefix_space=false, use_regex=false), got %s", what, type);
    return MOLD_OK;
}

static mold_status check_top(mold_tokenizer *tok, const json_t *top, const char *what) {
    const json_t *norm = json_object_get(top, "normalizer");
    tok->nfc = false;
    if (norm && !json_is_null(norm)) {
        const char *type = NULL;
        MOLD_TRY(mold_json_get_str(norm, "type", what, true, &type));
        if (strcmp(type, "NFC"))
            return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: normalizer: expected NFC or null, got %s",
                            what, type);
        tok->nfc = true;
    }
    const json_t *pt = json_object_get(top, "pre_tokenizer");
    if (!json_is_object(pt))
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: field 'pre_tokenizer': expected the Qwen2 "
                        "Split+ByteLevel object", what);
    return check_pretok(pt, what);
}

/* ---- the two file layouts ---- */

/* tokenizer.json in one pass over the file: model.vocab is read where it
 * stands; model.merges needs the finished vocabulary (and added tokens, which
 * may come later), so its span is recorded and parsed at the end. */
typedef struct tj_ctx {
    loader *ld;
    json_t *model;                /* model members other than vocab / merges */
    const uint8_t *merges, *merges_end;
    bool have_vocab;
} tj_ctx;

static mold_status tj_model_member(void *ctx, size_t which, jscan *s) {
    tj_ctx *c = ctx;
    if (which == 0) {
        c->have_vocab = true;
        return parse_vocab(c->ld, s);
    }
    c->merges = s->p;
    MOLD_TRY(jskip(s, 1));
    c->merges_end = s->p;
    return MOLD_OK;
}

static mold_status tj_top_member(void *ctx, size_t which, jscan *s) {
    static const char *const model_big[] = {"vocab", "merges"};
    tj_ctx *c = ctx;
    (void)which;
    return jobject(s, model_big, 2, tj_model_member, c, &c->model, &c->ld->s2);
}

/* Parses a tokenizer.json image; `what` names it in errors. */
static mold_status load_json_image(loader *ld, const uint8_t *data, size_t size,
                                   const char *what) {
    json_t *top = NULL;
    ld->what = what;
    jscan s = {data, data + size, data, what};
    static const char *const top_big[] = {"model"};
    tj_ctx c = {.ld = ld};
    mold_status st = jobject(&s, top_big, 1, tj_top_member, &c, &top, &ld->s1);
    if (st == MOLD_OK && (jws(&s), s.p != s.end))
        st = jerr(&s, "end of file after the top-level object");
    if (st == MOLD_OK && !c.model)
        st = MOLD_ERR(MOLD_E_FORMAT, "%s: missing field 'model'", what);
    if (st == MOLD_OK && (!c.have_vocab || !c.merges))
        st = MOLD_ERR(MOLD_E_FORMAT, "%s: missing field 'model.%s'", what,
                      c.have_vocab ? "merges" : "vocab");
    if (st == MOLD_OK)
        st = check_model(c.model, what);
    if (st == MOLD_OK)
        st = check_top(ld->tok, top, what);
    const json_t *added = top ? json_object_get(top, "added_tokens") : NULL;
    if (st == MOLD_OK && added && !json_is_null(added))
        st = parse_added_array(ld, added);
    if (st == MOLD_OK)
        st = build_tables(ld);
    if (st == MOLD_OK) {
        jscan gs = {c.merges, c.merges_end, data, what};
        st = parse_merges_json(ld, &gs);
    }
    json_decref(top);
    json_decref(c.model);
    return st;
}

static mold_status load_tokenizer_json(loader *ld, const char *path) {
    mold_mmap m = {0};
    MOLD_TRY(mold_mmap_open(path, &m));
    mold_status st = load_json_image(ld, m.data, (size_t)m.size, path);
    mold_mmap_close(&m);
    return st;
}

/* Reads the optional added-token files of a vocab.json + merges.txt dir. */
static mold_status load_added_files(loader *ld, const char *dir) {
    char *cfg = mold_path_join(dir, "tokenizer_config.json");
    char *map = mold_path_join(dir, "added_tokens.json");
    json_t *j = NULL;
    mold_status st = cfg && map ? MOLD_OK : MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    if (st == MOLD_OK && mold_path_exists(cfg)) {
        ld->what = cfg;
        st = mold_json_load_file(cfg, &j);
        json_t *dec = NULL;
        if (st == MOLD_OK)
            st = mold_json_get_child(j, "added_tokens_decoder", cfg, false, JSON_OBJECT, &dec);
        if (st == MOLD_OK && dec)
            st = parse_added_decoder(ld, dec);
        json_decref(j);
        j = NULL;
    }
    if (st == MOLD_OK && mold_path_exists(map)) {
        ld->what = map;
        st = mold_json_load_file(map, &j);
        if (st == MOLD_OK)
            st = parse_added_map(ld, j);
        json_decref(j);
    }
    free(cfg);
    free(map);
    return st;
}

static mold_status load_vocab_merges(loader *ld, const char *dir) {
    char *vpath = mold_path_join(dir, "vocab.json");
    char *mpath = mold_path_join(dir, "merges.txt");
    char *buf = NULL;
    size_t n = 0;
    mold_status st = vpath && mpath ? MOLD_OK : MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    ld->tok->nfc = true; /* Qwen2Tokenizer.prepare_for_tokenization */
    if (st == MOLD_OK)
        st = mold_file_read_all(vpath, &buf, &n);
    if (st == MOLD_OK) {
        ld->what = vpath;
        jscan s = {(const uint8_t *)buf, (const uint8_t *)buf + n, (const uint8_t *)buf, vpath};
        st = parse_vocab(ld, &s);
        if (st == MOLD_OK && (jws(&s), s.p != s.end))
            st = jerr(&s, "end of file after the vocabulary object");
    }
    free(buf);
    buf = NULL;
    if (st == MOLD_OK)
        st = load_added_files(ld, dir);
    ld->what = vpath;
    if (st == MOLD_OK)
        st = build_tables(ld);
    if (st == MOLD_OK)
        st = mold_file_read_all(mpath, &buf, &n);
    if (st == MOLD_OK) {
        ld->what = mpath;
        st = parse_merges_txt(ld, buf, n);
    }
    ld->what = NULL; /* the paths die here */
    free(buf);
    free(vpath);
    free(mpath);
    return st;
}

static mold_status load_any(loader *ld, const char *path) {
    if (!mold_path_is_dir(path))
        return load_tokenizer_json(ld, path);
    char *tj = mold_path_join(path, "tokenizer.json");
    char *vj = mold_path_join(path, "vocab.json");
    char *mt = mold_path_join(path, "merges.txt");
    mold_status st;
    if (!tj || !vj || !mt)
        st = MOLD_ERR(MOLD_E_NOMEM, "out of memory");
    else if (mold_path_exists(tj))
        st = load_tokenizer_json(ld, tj);
    else if (mold_path_exists(vj) && mold_path_exists(mt))
        st = load_vocab_merges(ld, path);
    else
        st = MOLD_ERR(MOLD_E_NOTFOUND, "%s: expected tokenizer.json or vocab.json + merges.txt "
                      "in the directory, found neither", path);
    ld->what = NULL;
    free(tj);
    free(vj);
    free(mt);
    return st;
}

/* ---- public ---- */

/* Runs `load` (one of the layouts) then builds the derived tables; frees
 * everything on failure. */
typedef mold_status (*load_fn)(loader *ld, const void *arg, size_t size, const char *what);

static mold_status load_with(load_fn load, const void *arg, size_t size, const char *what,
                             mold_tokenizer **out) {
    mold_tokenizer *tok = calloc(1, sizeof(*tok));
    if (!tok)
        return MOLD_ERR(MOLD_E_NOMEM, "tokenizer: out of memory");
    loader ld = {.tok = tok};
    mold_status st = load(&ld, arg, size, what);
    ld.what = what; /* the per-file names died inside load */
    if (st == MOLD_OK)
        st = build_added(&ld);
    if (st == MOLD_OK)
        st = build_decoded(tok);
    if (st == MOLD_OK)
        st = mold_tok_regex_init(tok);
    if (st == MOLD_OK)
        st = mold_tok_cache_init(tok);
    free(ld.strs.data);
    free(ld.vocab.v);
    free(ld.added.v);
    free(ld.s1.data);
    free(ld.s2.data);
    free(ld.cat.data);
    if (st != MOLD_OK) {
        mold_error_prefix("%s", "loading tokenizer");
        mold_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return MOLD_OK;
}

static mold_status load_path(loader *ld, const void *arg, size_t size, const char *what) {
    (void)size;
    (void)what;
    return load_any(ld, arg);
}

static mold_status load_buf(loader *ld, const void *arg, size_t size, const char *what) {
    return load_json_image(ld, arg, size, what);
}

mold_status mold_tokenizer_load(const char *path, mold_tokenizer **out) {
    MOLD_ASSERT(out);
    *out = NULL;
    if (!path || !*path)
        return MOLD_ERR(MOLD_E_INVALID, "tokenizer: expected a path, got none");
    if (!mold_path_exists(path))
        return MOLD_ERR(MOLD_E_NOTFOUND, "%s: no such file or directory", path);
    return load_with(load_path, path, 0, path, out);
}

mold_status mold_tokenizer_load_json_buf(const void *data, size_t size, const char *what,
                                         mold_tokenizer **out) {
    MOLD_ASSERT(out);
    *out = NULL;
    if (!data && size)
        return MOLD_ERR(MOLD_E_INVALID, "tokenizer: data is NULL with size %zu", size);
    return load_with(load_buf, data ? data : "", size, what ? what : "tokenizer.json", out);
}
