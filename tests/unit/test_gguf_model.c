/*
 * test_gguf_model.c — what a llama.cpp-style text-encoder GGUF provides
 * besides weights: the text config from "<arch>.*" metadata and the
 * tokenizer from tokenizer.ggml.*.
 *
 * References: the tiny model's text_encoder/config.json (every field equal;
 * rms_norm_eps compared as f32, the GGUF stores an f32) and the tiny
 * tokenizer's 26 reference strings (cases/tokenizer.json, HF tokenizers):
 * ids must match exactly, for all three fixture GGUFs. Metadata edits
 * (wrong architecture, tokenizer model or pre-tokenizer, missing keys) give
 * errors naming the key.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/modeldir.h"
#include "models/qwen2_tokenizer.h"
#include "models/qwen2_tokenizer_gguf.h"
#include "testutil.h"

static const char *const PLANS[] = {"q8_0", "mixed-legacy", "mixed-k"};

static void test_text_config(void **state) {
    (void)state;
    mold_text_config want;
    tu_ok(mold_text_config_load(tu_fixture("qwen-image-tiny/model/text_encoder/config.json"),
                                &want), "config.json");
    for (size_t p = 0; p < 3; p++) {
        char rel[128];
        snprintf(rel, sizeof rel, "gguf/text-encoder-%s.gguf", PLANS[p]);
        mold_gguf *g;
        tu_ok(mold_gguf_open(tu_fixture(rel), &g), rel);
        mold_text_config got;
        tu_ok(mold_gguf_text_config(g, &got), "text config");
        printf("  %s: hidden %d, layers %d, heads %d/%d, head_dim %d, ffn %d, vocab %d, "
               "eps %g, theta %g, mrope [%d, %d, %d]\n", rel, got.hidden_size,
               got.num_hidden_layers, got.num_attention_heads, got.num_key_value_heads,
               got.head_dim, got.intermediate_size, got.vocab_size, got.rms_norm_eps,
               got.rope_theta, got.mrope_section[0], got.mrope_section[1], got.mrope_section[2]);
        assert_int_equal(got.hidden_size, want.hidden_size);
        assert_int_equal(got.num_hidden_layers, want.num_hidden_layers);
        assert_int_equal(got.num_attention_heads, want.num_attention_heads);
        assert_int_equal(got.num_key_value_heads, want.num_key_value_heads);
        assert_int_equal(got.head_dim, want.head_dim);
        assert_int_equal(got.intermediate_size, want.intermediate_size);
        assert_int_equal(got.vocab_size, want.vocab_size);
        assert_true((float)got.rms_norm_eps == (float)want.rms_norm_eps);
        assert_true(got.rope_theta == want.rope_theta);
        for (int i = 0; i < 3; i++) assert_int_equal(got.mrope_section[i], want.mrope_section[i]);
        mold_gguf_close(g);
    }
}

/* Encodes every reference string; returns the number of mismatches. */
static int run_cases(const mold_tokenizer *tok, const json_t *cases, const char *what) {
    int bad = 0;
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        size_t len = json_string_length(json_object_get(c, "text"));
        const json_t *ids = json_object_get(c, "ids");
        int32_t *got = NULL;
        size_t n = 0;
        tu_ok(mold_tokenizer_encode(tok, text, len, &got, &n), "encode");
        bool same = n == json_array_size(ids);
        for (size_t k = 0; same && k < n; k++)
            same = got[k] == json_integer_value(json_array_get(ids, k));
        if (!same) {
            printf("  %s: case %zu differs: '%s'\n", what, i, text);
            bad++;
        }
        free(got);
    }
    printf("  %s: %zu/%zu reference strings match exactly\n", what,
           json_array_size(cases) - (size_t)bad, json_array_size(cases));
    return bad;
}

static void test_tokenizer(void **state) {
    (void)state;
    json_error_t err;
    json_t *ref = json_load_file(tu_fixture("qwen-image-tiny/cases/tokenizer.json"), 0, &err);
    assert_non_null(ref);
    for (size_t p = 0; p < 3; p++) {
        char rel[128];
        snprintf(rel, sizeof rel, "gguf/text-encoder-%s.gguf", PLANS[p]);
        mold_gguf *g;
        tu_ok(mold_gguf_open(tu_fixture(rel), &g), rel);
        assert_true(mold_gguf_has_tokenizer(g));
        mold_tokenizer *tok;
        tu_ok(mold_tokenizer_from_gguf(g, &tok), "tokenizer from gguf");
        assert_int_equal(mold_tokenizer_vocab_size(tok),
                         json_integer_value(json_object_get(ref, "vocab_size")));
        assert_int_equal(run_cases(tok, json_object_get(ref, "cases"), rel), 0);
        assert_string_equal(mold_tokenizer_token(tok, 641), "<|im_start|>");
        mold_tokenizer_free(tok);
        mold_gguf_close(g);
    }
    json_decref(ref);
}

/* ---- metadata edits ---- */

/* Copies the q8_0 text encoder's metadata (no tensors unless keep_embd),
 * replacing key `key` by a string value `str` (or dropping it when NULL). */
static mold_gguf *edited(const char *key, const char *str, bool keep_embd) {
    mold_gguf *src;
    tu_ok(mold_gguf_open(tu_fixture("gguf/text-encoder-q8_0.gguf"), &src), "open");
    mold_gguf_writer *w;
    tu_ok(mold_gguf_writer_create(&w), "writer");
    for (size_t i = 0; i < mold_gguf_kv_count(src); i++) {
        const char *k = mold_gguf_kv_key(src, i);
        if (!strcmp(k, key)) {
            if (str) tu_ok(mold_gguf_writer_add_str(w, k, str), "edit");
            continue;
        }
        tu_ok(mold_gguf_writer_add_value(w, k, mold_gguf_kv_value(src, i)), "copy kv");
    }
    if (keep_embd) {
        const mold_gguf_tensor_info *ti = NULL;
        for (size_t i = 0; i < mold_gguf_tensor_count(src); i++)
            if (!strcmp(mold_gguf_tensor_info_at(src, i)->name, "token_embd.weight"))
                ti = mold_gguf_tensor_info_at(src, i);
        assert_non_null(ti);
        tu_ok(mold_gguf_writer_add_tensor(w, ti->name, ti->dtype, ti->n_dims, ti->ne, ti->data),
              "copy tensor");
    }
    const char *path = tu_build_path("test_gguf_model_edit.gguf");
    tu_ok(mold_gguf_writer_write(w, path, NULL, NULL), "write");
    mold_gguf_writer_free(w);
    mold_gguf_close(src);
    mold_gguf *g;
    tu_ok(mold_gguf_open(path, &g), "reopen");
    return g;
}

static void test_bad_metadata(void **state) {
    (void)state;
    mold_text_config cfg;
    mold_tokenizer *tok = NULL;
    mold_gguf *g = edited("general.architecture", "llama", true);
    tu_expect_error(mold_gguf_text_config(g, &cfg), MOLD_E_UNSUPPORTED,
                    "expected qwen2vl", "architecture llama");
    mold_gguf_close(g);
    g = edited("qwen2vl.block_count", NULL, true);
    tu_expect_error(mold_gguf_text_config(g, &cfg), MOLD_E_NOTFOUND, "qwen2vl.block_count",
                    "missing block_count");
    mold_gguf_close(g);
    g = edited("qwen2vl.attention.head_count", "four", true);
    tu_expect_error(mold_gguf_text_config(g, &cfg), MOLD_E_FORMAT,
                    "'qwen2vl.attention.head_count': expected integer, got string", "string heads");
    mold_gguf_close(g);
    g = edited("qwen2vl.embedding_length", NULL, false);
    tu_expect_error(mold_gguf_text_config(g, &cfg), MOLD_E_NOTFOUND, "embedding_length",
                    "missing embedding_length");
    mold_gguf_close(g);
    g = edited("general.name", NULL, false); /* no tensors at all */
    tu_expect_error(mold_gguf_text_config(g, &cfg), MOLD_E_NOTFOUND, "token_embd.weight",
                    "no embedding");
    mold_gguf_close(g);

    g = edited("tokenizer.ggml.model", "llama", false);
    tu_expect_error(mold_tokenizer_from_gguf(g, &tok), MOLD_E_UNSUPPORTED,
                    "tokenizer.ggml.model: expected gpt2", "sentencepiece model");
    mold_gguf_close(g);
    g = edited("tokenizer.ggml.pre", "llama-bpe", false);
    tu_expect_error(mold_tokenizer_from_gguf(g, &tok), MOLD_E_UNSUPPORTED,
                    "tokenizer.ggml.pre: expected qwen2, got llama-bpe", "other pre-tokenizer");
    mold_gguf_close(g);
    g = edited("tokenizer.ggml.merges", NULL, false);
    tu_expect_error(mold_tokenizer_from_gguf(g, &tok), MOLD_E_NOTFOUND, "tokenizer.ggml.merges",
                    "no merges");
    mold_gguf_close(g);
    g = edited("tokenizer.ggml.token_type", "x", false);
    tu_expect_error(mold_tokenizer_from_gguf(g, &tok), MOLD_E_FORMAT, "token_type", "bad types");
    assert_null(tok);
    mold_gguf_close(g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_config),
        cmocka_unit_test(test_tokenizer),
        cmocka_unit_test(test_bad_metadata),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
