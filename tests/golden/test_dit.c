/*
 * test_dit.c — the Qwen-Image transformer against diffusers
 * (cases/transformer.safetensors of the tiny and hd128 fixtures: a batch of
 * 2 on a 4x6 token grid, sample 1 with 6 of 9 text tokens valid).
 *
 * Checks, per fixture: `output` per sample (rel <= 1e-4), sample 1 run alone
 * with its 6 tokens against `output_sample1_unpadded` and against output[1],
 * and that the forward allocates exactly mold_dit_workspace_bytes() (the CPU
 * backend's alloc/free are wrapped to track the high-water mark) and nothing
 * on later calls. Prints the CPU time per forward. The backend's optional
 * fused ops against the plain ops they replace (test_fused_ops).
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/ops.h"
#include "base/quant.h"
#include "formats/gguf.h"
#include "formats/modeldir.h"
#include "formats/safetensors.h"
#include "formats/tensor_source.h"
#include "models/qwenimage_dit.h"

static double TOL = 1e-4; /* 1e-2 on CUDA (bf16 GEMM inputs): see main() */

/* ---- allocation tracking around the CPU backend ---- */

typedef struct track {
    const mold_backend_i *orig;
    mold_backend_i tab;
    struct { void *p; size_t n; } live[256];
    int n_live;
    uint64_t bytes, peak;
    int n_alloc;
} track;
static track tr;

static void *tr_alloc(mold_backend *be, size_t bytes) {
    void *p = tr.orig->alloc(be, bytes);
    if (p && tr.n_live < 256) {
        tr.live[tr.n_live].p = p;
        tr.live[tr.n_live++].n = bytes;
        tr.bytes += bytes;
        if (tr.bytes > tr.peak) tr.peak = tr.bytes;
        tr.n_alloc++;
    }
    return p;
}

static void tr_free(mold_backend *be, void *p) {
    for (int i = 0; p && i < tr.n_live; i++)
        if (tr.live[i].p == p) {
            tr.bytes -= tr.live[i].n;
            tr.live[i] = tr.live[--tr.n_live];
            break;
        }
    tr.orig->free(be, p);
}

/* Swaps the backend's vtable for a copy with tracked alloc/free. */
static void track_install(mold_backend *be) {
    memset(&tr, 0, sizeof tr);
    tr.orig = be->i;
    tr.tab = *be->i;
    tr.tab.alloc = tr_alloc;
    tr.tab.free = tr_free;
    be->i = &tr.tab;
}

/* ---- helpers ---- */

static float *get_f32(const mold_safetensors *st, const char *name, int64_t *n) {
    const mold_tensor *t;
    tu_ok(mold_safetensors_get(st, name, &t), name);
    if (n) *n = mold_tensor_nelems(t);
    return tu_to_f32(t);
}

static float *to_backend(mold_backend *be, const float *h, size_t n) {
    float *d = be->i->alloc(be, n * sizeof(float));
    assert_non_null(d);
    tu_ok(be->i->upload(be, d, h, n * sizeof(float)), "upload");
    return d;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Opens a fixture's transformer: its config, its weights and its case file. */
static void open_fixture(const char *fixture, mold_dit_config *cfg, mold_safetensors **wst,
                         mold_safetensors **cst) {
    char path[512];
    snprintf(path, sizeof path, "%s/model/transformer/config.json", fixture);
    tu_ok(mold_dit_config_load(tu_fixture(path), cfg), "config");
    snprintf(path, sizeof path, "%s/model/transformer", fixture);
    tu_ok(mold_safetensors_open(tu_fixture(path), wst), "weights");
    snprintf(path, sizeof path, "%s/cases/transformer.safetensors", fixture);
    tu_ok(mold_safetensors_open(tu_fixture(path), cst), "case");
}

/* Runs the transformer case of one fixture directory ("qwen-image-tiny"). */
static void run_case(const char *fixture) {
    mold_dit_config cfg;
    mold_safetensors *wst, *cst;
    open_fixture(fixture, &cfg, &wst, &cst);

    /* the config derived from tensor shapes (the GGUF path) agrees with
     * config.json where it can be derived (head dim 128) */
    mold_tensor_source src0 = mold_source_safetensors(wst);
    mold_dit_config derived;
    mold_status dst = mold_dit_config_from_source(&src0, &derived);
    if (cfg.attention_head_dim == 128) {
        tu_ok(dst, "config from shapes");
        assert_int_equal(derived.patch_size, cfg.patch_size);
        assert_int_equal(derived.in_channels, cfg.in_channels);
        assert_int_equal(derived.out_channels, cfg.out_channels);
        assert_int_equal(derived.num_layers, cfg.num_layers);
        assert_int_equal(derived.attention_head_dim, cfg.attention_head_dim);
        assert_int_equal(derived.num_attention_heads, cfg.num_attention_heads);
        assert_int_equal(derived.joint_attention_dim, cfg.joint_attention_dim);
        for (int a = 0; a < 3; a++)
            assert_int_equal(derived.axes_dims_rope[a], cfg.axes_dims_rope[a]);
        printf("  config from tensor shapes == config.json\n");
    } else {
        tu_expect_error(dst, MOLD_E_UNSUPPORTED, "axes_dims_rope", "config from shapes");
    }

    mold_backend *be;
    tu_backend_create(0, &be);
    track_install(be);
    mold_tensor_source src = mold_source_safetensors(wst);
    mold_dit *dit;
    tu_ok(mold_dit_load(be, &cfg, &src, &dit), "load");
    printf("  %s: %d blocks, D %d, head dim %d, %llu weight bytes\n", fixture, cfg.num_layers,
           cfg.num_attention_heads * cfg.attention_head_dim, cfg.attention_head_dim,
           (unsigned long long)mold_dit_loaded_weight_bytes(dit));

    int64_t n_img_all, n_txt_all, n_mask, n_out1;
    float *img = get_f32(cst, "hidden_states", &n_img_all);     /* [2, 24, 64] */
    float *txt = get_f32(cst, "encoder_hidden_states", &n_txt_all); /* [2, 9, Dj] */
    float *mask = get_f32(cst, "encoder_hidden_states_mask", &n_mask); /* [2, 9] */
    float *sigma = get_f32(cst, "timestep", NULL);               /* [2] */
    float *hw = get_f32(cst, "img_hw", NULL);                    /* [tok_h, tok_w] */
    float *ref = get_f32(cst, "output", NULL);                   /* [2, 24, 64] */
    float *ref1 = get_f32(cst, "output_sample1_unpadded", &n_out1); /* [1, 24, 64] */
    const int B = 2, th = (int)hw[0], tw = (int)hw[1], N = th * tw;
    const int64_t L = n_mask / B, Dj = cfg.joint_attention_dim, C = cfg.in_channels;
    const int64_t per_out = n_out1;
    assert_int_equal(n_img_all, B * N * C);
    assert_int_equal(n_txt_all, B * L * Dj);
    int txt_len[2] = {0, 0};
    for (int b = 0; b < B; b++)
        for (int64_t j = 0; j < L; j++) txt_len[b] += mask[b * L + j] != 0.0f;
    printf("  grid %dx%d, L %lld, txt_len {%d, %d}, sigma {%g, %g}\n", th, tw, (long long)L,
           txt_len[0], txt_len[1], sigma[0], sigma[1]);

    float *d_img = to_backend(be, img, (size_t)n_img_all);
    float *d_txt = to_backend(be, txt, (size_t)n_txt_all);
    float *d_out = be->i->alloc(be, (size_t)(B * per_out) * sizeof(float));
    float *out = malloc((size_t)(B * per_out) * sizeof(float));

    /* batch of 2 with padding; reserve for it and check the high-water mark */
    uint64_t ws;
    tu_ok(mold_dit_workspace_bytes(&cfg, N, L, B, &ws), "workspace bytes");
    const uint64_t base = tr.bytes;
    tr.peak = base;
    const int allocs_before = tr.n_alloc;
    double t0 = now_s();
    tu_ok(mold_dit_forward(dit, B, d_img, th, tw, d_txt, txt_len, L, sigma, d_out), "forward");
    double t1 = now_s();
    printf("  workspace %llu bytes, high-water mark over the forward %llu bytes, %d alloc(s)\n",
           (unsigned long long)ws, (unsigned long long)(tr.peak - base),
           tr.n_alloc - allocs_before);
    assert_true(tr.peak - base == ws);
    assert_int_equal(tr.n_alloc - allocs_before, 1);
    tu_ok(be->i->download(be, out, d_out, (size_t)(B * per_out) * sizeof(float)), "download");
    char what[160];
    for (int b = 0; b < B; b++) {
        snprintf(what, sizeof what, "%s output[%d]", fixture, b);
        tu_check_close(what, out + b * per_out, ref + b * per_out, (size_t)per_out, TOL);
    }

    /* a second forward allocates nothing; time it (warm) */
    const int allocs_mid = tr.n_alloc;
    double t2 = now_s();
    tu_ok(mold_dit_forward(dit, B, d_img, th, tw, d_txt, txt_len, L, sigma, d_out), "forward 2");
    double t3 = now_s();
    assert_int_equal(tr.n_alloc, allocs_mid);
    printf("  CPU forward (batch %d, %d img + %lld txt tokens): first %.2f ms, warm %.2f ms\n", B,
           N, (long long)L, (t1 - t0) * 1e3, (t3 - t2) * 1e3);

    /* sample 1 alone with only its valid tokens, inside the same reservation */
    const int len1 = txt_len[1];
    float *d_out1 = be->i->alloc(be, (size_t)per_out * sizeof(float));
    tu_ok(mold_dit_forward(dit, 1, d_img + N * C, th, tw, d_txt + L * Dj, &len1, len1, &sigma[1],
                           d_out1),
          "forward sample 1 alone");
    tu_ok(be->i->download(be, out, d_out1, (size_t)per_out * sizeof(float)), "download");
    snprintf(what, sizeof what, "%s sample 1 unpadded vs output_sample1_unpadded", fixture);
    tu_check_close(what, out, ref1, (size_t)per_out, TOL);
    snprintf(what, sizeof what, "%s sample 1 unpadded vs output[1]", fixture);
    tu_check_close(what, out, ref + per_out, (size_t)per_out, TOL);

    /* a larger shape than reserved is refused, not reallocated */
    const int len3[3] = {txt_len[0], txt_len[1], txt_len[1]};
    const float sig3[3] = {sigma[0], sigma[1], sigma[1]};
    tu_expect_error(mold_dit_forward(dit, 3, d_img, th, tw, d_txt, len3, L, sig3, d_out),
                    MOLD_E_RANGE, "reservation", "batch above the reservation");

    be->i->free(be, d_out1);
    be->i->free(be, d_img);
    be->i->free(be, d_txt);
    be->i->free(be, d_out);
    mold_dit_free(dit);
    assert_int_equal(tr.n_live, 0); /* everything the model allocated came back */
    be->i = tr.orig;
    mold_backend_free(be);
    mold_safetensors_close(wst);
    mold_safetensors_close(cst);
    free(img); free(txt); free(mask); free(sigma); free(hw); free(ref); free(ref1); free(out);
}

static void test_tiny(void **state) {
    (void)state;
    run_case("qwen-image-tiny");
}

static void test_hd128(void **state) {
    (void)state;
    run_case("qwen-image-hd128");
}

/* The hd128 pipeline case (112x80 px -> an odd 7x5 token grid, diffusers
 * centring) gives the DiT's inputs and outputs at both denoising steps:
 * cond/uncond predictions from noise_packed (step 0) and latents_step0
 * (step 1). Timesteps from cases/manifest.json; the pipeline feeds t/1000.
 * Also run as one batch of 2 (negative prompt padded to the prompt length),
 * the layout the pipeline uses for batched true CFG. */
static void test_hd128_pipeline_steps(void **state) {
    (void)state;
    mold_dit_config cfg;
    tu_ok(mold_dit_config_load(tu_fixture("qwen-image-hd128/model/transformer/config.json"), &cfg),
          "config");
    mold_safetensors *wst, *cst;
    tu_ok(mold_safetensors_open(tu_fixture("qwen-image-hd128/model/transformer"), &wst), "weights");
    tu_ok(mold_safetensors_open(tu_fixture("qwen-image-hd128/cases/pipeline.safetensors"), &cst),
          "case");
    mold_backend *be;
    tu_backend_create(0, &be);
    mold_tensor_source src = mold_source_safetensors(wst);
    mold_dit *dit;
    tu_ok(mold_dit_load(be, &cfg, &src, &dit), "load");

    const int th = 112 / 16, tw = 80 / 16, N = th * tw, C = 64;
    const float sig[2] = {1000.0f / 1000.0f, 19.999980926513672f / 1000.0f};
    int64_t n_pos, n_neg;
    float *pos = get_f32(cst, "prompt_embeds", &n_pos);   /* [1, Lp, Dj] */
    float *neg = get_f32(cst, "negative_embeds", &n_neg); /* [1, Ln, Dj] */
    const int64_t Dj = cfg.joint_attention_dim, Lp = n_pos / Dj, Ln = n_neg / Dj;
    const int64_t Lmax = Lp > Ln ? Lp : Ln;
    /* [2, Lmax, Dj]: prompt then negative, each right-padded with zeros */
    float *txt2 = calloc((size_t)(2 * Lmax * Dj), sizeof(float));
    memcpy(txt2, pos, (size_t)n_pos * sizeof(float));
    memcpy(txt2 + Lmax * Dj, neg, (size_t)n_neg * sizeof(float));
    float *d_txt = to_backend(be, txt2, (size_t)(2 * Lmax * Dj));
    tu_ok(mold_dit_reserve(dit, 2, N, Lmax), "reserve");
    float *d_img = be->i->alloc(be, (size_t)(2 * N * C) * sizeof(float));
    float *d_out = be->i->alloc(be, (size_t)(2 * N * C) * sizeof(float));
    float *out = malloc((size_t)(2 * N * C) * sizeof(float));
    printf("  grid %dx%d, L prompt %lld, L negative %lld\n", th, tw, (long long)Lp, (long long)Ln);

    for (int step = 0; step < 2; step++) {
        float *x = get_f32(cst, step == 0 ? "noise_packed" : "latents_step0", NULL);
        char name[64], what[128];
        snprintf(name, sizeof name, "noise_pred_cond_step%d", step);
        float *ref_c = get_f32(cst, name, NULL);
        snprintf(name, sizeof name, "noise_pred_uncond_step%d", step);
        float *ref_u = get_f32(cst, name, NULL);
        tu_ok(be->i->upload(be, d_img, x, (size_t)(N * C) * sizeof(float)), "upload");
        tu_ok(be->i->upload(be, d_img + N * C, x, (size_t)(N * C) * sizeof(float)), "upload");
        /* one sample at a time, unpadded */
        const int lp = (int)Lp, ln = (int)Ln;
        tu_ok(mold_dit_forward(dit, 1, d_img, th, tw, d_txt, &lp, Lp, &sig[step], d_out), "cond");
        tu_ok(mold_dit_forward(dit, 1, d_img, th, tw, d_txt + Lmax * Dj, &ln, Ln, &sig[step],
                               d_out + N * C),
              "uncond");
        tu_ok(be->i->download(be, out, d_out, (size_t)(2 * N * C) * sizeof(float)), "download");
        snprintf(what, sizeof what, "step %d cond", step);
        tu_check_close(what, out, ref_c, (size_t)(N * C), TOL);
        snprintf(what, sizeof what, "step %d uncond", step);
        tu_check_close(what, out + N * C, ref_u, (size_t)(N * C), TOL);
        /* batched CFG: [cond, uncond] in one forward with padded text */
        const int lens[2] = {lp, ln};
        const float sigs[2] = {sig[step], sig[step]};
        tu_ok(mold_dit_forward(dit, 2, d_img, th, tw, d_txt, lens, Lmax, sigs, d_out), "batch");
        tu_ok(be->i->download(be, out, d_out, (size_t)(2 * N * C) * sizeof(float)), "download");
        snprintf(what, sizeof what, "step %d cond (batch 2)", step);
        tu_check_close(what, out, ref_c, (size_t)(N * C), TOL);
        snprintf(what, sizeof what, "step %d uncond (batch 2, padded)", step);
        tu_check_close(what, out + N * C, ref_u, (size_t)(N * C), TOL);
        free(x); free(ref_c); free(ref_u);
    }
    be->i->free(be, d_img);
    be->i->free(be, d_txt);
    be->i->free(be, d_out);
    mold_dit_free(dit);
    mold_backend_free(be);
    mold_safetensors_close(wst);
    mold_safetensors_close(cst);
    free(pos); free(neg); free(txt2); free(out);
}

/* ---- GGUF weights (city96 layout, ggml block dtypes) ----
 * The same forward with the GGUF source (the backend multiplies by the
 * quantized blocks) against the forward with every tensor dequantized to
 * f32 on the host beforehand: the weights flow through the same code and the
 * block matmul matches the dequantized one. The quantized model is also
 * checked against diffusers' bf16 output with a tolerance set by the
 * quantization error of random weights (measured 0.9e-2 for q8_0, 0.06-0.13
 * for the 4/5-bit mixes; a transposed or misnamed weight gives ~1). */

typedef struct deq_source {
    const mold_gguf *g;
    mold_tensor *t; /* [n] f32 copies */
    float **data;
    size_t n;
} deq_source;

static const mold_tensor *deq_find(void *ud, const char *name) {
    deq_source *d = ud;
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->t[i].name, name)) return &d->t[i];
    return NULL;
}

static void deq_make(const mold_gguf *g, deq_source *d) {
    d->g = g;
    d->n = mold_gguf_tensor_count(g);
    d->t = calloc(d->n, sizeof *d->t);
    d->data = calloc(d->n, sizeof *d->data);
    for (size_t i = 0; i < d->n; i++) {
        const mold_tensor *src = mold_gguf_tensor_at(g, i);
        int64_t n = mold_tensor_nelems(src);
        d->data[i] = malloc((size_t)n * sizeof(float));
        const mold_dtype_info *info = mold_dtype_get(src->dtype);
        if (info->is_quant)
            tu_ok(mold_dequantize(src->dtype, src->data, d->data[i], n), src->name);
        else
            tu_ok(mold_tensor_to_f32(src, d->data[i]), src->name);
        d->t[i] = *src;
        d->t[i].dtype = MOLD_F32;
        d->t[i].data = d->data[i];
        d->t[i].n_bytes = (uint64_t)n * sizeof(float);
    }
}

static void deq_free(deq_source *d) {
    for (size_t i = 0; i < d->n; i++) free(d->data[i]);
    free(d->data);
    free(d->t);
}

/* Forward of the transformer case (batch 2, padded) with weights from src. */
static void case_forward(mold_backend *be, const mold_dit_config *cfg,
                         const mold_tensor_source *src, mold_safetensors *cst, float *out) {
    mold_dit *dit;
    tu_ok(mold_dit_load(be, cfg, src, &dit), "load");
    int64_t n_img, n_txt, n_mask;
    float *img = get_f32(cst, "hidden_states", &n_img);
    float *txt = get_f32(cst, "encoder_hidden_states", &n_txt);
    float *mask = get_f32(cst, "encoder_hidden_states_mask", &n_mask);
    float *sigma = get_f32(cst, "timestep", NULL);
    const int64_t L = n_mask / 2;
    int len[2] = {0, 0};
    for (int64_t j = 0; j < n_mask; j++) len[j / L] += mask[j] != 0.0f;
    float *d_img = to_backend(be, img, (size_t)n_img), *d_txt = to_backend(be, txt, (size_t)n_txt);
    float *d_out = be->i->alloc(be, (size_t)n_img * sizeof(float));
    tu_ok(mold_dit_forward(dit, 2, d_img, 4, 6, d_txt, len, L, sigma, d_out), "forward");
    tu_ok(be->i->download(be, out, d_out, (size_t)n_img * sizeof(float)), "download");
    be->i->free(be, d_img);
    be->i->free(be, d_txt);
    be->i->free(be, d_out);
    mold_dit_free(dit);
    free(img); free(txt); free(mask); free(sigma);
}

static void run_gguf(const char *fixture, const char *gguf, double tol_vs_bf16) {
    char path[512];
    snprintf(path, sizeof path, "%s/model/transformer/config.json", fixture);
    mold_dit_config cfg;
    tu_ok(mold_dit_config_load(tu_fixture(path), &cfg), "config");
    snprintf(path, sizeof path, "%s/cases/transformer.safetensors", fixture);
    mold_safetensors *cst;
    tu_ok(mold_safetensors_open(tu_fixture(path), &cst), "case");
    mold_gguf *g;
    tu_ok(mold_gguf_open(tu_fixture(gguf), &g), gguf);
    int counts[MOLD_DTYPE_COUNT] = {0};
    for (size_t i = 0; i < mold_gguf_tensor_count(g); i++) counts[mold_gguf_tensor_at(g, i)->dtype]++;
    printf("  %s:", gguf);
    for (int t = 0; t < MOLD_DTYPE_COUNT; t++)
        if (counts[t]) printf(" %s x%d", mold_dtype_name((mold_dtype)t), counts[t]);
    printf("\n");

    mold_backend *be;
    tu_backend_create(0, &be);
    const size_t n = 2 * 24 * 64;
    float *got = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
    mold_tensor_source qsrc = mold_source_gguf(g);
    case_forward(be, &cfg, &qsrc, cst, got);
    deq_source dq;
    deq_make(g, &dq);
    mold_tensor_source dsrc = {deq_find, &dq, "dequantized"};
    case_forward(be, &cfg, &dsrc, cst, want);
    char what[256];
    snprintf(what, sizeof what, "%s vs the same weights dequantized to f32", gguf);
    tu_check_close(what, got, want, n, TOL);
    float *ref = get_f32(cst, "output", NULL);
    snprintf(what, sizeof what, "%s vs diffusers bf16 output (quantization error)", gguf);
    tu_check_close(what, got, ref, n, tol_vs_bf16);
    free(ref);
    deq_free(&dq);
    free(got);
    free(want);
    mold_backend_free(be);
    mold_gguf_close(g);
    mold_safetensors_close(cst);
}

static void test_gguf(void **state) {
    (void)state;
    run_gguf("qwen-image-tiny", "gguf/transformer-q8_0.gguf", 2e-2);
    run_gguf("qwen-image-tiny", "gguf/transformer-mixed-legacy.gguf", 2e-1);
    run_gguf("qwen-image-tiny", "gguf/transformer-mixed-k.gguf", 2e-1);
    run_gguf("qwen-image-hd128", "gguf-hd128/transformer-mixed-k.gguf", 2e-1);
}

/* ---- fused ops (optional in ops.h) against the plain ops ----
 * Three forwards of a transformer case: with the fused ops switched off
 * (the model composes the plain ops), with test versions that compose the
 * same plain ops (they must agree exactly and be called as often as the
 * model has places for them: the model hands them what the composition
 * uses), and with the backend's own table (CPU: no fused ops; CUDA: the bf16
 * hidden MLP and the one-pass QK norm + RoPE, within TOL of the plain ops). */

static const mold_backend_i *g_plain;
static int g_n_mlp;

static mold_status tc_mlp_gelu(mold_backend *be, float *y, const float *x, int64_t m,
                               const mold_weight *w1, const float *b1, const mold_weight *w2,
                               const float *b2, float *tmp) {
    g_n_mlp++;
    MOLD_TRY(g_plain->matmul(be, tmp, x, m, w1, b1));
    MOLD_TRY(g_plain->gelu_tanh(be, tmp, tmp, m * w1->n_out));
    return g_plain->matmul(be, y, tmp, m, w2, b2);
}

static int g_n_norm_rope;

static mold_status tc_rms_norm_rope(mold_backend *be, float *y, const float *x,
                                    const float *gamma, int64_t n_tok, int64_t n_head,
                                    int64_t head_dim, float eps, const float *cos_t,
                                    const float *sin_t, mold_rope_mode mode) {
    g_n_norm_rope++;
    MOLD_TRY(g_plain->rms_norm(be, y, x, gamma, n_tok * n_head, head_dim, eps));
    return g_plain->rope(be, y, n_tok, n_head, head_dim, cos_t, sin_t, mode);
}

static void run_fused(const char *fixture) {
    mold_dit_config cfg;
    mold_safetensors *wst, *cst;
    open_fixture(fixture, &cfg, &wst, &cst);
    mold_backend *be;
    tu_backend_create(0, &be);
    const mold_backend_i *own = be->i;
    mold_backend_i off = *own, tc = *own;
    off.mlp_gelu = NULL;
    off.rms_norm_rope = NULL;
    tc.mlp_gelu = tc_mlp_gelu;
    tc.rms_norm_rope = tc_rms_norm_rope;
    g_plain = &off;
    const size_t n = 2 * 24 * 64;
    float *plain = malloc(n * sizeof(float)), *comp = malloc(n * sizeof(float)),
          *fused = malloc(n * sizeof(float));
    mold_tensor_source src = mold_source_safetensors(wst);
    be->i = &off;
    case_forward(be, &cfg, &src, cst, plain);
    be->i = &tc;
    g_n_mlp = g_n_norm_rope = 0;
    case_forward(be, &cfg, &src, cst, comp);
    be->i = own;
    case_forward(be, &cfg, &src, cst, fused);
    printf("  %s: mlp_gelu called %d times (2 streams x %d blocks)\n", fixture, g_n_mlp,
           cfg.num_layers);
    printf("  %s: rms_norm_rope called %d times (q, k x 2 streams x 2 samples x %d blocks)\n",
           fixture, g_n_norm_rope, cfg.num_layers);
    assert_int_equal(g_n_mlp, 2 * cfg.num_layers);
    assert_int_equal(g_n_norm_rope, 8 * cfg.num_layers);
    char what[160];
    snprintf(what, sizeof what, "%s composed fused ops vs plain ops", fixture);
    tu_check_close(what, comp, plain, n, tu_tol(0.0, 1e-6));
    snprintf(what, sizeof what, "%s %s fused ops vs plain ops", fixture, own->name);
    tu_check_close(what, fused, plain, n, TOL);
    free(plain); free(comp); free(fused);
    mold_backend_free(be);
    mold_safetensors_close(wst);
    mold_safetensors_close(cst);
}

static void test_fused_ops(void **state) {
    (void)state;
    run_fused("qwen-image-tiny");
    run_fused("qwen-image-hd128");
}

int main(void) {
    TOL = tu_tol(1e-4, 1e-2);
    printf("backend %s: tolerance %.0e\n", tu_backend_is_cuda() ? "cuda" : "cpu", TOL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny),
        cmocka_unit_test(test_hd128),
        cmocka_unit_test(test_hd128_pipeline_steps),
        cmocka_unit_test(test_gguf),
        cmocka_unit_test(test_fused_ops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
