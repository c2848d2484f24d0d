/*
 * test_synth.c — `mold synth` (src/models/synth*.c) through its library API.
 *
 * Checks, on the tiny preset written into the build directory:
 *   - value statistics: matrices N(0, 1/fan_in) (std within 5 %), gammas
 *     exactly 1, biases std 0.02 (within 20 %);
 *   - every GGUF variant holds the bf16 variant's weights of the same seed up
 *     to its quantization error (dequantized, per dtype, rel error printed);
 *   - the DiT loads from bf16 shards and from GGUF files and gives finite
 *     outputs, GGUF q8_0 within 5e-2 of bf16; the VAE decodes to finite
 *     pixels, not all clipped; the text encoder's GGUF carries the config and
 *     tokenizer of the bf16 directory (same ids) and q8_0 weights within 5e-2;
 *   - the bytes do not depend on the thread count;
 *   - at full size (lists only, nothing written): tensor counts, the city96
 *     and llama.cpp type mixes, and the predicted q4_K file size;
 *   - bad options and inputs fail with messages naming them.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "base/fs.h"
#include "base/quant.h"
#include "formats/gguf.h"
#include "formats/modeldir.h"
#include "formats/safetensors.h"
#include "formats/tensor_source.h"
#include "models/qwen25_text.h"
#include "models/qwen2_tokenizer.h"
#include "models/qwen2_tokenizer_gguf.h"
#include "models/qwenimage_dit.h"
#include "models/qwenimage_vae.h"
#include "models/synth.h"
#include "models/synth_impl.h"

#define TINY_TOKENIZER "qwen-image-tiny/model/tokenizer"

/* Writes the tiny preset to <build>/<rel> (removed first); returns the path. */
static const char *synth_tiny(const char *rel, mold_dtype dit, mold_dtype te, bool uniform,
                              uint64_t seed, int threads) {
    static char path[4][1024];
    static int slot;
    char *p = path[slot++ % 4];
    snprintf(p, 1024, "%s", tu_build_path(rel));
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    assert_int_equal(system(cmd), 0);
    mold_synth_options o = {.preset = "tiny", .transformer = dit, .text_encoder = te,
                            .uniform = uniform, .seed = seed,
                            .tokenizer_dir = tu_fixture(TINY_TOKENIZER), .n_threads = threads};
    mold_synth_report rep;
    tu_ok(mold_synth_write(&o, p, &rep), rel);
    printf("  %s: %llu tensors, %llu bytes\n", rel, (unsigned long long)rep.n_tensors,
           (unsigned long long)rep.n_bytes);
    return p;
}

static mold_safetensors *open_st(const char *dir, const char *sub) {
    char *p = mold_path_join(dir, sub);
    mold_safetensors *st;
    tu_ok(mold_safetensors_open(p, &st), p);
    free(p);
    return st;
}

/* The single *.gguf of dir/sub. */
static mold_gguf *open_gguf(const char *dir, const char *sub, const char *file) {
    char rel[512];
    snprintf(rel, sizeof rel, "%s/%s", sub, file);
    char *p = mold_path_join(dir, rel);
    mold_gguf *g;
    tu_ok(mold_gguf_open(p, &g), p);
    free(p);
    return g;
}

/* Mean and std of a tensor of any dtype. */
static void moments(const mold_tensor *t, double *mean, double *std) {
    int64_t n = mold_tensor_nelems(t);
    float *x = malloc((size_t)n * sizeof(float));
    assert_non_null(x);
    tu_ok(mold_dequantize(t->dtype, t->data, x, n), t->name);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    *mean = s / (double)n;
    for (int64_t i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
    *std = sqrt(s2 / (double)n);
    free(x);
}

static void expect_std(const mold_safetensors *st, const char *name, double want, double tol) {
    const mold_tensor *t;
    tu_ok(mold_safetensors_get(st, name, &t), name);
    double m, s;
    moments(t, &m, &s);
    printf("  %s: mean %+.4f std %.5f (expected %.5f, tol %.0f%%)\n", name, m, s, want, tol * 100);
    assert_true(fabs(s / want - 1.0) <= tol);
    assert_true(fabs(m) <= 4.0 * want / sqrt((double)mold_tensor_nelems(t)) + 1e-3);
}

static void expect_ones(const mold_safetensors *st, const char *name) {
    const mold_tensor *t;
    tu_ok(mold_safetensors_get(st, name, &t), name);
    float *x = tu_to_f32(t);
    for (int64_t i = 0; i < mold_tensor_nelems(t); i++) assert_true(x[i] == 1.0f);
    free(x);
}

/* ---- values ---- */

static void test_values(void **state) {
    (void)state;
    const char *dir = synth_tiny("synth_values", MOLD_BF16, MOLD_BF16, false, 7, 0);
    mold_safetensors *dit = open_st(dir, "transformer"), *te = open_st(dir, "text_encoder"),
                     *vae = open_st(dir, "vae");
    expect_std(dit, "transformer_blocks.0.img_mlp.net.0.proj.weight", 1 / sqrt(64.0), 0.05);
    expect_std(dit, "transformer_blocks.1.txt_mlp.net.2.weight", 1 / sqrt(256.0), 0.05);
    expect_std(dit, "transformer_blocks.1.img_mod.1.bias", 0.02, 0.2);
    expect_std(te, "model.layers.1.mlp.down_proj.weight", 1 / sqrt(160.0), 0.05);
    expect_std(te, "model.embed_tokens.weight", 1.0, 0.05);
    expect_std(vae, "decoder.up_blocks.0.resnets.1.conv1.weight", 1 / sqrt(128.0 * 9), 0.05);
    expect_ones(dit, "transformer_blocks.0.attn.norm_added_k.weight");
    expect_ones(dit, "txt_norm.weight");
    expect_ones(te, "model.norm.weight");
    expect_ones(vae, "decoder.mid_block.attentions.0.norm.gamma");
    /* the configs parse with the project's own validating readers */
    mold_modeldir md;
    tu_ok(mold_modeldir_open(dir, &md), "modeldir");
    assert_int_equal(md.dit.num_layers, 2);
    assert_int_equal(md.text.vocab_size, 662);
    assert_int_equal(md.vae.base_dim, 32);
    mold_modeldir_close(&md);
    mold_safetensors_close(dit);
    mold_safetensors_close(te);
    mold_safetensors_close(vae);
}

/* ---- GGUF variants hold the bf16 weights ---- */

typedef struct dtype_err {
    double worst[MOLD_DTYPE_COUNT];
    int count[MOLD_DTYPE_COUNT];
} dtype_err;

/* Tolerance on ||deq(gguf) - bf16|| / ||bf16|| per stored dtype: bf16
 * rounding (2^-9) for plain types, quantization error for blocks. */
static double tol_of(mold_dtype t) {
    switch (t) {
    case MOLD_F32: case MOLD_BF16: case MOLD_F16: return 4e-3;
    case MOLD_Q8_0: return 1e-2;
    case MOLD_Q6_K: return 2e-2;
    case MOLD_Q5_K: case MOLD_Q5_0: case MOLD_Q5_1: return 5e-2;
    default: return 1.2e-1; /* 4-bit */
    }
}

static void compare_component(const mold_safetensors *ref, const mold_gguf *g, bool llm,
                              dtype_err *e) {
    size_t n = mold_safetensors_count(ref);
    assert_int_equal(mold_gguf_tensor_count(g), n);
    for (size_t i = 0; i < n; i++) {
        const mold_tensor *r = mold_safetensors_at(ref, i);
        char name[256];
        if (!llm || !mold_gguf_llm_name(r->name, name, sizeof name))
            snprintf(name, sizeof name, "%s", r->name);
        const mold_tensor *q = mold_gguf_find(g, name);
        if (!q) fail_msg("%s missing from the GGUF", name);
        assert_true(mold_tensor_has_shape(q, r->n_dims, r->shape));
        int64_t k = mold_tensor_nelems(r);
        float *a = malloc((size_t)k * sizeof(float)), *b = tu_to_f32(r);
        tu_ok(mold_dequantize(q->dtype, q->data, a, k), name);
        double rel = tu_rel_error(a, b, (size_t)k);
        if (!(rel <= tol_of(q->dtype)))
            fail_msg("%s (%s): rel %.3g above %.3g", name, mold_dtype_name(q->dtype), rel,
                     tol_of(q->dtype));
        if (rel > e->worst[q->dtype]) e->worst[q->dtype] = rel;
        e->count[q->dtype]++;
        free(a);
        free(b);
    }
}

static void print_err(const char *what, const dtype_err *e) {
    printf("  %s vs bf16, worst rel error per stored dtype:", what);
    for (int t = 0; t < MOLD_DTYPE_COUNT; t++)
        if (e->count[t])
            printf(" %s x%d %.2e (tol %.0e)", mold_dtype_name((mold_dtype)t), e->count[t],
                   e->worst[t], tol_of((mold_dtype)t));
    printf("\n");
}

static void test_gguf_matches_bf16(void **state) {
    (void)state;
    const char *ref = synth_tiny("synth_ref", MOLD_BF16, MOLD_BF16, false, 11, 0);
    mold_safetensors *rd = open_st(ref, "transformer"), *rt = open_st(ref, "text_encoder");
    const struct { mold_dtype dit, te; bool uniform; const char *df, *tf; } V[] = {
        {MOLD_Q8_0, MOLD_Q8_0, false, "qwen-image-tiny-Q8_0.gguf", "qwen2.5-vl-tiny-Q8_0.gguf"},
        {MOLD_Q4_K, MOLD_Q4_K, false, "qwen-image-tiny-Q4_K_M.gguf",
         "qwen2.5-vl-tiny-Q4_K_M.gguf"},
        {MOLD_Q4_0, MOLD_Q4_K, true, "qwen-image-tiny-Q4_0-uniform.gguf",
         "qwen2.5-vl-tiny-Q4_K_M-uniform.gguf"},
    };
    for (size_t v = 0; v < sizeof V / sizeof V[0]; v++) {
        const char *dir = synth_tiny("synth_gguf", V[v].dit, V[v].te, V[v].uniform, 11, 0);
        mold_gguf *gd = open_gguf(dir, "transformer", V[v].df);
        mold_gguf *gt = open_gguf(dir, "text_encoder", V[v].tf);
        assert_string_equal(mold_gguf_architecture(gd), "qwen_image");
        assert_string_equal(mold_gguf_architecture(gt), "qwen2vl");
        dtype_err e = {0};
        compare_component(rd, gd, false, &e);
        print_err(V[v].df, &e);
        memset(&e, 0, sizeof e);
        compare_component(rt, gt, true, &e);
        print_err(V[v].tf, &e);
        /* type rules on the tiny shapes (see synth_gguf.c) */
        const mold_tensor *t = mold_gguf_find(gd, "img_in.weight");
        assert_int_equal(t->dtype, MOLD_BF16);
        t = mold_gguf_find(gd, "transformer_blocks.1.attn.norm_q.weight");
        assert_int_equal(t->dtype, MOLD_F32);
        t = mold_gguf_find(gd, "transformer_blocks.1.attn.to_q.weight");
        assert_int_equal(t->dtype, V[v].dit == MOLD_Q8_0 ? MOLD_Q8_0
                                   : V[v].uniform ? MOLD_Q4_0 : MOLD_F16 /* ne0 64 */);
        t = mold_gguf_find(gd, "transformer_blocks.1.img_mlp.net.2.weight"); /* ne0 256, last */
        assert_int_equal(t->dtype, V[v].dit == MOLD_Q8_0 ? MOLD_Q8_0
                                   : V[v].uniform ? MOLD_Q4_0 : MOLD_Q5_K);
        t = mold_gguf_find(gt, "blk.0.attn_q.weight"); /* ne0 64: K-quant fallback */
        assert_int_equal(t->dtype, V[v].te == MOLD_Q8_0 ? MOLD_Q8_0 : MOLD_Q5_0);
        /* tokenizer metadata: the tiny vocab, ids of the special tokens */
        const mold_gguf_str *toks;
        uint64_t n_tok;
        tu_ok(mold_gguf_get_str_array(gt, "tokenizer.ggml.tokens", true, &toks, &n_tok), "tokens");
        assert_int_equal(n_tok, 662);
        assert_string_equal(toks[642].s, "<|im_end|>");
        assert_string_equal(toks[257].s, "\xc4\xa0s"); /* "Ġs" */
        int64_t eos = 0, layers = 0;
        tu_ok(mold_gguf_get_int(gt, "tokenizer.ggml.eos_token_id", true, &eos), "eos");
        tu_ok(mold_gguf_get_int(gt, "qwen2vl.block_count", true, &layers), "block_count");
        assert_int_equal(eos, 642);
        assert_int_equal(layers, 2);
        mold_gguf_close(gd);
        mold_gguf_close(gt);
    }
    mold_safetensors_close(rd);
    mold_safetensors_close(rt);
}

/* ---- the models run on the synthesized weights ---- */

/* One DiT forward (4x4 tokens, 5 text tokens, sigma 0.7) on weights from src. */
static float *dit_forward(const char *dir, const mold_tensor_source *src, int64_t *n_out) {
    char *cp = mold_path_join(dir, "transformer/config.json");
    mold_dit_config cfg;
    tu_ok(mold_dit_config_load(cp, &cfg), cp);
    free(cp);
    mold_backend *be;
    tu_ok(mold_backend_cpu_create(2, &be), "cpu backend");
    mold_dit *dit;
    tu_ok(mold_dit_load(be, &cfg, src, &dit), "dit load");
    const int th = 4, tw = 4, N = th * tw, L = 5;
    const int64_t C = cfg.in_channels, Dj = cfg.joint_attention_dim;
    float *img = malloc((size_t)(N * C) * sizeof(float));
    float *txt = malloc((size_t)(L * Dj) * sizeof(float));
    for (int64_t i = 0; i < N * C; i++) img[i] = sinf(0.37f * (float)i);
    for (int64_t i = 0; i < L * Dj; i++) txt[i] = cosf(0.11f * (float)i) * 2.0f;
    *n_out = N * 64;
    float *d_img = be->i->alloc(be, (size_t)(N * C) * sizeof(float));
    float *d_txt = be->i->alloc(be, (size_t)(L * Dj) * sizeof(float));
    float *d_out = be->i->alloc(be, (size_t)*n_out * sizeof(float));
    float *out = malloc((size_t)*n_out * sizeof(float));
    tu_ok(be->i->upload(be, d_img, img, (size_t)(N * C) * sizeof(float)), "upload");
    tu_ok(be->i->upload(be, d_txt, txt, (size_t)(L * Dj) * sizeof(float)), "upload");
    const int len = L;
    const float sigma = 0.7f;
    tu_ok(mold_dit_forward(dit, 1, d_img, th, tw, d_txt, &len, L, &sigma, d_out), "forward");
    tu_ok(be->i->download(be, out, d_out, (size_t)*n_out * sizeof(float)), "download");
    be->i->free(be, d_img);
    be->i->free(be, d_txt);
    be->i->free(be, d_out);
    mold_dit_free(dit);
    mold_backend_free(be);
    free(img);
    free(txt);
    return out;
}

static double rms(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s / (double)n);
}

static void test_dit_runs(void **state) {
    (void)state;
    const char *ref = synth_tiny("synth_dit_bf16", MOLD_BF16, MOLD_BF16, false, 3, 0);
    mold_safetensors *st = open_st(ref, "transformer");
    mold_tensor_source src = mold_source_safetensors(st);
    int64_t n;
    float *y_ref = dit_forward(ref, &src, &n);
    for (int64_t i = 0; i < n; i++) assert_true(isfinite(y_ref[i]));
    double r = rms(y_ref, n);
    printf("  DiT bf16: output rms %.3f over %lld values\n", r, (long long)n);
    assert_true(r > 0.05 && r < 20.0);
    const struct { mold_dtype t; bool uniform; const char *file; double tol; } V[] = {
        {MOLD_Q8_0, false, "qwen-image-tiny-Q8_0.gguf", 5e-2},
        {MOLD_Q4_K, false, "qwen-image-tiny-Q4_K_M.gguf", 2.5e-1},
        {MOLD_Q4_0, true, "qwen-image-tiny-Q4_0-uniform.gguf", 3e-1},
    };
    for (size_t v = 0; v < sizeof V / sizeof V[0]; v++) {
        const char *dir = synth_tiny("synth_dit_gguf", V[v].t, MOLD_BF16, V[v].uniform, 3, 0);
        mold_gguf *g = open_gguf(dir, "transformer", V[v].file);
        mold_tensor_source gs = mold_source_gguf(g);
        float *y = dit_forward(dir, &gs, &n);
        char what[160];
        snprintf(what, sizeof what, "DiT %s vs bf16 (same seed)", V[v].file);
        tu_check_close(what, y, y_ref, (size_t)n, V[v].tol); /* also fails on NaN/Inf */
        free(y);
        mold_gguf_close(g);
    }
    free(y_ref);
    mold_safetensors_close(st);
}

static void test_vae_runs(void **state) {
    (void)state;
    const char *dir = synth_tiny("synth_vae", MOLD_BF16, MOLD_BF16, false, 5, 0);
    char *cp = mold_path_join(dir, "vae/config.json");
    mold_vae_config cfg;
    tu_ok(mold_vae_config_load(cp, &cfg), cp);
    free(cp);
    mold_safetensors *st = open_st(dir, "vae");
    mold_tensor_source src = mold_source_safetensors(st);
    mold_backend *be;
    tu_ok(mold_backend_cpu_create(2, &be), "cpu backend");
    mold_vae *vae;
    tu_ok(mold_vae_load(be, &cfg, &src, &vae), "vae load");
    const int h = 6, w = 5, S = mold_vae_scale(&cfg);
    float *z = malloc(16 * h * w * sizeof(float));
    float *img = malloc((size_t)(3 * S * S * h * w) * sizeof(float));
    for (int i = 0; i < 16 * h * w; i++) z[i] = sinf(0.7f * (float)i) * 2.0f;
    tu_ok(mold_vae_decode(vae, z, h, w, NULL, img), "decode");
    int64_t n = 3LL * S * S * h * w, clipped = 0;
    for (int64_t i = 0; i < n; i++) {
        assert_true(isfinite(img[i]));
        clipped += fabsf(img[i]) >= 1.0f;
    }
    printf("  VAE decode %dx%d -> %dx%d: rms %.3f, %.1f%% of values clipped to +-1\n", h, w,
           S * h, S * w, rms(img, n), 100.0 * (double)clipped / (double)n);
    assert_true(clipped < n * 9 / 10);
    mold_vae_free(vae);
    mold_backend_free(be);
    mold_safetensors_close(st);
    free(z);
    free(img);
}

/* Text-encoder forward of ids on weights from src; returns [T, hidden]. */
static float *te_forward(const mold_text_config *cfg, const mold_tensor_source *src,
                         const int32_t *ids, int T) {
    mold_backend *be;
    tu_ok(mold_backend_cpu_create(2, &be), "cpu backend");
    mold_text_encoder *te;
    tu_ok(mold_text_encoder_load(be, cfg, src, &te), "text encoder load");
    float *out = malloc((size_t)T * cfg->hidden_size * sizeof(float));
    tu_ok(mold_text_encoder_forward(te, ids, NULL, 1, T, out, NULL), "text encoder forward");
    mold_text_encoder_free(te);
    mold_backend_free(be);
    return out;
}

/* The GGUF text encoder carries the same config (qwen2vl.* keys), the same
 * tokenizer (tokenizer.ggml.*) and, up to q8_0 error, the same weights as the
 * bf16 directory of the same seed. */
static void test_text_encoder_runs(void **state) {
    (void)state;
    const char *ref = synth_tiny("synth_te_bf16", MOLD_BF16, MOLD_BF16, false, 4, 0);
    const char *dir = synth_tiny("synth_te_gguf", MOLD_BF16, MOLD_Q8_0, false, 4, 0);
    char *cp = mold_path_join(ref, "text_encoder/config.json");
    mold_text_config cfg, gcfg;
    tu_ok(mold_text_config_load(cp, &cfg), cp);
    free(cp);
    mold_gguf *g = open_gguf(dir, "text_encoder", "qwen2.5-vl-tiny-Q8_0.gguf");
    tu_ok(mold_gguf_text_config(g, &gcfg), "config from GGUF metadata");
    assert_int_equal(gcfg.hidden_size, cfg.hidden_size);
    assert_int_equal(gcfg.num_hidden_layers, cfg.num_hidden_layers);
    assert_int_equal(gcfg.num_attention_heads, cfg.num_attention_heads);
    assert_int_equal(gcfg.num_key_value_heads, cfg.num_key_value_heads);
    assert_int_equal(gcfg.intermediate_size, cfg.intermediate_size);
    assert_int_equal(gcfg.vocab_size, cfg.vocab_size);
    for (int i = 0; i < 3; i++) assert_int_equal(gcfg.mrope_section[i], cfg.mrope_section[i]);
    assert_true(gcfg.rope_theta == cfg.rope_theta);

    /* tokenizer from the copied files vs from the GGUF metadata */
    char *td = mold_path_join(ref, "tokenizer");
    mold_tokenizer *tf, *tg;
    tu_ok(mold_tokenizer_load(td, &tf), td);
    free(td);
    tu_ok(mold_tokenizer_from_gguf(g, &tg), "tokenizer from GGUF");
    const char *prompt = "a red fox running in the snow, watercolor";
    int32_t *ids, *ids2;
    size_t n, n2;
    tu_ok(mold_qwenimage_tokenize_prompt(tf, prompt, strlen(prompt), &ids, &n), "tokenize");
    tu_ok(mold_qwenimage_tokenize_prompt(tg, prompt, strlen(prompt), &ids2, &n2), "tokenize gguf");
    printf("  templated prompt: %zu tokens from tokenizer.json, %zu from GGUF metadata\n", n, n2);
    assert_int_equal(n, n2);
    assert_memory_equal(ids, ids2, n * sizeof *ids);

    mold_safetensors *st = open_st(ref, "text_encoder");
    mold_tensor_source ss = mold_source_safetensors(st), gs = mold_source_gguf(g);
    float *a = te_forward(&cfg, &ss, ids, (int)n), *b = te_forward(&gcfg, &gs, ids, (int)n);
    size_t m = n * (size_t)cfg.hidden_size;
    printf("  text encoder bf16: hidden rms %.3f\n", rms(a, (int64_t)m));
    tu_check_close("text encoder Q8_0 GGUF vs bf16 (same seed)", b, a, m, 5e-2);
    free(a);
    free(b);
    free(ids);
    free(ids2);
    mold_tokenizer_free(tf);
    mold_tokenizer_free(tg);
    mold_safetensors_close(st);
    mold_gguf_close(g);
}

/* ---- determinism ---- */

static void expect_same_file(const char *a, const char *b, bool same) {
    char *x, *y;
    size_t nx, ny;
    tu_ok(mold_file_read_all(a, &x, &nx), a);
    tu_ok(mold_file_read_all(b, &y, &ny), b);
    bool eq = nx == ny && !memcmp(x, y, nx);
    printf("  %s: %s\n", strrchr(a, '/') + 1, eq ? "identical" : "differs");
    assert_true(eq == same);
    free(x);
    free(y);
}

static void test_thread_count_invariance(void **state) {
    (void)state;
    char a[1024], b[1024], c[1024];
    snprintf(a, sizeof a, "%s", synth_tiny("synth_t1", MOLD_Q4_K, MOLD_BF16, false, 9, 1));
    snprintf(b, sizeof b, "%s", synth_tiny("synth_t3", MOLD_Q4_K, MOLD_BF16, false, 9, 3));
    snprintf(c, sizeof c, "%s", synth_tiny("synth_t3s", MOLD_Q4_K, MOLD_BF16, false, 10, 3));
    const char *files[] = {"transformer/qwen-image-tiny-Q4_K_M.gguf",
                           "text_encoder/model-00001-of-00002.safetensors",
                           "vae/diffusion_pytorch_model.safetensors"};
    for (int i = 0; i < 3; i++) {
        char *x = mold_path_join(a, files[i]), *y = mold_path_join(b, files[i]),
             *z = mold_path_join(c, files[i]);
        expect_same_file(x, y, true);  /* 1 thread vs 3 threads */
        expect_same_file(x, z, false); /* seed 9 vs seed 10 */
        free(x);
        free(y);
        free(z);
    }
}

/* ---- full-size plans (no files) ---- */

static void count_types(const synth_list *l, int *count, uint64_t *bytes) {
    memset(count, 0, MOLD_DTYPE_COUNT * sizeof *count);
    *bytes = 0;
    for (size_t i = 0; i < l->n; i++) {
        uint64_t b;
        tu_ok(mold_synth_bytes(&l->t[i], &b), l->t[i].name);
        count[l->t[i].dtype]++;
        *bytes += b;
    }
}

static void test_full_size_plans(void **state) {
    (void)state;
    synth_list dit, te, vae;
    tu_ok(mold_synth_component_list("qwen-image-2512", SYNTH_COMP_DIT, 0, &dit), "dit list");
    tu_ok(mold_synth_component_list("qwen-image-2512", SYNTH_COMP_TEXT, 0, &te), "te list");
    tu_ok(mold_synth_component_list("qwen-image-2512", SYNTH_COMP_VAE, 0, &vae), "vae list");
    uint64_t p_dit = 0, p_te = 0, p_vae = 0;
    for (size_t i = 0; i < dit.n; i++) p_dit += mold_synth_nelems(&dit.t[i]);
    for (size_t i = 0; i < te.n; i++) p_te += mold_synth_nelems(&te.t[i]);
    for (size_t i = 0; i < vae.n; i++) p_vae += mold_synth_nelems(&vae.t[i]);
    printf("  full: DiT %zu tensors %llu params, text %zu tensors %llu params, VAE %zu tensors "
           "%llu params\n", dit.n, (unsigned long long)p_dit, te.n, (unsigned long long)p_te,
           vae.n, (unsigned long long)p_vae);
    /* spec 4.2: 60 x 32 + 13 tensors; spec 9: 339,831,296 per block; appendix A:
     * decoder 73,295,331 params + post_quant_conv 272; spec 3.5 without lm_head */
    assert_int_equal(dit.n, 1933);
    assert_int_equal(te.n, 28 * 12 + 2);
    assert_int_equal(p_vae, 73295331 + 272);
    assert_int_equal(p_te, 152064ull * 3584 + 28ull * (2 * 3584 + 2 * 3584 * 3584 + 3584 +
                                                        2 * (512 * 3584 + 512) + 3 * 18944 * 3584)
                               + 3584);
    int n[MOLD_DTYPE_COUNT];
    uint64_t bytes;
    mold_synth_dit_gguf_types(&dit, MOLD_Q4_K, 60, false);
    count_types(&dit, n, &bytes);
    printf("  DiT Q4_K_M: F32 %d BF16 %d Q4_K %d Q5_K %d Q6_K %d, %.3f GB\n", n[MOLD_F32],
           n[MOLD_BF16], n[MOLD_Q4_K], n[MOLD_Q5_K], n[MOLD_Q6_K], (double)bytes / 1e9);
    /* 14 matrices a block: blocks 0 and 59 Q5_K; to_v, add_v_proj and the two
     * net.2 of the 58 others Q6_K; 6 unquantized; 18 1-D per block + 7 */
    assert_int_equal(n[MOLD_Q5_K], 28);
    assert_int_equal(n[MOLD_Q6_K], 58 * 4);
    assert_int_equal(n[MOLD_Q4_K], 58 * 10);
    assert_int_equal(n[MOLD_BF16], 6);
    assert_int_equal(n[MOLD_F32], 60 * 18 + 7);
    mold_synth_dit_gguf_types(&dit, MOLD_Q4_0, 60, false);
    count_types(&dit, n, &bytes);
    printf("  DiT Q4_0: Q4_0 %d Q4_1 %d Q5_K %d, %.3f GB\n", n[MOLD_Q4_0], n[MOLD_Q4_1],
           n[MOLD_Q5_K], (double)bytes / 1e9);
    assert_int_equal(n[MOLD_Q4_1], 58 * 2);
    assert_int_equal(n[MOLD_Q4_0], 58 * 12);
    mold_synth_dit_gguf_types(&dit, MOLD_Q4_0, 60, true);
    count_types(&dit, n, &bytes);
    printf("  DiT Q4_0 uniform: Q4_0 %d, %.3f GB\n", n[MOLD_Q4_0], (double)bytes / 1e9);
    assert_int_equal(n[MOLD_Q4_0], 60 * 14);
    mold_synth_text_gguf_types(&te, MOLD_Q4_K, 28, false);
    count_types(&te, n, &bytes);
    printf("  text Q4_K_M: F32 %d Q4_K %d Q6_K %d, %.3f GB\n", n[MOLD_F32], n[MOLD_Q4_K],
           n[MOLD_Q6_K], (double)bytes / 1e9);
    /* use_more_bits(i, 28): 0-2, 5, 8, ..., 23, 24-27 = 14 layers, attn_v + ffn_down */
    assert_int_equal(n[MOLD_Q6_K], 2 * 14);
    assert_int_equal(n[MOLD_Q4_K], 1 + 28 * 7 - 28);
    assert_int_equal(n[MOLD_F32], 28 * 5 + 1);
    mold_synth_list_free(&dit);
    mold_synth_list_free(&te);
    mold_synth_list_free(&vae);
}

/* ---- errors ---- */

static void test_errors(void **state) {
    (void)state;
    const char *out = tu_build_path("synth_err");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", out, out);
    assert_int_equal(system(cmd), 0);
    mold_synth_options o = {.preset = "huge", .transformer = MOLD_BF16, .text_encoder = MOLD_BF16,
                            .tokenizer_dir = tu_fixture(TINY_TOKENIZER)};
    tu_expect_error(mold_synth_write(&o, out, NULL), MOLD_E_INVALID, "got 'huge'", "preset");
    o.preset = "tiny";
    o.transformer = MOLD_Q6_K;
    tu_expect_error(mold_synth_write(&o, out, NULL), MOLD_E_INVALID,
                    "--transformer: expected q4_0, q4_K, q8_0 or bf16, got q6_K", "dtype");
    o.transformer = MOLD_BF16;
    o.text_encoder = MOLD_Q4_0;
    tu_expect_error(mold_synth_write(&o, out, NULL), MOLD_E_INVALID, "--text-encoder", "dtype");
    o.text_encoder = MOLD_BF16;
    o.tokenizer_dir = out; /* no tokenizer.json there */
    tu_expect_error(mold_synth_write(&o, out, NULL), MOLD_E_NOTFOUND, "fetch-tokenizer.sh",
                    "tokenizer");
    /* a non-empty output directory is refused (no mixing of runs) */
    o.tokenizer_dir = tu_fixture(TINY_TOKENIZER);
    snprintf(cmd, sizeof cmd, "touch '%s/stale.safetensors'", out);
    assert_int_equal(system(cmd), 0);
    tu_expect_error(mold_synth_write(&o, out, NULL), MOLD_E_INVALID,
                    "expected a new or empty output directory", "non-empty");
    /* a tokenizer with an id beyond the preset's vocab fails for a GGUF text encoder */
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s/tok'", out, out);
    assert_int_equal(system(cmd), 0);
    char *tj = mold_path_join(out, "tok/tokenizer.json");
    const char *js = "{\"model\": {\"vocab\": {\"a\": 0, \"b\": 5000}, \"merges\": []},"
                     " \"added_tokens\": []}";
    tu_ok(mold_file_write_atomic(tj, js, strlen(js)), "tokenizer.json");
    free(tj);
    char *tokdir = mold_path_join(out, "tok"), *od = mold_path_join(out, "model");
    o.tokenizer_dir = tokdir;
    o.text_encoder = MOLD_Q8_0;
    tu_expect_error(mold_synth_write(&o, od, NULL), MOLD_E_RANGE,
                    "token 'b': expected an id below the model's vocab_size 662, got 5000",
                    "vocab");
    free(tokdir);
    free(od);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_gguf_matches_bf16),
        cmocka_unit_test(test_dit_runs),
        cmocka_unit_test(test_vae_runs),
        cmocka_unit_test(test_text_encoder_runs),
        cmocka_unit_test(test_thread_count_invariance),
        cmocka_unit_test(test_full_size_plans),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
