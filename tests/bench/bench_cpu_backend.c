/*
 * bench_cpu_backend.c — throughput of the CPU backend's heavy ops (matmul by
 * weight dtype, attention, conv2d) against a plain single cblas_sgemm call.
 *
 * Not part of ctest (timings are not pass/fail). Build against the core
 * library of a Release build dir:
 *   cc -O2 -D_GNU_SOURCE -Isrc -I/usr/include/x86_64-linux-gnu/openblas-pthread \
 *      tests/bench/bench_cpu_backend.c build/libmold_core.a -lopenblas -ljansson \
 *      -lpcre2-8 -lutf8proc -lspng -lmicrohttpd -lm -lpthread -o build/bench_cpu_backend
 *   build/bench_cpu_backend [threads]
 * Prints the median of 5 timed runs after one warm-up, in GFLOP/s by wall
 * time and by process CPU time / threads (robust to a busy shared machine;
 * the sgemm baseline runs on the calling thread, so read its cpu-time
 * figure with threads=1).
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/ops.h"
#include "base/dtype.h"
#include "base/quant.h"

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Process CPU seconds of the last median_s() run, divided by threads: on a
 * shared machine this excludes time the bench spent descheduled. */
static double g_cpu_s;
static int g_threads = 1;

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static float *rnd(size_t n) {
    float *p = malloc(n * sizeof(float));
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = ((s >> 8) * (1.0f / 16777216.0f)) - 0.5f;
    }
    return p;
}

typedef void (*bench_fn)(void *ud);

static double median_s(bench_fn fn, void *ud) {
    double t[5], c[5];
    fn(ud);
    for (int i = 0; i < 5; i++) {
        double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        fn(ud);
        t[i] = clock_s(CLOCK_MONOTONIC) - t0;
        c[i] = (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / g_threads;
    }
    qsort(t, 5, sizeof *t, cmp);
    qsort(c, 5, sizeof *c, cmp);
    g_cpu_s = c[2];
    return t[2];
}

/* "wall ms, GFLOP/s by wall, GFLOP/s by CPU time" */
static void report(double flop, double s) {
    printf("  %8.2f ms  %6.1f GFLOP/s  (cpu-time %6.1f)\n", s * 1e3, flop / s * 1e-9,
           flop / g_cpu_s * 1e-9);
}

typedef struct mm_args {
    mold_backend *be;
    float *y, *x;
    mold_weight w;
    int64_t m;
} mm_args;

static void run_mm(void *ud) {
    mm_args *a = ud;
    if (a->be->i->matmul(a->be, a->y, a->x, a->m, &a->w, NULL) != MOLD_OK) abort();
}

typedef struct sg_args {
    float *y, *x, *w;
    int m, n, k;
} sg_args;

static void run_sgemm(void *ud) {
    sg_args *a = ud;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, a->m, a->n, a->k, 1.0f, a->x, a->k, a->w,
                a->k, 0.0f, a->y, a->n);
}

static void bench_matmul(mold_backend *be, mold_dtype dt, int64_t m, int64_t k, int64_t n) {
    float *wf = rnd((size_t)(n * k));
    void *wd = wf;
    size_t esz = dt == MOLD_F32 ? 4 : 2;
    uint64_t row_bytes = 0;
    if (mold_dtype_row_bytes(dt, (uint64_t)k, &row_bytes) != MOLD_OK) abort();
    if (mold_dtype_get(dt)->is_quant) {
        uint8_t *q = malloc(row_bytes * (uint64_t)n);
        for (int64_t r = 0; r < n; r++)
            if (mold_quantize(dt, wf + r * k, q + r * row_bytes, k) != MOLD_OK) abort();
        wd = q;
    } else if (dt != MOLD_F32) {
        uint16_t *h = malloc((size_t)(n * k) * 2);
        for (int64_t i = 0; i < n * k; i++)
            h[i] = dt == MOLD_BF16 ? mold_f32_to_bf16(wf[i]) : mold_f32_to_f16(wf[i]);
        wd = h;
    }
    (void)esz;
    mold_tensor t = { .dtype = dt, .n_dims = 2, .shape = { n, k }, .data = wd,
                      .n_bytes = row_bytes * (uint64_t)n };
    mm_args a = { .be = be, .m = m, .x = rnd((size_t)(m * k)), .y = malloc((size_t)(m * n) * 4) };
    if (be->i->weight_upload(be, &t, n, k, &a.w) != MOLD_OK) abort();
    double s = median_s(run_mm, &a);
    printf("matmul %-4s m=%-5lld k=%-5lld n=%-5lld", mold_dtype_name(dt), (long long)m,
           (long long)k, (long long)n);
    report(2.0 * m * k * n, s);
    be->i->weight_free(be, &a.w);
    if (wd != wf) free(wd);
    free(wf); free(a.x); free(a.y);
}

static void bench_sgemm(int m, int k, int n) {
    sg_args a = { .m = m, .n = n, .k = k, .x = rnd((size_t)m * k), .w = rnd((size_t)n * k),
                  .y = malloc((size_t)m * n * 4) };
    double s = median_s(run_sgemm, &a);
    printf("sgemm (single call, no pool) m=%d k=%d n=%d", m, k, n);
    report(2.0 * m * k * n, s);
    free(a.x); free(a.w); free(a.y);
}

typedef struct at_args {
    mold_backend *be;
    float *o, *q, *k, *v;
    int64_t s, h, d;
    bool causal;
} at_args;

static void run_at(void *ud) {
    at_args *a = ud;
    if (a->be->i->attention(a->be, a->o, a->q, a->k, a->v, a->s, a->s, a->h, a->h, a->d,
                            0.088f, NULL, a->causal) != MOLD_OK) abort();
}

static void bench_attention(mold_backend *be, int64_t s, int64_t h, int64_t d, bool causal) {
    size_t n = (size_t)(s * h * d);
    at_args a = { .be = be, .o = malloc(n * 4), .q = rnd(n), .k = rnd(n), .v = rnd(n), .s = s,
                  .h = h, .d = d, .causal = causal };
    double sec = median_s(run_at, &a);
    double flop = 4.0 * s * s * h * d * (causal ? 0.5 : 1.0);
    printf("attention s=%lld h=%lld d=%lld%s", (long long)s, (long long)h, (long long)d,
           causal ? " causal" : "");
    report(flop, sec);
    free(a.o); free(a.q); free(a.k); free(a.v);
}

typedef struct cv_args {
    mold_backend *be;
    float *y, *x;
    mold_weight w;
    int64_t c, hw;
} cv_args;

static void run_cv(void *ud) {
    cv_args *a = ud;
    if (a->be->i->conv2d(a->be, a->y, a->x, a->c, a->hw, a->hw, &a->w, 3, 3, 1, NULL) != MOLD_OK)
        abort();
}

static void bench_conv(mold_backend *be, int64_t c, int64_t co, int64_t hw) {
    int64_t k = c * 9;
    float *wf = rnd((size_t)(co * k));
    uint16_t *h = malloc((size_t)(co * k) * 2);
    for (int64_t i = 0; i < co * k; i++) h[i] = mold_f32_to_bf16(wf[i]);
    mold_tensor t = { .dtype = MOLD_BF16, .n_dims = 2, .shape = { co, k }, .data = h,
                      .n_bytes = (uint64_t)(co * k) * 2 };
    cv_args a = { .be = be, .c = c, .hw = hw, .x = rnd((size_t)(c * hw * hw)),
                  .y = malloc((size_t)(co * hw * hw) * 4) };
    if (be->i->weight_upload(be, &t, co, k, &a.w) != MOLD_OK) abort();
    double s = median_s(run_cv, &a);
    printf("conv2d 3x3 bf16 %lld->%lld %lldx%lld", (long long)c, (long long)co, (long long)hw,
           (long long)hw);
    report(2.0 * co * k * hw * hw, s);
    be->i->weight_free(be, &a.w);
    free(wf); free(h); free(a.x); free(a.y);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    const char *only = argc > 2 ? argv[2] : "";
    mold_backend *be = NULL;
    if (mold_backend_cpu_create(threads, &be) != MOLD_OK) return 1;
    g_threads = threads > 0 ? threads : 1;
    printf("threads=%d\n", threads);
    if (!*only || strstr(only, "mm")) {
        bench_sgemm(256, 1024, 1024);
        bench_sgemm(256, 3072, 3072);
        for (int64_t kn = 1024; kn <= 3072; kn += 1024) {
            bench_matmul(be, MOLD_F32, 256, kn, kn);
            bench_matmul(be, MOLD_BF16, 256, kn, kn);
        }
        bench_matmul(be, MOLD_F16, 256, 3072, 3072);
        bench_matmul(be, MOLD_Q8_0, 256, 3072, 3072);
        bench_matmul(be, MOLD_Q4_K, 256, 3072, 3072);
        bench_matmul(be, MOLD_BF16, 1, 3072, 3072);
        bench_matmul(be, MOLD_BF16, 1024, 3072, 12288);
    }
    if (strstr(only, "quick")) { /* tile tuning: the text encoder's shapes */
        bench_matmul(be, MOLD_BF16, 256, 3072, 3072);
        bench_matmul(be, MOLD_BF16, 128, 3584, 18944);
    }
    if (!*only || strstr(only, "at")) {
        bench_attention(be, 1024, 24, 128, false);
        bench_attention(be, 512, 28, 128, true);
    }
    if (!*only || strstr(only, "cv")) {
        bench_conv(be, 384, 384, 64);
        bench_conv(be, 96, 96, 256);
    }
    mold_backend_free(be);
    return 0;
}
