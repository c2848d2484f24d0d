/*
 * qwen2_tokenizer.c — encode / decode for the Qwen2 byte-level BPE tokenizer
 * (spec section 2) and the Qwen-Image prompt template (spec 2.7). Loading is
 * in qwen2_tokenizer_load.c; the struct body in qwen2_tokenizer_impl.h.
 *
 * encode() follows Hugging Face `tokenizers` (the fast tokenizer the golden
 * ids come from), step by step:
 *   1. added/special tokens are split out of the raw text first (leftmost,
 *      longest match), never normalized or BPE'd;
 *   2. each remaining segment is NFC-normalized (utf8proc);
 *   3. the segment is cut by the Qwen2 pre-tokenizer regex (PCRE2, UTF+UCP),
 *      with unmatched gaps kept as pieces (Split behavior "Isolated");
 *   4. each piece's bytes become byte-level symbols (their ids: byte_id[]);
 *   5. BPE merges the lowest-ranked adjacent pair first, leftmost on ties,
 *      until no pair has a merge. A heap of candidate pairs over a linked
 *      list of symbols makes this O(n log n) per piece (reference:
 *      tokenizers `models/bpe/word.rs` merge_all), so a 1 MB run of letters
 *      is no problem. Results of pieces up to CACHE_MAX_PIECE bytes are
 *      cached (shared, mutex-guarded, cleared when full).
 * Because step 1 precedes step 2, "<|im_end|>" followed by U+0338 stays a
 * special token (whole-text NFC would turn '>'+U+0338 into U+226F); this is
 * the reference's behaviour too.
 *
 * decode() is the ByteLevel decoder: concatenate each token's bytes, then
 * replace invalid UTF-8 with U+FFFD per maximal invalid subpart (as Rust's
 * String::from_utf8_lossy).
 *
 * The regex: the tokenizer.json pattern uses \s / \S. The reference runs it in
 * Oniguruma, where \s is Unicode White_Space (incl. U+0085); PCRE2's UCP \s
 * lacks U+0085, so the compiled pattern spells the class out:
 * [\t-\r\x{85}\p{Z}] == White_Space.
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>  // defines: utf8proc_map (NFC)

#include "qwen2_tokenizer_impl.h"

const char MOLD_TOK_QWEN2_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Same pattern with \s spelled as Unicode White_Space (see the header). */
#define WS "\\t-\\r\\x{85}\\p{Z}"
static const char COMPILED_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^" WS "\\p{L}\\p{N}]+"
    "[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+";
#undef WS

/* Word cache bounds: at most CACHE_SLOTS/2 entries; cleared when full. */
#define CACHE_SLOTS (1u << 15)
#define CACHE_BYTES (1u << 20)
#define CACHE_IDS (1u << 18)
#define CACHE_MAX_PIECE 256

/* ---- small shared helpers ---- */

size_t mold_tok_utf8_check(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) { need = 2; lo = 0xA0; }
        else if (c == 0xED) { need = 2; hi = 0x9F; } /* no surrogates */
        else if (c >= 0xE1 && c <= 0xEF) need = 2;
        else if (c == 0xF0) { need = 3; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else if (c == 0xF4) { need = 3; hi = 0x8F; } /* <= U+10FFFF */
        else return i;
        if (n - i <= need)
            return i;
        for (size_t k = 1; k <= need; k++) {
            if (s[i + k] < lo || s[i + k] > hi)
                return i;
            lo = 0x80;
            hi = 0xBF;
        }
        i += need + 1;
    }
    return n;
}

uint64_t mold_tok_hash(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ull;
    h ^= h >> 32;
    return h ? h : 1;
}

int32_t mold_tok_vocab_find(const mold_tokenizer *tok, const char *s, size_t n) {
    uint64_t h = mold_tok_hash(s, n);
    size_t j = h & tok->vocab_mask;
    /* The slot keeps the high hash bits so a probe rarely touches entries[]. */
    for (uint64_t v; (v = tok->vocab_slots[j]) != 0; j = (j + 1) & tok->vocab_mask) {
        if ((v >> 32) != (h >> 32))
            continue;
        const tok_entry *e = &tok->entries[(uint32_t)v - 1];
        if (e->str_len == n && !memcmp(tok->strs + e->str_off, s, n))
            return (int32_t)((uint32_t)v - 1);
    }
    return -1;
}

const tok_merge_slot *mold_tok_merge_find(const mold_tokenizer *tok, uint32_t a, uint32_t b) {
    if (!tok->merge_slots)
        return NULL;
    uint64_t key = ((uint64_t)a << 32) | b;
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    size_t j = (h ^ (h >> 29)) & tok->merge_mask;
    for (; tok->merge_slots[j].key != UINT64_MAX; j = (j + 1) & tok->merge_mask)
        if (tok->merge_slots[j].key == key)
            return &tok->merge_slots[j];
    return NULL;
}

/* bytes_to_unicode (spec 2.5): printable bytes 0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF
 * map to themselves, the other 68 to U+0100.. in byte order. */
static bool byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t mold_tok_byte_to_cp(uint8_t b) {
    if (byte_is_printable(b))
        return b;
    uint32_t n = 0;
    for (unsigned x = 0; x < b; x++)
        n += !byte_is_printable(x);
    return 256 + n;
}

int mold_tok_cp_to_byte(uint32_t cp) {
    if (cp < 256)
        return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68)
        return -1;
    uint32_t k = cp - 256; /* the k-th non-printable byte */
    for (unsigned b = 0; b < 256; b++)
        if (!byte_is_printable(b) && k-- == 0)
            return (int)b;
    return -1;
}

mold_status mold_tok_regex_init(mold_tokenizer *tok) {
    int err = 0;
    PCRE2_SIZE off = 0;
    tok->re = pcre2_compile((PCRE2_SPTR)COMPILED_PATTERN, PCRE2_ZERO_TERMINATED,
                            PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    if (!tok->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof(msg));
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "pre-tokenizer regex: %s at %zu", (char *)msg,
                        (size_t)off);
    }
    /* JIT is an optimization only; the interpreter gives the same matches. */
    tok->re_jit = pcre2_jit_compile(tok->re, PCRE2_JIT_COMPLETE) == 0;
    return MOLD_OK;
}

mold_status mold_tok_cache_init(mold_tokenizer *tok) {
    tok->cache_slots = calloc(CACHE_SLOTS, sizeof(*tok->cache_slots));
    tok->cache_bytes = malloc(CACHE_BYTES);
    tok->cache_ids = malloc(CACHE_IDS * sizeof(*tok->cache_ids));
    if (!tok->cache_slots || !tok->cache_bytes || !tok->cache_ids)
        return MOLD_ERR(MOLD_E_NOMEM, "tokenizer: out of memory (word cache)");
    if (pthread_mutex_init(&tok->cache_lock, NULL) != 0) {
        free(tok->cache_slots); /* the lock is only destroyed when slots exist */
        tok->cache_slots = NULL;
        return MOLD_ERR(MOLD_E_NOMEM, "tokenizer: cannot create the cache lock");
    }
    return MOLD_OK;
}

/* ---- per-call encoder state ---- */

typedef struct sym {
    int32_t id;
    int32_t prev, next; /* neighbours in the word, -1 at the ends */
    int32_t alive;
} sym;

typedef struct enc {
    const mold_tokenizer *tok;
    int32_t *ids;           /* output */
    size_t n_ids, cap_ids;
    pcre2_match_data *md;
    sym *syms;              /* BPE scratch, one per byte of the piece */
    uint64_t *heap;         /* (rank << 32 | pos), min-heap, <= 3 per byte */
    size_t cap_syms;
} enc;

static mold_status out_reserve(enc *e, size_t extra) {
    if (e->n_ids + extra <= e->cap_ids)
        return MOLD_OK;
    size_t cap = e->cap_ids ? e->cap_ids : 64;
    while (cap < e->n_ids + extra)
        cap *= 2;
    int32_t *v = realloc(e->ids, cap * sizeof(*v));
    if (!v)
        return MOLD_ERR(MOLD_E_NOMEM, "tokenizer: out of memory (%zu ids)", cap);
    e->ids = v;
    e->cap_ids = cap;
    return MOLD_OK;
}

static mold_status scratch_reserve(enc *e, size_t n) {
    if (n <= e->cap_syms)
        return MOLD_OK;
    size_t cap = e->cap_syms ? e->cap_syms : 64;
    while (cap < n)
        cap *= 2;
    free(e->syms);
    free(e->heap);
    e->syms = malloc(cap * sizeof(*e->syms));
    e->heap = malloc(cap * 3 * sizeof(*e->heap));
    e->cap_syms = e->syms && e->heap ? cap : 0;
    if (!e->cap_syms)
        return MOLD_ERR(MOLD_E_NOMEM, "tokenizer: out of memory (piece of %zu bytes)", n);
    return MOLD_OK;
}

/* ---- BPE ---- */

static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1] < h[c])
            c++;
        if (h[c] >= v)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = v;
    return top;
}

/* Pushes the pair starting at symbol pos if it has a merge. */
static void push_pair(const mold_tokenizer *tok, const sym *s, int32_t pos, uint64_t *h,
                      size_t *n) {
    if (pos < 0 || s[pos].next < 0)
        return;
    const tok_merge_slot *m = mold_tok_merge_find(tok, (uint32_t)s[pos].id,
                                                  (uint32_t)s[s[pos].next].id);
    if (m)
        heap_push(h, n, ((uint64_t)m->rank << 32) | (uint32_t)pos);
}

/* BPE of one piece; appends its ids to e->ids. Bytes without a symbol in the
 * vocabulary are dropped (the reference does the same when unk_token is
 * null; never the case for a complete byte-level vocabulary). */
static mold_status bpe_piece(enc *e, const uint8_t *p, size_t n) {
    const mold_tokenizer *tok = e->tok;
    MOLD_TRY(scratch_reserve(e, n));
    MOLD_TRY(out_reserve(e, n));
    sym *s = e->syms;
    int32_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = tok->byte_id[p[i]];
        if (id < 0)
            continue;
        s[ns] = (sym){id, ns - 1, ns + 1, 1};
        ns++;
    }
    if (ns == 0)
        return MOLD_OK;
    s[ns - 1].next = -1;
    size_t nh = 0;
    for (int32_t i = 0; i + 1 < ns; i++)
        push_pair(tok, s, i, e->heap, &nh);
    while (nh) {
        uint64_t top = heap_pop(e->heap, &nh);
        int32_t pos = (int32_t)(uint32_t)top;
        uint32_t rank = (uint32_t)(top >> 32);
        if (!s[pos].alive || s[pos].next < 0)
            continue;
        int32_t nx = s[pos].next;
        const tok_merge_slot *m = mold_tok_merge_find(tok, (uint32_t)s[pos].id,
                                                      (uint32_t)s[nx].id);
        if (!m || m->rank != rank) /* stale: a neighbour changed since the push */
            continue;
        s[pos].id = (int32_t)m->id;
        s[pos].next = s[nx].next;
        if (s[nx].next >= 0)
            s[s[nx].next].prev = pos;
        s[nx].alive = 0;
        push_pair(tok, s, s[pos].prev, e->heap, &nh);
        push_pair(tok, s, pos, e->heap, &nh);
    }
    for (int32_t i = 0; i >= 0; i = s[i].next) /* symbol 0 is never merged away */
        e->ids[e->n_ids++] = s[i].id;
    return MOLD_OK;
}

/* ---- word cache ---- */

static bool cache_get(enc *e, uint64_t h, const uint8_t *p, size_t n) {
    mold_tokenizer *tok = (mold_tokenizer *)e->tok; /* the cache is the mutable part */
    bool hit = false;
    pthread_mutex_lock(&tok->cache_lock);
    size_t j = h & (CACHE_SLOTS - 1);
    for (; tok->cache_slots[j].hash; j = (j + 1) & (CACHE_SLOTS - 1)) {
        const tok_cache_slot *c = &tok->cache_slots[j];
        if (c->hash == h && c->key_len == n && !memcmp(tok->cache_bytes + c->key_off, p, n)) {
            if (out_reserve(e, c->n_ids) == MOLD_OK) {
                memcpy(e->ids + e->n_ids, tok->cache_ids + c->ids_off, c->n_ids * sizeof(int32_t));
                e->n_ids += c->n_ids;
                hit = true;
            }
            break;
        }
    }
    pthread_mutex_unlock(&tok->cache_lock);
    return hit;
}

static void cache_put(enc *e, uint64_t h, const uint8_t *p, size_t n, const int32_t *ids,
                      size_t n_ids) {
    mold_tokenizer *tok = (mold_tokenizer *)e->tok;
    pthread_mutex_lock(&tok->cache_lock);
    if ((tok->cache_used + 1) * 2 > CACHE_SLOTS || tok->cache_bytes_used + n > CACHE_BYTES ||
        tok->cache_ids_used + n_ids > CACHE_IDS) {
        memset(tok->cache_slots, 0, CACHE_SLOTS * sizeof(*tok->cache_slots));
        tok->cache_used = tok->cache_bytes_used = tok->cache_ids_used = 0;
    }
    size_t j = h & (CACHE_SLOTS - 1);
    bool present = false;
    for (; tok->cache_slots[j].hash; j = (j + 1) & (CACHE_SLOTS - 1)) {
        const tok_cache_slot *c = &tok->cache_slots[j];
        if (c->hash == h && c->key_len == n && !memcmp(tok->cache_bytes + c->key_off, p, n)) {
            present = true; /* another thread got there first */
            break;
        }
    }
    if (!present) {
        tok->cache_slots[j] = (tok_cache_slot){h, (uint32_t)tok->cache_bytes_used, (uint32_t)n,
                                               (uint32_t)tok->cache_ids_used, (uint32_t)n_ids};
        memcpy(tok->cache_bytes + tok->cache_bytes_used, p, n);
        memcpy(tok->cache_ids + tok->cache_ids_used, ids, n_ids * sizeof(int32_t));
        tok->cache_bytes_used += n;
        tok->cache_ids_used += n_ids;
        tok->cache_used++;
    }
    pthread_mutex_unlock(&tok->cache_lock);
}

static mold_status encode_piece(enc *e, const uint8_t *p, size_t n) {
    if (n > CACHE_MAX_PIECE)
        return bpe_piece(e, p, n);
    uint64_t h = mold_tok_hash(p, n);
    if (cache_get(e, h, p, n))
        return MOLD_OK;
    size_t start = e->n_ids;
    MOLD_TRY(bpe_piece(e, p, n));
    cache_put(e, h, p, n, e->ids + start, e->n_ids - start);
    return MOLD_OK;
}

/* ---- pre-tokenizer and segments ---- */

static int regex_match(const mold_tokenizer *tok, const uint8_t *s, size_t n, size_t off,
                       pcre2_match_data *md) {
    int rc = PCRE2_ERROR_JIT_STACKLIMIT;
    if (tok->re_jit)
        rc = pcre2_jit_match(tok->re, s, n, off, 0, md, NULL);
    /* The interpreter keeps its backtracking state on the heap, so a JIT
     * stack overflow on a pathological input still gets an answer. */
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(tok->re, s, n, off, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
    return rc;
}

/* Splits a normalized segment into regex pieces (gaps kept) and BPEs them. */
static mold_status pretokenize(enc *e, const uint8_t *s, size_t n, size_t base_off) {
    size_t off = 0;
    while (off < n) {
        int rc = regex_match(e->tok, s, n, off, e->md);
        if (rc == PCRE2_ERROR_NOMATCH)
            return encode_piece(e, s + off, n - off);
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof(msg));
            return MOLD_ERR(MOLD_E_INVALID, "pre-tokenizer failed near byte offset %zu: %s",
                            base_off + off, (char *)msg);
        }
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        MOLD_ASSERT(ov[0] >= off && ov[1] > ov[0] && ov[1] <= n); /* no empty matches */
        if (ov[0] > off)
            MOLD_TRY(encode_piece(e, s + off, ov[0] - off));
        MOLD_TRY(encode_piece(e, s + ov[0], ov[1] - ov[0]));
        off = ov[1];
    }
    return MOLD_OK;
}

static bool is_ascii(const uint8_t *s, size_t n) {
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= s[i];
    return acc < 0x80;
}

/* One stretch of text between added tokens: NFC, then pre-tokenize. */
static mold_status encode_segment(enc *e, const uint8_t *s, size_t n, size_t base_off) {
    if (!e->tok->nfc || is_ascii(s, n)) /* ASCII is already NFC */
        return pretokenize(e, s, n, base_off);
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t r = utf8proc_map(s, (utf8proc_ssize_t)n, &nfc,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (r < 0)
        return MOLD_ERR(MOLD_E_INVALID, "NFC normalization of the text at byte offset %zu "
                        "failed: %s", base_off, utf8proc_errmsg(r));
    mold_status st = pretokenize(e, nfc, (size_t)r, base_off);
    free(nfc);
    return st;
}

/* Leftmost, longest added token in s[from..n): sets *at, *len, *id. */
static bool find_added(const mold_tokenizer *tok, const uint8_t *s, size_t n, size_t from,
                       size_t *at, size_t *len, int32_t *id) {
    for (size_t i = from; i < n; i++) {
        if (!tok->added_first[s[i]])
            continue;
        for (size_t k = 0; k < tok->n_added; k++) { /* longest first */
            const tok_added *a = &tok->added[k];
            if (a->len <= n - i && (uint8_t)a->content[0] == s[i] &&
                !memcmp(a->content, s + i, a->len)) {
                *at = i;
                *len = a->len;
                *id = (int32_t)a->id;
                return true;
            }
        }
    }
    return false;
}

/* ---- public API ---- */

mold_status mold_tokenizer_encode(const mold_tokenizer *tok, const char *text, size_t len,
                                  int32_t **ids, size_t *n_ids) {
    MOLD_ASSERT(tok && ids && n_ids);
    *ids = NULL;
    *n_ids = 0;
    if (!text && len)
        return MOLD_ERR(MOLD_E_INVALID, "tokenizer: text is NULL with length %zu", len);
    const uint8_t *s = (const uint8_t *)text;
    size_t bad = len ? mold_tok_utf8_check(s, len) : 0;
    if (bad < len)
        return MOLD_ERR(MOLD_E_INVALID, "invalid UTF-8 at byte offset %zu (byte 0x%02x)", bad,
                        s[bad]);
    enc e = {.tok = tok};
    e.md = pcre2_match_data_create_from_pattern(tok->re, NULL);
    mold_status st = e.md ? out_reserve(&e, len / 3 + 16)
                          : MOLD_ERR(MOLD_E_NOMEM, "tokenizer: out of memory (match data)");
    size_t pos = 0;
    while (st == MOLD_OK && pos < len) {
        size_t at = len, alen = 0;
        int32_t aid = -1;
        bool found = tok->n_added && find_added(tok, s, len, pos, &at, &alen, &aid);
        if (at > pos)
            st = encode_segment(&e, s + pos, at - pos, pos);
        if (st == MOLD_OK && found && (st = out_reserve(&e, 1)) == MOLD_OK)
            e.ids[e.n_ids++] = aid;
        pos = at + alen;
    }
    pcre2_match_data_free(e.md);
    free(e.syms);
    free(e.heap);
    if (st != MOLD_OK) {
        free(e.ids);
        return st;
    }
    *ids = e.ids;
    *n_ids = e.n_ids;
    return MOLD_OK;
}

/* Rust String::from_utf8_lossy: each maximal invalid subpart -> U+FFFD.
 * o needs room for 3 * n bytes. Returns the bytes written. */
static size_t utf8_lossy(const uint8_t *s, size_t n, uint8_t *o) {
    size_t i = 0, w = 0;
    while (i < n) {
        size_t ok = mold_tok_utf8_check(s + i, n - i);
        memcpy(o + w, s + i, ok);
        w += ok;
        i += ok;
        if (i >= n)
            break;
        /* Length of the invalid subpart: the lead byte plus the continuation
         * bytes that could still belong to a valid sequence. */
        uint8_t c = s[i], lo = 0x80, hi = 0xBF;
        size_t need = 0, k = 1;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) { need = 2; lo = 0xA0; }
        else if (c == 0xED) { need = 2; hi = 0x9F; }
        else if (c >= 0xE1 && c <= 0xEF) need = 2;
        else if (c == 0xF0) { need = 3; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else if (c == 0xF4) { need = 3; hi = 0x8F; }
        while (k <= need && i + k < n && s[i + k] >= lo && s[i + k] <= hi) {
            lo = 0x80;
            hi = 0xBF;
            k++;
        }
        memcpy(o + w, "\xEF\xBF\xBD", 3);
        w += 3;
        i += k;
    }
    return w;
}

mold_status mold_tokenizer_decode(const mold_tokenizer *tok, const int32_t *ids, size_t n_ids,
                                  char **text, size_t *len) {
    MOLD_ASSERT(tok && text && len);
    *text = NULL;
    *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (id < 0 || (size_t)id >= tok->n_ids || tok->entries[id].kind == TOK_NONE)
            return MOLD_ERR(MOLD_E_INVALID, "decode: ids[%zu]: expected a token id in 0..%zu, "
                            "got %d (no such token)", i, tok->n_ids - 1, id);
        total += tok->entries[id].dec_len;
    }
    if (total > (SIZE_MAX - 1) / 4)
        return MOLD_ERR(MOLD_E_RANGE, "decode: output too large");
    uint8_t *raw = malloc(total ? total : 1), *out = malloc(total * 3 + 1);
    if (!raw || !out) {
        free(raw);
        free(out);
        return MOLD_ERR(MOLD_E_NOMEM, "decode: out of memory (%zu bytes)", total * 3);
    }
    size_t w = 0;
    for (size_t i = 0; i < n_ids; i++) {
        const tok_entry *e = &tok->entries[ids[i]];
        memcpy(raw + w, tok->dec + e->dec_off, e->dec_len);
        w += e->dec_len;
    }
    size_t n = utf8_lossy(raw, total, out);
    free(raw);
    out[n] = 0;
    *text = (char *)out;
    *len = n;
    return MOLD_OK;
}

const char *mold_tokenizer_token(const mold_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || (size_t)id >= tok->n_ids || tok->entries[id].kind == TOK_NONE)
        return NULL;
    return tok->strs + tok->entries[id].str_off;
}

size_t mold_tokenizer_vocab_size(const mold_tokenizer *tok) {
    return tok ? tok->n_ids : 0;
}

void mold_tokenizer_free(mold_tokenizer *tok) {
    if (!tok)
        return;
    if (tok->cache_slots)
        pthread_mutex_destroy(&tok->cache_lock);
    free(tok->cache_slots);
    free(tok->cache_bytes);
    free(tok->cache_ids);
    pcre2_code_free(tok->re);
    free(tok->entries);
    free(tok->strs);
    free(tok->dec);
    free(tok->vocab_slots);
    free(tok->merge_slots);
    free(tok->added);
    free(tok);
}

/* ---- Qwen-Image prompt template (spec 2.7) ---- */

static const char TEMPLATE_PREFIX[] =
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
    "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
    "<|im_start|>user\n";
static const char TEMPLATE_SUFFIX[] = "<|im_end|>\n<|im_start|>assistant\n";

mold_status mold_qwenimage_template(const char *prompt, size_t len, char **out,
                                    size_t *out_len) {
    MOLD_ASSERT(out && out_len);
    *out = NULL;
    *out_len = 0;
    if (!prompt && len)
        return MOLD_ERR(MOLD_E_INVALID, "template: prompt is NULL with length %zu", len);
    size_t np = sizeof(TEMPLATE_PREFIX) - 1, ns = sizeof(TEMPLATE_SUFFIX) - 1;
    if (len > SIZE_MAX - np - ns - 1)
        return MOLD_ERR(MOLD_E_RANGE, "template: prompt too long (%zu bytes)", len);
    char *t = malloc(np + len + ns + 1);
    if (!t)
        return MOLD_ERR(MOLD_E_NOMEM, "template: out of memory (%zu bytes)", np + len + ns);
    memcpy(t, TEMPLATE_PREFIX, np);
    if (len)
        memcpy(t + np, prompt, len);
    memcpy(t + np + len, TEMPLATE_SUFFIX, ns + 1);
    *out = t;
    *out_len = np + len + ns;
    return MOLD_OK;
}

mold_status mold_qwenimage_tokenize_prompt(const mold_tokenizer *tok, const char *prompt,
                                           size_t len, int32_t **ids, size_t *n_ids) {
    MOLD_ASSERT(tok && ids && n_ids);
    *ids = NULL;
    *n_ids = 0;
    /* Validate first so an error names the offset within the prompt. */
    size_t bad = len && prompt ? mold_tok_utf8_check((const uint8_t *)prompt, len) : len;
    if (bad < len)
        return MOLD_ERR(MOLD_E_INVALID, "prompt: invalid UTF-8 at byte offset %zu (byte 0x%02x)",
                        bad, (uint8_t)prompt[bad]);
    char *t = NULL;
    size_t tn = 0;
    MOLD_TRY(mold_qwenimage_template(prompt, len, &t, &tn));
    mold_status st = mold_tokenizer_encode(tok, t, tn, ids, n_ids);
    free(t);
    /* Right truncation, as the reference tokenizer call (max_length 1058):
     * an over-long prompt loses its suffix tokens too. */
    if (st == MOLD_OK && *n_ids > MOLD_QWENIMAGE_MAX_TEMPLATE_TOKENS)
        *n_ids = MOLD_QWENIMAGE_MAX_TEMPLATE_TOKENS;
    return st;
}
