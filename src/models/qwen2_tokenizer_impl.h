/*
 * qwen2_tokenizer_impl.h — the body of mold_tokenizer, shared by the loader
 * (qwen2_tokenizer_load.c) and the encoder/decoder (qwen2_tokenizer.c).
 *
 * Ownership: a mold_tokenizer owns every array below; it is immutable after
 * load except for the word cache, which is guarded by cache_lock so encode()
 * may run on several threads at once.
 *
 * Invariants (established by the loader, relied on by encode/decode):
 *   - entries has n_ids slots; a slot with kind TOK_NONE is a hole (no token).
 *   - every vocab id in vocab_slots and every merge result id < n_ids and has
 *     kind TOK_VOCAB or TOK_ADDED with in_vocab set;
 *   - byte_id[b] is the id of the one-symbol token of byte b, or -1;
 *   - token strings contain no NUL and are NUL-terminated in strs.
 */
#ifndef MOLD_MODELS_QWEN2_TOKENIZER_IMPL_H
#define MOLD_MODELS_QWEN2_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8

#include <pcre2.h>      // defines: pcre2_code, pcre2_match
#include <pthread.h>    // defines: pthread_mutex_t (word cache)
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qwen2_tokenizer.h"

/* Refuse ids above this (the table is indexed by id). */
#define TOK_MAX_ID (1u << 24)

enum { TOK_NONE = 0, TOK_VOCAB = 1, TOK_ADDED = 2 };

typedef struct tok_entry {
    uint32_t str_off;   /* vocabulary form ("Ġcat") in strs, NUL-terminated */
    uint32_t str_len;
    uint32_t dec_off;   /* the UTF-8 bytes it decodes to, in dec */
    uint32_t dec_len;
    uint8_t kind;       /* TOK_NONE / TOK_VOCAB / TOK_ADDED */
    uint8_t in_vocab;   /* also a BPE vocabulary entry (merges may use it) */
    uint8_t special;    /* added token flagged special (informational) */
} tok_entry;

typedef struct tok_added {
    uint32_t id;
    uint32_t len;       /* bytes of content */
    const char *content; /* points into strs */
} tok_added;

typedef struct tok_merge_slot {
    uint64_t key;       /* (left id << 32) | right id; UINT64_MAX = empty */
    uint32_t rank;      /* merge priority, 0 = first line */
    uint32_t id;        /* id of left+right */
} tok_merge_slot;

typedef struct tok_cache_slot {
    uint64_t hash;      /* 0 = empty */
    uint32_t key_off;   /* piece bytes in cache_bytes */
    uint32_t key_len;
    uint32_t ids_off;   /* ids in cache_ids */
    uint32_t n_ids;
} tok_cache_slot;

struct mold_tokenizer {
    size_t n_ids;              /* entries[] size: max id + 1 */
    tok_entry *entries;        /* (n_ids) */
    char *strs;                /* token strings, each NUL-terminated */
    size_t strs_bytes;
    uint8_t *dec;              /* decoded bytes of every token */
    size_t dec_bytes;

    uint64_t *vocab_slots;     /* open addressing: (hash32 << 32) | (id + 1); 0 = empty */
    size_t vocab_mask;         /* slots - 1 (power of two) */
    size_t n_vocab;            /* BPE vocabulary entries */

    tok_merge_slot *merge_slots; /* open addressing on the pair key */
    size_t merge_mask;
    size_t n_merges;           /* distinct pairs */

    int32_t byte_id[256];      /* single-byte symbol ids (-1: absent) */

    tok_added *added;          /* (n_added) sorted by length, longest first */
    size_t n_added;
    uint8_t added_first[256];  /* 1 if some added token starts with the byte */

    bool nfc;                  /* normalizer NFC (else none) */
    pcre2_code *re;            /* the Qwen2 pre-tokenizer */
    bool re_jit;               /* re was JIT-compiled */

    pthread_mutex_t cache_lock; /* guards the four cache fields below */
    tok_cache_slot *cache_slots;
    size_t cache_used;
    uint8_t *cache_bytes;      /* piece bytes, cache_bytes_used of CACHE_BYTES */
    size_t cache_bytes_used;
    int32_t *cache_ids;
    size_t cache_ids_used;
};

/* ---- shared helpers (qwen2_tokenizer.c) ---- */

/* Offset of the first byte that is not part of valid UTF-8 (overlongs,
 * surrogates and code points above U+10FFFF are invalid), or n when all of
 * s is valid. */
size_t mold_tok_utf8_check(const uint8_t *s, size_t n);
/* FNV-1a style hash of bytes; never 0. */
uint64_t mold_tok_hash(const void *p, size_t n);
/* Id of the BPE vocabulary token spelled s (vocabulary form), or -1. */
int32_t mold_tok_vocab_find(const mold_tokenizer *tok, const char *s, size_t n);
/* The merge of (a, b), or NULL. */
const tok_merge_slot *mold_tok_merge_find(const mold_tokenizer *tok, uint32_t a, uint32_t b);
/* GPT-2 bytes_to_unicode (spec 2.5): code point of byte b, and the inverse
 * (byte of code point cp, or -1). */
uint32_t mold_tok_byte_to_cp(uint8_t b);
int mold_tok_cp_to_byte(uint32_t cp);
/* Compiles the pre-tokenizer regex into tok->re. */
mold_status mold_tok_regex_init(mold_tokenizer *tok);
/* Allocates the word cache and its lock. */
mold_status mold_tok_cache_init(mold_tokenizer *tok);

/* The Qwen2 pre-tokenizer pattern as written in tokenizer.json (spec 2.4). */
extern const char MOLD_TOK_QWEN2_PATTERN[];

#endif
