/*
 * test_gguf_convert.c — `mold quantize` (formats/gguf_convert.c).
 *
 * - per-tensor rules on real Qwen-Image / Qwen2.5-VL shapes (spec 4.5 and
 *   appendix B): F32 for 1-D / small tensors, F16 fallback for img_in, the
 *   city96 bumps, llama.cpp's output.weight and K fallbacks;
 * - the tiny transformer and text encoder quantized, re-read with our reader:
 *   every tensor has the type the rules give, PyTorch shape reversed, and
 *   exactly the bytes mold_quantize makes from the source values; the text
 *   encoder file carries the same metadata keys, hyper-parameters, tokenizer
 *   arrays and tensor names as the fixture's llama.cpp-style file;
 * - inputs that are not a transformer / text encoder are refused by name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "base/quant.h"
#include "formats/gguf.h"
#include "formats/gguf_convert.h"
#include "formats/safetensors.h"
#include "testutil.h"

/* ---- rules ---- */

static mold_dtype dit(const char *name, int64_t rows, int64_t cols, mold_dtype base, bool rules) {
    int64_t shape[2] = {rows, cols};
    return mold_quantize_tensor_type(MOLD_QUANT_TRANSFORMER, name, cols ? 2 : 1, shape, 60, base,
                                     rules);
}

static mold_dtype txt(const char *name, int64_t rows, int64_t cols, mold_dtype base, bool rules) {
    int64_t shape[2] = {rows, cols};
    return mold_quantize_tensor_type(MOLD_QUANT_TEXT, name, cols ? 2 : 1, shape, 28, base, rules);
}

static void test_rules(void **state) {
    (void)state;
    /* city96 transformer, full-size shapes (rows = out features) */
    assert_int_equal(dit("img_in.weight", 3072, 64, MOLD_Q4_K, true), MOLD_F16);
    assert_int_equal(dit("img_in.weight", 3072, 64, MOLD_Q8_0, true), MOLD_Q8_0);
    assert_int_equal(dit("img_in.bias", 3072, 0, MOLD_Q4_K, true), MOLD_F32);
    assert_int_equal(dit("transformer_blocks.3.attn.norm_q.weight", 128, 0, MOLD_Q8_0, false),
                     MOLD_F32);
    assert_int_equal(dit("x.weight", 32, 32, MOLD_Q8_0, false), MOLD_F32); /* <= 1024 values */
    assert_int_equal(dit("transformer_blocks.3.attn.to_q.weight", 3072, 3072, MOLD_Q4_K, true),
                     MOLD_Q4_K);
    assert_int_equal(dit("transformer_blocks.3.attn.to_v.weight", 3072, 3072, MOLD_Q4_K, true),
                     MOLD_Q6_K);
    assert_int_equal(dit("transformer_blocks.3.attn.add_v_proj.weight", 3072, 3072, MOLD_Q5_K,
                         true), MOLD_Q6_K);
    assert_int_equal(dit("transformer_blocks.3.attn.to_v.weight", 3072, 3072, MOLD_Q4_K, false),
                     MOLD_Q4_K);
    assert_int_equal(dit("transformer_blocks.3.img_mlp.net.2.weight", 3072, 12288, MOLD_Q4_K,
                         true), MOLD_Q6_K);
    assert_int_equal(dit("transformer_blocks.3.txt_mlp.net.2.weight", 3072, 12288, MOLD_Q4_0,
                         true), MOLD_Q4_1);
    assert_int_equal(dit("transformer_blocks.3.txt_mlp.net.2.weight", 3072, 12288, MOLD_Q5_0,
                         true), MOLD_Q5_1);
    assert_int_equal(dit("transformer_blocks.0.attn.to_q.weight", 3072, 3072, MOLD_Q4_K, true),
                     MOLD_Q5_K);
    assert_int_equal(dit("transformer_blocks.59.img_mod.1.weight", 18432, 3072, MOLD_Q5_K, true),
                     MOLD_Q6_K);
    assert_int_equal(dit("transformer_blocks.59.attn.to_v.weight", 3072, 3072, MOLD_Q4_K, true),
                     MOLD_Q6_K); /* bumps never lower a type */
    assert_int_equal(dit("transformer_blocks.0.attn.to_q.weight", 3072, 3072, MOLD_Q4_0, true),
                     MOLD_Q4_0);
    /* llama.cpp text encoder */
    assert_int_equal(txt("output.weight", 152064, 3584, MOLD_Q4_K, false), MOLD_Q6_K);
    assert_int_equal(txt("output.weight", 152064, 3584, MOLD_Q8_0, false), MOLD_Q8_0);
    assert_int_equal(txt("token_embd.weight", 152064, 3584, MOLD_Q4_K, true), MOLD_Q4_K);
    assert_int_equal(txt("blk.0.attn_norm.weight", 3584, 0, MOLD_Q4_K, true), MOLD_F32);
    assert_int_equal(txt("blk.0.attn_v.weight", 512, 3584, MOLD_Q4_K, true), MOLD_Q6_K);
    assert_int_equal(txt("blk.4.attn_v.weight", 512, 3584, MOLD_Q4_K, true), MOLD_Q4_K);
    assert_int_equal(txt("blk.5.ffn_down.weight", 3584, 18944, MOLD_Q5_K, true), MOLD_Q6_K);
    assert_int_equal(txt("blk.27.ffn_down.weight", 3584, 18944, MOLD_Q4_K, false), MOLD_Q4_K);
    assert_int_equal(txt("blk.1.ffn_up.weight", 160, 64, MOLD_Q4_K, false), MOLD_Q5_0);
    assert_int_equal(txt("blk.1.ffn_up.weight", 160, 64, MOLD_Q5_K, false), MOLD_Q5_1);
    assert_int_equal(txt("blk.1.ffn_up.weight", 160, 64, MOLD_Q6_K, false), MOLD_Q8_0);
    assert_int_equal(txt("blk.1.ffn_up.weight", 160, 48, MOLD_Q4_K, false), MOLD_F16);

    assert_int_equal(mold_quantize_parse_type("q4_k"), MOLD_Q4_K);
    assert_int_equal(mold_quantize_parse_type("Q8_0"), MOLD_Q8_0);
    assert_int_equal(mold_quantize_parse_type("q2_K"), MOLD_DTYPE_INVALID);
    assert_int_equal(mold_quantize_parse_type("bf16"), MOLD_DTYPE_INVALID);
}

/* ---- quantizing the tiny model ---- */

/* Every tensor of `out` came from `src_name` in st with the rule's type and
 * exactly mold_quantize's bytes. Returns the number of tensors checked. */
static size_t check_file(const mold_gguf *g, const mold_safetensors *st, mold_quant_kind kind,
                         mold_dtype base, bool rules, int n_layers, size_t n_expected) {
    size_t n = mold_gguf_tensor_count(g);
    assert_int_equal(n, n_expected);
    for (size_t i = 0; i < n; i++) {
        const mold_tensor *t = mold_gguf_tensor_at(g, i);
        const mold_tensor *s = NULL;
        if (kind == MOLD_QUANT_TRANSFORMER) {
            s = mold_safetensors_find(st, t->name);
        } else {
            static const char *const from[] = {
                "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};
            static const char *const to[] = {"token_embd.weight", "output_norm.weight",
                                             "output.weight"};
            char hf[256];
            for (size_t k = 0; k < 3 && !s; k++)
                if (!strcmp(t->name, to[k])) s = mold_safetensors_find(st, from[k]);
            for (int l = 0; !s && l < n_layers; l++) {
                static const char *const parts[][2] = {
                    {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"},
                    {"attn_v", "self_attn.v_proj"}, {"attn_output", "self_attn.o_proj"},
                    {"attn_norm", "input_layernorm"}, {"ffn_norm", "post_attention_layernorm"},
                    {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"},
                    {"ffn_down", "mlp.down_proj"}};
                for (size_t k = 0; k < 9 && !s; k++)
                    for (int b = 0; b < 2 && !s; b++) {
                        char g_name[128];
                        snprintf(g_name, sizeof g_name, "blk.%d.%s.%s", l, parts[k][0],
                                 b ? "bias" : "weight");
                        if (strcmp(g_name, t->name)) continue;
                        snprintf(hf, sizeof hf, "model.layers.%d.%s.%s", l, parts[k][1],
                                 b ? "bias" : "weight");
                        s = mold_safetensors_find(st, hf);
                    }
            }
        }
        if (!s) fail_msg("%s: no source tensor", t->name);
        assert_true(mold_tensor_has_shape(t, s->n_dims, s->shape));
        mold_dtype want = mold_quantize_tensor_type(kind, t->name, s->n_dims, s->shape, n_layers,
                                                    base, rules);
        if (t->dtype != want)
            fail_msg("%s: dtype %s, rules say %s", t->name, mold_dtype_name(t->dtype),
                     mold_dtype_name(want));
        float *x = tu_to_f32(s);
        uint8_t *q = malloc(t->n_bytes);
        tu_ok(mold_quantize(t->dtype, x, q, mold_tensor_nelems(s)), t->name);
        assert_memory_equal(q, t->data, t->n_bytes);
        free(q);
        free(x);
    }
    return n;
}

static void test_transformer(void **state) {
    (void)state;
    const char *in = tu_fixture("qwen-image-tiny/model/transformer");
    mold_safetensors *st;
    tu_ok(mold_safetensors_open(in, &st), "open source");
    static const struct { mold_dtype t; bool rules; } cases[] = {
        {MOLD_Q8_0, false}, {MOLD_Q4_K, true}, {MOLD_Q5_0, true}};
    for (size_t k = 0; k < 3; k++) {
        mold_quantize_opts o = {.type = cases[k].t, .city96_rules = cases[k].rules,
                                .n_threads = 2, .name = "tiny"};
        mold_quantize_stats s;
        const char *out = tu_build_path("test_convert_dit.gguf");
        tu_ok(mold_gguf_quantize(in, out, &o, &s), "quantize transformer");
        assert_int_equal(s.kind, MOLD_QUANT_TRANSFORMER);
        printf("  transformer %s%s: %zu tensors, %llu -> %llu bytes (f32 %zu, f16 %zu, q %zu)\n",
               mold_dtype_name(cases[k].t), cases[k].rules ? " city96" : "", s.n_tensors,
               (unsigned long long)s.bytes_in, (unsigned long long)s.bytes_out,
               s.n_by_type[MOLD_F32], s.n_by_type[MOLD_F16],
               s.n_tensors - s.n_by_type[MOLD_F32] - s.n_by_type[MOLD_F16]);
        mold_gguf *g;
        tu_ok(mold_gguf_open(out, &g), "reopen");
        assert_string_equal(mold_gguf_architecture(g), "qwen_image");
        int64_t qv = 0;
        tu_ok(mold_gguf_get_int(g, "general.quantization_version", true, &qv), "qv");
        assert_int_equal(qv, 2);
        check_file(g, st, MOLD_QUANT_TRANSFORMER, cases[k].t, cases[k].rules, 2,
                   mold_safetensors_count(st));
        mold_gguf_close(g);
    }
    mold_safetensors_close(st);
}

static void test_text_encoder(void **state) {
    (void)state;
    const char *in = tu_fixture("qwen-image-tiny/model/text_encoder");
    mold_safetensors *st;
    tu_ok(mold_safetensors_open(in, &st), "open source");
    mold_quantize_opts o = {.type = MOLD_Q8_0, .n_threads = 2};
    mold_quantize_stats s;
    const char *out = tu_build_path("test_convert_te.gguf");
    tu_ok(mold_gguf_quantize(in, out, &o, &s), "quantize text encoder");
    assert_int_equal(s.kind, MOLD_QUANT_TEXT);
    printf("  text encoder q8_0: %zu tensors, %zu skipped\n", s.n_tensors, s.n_skipped);
    mold_gguf *g, *ref;
    tu_ok(mold_gguf_open(out, &g), "reopen");
    tu_ok(mold_gguf_open(tu_fixture("gguf/text-encoder-q8_0.gguf"), &ref), "fixture");
    /* same metadata keys; same values except the name and file type */
    assert_int_equal(mold_gguf_kv_count(g) - 2, mold_gguf_kv_count(ref));
    for (size_t i = 0; i < mold_gguf_kv_count(ref); i++) {
        const char *key = mold_gguf_kv_key(ref, i);
        const mold_gguf_value *a = mold_gguf_find_kv(g, key), *b = mold_gguf_kv_value(ref, i);
        if (!a) fail_msg("key %s missing", key);
        if (!strcmp(key, "general.name")) continue;
        assert_int_equal(a->type, b->type);
        if (a->type == MOLD_GGUF_STR) {
            assert_string_equal(a->v.str.s, b->v.str.s);
        } else if (a->type == MOLD_GGUF_ARR) {
            assert_int_equal(a->elem_type, b->elem_type);
            assert_int_equal(a->n, b->n);
            for (uint64_t k = 0; k < a->n; k++) {
                if (a->elem_type == MOLD_GGUF_STR)
                    assert_string_equal(a->v.strs[k].s, b->v.strs[k].s);
                else
                    assert_int_equal(mold_gguf_array_int(a, k), mold_gguf_array_int(b, k));
            }
        } else {
            assert_true(a->v.u == b->v.u); /* f32 / ints / bool: same bits */
        }
    }
    printf("  %zu metadata keys equal to the fixture's llama.cpp-style file\n",
           mold_gguf_kv_count(ref));
    assert_int_equal(mold_gguf_tensor_count(g), mold_gguf_tensor_count(ref));
    for (size_t i = 0; i < mold_gguf_tensor_count(ref); i++) {
        const mold_tensor *r = mold_gguf_tensor_at(ref, i), *t = mold_gguf_find(g, r->name);
        if (!t) fail_msg("tensor %s missing", r->name);
        assert_true(mold_tensor_has_shape(t, r->n_dims, r->shape));
    }
    check_file(g, st, MOLD_QUANT_TEXT, MOLD_Q8_0, false, 2, mold_gguf_tensor_count(ref));
    mold_gguf_close(ref);
    mold_gguf_close(g);
    mold_safetensors_close(st);
}

static void test_errors(void **state) {
    (void)state;
    mold_quantize_opts o = {.type = MOLD_Q8_0, .n_threads = 1};
    const char *out = tu_build_path("test_convert_bad.gguf");
    remove(out);
    tu_expect_error(mold_gguf_quantize(tu_fixture("qwen-image-tiny/model/vae"), out, &o, NULL),
                    MOLD_E_FORMAT, "neither a Qwen-Image transformer", "VAE input");
    assert_false(mold_path_exists(out)); /* nothing left behind */
    o.type = MOLD_BF16;
    tu_expect_error(mold_gguf_quantize(tu_fixture("qwen-image-tiny/model/transformer"), out, &o,
                                       NULL), MOLD_E_INVALID, "--type bf16", "bf16 type");
    o.type = MOLD_Q8_0;
    tu_expect_error(mold_gguf_quantize("/nonexistent/transformer", out, &o, NULL),
                    MOLD_E_NOTFOUND, "/nonexistent", "missing input");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_transformer),
        cmocka_unit_test(test_text_encoder),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
