/*
 * test_tokenizer.c — the Qwen2 tokenizer against reference token ids.
 *
 * References:
 *   - tests/fixtures/qwen-image-tiny/cases/tokenizer.json: 26 strings through
 *     the tiny model's tokenizer (HF tokenizers 0.23.2), loaded both from its
 *     tokenizer.json and from vocab.json + merges.txt (+ added tokens);
 *   - tests/fixtures/tokenizer-qwen2_5/golden.json: 62 strings through the
 *     published Qwen2.5 tokenizer. That tokenizer (7 MB) is not in the repo:
 *     scripts/fetch-tokenizer.sh caches it under <build>/tokenizer-qwen2_5/
 *     (`make test` runs it). Without it these tests FAIL and say so.
 *     vocab.json + merges.txt are rebuilt from tokenizer.json HERE (jansson)
 *     into <build>/tokenizer-qwen2_5/slow/, with tokenizer_config.json copied
 *     for the added tokens, then loaded as the slow layout;
 *   - the pipeline case (pipeline.safetensors prompt_ids / negative_ids,
 *     text_encoder.safetensors input_ids) for the prompt template;
 *   - spec 2.7 for the exact ids of the 34-token template prefix.
 * Ids must match exactly (tolerance 0 mismatching ids); every test prints how
 * many cases matched. decode(encode(s)) must equal NFC(s) for every case.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <utf8proc.h>

#include "base/fs.h"
#include "formats/safetensors.h"
#include "models/qwen2_tokenizer.h"
#include "testutil.h"

#define REAL_DIR MOLD_TEST_BUILD_DIR "/tokenizer-qwen2_5"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* CPU time of this thread: stable on a shared machine, where wall time is not. */
static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- helpers ---- */

static json_t *load_json(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j)
        fail_msg("%s: %s (line %d)", path, e.text, e.line);
    return j;
}

static char *nfc(const char *s, size_t n, size_t *out_n) {
    utf8proc_uint8_t *o = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &o,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    assert_true(r >= 0);
    *out_n = (size_t)r;
    return (char *)o;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    printf("    %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 64; i++)
        printf(" %d", ids[i]);
    printf("%s\n", n > 64 ? " ..." : "");
}

/* Runs every {"text", "ids", "decoded"} case; returns the mismatches
 * (ids, decode vs "decoded", or decode(encode) vs NFC). */
static size_t run_cases(const mold_tokenizer *tok, const json_t *cases, const char *label) {
    size_t bad = 0, n = json_array_size(cases), i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const json_t *jt = json_object_get(c, "text"), *jids = json_object_get(c, "ids");
        const char *text = json_string_value(jt);
        size_t tlen = json_string_length(jt), nref = json_array_size(jids);
        int32_t *ids = NULL;
        size_t n_ids = 0;
        tu_ok(mold_tokenizer_encode(tok, text, tlen, &ids, &n_ids), "encode");
        bool same = n_ids == nref;
        for (size_t k = 0; same && k < n_ids; k++)
            same = ids[k] == json_integer_value(json_array_get(jids, k));
        char *dec = NULL, *want = NULL;
        size_t dlen = 0, wlen = 0;
        tu_ok(mold_tokenizer_decode(tok, ids, n_ids, &dec, &dlen), "decode");
        want = nfc(text, tlen, &wlen);
        const char *gold = json_string_value(json_object_get(c, "decoded"));
        bool rt = dlen == wlen && !memcmp(dec, want, wlen);
        bool gd = gold && dlen == json_string_length(json_object_get(c, "decoded")) &&
                  !memcmp(dec, gold, dlen);
        if (!same || !rt || !gd) {
            bad++;
            printf("  [%s] case %zu MISMATCH (ids %s, roundtrip %s, decoded %s): %.60s\n", label,
                   i, same ? "ok" : "differ", rt ? "ok" : "differs", gd ? "ok" : "differs", text);
            print_ids("got", ids, n_ids);
            int32_t ref[256];
            for (size_t k = 0; k < nref && k < 256; k++)
                ref[k] = (int32_t)json_integer_value(json_array_get(jids, k));
            print_ids("want", ref, nref < 256 ? nref : 256);
        }
        free(ids);
        free(dec);
        free(want);
    }
    printf("  [%s] %zu/%zu cases exact (ids, decode, decode(encode) == NFC)\n", label, n - bad, n);
    fflush(stdout);
    return bad;
}

static void copy_file(const char *from, const char *to) {
    char *buf = NULL;
    size_t n = 0;
    tu_ok(mold_file_read_all(from, &buf, &n), from);
    tu_ok(mold_file_write_atomic(to, buf, n), to);
    free(buf);
}

static void make_dir(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", path, strerror(errno));
}

static const char *real_json(void) {
    const char *p = REAL_DIR "/tokenizer.json";
    if (!mold_path_exists(p))
        fail_msg("%s is missing: run scripts/fetch-tokenizer.sh %s (make test does) to fetch "
                 "the published Qwen2.5 tokenizer", p, MOLD_TEST_BUILD_DIR);
    return p;
}

static mold_tokenizer *load_real(void) {
    const char *p = real_json();
    mold_tokenizer *tok = NULL;
    double t0 = now_s(), c0 = cpu_s();
    tu_ok(mold_tokenizer_load(p, &tok), "load real tokenizer.json");
    printf("  real tokenizer.json loaded in %.1f ms wall, %.1f ms CPU (%zu ids)\n",
           (now_s() - t0) * 1e3, (cpu_s() - c0) * 1e3, mold_tokenizer_vocab_size(tok));
    return tok;
}

/* ---- tiny model tokenizer ---- */

static void test_tiny_tokenizer_json(void **state) {
    (void)state;
    mold_tokenizer *tok = NULL;
    tu_ok(mold_tokenizer_load(tu_fixture("qwen-image-tiny/model/tokenizer/tokenizer.json"), &tok),
          "load");
    json_t *cases = load_json(tu_fixture("qwen-image-tiny/cases/tokenizer.json"));
    assert_int_equal(mold_tokenizer_vocab_size(tok),
                     json_integer_value(json_object_get(cases, "vocab_size")));
    assert_int_equal(run_cases(tok, json_object_get(cases, "cases"), "tiny tokenizer.json"), 0);
    /* The directory form prefers tokenizer.json and gives the same result. */
    mold_tokenizer *dir = NULL;
    tu_ok(mold_tokenizer_load(tu_fixture("qwen-image-tiny/model/tokenizer"), &dir), "load dir");
    assert_int_equal(run_cases(dir, json_object_get(cases, "cases"), "tiny dir"), 0);
    mold_tokenizer_free(dir);
    json_decref(cases);
    mold_tokenizer_free(tok);
}

static void test_tiny_vocab_merges(void **state) {
    (void)state;
    static const char *const files[] = {"vocab.json", "merges.txt", "tokenizer_config.json",
                                         "added_tokens.json"};
    char dir[2048], from[4096], to[4096];
    snprintf(dir, sizeof(dir), "%s", tu_build_path("tiny-tokenizer-slow"));
    make_dir(dir);
    for (size_t i = 0; i < 4; i++) {
        snprintf(from, sizeof(from), "%s/%s", tu_fixture("qwen-image-tiny/model/tokenizer"),
                 files[i]);
        snprintf(to, sizeof(to), "%s/%s", dir, files[i]);
        copy_file(from, to);
    }
    mold_tokenizer *tok = NULL;
    tu_ok(mold_tokenizer_load(dir, &tok), "load vocab.json + merges.txt");
    json_t *cases = load_json(tu_fixture("qwen-image-tiny/cases/tokenizer.json"));
    assert_int_equal(mold_tokenizer_vocab_size(tok),
                     json_integer_value(json_object_get(cases, "vocab_size")));
    assert_int_equal(run_cases(tok, json_object_get(cases, "cases"), "tiny vocab+merges"), 0);
    json_decref(cases);
    mold_tokenizer_free(tok);
}

/* ---- the published Qwen2.5 tokenizer ---- */

static void test_real_tokenizer_json(void **state) {
    (void)state;
    mold_tokenizer *tok = load_real();
    assert_int_equal(mold_tokenizer_vocab_size(tok), 151665);
    assert_string_equal(mold_tokenizer_token(tok, 151644), "<|im_start|>");
    assert_string_equal(mold_tokenizer_token(tok, 220), "\xC4\xA0"); /* Ġ */
    assert_string_equal(mold_tokenizer_token(tok, 0), "!");
    json_t *g = load_json(tu_fixture("tokenizer-qwen2_5/golden.json"));
    assert_int_equal(run_cases(tok, json_object_get(g, "cases"), "Qwen2.5 tokenizer.json"), 0);
    json_decref(g);
    mold_tokenizer_free(tok);
}

/* Writes vocab.json and merges.txt rebuilt from tokenizer.json into dir. */
static void rebuild_slow(const char *dir) {
    json_t *j = load_json(real_json());
    json_t *model = json_object_get(j, "model");
    json_t *merges = json_object_get(model, "merges");
    char path[4096];
    snprintf(path, sizeof(path), "%s/vocab.json", dir);
    assert_int_equal(json_dump_file(json_object_get(model, "vocab"), path, JSON_COMPACT), 0);
    snprintf(path, sizeof(path), "%s/merges.txt", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fprintf(f, "#version: 0.2\n");
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m) {
        if (json_is_string(m))
            fprintf(f, "%s\n", json_string_value(m));
        else
            fprintf(f, "%s %s\n", json_string_value(json_array_get(m, 0)),
                    json_string_value(json_array_get(m, 1)));
    }
    fclose(f);
    snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
    copy_file(REAL_DIR "/tokenizer_config.json", path);
    json_decref(j);
}

static void test_real_vocab_merges(void **state) {
    (void)state;
    const char *dir = REAL_DIR "/slow";
    make_dir(dir);
    rebuild_slow(dir);
    mold_tokenizer *tok = NULL;
    double t0 = now_s(), c0 = cpu_s();
    tu_ok(mold_tokenizer_load(dir, &tok), "load rebuilt vocab.json + merges.txt");
    printf("  rebuilt vocab.json + merges.txt loaded in %.1f ms wall, %.1f ms CPU\n",
           (now_s() - t0) * 1e3, (cpu_s() - c0) * 1e3);
    assert_int_equal(mold_tokenizer_vocab_size(tok), 151665);
    json_t *g = load_json(tu_fixture("tokenizer-qwen2_5/golden.json"));
    assert_int_equal(run_cases(tok, json_object_get(g, "cases"), "Qwen2.5 vocab+merges"), 0);
    json_decref(g);
    mold_tokenizer_free(tok);
}

/* ---- prompt template (spec 2.7) ---- */

static const int32_t PREFIX_IDS[34] = {
    151644, 8948, 198, 74785, 279, 2168, 553, 44193, 279, 1894, 11, 6083, 11, 1379, 11, 10434,
    11, 12194, 11, 1467, 11, 27979, 11871, 315, 279, 6171, 323, 4004, 25, 151645, 198, 151644,
    872, 198};
static const int32_t SUFFIX_IDS[5] = {151645, 198, 151644, 77091, 198};

static void check_template(const mold_tokenizer *tok, const char *prompt, const int32_t *user,
                           size_t n_user) {
    int32_t *ids = NULL;
    size_t n = 0;
    tu_ok(mold_qwenimage_tokenize_prompt(tok, prompt, strlen(prompt), &ids, &n), "template");
    size_t bad = n == 34 + n_user + 5 ? 0 : 1;
    for (size_t i = 0; !bad && i < n; i++) {
        int32_t want = i < 34 ? PREFIX_IDS[i] : i < 34 + n_user ? user[i - 34]
                                                                 : SUFFIX_IDS[i - 34 - n_user];
        bad += ids[i] != want;
    }
    printf("  template '%s': %zu tokens (want %zu), %s\n", prompt, n, 34 + n_user + 5,
           bad ? "MISMATCH" : "exact");
    if (bad)
        print_ids("got", ids, n);
    assert_int_equal(bad, 0);
    free(ids);
}

static void test_template_real(void **state) {
    (void)state;
    mold_tokenizer *tok = load_real();
    static const int32_t cat[9] = {32, 8251, 9963, 264, 1841, 429, 2727, 23811, 1879};
    static const int32_t space[1] = {220};
    check_template(tok, "A cat holding a sign that says hello world", cat, 9);
    check_template(tok, "", NULL, 0);
    check_template(tok, " ", space, 1);
    /* The template bytes themselves (spec 2.7). */
    char *t = NULL;
    size_t tn = 0;
    tu_ok(mold_qwenimage_template("P", 1, &t, &tn), "template text");
    static const char want[] =
        "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
        "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
        "<|im_start|>user\nP<|im_end|>\n<|im_start|>assistant\n";
    assert_int_equal(tn, sizeof(want) - 1);
    assert_memory_equal(t, want, tn);
    free(t);
    /* Right truncation to 1058 tokens: 2000 digits are 2000 tokens. */
    char *big = malloc(2001);
    for (int i = 0; i < 2000; i++)
        big[i] = (char)('0' + i % 10);
    int32_t *ids = NULL;
    size_t n = 0;
    tu_ok(mold_qwenimage_tokenize_prompt(tok, big, 2000, &ids, &n), "long prompt");
    printf("  2000-digit prompt -> %zu tokens (want %d)\n", n, MOLD_QWENIMAGE_MAX_TEMPLATE_TOKENS);
    assert_int_equal(n, MOLD_QWENIMAGE_MAX_TEMPLATE_TOKENS);
    assert_int_equal(ids[34], 15);     /* '0' */
    assert_int_equal(ids[1057], 15 + (1057 - 34) % 10);
    free(ids);
    free(big);
    mold_tokenizer_free(tok);
}

/* Compares tokenize_prompt with an I64 id tensor (first n_valid entries). */
static size_t compare_ids(const int32_t *ids, size_t n, const mold_tensor *t, size_t row,
                          size_t n_valid) {
    const int64_t *ref = (const int64_t *)t->data + row * (size_t)t->shape[t->n_dims - 1];
    size_t bad = n != n_valid;
    for (size_t i = 0; !bad && i < n; i++)
        bad += ids[i] != ref[i];
    return bad;
}

static void test_template_tiny(void **state) {
    (void)state;
    mold_tokenizer *tok = NULL;
    tu_ok(mold_tokenizer_load(tu_fixture("qwen-image-tiny/model/tokenizer"), &tok), "load");
    json_t *man = load_json(tu_fixture("qwen-image-tiny/cases/manifest.json"));
    mold_safetensors *pipe = NULL, *te = NULL;
    tu_ok(mold_safetensors_open(tu_fixture("qwen-image-tiny/cases/pipeline.safetensors"), &pipe),
          "pipeline.safetensors");
    tu_ok(mold_safetensors_open(tu_fixture("qwen-image-tiny/cases/text_encoder.safetensors"), &te),
          "text_encoder.safetensors");
    static const char *const keys[2] = {"prompt", "negative_prompt"};
    static const char *const tensors[2] = {"prompt_ids", "negative_ids"};
    size_t bad = 0;
    for (int k = 0; k < 2; k++) {
        const char *p = json_string_value(json_object_get(man, keys[k]));
        const mold_tensor *t = NULL;
        tu_ok(mold_safetensors_get(pipe, tensors[k], &t), tensors[k]);
        assert_int_equal(t->dtype, MOLD_I64);
        int32_t *ids = NULL;
        size_t n = 0;
        tu_ok(mold_qwenimage_tokenize_prompt(tok, p, strlen(p), &ids, &n), "tokenize");
        size_t b = compare_ids(ids, n, t, 0, (size_t)t->shape[t->n_dims - 1]);
        printf("  tiny %s '%s': %zu ids vs %lld reference, %s\n", tensors[k], p, n,
               (long long)t->shape[t->n_dims - 1], b ? "MISMATCH" : "exact");
        bad += b;
        free(ids);
    }
    const mold_tensor *in = NULL, *mask = NULL;
    tu_ok(mold_safetensors_get(te, "input_ids", &in), "input_ids");
    tu_ok(mold_safetensors_get(te, "attention_mask", &mask), "attention_mask");
    const json_t *batch = json_object_get(man, "batch_prompts");
    for (size_t r = 0; r < json_array_size(batch); r++) {
        const char *p = json_string_value(json_array_get(batch, r));
        const int64_t *m = (const int64_t *)mask->data + r * (size_t)mask->shape[1];
        size_t valid = 0;
        for (int64_t i = 0; i < mask->shape[1]; i++)
            valid += m[i] != 0;
        int32_t *ids = NULL;
        size_t n = 0;
        tu_ok(mold_qwenimage_tokenize_prompt(tok, p, strlen(p), &ids, &n), "tokenize");
        size_t b = compare_ids(ids, n, in, r, valid);
        printf("  tiny batch prompt %zu: %zu ids vs %zu unpadded reference, %s\n", r, n, valid,
               b ? "MISMATCH" : "exact");
        bad += b;
        free(ids);
    }
    assert_int_equal(bad, 0);
    mold_safetensors_close(pipe);
    mold_safetensors_close(te);
    json_decref(man);
    mold_tokenizer_free(tok);
}

/* ---- bad input ---- */

static void test_invalid_utf8(void **state) {
    (void)state;
    mold_tokenizer *tok = NULL;
    tu_ok(mold_tokenizer_load(tu_fixture("qwen-image-tiny/model/tokenizer"), &tok), "load");
    static const struct {
        const char *s;
        size_t n;
        const char *needle;
    } cases[] = {
        {"\xff", 1, "byte offset 0 "},
        {"abc\x80", 4, "byte offset 3 "},
        {"ab\xc3", 3, "byte offset 2 "},              /* truncated 2-byte */
        {"\xc0\xaf", 2, "byte offset 0 "},            /* overlong '/' */
        {"ok \xe0\x80\xaf", 6, "byte offset 3 "},     /* overlong 3-byte */
        {"x\xed\xa0\x80", 4, "byte offset 1 "},       /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", 4, "byte offset 0 "},    /* above U+10FFFF */
        {"\xc3\xa9t\xc3\xa9\xe2\x82", 7, "byte offset 5 "}, /* truncated 3-byte */
        {"<|im_end|>\xfe", 11, "byte offset 10 "},
        {"a\0b\xf8", 4, "byte offset 3 "},            /* NUL is valid */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int32_t *ids = (int32_t *)1;
        size_t n = 99;
        tu_expect_error(mold_tokenizer_encode(tok, cases[i].s, cases[i].n, &ids, &n),
                        MOLD_E_INVALID, cases[i].needle, "invalid UTF-8");
        assert_null(ids);
        assert_int_equal(n, 0);
    }
    int32_t *ids = NULL;
    size_t n = 0;
    tu_expect_error(mold_qwenimage_tokenize_prompt(tok, "caf\xc3", 4, &ids, &n), MOLD_E_INVALID,
                    "prompt: invalid UTF-8 at byte offset 3 ", "invalid prompt");
    /* NUL, CR, control bytes are text: encoded, and decoded back unchanged. */
    static const char raw[] = "a\0b\r\n\r\x01\x7f\tz";
    tu_ok(mold_tokenizer_encode(tok, raw, sizeof(raw) - 1, &ids, &n), "encode NUL/CR");
    char *dec = NULL;
    size_t dn = 0;
    tu_ok(mold_tokenizer_decode(tok, ids, n, &dec, &dn), "decode NUL/CR");
    printf("  NUL/CR text: %zu bytes -> %zu ids -> %zu bytes\n", sizeof(raw) - 1, n, dn);
    assert_int_equal(dn, sizeof(raw) - 1);
    assert_memory_equal(dec, raw, dn);
    free(ids);
    free(dec);
    mold_tokenizer_free(tok);
}

/* Id of the single-byte token of b, found through the token strings with the
 * bytes_to_unicode rule of spec 2.5 (written out independently here). */
static int32_t byte_token(const mold_tokenizer *tok, uint8_t b) {
    uint32_t cp = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) {
        cp = 256;
        for (unsigned x = 0; x < b; x++)
            cp += !((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE);
    }
    char want[3] = {(char)cp, 0, 0};
    if (cp >= 0x80) {
        want[0] = (char)(0xC0 | (cp >> 6));
        want[1] = (char)(0x80 | (cp & 0x3F));
    }
    for (int32_t id = 0; id < (int32_t)mold_tokenizer_vocab_size(tok); id++) {
        const char *t = mold_tokenizer_token(tok, id);
        if (t && !strcmp(t, want))
            return id;
    }
    return -1;
}

static void test_decode_edges(void **state) {
    (void)state;
    mold_tokenizer *tok = NULL;
    tu_ok(mold_tokenizer_load(tu_fixture("qwen-image-tiny/model/tokenizer"), &tok), "load");
    char *dec = NULL;
    size_t dn = 0;
    int32_t bad_ids[2] = {5, 100000};
    tu_expect_error(mold_tokenizer_decode(tok, bad_ids, 2, &dec, &dn), MOLD_E_INVALID,
                    "ids[1]", "decode unknown id");
    int32_t neg[1] = {-1};
    tu_expect_error(mold_tokenizer_decode(tok, neg, 1, &dec, &dn), MOLD_E_INVALID, "ids[0]",
                    "decode negative id");
    /* Byte tokens that do not form UTF-8: U+FFFD per maximal invalid subpart
     * (E2 82 then 'A' is one U+FFFD, then 'A'; a lone 80 and a lone E9 one
     * more each). */
    const uint8_t bytes[] = {0xE2, 0x82, 'A', 0x80, 0xE9};
    int32_t ids[5];
    size_t n = 0;
    for (size_t i = 0; i < sizeof(bytes); i++) {
        ids[n] = byte_token(tok, bytes[i]);
        assert_true(ids[n] >= 0);
        n++;
    }
    tu_ok(mold_tokenizer_decode(tok, ids, n, &dec, &dn), "decode invalid bytes");
    static const char want[] = "\xEF\xBF\xBD" "A" "\xEF\xBF\xBD" "\xEF\xBF\xBD";
    printf("  lossy decode: %zu bytes (want %zu)\n", dn, sizeof(want) - 1);
    assert_int_equal(dn, sizeof(want) - 1);
    assert_memory_equal(dec, want, dn);
    free(dec);
    mold_tokenizer_free(tok);
}

static void expect_load_error(const char *name, const char *content, mold_status want,
                              const char *needle) {
    const char *p = tu_write_temp(name, content, strlen(content));
    mold_tokenizer *tok = (mold_tokenizer *)1;
    tu_expect_error(mold_tokenizer_load(p, &tok), want, needle, name);
    assert_null(tok);
}

#define PRE                                                                                    \
    "\"normalizer\":{\"type\":\"NFC\"},\"pre_tokenizer\":{\"type\":\"Sequence\","             \
    "\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|" \
    "'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|" \
    "\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"  \
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]},"

static void test_load_errors(void **state) {
    (void)state;
    /* A minimal valid file first, so the failures below are about one thing. */
    const char *ok = "{" PRE "\"added_tokens\":[{\"id\":4,\"content\":\"<s>\",\"special\":true}],"
                     "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"\\u0120\":3},"
                     "\"merges\":[\"a b\"]}}";
    const char *p = tu_write_temp("tok-ok.json", ok, strlen(ok));
    mold_tokenizer *tok = NULL;
    tu_ok(mold_tokenizer_load(p, &tok), "minimal tokenizer.json");
    int32_t *ids = NULL;
    size_t n = 0;
    tu_ok(mold_tokenizer_encode(tok, "ab<s> ab", 8, &ids, &n), "encode minimal");
    int32_t want[] = {2, 4, 3, 2};
    print_ids("minimal", ids, n);
    assert_int_equal(n, 4);
    assert_memory_equal(ids, want, sizeof(want));
    free(ids);
    mold_tokenizer_free(tok);

    expect_load_error("tok-trunc.json", "{" PRE "\"model\":{\"vocab\":{\"a\":0", MOLD_E_FORMAT,
                      "end of input");
    expect_load_error("tok-dupkey.json", "{" PRE "\"model\":{\"vocab\":{\"a\":0},\"vocab\":{},"
                      "\"merges\":[]}}", MOLD_E_FORMAT, "duplicate key 'vocab'");
    expect_load_error("tok-dupid.json", "{" PRE "\"model\":{\"vocab\":{\"a\":0,\"b\":0},"
                      "\"merges\":[]}}", MOLD_E_FORMAT, "duplicate vocabulary id 0");
    expect_load_error("tok-duptok.json", "{" PRE "\"model\":{\"vocab\":{\"a\":0,\"a\":1},"
                      "\"merges\":[]}}", MOLD_E_FORMAT, "duplicate vocabulary token 'a'");
    expect_load_error("tok-negid.json", "{" PRE "\"model\":{\"vocab\":{\"a\":-1},\"merges\":[]}}",
                      MOLD_E_FORMAT, "token id");
    expect_load_error("tok-sparse.json", "{" PRE "\"model\":{\"vocab\":{\"a\":9999999},"
                      "\"merges\":[]}}", MOLD_E_RANGE, "dense");
    expect_load_error("tok-merge.json", "{" PRE "\"model\":{\"vocab\":{\"a\":0,\"b\":1},"
                      "\"merges\":[\"a c\"]}}", MOLD_E_FORMAT, "unknown 'c'");
    expect_load_error("tok-merge2.json", "{" PRE "\"model\":{\"vocab\":{\"a\":0,\"b\":1},"
                      "\"merges\":[[\"a\",\"b\"]]}}", MOLD_E_FORMAT, "merged token 'ab'");
    expect_load_error("tok-merge3.json", "{" PRE "\"model\":{\"vocab\":{\"a\":0,\"b\":1},"
                      "\"merges\":[\"a  b\"]}}", MOLD_E_FORMAT, "one space");
    expect_load_error("tok-utf8.json", "{" PRE "\"model\":{\"vocab\":{\"\xc3(\":0},"
                      "\"merges\":[]}}", MOLD_E_FORMAT, "valid UTF-8");
    expect_load_error("tok-esc.json", "{" PRE "\"model\":{\"vocab\":{\"\\ud800\":0},"
                      "\"merges\":[]}}", MOLD_E_FORMAT, "low surrogate");
    expect_load_error("tok-nul.json", "{" PRE "\"model\":{\"vocab\":{\"a\\u0000\":0},"
                      "\"merges\":[]}}", MOLD_E_FORMAT, "NUL");
    expect_load_error("tok-trail.json", "{" PRE "\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}} x",
                      MOLD_E_FORMAT, "end of file");
    expect_load_error("tok-regex.json", "{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},"
                      "\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", MOLD_E_UNSUPPORTED,
                      "pre_tokenizer");
    expect_load_error("tok-unk.json", "{" PRE "\"model\":{\"unk_token\":\"a\",\"vocab\":{\"a\":0},"
                      "\"merges\":[]}}", MOLD_E_UNSUPPORTED, "unk_token");
    expect_load_error("tok-lstrip.json", "{" PRE "\"added_tokens\":[{\"id\":1,\"content\":\"x\","
                      "\"lstrip\":true}],\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}",
                      MOLD_E_UNSUPPORTED, "lstrip");
    expect_load_error("tok-added.json", "{" PRE "\"added_tokens\":[{\"id\":0,\"content\":\"x\"}],"
                      "\"model\":{\"vocab\":{\"a\":0},\"merges\":[]}}", MOLD_E_FORMAT,
                      "token id 0: expected 'a', got 'x'");
    expect_load_error("tok-nomodel.json", "{" PRE "\"x\":1}", MOLD_E_FORMAT, "'model'");
    tok = (mold_tokenizer *)1;
    tu_expect_error(mold_tokenizer_load(tu_build_path("no-such-tokenizer"), &tok),
                    MOLD_E_NOTFOUND, "no such file", "missing path");
    assert_null(tok);
}

/* ---- scale: long words and throughput ---- */

static void test_long_word(void **state) {
    (void)state;
    mold_tokenizer *tok = NULL;
    tu_ok(mold_tokenizer_load(tu_fixture("qwen-image-tiny/model/tokenizer"), &tok), "load");
    size_t n = 1 << 20; /* one 1 MiB regex piece: quadratic BPE would take minutes */
    char *s = malloc(n);
    for (size_t i = 0; i < n; i++)
        s[i] = "singer"[i % 6];
    int32_t *ids = NULL;
    size_t n_ids = 0;
    double t0 = now_s();
    tu_ok(mold_tokenizer_encode(tok, s, n, &ids, &n_ids), "encode 1 MiB word");
    double dt = now_s() - t0;
    char *dec = NULL;
    size_t dn = 0;
    tu_ok(mold_tokenizer_decode(tok, ids, n_ids, &dec, &dn), "decode");
    printf("  1 MiB single word: %zu ids in %.1f ms, roundtrip %s\n", n_ids, dt * 1e3,
           dn == n && !memcmp(dec, s, n) ? "exact" : "DIFFERS");
    assert_int_equal(dn, n);
    assert_memory_equal(dec, s, n);
    assert_true(n_ids <= n / 2); /* "singer" -> s ing er at least */
    free(dec);
    free(ids);
    free(s);
    mold_tokenizer_free(tok);
}

/* ~1 MB of mixed prompts through the real tokenizer, prompt by prompt (as the
 * engine calls it). Prints MB/s; checks decode(encode(s)) == NFC(s). */
static void test_throughput(void **state) {
    (void)state;
    mold_tokenizer *tok = load_real();
    json_t *g = load_json(tu_fixture("tokenizer-qwen2_5/golden.json"));
    const json_t *cases = json_object_get(g, "cases");
    size_t total = 0, n_prompts = 0, n_tokens = 0, bad = 0;
    double t_enc = 0, c_enc = 0;
    for (size_t round = 0; total < (1u << 20); round++) {
        for (size_t i = 0; i < json_array_size(cases) && total < (1u << 20); i++) {
            const json_t *jt = json_object_get(json_array_get(cases, i), "text");
            /* Vary the text per round so the word cache does not see only
             * repeats: append the round number spelled out in digits. */
            char buf[4096];
            int len = snprintf(buf, sizeof(buf), "%s %zu%s", json_string_value(jt), round * 7919,
                               round % 2 ? " extra words here" : "");
            int32_t *ids = NULL;
            size_t n = 0;
            double t0 = now_s(), c0 = cpu_s();
            tu_ok(mold_tokenizer_encode(tok, buf, (size_t)len, &ids, &n), "encode");
            t_enc += now_s() - t0;
            c_enc += cpu_s() - c0;
            char *dec = NULL, *want = NULL;
            size_t dn = 0, wn = 0;
            tu_ok(mold_tokenizer_decode(tok, ids, n, &dec, &dn), "decode");
            want = nfc(buf, (size_t)len, &wn);
            bad += dn != wn || memcmp(dec, want, wn);
            free(dec);
            free(want);
            free(ids);
            total += (size_t)len;
            n_tokens += n;
            n_prompts++;
        }
    }
    printf("  throughput: %zu prompts, %.2f MB, %zu tokens in %.1f ms wall = %.2f MB/s "
           "(CPU: %.2f MB/s, one thread); %zu roundtrip mismatches\n", n_prompts, total / 1e6,
           n_tokens, t_enc * 1e3, total / 1e6 / t_enc, total / 1e6 / c_enc, bad);
    assert_int_equal(bad, 0);
    /* Cache-hostile: 1 MiB of random lowercase words (every word new), one
     * call. */
    size_t n = 1 << 20;
    char *text = malloc(n);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        uint32_t r = (x >> 16) % 32;
        text[i] = r < 26 ? (char)('a' + r) : r < 30 ? ' ' : r == 30 ? ',' : '.';
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    double t0 = now_s(), c0 = cpu_s();
    tu_ok(mold_tokenizer_encode(tok, text, n, &ids, &n_ids), "encode random words");
    double dt = now_s() - t0, dc = cpu_s() - c0;
    char *dec = NULL;
    size_t dn = 0;
    tu_ok(mold_tokenizer_decode(tok, ids, n_ids, &dec, &dn), "decode random words");
    printf("  random words: 1 MiB -> %zu tokens in %.1f ms wall = %.2f MB/s (CPU: %.2f MB/s, "
           "one call); roundtrip %s\n", n_ids, dt * 1e3, n / 1e6 / dt, n / 1e6 / dc,
           dn == n && !memcmp(dec, text, n) ? "exact" : "DIFFERS");
    assert_int_equal(dn, n);
    assert_memory_equal(dec, text, n);
    free(dec);
    free(ids);
    free(text);
    json_decref(g);
    mold_tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_tokenizer_json),
        cmocka_unit_test(test_tiny_vocab_merges),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_decode_edges),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_long_word),
        cmocka_unit_test(test_template_tiny),
        cmocka_unit_test(test_real_tokenizer_json),
        cmocka_unit_test(test_real_vocab_merges),
        cmocka_unit_test(test_template_real),
        cmocka_unit_test(test_throughput),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
