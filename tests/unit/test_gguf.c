/*
 * test_gguf.c — GGUF reader, writer and tensor source.
 *
 * - blocks.gguf (fixture): metadata values read back as the fixture's
 *   generator wrote them, tensor infos in ggml order, views reversed.
 * - writer round trip: every metadata type (nested and string arrays too),
 *   custom alignment, streamed tensor data; re-read and compared exactly.
 * - tensor source: HF names on the llama.cpp-style text encoder, diffusers
 *   names with and without the "model.diffusion_model." prefix.
 * - hostile input: a valid image truncated at every byte, and one mutation
 *   per check in gguf.c's header; each gives the expected status and a
 *   message naming the problem.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fs.h"
#include "base/quant.h"
#include "formats/gguf.h"
#include "testutil.h"

/* ---- a little-endian image builder for hand-made files ---- */

typedef struct img {
    uint8_t b[8192];
    size_t n;
} img;

static void put(img *m, const void *p, size_t n) {
    assert_true(m->n + n <= sizeof m->b);
    memcpy(m->b + m->n, p, n);
    m->n += n;
}
static void u32(img *m, uint32_t v) { put(m, &v, 4); }
static void u64(img *m, uint64_t v) { put(m, &v, 8); }
static void str(img *m, const char *s) {
    u64(m, strlen(s));
    put(m, s, strlen(s));
}
static void pad_to(img *m, size_t a) {
    while (m->n % a) m->b[m->n++] = 0;
}
static void header(img *m, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    m->n = 0;
    put(m, "GGUF", 4);
    u32(m, version);
    u64(m, n_tensors);
    u64(m, n_kv);
}
/* tensor info: ggml-order dims */
static void tinfo(img *m, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                  uint64_t offset) {
    str(m, name);
    u32(m, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) u64(m, ne[d]);
    u32(m, type);
    u64(m, offset);
}

static void expect_bad(const img *m, mold_status want, const char *needle, const char *what) {
    mold_gguf *g = (mold_gguf *)1;
    tu_expect_error(mold_gguf_open_buf(m->b, m->n, "bad.gguf", &g), want, needle, what);
    assert_null(g);
}

/* A valid two-tensor file: one kv, f32 [4] at 0 and q8_0 [32] at 32. */
static void valid_image(img *m) {
    header(m, 3, 2, 1);
    str(m, "general.architecture");
    u32(m, MOLD_GGUF_STR);
    str(m, "test");
    uint64_t ne4 = 4, ne32 = 32;
    tinfo(m, "a", 1, &ne4, 0, 0);
    tinfo(m, "b", 1, &ne32, 8, 32);
    pad_to(m, 32);
    for (int i = 0; i < 64 + 34; i++) m->b[m->n++] = (uint8_t)(i == 1 ? 0x3c : 0);
}

/* ---- blocks.gguf metadata and tensor infos ---- */

static void test_blocks_metadata(void **state) {
    (void)state;
    mold_gguf *g;
    tu_ok(mold_gguf_open(tu_fixture("gguf/blocks.gguf"), &g), "open");
    assert_int_equal(mold_gguf_version(g), 3);
    assert_int_equal(mold_gguf_alignment(g), 32);
    assert_int_equal(mold_gguf_kv_count(g), 8);
    assert_string_equal(mold_gguf_architecture(g), "test");
    const char *name = NULL;
    tu_ok(mold_gguf_get_str(g, "general.name", true, &name), "name");
    assert_string_equal(name, "block format vectors");
    int64_t u = 0;
    tu_ok(mold_gguf_get_int(g, "test.u64", true, &u), "u64");
    assert_int_equal(u, 1099511627776ll);
    assert_int_equal(mold_gguf_find_kv(g, "test.u64")->type, MOLD_GGUF_U64);
    double f = 0;
    tu_ok(mold_gguf_get_float(g, "test.f32", true, &f), "f32");
    assert_true(f == 0.25);
    bool b = false;
    tu_ok(mold_gguf_get_bool(g, "test.bool", true, &b), "bool");
    assert_true(b);
    int64_t arr[8];
    size_t n = 0;
    tu_ok(mold_gguf_get_int_array(g, "test.i32_array", true, arr, 8, &n), "i32 array");
    assert_int_equal(n, 3);
    assert_int_equal(arr[0], 1);
    assert_int_equal(arr[1], -2);
    assert_int_equal(arr[2], 3);
    const mold_gguf_str *strs;
    uint64_t ns = 0;
    tu_ok(mold_gguf_get_str_array(g, "test.str_array", true, &strs, &ns), "str array");
    assert_int_equal(ns, 3);
    assert_string_equal(strs[0].s, "a");
    assert_string_equal(strs[1].s, "\xc3\xa9\xe7\x8c\xab"); /* "é猫" */
    assert_int_equal(strs[2].len, 0);

    /* type errors and absent keys */
    tu_expect_error(mold_gguf_get_int(g, "general.name", true, &u), MOLD_E_FORMAT,
                    "expected integer, got string", "int from string");
    tu_expect_error(mold_gguf_get_str(g, "test.i32_array", true, &name), MOLD_E_FORMAT,
                    "got array of i32", "string from array");
    tu_expect_error(mold_gguf_get_int_array(g, "test.i32_array", true, arr, 2, &n), MOLD_E_RANGE,
                    "at most 2", "array capacity");
    tu_expect_error(mold_gguf_get_float(g, "missing.key", true, &f), MOLD_E_NOTFOUND,
                    "missing.key", "absent required");
    f = 7;
    tu_ok(mold_gguf_get_float(g, "missing.key", false, &f), "absent optional");
    assert_true(f == 7);

    /* tensor infos: ggml order, views reversed */
    assert_int_equal(mold_gguf_tensor_count(g), 21);
    const mold_gguf_tensor_info *ti = mold_gguf_tensor_info_at(g, 0);
    assert_string_equal(ti->name, "random.q4_0");
    assert_int_equal(ti->ggml_type, 2);
    assert_int_equal(ti->n_dims, 2);
    assert_int_equal(ti->ne[0], 96);
    assert_int_equal(ti->ne[1], 3);
    assert_int_equal(ti->n_bytes, 3 * 3 * 18);
    const mold_tensor *t = mold_gguf_find(g, "random.q6_k");
    assert_non_null(t);
    assert_int_equal(t->dtype, MOLD_Q6_K);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->shape[0], 3);
    assert_int_equal(t->shape[1], 512);
    assert_int_equal(t->n_bytes, 3 * 2 * 210);
    assert_int_equal(mold_gguf_find(g, "plain.bf16")->dtype, MOLD_BF16);
    assert_null(mold_gguf_find(g, "plain"));
    mold_gguf_close(g);
}

/* ---- writer round trip ---- */

static mold_status fill_pattern(void *ud, size_t index, void *dst, uint64_t n_bytes) {
    (void)ud;
    for (uint64_t i = 0; i < n_bytes; i++) ((uint8_t *)dst)[i] = (uint8_t)(index * 31 + i);
    return MOLD_OK;
}

static void test_writer_roundtrip(void **state) {
    (void)state;
    mold_gguf_writer *w;
    tu_ok(mold_gguf_writer_create(&w), "create");
    tu_ok(mold_gguf_writer_set_alignment(w, 64), "alignment");
    tu_ok(mold_gguf_writer_add_str(w, "general.architecture", "qwen_image"), "str");
    tu_ok(mold_gguf_writer_add_u32(w, "k.u32", 4000000000u), "u32");
    tu_ok(mold_gguf_writer_add_i32(w, "k.i32", -7), "i32");
    tu_ok(mold_gguf_writer_add_u64(w, "k.u64", UINT64_MAX), "u64");
    tu_ok(mold_gguf_writer_add_f32(w, "k.f32", 1e-6f), "f32");
    tu_ok(mold_gguf_writer_add_bool(w, "k.bool", false), "bool");
    const int16_t i16s[3] = {-32768, 0, 32767};
    tu_ok(mold_gguf_writer_add_array(w, "k.i16s", MOLD_GGUF_I16, i16s, 3), "i16 array");
    const double f64s[2] = {0.1, -2.5e300};
    tu_ok(mold_gguf_writer_add_array(w, "k.f64s", MOLD_GGUF_F64, f64s, 2), "f64 array");
    const char *const words[] = {"x", "", "Ġhello"};
    tu_ok(mold_gguf_writer_add_str_array(w, "k.words", words, 3), "string array");
    /* nested: [[1, 2], [], [3]] of u8, and an i8 scalar */
    const uint8_t a0[] = {1, 2}, a2[] = {3};
    mold_gguf_value inner[3] = {
        {.type = MOLD_GGUF_ARR, .elem_type = MOLD_GGUF_U8, .n = 2, .v.raw = a0},
        {.type = MOLD_GGUF_ARR, .elem_type = MOLD_GGUF_U8, .n = 0, .v.raw = a0},
        {.type = MOLD_GGUF_ARR, .elem_type = MOLD_GGUF_U8, .n = 1, .v.raw = a2},
    };
    mold_gguf_value nested = {.type = MOLD_GGUF_ARR, .elem_type = MOLD_GGUF_ARR, .n = 3,
                              .v.vals = inner};
    tu_ok(mold_gguf_writer_add_value(w, "k.nested", &nested), "nested");
    mold_gguf_value i8 = {.type = MOLD_GGUF_I8, .v.i = -100};
    tu_ok(mold_gguf_writer_add_value(w, "k.i8", &i8), "i8");
    tu_expect_error(mold_gguf_writer_add_u32(w, "k.u32", 1), MOLD_E_INVALID, "duplicate",
                    "duplicate key");

    float f32s[6] = {1, -2, 3.5f, 0, 1e30f, -1e-30f};
    int64_t ne_a[2] = {3, 2}, ne_b[2] = {64, 2}, ne_c[1] = {256};
    tu_ok(mold_gguf_writer_add_tensor(w, "a", MOLD_F32, 2, ne_a, f32s), "tensor a");
    tu_ok(mold_gguf_writer_add_tensor(w, "b", MOLD_Q5_1, 2, ne_b, NULL), "tensor b");
    tu_ok(mold_gguf_writer_add_tensor(w, "c", MOLD_Q4_K, 1, ne_c, NULL), "tensor c");
    tu_expect_error(mold_gguf_writer_add_tensor(w, "a", MOLD_F32, 2, ne_a, f32s), MOLD_E_INVALID,
                    "duplicate", "duplicate tensor");
    tu_expect_error(mold_gguf_writer_add_tensor(w, "d", MOLD_Q4_K, 2, ne_b, NULL), MOLD_E_INVALID,
                    "block size 256", "partial block");
    const char *path = tu_build_path("test_gguf_roundtrip.gguf");
    tu_ok(mold_gguf_writer_write(w, path, fill_pattern, NULL), "write");
    mold_gguf_writer_free(w);

    mold_gguf *g;
    tu_ok(mold_gguf_open(path, &g), "reopen");
    assert_int_equal(mold_gguf_alignment(g), 64);
    assert_int_equal(mold_gguf_data_offset(g) % 64, 0);
    assert_int_equal(mold_gguf_kv_count(g), 12);
    assert_string_equal(mold_gguf_architecture(g), "qwen_image");
    const mold_gguf_value *v = mold_gguf_find_kv(g, "k.u32");
    assert_int_equal(v->type, MOLD_GGUF_U32);
    assert_int_equal(v->v.u, 4000000000u);
    int64_t iv;
    tu_ok(mold_gguf_get_int(g, "k.i32", true, &iv), "i32");
    assert_int_equal(iv, -7);
    tu_expect_error(mold_gguf_get_int(g, "k.u64", true, &iv), MOLD_E_RANGE, "INT64_MAX", "u64 max");
    assert_true(mold_gguf_find_kv(g, "k.u64")->v.u == UINT64_MAX);
    double fv;
    tu_ok(mold_gguf_get_float(g, "k.f32", true, &fv), "f32");
    assert_true((float)fv == 1e-6f);
    bool bv = true;
    tu_ok(mold_gguf_get_bool(g, "k.bool", true, &bv), "bool");
    assert_false(bv);
    v = mold_gguf_find_kv(g, "k.i16s");
    assert_int_equal(v->elem_type, MOLD_GGUF_I16);
    assert_int_equal(mold_gguf_array_int(v, 0), -32768);
    assert_int_equal(mold_gguf_array_int(v, 2), 32767);
    v = mold_gguf_find_kv(g, "k.f64s");
    assert_true(mold_gguf_array_float(v, 0) == 0.1 && mold_gguf_array_float(v, 1) == -2.5e300);
    const mold_gguf_str *ws;
    uint64_t nw;
    tu_ok(mold_gguf_get_str_array(g, "k.words", true, &ws, &nw), "words");
    assert_int_equal(nw, 3);
    assert_string_equal(ws[2].s, "Ġhello");
    assert_int_equal(ws[1].len, 0);
    v = mold_gguf_find_kv(g, "k.nested");
    assert_int_equal(v->elem_type, MOLD_GGUF_ARR);
    assert_int_equal(v->n, 3);
    assert_int_equal(v->v.vals[0].n, 2);
    assert_int_equal(mold_gguf_array_int(&v->v.vals[0], 1), 2);
    assert_int_equal(v->v.vals[1].n, 0);
    assert_int_equal(mold_gguf_array_int(&v->v.vals[2], 0), 3);
    assert_int_equal(mold_gguf_find_kv(g, "k.i8")->v.i, -100);

    assert_int_equal(mold_gguf_tensor_count(g), 3);
    const mold_tensor *ta = mold_gguf_find(g, "a");
    assert_int_equal(ta->shape[0], 2);
    assert_int_equal(ta->shape[1], 3);
    assert_memory_equal(ta->data, f32s, sizeof f32s);
    for (size_t i = 1; i < 3; i++) {
        const mold_gguf_tensor_info *ti = mold_gguf_tensor_info_at(g, i);
        assert_int_equal(ti->offset % 64, 0);
        for (uint64_t k = 0; k < ti->n_bytes; k++)
            assert_int_equal(((const uint8_t *)ti->data)[k], (uint8_t)(i * 31 + k));
    }
    assert_int_equal(mold_gguf_find(g, "b")->n_bytes, 4 * 24);
    assert_int_equal(mold_gguf_find(g, "c")->n_bytes, 144);
    mold_gguf_close(g);
}

/* ---- tensor source ---- */

static void test_source_llm_names(void **state) {
    (void)state;
    char buf[128];
    static const char *const pairs[][2] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight"},
        {"model.layers.27.self_attn.k_proj.bias", "blk.27.attn_k.bias"},
        {"model.layers.3.self_attn.v_proj.weight", "blk.3.attn_v.weight"},
        {"model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight"},
        {"model.layers.1.input_layernorm.weight", "blk.1.attn_norm.weight"},
        {"model.layers.1.post_attention_layernorm.weight", "blk.1.ffn_norm.weight"},
        {"model.layers.1.mlp.gate_proj.weight", "blk.1.ffn_gate.weight"},
        {"model.layers.1.mlp.up_proj.weight", "blk.1.ffn_up.weight"},
        {"model.language_model.layers.12.mlp.down_proj.weight", "blk.12.ffn_down.weight"},
        {"model.language_model.embed_tokens.weight", "token_embd.weight"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        assert_true(mold_gguf_llm_name(pairs[i][0], buf, sizeof buf));
        assert_string_equal(buf, pairs[i][1]);
    }
    assert_false(mold_gguf_llm_name("visual.blocks.0.attn.qkv.weight", buf, sizeof buf));
    assert_false(mold_gguf_llm_name("model.layers.x.mlp.up_proj.weight", buf, sizeof buf));

    mold_gguf *g;
    tu_ok(mold_gguf_open(tu_fixture("gguf/text-encoder-mixed-k.gguf"), &g), "open te");
    mold_tensor_source src = mold_source_gguf(g);
    const mold_tensor *t;
    int64_t emb[2] = {662, 64}, kb[1] = {32};
    tu_ok(mold_source_get_shaped(&src, "model.embed_tokens.weight", 2, emb, &t), "embed");
    assert_string_equal(t->name, "token_embd.weight");
    tu_ok(mold_source_get_shaped(&src, "model.layers.1.self_attn.k_proj.bias", 1, kb, &t), "k bias");
    tu_ok(mold_source_get(&src, "model.layers.0.mlp.down_proj.weight", &t), "down");
    assert_int_equal(t->shape[0], 64);
    assert_int_equal(t->shape[1], 160);
    tu_ok(mold_source_get(&src, "blk.0.ffn_up.weight", &t), "llama.cpp name as is");
    tu_expect_error(mold_source_get(&src, "model.layers.2.mlp.up_proj.weight", &t),
                    MOLD_E_NOTFOUND, "model.layers.2.mlp.up_proj.weight", "absent layer");
    mold_gguf_close(g);
}

static void test_source_city96_prefix(void **state) {
    (void)state;
    mold_gguf_writer *w;
    tu_ok(mold_gguf_writer_create(&w), "create");
    tu_ok(mold_gguf_writer_add_str(w, "general.architecture", "qwen_image"), "arch");
    float v[64] = {0};
    int64_t ne[2] = {32, 2};
    tu_ok(mold_gguf_writer_add_tensor(w, "model.diffusion_model.img_in.weight", MOLD_F32, 2, ne, v),
          "prefixed");
    tu_ok(mold_gguf_writer_add_tensor(w, "txt_in.weight", MOLD_F32, 2, ne, v), "plain");
    const char *path = tu_build_path("test_gguf_prefix.gguf");
    tu_ok(mold_gguf_writer_write(w, path, NULL, NULL), "write");
    mold_gguf_writer_free(w);
    mold_gguf *g;
    tu_ok(mold_gguf_open(path, &g), "open");
    mold_tensor_source src = mold_source_gguf(g);
    const mold_tensor *t;
    int64_t shape[2] = {2, 32};
    tu_ok(mold_source_get_shaped(&src, "img_in.weight", 2, shape, &t), "prefixed lookup");
    tu_ok(mold_source_get_shaped(&src, "txt_in.weight", 2, shape, &t), "plain lookup");
    mold_gguf_close(g);

    /* the fixture transformers: diffusers names, mixed types */
    tu_ok(mold_gguf_open(tu_fixture("gguf/transformer-mixed-k.gguf"), &g), "open transformer");
    assert_string_equal(mold_gguf_architecture(g), "qwen_image");
    src = mold_source_gguf(g);
    int64_t lin1[2] = {64, 256};
    tu_ok(mold_source_get_shaped(&src, "time_text_embed.timestep_embedder.linear_1.weight", 2, lin1,
                                 &t), "linear_1");
    assert_int_equal(t->dtype, MOLD_Q4_K);
    mold_gguf_close(g);
}

/* ---- hostile input ---- */

/* Every truncation of a valid file fails cleanly, except cuts inside the
 * padding after the last tensor's data. */
static void test_truncation(void **state) {
    (void)state;
    img m;
    valid_image(&m);
    mold_gguf *g;
    tu_ok(mold_gguf_open_buf(m.b, m.n, "valid.gguf", &g), "valid");
    const mold_tensor *b = mold_gguf_find(g, "b");
    assert_int_equal(b->dtype, MOLD_Q8_0);
    float y[32];
    tu_ok(mold_dequantize(b->dtype, b->data, y, 32), "dequantize b");
    size_t data_end = (size_t)((const uint8_t *)b->data - m.b) + 34;
    mold_gguf_close(g);
    size_t n_failed = 0;
    for (size_t cut = 0; cut < m.n; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan catches any overread */
        memcpy(copy, m.b, cut);
        g = (mold_gguf *)1;
        mold_status st = mold_gguf_open_buf(copy, cut, "cut.gguf", &g);
        if (cut < data_end) {
            if (st != MOLD_E_FORMAT) fail_msg("cut at %zu: expected format error, got %d", cut, st);
            assert_null(g);
            n_failed++;
        } else {
            tu_ok(st, "cut in trailing padding");
            mold_gguf_close(g);
        }
        free(copy);
    }
    printf("  %zu truncations rejected, last message: %s\n", n_failed, mold_error_message());
    assert_int_equal(n_failed, data_end);
}

/* GGUF v2 (same layout) opens; alignment 1 puts f16 / q8_0 data at odd
 * addresses, which the dequantizers must read without alignment faults. */
static void test_v2_and_alignment_1(void **state) {
    (void)state;
    img m;
    valid_image(&m);
    m.b[4] = 2;
    mold_gguf *g;
    tu_ok(mold_gguf_open_buf(m.b, m.n, "v2.gguf", &g), "v2");
    assert_int_equal(mold_gguf_version(g), 2);
    mold_gguf_close(g);

    mold_gguf_writer *w;
    tu_ok(mold_gguf_writer_create(&w), "writer");
    tu_ok(mold_gguf_writer_set_alignment(w, 1), "alignment 1");
    float x[64], y[64], z[64];
    for (int i = 0; i < 64; i++) x[i] = (float)(i - 20) * 0.37f;
    uint8_t h16[128], q8[68];
    tu_ok(mold_quantize(MOLD_F16, x, h16, 64), "f16");
    tu_ok(mold_quantize(MOLD_Q8_0, x, q8, 64), "q8_0");
    int64_t ne = 64, one = 1;
    uint8_t b = 7;
    tu_ok(mold_gguf_writer_add_tensor(w, "odd", MOLD_I8, 1, &one, &b), "1-byte tensor");
    tu_ok(mold_gguf_writer_add_tensor(w, "h", MOLD_F16, 1, &ne, h16), "f16 tensor");
    tu_ok(mold_gguf_writer_add_tensor(w, "q", MOLD_Q8_0, 1, &ne, q8), "q8 tensor");
    const char *path = tu_build_path("test_gguf_align1.gguf");
    tu_ok(mold_gguf_writer_write(w, path, NULL, NULL), "write");
    mold_gguf_writer_free(w);
    tu_ok(mold_gguf_open(path, &g), "reopen");
    assert_int_equal(mold_gguf_alignment(g), 1);
    const mold_tensor *th = mold_gguf_find(g, "h"), *tq = mold_gguf_find(g, "q");
    assert_true(((uintptr_t)th->data & 1) || ((uintptr_t)tq->data & 1)); /* really unaligned */
    tu_ok(mold_dequantize(MOLD_F16, th->data, y, 64), "f16 unaligned");
    tu_ok(mold_dequantize(MOLD_Q8_0, tq->data, z, 64), "q8_0 unaligned");
    tu_check_close("f16 at an odd address", y, x, 64, 1e-3);
    tu_check_close("q8_0 at an odd address", z, x, 64, 1e-2);
    mold_gguf_close(g);
}

static void test_bad_headers(void **state) {
    (void)state;
    img m;
    valid_image(&m);
    memcpy(m.b, "GGUG", 4);
    expect_bad(&m, MOLD_E_FORMAT, "expected magic 'GGUF', got 'GGUG'", "bad magic");
    valid_image(&m);
    m.b[4] = 1;
    expect_bad(&m, MOLD_E_UNSUPPORTED, "expected 2 or 3, got 1", "version 1");
    m.b[4] = 4;
    expect_bad(&m, MOLD_E_UNSUPPORTED, "expected 2 or 3, got 4", "version 4");
    m.b[4] = 0, m.b[7] = 3;
    expect_bad(&m, MOLD_E_UNSUPPORTED, "byte-swapped", "big-endian");

    header(&m, 3, 0, UINT64_MAX / 2);
    expect_bad(&m, MOLD_E_FORMAT, "remaining bytes", "huge kv count");
    header(&m, 3, 1000000, 0);
    expect_bad(&m, MOLD_E_FORMAT, "1000000 tensors", "huge tensor count");

    header(&m, 2, 0, 1); /* v2 with a huge key length */
    u64(&m, UINT64_MAX);
    u64(&m, 0);
    u64(&m, 0);
    expect_bad(&m, MOLD_E_FORMAT, "key bytes", "key length");
    header(&m, 3, 0, 1);
    str(&m, "");
    u32(&m, MOLD_GGUF_U8);
    m.b[m.n++] = 1;
    expect_bad(&m, MOLD_E_FORMAT, "non-empty", "empty key");
    header(&m, 3, 0, 1);
    str(&m, "k");
    u32(&m, 13);
    expect_bad(&m, MOLD_E_FORMAT, "value type: expected 0..12, got 13", "bad value type");
    header(&m, 3, 0, 1);
    str(&m, "k");
    u32(&m, MOLD_GGUF_BOOL);
    m.b[m.n++] = 2;
    expect_bad(&m, MOLD_E_FORMAT, "expected 0 or 1, got 2", "bool 2");
    header(&m, 3, 0, 2);
    for (int i = 0; i < 2; i++) {
        str(&m, "same.key");
        u32(&m, MOLD_GGUF_U32);
        u32(&m, 1);
    }
    expect_bad(&m, MOLD_E_FORMAT, "duplicate metadata key 'same.key'", "duplicate key");
    header(&m, 3, 0, 1);
    str(&m, "arr");
    u32(&m, MOLD_GGUF_ARR);
    u32(&m, MOLD_GGUF_U32);
    u64(&m, 1ull << 61);
    expect_bad(&m, MOLD_E_FORMAT, "array of 2305843009213693952 u32", "huge array");
    header(&m, 3, 0, 1);
    str(&m, "arr");
    u32(&m, MOLD_GGUF_ARR);
    u32(&m, MOLD_GGUF_STR);
    u64(&m, 2);
    str(&m, "ok");
    u64(&m, 1000);
    expect_bad(&m, MOLD_E_FORMAT, "array string bytes", "string in array past end");
    header(&m, 3, 0, 1);
    str(&m, "deep");
    u32(&m, MOLD_GGUF_ARR);
    for (int i = 0; i < 20; i++) {
        u32(&m, MOLD_GGUF_ARR);
        u64(&m, 1);
    }
    u32(&m, MOLD_GGUF_U8);
    u64(&m, 0);
    expect_bad(&m, MOLD_E_FORMAT, "nested deeper", "deep nesting");

    header(&m, 3, 0, 1);
    str(&m, "general.alignment");
    u32(&m, MOLD_GGUF_U32);
    u32(&m, 48);
    expect_bad(&m, MOLD_E_FORMAT, "expected a power of two, got 48", "alignment 48");
    header(&m, 3, 0, 1);
    str(&m, "general.alignment");
    u32(&m, MOLD_GGUF_U64);
    u64(&m, 32);
    expect_bad(&m, MOLD_E_FORMAT, "general.alignment: expected u32, got u64", "alignment type");
}

static void test_bad_tensors(void **state) {
    (void)state;
    img m;
    uint64_t ne32 = 32, ne4 = 4;
    uint64_t ne5[5] = {32, 1, 1, 1, 1};
    header(&m, 3, 1, 0);
    tinfo(&m, "t", 5, ne5, 0, 0);
    expect_bad(&m, MOLD_E_FORMAT, "n_dims: expected at most 4, got 5", "5 dims");
    uint64_t neg[2] = {32, (uint64_t)-1};
    header(&m, 3, 1, 0);
    tinfo(&m, "t", 2, neg, 0, 0);
    expect_bad(&m, MOLD_E_FORMAT, "ne[1]: expected 0..INT64_MAX", "negative dim");
    uint64_t big[3] = {1ull << 32, 1ull << 32, 1ull << 32};
    header(&m, 3, 1, 0);
    tinfo(&m, "t", 3, big, 0, 0);
    expect_bad(&m, MOLD_E_FORMAT, "overflows", "element overflow");
    uint64_t bigbytes[2] = {1ull << 32, 1ull << 30}; /* 2^62 f32 = 2^64 bytes */
    header(&m, 3, 1, 0);
    tinfo(&m, "t", 2, bigbytes, 0, 0);
    expect_bad(&m, MOLD_E_RANGE, "overflows", "byte overflow");
    header(&m, 3, 1, 0);
    tinfo(&m, "t", 1, &ne32, 16, 0);
    expect_bad(&m, MOLD_E_UNSUPPORTED, "ggml type 16 (iq2_xxs) is not supported", "iq2_xxs");
    header(&m, 3, 1, 0);
    tinfo(&m, "t", 1, &ne32, 77, 0);
    expect_bad(&m, MOLD_E_UNSUPPORTED, "ggml type 77 (unknown)", "unknown type");
    uint64_t ne100 = 100;
    header(&m, 3, 1, 0);
    tinfo(&m, "t", 1, &ne100, 12, 0);
    expect_bad(&m, MOLD_E_FORMAT, "ne[0] = 100 is not a multiple of the q4_K block size 256",
               "partial block");
    header(&m, 3, 1, 0);
    tinfo(&m, "", 1, &ne4, 0, 0);
    expect_bad(&m, MOLD_E_FORMAT, "non-empty", "empty name");

    header(&m, 3, 2, 0);
    tinfo(&m, "t", 1, &ne4, 0, 0);
    tinfo(&m, "t", 1, &ne4, 0, 32);
    pad_to(&m, 32);
    m.n += 64;
    expect_bad(&m, MOLD_E_FORMAT, "duplicate tensor name 't'", "duplicate tensor");
    header(&m, 3, 1, 0);
    tinfo(&m, "t", 1, &ne4, 0, 8);
    pad_to(&m, 32);
    m.n += 64;
    expect_bad(&m, MOLD_E_FORMAT, "offset 8 is not a multiple of the alignment 32", "misaligned");
    header(&m, 3, 1, 0);
    tinfo(&m, "t", 1, &ne32, 0, 32);
    pad_to(&m, 32);
    m.n += 128;
    expect_bad(&m, MOLD_E_FORMAT, "runs past the end", "past end");
    header(&m, 3, 1, 0);
    tinfo(&m, "t", 1, &ne4, 0, UINT64_MAX - 31);
    pad_to(&m, 32);
    m.n += 64;
    expect_bad(&m, MOLD_E_FORMAT, "runs past the end", "offset overflow");
    header(&m, 3, 2, 0);
    tinfo(&m, "a", 1, &ne32, 0, 0);
    tinfo(&m, "b", 1, &ne4, 0, 96);
    pad_to(&m, 32);
    m.n += 256;
    expect_bad(&m, MOLD_E_FORMAT, "overlap", "overlap");
    header(&m, 3, 1, 0); /* header ends right before the padding the data needs */
    tinfo(&m, "t", 1, &ne4, 0, 0);
    expect_bad(&m, MOLD_E_FORMAT, "truncated", "no data section");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks_metadata),
        cmocka_unit_test(test_writer_roundtrip),
        cmocka_unit_test(test_source_llm_names),
        cmocka_unit_test(test_source_city96_prefix),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_v2_and_alignment_1),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_bad_tensors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
