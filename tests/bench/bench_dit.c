/*
 * bench_dit.c — CPU time of the Qwen-Image transformer forward on the tiny
 * fixtures, and a projection of a full-size (60 blocks, D 3072) step from the
 * CPU backend's measured matmul and attention throughput at DiT shapes.
 *
 * Not part of ctest (timings are not pass/fail). Build against the core
 * library of a Release build dir:
 *   cc -O2 -D_GNU_SOURCE -Isrc -Itests tests/bench/bench_dit.c build/libmold_core.a \
 *      -lopenblas -ljansson -lpcre2-8 -lutf8proc -lspng -lmicrohttpd -lm -lpthread \
 *      -o build/bench_dit
 *   build/bench_dit [threads]      (run from the repository root)
 * Prints medians of timed runs after one warm-up. Results: docs/perf/dit.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/ops.h"
#include "base/dtype.h"
#include "formats/modeldir.h"
#include "formats/safetensors.h"
#include "formats/tensor_source.h"
#include "models/qwenimage_dit.h"

#define CHECK(x)                                                                     \
    do {                                                                             \
        mold_status st_ = (x);                                                       \
        if (st_ != MOLD_OK) {                                                        \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x,               \
                    mold_error_message());                                           \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp);
    return t[n / 2];
}

static float *dev_random(mold_backend *be, size_t n) {
    float *h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = (float)rand() / RAND_MAX - 0.5f;
    float *d = be->i->alloc(be, n * sizeof(float));
    CHECK(be->i->upload(be, d, h, n * sizeof(float)));
    free(h);
    return d;
}

/* ---- tiny model forward ---- */

static void bench_fixture(mold_backend *be, const char *dir, int batch) {
    char p[512];
    mold_dit_config cfg;
    snprintf(p, sizeof p, "tests/fixtures/%s/model/transformer/config.json", dir);
    CHECK(mold_dit_config_load(p, &cfg));
    snprintf(p, sizeof p, "tests/fixtures/%s/model/transformer", dir);
    mold_safetensors *st;
    CHECK(mold_safetensors_open(p, &st));
    mold_tensor_source src = mold_source_safetensors(st);
    mold_dit *dit;
    CHECK(mold_dit_load(be, &cfg, &src, &dit));
    const int th = 4, tw = 6, N = th * tw, L = 9;
    float *img = dev_random(be, (size_t)batch * N * cfg.in_channels);
    float *txt = dev_random(be, (size_t)batch * L * cfg.joint_attention_dim);
    float *out = be->i->alloc(be, (size_t)batch * N * 64 * sizeof(float));
    int len[2] = {L, 6};
    float sig[2] = {0.93f, 0.25f};
    double t[21];
    for (int r = 0; r < 21; r++) {
        double t0 = now();
        CHECK(mold_dit_forward(dit, batch, img, th, tw, txt, len, L, sig, out));
        CHECK(be->i->sync(be));
        t[r] = now() - t0;
    }
    printf("| %s | %d | %d+%d | %.2f ms |\n", dir, batch, N, L, median(t + 1, 20) * 1e3);
    be->i->free(be, img);
    be->i->free(be, txt);
    be->i->free(be, out);
    mold_dit_free(dit);
    mold_safetensors_close(st);
}

/* ---- throughput at full-size shapes ---- */

/* GFLOP/s of y[m, n_out] = x[m, n_in] W^T for a random bf16 weight. */
static double bench_matmul(mold_backend *be, int64_t m, int64_t n_out, int64_t n_in,
                           mold_dtype dt) {
    size_t n = (size_t)(n_out * n_in);
    uint16_t *w16 = malloc(n * sizeof(uint16_t));
    float *w32 = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        w32[i] = ((float)rand() / RAND_MAX - 0.5f) * 0.05f;
        w16[i] = mold_f32_to_bf16(w32[i]);
    }
    mold_tensor t = {.name = "w", .dtype = dt, .n_dims = 2, .shape = {n_out, n_in},
                     .data = dt == MOLD_BF16 ? (const void *)w16 : (const void *)w32,
                     .n_bytes = n * (dt == MOLD_BF16 ? 2 : 4)};
    mold_weight w;
    CHECK(be->i->weight_upload(be, &t, n_out, n_in, &w));
    float *x = dev_random(be, (size_t)(m * n_in));
    float *y = be->i->alloc(be, (size_t)(m * n_out) * sizeof(float));
    double tm[6];
    for (int r = 0; r < 6; r++) {
        double t0 = now();
        CHECK(be->i->matmul(be, y, x, m, &w, NULL));
        CHECK(be->i->sync(be));
        tm[r] = now() - t0;
    }
    double s = median(tm + 1, 5), gf = 2.0 * m * n_out * n_in / s / 1e9;
    printf("| matmul %s m=%lld, %lldx%lld | %.1f ms | %.1f GFLOP/s |\n", mold_dtype_name(dt),
           (long long)m, (long long)n_out, (long long)n_in, s * 1e3, gf);
    be->i->weight_free(be, &w);
    be->i->free(be, x);
    be->i->free(be, y);
    free(w16);
    free(w32);
    return gf;
}

/* GFLOP/s of joint attention over S tokens, 24 heads x 128 (QK^T + PV). */
static double bench_attention(mold_backend *be, int64_t S) {
    const int64_t H = 24, hd = 128;
    float *q = dev_random(be, (size_t)(S * H * hd)), *k = dev_random(be, (size_t)(S * H * hd));
    float *v = dev_random(be, (size_t)(S * H * hd));
    float *o = be->i->alloc(be, (size_t)(S * H * hd) * sizeof(float));
    double tm[4];
    for (int r = 0; r < 4; r++) {
        double t0 = now();
        CHECK(be->i->attention(be, o, q, k, v, S, S, H, H, hd, 0.088388f, NULL, false));
        CHECK(be->i->sync(be));
        tm[r] = now() - t0;
    }
    double s = median(tm + 1, 3), gf = 4.0 * S * S * H * hd / s / 1e9;
    printf("| attention S=%lld, 24x128 | %.1f ms | %.1f GFLOP/s |\n", (long long)S, s * 1e3, gf);
    be->i->free(be, q);
    be->i->free(be, k);
    be->i->free(be, v);
    be->i->free(be, o);
    return gf;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    mold_backend *be;
    CHECK(mold_backend_cpu_create(threads, &be));
    printf("## tiny fixtures (threads %d)\n| model | batch | img+txt tokens | forward |\n"
           "|---|---|---|---|\n", threads);
    bench_fixture(be, "qwen-image-tiny", 1);
    bench_fixture(be, "qwen-image-tiny", 2);
    bench_fixture(be, "qwen-image-hd128", 1);
    bench_fixture(be, "qwen-image-hd128", 2);

    printf("\n## throughput at full-size shapes\n| op | time | rate |\n|---|---|---|\n");
    double g_qkv = bench_matmul(be, 512, 3072, 3072, MOLD_BF16);
    double g_fc1 = bench_matmul(be, 512, 12288, 3072, MOLD_BF16);
    double g_fc2 = bench_matmul(be, 512, 3072, 12288, MOLD_BF16);
    bench_matmul(be, 512, 3072, 3072, MOLD_F32);
    double g_att = bench_attention(be, 1024);

    /* projection: 1328x1328 (83x83 = 6889 image tokens), L = 32 / 512 */
    printf("\n## projected full-size forward (60 blocks, D 3072), bf16 weights\n"
           "| size | L | linear TFLOP | attention TFLOP | projected forward | step (CFG, 2 fwd) |\n"
           "|---|---|---|---|---|---|\n");
    const double D = 3072, F = 12288;
    const int Ls[2] = {32, 512};
    /* per token and block: its stream's q, k, v, out (DxD), fc1 (FxD), fc2 (DxF) */
    double t_tok = 4 * 2 * D * D / g_qkv + 2 * D * F / g_fc1 + 2 * D * F / g_fc2; /* ns */
    for (int i = 0; i < 2; i++) {
        double S = 6889 + Ls[i];
        double lin = 60 * 2 * (4 * D * D + 2 * D * F) * S;
        double att = 60 * 4 * S * S * D;
        double secs = 60 * S * t_tok * 1e-9 + att / g_att / 1e9;
        printf("| 1328x1328 | %d | %.1f | %.1f | %.0f s | %.0f s |\n", Ls[i], lin / 1e12,
               att / 1e12, secs, 2 * secs);
    }
    mold_backend_free(be);
    return 0;
}
