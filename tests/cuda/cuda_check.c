/*
 * cuda_check.c — CUDA-vs-CPU comparisons and timings at real Qwen-Image
 * sizes (run by scripts/gpu-check.sh on a GPU machine; not a ctest: it needs
 * a GPU and a few minutes of CPU for the references; --fast: only the
 * attention and conv rows, for a short lease; --vae: the VAE decoder's ops
 * at 1328 x 1328, fused and composed; --fuse: the fused MLP and QK norm +
 * RoPE beside the plain ops, and f32-weight matmuls on the exact and the
 * bf16 path across m).
 *
 * For each op: the CUDA op runs on the full real-size problem and is timed
 * (median over batches of repetitions, host clock around backend syncs);
 * the CPU backend computes a reference for all of it or, where that would
 * take minutes, for an exact sub-problem (a block of rows for matmul, two
 * heads for attention, a corner crop for conv) that is compared with the
 * matching part of the CUDA output. Prints one table row per op:
 *   op | shape | cuda ms | rate | rel err | tol | ok
 * Exits 1 if any comparison fails (NaN never passes), 0 otherwise.
 *
 * Sizes (Qwen-Image-2512 at 1328 x 1328): 6921 image tokens + 32 text
 * tokens, hidden 3072, FFN 12288, 24 heads x 128; VAE decoder 96 channels at
 * full resolution.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/ops.h"
#include "base/dtype.h"
#include "base/quant.h"

/* Internal benchmark hooks of the CUDA backend (matmul.cu, attention.cu). */
mold_status mold_cuda_bench_gemm(mold_backend *be, int64_t m, int64_t n, int64_t k, int iters,
                                 double *median_ms);
void mold_cuda_attention_force_gemm(int on);
void mold_cuda_attention_set_variant(int v);
void mold_cuda_conv_set_variant(int v);
mold_status mold_cuda_bench_h2d(mold_backend *be, size_t bytes, double *pinned_gbps,
                                double *pageable_gbps);
void mold_cuda_matmul_set_f32_bf16_min_m(int64_t m);

static mold_backend *G, *C; /* CUDA, CPU */
static int g_failed;

/* ---- helpers ---- */

static uint64_t g_rng = 0x853c49e6748fea9bull;

static float frand(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) * (2.0 / 16777216.0)) - 1.0f;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(mold_status st, const char *what) {
    if (st == MOLD_OK) return;
    fprintf(stderr, "FATAL: %s: %s\n", what, mold_error_message());
    exit(2);
}

static float *host_rand(int64_t n) {
    float *p = malloc((size_t)n * 4);
    if (!p) die(MOLD_E_NOMEM, "malloc");
    for (int64_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

static float *dev_upload(mold_backend *be, const float *h, int64_t n) {
    float *d = be->i->alloc(be, (size_t)n * 4);
    if (!d) die(MOLD_E_NOMEM, "alloc");
    die(be->i->upload(be, d, h, (size_t)n * 4), "upload");
    return d;
}

static float *dev_download(mold_backend *be, const float *d, int64_t n) {
    float *h = malloc((size_t)n * 4);
    die(be->i->download(be, h, d, (size_t)n * 4), "download");
    return h;
}

/* ||a - b|| / ||b||; NaN in a -> NaN. */
static double rel_err(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
        if (!isfinite(a[i])) return NAN;
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* A timed op: a callback run `reps` times per batch. */
typedef void (*op_fn)(void *ctx);

static double time_ms(op_fn fn, void *ctx, int reps) {
    fn(ctx); /* warm-up: plans, scratch growth */
    die(G->i->sync(G), "sync");
    double best[5];
    for (int b = 0; b < 5; b++) {
        double t0 = now_s();
        for (int r = 0; r < reps; r++) fn(ctx);
        die(G->i->sync(G), "sync");
        best[b] = (now_s() - t0) * 1e3 / reps;
    }
    for (int i = 1; i < 5; i++) /* median of 5 */
        for (int j = i; j > 0 && best[j] < best[j - 1]; j--) {
            double t = best[j];
            best[j] = best[j - 1];
            best[j - 1] = t;
        }
    return best[2];
}

static void row(const char *op, const char *shape, double ms, const char *rate, double rel,
                double tol) {
    int ok = !(rel > tol) && !isnan(rel);
    if (rel < 0) ok = 1; /* no comparison for this row */
    if (!ok) g_failed = 1;
    char relbuf[32];
    if (rel < 0) snprintf(relbuf, sizeof relbuf, "-");
    else snprintf(relbuf, sizeof relbuf, "%.2e", rel);
    printf("| %-22s | %-34s | %9.3f | %-20s | %9s | %7.0e | %-4s |\n", op, shape, ms, rate,
           relbuf, tol, rel < 0 ? "-" : (ok ? "ok" : "FAIL"));
    fflush(stdout);
}

/* Weight [n_out, n_in] of dtype dt from random values, on both backends. */
typedef struct wboth {
    void *data;
    mold_tensor t;
    mold_weight wg, wc;
} wboth;

static void wboth_make(wboth *w, mold_dtype dt, int64_t n_out, int64_t n_in, int on_cpu,
                       double *upload_ms) {
    uint64_t row_bytes = 0;
    die(mold_dtype_row_bytes(dt, (uint64_t)n_in, &row_bytes), "row bytes");
    w->data = malloc(row_bytes * n_out);
    float *tmp = malloc((size_t)n_in * 4);
    for (int64_t r = 0; r < n_out; r++) {
        for (int64_t j = 0; j < n_in; j++) tmp[j] = frand() * 0.05f;
        uint8_t *dst = (uint8_t *)w->data + r * row_bytes;
        if (dt == MOLD_BF16)
            for (int64_t j = 0; j < n_in; j++) ((uint16_t *)dst)[j] = mold_f32_to_bf16(tmp[j]);
        else if (dt == MOLD_F32)
            memcpy(dst, tmp, (size_t)n_in * 4);
        else
            die(mold_quantize(dt, tmp, dst, n_in), "quantize");
    }
    free(tmp);
    memset(&w->t, 0, sizeof w->t);
    w->t.name = "bench.weight";
    w->t.dtype = dt;
    w->t.n_dims = 2;
    w->t.shape[0] = n_out;
    w->t.shape[1] = n_in;
    w->t.data = w->data;
    w->t.n_bytes = row_bytes * n_out;
    double t0 = now_s();
    die(G->i->weight_upload(G, &w->t, n_out, n_in, &w->wg), "cuda weight_upload");
    if (upload_ms) *upload_ms = (now_s() - t0) * 1e3;
    memset(&w->wc, 0, sizeof w->wc);
    if (on_cpu) die(C->i->weight_upload(C, &w->t, n_out, n_in, &w->wc), "cpu weight_upload");
}

static void wboth_free(wboth *w) {
    G->i->weight_free(G, &w->wg);
    if (w->wc.data) C->i->weight_free(C, &w->wc);
    free(w->data);
}

/* ---- matmul ---- */

typedef struct mm_ctx {
    float *y, *x, *b;
    int64_t m;
    mold_weight *w;
} mm_ctx;

static void mm_run(void *p) {
    mm_ctx *c = p;
    die(G->i->matmul(G, c->y, c->x, c->m, c->w, c->b), "cuda matmul");
}

/* y[m, n_out] = x W^T + b on CUDA (timed); CPU reference for the first
 * `m_ref` rows. */
static void check_matmul(mold_dtype dt, int64_t m, int64_t n_in, int64_t n_out, int64_t m_ref) {
    wboth w;
    wboth_make(&w, dt, n_out, n_in, 1, NULL);
    float *xh = host_rand(m * n_in), *bh = host_rand(n_out);
    float *xg = dev_upload(G, xh, m * n_in), *bg = dev_upload(G, bh, n_out);
    float *yg = G->i->alloc(G, (size_t)m * n_out * 4);
    mm_ctx ctx = {yg, xg, bg, m, &w.wg};
    double ms = time_ms(mm_run, &ctx, 5);
    float *yh = dev_download(G, yg, m_ref * n_out);
    float *xc = dev_upload(C, xh, m_ref * n_in), *bc = dev_upload(C, bh, n_out);
    float *yc = C->i->alloc(C, (size_t)m_ref * n_out * 4);
    die(C->i->matmul(C, yc, xc, m_ref, &w.wc, bc), "cpu matmul");
    float *yr = dev_download(C, yc, m_ref * n_out);
    char shape[64], rate[32];
    snprintf(shape, sizeof shape, "%lldx%lld . %lldx%lld %s", (long long)m, (long long)n_in,
             (long long)n_in, (long long)n_out, mold_dtype_name(dt));
    snprintf(rate, sizeof rate, "%.0f TFLOP/s", 2.0 * m * n_in * n_out / (ms * 1e-3) / 1e12);
    row("matmul", shape, ms, rate, rel_err(yh, yr, m_ref * n_out), 1e-2);
    free(xh); free(bh); free(yh); free(yr);
    G->i->free(G, xg); G->i->free(G, bg); G->i->free(G, yg);
    C->i->free(C, xc); C->i->free(C, bc); C->i->free(C, yc);
    wboth_free(&w);
}

/* f32 weight [n_out, n_in] at m rows, timed on the exact f32 GEMM and on the
 * bf16 path (rounding x and W per call); CPU reference for 64 rows. */
static void check_matmul_f32(int64_t m, int64_t n_in, int64_t n_out) {
    wboth w;
    wboth_make(&w, MOLD_F32, n_out, n_in, 1, NULL);
    int64_t m_ref = m < 64 ? m : 64;
    float *xh = host_rand(m * n_in), *bh = host_rand(n_out);
    float *xg = dev_upload(G, xh, m * n_in), *bg = dev_upload(G, bh, n_out);
    float *yg = G->i->alloc(G, (size_t)m * n_out * 4);
    float *xc = dev_upload(C, xh, m_ref * n_in), *bc = dev_upload(C, bh, n_out);
    float *yc = C->i->alloc(C, (size_t)m_ref * n_out * 4);
    die(C->i->matmul(C, yc, xc, m_ref, &w.wc, bc), "cpu matmul");
    float *yr = dev_download(C, yc, m_ref * n_out);
    mm_ctx ctx = {yg, xg, bg, m, &w.wg};
    for (int path = 0; path < 2; path++) {
        mold_cuda_matmul_set_f32_bf16_min_m(path ? 1 : INT64_MAX);
        double ms = time_ms(mm_run, &ctx, 10);
        float *yh = dev_download(G, yg, m_ref * n_out);
        char shape[64], rate[32];
        snprintf(shape, sizeof shape, "%lldx%lld . %lldx%lld f32 [%s]", (long long)m,
                 (long long)n_in, (long long)n_in, (long long)n_out, path ? "bf16" : "exact");
        snprintf(rate, sizeof rate, "%.1f TFLOP/s", 2.0 * m * n_in * n_out / (ms * 1e-3) / 1e12);
        row("matmul f32 weight", shape, ms, rate, rel_err(yh, yr, m_ref * n_out),
            path ? 1e-2 : 1e-5);
        free(yh);
    }
    mold_cuda_matmul_set_f32_bf16_min_m(0);
    free(xh); free(bh); free(yr);
    G->i->free(G, xg); G->i->free(G, bg); G->i->free(G, yg);
    C->i->free(C, xc); C->i->free(C, bc); C->i->free(C, yc);
    wboth_free(&w);
}

/* ---- fused MLP ---- */

typedef struct mlp_ctx {
    float *y, *x, *h, *b1, *b2;
    int64_t m, f;
    mold_weight *w1, *w2;
    int fused;
} mlp_ctx;

static void mlp_run(void *p) {
    mlp_ctx *c = p;
    if (c->fused) {
        die(G->i->mlp_gelu(G, c->y, c->x, c->m, c->w1, c->b1, c->w2, c->b2, c->h), "mlp_gelu");
        return;
    }
    die(G->i->matmul(G, c->h, c->x, c->m, c->w1, c->b1), "fc1");
    die(G->i->gelu_tanh(G, c->h, c->h, c->m * c->f), "gelu");
    die(G->i->matmul(G, c->y, c->h, c->m, c->w2, c->b2), "fc2");
}

/* The DiT MLP D -> F -> D on m rows, bf16 weights: the three plain ops and
 * the fused op, timed; CPU reference (composition) for 64 rows. */
static void check_mlp(int64_t m, int64_t d, int64_t f) {
    wboth w1, w2;
    wboth_make(&w1, MOLD_BF16, f, d, 1, NULL);
    wboth_make(&w2, MOLD_BF16, d, f, 1, NULL);
    const int64_t m_ref = 64;
    float *xh = host_rand(m * d), *b1h = host_rand(f), *b2h = host_rand(d);
    mlp_ctx g = {G->i->alloc(G, (size_t)m * d * 4), dev_upload(G, xh, m * d),
                 G->i->alloc(G, (size_t)m * f * 4), dev_upload(G, b1h, f), dev_upload(G, b2h, d),
                 m, f, &w1.wg, &w2.wg, 0};
    float *xc = dev_upload(C, xh, m_ref * d), *hc = C->i->alloc(C, (size_t)m_ref * f * 4);
    float *b1c = dev_upload(C, b1h, f), *b2c = dev_upload(C, b2h, d);
    float *yc = C->i->alloc(C, (size_t)m_ref * d * 4);
    die(C->i->matmul(C, hc, xc, m_ref, &w1.wc, b1c), "cpu fc1");
    die(C->i->gelu_tanh(C, hc, hc, m_ref * f), "cpu gelu");
    die(C->i->matmul(C, yc, hc, m_ref, &w2.wc, b2c), "cpu fc2");
    float *yr = dev_download(C, yc, m_ref * d);
    for (int fused = 0; fused < 2; fused++) {
        g.fused = fused;
        double ms = time_ms(mlp_run, &g, 5);
        float *yh = dev_download(G, g.y, m_ref * d);
        char shape[64], rate[32];
        snprintf(shape, sizeof shape, "%lld x %lld->%lld->%lld bf16 [%s]", (long long)m,
                 (long long)d, (long long)f, (long long)d, fused ? "fused" : "3 ops");
        snprintf(rate, sizeof rate, "%.0f TFLOP/s", 4.0 * m * d * f / (ms * 1e-3) / 1e12);
        row("mlp_gelu", shape, ms, rate, rel_err(yh, yr, m_ref * d), 1e-2);
        free(yh);
    }
    free(xh); free(b1h); free(b2h); free(yr);
    G->i->free(G, g.y); G->i->free(G, g.x); G->i->free(G, g.h); G->i->free(G, g.b1);
    G->i->free(G, g.b2);
    C->i->free(C, xc); C->i->free(C, hc); C->i->free(C, b1c); C->i->free(C, b2c);
    C->i->free(C, yc);
    wboth_free(&w1);
    wboth_free(&w2);
}

/* ---- attention ---- */

typedef struct at_ctx {
    float *o, *q, *k, *v, *valid;
    int64_t s, h, d;
} at_ctx;

static void at_run(void *p) {
    at_ctx *c = p;
    die(G->i->attention(G, c->o, c->q, c->k, c->v, c->s, c->s, c->h, c->h, c->d,
                        1.0f / sqrtf((float)c->d), c->valid, false), "cuda attention");
}

/* Joint attention over s tokens (the last n_pad keys masked out like text
 * padding); CPU reference on two of the heads. */
static const char *const FA_VARIANTS[] = {"default", "flash1 4w x16", "flash2 8w x32",
                                          "flash2 4w x16", "flash2 4w x32 k32",
                                          "flash3 8w x32 k64", "flash4 wgmma 2wg k64",
                                          "hopper tma+wgmma k128", "flash3 4w x32 k64",
                                          "hopper no ping-pong"};

static void check_attention(int64_t s, int64_t h, int64_t d, int64_t n_pad, int gemm,
                            int variant) {
    int64_t n = s * h * d;
    float *qh = host_rand(n), *kh = host_rand(n), *vh = host_rand(n);
    float *valid = malloc((size_t)s * 4);
    for (int64_t j = 0; j < s; j++) valid[j] = j >= s - n_pad ? 0.0f : 1.0f;
    at_ctx c = {G->i->alloc(G, (size_t)n * 4), dev_upload(G, qh, n), dev_upload(G, kh, n),
                dev_upload(G, vh, n), dev_upload(G, valid, s), s, h, d};
    mold_cuda_attention_force_gemm(gemm);
    mold_cuda_attention_set_variant(variant);
    double ms = time_ms(at_run, &c, 3);
    mold_cuda_attention_force_gemm(0);
    mold_cuda_attention_set_variant(0);
    float *og = dev_download(G, c.o, n);
    /* two heads (0 and h-1) as a 2-head problem on the CPU */
    int64_t hs[2] = {0, h - 1}, n2 = s * 2 * d;
    float *q2 = malloc(n2 * 4), *k2 = malloc(n2 * 4), *v2 = malloc(n2 * 4), *g2 = malloc(n2 * 4);
    for (int64_t t = 0; t < s; t++)
        for (int i = 0; i < 2; i++) {
            size_t src = ((size_t)t * h + hs[i]) * d, dst = ((size_t)t * 2 + i) * d;
            memcpy(q2 + dst, qh + src, d * 4);
            memcpy(k2 + dst, kh + src, d * 4);
            memcpy(v2 + dst, vh + src, d * 4);
            memcpy(g2 + dst, og + src, d * 4);
        }
    float *qc = dev_upload(C, q2, n2), *kc = dev_upload(C, k2, n2), *vc = dev_upload(C, v2, n2);
    float *vd = dev_upload(C, valid, s), *oc = C->i->alloc(C, n2 * 4);
    die(C->i->attention(C, oc, qc, kc, vc, s, s, 2, 2, d, 1.0f / sqrtf((float)d), vd, false),
        "cpu attention");
    float *ref = dev_download(C, oc, n2);
    char shape[64], rate[32];
    snprintf(shape, sizeof shape, "S=%lld %lldx%lld pad %lld [%s]", (long long)s, (long long)h,
             (long long)d, (long long)n_pad, gemm ? "gemm" : FA_VARIANTS[variant]);
    snprintf(rate, sizeof rate, "%.0f TFLOP/s", 4.0 * s * s * d * h / (ms * 1e-3) / 1e12);
    row("attention", shape, ms, rate, rel_err(g2, ref, n2), 1e-2);
    free(qh); free(kh); free(vh); free(valid); free(og);
    free(q2); free(k2); free(v2); free(g2); free(ref);
    G->i->free(G, c.o); G->i->free(G, c.q); G->i->free(G, c.k); G->i->free(G, c.v);
    G->i->free(G, c.valid);
    C->i->free(C, qc); C->i->free(C, kc); C->i->free(C, vc); C->i->free(C, vd); C->i->free(C, oc);
}

/* ---- conv ---- */

typedef struct cv_ctx {
    float *y, *x, *b;
    int64_t c, h, w;
    mold_weight *wt;
} cv_ctx;

static void cv_run(void *p) {
    cv_ctx *c = p;
    die(G->i->conv2d(G, c->y, c->x, c->c, c->h, c->w, c->wt, 3, 3, 1, c->b), "cuda conv2d");
}

/* 3x3 pad-1 conv c -> c at h x w; CPU on the top-left crop (rows/cols
 * 0..crop-2 of the output only depend on the crop's input). */
static void check_conv(int64_t c, int64_t h, int64_t w, int64_t crop, int variant) {
    wboth wt;
    wboth_make(&wt, MOLD_BF16, c, c * 9, 1, NULL);
    float *xh = host_rand(c * h * w), *bh = host_rand(c);
    cv_ctx ctx = {G->i->alloc(G, (size_t)c * h * w * 4), dev_upload(G, xh, c * h * w),
                  dev_upload(G, bh, c), c, h, w, &wt.wg};
    mold_cuda_conv_set_variant(variant);
    double ms = time_ms(cv_run, &ctx, 3);
    mold_cuda_conv_set_variant(0);
    float *yg = dev_download(G, ctx.y, c * h * w);
    float *xcrop = malloc((size_t)c * crop * crop * 4);
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t r = 0; r < crop; r++)
            memcpy(xcrop + (ch * crop + r) * crop, xh + (ch * h + r) * w, crop * 4);
    float *xc = dev_upload(C, xcrop, c * crop * crop), *bc = dev_upload(C, bh, c);
    float *yc = C->i->alloc(C, (size_t)c * crop * crop * 4);
    die(C->i->conv2d(C, yc, xc, c, crop, crop, &wt.wc, 3, 3, 1, bc), "cpu conv2d");
    float *yr = dev_download(C, yc, c * crop * crop);
    int64_t inner = crop - 1, ni = c * inner * inner;
    float *a = malloc(ni * 4), *b = malloc(ni * 4);
    for (int64_t ch = 0; ch < c; ch++)
        for (int64_t r = 0; r < inner; r++) {
            memcpy(a + (ch * inner + r) * inner, yg + (ch * h + r) * w, inner * 4);
            memcpy(b + (ch * inner + r) * inner, yr + (ch * crop + r) * crop, inner * 4);
        }
    char shape[64], rate[48];
    static const char *const names[] = {"packed", "im2col TN", "im2col NN", "packed nb96",
                                        "igemm f32"};
    snprintf(shape, sizeof shape, "%lld->%lld 3x3 %lldx%lld [%s]", (long long)c, (long long)c,
             (long long)h, (long long)w, names[variant]);
    snprintf(rate, sizeof rate, "%.0f TFLOP/s %.0f Mpx/s", 2.0 * c * c * 9 * h * w / (ms * 1e-3) / 1e12,
             h * w / (ms * 1e-3) / 1e6);
    row("conv2d", shape, ms, rate, rel_err(a, b, ni), 1e-2);
    free(xh); free(bh); free(yg); free(xcrop); free(yr); free(a); free(b);
    G->i->free(G, ctx.y); G->i->free(G, ctx.x); G->i->free(G, ctx.b);
    C->i->free(C, xc); C->i->free(C, bc); C->i->free(C, yc);
    wboth_free(&wt);
}

/* ---- memory-bound ops at DiT sizes, compared in full ---- */

typedef struct ew_ctx {
    int kind;
    float *y, *a, *b, *c;
    int64_t rows, dim;
} ew_ctx;

static void ew_op(mold_backend *be, ew_ctx *c) {
    switch (c->kind) {
    case 0: die(be->i->layer_norm_modulate(be, c->y, c->a, c->b, c->c, c->rows, c->dim, 1e-6f), "lnm"); break;
    case 1: die(be->i->gelu_tanh(be, c->y, c->a, c->rows * c->dim), "gelu"); break;
    case 2: die(be->i->gated_add(be, c->y, c->b, c->a, c->rows, c->dim), "gated_add"); break;
    case 3: die(be->i->rms_norm(be, c->y, c->a, c->b, c->rows, c->dim, 1e-6f), "rms"); break;
    case 4: die(be->i->rope(be, c->y, c->rows, 24, 128, c->b, c->c, MOLD_ROPE_INTERLEAVED), "rope"); break;
    case 5: /* per-head QK norm then RoPE: fused where the backend has it */
        if (be->i->rms_norm_rope) {
            die(be->i->rms_norm_rope(be, c->y, c->a, c->b, c->rows, 24, 128, 1e-6f, c->b, c->c,
                                     MOLD_ROPE_INTERLEAVED), "rms_norm_rope");
        } else {
            die(be->i->rms_norm(be, c->y, c->a, c->b, c->rows * 24, 128, 1e-6f), "rms");
            die(be->i->rope(be, c->y, c->rows, 24, 128, c->b, c->c, MOLD_ROPE_INTERLEAVED), "rope");
        }
        break;
    default: break;
    }
}

static void ew_run(void *p) { ew_op(G, p); }

static void check_ew(int kind, const char *name, int64_t rows, int64_t dim, double bytes_per_el) {
    int64_t n = rows * dim, nv = kind >= 4 ? rows * 64 : dim; /* rope: [rows, 64] tables */
    float *ah = host_rand(n), *yh0 = host_rand(n), *bh = host_rand(nv), *ch = host_rand(nv);
    ew_ctx g = {kind, dev_upload(G, yh0, n), dev_upload(G, ah, n), dev_upload(G, bh, nv),
                dev_upload(G, ch, nv), rows, dim};
    ew_ctx c = {kind, dev_upload(C, yh0, n), dev_upload(C, ah, n), dev_upload(C, bh, nv),
                dev_upload(C, ch, nv), rows, dim};
    ew_op(G, &g); /* one application for the comparison */
    ew_op(C, &c);
    float *yg = dev_download(G, g.y, n), *yc = dev_download(C, c.y, n);
    double rel = rel_err(yg, yc, n);
    double ms = time_ms(ew_run, &g, 20);
    char shape[64], rate[32];
    snprintf(shape, sizeof shape, "%lldx%lld", (long long)rows, (long long)dim);
    snprintf(rate, sizeof rate, "%.0f GB/s", bytes_per_el * n / (ms * 1e-3) / 1e9);
    row(name, shape, ms, rate, rel, 1e-5);
    free(ah); free(yh0); free(bh); free(ch); free(yg); free(yc);
    G->i->free(G, g.y); G->i->free(G, g.a); G->i->free(G, g.b); G->i->free(G, g.c);
    C->i->free(C, c.y); C->i->free(C, c.a); C->i->free(C, c.b); C->i->free(C, c.c);
}

/* ---- VAE decoder ops (--vae) ---- */

/* The mid-block attention: one head of 384 over the 166 x 166 latent's
 * tokens, the wide path (attention_wide.cu) and the GEMM path; the CPU
 * reference covers the first 64 query rows (exact sub-problem). */
static void check_attention_vae(int64_t s, int64_t d, int gemm) {
    int64_t n = s * d, nq = 64;
    float *qh = host_rand(n), *kh = host_rand(n), *vh = host_rand(n);
    for (int64_t i = 0; i < n; i++) qh[i] *= 3.0f; /* scores of a few units, not ~0 */
    at_ctx c = {G->i->alloc(G, (size_t)n * 4), dev_upload(G, qh, n), dev_upload(G, kh, n),
                dev_upload(G, vh, n), NULL, s, 1, d};
    mold_cuda_attention_force_gemm(gemm);
    double ms = time_ms(at_run, &c, 2);
    mold_cuda_attention_force_gemm(0);
    float *og = dev_download(G, c.o, nq * d);
    float *qc = dev_upload(C, qh, nq * d), *kc = dev_upload(C, kh, n), *vc = dev_upload(C, vh, n);
    float *oc = C->i->alloc(C, (size_t)nq * d * 4);
    die(C->i->attention(C, oc, qc, kc, vc, nq, s, 1, 1, d, 1.0f / sqrtf((float)d), NULL, false),
        "cpu attention");
    float *ref = dev_download(C, oc, nq * d);
    char shape[64], rate[32];
    snprintf(shape, sizeof shape, "S=%lld 1x%lld [%s]", (long long)s, (long long)d,
             gemm ? "gemm" : "wide");
    snprintf(rate, sizeof rate, "%.0f TFLOP/s", 4.0 * s * s * d / (ms * 1e-3) / 1e12);
    row("attention", shape, ms, rate, rel_err(og, ref, nq * d), 1e-2);
    free(qh); free(kh); free(vh); free(og); free(ref);
    G->i->free(G, c.o); G->i->free(G, c.q); G->i->free(G, c.k); G->i->free(G, c.v);
    C->i->free(C, qc); C->i->free(C, kc); C->i->free(C, vc); C->i->free(C, oc);
}

typedef struct vf_ctx {
    float *y, *x, *b, *sc, *g, *res, *t1;
    int64_t ci, co, h, w;
    mold_weight *wt;
    int fl; /* 1 norm + SiLU, 2 upsample, 4 residual = y; 8 composed instead of fused */
} vf_ctx;

/* One fused op (or its composition: the ops the VAE ran before the fusion). */
static void vf_run(void *p) {
    vf_ctx *c = p;
    int64_t hw = c->h * c->w, up = c->fl & 2 ? 2 : 1, H = c->h * up, W = c->w * up;
    if (c->fl & 8) { /* t1: the map the conv reads, then the conv output before the add */
        const float *in = c->x;
        float *conv_out = c->fl & 4 ? c->t1 + c->ci * H * W : c->y;
        if (c->fl & 1) {
            die(G->i->channel_rms_norm(G, c->t1, c->x, c->g, c->ci, hw), "norm");
            die(G->i->silu(G, c->t1, c->t1, c->ci * hw), "silu");
            in = c->t1;
        }
        if (c->fl & 2) {
            die(G->i->upsample2x(G, c->t1, c->x, c->ci, c->h, c->w), "upsample");
            in = c->t1;
        }
        die(G->i->conv2d(G, conv_out, in, c->ci, H, W, c->wt, 3, 3, 1, c->b), "conv2d");
        if (c->fl & 4) die(G->i->add(G, c->res, c->res, conv_out, c->co * H * W), "add");
        return;
    }
    if (c->fl & 1) die(G->i->channel_rms_scale(G, c->sc, c->x, c->ci, hw), "scale");
    mold_conv_fusion f = {.in_scale = c->fl & 1 ? c->sc : NULL, .in_gamma = c->g,
                          .in_silu = (c->fl & 1) != 0, .upsample2x = (c->fl & 2) != 0,
                          .residual = c->fl & 4 ? c->res : NULL};
    die(G->i->conv3x3_fused(G, c->fl & 4 ? c->res : c->y, c->x, c->ci, c->h, c->w, c->wt, c->b,
                            &f), "conv3x3_fused");
}

/* A VAE conv step ci -> co at h x w (x2 when fl & 2) timed fused and
 * composed; the fused output is compared with the composed one (both on
 * the card: the composition's ops are each checked against the CPU in
 * test_cuda_ops). */
static void check_vae_conv(int64_t ci, int64_t co, int64_t h, int64_t w, int fl) {
    int64_t up = fl & 2 ? 2 : 1, hw = h * w, n_out = co * hw * up * up;
    wboth wt;
    wboth_make(&wt, MOLD_BF16, co, ci * 9, 0, NULL);
    float *xh = host_rand(ci * hw), *bh = host_rand(co), *gh = host_rand(ci), *rh = host_rand(n_out);
    vf_ctx c = {G->i->alloc(G, (size_t)n_out * 4), dev_upload(G, xh, ci * hw), dev_upload(G, bh, co),
                G->i->alloc(G, (size_t)hw * 4), dev_upload(G, gh, ci), dev_upload(G, rh, n_out),
                G->i->alloc(G, (size_t)(ci + co) * hw * up * up * 4), ci, co, h, w, &wt.wg, fl};
    double ms_f = time_ms(vf_run, &c, 3);
    /* one clean application of each for the comparison (residual re-uploaded) */
    die(G->i->upload(G, c.res, rh, (size_t)n_out * 4), "upload");
    vf_run(&c);
    float *a = dev_download(G, fl & 4 ? c.res : c.y, n_out);
    c.fl = fl | 8;
    double ms_c = time_ms(vf_run, &c, 3);
    die(G->i->upload(G, c.res, rh, (size_t)n_out * 4), "upload");
    vf_run(&c);
    float *b = dev_download(G, fl & 4 ? c.res : c.y, n_out);
    char shape[80], rate[48];
    snprintf(shape, sizeof shape, "%lld->%lld %lldx%lld%s%s%s", (long long)ci, (long long)co,
             (long long)(h * up), (long long)(w * up), fl & 1 ? " norm+silu" : "",
             fl & 2 ? " x2" : "", fl & 4 ? " +res" : "");
    snprintf(rate, sizeof rate, "composed %.3f ms", ms_c);
    row("conv3x3_fused", shape, ms_f, rate, rel_err(a, b, n_out), 1e-2);
    free(xh); free(bh); free(gh); free(rh); free(a); free(b);
    G->i->free(G, c.y); G->i->free(G, c.x); G->i->free(G, c.b); G->i->free(G, c.sc);
    G->i->free(G, c.g); G->i->free(G, c.res); G->i->free(G, c.t1);
    wboth_free(&wt);
}

typedef struct tp_ctx {
    float *y, *x;
    int64_t a, b;
    int kind; /* 0 transpose, 1 channel_rms_scale, 2 conv 1x1 */
    mold_weight *wt;
} tp_ctx;

static void tp_op(mold_backend *be, tp_ctx *c) {
    if (c->kind == 0) die(be->i->transpose(be, c->y, c->x, c->a, c->b), "transpose");
    if (c->kind == 1) die(be->i->channel_rms_scale(be, c->y, c->x, c->a, c->b), "scale");
    if (c->kind == 2)
        die(be->i->conv2d(be, c->y, c->x, c->a, c->b, 1, c->wt, 1, 1, 0, NULL), "conv 1x1");
}

static void tp_run(void *p) { tp_op(G, p); }

/* transpose [a, b], channel_rms_scale of [a, b], or a 1x1 conv a -> n_out
 * over b pixels: timed on the card, compared in full with the CPU. */
static void check_vae_simple(int kind, int64_t a, int64_t b, int64_t n_out) {
    static const char *const names[] = {"transpose", "channel_rms_scale", "conv2d 1x1"};
    int64_t n_in = a * b, n_y = kind == 0 ? a * b : kind == 1 ? b : n_out * b;
    wboth wt;
    if (kind == 2) wboth_make(&wt, MOLD_BF16, n_out, a, 1, NULL);
    float *xh = host_rand(n_in);
    tp_ctx g = {G->i->alloc(G, (size_t)n_y * 4), dev_upload(G, xh, n_in), a, b, kind,
                kind == 2 ? &wt.wg : NULL};
    tp_ctx c = {C->i->alloc(C, (size_t)n_y * 4), dev_upload(C, xh, n_in), a, b, kind,
                kind == 2 ? &wt.wc : NULL};
    tp_op(G, &g);
    tp_op(C, &c);
    float *yg = dev_download(G, g.y, n_y), *yc = dev_download(C, c.y, n_y);
    double rel = rel_err(yg, yc, n_y);
    double ms = time_ms(tp_run, &g, 10);
    char shape[64], rate[32];
    if (kind == 2)
        snprintf(shape, sizeof shape, "%lld->%lld over %lld px", (long long)a, (long long)n_out,
                 (long long)b);
    else
        snprintf(shape, sizeof shape, "%lldx%lld", (long long)a, (long long)b);
    snprintf(rate, sizeof rate, "%.0f GB/s", (n_in + n_y) * 4.0 / (ms * 1e-3) / 1e9);
    row(names[kind], shape, ms, rate, rel, kind == 2 ? 1e-2 : kind == 1 ? 1e-5 : 0.0);
    free(xh); free(yg); free(yc);
    G->i->free(G, g.y); G->i->free(G, g.x); C->i->free(C, c.y); C->i->free(C, c.x);
    if (kind == 2) wboth_free(&wt);
}

static void vae_rows(void) {
    const int64_t L = 166; /* 1328 / 8 */
    check_attention_vae(L * L, 384, 0);
    check_attention_vae(L * L, 384, 1);
    check_vae_simple(0, 384, L * L, 0);
    check_vae_simple(0, L * L, 384, 0);
    check_vae_simple(1, 96, 1328 * 1328, 0);
    check_vae_simple(1, 384, L * L, 0);
    check_vae_simple(2, 192, 332 * 332, 384); /* up block 1 shortcut */
    check_vae_simple(2, 16, L * L, 16);       /* post_quant_conv */
    check_vae_conv(96, 96, 1328, 1328, 1);     /* resnet conv1 at full resolution */
    check_vae_conv(96, 96, 1328, 1328, 1 | 4); /* conv2 + residual */
    check_vae_conv(192, 192, 664, 664, 1 | 4);
    check_vae_conv(384, 384, 332, 332, 1 | 4);
    check_vae_conv(384, 384, L, L, 1 | 4);
    check_vae_conv(192, 96, 664, 664, 2);      /* last upsampler: 1328 output */
    check_vae_conv(384, 192, 332, 332, 2);
    check_vae_conv(96, 3, 1328, 1328, 1);      /* conv_out */
    check_conv(96, 1328, 1328, 96, 0);
    check_conv(96, 1328, 1328, 96, 3);         /* 96 couts per block, 1 block per SM */
    check_conv(96, 1328, 1328, 96, 4);         /* the f32-staging kernel (before packing) */
    check_conv(192, 664, 664, 64, 0);
    check_conv(192, 664, 664, 64, 3);
    check_conv(192, 664, 664, 64, 4);
    check_conv(384, 166, 166, 64, 0);
    check_conv(384, 166, 166, 64, 4);
}

/* ---- main ---- */

int main(int argc, char **argv) {
    /* --quick: a smaller upload figure; --fast: only the attention and conv
     * rows (default kernels and their predecessors), for a short lease;
     * --vae: the VAE rows; --fuse: the fused MLP and QK norm + RoPE against
     * the plain ops, and f32-weight matmuls on both paths across m */
    int quick = 0, fast = 0, vae = 0, fuse = 0;
    for (int i = 1; i < argc; i++) {
        quick |= strcmp(argv[i], "--quick") == 0;
        fast |= strcmp(argv[i], "--fast") == 0;
        vae |= strcmp(argv[i], "--vae") == 0;
        fuse |= strcmp(argv[i], "--fuse") == 0;
    }
    mold_status st = mold_backend_cuda_create(0, &G);
    if (st != MOLD_OK) {
        printf("cuda_check: %s\n", mold_error_message());
        return st == MOLD_E_UNSUPPORTED ? 0 : 1;
    }
    die(mold_backend_cpu_create(0, &C), "cpu backend");
    const int64_t S_IMG = 6921, S = 6921 + 32, D = 3072, F = 12288;
    printf("| %-22s | %-34s | %9s | %-20s | %9s | %7s | %-4s |\n", "op", "shape", "cuda ms",
           "rate", "rel err", "tol", "ok");
    printf("|------------------------|------------------------------------|-----------|"
           "----------------------|-----------|---------|------|\n");

    if (fuse) {
        check_mlp(2 * S_IMG, D, F); /* the DiT's image MLP at CFG batch 2 */
        check_ew(3, "rms_norm (per head)", S_IMG * 24, 128, 8);
        check_ew(4, "rope (24 heads)", S_IMG, 24 * 128, 8);
        check_ew(5, "rms_norm_rope (24x128)", S_IMG, 24 * 128, 8);
        const int64_t ms_[] = {2, 64, 128, 256, 1024, 2 * S_IMG};
        for (int i = 0; i < 6; i++) check_matmul_f32(ms_[i], D, D);
        check_matmul_f32(2 * S_IMG, 64, D); /* img_in */
        check_matmul_f32(2 * S_IMG, D, 64); /* proj_out */
        check_matmul_f32(166 * 166, 384, 384); /* VAE mid attention at 1328^2 */
    }
    if (vae) vae_rows();
    if (fuse || vae) {
        G->i->destroy(G);
        C->i->destroy(C);
        printf("cuda_check: %s\n", g_failed ? "FAILED" : "all comparisons within tolerance");
        return g_failed;
    }
    if (fast) {
        check_attention(S, 24, 128, 20, 0, 7);
        check_attention(S, 24, 128, 20, 0, 9);
        check_attention(S, 24, 128, 20, 0, 8);
        check_attention(S, 24, 128, 20, 0, 6);
        check_attention(6921 + 6, 24, 128, 0, 0, 7); /* the uncond pass of diffusers' CFG */
        check_conv(96, 1328, 1328, 96, 0);
        check_conv(96, 1328, 1328, 96, 2);
        check_conv(192, 664, 664, 64, 0);
        check_conv(384, 166, 166, 64, 0);
        G->i->destroy(G);
        C->i->destroy(C);
        printf("cuda_check: %s\n", g_failed ? "FAILED" : "all comparisons within tolerance");
        return g_failed;
    }
    /* cuBLAS peak (raw bf16 GEMM, random data) */
    double ms = 0;
    char rate[32];
    die(mold_cuda_bench_gemm(G, 8192, 8192, 8192, 20, &ms), "bench gemm");
    snprintf(rate, sizeof rate, "%.0f TFLOP/s", 2.0 * 8192 * 8192 * 8192 / (ms * 1e-3) / 1e12);
    row("cublasLt bf16 (peak)", "8192^3", ms, rate, -1, 0);
    die(mold_cuda_bench_gemm(G, F, S_IMG, D, 20, &ms), "bench gemm");
    snprintf(rate, sizeof rate, "%.0f TFLOP/s", 2.0 * F * S_IMG * D / (ms * 1e-3) / 1e12);
    row("cublasLt bf16 (raw)", "6921x3072 . 3072x12288", ms, rate, -1, 0);

    /* weight upload: a 1 GiB bf16 weight from pageable host memory */
    {
        wboth w;
        double up_ms = 0;
        int64_t n_out = quick ? 4096 : 32768, n_in = 16384;
        wboth_make(&w, MOLD_BF16, n_out, n_in, 0, &up_ms);
        char shape[64];
        snprintf(shape, sizeof shape, "%lldx%lld bf16 (%.0f MiB)", (long long)n_out,
                 (long long)n_in, n_out * n_in * 2 / 1048576.0);
        snprintf(rate, sizeof rate, "%.1f GB/s", n_out * n_in * 2 / (up_ms * 1e-3) / 1e9);
        row("weight_upload", shape, up_ms, rate, -1, 0);
        wboth_free(&w);
    }

    {
        double pinned = 0, pageable = 0;
        die(mold_cuda_bench_h2d(G, (size_t)128 << 20, &pinned, &pageable), "bench h2d");
        snprintf(rate, sizeof rate, "%.1f / %.1f GB/s", pinned, pageable);
        row("h2d pinned / pageable", "128 MiB cudaMemcpyAsync", 0, rate, -1, 0);
    }
    check_matmul(MOLD_BF16, S_IMG, D, F, 64);  /* FFN up */
    check_matmul(MOLD_BF16, S_IMG, F, D, 64);  /* FFN down */
    check_matmul(MOLD_BF16, S_IMG, D, D, 64);  /* attention projections */
    check_matmul(MOLD_Q4_K, S_IMG, D, F, 64);
    check_matmul(MOLD_Q8_0, S_IMG, D, F, 64);
    const int fa[] = {7, 8, 6, 4, 5, 1};
    for (int v = 0; v < 6; v++) check_attention(S, 24, 128, 20, 0, fa[v]);
    check_attention(S, 24, 128, 20, 1, 0);
    check_conv(96, 1328, 1328, 96, 0);
    check_conv(96, 1328, 1328, 96, 3);
    check_conv(96, 1328, 1328, 96, 2);
    check_conv(192, 664, 664, 64, 0); /* decoder, half resolution */
    check_conv(192, 664, 664, 64, 2);
    check_conv(384, 166, 166, 64, 0); /* decoder at latent resolution */
    check_conv(384, 166, 166, 64, 2);
    check_ew(0, "layer_norm_modulate", S_IMG, D, 8);
    check_ew(1, "gelu_tanh", S_IMG, F, 8);
    check_ew(2, "gated_add", S_IMG, D, 12);
    check_ew(3, "rms_norm (per head)", S_IMG * 24, 128, 8);
    check_ew(4, "rope (24 heads)", S_IMG, 24 * 128, 8);

    G->i->destroy(G);
    C->i->destroy(C);
    printf("cuda_check: %s\n", g_failed ? "FAILED" : "all comparisons within tolerance");
    return g_failed;
}
