/*
 * fuzz_tokenizer.c — libFuzzer target for the Qwen2 tokenizer.
 *
 * Input byte 0 picks the mode:
 *   'J'    the rest is a tokenizer.json image for the loader (must fail
 *          cleanly or load; a loaded tokenizer then encodes a fixed text);
 *   other  the rest is text for encode() with the tiny model's tokenizer,
 *          plus the prompt template when byte 0 is odd. Valid UTF-8 must
 *          encode, decode, and decode(encode(s)) must equal NFC(s) unless s
 *          contains '<' (added tokens are split before NFC, so a special token
 *          followed by a combining mark is the one legitimate difference).
 *          Invalid UTF-8 must be refused with MOLD_E_INVALID.
 *
 * The tokenizer comes from $MOLD_FUZZ_TOKENIZER, default
 * tests/fixtures/qwen-image-tiny/model/tokenizer relative to the working
 * directory (scripts/run-fuzzers.sh exports an absolute path).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "models/qwen2_tokenizer.h"

static mold_tokenizer *g_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *p = getenv("MOLD_FUZZ_TOKENIZER");
    if (!p || !*p)
        p = "tests/fixtures/qwen-image-tiny/model/tokenizer";
    if (mold_tokenizer_load(p, &g_tok) != MOLD_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s (set MOLD_FUZZ_TOKENIZER)\n", p,
                mold_error_message());
        abort();
    }
    return 0;
}

static void fuzz_loader(const uint8_t *data, size_t size) {
    mold_tokenizer *tok = NULL;
    if (mold_tokenizer_load_json_buf(data, size, "fuzz", &tok) != MOLD_OK)
        return;
    int32_t *ids = NULL;
    size_t n = 0;
    if (mold_tokenizer_encode(tok, "Hello <|im_end|> world 123", 26, &ids, &n) == MOLD_OK) {
        char *t = NULL;
        size_t tn = 0;
        if (mold_tokenizer_decode(tok, ids, n, &t, &tn) == MOLD_OK)
            free(t);
        free(ids);
    }
    mold_tokenizer_free(tok);
}

static int valid_utf8(const uint8_t *s, size_t n) {
    utf8proc_int32_t cp;
    for (size_t i = 0; i < n;) {
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0 || cp < 0)
            return 0;
        i += (size_t)k;
    }
    return 1;
}

static void fuzz_encode(uint8_t mode, const uint8_t *s, size_t n) {
    int32_t *ids = NULL;
    size_t n_ids = 0;
    mold_status st = mold_tokenizer_encode(g_tok, (const char *)s, n, &ids, &n_ids);
    int valid = valid_utf8(s, n);
    if (st != MOLD_OK) {
        if (valid || st != MOLD_E_INVALID) {
            fprintf(stderr, "encode failed on %s input: %s\n", valid ? "valid" : "invalid",
                    mold_error_message());
            abort();
        }
        return;
    }
    if (!valid)
        abort(); /* invalid UTF-8 accepted */
    char *dec = NULL;
    size_t dn = 0;
    if (mold_tokenizer_decode(g_tok, ids, n_ids, &dec, &dn) != MOLD_OK)
        abort();
    if (!memchr(s, '<', n)) {
        utf8proc_uint8_t *want = NULL;
        utf8proc_ssize_t wn = utf8proc_map(s, (utf8proc_ssize_t)n, &want,
                                           UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (wn < 0 || (size_t)wn != dn || memcmp(want, dec, dn) != 0) {
            fprintf(stderr, "decode(encode(s)) != NFC(s)\n");
            abort();
        }
        free(want);
    }
    free(dec);
    free(ids);
    if (mode & 1) {
        if (mold_qwenimage_tokenize_prompt(g_tok, (const char *)s, n, &ids, &n_ids) != MOLD_OK ||
            n_ids > MOLD_QWENIMAGE_MAX_TEMPLATE_TOKENS)
            abort();
        free(ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    if (data[0] == 'J')
        fuzz_loader(data + 1, size - 1);
    else
        fuzz_encode(data[0], data + 1, size - 1);
    return 0;
}
