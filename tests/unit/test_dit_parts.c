/*
 * test_dit_parts.c — the Qwen-Image transformer's pieces with hand-checkable
 * values (spec 4.3.1, 4.4, C.1, C.2) and the modulation order on a synthetic
 * one-block model whose output this file recomputes on the host.
 *
 * The synthetic model makes every modulation chunk observable: image queries
 * and keys are zero (uniform attention), text keys are masked out
 * (txt_len = 0), values and the attention output projection are identities,
 * and the MLP is gelu on the first D hidden units. Then per image token
 *   h1 = h0 + gate1 * mean_n(LN(h0)*(1+scale1)+shift1)
 *   h2 = h1 + gate2 * gelu(LN(h1)*(1+scale2)+shift2)
 *   V  = proj_out(LN(h2)*(1+scale_o)+shift_o)
 * with [shift1|scale1|gate1|shift2|scale2|gate2] = img_mod(silu(temb)) and
 * [scale_o|shift_o] = norm_out(silu(temb)); a swapped chunk changes V.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "models/qwenimage_dit.h"

/* ---- timestep sinusoid ---- */

static void test_timestep_values(void **state) {
    (void)state;
    float e[MOLD_DIT_TIME_CHANNELS];
    /* sigma 0: every angle is 0 -> cos half 1, sin half 0 */
    mold_dit_timestep_sincos(0.0f, e);
    for (int k = 0; k < 128; k++) {
        assert_true(e[k] == 1.0f);
        assert_true(e[128 + k] == 0.0f);
    }
    /* sigma 0.5: k=0 -> f=1, a=500; k=64 -> f=10000^-0.5=0.01, a=5 (cos first) */
    mold_dit_timestep_sincos(0.5f, e);
    const float got[4] = {e[0], e[128], e[64], e[128 + 64]};
    const float want[4] = {-0.88384927f, -0.46777181f, 0.28366219f, -0.95892427f};
    tu_check_close("sincos(0.5) at k=0,64", got, want, 4, 1e-5);
    /* sigma 0.001: a_k = f_k itself: k=0 -> cos 1 = 0.5403023, sin 1 = 0.8414710 */
    mold_dit_timestep_sincos(0.001f, e);
    const float got1[2] = {e[0], e[128]}, want1[2] = {0.54030231f, 0.84147098f};
    tu_check_close("sincos(0.001) at k=0", got1, want1, 2, 1e-5);
    /* whole vector against the formula in double (argument rounding of a
     * ~930 rad angle in fp32 allows ~1e-4 absolute) */
    mold_dit_timestep_sincos(0.93f, e);
    float ref[MOLD_DIT_TIME_CHANNELS];
    for (int k = 0; k < 128; k++) {
        double a = 1000.0 * 0.93 * exp(-log(10000.0) * k / 128.0);
        ref[k] = (float)cos(a);
        ref[128 + k] = (float)sin(a);
    }
    printf("  sincos(0.93) max abs vs double formula %.3e\n",
           tu_max_abs_error(e, ref, MOLD_DIT_TIME_CHANNELS));
    assert_true(tu_max_abs_error(e, ref, MOLD_DIT_TIME_CHANNELS) < 2e-4);
}

/* ---- RoPE positions and angles ---- */

static void check_positions(int th, int tw, int L, const int *rows, const int *cols, int s0) {
    int32_t img[64][3], txt[8][3];
    mold_dit_rope_positions(th, tw, L, img, txt);
    for (int r = 0; r < th; r++)
        for (int c = 0; c < tw; c++) {
            const int32_t *p = img[r * tw + c];
            if (p[0] != 0 || p[1] != rows[r] || p[2] != cols[c])
                fail_msg("%dx%d token (%d,%d): expected (0,%d,%d), got (%d,%d,%d)", th, tw, r, c,
                         rows[r], cols[c], p[0], p[1], p[2]);
        }
    for (int j = 0; j < L; j++)
        for (int a = 0; a < 3; a++)
            if (txt[j][a] != s0 + j)
                fail_msg("%dx%d text %d axis %d: expected %d, got %d", th, tw, j, a, s0 + j,
                         txt[j][a]);
    printf("  %dx%d grid: rows %d..%d, cols %d..%d, text from %d: ok\n", th, tw, rows[0],
           rows[th - 1], cols[0], cols[tw - 1], s0);
}

static void test_rope_positions(void **state) {
    (void)state;
    /* 3x5 (odd, diffusers centring r - ceil(h/2)): rows -2..0, cols -3..1,
     * text starts at max(3/2, 5/2) = 2 */
    const int r35[3] = {-2, -1, 0}, c35[5] = {-3, -2, -1, 0, 1};
    check_positions(3, 5, 4, r35, c35, 2);
    /* 4x6: rows -2..1, cols -3..2, text from max(2, 3) = 3 */
    const int r46[4] = {-2, -1, 0, 1}, c46[6] = {-3, -2, -1, 0, 1, 2};
    check_positions(4, 6, 4, r46, c46, 3);
    /* 1x1: the single token sits at -1 on both axes, text at 0 */
    const int r11[1] = {-1}, c11[1] = {-1};
    check_positions(1, 1, 2, r11, c11, 0);
}

static void test_rope_angles(void **state) {
    (void)state;
    /* tiny axes [8,12,12]: pairs 0-3 frame (omega 1, .1, .01, .001),
     * 4-9 rows (omega 10000^(-2k/12)), 10-15 cols */
    const int tiny[3] = {8, 12, 12};
    const int32_t pos_t[3] = {3, -2, 1}; /* a text-like frame position and a 3x5 image token */
    float ang[16];
    mold_dit_rope_angles(tiny, pos_t, ang);
    const float want_t[16] = {3.0f, 0.3f, 0.03f, 0.003f,
                              -2.0f, -2 * 0.21544347f, -2 * 0.046415888f, -2 * 0.01f,
                              -2 * 0.0021544347f, -2 * 0.00046415888f,
                              1.0f, 0.21544347f, 0.046415888f, 0.01f, 0.0021544347f,
                              0.00046415888f};
    tu_check_close("tiny angles (3,-2,1)", ang, want_t, 16, 1e-6);
    /* real axes [16,56,56]: 8 frame pairs, 28 row pairs, 28 col pairs */
    const int real[3] = {16, 56, 56};
    const int32_t pos_r[3] = {0, -42, 40}; /* corner token of the 83x83 grid (1328^2) */
    float a2[64];
    mold_dit_rope_angles(real, pos_r, a2);
    for (int m = 0; m < 8; m++) assert_true(a2[m] == 0.0f);
    const float got[5] = {a2[8], a2[9], a2[35], a2[36], a2[37]};
    const float want[5] = {-42.0f, -42 * 0.71968567f, -42.0f * (float)pow(10000.0, -54.0 / 56),
                           40.0f, 40 * 0.71968567f};
    tu_check_close("real angles (0,-42,40)", got, want, 5, 1e-6);
}

/* ---- synthetic one-block model: modulation order ---- */

enum { SD = 8, SF = 32, SJ = 8, SIN = 64, SOUT = 64, SN = 2 };

typedef struct mem_tensor {
    char name[96];
    mold_tensor t;
    float *data;
} mem_tensor;

typedef struct mem_source {
    mem_tensor v[64];
    int n;
} mem_source;

static const mold_tensor *mem_find(void *ud, const char *name) {
    mem_source *m = ud;
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->v[i].name, name)) return &m->v[i].t;
    return NULL;
}

static uint32_t rng = 12345;
static float urand(void) { /* uniform in [-0.5, 0.5) */
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 16777216.0f - 0.5f;
}

enum fill { F_RAND, F_ZERO, F_ONE, F_EYE };

/* Adds a tensor [rows, cols] (cols 0 = 1-D) filled per `f`; returns data. */
static float *add(mem_source *m, const char *name, int64_t rows, int64_t cols, enum fill f) {
    mem_tensor *e = &m->v[m->n++];
    int64_t n = rows * (cols ? cols : 1);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->data = calloc((size_t)n, sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        int64_t r = cols ? i / cols : i, c = cols ? i % cols : i;
        e->data[i] = f == F_RAND ? urand() : f == F_ONE ? 1.0f : (f == F_EYE && r == c) ? 1.0f : 0.0f;
    }
    e->t.name = e->name;
    e->t.dtype = MOLD_F32;
    e->t.n_dims = cols ? 2 : 1;
    e->t.shape[0] = rows;
    e->t.shape[1] = cols;
    e->t.data = e->data;
    e->t.n_bytes = (uint64_t)n * sizeof(float);
    return e->data;
}

static float *lin(mem_source *m, const char *name, int64_t rows, int64_t cols, enum fill fw,
                  enum fill fb) {
    char n[96];
    snprintf(n, sizeof n, "%s.weight", name);
    float *w = add(m, n, rows, cols, fw);
    snprintf(n, sizeof n, "%s.bias", name);
    add(m, n, rows, 0, fb);
    return w;
}

static float *find_data(mem_source *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->v[i].name, name)) return m->v[i].data;
    fail_msg("no tensor %s", name);
    return NULL;
}

/* ---- host reference ---- */
static void h_linear(float *y, const float *x, int64_t m, const float *w, const float *b,
                     int64_t n_out, int64_t n_in) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t o = 0; o < n_out; o++) {
            double s = b ? b[o] : 0;
            for (int64_t k = 0; k < n_in; k++) s += (double)w[o * n_in + k] * x[i * n_in + k];
            y[i * n_out + o] = (float)s;
        }
}
static float h_silu(float x) { return x / (1.0f + expf(-x)); }
static float h_gelu(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608f * (x + 0.044715f * x * x * x)));
}
static void h_ln_mod(float *y, const float *x, const float *shift, const float *scale) {
    double mu = 0, var = 0;
    for (int i = 0; i < SD; i++) mu += x[i];
    mu /= SD;
    for (int i = 0; i < SD; i++) var += (x[i] - mu) * (x[i] - mu);
    var /= SD;
    for (int i = 0; i < SD; i++)
        y[i] = (float)((x[i] - mu) / sqrt(var + 1e-6)) * (1.0f + scale[i]) + shift[i];
}

/* Builds the synthetic model's tensors (see the file header). */
static void build_synthetic(mem_source *m) {
    lin(m, "img_in", SD, SIN, F_RAND, F_RAND);
    add(m, "txt_norm.weight", SJ, 0, F_ONE);
    lin(m, "txt_in", SD, SJ, F_RAND, F_RAND);
    lin(m, "time_text_embed.timestep_embedder.linear_1", SD, MOLD_DIT_TIME_CHANNELS, F_RAND, F_RAND);
    lin(m, "time_text_embed.timestep_embedder.linear_2", SD, SD, F_RAND, F_RAND);
    lin(m, "norm_out.linear", 2 * SD, SD, F_RAND, F_RAND);
    lin(m, "proj_out", SOUT, SD, F_RAND, F_RAND);
    const char *p = "transformer_blocks.0.";
    char n[96];
#define BL(name, r, c, fw, fb) (snprintf(n, sizeof n, "%s%s", p, name), lin(m, n, r, c, fw, fb))
#define BV(name, f) (snprintf(n, sizeof n, "%s%s", p, name), add(m, n, SD / 1, 0, f))
    BL("img_mod.1", 6 * SD, SD, F_RAND, F_RAND);
    BL("txt_mod.1", 6 * SD, SD, F_RAND, F_RAND);
    BL("attn.to_q", SD, SD, F_ZERO, F_ZERO);
    BL("attn.to_k", SD, SD, F_ZERO, F_ZERO);
    BL("attn.to_v", SD, SD, F_EYE, F_ZERO);
    BL("attn.add_q_proj", SD, SD, F_RAND, F_RAND);
    BL("attn.add_k_proj", SD, SD, F_RAND, F_RAND);
    BL("attn.add_v_proj", SD, SD, F_RAND, F_RAND);
    BL("attn.to_out.0", SD, SD, F_EYE, F_ZERO);
    BL("attn.to_add_out", SD, SD, F_RAND, F_RAND);
    BL("img_mlp.net.0.proj", SF, SD, F_EYE, F_ZERO);
    BL("img_mlp.net.2", SD, SF, F_EYE, F_ZERO);
    BL("txt_mlp.net.0.proj", SF, SD, F_RAND, F_RAND);
    BL("txt_mlp.net.2", SD, SF, F_RAND, F_RAND);
    BV("attn.norm_q.weight", F_ONE);
    BV("attn.norm_k.weight", F_ONE);
    BV("attn.norm_added_q.weight", F_RAND);
    BV("attn.norm_added_k.weight", F_RAND);
#undef BL
#undef BV
}

/* V for the synthetic model; `order` maps chunk index (shift1..gate2) to its
 * position in the img_mod vector, `out_swap` swaps norm_out's halves. */
static void reference(mem_source *m, const float *x, float sigma, const int order[6],
                      int out_swap, float *v) {
    float ts[MOLD_DIT_TIME_CHANNELS], t1[SD], temb[SD], mod[6 * SD], e[2 * SD];
    mold_dit_timestep_sincos(sigma, ts);
    h_linear(t1, ts, 1, find_data(m, "time_text_embed.timestep_embedder.linear_1.weight"),
             find_data(m, "time_text_embed.timestep_embedder.linear_1.bias"), SD,
             MOLD_DIT_TIME_CHANNELS);
    for (int i = 0; i < SD; i++) t1[i] = h_silu(t1[i]);
    h_linear(temb, t1, 1, find_data(m, "time_text_embed.timestep_embedder.linear_2.weight"),
             find_data(m, "time_text_embed.timestep_embedder.linear_2.bias"), SD, SD);
    for (int i = 0; i < SD; i++) temb[i] = h_silu(temb[i]);
    h_linear(mod, temb, 1, find_data(m, "transformer_blocks.0.img_mod.1.weight"),
             find_data(m, "transformer_blocks.0.img_mod.1.bias"), 6 * SD, SD);
    h_linear(e, temb, 1, find_data(m, "norm_out.linear.weight"),
             find_data(m, "norm_out.linear.bias"), 2 * SD, SD);
    const float *c[6];
    for (int i = 0; i < 6; i++) c[i] = mod + order[i] * SD;
    const float *sc_o = e + (out_swap ? SD : 0), *sh_o = e + (out_swap ? 0 : SD);

    float h[SN][SD], m1[SN][SD], mean[SD] = {0};
    h_linear(&h[0][0], x, SN, find_data(m, "img_in.weight"), find_data(m, "img_in.bias"), SD, SIN);
    for (int t = 0; t < SN; t++) {
        h_ln_mod(m1[t], h[t], c[0], c[1]);
        for (int i = 0; i < SD; i++) mean[i] += m1[t][i] / SN;
    }
    float o[SN][SD];
    for (int t = 0; t < SN; t++) {
        float m2[SD];
        for (int i = 0; i < SD; i++) h[t][i] += c[2][i] * mean[i];
        h_ln_mod(m2, h[t], c[3], c[4]);
        for (int i = 0; i < SD; i++) h[t][i] += c[5][i] * h_gelu(m2[i]);
        h_ln_mod(o[t], h[t], sh_o, sc_o);
    }
    h_linear(v, &o[0][0], SN, find_data(m, "proj_out.weight"), find_data(m, "proj_out.bias"), SOUT,
             SD);
}

static void test_modulation_order(void **state) {
    (void)state;
    static mem_source m; /* static: 64 entries are too big for a small stack */
    memset(&m, 0, sizeof m);
    build_synthetic(&m);
    mold_tensor_source src = {mem_find, &m, "synthetic"};
    mold_dit_config cfg = {.patch_size = 2, .in_channels = SIN, .out_channels = 16,
                           .num_layers = 1, .attention_head_dim = SD, .num_attention_heads = 1,
                           .joint_attention_dim = SJ, .axes_dims_rope = {2, 2, 4}};
    mold_backend *be;
    tu_ok(mold_backend_cpu_create(1, &be), "cpu backend");
    mold_dit *dit;
    tu_ok(mold_dit_load(be, &cfg, &src, &dit), "load synthetic");

    float x[SN * SIN], txt[3 * SJ];
    for (int i = 0; i < SN * SIN; i++) x[i] = 2.0f * urand();
    for (int i = 0; i < 3 * SJ; i++) txt[i] = urand();
    float *dx = be->i->alloc(be, sizeof x), *dt = be->i->alloc(be, sizeof txt);
    float *dout = be->i->alloc(be, SN * SOUT * sizeof(float));
    tu_ok(be->i->upload(be, dx, x, sizeof x), "upload");
    tu_ok(be->i->upload(be, dt, txt, sizeof txt), "upload");
    const int len0 = 0; /* every text key masked: image tokens see only image keys */
    const float sigma = 0.7f;
    tu_ok(mold_dit_forward(dit, 1, dx, 1, SN, dt, &len0, 3, &sigma, dout), "forward");
    float got[SN * SOUT], want[SN * SOUT], wrong[SN * SOUT];
    tu_ok(be->i->download(be, got, dout, sizeof got), "download");

    const int order[6] = {0, 1, 2, 3, 4, 5};
    reference(&m, x, sigma, order, 0, want);
    tu_check_close("synthetic block [shift,scale,gate]x2, norm_out [scale,shift]", got, want,
                   SN * SOUT, 1e-5);
    /* the test can tell each plausible mistake apart */
    const int swaps[4][6] = {{1, 0, 2, 3, 4, 5}, {0, 1, 2, 4, 3, 5}, {2, 1, 0, 3, 4, 5},
                             {3, 4, 5, 0, 1, 2}};
    for (int s = 0; s < 5; s++) {
        reference(&m, x, sigma, s < 4 ? swaps[s] : order, s == 4, wrong);
        double rel = tu_rel_error(got, wrong, SN * SOUT);
        printf("  wrong order variant %d: rel %.3e (must be large)\n", s, rel);
        assert_true(rel > 1e-2);
    }
    be->i->free(be, dx);
    be->i->free(be, dt);
    be->i->free(be, dout);
    mold_dit_free(dit);
    mold_backend_free(be);
    for (int i = 0; i < m.n; i++) free(m.v[i].data);
}

/* ---- hostile weights: missing tensor, wrong shape, wrong dtype size ---- */

static void test_load_errors(void **state) {
    (void)state;
    static mem_source m;
    memset(&m, 0, sizeof m);
    build_synthetic(&m);
    mold_tensor_source src = {mem_find, &m, "synthetic"};
    mold_dit_config cfg = {.patch_size = 2, .in_channels = SIN, .out_channels = 16,
                           .num_layers = 1, .attention_head_dim = SD, .num_attention_heads = 1,
                           .joint_attention_dim = SJ, .axes_dims_rope = {2, 2, 4}};
    mold_backend *be;
    tu_ok(mold_backend_cpu_create(1, &be), "cpu backend");
    mold_dit *dit = (mold_dit *)&m; /* must be reset to NULL on failure */

    /* a block tensor missing late in the load: everything before is released
     * (ASan/LSan runs of this test check that) */
    mem_tensor *nk = NULL;
    for (int i = 0; i < m.n; i++)
        if (!strcmp(m.v[i].name, "transformer_blocks.0.attn.norm_k.weight")) nk = &m.v[i];
    assert_non_null(nk);
    nk->name[0] = 'X';
    tu_expect_error(mold_dit_load(be, &cfg, &src, &dit), MOLD_E_NOTFOUND,
                    "'transformer_blocks.0.attn.norm_k.weight' not found", "missing norm_k");
    assert_null(dit);
    nk->name[0] = 't';

    /* a matrix with the wrong inner size */
    mold_tensor *to_v = (mold_tensor *)mem_find(&m, "transformer_blocks.0.attn.to_v.weight");
    to_v->shape[1] = SD / 2;
    tu_expect_error(mold_dit_load(be, &cfg, &src, &dit), MOLD_E_FORMAT,
                    "expected shape [8, 8], got [8, 4]", "to_v shape");
    to_v->shape[1] = SD;

    /* a config that disagrees with the weights (more layers than stored) */
    cfg.num_layers = 2;
    tu_expect_error(mold_dit_load(be, &cfg, &src, &dit), MOLD_E_NOTFOUND,
                    "transformer_blocks.1.", "extra layer");
    cfg.num_layers = 1;

    /* deriving the config from shapes: head dim 8 has no known rope axes */
    mold_dit_config got;
    tu_expect_error(mold_dit_config_from_source(&src, &got), MOLD_E_UNSUPPORTED,
                    "axes_dims_rope", "config from shapes, head dim 8");

    /* success after all that, then forward-argument errors */
    tu_ok(mold_dit_load(be, &cfg, &src, &dit), "load");
    float *buf = be->i->alloc(be, 4096);
    const int len[1] = {5};
    const float sig[1] = {0.5f};
    tu_expect_error(mold_dit_forward(dit, 1, buf, 1, 2, buf, len, 3, sig, buf), MOLD_E_RANGE,
                    "txt_len[0]: expected 0..3, got 5", "txt_len > n_txt");
    const float nan_sig[1] = {NAN};
    const int len_ok[1] = {3};
    tu_expect_error(mold_dit_forward(dit, 1, buf, 1, 2, buf, len_ok, 3, nan_sig, buf),
                    MOLD_E_INVALID, "sigma[0]", "NaN sigma");
    tu_expect_error(mold_dit_forward(dit, 1, buf, 0, 2, buf, len_ok, 3, sig, buf), MOLD_E_RANGE,
                    "token grid", "empty grid");
    be->i->free(be, buf);
    mold_dit_free(dit);
    mold_backend_free(be);
    for (int i = 0; i < m.n; i++) free(m.v[i].data);
}

/* ---- config and shape errors ---- */

static void test_errors(void **state) {
    (void)state;
    mold_dit_config cfg = {.patch_size = 2, .in_channels = 64, .out_channels = 16,
                           .num_layers = 60, .attention_head_dim = 128, .num_attention_heads = 24,
                           .joint_attention_dim = 3584, .axes_dims_rope = {16, 56, 56}};
    tu_ok(mold_dit_config_check(&cfg), "real config");
    mold_dit_config bad = cfg;
    bad.axes_dims_rope[2] = 48;
    tu_expect_error(mold_dit_config_check(&bad), MOLD_E_INVALID, "axes_dims_rope sum",
                    "axes sum");
    bad = cfg;
    bad.zero_cond_t = true;
    tu_expect_error(mold_dit_config_check(&bad), MOLD_E_UNSUPPORTED, "zero_cond_t", "edit flag");
    uint64_t b;
    tu_expect_error(mold_dit_workspace_bytes(&cfg, 0, 10, 1, &b), MOLD_E_RANGE, "n_img",
                    "empty image");
    /* the real model: 20,430,401,088 params (spec 9.1); bf16 matrices +
     * f32 vectors = 2 * 20,424,818,688 + 4 * 5,582,400 bytes */
    tu_ok(mold_dit_weight_bytes(&cfg, MOLD_BF16, &b), "weight bytes");
    printf("  real bf16 weight bytes %llu\n", (unsigned long long)b);
    assert_true(b == 2ull * 20424818688ull + 4ull * 5582400ull);
    /* a 1328^2 forward, batch 1, 512 text tokens: about half a GB */
    tu_ok(mold_dit_workspace_bytes(&cfg, 83 * 83, 512, 1, &b), "workspace");
    printf("  real workspace 1328^2 L=512 B=1: %.1f MiB\n", b / 1048576.0);
    assert_true(b > 400ull << 20 && b < 700ull << 20);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timestep_values),
        cmocka_unit_test(test_rope_positions),
        cmocka_unit_test(test_rope_angles),
        cmocka_unit_test(test_modulation_order),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
