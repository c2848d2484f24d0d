/*
 * test_vae.c — the Qwen-Image VAE decoder against diffusers, tiled decode,
 * Wan names, memory predictions and bad input.
 *
 * Golden: cases/vae_decode.safetensors (AutoencoderKLQwenImage.decode of a
 * 5x7 latent, f32 math from bf16 weights) must match within 1e-4 max abs.
 * Tiled decodes are compared with the full decode; the tolerances below are
 * the measured differences (docs/perf/vae.md) with headroom. The Wan-named
 * checkpoint is the fixture renamed by this file's own rules (written from
 * spec 7.5, independently of the loader's name tables) and must decode
 * bit-identically.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/ops.h"
#include "base/philox.h"
#include "formats/modeldir.h"
#include "formats/safetensors.h"
#include "formats/tensor_source.h"
#include "models/qwenimage_vae.h"
#include "../testutil.h"

/* Tiled vs full decode, [-1, 1] units. The tiny model has random weights, a
 * receptive field of about 17 latent pixels and global mid-block attention,
 * so tiles of 3..16 latent pixels differ from the full decode a lot; each
 * case's bound is its measured value (docs/perf/vae.md, deterministic CPU
 * backend) plus about 30% headroom, to catch regressions. */
typedef struct tiled_case {
    mold_vae_tiling t;
    double max_mean, max_abs; /* bounds */
} tiled_case;

typedef struct model {
    mold_safetensors *st;
    mold_vae_config cfg;
    mold_tensor_source src;
    mold_vae *vae;
} model;

static mold_backend *g_be;
static model g_tiny;

/* ---- helpers ---- */

static void model_open(model *m, const char *dir) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    tu_ok(mold_vae_config_load(path, &m->cfg), "vae config");
    snprintf(path, sizeof(path), "%s/diffusion_pytorch_model.safetensors", dir);
    tu_ok(mold_safetensors_open(path, &m->st), "vae safetensors");
    m->src = mold_source_safetensors(m->st);
    tu_ok(mold_vae_load(g_be, &m->cfg, &m->src, &m->vae), "vae load");
}

static void model_close(model *m) {
    mold_vae_free(m->vae);
    mold_safetensors_close(m->st);
    memset(m, 0, sizeof(*m));
}

static size_t img_elems(const mold_vae_config *c, int h, int w) {
    int s = mold_vae_scale(c);
    return (size_t)3 * h * s * w * s;
}

static float *decode(mold_vae *vae, const mold_vae_config *c, const float *z, int h, int w,
                     const mold_vae_tiling *t) {
    float *img = malloc(img_elems(c, h, w) * sizeof(float));
    assert_non_null(img);
    tu_ok(mold_vae_decode(vae, z, h, w, t, img), "vae decode");
    return img;
}

/* A de-normalised latent as the pipeline makes it: N(0,1) * std + mean. */
static float *random_latent(const mold_vae_config *c, int h, int w, uint64_t seed) {
    size_t hw = (size_t)h * w, n = (size_t)c->z_dim * hw;
    float *z = malloc(n * sizeof(float));
    assert_non_null(z);
    mold_philox_normal(seed, z, n);
    for (size_t i = 0; i < n; i++)
        z[i] = z[i] * c->latents_std[i / hw] + c->latents_mean[i / hw];
    return z;
}

/* Prints and returns mean and max abs difference. */
static void diff_stats(const char *what, const float *a, const float *b, size_t n, double *mean,
                       double *max) {
    double s = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        s += d;
        if (d > m || isnan(d))
            m = d;
    }
    *mean = s / (double)n;
    *max = m;
    printf("  %s: mean abs %.3e, max abs %.3e over %zu values\n", what, *mean, *max, n);
}

/* ---- golden ---- */

static void check_case(model *m, const char *case_path, const char *what) {
    mold_safetensors *cs;
    tu_ok(mold_safetensors_open(case_path, &cs), "vae case");
    const mold_tensor *zt, *ot;
    tu_ok(mold_safetensors_get(cs, "z", &zt), "z");
    tu_ok(mold_safetensors_get(cs, "output", &ot), "output");
    assert_int_equal(zt->n_dims, 5);
    int h = (int)zt->shape[3], w = (int)zt->shape[4];
    assert_int_equal(zt->shape[1], m->cfg.z_dim);
    float *z = tu_to_f32(zt), *ref = tu_to_f32(ot);
    size_t n = img_elems(&m->cfg, h, w);
    assert_int_equal((size_t)mold_tensor_nelems(ot), n);
    float *img = decode(m->vae, &m->cfg, z, h, w, NULL);
    /* CPU: max abs 1e-4. CUDA rounds conv/attention inputs to bf16: rel 1e-2
     * and max abs 0.1 on this [-1, 1] output. */
    double max = tu_max_abs_error(img, ref, n), max_tol = tu_tol(1e-4, 0.1);
    tu_check_close(what, img, ref, n, tu_tol(1e-4, 1e-2));
    printf("  %s: max abs error %.3e (tol %.0e)\n", what, max, max_tol);
    assert_true(max <= max_tol);
    free(img);
    free(z);
    free(ref);
    mold_safetensors_close(cs);
}

static void test_golden_tiny(void **state) {
    (void)state;
    check_case(&g_tiny, tu_fixture("qwen-image-tiny/cases/vae_decode.safetensors"),
               "tiny vae_decode");
}

/* base_dim 16 model of the hd128 fixture set (other channel ladder). */
static void test_golden_hd128(void **state) {
    (void)state;
    model m = {0};
    model_open(&m, tu_fixture("qwen-image-hd128/model/vae"));
    assert_int_equal(m.cfg.base_dim, 16);
    check_case(&m, tu_fixture("qwen-image-hd128/cases/vae_decode.safetensors"),
               "hd128 vae_decode");
    model_close(&m);
}

/* ---- tiling ---- */

static void test_single_tile_identical(void **state) {
    (void)state;
    const mold_vae_config *c = &g_tiny.cfg;
    int h = 5, w = 7;
    float *z = random_latent(c, h, w, 11);
    float *full = decode(g_tiny.vae, c, z, h, w, NULL);
    const mold_vae_tiling ts[2] = {{7, 3}, {64, 8}};
    for (int i = 0; i < 2; i++) {
        float *t = decode(g_tiny.vae, c, z, h, w, &ts[i]);
        printf("  tile %d covering 5x7: %s\n", ts[i].tile,
               memcmp(t, full, img_elems(c, h, w) * sizeof(float)) ? "DIFFERENT" : "identical");
        assert_memory_equal(t, full, img_elems(c, h, w) * sizeof(float));
        free(t);
    }
    free(full);
    free(z);
}

/* Tiled vs full on a latent; every tiled output stays in [-1, 1]. */
static void tiled_vs_full(const char *label, const float *z, int h, int w, const tiled_case *tc,
                          int n_tc) {
    const mold_vae_config *c = &g_tiny.cfg;
    size_t n = img_elems(c, h, w);
    float *full = decode(g_tiny.vae, c, z, h, w, NULL);
    for (int i = 0; i < n_tc; i++) {
        float *t = decode(g_tiny.vae, c, z, h, w, &tc[i].t);
        char what[128];
        snprintf(what, sizeof(what), "%s %dx%d tile %d overlap %d vs full (bounds %.2g/%.2g)",
                 label, h, w, tc[i].t.tile, tc[i].t.overlap, tc[i].max_mean, tc[i].max_abs);
        double mean, max;
        diff_stats(what, t, full, n, &mean, &max);
        assert_true(mean <= tc[i].max_mean);
        assert_true(max <= tc[i].max_abs);
        for (size_t k = 0; k < n; k++)
            assert_true(t[k] >= -1.0f && t[k] <= 1.0f);
        free(t);
    }
    free(full);
}

static void test_tiled_fixture_latent(void **state) {
    (void)state;
    mold_safetensors *cs;
    tu_ok(mold_safetensors_open(tu_fixture("qwen-image-tiny/cases/vae_decode.safetensors"), &cs),
          "case");
    const mold_tensor *zt;
    tu_ok(mold_safetensors_get(cs, "z", &zt), "z");
    float *z = tu_to_f32(zt);
    const tiled_case tc[3] = {{{4, 2}, 0.29, 1.6}, {{4, 1}, 0.30, 1.6}, {{3, 1}, 0.40, 2.0}};
    tiled_vs_full("fixture", z, 5, 7, tc, 3);
    free(z);
    mold_safetensors_close(cs);
}

static void test_tiled_random_32(void **state) {
    (void)state;
    float *z = random_latent(&g_tiny.cfg, 32, 32, 7);
    const tiled_case tc[3] = {{{16, 4}, 0.045, 0.70}, {{16, 8}, 0.038, 0.46},
                              {{24, 8}, 0.016, 0.17}};
    tiled_vs_full("random", z, 32, 32, tc, 3);
    free(z);
}

/* Tile starts along an axis of n (tiles of len, stride; last one at the edge). */
static int starts(int n, int len, int stride, int *out) {
    int k = 0;
    for (int p = 0;; p += stride) {
        out[k++] = p + len >= n ? n - len : p;
        if (p + len >= n)
            return k;
    }
}

/* Weight of image pixel g (axis of tiles at st[], len px each, image px
 * units) for tile i: linear across each overlap, shared with the neighbour. */
static double axis_weight(const int *st, int k, int i, int len, int g) {
    double wt = 1;
    if (i > 0 && g < st[i - 1] + len)
        wt *= (g - st[i] + 0.5) / (double)(st[i - 1] + len - st[i]);
    if (i < k - 1 && g >= st[i + 1])
        wt *= (st[i] + len - g - 0.5) / (double)(st[i] + len - st[i + 1]);
    return wt;
}

/* The tiling machinery on its own: the tiled decode equals full decodes of
 * the tile latents blended by the rule of mold_vae_tiling (recomputed here
 * in double from the tiles' placement). Uneven grid: last row tile at the edge. */
static void test_tiled_equals_manual_blend(void **state) {
    (void)state;
    const mold_vae_config *c = &g_tiny.cfg;
    const int h = 22, w = 20, T = 12, O = 4, S = mold_vae_scale(c);
    const mold_vae_tiling tl = {T, O};
    float *z = random_latent(c, h, w, 21);
    float *got = decode(g_tiny.vae, c, z, h, w, &tl);
    int sy[8], sx[8], ny = starts(h, T, T - O, sy), nx = starts(w, T, T - O, sx);
    assert_int_equal(ny, 3); /* 0, 8, 10 */
    assert_int_equal(nx, 2); /* 0, 8 */
    size_t H = (size_t)h * S, W = (size_t)w * S;
    double *acc = calloc(3 * H * W, sizeof(double)), *wsum = calloc(H * W, sizeof(double));
    float *zt = malloc((size_t)c->z_dim * T * T * sizeof(float));
    assert_true(acc && wsum && zt);
    for (int i = 0; i < ny; i++)
        for (int j = 0; j < nx; j++) {
            for (int ch = 0; ch < c->z_dim; ch++)
                for (int y = 0; y < T; y++)
                    memcpy(zt + ((size_t)ch * T + y) * T, z + ((size_t)ch * h + sy[i] + y) * w + sx[j],
                           T * sizeof(float));
            float *tile = decode(g_tiny.vae, c, zt, T, T, NULL);
            int sys[8], sxs[8];
            for (int k = 0; k < ny; k++) sys[k] = sy[k] * S;
            for (int k = 0; k < nx; k++) sxs[k] = sx[k] * S;
            for (int y = 0; y < T * S; y++)
                for (int x = 0; x < T * S; x++) {
                    int gy = sys[i] + y, gx = sxs[j] + x;
                    double wt = axis_weight(sys, ny, i, T * S, gy) * axis_weight(sxs, nx, j, T * S, gx);
                    wsum[(size_t)gy * W + gx] += wt;
                    for (int ch = 0; ch < 3; ch++)
                        acc[((size_t)ch * H + gy) * W + gx] +=
                            wt * tile[((size_t)ch * T * S + y) * T * S + x];
                }
            free(tile);
        }
    float *ref = malloc(3 * H * W * sizeof(float));
    assert_non_null(ref);
    for (size_t k = 0; k < 3 * H * W; k++)
        ref[k] = (float)(acc[k] / wsum[k % (H * W)]);
    double max = tu_max_abs_error(got, ref, 3 * H * W);
    printf("  tiled 22x20 (tile 12, overlap 4) vs manual blend: max abs %.3e (tol 1e-6)\n", max);
    assert_true(max <= 1e-6);
    free(ref);
    free(acc);
    free(wsum);
    free(zt);
    free(got);
    free(z);
}

/* ---- Wan names ---- */

/* Diffusers -> original Wan-2.1 name (spec 7.5), or "" when not a decoder
 * tensor. Written as string rules, independently of the loader's tables. */
static void to_wan(const char *d, int nrb, char *out, size_t cap) {
    static const char *const top[][2] = {
        {"post_quant_conv.", "conv2."},          {"decoder.conv_in.", "decoder.conv1."},
        {"decoder.norm_out.", "decoder.head.0."}, {"decoder.conv_out.", "decoder.head.2."},
        {"decoder.mid_block.attentions.0.", "decoder.middle.1."},
    };
    static const char *const inner[][2] = {
        {"norm1.", "residual.0."}, {"conv1.", "residual.2."}, {"norm2.", "residual.3."},
        {"conv2.", "residual.6."}, {"conv_shortcut.", "shortcut."},
    };
    out[0] = 0;
    for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++)
        if (!strncmp(d, top[i][0], strlen(top[i][0]))) {
            snprintf(out, cap, "%s%s", top[i][1], d + strlen(top[i][0]));
            return;
        }
    int b, r, used = 0;
    char head[64];
    if (sscanf(d, "decoder.mid_block.resnets.%d.%n", &r, &used) == 1 && used)
        snprintf(head, sizeof(head), "decoder.middle.%d.", 2 * r);
    else if (sscanf(d, "decoder.up_blocks.%d.resnets.%d.%n", &b, &r, &used) == 2 && used)
        snprintf(head, sizeof(head), "decoder.upsamples.%d.", b * (nrb + 2) + r);
    else if (sscanf(d, "decoder.up_blocks.%d.upsamplers.0.%n", &b, &used) == 1 && used) {
        snprintf(out, cap, "decoder.upsamples.%d.%s", b * (nrb + 2) + nrb + 1, d + used);
        return;
    } else
        return;
    const char *leaf = d + used;
    for (size_t i = 0; i < sizeof(inner) / sizeof(inner[0]); i++)
        if (!strncmp(leaf, inner[i][0], strlen(inner[i][0]))) {
            snprintf(out, cap, "%s%s%s", head, inner[i][1], leaf + strlen(inner[i][0]));
            return;
        }
}

typedef struct renamed {
    const mold_safetensors *st;
    size_t n;
    char (*names)[160];   /* Wan name of tensor i ("" = hidden) */
    const char *hide;     /* a Wan name to report missing (NULL = none) */
} renamed;

static const mold_tensor *renamed_find(void *ud, const char *name) {
    renamed *r = ud;
    if (r->hide && !strcmp(name, r->hide))
        return NULL;
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->names[i], name))
            return mold_safetensors_at(r->st, i);
    return NULL;
}

static void renamed_make(renamed *r, const model *m) {
    r->st = m->st;
    r->n = mold_safetensors_count(m->st);
    r->names = calloc(r->n, sizeof(*r->names));
    assert_non_null(r->names);
    for (size_t i = 0; i < r->n; i++)
        to_wan(mold_safetensors_at(m->st, i)->name, m->cfg.num_res_blocks, r->names[i],
               sizeof(r->names[i]));
}

static void test_wan_names(void **state) {
    (void)state;
    const mold_vae_config *c = &g_tiny.cfg;
    renamed r = {0};
    renamed_make(&r, &g_tiny);
    int n_up = 0;
    for (size_t i = 0; i < r.n; i++)
        n_up += !strcmp(r.names[i], "decoder.upsamples.14.residual.6.weight");
    assert_int_equal(n_up, 1); /* the last resnet of the last up block, as in appendix A */
    mold_tensor_source src = {renamed_find, &r, "wan-renamed"};
    mold_vae *wan;
    tu_ok(mold_vae_load(g_be, c, &src, &wan), "load Wan names");
    float *z = random_latent(c, 6, 4, 3);
    float *a = decode(g_tiny.vae, c, z, 6, 4, NULL), *b = decode(wan, c, z, 6, 4, NULL);
    double mean, max;
    diff_stats("Wan names vs diffusers names", b, a, img_elems(c, 6, 4), &mean, &max);
    assert_memory_equal(a, b, img_elems(c, 6, 4) * sizeof(float));
    /* a missing Wan tensor is named in the error */
    r.hide = "decoder.upsamples.7.resample.1.bias";
    mold_vae *bad = NULL;
    tu_expect_error(mold_vae_load(g_be, c, &src, &bad), MOLD_E_NOTFOUND,
                    "decoder.upsamples.7.resample.1.bias", "hidden Wan tensor");
    assert_null(bad);
    mold_vae_free(wan);
    free(a);
    free(b);
    free(z);
    free(r.names);
}

/* ---- memory predictions ---- */

static void test_memory(void **state) {
    (void)state;
    const mold_vae_config *c = &g_tiny.cfg;
    uint64_t wb;
    tu_ok(mold_vae_weight_bytes(c, MOLD_BF16, &wb), "weight bytes");
    printf("  weight bytes: predicted %llu, loaded %llu\n", (unsigned long long)wb,
           (unsigned long long)mold_vae_loaded_bytes(g_tiny.vae));
    assert_int_equal(wb, mold_vae_loaded_bytes(g_tiny.vae));
    const mold_vae_tiling t16 = {16, 4};
    const bool fused = g_be->i->conv3x3_fused != NULL;
    uint64_t a, b, full, small;
    tu_ok(mold_vae_workspace_bytes(c, 32, 32, &t16, fused, &a), "ws 32x32");
    tu_ok(mold_vae_workspace_bytes(c, 166, 100, &t16, fused, &b), "ws 166x100");
    tu_ok(mold_vae_workspace_bytes(c, 16, 16, NULL, fused, &small), "ws 16x16 full");
    tu_ok(mold_vae_workspace_bytes(c, 32, 32, NULL, fused, &full), "ws 32x32 full");
    printf("  workspace (%s path): tile 16 -> %llu bytes (32x32 and 166x100), full 32x32 %llu\n",
           fused ? "fused" : "composed", (unsigned long long)a, (unsigned long long)full);
    assert_int_equal(a, b);
    assert_int_equal(a, small);
    assert_true(full > a);
    /* base_dim 96 at 1328x1328 (166x166): the composed path's largest map is
     * the 192 x 1328^2 f32 upsampled input of the last resample conv; the
     * fused path keeps two 96 x 1328^2 maps (X, T2) and a smaller T1 */
    mold_vae_config real = *c;
    real.base_dim = 96;
    uint64_t comp, fuse;
    tu_ok(mold_vae_workspace_bytes(&real, 166, 166, NULL, false, &comp), "ws real composed");
    tu_ok(mold_vae_workspace_bytes(&real, 166, 166, NULL, true, &fuse), "ws real fused");
    printf("  workspace real model 1328x1328 full: composed %.3f GiB, fused %.3f GiB\n",
           (double)comp / (1 << 30), (double)fuse / (1 << 30));
    assert_true(comp >= 192ull * 1328 * 1328 * 4);
    assert_true(comp <= 4 * 192ull * 1328 * 1328 * 4);
    assert_true(fuse >= 2 * 96ull * 1328 * 1328 * 4);
    assert_true(fuse < comp);
}

/* ---- bad input ---- */

typedef struct reshaped {
    const mold_safetensors *st;
    const char *name;
    mold_tensor fake; /* the named tensor with a wrong shape */
} reshaped;

static const mold_tensor *reshaped_find(void *ud, const char *name) {
    reshaped *r = ud;
    const mold_tensor *t = mold_safetensors_find(r->st, name);
    if (t && !strcmp(name, r->name)) {
        r->fake = *t;
        r->fake.shape[1] /= 2; /* c_in halved */
        r->fake.shape[0] *= 2;
        return &r->fake;
    }
    return t;
}

static void test_errors(void **state) {
    (void)state;
    const mold_vae_config *c = &g_tiny.cfg;
    mold_vae *v = NULL;
    reshaped r = {g_tiny.st, "decoder.up_blocks.1.resnets.0.conv1.weight", {0}};
    mold_tensor_source src = {reshaped_find, &r, "reshaped"};
    tu_expect_error(mold_vae_load(g_be, c, &src, &v), MOLD_E_FORMAT,
                    "decoder.up_blocks.1.resnets.0.conv1.weight': expected shape [128, 64",
                    "bad conv shape");
    assert_null(v);
    mold_vae_config bad = *c;
    bad.base_dim = 16; /* checkpoint is base_dim 32 */
    tu_expect_error(mold_vae_load(g_be, &bad, &g_tiny.src, &v), MOLD_E_FORMAT,
                    "expected shape", "config/checkpoint mismatch");
    bad = *c;
    bad.n_attn_scales = 1;
    tu_expect_error(mold_vae_load(g_be, &bad, &g_tiny.src, &v), MOLD_E_UNSUPPORTED,
                    "attn_scales", "attn_scales");
    float z[16 * 4] = {0}, img[3 * 64 * 4];
    tu_expect_error(mold_vae_decode(g_tiny.vae, z, 0, 4, NULL, img), MOLD_E_INVALID,
                    "latent size", "zero height");
    const mold_vae_tiling t0 = {4, 4}, t1 = {0, 0}, t2 = {4, -1};
    tu_expect_error(mold_vae_decode(g_tiny.vae, z, 2, 2, &t0, img), MOLD_E_INVALID,
                    "overlap < tile", "overlap == tile");
    tu_expect_error(mold_vae_decode(g_tiny.vae, z, 2, 2, &t1, img), MOLD_E_INVALID, "tile >= 1",
                    "tile 0");
    tu_expect_error(mold_vae_decode(g_tiny.vae, z, 2, 2, &t2, img), MOLD_E_INVALID,
                    "overlap", "negative overlap");
}

/* ---- timing (printed, recorded in docs/perf/vae.md) ---- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_timing(void **state) {
    (void)state;
    const mold_vae_config *c = &g_tiny.cfg;
    int h = 32, w = 32;
    float *z = random_latent(c, h, w, 5);
    double t0 = now_s();
    float *img = decode(g_tiny.vae, c, z, h, w, NULL);
    double t1 = now_s();
    double mp = (double)(h * 8) * (w * 8) / 1e6;
    printf("  tiny vae %dx%d px, 2 threads: %.3f s wall (%.2f s/MP)\n", w * 8, h * 8, t1 - t0,
           (t1 - t0) / mp);
    assert_true(t1 > t0);
    free(img);
    free(z);
}

/* ---- main ---- */

static int setup(void **state) {
    (void)state;
    tu_backend_create(2, &g_be);
    model_open(&g_tiny, tu_fixture("qwen-image-tiny/model/vae"));
    return 0;
}

static int teardown(void **state) {
    (void)state;
    model_close(&g_tiny);
    mold_backend_free(g_be);
    return 0;
}

int main(void) {
    if (tu_backend_is_cuda()) { /* the golden cases and the exactness checks only:
                                 * the tiled bounds are CPU measurements */
        const struct CMUnitTest gpu[] = {
            cmocka_unit_test(test_golden_tiny), cmocka_unit_test(test_golden_hd128),
            cmocka_unit_test(test_single_tile_identical), cmocka_unit_test(test_wan_names),
        };
        return cmocka_run_group_tests(gpu, setup, teardown);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_tiny),         cmocka_unit_test(test_golden_hd128),
        cmocka_unit_test(test_single_tile_identical), cmocka_unit_test(test_tiled_fixture_latent),
        cmocka_unit_test(test_tiled_random_32),
        cmocka_unit_test(test_tiled_equals_manual_blend),     cmocka_unit_test(test_wan_names),
        cmocka_unit_test(test_memory),              cmocka_unit_test(test_errors),
        cmocka_unit_test(test_timing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
