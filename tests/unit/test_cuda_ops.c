/*
 * test_cuda_ops.c — every op of the CUDA backend against the CPU backend
 * (the reference) on random non-zero data, odd sizes, masks, GQA, causal
 * offsets, unaligned sub-buffers and every supported weight dtype.
 *
 * Skips (passes, printing "SKIP: ...") only when there is no CUDA device at
 * all: built without CUDA, or mold_backend_cuda_create() reporting
 * MOLD_E_UNSUPPORTED "no CUDA device" (cudaGetDeviceCount found no device or
 * no driver is installed — the CI machine). Any other failure fails.
 *
 * Outputs are poisoned with NaN before every CUDA op, so an element the op
 * forgets to write fails the comparison (NaN never passes tu_check_close).
 *
 * Tolerances (relative L2 error vs CPU):
 *   - ops whose inputs CUDA rounds to bf16 (matmul with bf16/f16/ggml
 *     weights, the fused MLP, conv2d, attention): 1e-2 (bf16 has 8 significant bits, so a
 *     K-term dot product lands near 2^-9 / sqrt-averaged, ~3e-3);
 *   - f32 paths (f32-weight matmul below 128 rows, norms, rope, elementwise,
 *     embed): 1e-5; f32 weights from 128 rows take the bf16 GEMM: 1e-2.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "base/dtype.h"
#include "base/quant.h"
#include "testutil.h"

#ifdef MOLD_HAVE_CUDA

/* attention.cu: forces the GEMM attention path (compares both paths). */
void mold_cuda_attention_force_gemm(int on);
/* attention.cu: flash kernel variant (0 default: the Hopper kernel for head
 * dim 128 without a causal mask, else flash3; 1 first kernel, ..., 4 flash2,
 * 6 flash4 wgmma, 7 Hopper, 8 flash3 forced). */
void mold_cuda_attention_set_variant(int v);
/* conv.cu: conv2d variant (0 default packed implicit GEMM, 1 K-contiguous
 * columns, 2 im2col [K, P], 3 packed with 96 couts per block, 4 the
 * f32-staging implicit GEMM). */
void mold_cuda_conv_set_variant(int v);
/* cuda_backend.cu: piece size of bf16-held uploads (0 = default). */
void mold_cuda_set_hold_piece_bytes(size_t bytes);
/* matmul.cu: rows from which f32 weights take the bf16 GEMM (<= 0: default). */
void mold_cuda_matmul_set_f32_bf16_min_m(int64_t m);
/* matmul.cu: cuBLASLt heuristic queries so far (and those that found none). */
void mold_cuda_gemm_plan_stats(mold_backend *be, uint64_t *queries, uint64_t *none);

#define TOL_BF16 1e-2
#define TOL_F32 1e-5

/* ---- fixtures ---- */

static mold_backend *g_cpu, *g_cuda;

static uint64_t g_rng = 0x2545f4914f6cdd1dull;

static float frand(void) { /* uniform in [-1, -0.05] U [0.05, 1], never 0 */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    float u = (float)((g_rng >> 40) * (1.0 / 16777216.0));
    float mag = 0.05f + 0.95f * u;
    return (g_rng & 1) ? -mag : mag;
}

static float *rnd(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    assert_non_null(p);
    for (int64_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

/* A host array mirrored in both backends. */
typedef struct pair {
    int64_t n;
    float *host;
    float *cpu, *gpu;
} pair;

static pair pair_make(const float *host, int64_t n) {
    pair p = {n, malloc((size_t)n * 4), NULL, NULL};
    assert_non_null(p.host);
    if (host) memcpy(p.host, host, (size_t)n * 4);
    else for (int64_t i = 0; i < n; i++) p.host[i] = frand();
    p.cpu = g_cpu->i->alloc(g_cpu, (size_t)n * 4);
    p.gpu = g_cuda->i->alloc(g_cuda, (size_t)n * 4);
    assert_non_null(p.cpu);
    assert_non_null(p.gpu);
    tu_ok(g_cpu->i->upload(g_cpu, p.cpu, p.host, (size_t)n * 4), "cpu upload");
    tu_ok(g_cuda->i->upload(g_cuda, p.gpu, p.host, (size_t)n * 4), "cuda upload");
    return p;
}

static pair pair_rand(int64_t n) { return pair_make(NULL, n); }

/* Fills the CUDA copy with NaN (an unwritten element then fails). */
static void poison(pair *p) {
    float *nan = malloc((size_t)p->n * 4);
    assert_non_null(nan);
    for (int64_t i = 0; i < p->n; i++) nan[i] = NAN;
    tu_ok(g_cuda->i->upload(g_cuda, p->gpu, nan, (size_t)p->n * 4), "poison");
    free(nan);
}

static void pair_free(pair *p) {
    g_cpu->i->free(g_cpu, p->cpu);
    g_cuda->i->free(g_cuda, p->gpu);
    free(p->host);
}

/* Downloads both copies and compares CUDA against CPU. */
static double compare(const char *what, const pair *p, double tol) {
    float *a = malloc((size_t)p->n * 4), *b = malloc((size_t)p->n * 4);
    assert_non_null(a);
    assert_non_null(b);
    tu_ok(g_cuda->i->download(g_cuda, a, p->gpu, (size_t)p->n * 4), "cuda download");
    tu_ok(g_cpu->i->download(g_cpu, b, p->cpu, (size_t)p->n * 4), "cpu download");
    double rel = tu_check_close(what, a, b, (size_t)p->n, tol);
    free(a);
    free(b);
    return rel;
}

/* Weight data of `dt` made from random values, uploaded to both backends. */
typedef struct wpair {
    void *data;
    mold_tensor t;
    mold_weight wc, wg;
} wpair;

static void wpair_make(wpair *w, mold_dtype dt, int64_t n_out, int64_t n_in) {
    float *src = rnd(n_out * n_in);
    uint64_t row_bytes = 0;
    tu_ok(mold_dtype_row_bytes(dt, (uint64_t)n_in, &row_bytes), "row bytes");
    w->data = malloc(row_bytes * (uint64_t)n_out);
    assert_non_null(w->data);
    for (int64_t r = 0; r < n_out; r++) {
        uint8_t *row = (uint8_t *)w->data + r * row_bytes;
        const float *s = src + r * n_in;
        if (dt == MOLD_F32) memcpy(row, s, (size_t)n_in * 4);
        else if (dt == MOLD_BF16)
            for (int64_t j = 0; j < n_in; j++) ((uint16_t *)row)[j] = mold_f32_to_bf16(s[j]);
        else if (dt == MOLD_F16)
            for (int64_t j = 0; j < n_in; j++) ((uint16_t *)row)[j] = mold_f32_to_f16(s[j]);
        else tu_ok(mold_quantize(dt, s, row, n_in), "quantize");
    }
    free(src);
    memset(&w->t, 0, sizeof w->t);
    w->t.name = "test.weight";
    w->t.dtype = dt;
    w->t.n_dims = 2;
    w->t.shape[0] = n_out;
    w->t.shape[1] = n_in;
    w->t.data = w->data;
    w->t.n_bytes = row_bytes * (uint64_t)n_out;
    tu_ok(g_cpu->i->weight_upload(g_cpu, &w->t, n_out, n_in, &w->wc), "cpu weight");
    tu_ok(g_cuda->i->weight_upload(g_cuda, &w->t, n_out, n_in, &w->wg), "cuda weight");
}

static void wpair_free(wpair *w) {
    g_cpu->i->weight_free(g_cpu, &w->wc);
    g_cuda->i->weight_free(g_cuda, &w->wg);
    free(w->data);
}

/* ---- matmul, embed ---- */

static double check_matmul(mold_dtype dt, int64_t m, int64_t n_in, int64_t n_out, int with_bias,
                           int64_t x_off, double tol) {
    wpair w;
    wpair_make(&w, dt, n_out, n_in);
    pair x = pair_rand(m * n_in + x_off), y = pair_rand(m * n_out + 3), b = pair_rand(n_out);
    poison(&y);
    const float *bc = with_bias ? b.cpu : NULL, *bg = with_bias ? b.gpu : NULL;
    tu_ok(g_cpu->i->matmul(g_cpu, y.cpu + 3, x.cpu + x_off, m, &w.wc, bc), "cpu matmul");
    tu_ok(g_cuda->i->matmul(g_cuda, y.gpu + 3, x.gpu + x_off, m, &w.wg, bg), "cuda matmul");
    float head[3] = {1, 2, 3}; /* the 3 values before y: equal on both sides */
    tu_ok(g_cpu->i->upload(g_cpu, y.cpu, head, sizeof head), "head");
    tu_ok(g_cuda->i->upload(g_cuda, y.gpu, head, sizeof head), "head");
    char what[96];
    snprintf(what, sizeof what, "matmul %s m=%lld %lldx%lld%s off=%lld", mold_dtype_name(dt),
             (long long)m, (long long)n_out, (long long)n_in, with_bias ? " +bias" : "",
             (long long)x_off);
    double rel = compare(what, &y, tol);
    pair_free(&x);
    pair_free(&y);
    pair_free(&b);
    wpair_free(&w);
    return rel;
}

static void test_matmul(void **state) {
    (void)state;
    check_matmul(MOLD_BF16, 67, 320, 192, 1, 0, TOL_BF16);
    check_matmul(MOLD_BF16, 1, 320, 192, 0, 0, TOL_BF16);
    check_matmul(MOLD_BF16, 33, 96, 40, 1, 5, TOL_BF16); /* unaligned activations */
    check_matmul(MOLD_F16, 45, 256, 136, 1, 0, TOL_BF16);
    check_matmul(MOLD_F32, 45, 100, 36, 1, 0, TOL_F32);   /* exact f32 GEMM */
    check_matmul(MOLD_F32, 7, 100, 36, 0, 1, TOL_F32);
    /* f32 weights from CUDA_F32_BF16_MIN_M (128) rows: the bf16 GEMM */
    check_matmul(MOLD_F32, 127, 100, 36, 1, 0, TOL_F32);
    double rel = check_matmul(MOLD_F32, 128, 100, 36, 1, 0, TOL_BF16);
    check_matmul(MOLD_F32, 1001, 384, 384, 1, 3, TOL_BF16); /* the VAE attention's shape */
    mold_cuda_matmul_set_f32_bf16_min_m(INT64_MAX);       /* the same case, kept exact */
    double rel_exact = check_matmul(MOLD_F32, 128, 100, 36, 1, 0, TOL_F32);
    mold_cuda_matmul_set_f32_bf16_min_m(0);
    printf("  f32 weights at m=128: rel %.2e on the bf16 path, %.2e kept exact\n", rel,
           rel_exact);
    assert_true(rel > 1e-4); /* the bf16 path was taken: its rounding shows */
}

/* The few-row path (matmul_small.cu: m <= 64, k % 32 == 0): every 16-row
 * group count, n not a multiple of the 32-output block, one k split and
 * several (the partials summed by the second kernel), with and without
 * bias, a held-size bf16 weight and a block format dequantized first, and
 * the DiT's text-stream and modulation shapes. */
static void test_matmul_small(void **state) {
    (void)state;
    check_matmul(MOLD_BF16, 1, 64, 72, 1, 0, TOL_BF16);
    check_matmul(MOLD_BF16, 13, 3072, 3072, 1, 0, TOL_BF16);
    check_matmul(MOLD_BF16, 16, 256, 200, 0, 0, TOL_BF16);
    check_matmul(MOLD_BF16, 17, 512, 96, 1, 1, TOL_BF16);
    check_matmul(MOLD_BF16, 40, 3584, 512, 1, 0, TOL_BF16);
    check_matmul(MOLD_BF16, 64, 1024, 3000, 0, 0, TOL_BF16);
    check_matmul(MOLD_BF16, 2, 3072, 18432, 1, 0, TOL_BF16);
    check_matmul(MOLD_BF16, 26, 12288, 3072, 1, 0, TOL_BF16);
    check_matmul(MOLD_Q8_0, 13, 3072, 1000, 1, 0, TOL_BF16);
    check_matmul(MOLD_Q4_K, 47, 2048, 264, 0, 0, TOL_BF16);
    check_matmul(MOLD_BF16, 65, 256, 96, 1, 0, TOL_BF16); /* m 65: cuBLASLt */
}

static void test_matmul_quant(void **state) {
    (void)state;
    const mold_dtype q[] = {MOLD_Q4_0, MOLD_Q4_1, MOLD_Q5_0, MOLD_Q5_1, MOLD_Q8_0,
                            MOLD_Q2_K, MOLD_Q3_K, MOLD_Q4_K, MOLD_Q5_K, MOLD_Q6_K};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
        check_matmul(q[i], 37, 512, 72, i % 2 == 0, 0, TOL_BF16);
}

/* ---- fused MLP ---- */

/* mlp_gelu on CUDA against the CPU composition (matmul, gelu_tanh, matmul).
 * x is scaled by 1/sqrt(n_in) so the pre-activations land where GELU
 * bends. alias: y is x (n_out == n_in). */
static void check_mlp(mold_dtype dt1, mold_dtype dt2, int64_t m, int64_t n_in, int64_t f,
                      int64_t n_out, int with_bias, int64_t x_off, int alias, double tol) {
    wpair w1, w2;
    wpair_make(&w1, dt1, f, n_in);
    wpair_make(&w2, dt2, n_out, f);
    float *xh = rnd(m * n_in + x_off);
    for (int64_t i = 0; i < m * n_in + x_off; i++) xh[i] /= sqrtf((float)n_in);
    pair x = pair_make(xh, m * n_in + x_off), y = pair_rand(m * n_out), h = pair_rand(m * f);
    pair b1 = pair_rand(f), b2 = pair_rand(n_out);
    free(xh);
    const float *b1c = with_bias ? b1.cpu : NULL, *b2c = with_bias ? b2.cpu : NULL;
    const float *b1g = with_bias ? b1.gpu : NULL, *b2g = with_bias ? b2.gpu : NULL;
    float *yc = alias ? x.cpu + x_off : y.cpu, *yg = alias ? x.gpu + x_off : y.gpu;
    if (!alias) poison(&y);
    tu_ok(g_cpu->i->matmul(g_cpu, h.cpu, x.cpu + x_off, m, &w1.wc, b1c), "cpu fc1");
    tu_ok(g_cpu->i->gelu_tanh(g_cpu, h.cpu, h.cpu, m * f), "cpu gelu");
    tu_ok(g_cpu->i->matmul(g_cpu, yc, h.cpu, m, &w2.wc, b2c), "cpu fc2");
    tu_ok(g_cuda->i->mlp_gelu(g_cuda, yg, x.gpu + x_off, m, &w1.wg, b1g, &w2.wg, b2g, h.gpu),
          "cuda mlp_gelu");
    char what[128];
    snprintf(what, sizeof what, "mlp_gelu %s/%s m=%lld %lld->%lld->%lld%s off=%lld%s",
             mold_dtype_name(dt1), mold_dtype_name(dt2), (long long)m, (long long)n_in,
             (long long)f, (long long)n_out, with_bias ? " +bias" : "", (long long)x_off,
             alias ? " y=x" : "");
    if (alias) { /* compare the y rows inside x (the offset head is equal on both) */
        float *a = malloc((size_t)(m * n_out) * 4), *b = malloc((size_t)(m * n_out) * 4);
        assert_non_null(a);
        assert_non_null(b);
        tu_ok(g_cuda->i->download(g_cuda, a, yg, (size_t)(m * n_out) * 4), "dl");
        tu_ok(g_cpu->i->download(g_cpu, b, yc, (size_t)(m * n_out) * 4), "dl");
        tu_check_close(what, a, b, (size_t)(m * n_out), tol);
        free(a);
        free(b);
    } else {
        compare(what, &y, tol);
    }
    pair_free(&x); pair_free(&y); pair_free(&h); pair_free(&b1); pair_free(&b2);
    wpair_free(&w1);
    wpair_free(&w2);
}

static void test_mlp_gelu(void **state) {
    (void)state;
    /* dt1, dt2, m, n_in, F, n_out, bias, x_off, alias */
    check_mlp(MOLD_BF16, MOLD_BF16, 67, 96, 384, 96, 1, 0, 0, TOL_BF16);
    check_mlp(MOLD_BF16, MOLD_BF16, 33, 96, 384, 96, 0, 5, 0, TOL_BF16); /* unaligned x */
    check_mlp(MOLD_BF16, MOLD_BF16, 33, 40, 164, 40, 1, 0, 0, TOL_BF16); /* F % 8: scalar GELU */
    check_mlp(MOLD_BF16, MOLD_BF16, 45, 96, 384, 96, 1, 3, 1, TOL_BF16); /* y aliases x */
    check_mlp(MOLD_BF16, MOLD_BF16, 1, 64, 256, 48, 1, 0, 0, TOL_BF16);  /* one row */
    check_mlp(MOLD_BF16, MOLD_BF16, 50, 512, 128, 64, 1, 0, 0, TOL_BF16); /* x beside tmp: no */
    check_mlp(MOLD_F16, MOLD_BF16, 19, 64, 256, 64, 1, 0, 0, TOL_BF16);
    check_mlp(MOLD_Q4_0, MOLD_Q4_1, 45, 256, 1024, 256, 1, 0, 0, TOL_BF16); /* the q4_0 DiT */
    check_mlp(MOLD_Q4_K, MOLD_Q6_K, 21, 256, 512, 256, 1, 0, 0, TOL_BF16);
    check_mlp(MOLD_F32, MOLD_F32, 45, 100, 400, 36, 1, 0, 0, TOL_F32); /* small m: exact */
    check_mlp(MOLD_F32, MOLD_F32, 300, 100, 400, 36, 1, 0, 0, TOL_BF16); /* 128+: bf16 */
    check_mlp(MOLD_BF16, MOLD_F32, 45, 64, 256, 64, 1, 0, 0, TOL_BF16);  /* mixed: composed */
    check_mlp(MOLD_BF16, MOLD_BF16, 2053, 1024, 4096, 1024, 1, 0, 0, TOL_BF16); /* large */
    /* the DiT's text stream at CFG batch 2 (m <= 64: composed on the few-row path) */
    check_mlp(MOLD_BF16, MOLD_BF16, 26, 3072, 12288, 3072, 1, 0, 0, TOL_BF16);
    /* a shape seen before asks cuBLASLt nothing (each query costs up to
     * milliseconds; one that finds no algorithm is remembered too) */
    uint64_t q0, n0, q1, n1;
    check_mlp(MOLD_BF16, MOLD_BF16, 67, 96, 384, 96, 1, 0, 0, TOL_BF16);
    mold_cuda_gemm_plan_stats(g_cuda, &q0, &n0);
    check_mlp(MOLD_BF16, MOLD_BF16, 67, 96, 384, 96, 1, 0, 0, TOL_BF16);
    mold_cuda_gemm_plan_stats(g_cuda, &q1, &n1);
    printf("  heuristic queries: %llu so far (%llu found nothing), %llu for a repeated shape\n",
           (unsigned long long)q1, (unsigned long long)n1, (unsigned long long)(q1 - q0));
    assert_true(q1 == q0);
    /* errors: W2's n_in must be W1's n_out; tmp is required */
    wpair a, b, c;
    wpair_make(&a, MOLD_BF16, 64, 32); /* 32 -> 64 */
    wpair_make(&b, MOLD_BF16, 32, 48); /* 48 -> 32: does not follow a */
    wpair_make(&c, MOLD_BF16, 32, 64); /* 64 -> 32: follows a */
    float *p = g_cuda->i->alloc(g_cuda, 64 * 64 * 4);
    tu_expect_error(g_cuda->i->mlp_gelu(g_cuda, p, p, 2, &a.wg, NULL, &b.wg, NULL, p),
                    MOLD_E_INVALID, "n_in", "mlp_gelu with mismatched weights");
    tu_expect_error(g_cuda->i->mlp_gelu(g_cuda, p, p, 2, &a.wg, NULL, &c.wg, NULL, NULL),
                    MOLD_E_INVALID, "tmp", "mlp_gelu without tmp");
    g_cuda->i->free(g_cuda, p);
    wpair_free(&a);
    wpair_free(&b);
    wpair_free(&c);
}

static void test_embed(void **state) {
    (void)state;
    const mold_dtype dts[] = {MOLD_F32, MOLD_BF16, MOLD_F16, MOLD_Q8_0, MOLD_Q4_K, MOLD_Q6_K};
    int32_t ids[9] = {3, 0, 99, 17, 17, 42, 5, 98, 1};
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
        wpair w;
        wpair_make(&w, dts[i], 100, 256);
        pair y = pair_rand(9 * 256);
        poison(&y);
        tu_ok(g_cpu->i->embed(g_cpu, y.cpu, &w.wc, ids, 9), "cpu embed");
        tu_ok(g_cuda->i->embed(g_cuda, y.gpu, &w.wg, ids, 9), "cuda embed");
        char what[64];
        snprintf(what, sizeof what, "embed %s", mold_dtype_name(dts[i]));
        /* f16 tables are stored as bf16 on CUDA (f16 weights become bf16) */
        compare(what, &y, dts[i] == MOLD_F16 ? TOL_BF16 : TOL_F32);
        pair_free(&y);
        wpair_free(&w);
    }
    wpair w;
    wpair_make(&w, MOLD_BF16, 10, 64);
    int32_t bad[2] = {1, 10};
    float *dummy = g_cuda->i->alloc(g_cuda, 2 * 64 * 4);
    tu_expect_error(g_cuda->i->embed(g_cuda, dummy, &w.wg, bad, 2), MOLD_E_RANGE, "outside",
                    "embed id out of range");
    g_cuda->i->free(g_cuda, dummy);
    wpair_free(&w);
}

static void test_weight_errors(void **state) {
    (void)state;
    uint16_t data[64] = {0};
    mold_tensor t = {"w.bad", MOLD_BF16, 2, {8, 8}, data, 100}; /* n_bytes should be 128 */
    mold_weight w;
    tu_expect_error(g_cuda->i->weight_upload(g_cuda, &t, 8, 8, &w), MOLD_E_FORMAT, "expected 128",
                    "weight with wrong byte count");
    t.n_bytes = 128;
    tu_expect_error(g_cuda->i->weight_upload(g_cuda, &t, 4, 8, &w), MOLD_E_INVALID, "expected 4 x 8",
                    "weight with wrong 2-D view");
    t.dtype = MOLD_I16;
    tu_expect_error(g_cuda->i->weight_upload(g_cuda, &t, 8, 8, &w), MOLD_E_UNSUPPORTED, "i16",
                    "weight of integer dtype");
}

static void test_upload_f32(void **state) {
    (void)state;
    const mold_dtype dts[] = {MOLD_F32, MOLD_BF16, MOLD_F16, MOLD_Q8_0, MOLD_Q5_K};
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
        wpair w;
        wpair_make(&w, dts[i], 2, 256); /* only its host tensor is used */
        float *c = NULL, *g = NULL;
        w.t.n_dims = 1;
        w.t.shape[0] = 512;
        tu_ok(g_cpu->i->upload_f32(g_cpu, &w.t, &c), "cpu upload_f32");
        tu_ok(g_cuda->i->upload_f32(g_cuda, &w.t, &g), "cuda upload_f32");
        float a[512], b[512];
        tu_ok(g_cuda->i->download(g_cuda, a, g, sizeof a), "download");
        tu_ok(g_cpu->i->download(g_cpu, b, c, sizeof b), "download");
        char what[64];
        snprintf(what, sizeof what, "upload_f32 %s", mold_dtype_name(dts[i]));
        tu_check_close(what, a, b, 512, 1e-7);
        g_cpu->i->free(g_cpu, c);
        g_cuda->i->free(g_cuda, g);
        wpair_free(&w);
    }
}

/* ---- weights held as bf16 (set_weight_hold) ---- */

/* One dtype: the held weight is bf16 (f32 stays f32), and matmul with it is
 * bit for bit matmul with the stored weight (same dequantization, once). */
static void check_hold(mold_dtype dt, int64_t m, int64_t n_in, int64_t n_out) {
    wpair w;
    wpair_make(&w, dt, n_out, n_in);
    mold_weight held;
    tu_ok(g_cuda->i->set_weight_hold(g_cuda, MOLD_BF16), "hold bf16");
    tu_ok(g_cuda->i->weight_upload(g_cuda, &w.t, n_out, n_in, &held), "held upload");
    tu_ok(g_cuda->i->set_weight_hold(g_cuda, MOLD_DTYPE_INVALID), "hold as stored");
    mold_dtype want = dt == MOLD_F32 ? MOLD_F32 : MOLD_BF16;
    assert_int_equal(held.dtype, want);
    assert_int_equal(held.row_bytes, (uint64_t)n_in * (want == MOLD_F32 ? 4 : 2));
    pair x = pair_rand(m * n_in), y = pair_rand(m * n_out), yh = pair_rand(m * n_out);
    poison(&y);
    poison(&yh);
    tu_ok(g_cpu->i->matmul(g_cpu, y.cpu, x.cpu, m, &w.wc, NULL), "cpu matmul");
    tu_ok(g_cuda->i->matmul(g_cuda, y.gpu, x.gpu, m, &w.wg, NULL), "cuda matmul stored");
    tu_ok(g_cuda->i->matmul(g_cuda, yh.gpu, x.gpu, m, &held, NULL), "cuda matmul held");
    size_t nb = (size_t)(m * n_out) * 4;
    float *a = malloc(nb), *b = malloc(nb);
    assert_non_null(a);
    assert_non_null(b);
    tu_ok(g_cuda->i->download(g_cuda, a, y.gpu, nb), "download");
    tu_ok(g_cuda->i->download(g_cuda, b, yh.gpu, nb), "download");
    size_t diff = 0;
    for (size_t i = 0; i < (size_t)(m * n_out); i++) diff += memcmp(&a[i], &b[i], 4) != 0;
    printf("  hold %s: %zu of %lld values differ from the per-call path\n", mold_dtype_name(dt),
           diff, (long long)(m * n_out));
    assert_int_equal(diff, 0);
    char what[64];
    snprintf(what, sizeof what, "matmul held %s", mold_dtype_name(dt));
    g_cpu->i->free(g_cpu, yh.cpu);
    yh.cpu = y.cpu; /* the same CPU reference */
    compare(what, &yh, dt == MOLD_F32 ? TOL_F32 : TOL_BF16);
    g_cuda->i->weight_free(g_cuda, &held);
    free(a);
    free(b);
    pair_free(&x);
    pair_free(&y);
    g_cuda->i->free(g_cuda, yh.gpu);
    free(yh.host);
    wpair_free(&w);
}

static void test_weight_hold(void **state) {
    (void)state;
    const mold_dtype dts[] = {MOLD_Q4_0, MOLD_Q4_1, MOLD_Q5_0, MOLD_Q8_0, MOLD_Q2_K,
                              MOLD_Q4_K, MOLD_Q6_K, MOLD_F16, MOLD_BF16, MOLD_F32};
    mold_cuda_set_hold_piece_bytes(5000); /* several pieces per weight */
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) check_hold(dts[i], 37, 512, 72);
    mold_cuda_set_hold_piece_bytes(0);
    check_hold(MOLD_Q4_K, 5, 1024, 40); /* one piece */
    /* an embed of a held table reads bf16-rounded rows */
    wpair w;
    wpair_make(&w, MOLD_Q8_0, 50, 256);
    mold_weight held;
    tu_ok(g_cuda->i->set_weight_hold(g_cuda, MOLD_BF16), "hold bf16");
    tu_ok(g_cuda->i->weight_upload(g_cuda, &w.t, 50, 256, &held), "held upload");
    tu_ok(g_cuda->i->set_weight_hold(g_cuda, MOLD_DTYPE_INVALID), "hold as stored");
    int32_t ids[4] = {3, 49, 0, 3};
    pair y = pair_rand(4 * 256);
    poison(&y);
    tu_ok(g_cpu->i->embed(g_cpu, y.cpu, &w.wc, ids, 4), "cpu embed");
    tu_ok(g_cuda->i->embed(g_cuda, y.gpu, &held, ids, 4), "cuda embed held");
    compare("embed of a held q8_0 table", &y, TOL_BF16);
    pair_free(&y);
    g_cuda->i->weight_free(g_cuda, &held);
    wpair_free(&w);
    tu_expect_error(g_cuda->i->set_weight_hold(g_cuda, MOLD_Q4_0), MOLD_E_INVALID, "expected bf16",
                    "hold in a block format");
}

/* ---- norms, rope ---- */

static void test_norms(void **state) {
    (void)state;
    /* 3072, 2052 and 4096: LayerNorm's register kernel (3, 3 with a tail, 4
     * float4 per thread); 4100: its block kernel */
    const int64_t shapes[][2] = {{300, 128}, {7, 3072}, {5, 33}, {4, 2052}, {3, 4096}, {2, 4100}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t rows = shapes[s][0], dim = shapes[s][1];
        pair x = pair_rand(rows * dim), y = pair_rand(rows * dim), g = pair_rand(dim),
             sh = pair_rand(dim), sc = pair_rand(dim);
        char what[80];
        for (int with_g = 0; with_g < 2; with_g++) {
            poison(&y);
            tu_ok(g_cpu->i->rms_norm(g_cpu, y.cpu, x.cpu, with_g ? g.cpu : NULL, rows, dim, 1e-6f), "cpu");
            tu_ok(g_cuda->i->rms_norm(g_cuda, y.gpu, x.gpu, with_g ? g.gpu : NULL, rows, dim, 1e-6f), "cuda");
            snprintf(what, sizeof what, "rms_norm %lldx%lld gamma=%d", (long long)rows, (long long)dim, with_g);
            compare(what, &y, TOL_F32);
        }
        poison(&y);
        tu_ok(g_cpu->i->layer_norm_modulate(g_cpu, y.cpu, x.cpu, sh.cpu, sc.cpu, rows, dim, 1e-6f), "cpu");
        tu_ok(g_cuda->i->layer_norm_modulate(g_cuda, y.gpu, x.gpu, sh.gpu, sc.gpu, rows, dim, 1e-6f), "cuda");
        snprintf(what, sizeof what, "layer_norm_modulate %lldx%lld", (long long)rows, (long long)dim);
        compare(what, &y, TOL_F32);
        /* in place */
        tu_ok(g_cpu->i->rms_norm(g_cpu, x.cpu, x.cpu, g.cpu, rows, dim, 1e-6f), "cpu");
        tu_ok(g_cuda->i->rms_norm(g_cuda, x.gpu, x.gpu, g.gpu, rows, dim, 1e-6f), "cuda");
        snprintf(what, sizeof what, "rms_norm in place %lldx%lld", (long long)rows, (long long)dim);
        compare(what, &x, TOL_F32);
        pair_free(&x); pair_free(&y); pair_free(&g); pair_free(&sh); pair_free(&sc);
    }
    int64_t c = 96, hw = 37 * 23;
    pair x = pair_rand(c * hw), y = pair_rand(c * hw), g = pair_rand(c);
    poison(&y);
    tu_ok(g_cpu->i->channel_rms_norm(g_cpu, y.cpu, x.cpu, g.cpu, c, hw), "cpu");
    tu_ok(g_cuda->i->channel_rms_norm(g_cuda, y.gpu, x.gpu, g.gpu, c, hw), "cuda");
    compare("channel_rms_norm 96 x 851", &y, TOL_F32);
    pair_free(&x); pair_free(&y); pair_free(&g);
    /* channel_rms_scale: channel counts around the kernel's unroll by 8 */
    const int64_t cs[][2] = {{96, 37 * 23}, {3, 1000}, {13, 257}, {384, 166}};
    for (int i = 0; i < 4; i++) {
        pair xs = pair_rand(cs[i][0] * cs[i][1]), ss = pair_rand(cs[i][1]);
        poison(&ss);
        tu_ok(g_cpu->i->channel_rms_scale(g_cpu, ss.cpu, xs.cpu, cs[i][0], cs[i][1]), "cpu");
        tu_ok(g_cuda->i->channel_rms_scale(g_cuda, ss.gpu, xs.gpu, cs[i][0], cs[i][1]), "cuda");
        char what[64];
        snprintf(what, sizeof what, "channel_rms_scale %lld x %lld", (long long)cs[i][0],
                 (long long)cs[i][1]);
        compare(what, &ss, TOL_F32);
        pair_free(&xs); pair_free(&ss);
    }
}

static void test_rope(void **state) {
    (void)state;
    int64_t n_tok = 45, n_head = 3, d = 64;
    pair cs = pair_rand(n_tok * d / 2), sn = pair_rand(n_tok * d / 2);
    for (int mode = 0; mode < 2; mode++) {
        pair x = pair_rand(n_tok * n_head * d);
        tu_ok(g_cpu->i->rope(g_cpu, x.cpu, n_tok, n_head, d, cs.cpu, sn.cpu, (mold_rope_mode)mode), "cpu");
        tu_ok(g_cuda->i->rope(g_cuda, x.gpu, n_tok, n_head, d, cs.gpu, sn.gpu, (mold_rope_mode)mode), "cuda");
        compare(mode ? "rope half" : "rope interleaved", &x, TOL_F32);
        pair_free(&x);
    }
    pair_free(&cs); pair_free(&sn);
}

/* rms_norm_rope on CUDA against the CPU composition (rms_norm, then rope in
 * place), from an x offset by x_off floats; in_place: y is x. */
static void check_norm_rope(int64_t n_tok, int64_t n_head, int64_t d, mold_rope_mode mode,
                            int with_g, int64_t x_off, int in_place) {
    const int64_t n = n_tok * n_head * d;
    pair cs = pair_rand(n_tok * d / 2), sn = pair_rand(n_tok * d / 2), g = pair_rand(d);
    pair x = pair_rand(n + x_off), y = pair_rand(n + x_off);
    const float *gc = with_g ? g.cpu : NULL, *gg = with_g ? g.gpu : NULL;
    pair *out = in_place ? &x : &y;
    if (!in_place) poison(&y);
    tu_ok(g_cpu->i->rms_norm(g_cpu, out->cpu + x_off, x.cpu + x_off, gc, n_tok * n_head, d, 1e-6f),
          "cpu rms_norm");
    tu_ok(g_cpu->i->rope(g_cpu, out->cpu + x_off, n_tok, n_head, d, cs.cpu, sn.cpu, mode),
          "cpu rope");
    tu_ok(g_cuda->i->rms_norm_rope(g_cuda, out->gpu + x_off, x.gpu + x_off, gg, n_tok, n_head, d,
                                   1e-6f, cs.gpu, sn.gpu, mode),
          "cuda rms_norm_rope");
    if (!in_place) { /* the x_off head of y: equal on both sides */
        tu_ok(g_cpu->i->copy(g_cpu, y.cpu, x.cpu, (size_t)x_off * 4), "head");
        tu_ok(g_cuda->i->copy(g_cuda, y.gpu, x.gpu, (size_t)x_off * 4), "head");
    }
    char what[112];
    snprintf(what, sizeof what, "rms_norm_rope %s %lldx%lldx%lld gamma=%d off=%lld%s",
             mode ? "half" : "interleaved", (long long)n_tok, (long long)n_head, (long long)d,
             with_g, (long long)x_off, in_place ? " in place" : "");
    compare(what, out, TOL_F32);
    pair_free(&cs); pair_free(&sn); pair_free(&g); pair_free(&x); pair_free(&y);
}

static void test_rms_norm_rope(void **state) {
    (void)state;
    /* n_tok, n_head, head_dim, mode, gamma, x_off, in place */
    check_norm_rope(45, 3, 64, MOLD_ROPE_INTERLEAVED, 1, 0, 0);
    check_norm_rope(45, 3, 64, MOLD_ROPE_HALF, 1, 0, 0);
    check_norm_rope(13, 24, 128, MOLD_ROPE_INTERLEAVED, 1, 0, 1); /* the DiT's text rows */
    check_norm_rope(7, 5, 34, MOLD_ROPE_INTERLEAVED, 0, 1, 0);    /* 17 pairs, unaligned */
    check_norm_rope(9, 2, 160, MOLD_ROPE_HALF, 1, 3, 1);          /* 80 pairs: 3 per lane */
    check_norm_rope(20, 3, 128, MOLD_ROPE_INTERLEAVED, 0, 0, 0);   /* 128: float4 kernel */
    check_norm_rope(20, 3, 128, MOLD_ROPE_INTERLEAVED, 1, 2, 0);   /* 8-byte aligned: generic */
    check_norm_rope(20, 3, 128, MOLD_ROPE_HALF, 1, 0, 0);          /* half pairs: generic */
    check_norm_rope(6889, 24, 128, MOLD_ROPE_INTERLEAVED, 1, 0, 0); /* 1328^2 image rows */
    float *p = g_cuda->i->alloc(g_cuda, 4096);
    tu_expect_error(g_cuda->i->rms_norm_rope(g_cuda, p, p, NULL, 2, 2, 15, 1e-6f, p, p,
                                             MOLD_ROPE_INTERLEAVED),
                    MOLD_E_INVALID, "even head_dim", "rms_norm_rope with an odd head_dim");
    g_cuda->i->free(g_cuda, p);
}

/* ---- attention ---- */

static void check_attention(int64_t sq, int64_t skv, int64_t hq, int64_t hkv, int64_t d,
                            int mask, int causal, int force_gemm);

static void test_attention(void **state) {
    (void)state;
    /* sq, skv, hq, hkv, d, mask, causal */
    check_attention(77, 77, 4, 4, 64, 0, 0, 0);
    check_attention(130, 200, 2, 2, 128, 1, 0, 0);   /* text padding mask */
    check_attention(50, 70, 8, 2, 128, 0, 1, 0);     /* GQA, causal with offset */
    check_attention(65, 65, 28, 4, 128, 1, 1, 0);    /* text encoder shape, masked + causal */
    check_attention(100, 90, 2, 1, 16, 1, 0, 0);
    check_attention(33, 129, 3, 3, 32, 0, 0, 0);
    check_attention(40, 40, 2, 2, 48, 0, 1, 0);
    check_attention(130, 200, 2, 2, 128, 1, 0, 1);   /* GEMM path, same case */
    check_attention(50, 70, 8, 2, 128, 0, 1, 1);
    check_attention(70, 70, 1, 1, 40, 0, 0, 0);      /* d not a multiple of 16 -> GEMM path */
    check_attention(300, 300, 1, 1, 384, 0, 0, 0);   /* VAE mid attention head dim (wide) */
    check_attention(64, 9000, 1, 1, 192, 0, 0, 0);   /* wide: two key chunks, uneven */
    check_attention(100, 77, 2, 1, 256, 0, 0, 0);    /* wide: GQA, short rows */
    check_attention(100, 90, 1, 1, 384, 1, 0, 0);    /* masked wide head: GEMM path */
    check_attention(300, 300, 1, 1, 384, 0, 0, 1);   /* forced GEMM path, same case */
    check_attention(20, 10, 2, 2, 64, 0, 1, 0);      /* sq > skv causal: first rows see nothing */
    check_attention(20, 10, 2, 2, 64, 0, 1, 1);
    /* flash3: full 64-key tiles without masking (fast path), a tail-only
     * mask (mask 2: the DiT's text padding), several query blocks on the
     * causal diagonal, a negative scale (flash2 takes it) */
    check_attention(300, 333, 2, 2, 128, 0, 0, 0);
    check_attention(200, 389, 3, 3, 128, 2, 0, 0);
    check_attention(300, 300, 4, 1, 128, 2, 1, 0);
    check_attention(257, 320, 2, 2, 64, 0, 1, 0);
    check_attention(150, 200, 2, 2, 128, 2, 0, 2);
    /* the other flash kernels (benchmark variants, kept as fallbacks) */
    for (int v = 1; v <= 5; v++) {
        printf("  -- flash variant %d\n", v);
        mold_cuda_attention_set_variant(v);
        check_attention(130, 200, 2, 2, 128, 1, 0, 0);
        check_attention(65, 65, 28, 4, 128, 1, 1, 0);
        check_attention(100, 90, 2, 1, 16, 1, 0, 0);
        check_attention(20, 10, 2, 2, 64, 0, 1, 0);
        check_attention(300, 300, 4, 1, 128, 2, 1, 0);
        check_attention(300, 333, 2, 2, 128, 0, 0, 0);
        check_attention(200, 389, 3, 3, 128, 2, 0, 0);
        check_attention(50, 70, 8, 2, 128, 0, 1, 0);
        check_attention(20, 10, 2, 2, 128, 0, 1, 0);
        mold_cuda_attention_set_variant(0);
    }
}

/* flash4 (variant 6: wgmma, head dim 128; flash3 where not built for
 * sm_90a): its own test so a lease can tell it from the other kernels. */
static void test_attention_flash4(void **state) {
    (void)state;
    mold_cuda_attention_set_variant(6);
    check_attention(130, 200, 2, 2, 128, 1, 0, 0);
    check_attention(65, 65, 28, 4, 128, 1, 1, 0);
    check_attention(300, 300, 4, 1, 128, 2, 1, 0);
    check_attention(300, 333, 2, 2, 128, 0, 0, 0);
    check_attention(200, 389, 3, 3, 128, 2, 0, 0);
    check_attention(50, 70, 8, 2, 128, 0, 1, 0);
    check_attention(20, 10, 2, 2, 128, 0, 1, 0);
    check_attention(129, 64, 2, 2, 128, 0, 0, 0);
    check_attention(77, 77, 2, 2, 64, 1, 0, 0); /* d 64: flash3 */
    check_attention(150, 200, 2, 2, 128, 2, 0, 2); /* scale < 0: flash2 */
    mold_cuda_attention_set_variant(0);
}

/* The Hopper kernel (variant 7, the default for head dim 128 without a
 * causal mask; flash3 where the build or the card has no sm_90a): partial
 * query and key tiles, fewer keys than one tile, GQA, the DiT's text padding
 * mask, keys not a multiple of 8, several key tiles with masks in the first
 * and the last. */
static void test_attention_hopper(void **state) {
    (void)state;
    mold_cuda_attention_set_variant(7);
    check_attention(130, 200, 2, 2, 128, 1, 0, 0);
    check_attention(300, 333, 2, 2, 128, 0, 0, 0);
    check_attention(200, 389, 3, 3, 128, 2, 0, 0);
    check_attention(129, 64, 2, 2, 128, 0, 0, 0);
    check_attention(64, 37, 2, 2, 128, 1, 0, 0);
    check_attention(256, 256, 4, 1, 128, 2, 0, 0);
    check_attention(1000, 1001, 2, 2, 128, 2, 0, 0);
    check_attention(517, 700, 3, 1, 128, 1, 0, 0);
    check_attention(65, 65, 28, 4, 128, 1, 1, 0);  /* causal: flash3 */
    check_attention(150, 200, 2, 2, 128, 2, 0, 2); /* scale < 0: flash2 */
    mold_cuda_attention_set_variant(9); /* without the warpgroup ping-pong */
    check_attention(1000, 1001, 2, 2, 128, 2, 0, 0);
    check_attention(517, 700, 3, 1, 128, 1, 0, 0);
    mold_cuda_attention_set_variant(8);            /* flash3 forced */
    check_attention(300, 333, 2, 2, 128, 0, 0, 0);
    check_attention(200, 389, 3, 3, 128, 2, 0, 0);
    mold_cuda_attention_set_variant(0);
}

static void check_attention(int64_t sq, int64_t skv, int64_t hq, int64_t hkv, int64_t d,
                            int mask, int causal, int force_gemm) {
    pair q = pair_rand(sq * hq * d), k = pair_rand(skv * hkv * d), v = pair_rand(skv * hkv * d);
    pair o = pair_rand(sq * hq * d);
    float *kv = malloc((size_t)skv * 4);
    assert_non_null(kv);
    /* mask 1: scattered and tail keys excluded; 2: the last 5 keys only */
    for (int64_t j = 0; j < skv; j++)
        kv[j] = ((mask == 1 && j % 7 == 3) || j >= skv - 5) ? 0.0f : 1.0f;
    pair valid = pair_make(kv, skv);
    free(kv);
    poison(&o);
    /* force_gemm 2: the flash path with a negative scale */
    float scale = (force_gemm == 2 ? -1.0f : 1.0f) / sqrtf((float)d);
    tu_ok(g_cpu->i->attention(g_cpu, o.cpu, q.cpu, k.cpu, v.cpu, sq, skv, hq, hkv, d, scale,
                              mask ? valid.cpu : NULL, causal), "cpu attention");
    mold_cuda_attention_force_gemm(force_gemm == 1);
    tu_ok(g_cuda->i->attention(g_cuda, o.gpu, q.gpu, k.gpu, v.gpu, sq, skv, hq, hkv, d, scale,
                               mask ? valid.gpu : NULL, causal), "cuda attention");
    mold_cuda_attention_force_gemm(0);
    char what[128];
    snprintf(what, sizeof what, "attention sq=%lld skv=%lld h=%lld/%lld d=%lld%s%s%s",
             (long long)sq, (long long)skv, (long long)hq, (long long)hkv, (long long)d,
             mask ? (mask == 2 ? " tail-mask" : " mask") : "", causal ? " causal" : "",
             force_gemm == 1 ? " [gemm]" : force_gemm == 2 ? " scale<0" : "");
    compare(what, &o, TOL_BF16);
    pair_free(&q); pair_free(&k); pair_free(&v); pair_free(&o); pair_free(&valid);
}

static void test_attention_errors(void **state) {
    (void)state;
    float *p = g_cuda->i->alloc(g_cuda, 4096);
    tu_expect_error(g_cuda->i->attention(g_cuda, p, p, p, p, 2, 2, 3, 2, 16, 1.0f, NULL, false),
                    MOLD_E_INVALID, "hq % hkv", "attention with hq % hkv != 0");
    g_cuda->i->free(g_cuda, p);
}

/* ---- elementwise ---- */

static void test_elementwise(void **state) {
    (void)state;
    int64_t n = 100003;
    pair a = pair_rand(n), b = pair_rand(n), y = pair_rand(n);
#define RUN2(name, callc, callg)                 \
    do {                                         \
        poison(&y);                              \
        tu_ok(callc, "cpu " name);               \
        tu_ok(callg, "cuda " name);              \
        compare(name, &y, TOL_F32);              \
    } while (0)
    RUN2("silu", g_cpu->i->silu(g_cpu, y.cpu, a.cpu, n), g_cuda->i->silu(g_cuda, y.gpu, a.gpu, n));
    RUN2("gelu_tanh", g_cpu->i->gelu_tanh(g_cpu, y.cpu, a.cpu, n),
         g_cuda->i->gelu_tanh(g_cuda, y.gpu, a.gpu, n));
    RUN2("swiglu", g_cpu->i->swiglu(g_cpu, y.cpu, a.cpu, b.cpu, n),
         g_cuda->i->swiglu(g_cuda, y.gpu, a.gpu, b.gpu, n));
    RUN2("add", g_cpu->i->add(g_cpu, y.cpu, a.cpu, b.cpu, n),
         g_cuda->i->add(g_cuda, y.gpu, a.gpu, b.gpu, n));
    RUN2("axpby", g_cpu->i->axpby(g_cpu, y.cpu, a.cpu, 0.75f, b.cpu, -1.5f, n),
         g_cuda->i->axpby(g_cuda, y.gpu, a.gpu, 0.75f, b.gpu, -1.5f, n));
    RUN2("clamp", g_cpu->i->clamp(g_cpu, y.cpu, a.cpu, -0.5f, 0.25f, n),
         g_cuda->i->clamp(g_cuda, y.gpu, a.gpu, -0.5f, 0.25f, n));
#undef RUN2
    /* gated_add in place on a, with and without a gate; dim 1030 takes the
     * scalar kernel, 1024 the float4 one, 1024 at an offset of 1 the
     * scalar one again (unaligned) */
    const int64_t ga_dims[3] = {1030, 1024, 1024}, ga_off[3] = {0, 0, 1};
    pair g = pair_rand(1030 + 1);
    for (int c = 0; c < 3; c++)
        for (int with_g = 0; with_g < 2; with_g++) {
            const int64_t rows = 97, dim = ga_dims[c], o = ga_off[c]; /* rows * dim + o <= n */
            tu_ok(g_cpu->i->gated_add(g_cpu, a.cpu + o, with_g ? g.cpu + o : NULL, b.cpu + o, rows, dim), "cpu");
            tu_ok(g_cuda->i->gated_add(g_cuda, a.gpu + o, with_g ? g.gpu + o : NULL, b.gpu + o, rows, dim), "cuda");
            char what[64];
            snprintf(what, sizeof what, "gated_add dim %lld off %lld gate %d", (long long)dim,
                     (long long)o, with_g);
            compare(what, &a, TOL_F32);
        }
    /* copy_rows: 40 rows of 100 from stride 300 (offset 7) to stride 150 (offset 11) */
    poison(&y);
    tu_ok(g_cpu->i->copy_rows(g_cpu, y.cpu + 11, 150, a.cpu + 7, 300, 40, 100), "cpu");
    tu_ok(g_cuda->i->copy_rows(g_cuda, y.gpu + 11, 150, a.gpu + 7, 300, 40, 100), "cuda");
    float *got = malloc(n * 4), *ref = malloc(n * 4);
    tu_ok(g_cuda->i->download(g_cuda, got, y.gpu, n * 4), "dl");
    tu_ok(g_cpu->i->download(g_cpu, ref, y.cpu, n * 4), "dl");
    float gc[4000], rc[4000];
    for (int r = 0; r < 40; r++) {
        memcpy(gc + r * 100, got + 11 + r * 150, 400);
        memcpy(rc + r * 100, ref + 11 + r * 150, 400);
    }
    tu_check_close("copy_rows", gc, rc, 4000, TOL_F32); /* source went through gated_add */
    free(got);
    free(ref);
    pair_free(&a); pair_free(&b); pair_free(&y); pair_free(&g);
}

static void test_cfg_combine(void **state) {
    (void)state;
    int64_t n_tok = 300, dim = 64;
    pair c = pair_rand(n_tok * dim), u = pair_rand(n_tok * dim), o = pair_rand(n_tok * dim);
    poison(&o);
    tu_ok(g_cpu->i->cfg_combine(g_cpu, o.cpu, c.cpu, u.cpu, 4.0f, n_tok, dim), "cpu");
    tu_ok(g_cuda->i->cfg_combine(g_cuda, o.gpu, c.gpu, u.gpu, 4.0f, n_tok, dim), "cuda");
    compare("cfg_combine", &o, TOL_F32);
    /* aliasing out == cond */
    tu_ok(g_cpu->i->cfg_combine(g_cpu, c.cpu, c.cpu, u.cpu, 2.5f, n_tok, dim), "cpu");
    tu_ok(g_cuda->i->cfg_combine(g_cuda, c.gpu, c.gpu, u.gpu, 2.5f, n_tok, dim), "cuda");
    compare("cfg_combine in place", &c, TOL_F32);
    pair_free(&c); pair_free(&u); pair_free(&o);
}

static void test_count_nonfinite(void **state) {
    (void)state;
    int64_t n = 1 << 20;
    float *h = rnd(n);
    h[5] = NAN;
    h[777] = INFINITY;
    h[n - 1] = -INFINITY;
    h[123456] = NAN;
    pair p = pair_make(h, n);
    int64_t bad_c = -1, bad_g = -1;
    tu_ok(g_cpu->i->count_nonfinite(g_cpu, p.cpu, n, &bad_c), "cpu");
    tu_ok(g_cuda->i->count_nonfinite(g_cuda, p.gpu, n, &bad_g), "cuda");
    printf("  count_nonfinite: cuda %lld, cpu %lld, expected 4\n", (long long)bad_g, (long long)bad_c);
    assert_int_equal(bad_g, 4);
    assert_int_equal(bad_c, 4);
    free(h);
    pair_free(&p);
}

/* ---- image ops ---- */

static void check_conv(mold_dtype dt, int64_t c_in, int64_t c_out, int64_t h, int64_t w,
                       int64_t k, int64_t pad, int with_bias) {
    wpair wt;
    wpair_make(&wt, dt, c_out, c_in * k * k);
    int64_t ho = h + 2 * pad - k + 1, wo = w + 2 * pad - k + 1;
    pair x = pair_rand(c_in * h * w), y = pair_rand(c_out * ho * wo), b = pair_rand(c_out);
    poison(&y);
    tu_ok(g_cpu->i->conv2d(g_cpu, y.cpu, x.cpu, c_in, h, w, &wt.wc, k, k, pad,
                           with_bias ? b.cpu : NULL), "cpu conv2d");
    tu_ok(g_cuda->i->conv2d(g_cuda, y.gpu, x.gpu, c_in, h, w, &wt.wg, k, k, pad,
                            with_bias ? b.gpu : NULL), "cuda conv2d");
    char what[96];
    snprintf(what, sizeof what, "conv2d %s %lld->%lld %lldx%lld k%lld pad%lld%s", mold_dtype_name(dt),
             (long long)c_in, (long long)c_out, (long long)h, (long long)w, (long long)k,
             (long long)pad, with_bias ? " +bias" : "");
    compare(what, &y, TOL_BF16);
    pair_free(&x); pair_free(&y); pair_free(&b);
    wpair_free(&wt);
}

static void test_conv2d(void **state) {
    (void)state;
    /* 3x3 pad 1 takes the packed implicit GEMM: every cout tile width (48,
     * 64, 32 with padding, 16 with padding; 96 under variant 3), partial
     * channel chunks, partial row/column tiles, f32 / f16 / block-format
     * kernels */
    check_conv(MOLD_BF16, 16, 24, 37, 29, 3, 1, 1);
    check_conv(MOLD_BF16, 96, 96, 19, 70, 3, 1, 1);
    check_conv(MOLD_BF16, 40, 192, 9, 33, 3, 1, 0);
    check_conv(MOLD_BF16, 20, 64, 17, 31, 3, 1, 1);
    check_conv(MOLD_BF16, 48, 3, 21, 40, 3, 1, 1);
    check_conv(MOLD_Q8_0, 32, 40, 11, 13, 3, 1, 1);
    check_conv(MOLD_BF16, 16, 24, 37, 29, 3, 0, 0);
    check_conv(MOLD_BF16, 32, 12, 21, 19, 1, 0, 1);
    check_conv(MOLD_F32, 8, 16, 17, 33, 3, 1, 1);
    check_conv(MOLD_F16, 8, 16, 17, 33, 3, 1, 0);
    mold_cuda_conv_set_variant(1); /* K-contiguous columns, "TN" GEMM */
    check_conv(MOLD_BF16, 16, 24, 37, 29, 3, 1, 1);
    check_conv(MOLD_BF16, 32, 12, 21, 19, 1, 0, 1);
    mold_cuda_conv_set_variant(2); /* im2col [K, P] + GEMM for every conv */
    check_conv(MOLD_BF16, 16, 24, 37, 29, 3, 1, 1);
    mold_cuda_conv_set_variant(3); /* packed implicit GEMM, 96 couts per block */
    check_conv(MOLD_BF16, 96, 96, 19, 70, 3, 1, 1);
    check_conv(MOLD_BF16, 16, 24, 37, 29, 3, 1, 1);
    mold_cuda_conv_set_variant(4); /* the f32-staging implicit GEMM (the previous default) */
    check_conv(MOLD_BF16, 16, 24, 37, 29, 3, 1, 1);
    check_conv(MOLD_BF16, 96, 96, 19, 70, 3, 1, 1);
    check_conv(MOLD_BF16, 40, 192, 9, 33, 3, 1, 0);
    check_conv(MOLD_Q8_0, 32, 40, 11, 13, 3, 1, 1);
    check_conv(MOLD_F32, 8, 16, 17, 33, 3, 1, 1);
    mold_cuda_conv_set_variant(0);
}

static void test_upsample(void **state) {
    (void)state;
    int64_t c = 5, h = 13, w = 17;
    pair x = pair_rand(c * h * w), y = pair_rand(c * 4 * h * w);
    poison(&y);
    tu_ok(g_cpu->i->upsample2x(g_cpu, y.cpu, x.cpu, c, h, w), "cpu");
    tu_ok(g_cuda->i->upsample2x(g_cuda, y.gpu, x.gpu, c, h, w), "cuda");
    compare("upsample2x", &y, 0.0);
    pair_free(&x); pair_free(&y);
}

/* transpose: exact (it only moves values); the tall case needs the grid's
 * z dimension (more than 65535 tiles of rows). */
static void test_transpose(void **state) {
    (void)state;
    const int64_t shapes[][2] = {{1, 1}, {33, 65}, {384, 1000}, {1000, 384}, {27, 5},
                                 {2097200, 2}};
    for (int i = 0; i < 6; i++) {
        int64_t r = shapes[i][0], c = shapes[i][1];
        pair x = pair_rand(r * c), y = pair_rand(r * c);
        poison(&y);
        tu_ok(g_cpu->i->transpose(g_cpu, y.cpu, x.cpu, r, c), "cpu transpose");
        tu_ok(g_cuda->i->transpose(g_cuda, y.gpu, x.gpu, r, c), "cuda transpose");
        char what[64];
        snprintf(what, sizeof what, "transpose %lld x %lld", (long long)r, (long long)c);
        compare(what, &y, 0.0);
        pair_free(&x); pair_free(&y);
    }
    float *p = g_cuda->i->alloc(g_cuda, 4096);
    tu_expect_error(g_cuda->i->transpose(g_cuda, p + 4, p, 8, 8), MOLD_E_INVALID, "overlap",
                    "transpose in place");
    g_cuda->i->free(g_cuda, p);
}

/* conv3x3_fused against the CPU composition of the ops it replaces:
 * U(silu(channel_rms_norm(x, gamma))) -> conv2d -> add. fl: 1 scale, 2
 * gamma (with scale), 4 SiLU, 8 upsample, 16 residual in a separate
 * buffer, 32 residual = y (in place). */
static void check_fused(int64_t c_in, int64_t c_out, int64_t h, int64_t w, int fl) {
    const int up = fl & 8 ? 1 : 0;
    const int64_t H = h << up, W = w << up, hw = h * w, n_out = c_out * H * W;
    wpair wt;
    wpair_make(&wt, MOLD_BF16, c_out, c_in * 9);
    pair x = pair_rand(c_in * hw), g = pair_rand(c_in), b = pair_rand(c_out);
    pair sc = pair_rand(hw), t = pair_rand(c_in * hw), u = pair_rand(c_in * H * W);
    pair y = pair_rand(n_out), res = pair_rand(n_out), tmp = pair_rand(n_out);
    /* both sides get their own factors from channel_rms_scale */
    tu_ok(g_cpu->i->channel_rms_scale(g_cpu, sc.cpu, x.cpu, c_in, hw), "cpu scale");
    tu_ok(g_cuda->i->channel_rms_scale(g_cuda, sc.gpu, x.gpu, c_in, hw), "cuda scale");
    /* CPU: the composition */
    const float *in = x.cpu;
    if (fl & 1) {
        tu_ok(g_cpu->i->channel_rms_norm(g_cpu, t.cpu, x.cpu, fl & 2 ? g.cpu : NULL, c_in, hw),
              "cpu norm");
        in = t.cpu;
    }
    if (fl & 4) {
        tu_ok(g_cpu->i->silu(g_cpu, t.cpu, in, c_in * hw), "cpu silu");
        in = t.cpu;
    }
    if (up) {
        tu_ok(g_cpu->i->upsample2x(g_cpu, u.cpu, in, c_in, h, w), "cpu upsample");
        in = u.cpu;
    }
    const bool in_place = fl & 32;
    float *yc = in_place ? res.cpu : y.cpu;
    tu_ok(g_cpu->i->conv2d(g_cpu, fl & 48 ? tmp.cpu : yc, in, c_in, H, W, &wt.wc, 3, 3, 1, b.cpu),
          "cpu conv2d");
    if (fl & 48) tu_ok(g_cpu->i->add(g_cpu, yc, tmp.cpu, res.cpu, n_out), "cpu add");
    /* CUDA: one op */
    mold_conv_fusion f = {.in_scale = fl & 1 ? sc.gpu : NULL, .in_gamma = fl & 2 ? g.gpu : NULL,
                          .in_silu = (fl & 4) != 0, .upsample2x = up != 0,
                          .residual = fl & 48 ? res.gpu : NULL};
    float *yg = in_place ? res.gpu : y.gpu;
    if (!in_place) poison(&y);
    tu_ok(g_cuda->i->conv3x3_fused(g_cuda, yg, x.gpu, c_in, h, w, &wt.wg, b.gpu, &f),
          "cuda conv3x3_fused");
    char what[128];
    snprintf(what, sizeof what, "conv3x3_fused %lld->%lld %lldx%lld%s%s%s%s%s%s", (long long)c_in,
             (long long)c_out, (long long)h, (long long)w, fl & 1 ? " scale" : "",
             fl & 2 ? " gamma" : "", fl & 4 ? " silu" : "", up ? " up" : "",
             fl & 16 ? " +res" : "", in_place ? " +res=y" : "");
    compare(what, in_place ? &res : &y, TOL_BF16);
    pair_free(&x); pair_free(&g); pair_free(&b); pair_free(&sc); pair_free(&t); pair_free(&u);
    pair_free(&y); pair_free(&res); pair_free(&tmp);
    wpair_free(&wt);
}

static void test_conv3x3_fused(void **state) {
    (void)state;
    check_fused(96, 96, 19, 70, 1 | 2 | 4);       /* norm -> SiLU -> conv (resnet conv1) */
    check_fused(96, 96, 19, 70, 1 | 2 | 4 | 32);  /* + residual in place (conv2) */
    check_fused(40, 64, 17, 31, 1 | 2 | 4 | 16);  /* partial chunk, shortcut residual */
    check_fused(48, 3, 21, 40, 1 | 2 | 4);        /* conv_out: 3 couts in a tile of 16 */
    check_fused(20, 16, 9, 13, 8);                /* nearest x2 + conv (upsampler) */
    check_fused(24, 96, 11, 19, 8 | 16);          /* x2, residual */
    check_fused(16, 24, 13, 9, 4);                /* SiLU alone */
    check_fused(16, 24, 13, 9, 1);                /* scale without gamma */
    check_fused(16, 24, 13, 9, 1 | 2 | 8);        /* norm then x2 (commute) */
    check_fused(32, 40, 12, 12, 0);               /* nothing fused: plain conv */
    check_fused(64, 96, 41, 37, 1 | 2 | 4 | 16);  /* several row and column tiles */
    mold_cuda_conv_set_variant(3);                /* 96 couts per block */
    check_fused(96, 96, 19, 70, 1 | 2 | 4 | 32);
    mold_cuda_conv_set_variant(0);
    /* NULL fusion = conv2d */
    wpair wt;
    wpair_make(&wt, MOLD_BF16, 8, 16 * 9);
    pair x = pair_rand(16 * 10 * 11), y = pair_rand(8 * 10 * 11), b = pair_rand(8);
    poison(&y);
    tu_ok(g_cpu->i->conv2d(g_cpu, y.cpu, x.cpu, 16, 10, 11, &wt.wc, 3, 3, 1, b.cpu), "cpu");
    tu_ok(g_cuda->i->conv3x3_fused(g_cuda, y.gpu, x.gpu, 16, 10, 11, &wt.wg, b.gpu, NULL), "cuda");
    compare("conv3x3_fused NULL fusion", &y, TOL_BF16);
    tu_expect_error(g_cuda->i->conv3x3_fused(g_cuda, x.gpu + 5, x.gpu, 16, 10, 11, &wt.wg, b.gpu,
                                             NULL),
                    MOLD_E_INVALID, "overlaps", "conv3x3_fused y over x");
    tu_expect_error(g_cuda->i->conv3x3_fused(g_cuda, y.gpu, x.gpu, 15, 10, 11, &wt.wg, b.gpu,
                                             NULL),
                    MOLD_E_INVALID, "columns", "conv3x3_fused wrong c_in");
    pair_free(&x); pair_free(&y); pair_free(&b);
    wpair_free(&wt);
}

#endif /* MOLD_HAVE_CUDA */

/* ---- main ---- */

int main(void) {
#ifndef MOLD_HAVE_CUDA
    printf("SKIP: test_cuda_ops: built without CUDA\n");
    return 0;
#else
    mold_status st = mold_backend_cuda_create(0, &g_cuda);
    if (st == MOLD_E_UNSUPPORTED && strstr(mold_error_message(), "no CUDA device")) {
        printf("SKIP: test_cuda_ops: %s\n", mold_error_message());
        return 0;
    }
    if (st != MOLD_OK) {
        printf("FAIL: mold_backend_cuda_create: %s\n", mold_error_message());
        return 1;
    }
    st = mold_backend_cpu_create(0, &g_cpu);
    if (st != MOLD_OK) {
        printf("FAIL: mold_backend_cpu_create: %s\n", mold_error_message());
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_matmul_quant),
        cmocka_unit_test(test_matmul_small),
        cmocka_unit_test(test_mlp_gelu),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_weight_errors),
        cmocka_unit_test(test_upload_f32),
        cmocka_unit_test(test_weight_hold),
        cmocka_unit_test(test_norms),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_rms_norm_rope),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_flash4),
        cmocka_unit_test(test_attention_hopper),
        cmocka_unit_test(test_attention_errors),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_cfg_combine),
        cmocka_unit_test(test_count_nonfinite),
        cmocka_unit_test(test_conv2d),
        cmocka_unit_test(test_upsample),
        cmocka_unit_test(test_transpose),
        cmocka_unit_test(test_conv3x3_fused),
    };
    /* MOLD_CUDA_TEST_FILTER=test_attention runs a subset (compute-sanitizer
     * racecheck in scripts/gpu-check.sh). */
    const char *filter = getenv("MOLD_CUDA_TEST_FILTER");
    if (filter && *filter) cmocka_set_test_filter(filter);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    g_cuda->i->destroy(g_cuda);
    g_cpu->i->destroy(g_cpu);
    return rc;
#endif
}
