/*
 * synth_check.c — runs each model of a `mold synth` directory once on the CPU
 * backend and reports whether the outputs stay finite and of sane size: the
 * full-size random weights (60 blocks, 28 layers) must not blow up before a
 * benchmark relies on them.
 *
 * Not part of ctest (full-size models take minutes on the CPU and gigabytes
 * of disk). Build against the core library of a Release build dir:
 *   cc -O2 -D_GNU_SOURCE -Isrc -Itests tests/bench/synth_check.c build/libmold_core.a \
 *      -lopenblas -ljansson -lpcre2-8 -lutf8proc -lspng -lmicrohttpd -lm -lpthread \
 *      -o build/synth_check
 *   build/synth_check MODEL_DIR [threads]
 * Per component: the weights file, the output's rms, max |x| and the count
 * of NaN/Inf values (exit 1 when any), and the CPU time. Inputs: a 4x4 token
 * grid of N(0,1) latents, 8 text tokens of N(0,1) embeddings, sigma 1 and 0.5;
 * an 8x8 latent of N(0,1) de-normalised for the VAE; a short prompt for the
 * text encoder. Results: docs/perf/synth.md.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/ops.h"
#include "base/fs.h"
#include "base/philox.h"
#include "formats/gguf.h"
#include "formats/modeldir.h"
#include "formats/safetensors.h"
#include "formats/tensor_source.h"
#include "models/qwen25_text.h"
#include "models/qwen2_tokenizer.h"
#include "models/qwenimage_dit.h"
#include "models/qwenimage_vae.h"

#define CHECK(x)                                                                     \
    do {                                                                             \
        mold_status st_ = (x);                                                       \
        if (st_ != MOLD_OK) {                                                        \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x,               \
                    mold_error_message());                                           \
            exit(2);                                                                 \
        }                                                                            \
    } while (0)

static int g_bad; /* components with non-finite outputs */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void report(const char *what, const float *x, size_t n, double sec) {
    double s = 0, mx = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            bad++;
            continue;
        }
        s += (double)x[i] * x[i];
        if (fabs(x[i]) > mx) mx = fabs(x[i]);
    }
    printf("  %-34s rms %9.4f  max|x| %9.4f  non-finite %zu/%zu  %.2f s\n", what,
           sqrt(s / (double)n), mx, bad, n, sec);
    if (bad) g_bad++;
}

/* An open weights container of a component directory: its *.gguf if any,
 * else its safetensors. */
typedef struct weights {
    mold_gguf *g;
    mold_safetensors *st;
    mold_tensor_source src;
    char file[512];
} weights;

static void open_weights(const char *dir, weights *w) {
    memset(w, 0, sizeof *w);
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "%s: cannot list\n", dir);
        exit(2);
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 5 && !strcmp(e->d_name + n - 5, ".gguf"))
            snprintf(w->file, sizeof w->file, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (w->file[0]) {
        CHECK(mold_gguf_open(w->file, &w->g));
        w->src = mold_source_gguf(w->g);
    } else {
        snprintf(w->file, sizeof w->file, "%s", dir);
        CHECK(mold_safetensors_open(dir, &w->st));
        w->src = mold_source_safetensors(w->st);
    }
}

static void close_weights(weights *w) {
    mold_gguf_close(w->g);
    mold_safetensors_close(w->st);
}

static float *normals(uint64_t seed, size_t n, float scale) {
    float *x = malloc(n * sizeof(float));
    mold_philox_normal(seed, x, n);
    for (size_t i = 0; i < n; i++) x[i] *= scale;
    return x;
}

static void check_dit(mold_backend *be, const char *root) {
    char dir[1024], cfgp[1100];
    snprintf(dir, sizeof dir, "%s/transformer", root);
    snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
    mold_dit_config cfg;
    CHECK(mold_dit_config_load(cfgp, &cfg));
    weights w;
    open_weights(dir, &w);
    printf("transformer: %s\n", w.file);
    mold_dit *dit;
    double t0 = now_s();
    CHECK(mold_dit_load(be, &cfg, &w.src, &dit));
    printf("  load %.2f s\n", now_s() - t0);
    const int th = 4, tw = 4, N = th * tw, L = 8;
    const size_t ni = (size_t)N * cfg.in_channels, nt = (size_t)L * cfg.joint_attention_dim;
    float *img = normals(1, ni, 1.0f), *txt = normals(2, nt, 1.0f);
    float *d_img = be->i->alloc(be, ni * 4), *d_txt = be->i->alloc(be, nt * 4);
    float *d_out = be->i->alloc(be, (size_t)N * 64 * 4), *out = malloc((size_t)N * 64 * 4);
    CHECK(be->i->upload(be, d_img, img, ni * 4));
    CHECK(be->i->upload(be, d_txt, txt, nt * 4));
    const float sigmas[2] = {1.0f, 0.5f};
    for (int s = 0; s < 2; s++) {
        const int len = L;
        t0 = now_s();
        CHECK(mold_dit_forward(dit, 1, d_img, th, tw, d_txt, &len, L, &sigmas[s], d_out));
        CHECK(be->i->download(be, out, d_out, (size_t)N * 64 * 4));
        char what[64];
        snprintf(what, sizeof what, "DiT velocity, sigma %.1f", sigmas[s]);
        report(what, out, (size_t)N * 64, now_s() - t0);
    }
    be->i->free(be, d_img);
    be->i->free(be, d_txt);
    be->i->free(be, d_out);
    mold_dit_free(dit);
    close_weights(&w);
    free(img);
    free(txt);
    free(out);
}

static void check_vae(mold_backend *be, const char *root) {
    char dir[1024], cfgp[1100];
    snprintf(dir, sizeof dir, "%s/vae", root);
    snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
    mold_vae_config cfg;
    CHECK(mold_vae_config_load(cfgp, &cfg));
    weights w;
    open_weights(dir, &w);
    printf("vae: %s\n", w.file);
    mold_vae *vae;
    CHECK(mold_vae_load(be, &cfg, &w.src, &vae));
    const int h = 8, wd = 8, S = mold_vae_scale(&cfg);
    float *z = normals(3, (size_t)cfg.z_dim * h * wd, 1.0f);
    for (int c = 0; c < cfg.z_dim; c++)
        for (int p = 0; p < h * wd; p++)
            z[c * h * wd + p] = z[c * h * wd + p] * cfg.latents_std[c] + cfg.latents_mean[c];
    size_t n = (size_t)3 * S * h * S * wd;
    float *img = malloc(n * 4);
    double t0 = now_s();
    CHECK(mold_vae_decode(vae, z, h, wd, NULL, img));
    size_t clipped = 0;
    for (size_t i = 0; i < n; i++) clipped += fabsf(img[i]) >= 1.0f;
    report("VAE decode 8x8 -> 64x64", img, n, now_s() - t0);
    printf("  %.1f%% of the pixels' channels clipped to +-1\n",
           100.0 * (double)clipped / (double)n);
    mold_vae_free(vae);
    close_weights(&w);
    free(z);
    free(img);
}

static void check_text(mold_backend *be, const char *root) {
    char dir[1024], p[1100];
    snprintf(dir, sizeof dir, "%s/text_encoder", root);
    weights w;
    open_weights(dir, &w);
    printf("text encoder: %s\n", w.file);
    mold_text_config cfg;
    if (w.g) {
        CHECK(mold_gguf_text_config(w.g, &cfg));
    } else {
        snprintf(p, sizeof p, "%s/config.json", dir);
        CHECK(mold_text_config_load(p, &cfg));
    }
    snprintf(p, sizeof p, "%s/tokenizer", root);
    mold_tokenizer *tok;
    CHECK(mold_tokenizer_load(p, &tok));
    mold_text_encoder *te;
    CHECK(mold_text_encoder_load(be, &cfg, &w.src, &te));
    const char *prompt = "a lighthouse on a cliff at sunset, oil painting";
    int32_t *ids;
    size_t n;
    CHECK(mold_qwenimage_tokenize_prompt(tok, prompt, strlen(prompt), &ids, &n));
    float *h = malloc(n * (size_t)cfg.hidden_size * 4);
    double t0 = now_s();
    CHECK(mold_text_encoder_forward(te, ids, NULL, 1, (int)n, h, NULL));
    char what[64];
    snprintf(what, sizeof what, "text hidden state (%zu tokens)", n);
    report(what, h, n * (size_t)cfg.hidden_size, now_s() - t0);
    mold_text_encoder_free(te);
    mold_tokenizer_free(tok);
    close_weights(&w);
    free(ids);
    free(h);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: synth_check MODEL_DIR [threads]\n");
        return 2;
    }
    mold_backend *be;
    CHECK(mold_backend_cpu_create(argc > 2 ? atoi(argv[2]) : 0, &be));
    check_text(be, argv[1]);
    check_dit(be, argv[1]);
    check_vae(be, argv[1]);
    mold_backend_free(be);
    printf(g_bad ? "synth_check: NON-FINITE outputs\n" : "synth_check: all outputs finite\n");
    return g_bad ? 1 : 0;
}
