/*
 * cpu_norm.c — rms_norm, layer_norm_modulate, channel_rms_norm and its
 * per-pixel factor alone (channel_rms_scale).
 *
 * Statistics are accumulated in double in index order (one row or one pixel
 * at a time, never split across tasks), then applied in f32. Each output
 * value depends only on its own row/pixel, so the row-chunk partition does not
 * affect results. y may alias x: a row's statistics are complete before any
 * of its outputs is written, and y[j] reads only x[j].
 *
 * References: Qwen2RMSNorm (transformers), nn.LayerNorm(elementwise_affine=
 * False) + AdaLN modulation (diffusers QwenImageTransformerBlock), Wan
 * RMS_norm (F.normalize over channels * sqrt(C) * gamma).
 */
#include <math.h>

#include "cpu_internal.h"

enum { NORM_TASK_FLOATS = 32768, CHAN_BAND = 2048 };

/* Rows per task so a task handles ~NORM_TASK_FLOATS values. */
static int64_t rows_per_task(int64_t dim) {
    int64_t r = NORM_TASK_FLOATS / (dim > 0 ? dim : 1);
    return r < 1 ? 1 : r;
}

static mold_status check_rows(const char *op, const void *y, const void *x, int64_t rows,
                              int64_t dim) {
    if (rows < 0 || dim <= 0)
        return MOLD_ERR(MOLD_E_INVALID, "%s: expected rows >= 0 and dim > 0, got %lld x %lld", op,
                        (long long)rows, (long long)dim);
    if (rows > 0 && (!y || !x))
        return MOLD_ERR(MOLD_E_INVALID, "%s: NULL x or y", op);
    return MOLD_OK;
}

/* ---- rms_norm ---- */

typedef struct norm_ctx {
    float *y;
    const float *x;
    const float *p0, *p1; /* gamma | shift, scale */
    int64_t rows, dim, rpt;
    float eps;
} norm_ctx;

static void rms_task(void *ud, int64_t task, float *scratch) {
    (void)scratch;
    const norm_ctx *c = ud;
    int64_t r1 = (task + 1) * c->rpt < c->rows ? (task + 1) * c->rpt : c->rows;
    for (int64_t r = task * c->rpt; r < r1; r++) {
        const float *x = c->x + r * c->dim;
        float *y = c->y + r * c->dim;
        double ss = 0.0;
        for (int64_t j = 0; j < c->dim; j++)
            ss += (double)x[j] * x[j];
        float inv = (float)(1.0 / sqrt(ss / (double)c->dim + (double)c->eps));
        if (c->p0) {
            for (int64_t j = 0; j < c->dim; j++)
                y[j] = x[j] * inv * c->p0[j];
        } else {
            for (int64_t j = 0; j < c->dim; j++)
                y[j] = x[j] * inv;
        }
    }
}

mold_status mold_cpu_rms_norm(mold_backend *be, float *y, const float *x, const float *gamma,
                              int64_t rows, int64_t dim, float eps) {
    MOLD_TRY(check_rows("rms_norm", y, x, rows, dim));
    norm_ctx c = { .y = y, .x = x, .p0 = gamma, .rows = rows, .dim = dim,
                   .rpt = rows_per_task(dim), .eps = eps };
    mold_cpu_parallel(cpu_of(be), cpu_n_chunks(rows, c.rpt), rms_task, &c);
    return MOLD_OK;
}

/* ---- layer_norm_modulate ---- */

static void ln_task(void *ud, int64_t task, float *scratch) {
    (void)scratch;
    const norm_ctx *c = ud;
    int64_t r1 = (task + 1) * c->rpt < c->rows ? (task + 1) * c->rpt : c->rows;
    for (int64_t r = task * c->rpt; r < r1; r++) {
        const float *x = c->x + r * c->dim;
        float *y = c->y + r * c->dim;
        double sum = 0.0, sq = 0.0;
        for (int64_t j = 0; j < c->dim; j++)
            sum += x[j];
        double mean = sum / (double)c->dim;
        for (int64_t j = 0; j < c->dim; j++)
            sq += ((double)x[j] - mean) * ((double)x[j] - mean);
        float rstd = (float)(1.0 / sqrt(sq / (double)c->dim + (double)c->eps));
        float meanf = (float)mean;
        for (int64_t j = 0; j < c->dim; j++) {
            float v = (x[j] - meanf) * rstd;
            float sc = c->p1 ? 1.0f + c->p1[j] : 1.0f;
            float sh = c->p0 ? c->p0[j] : 0.0f;
            y[j] = v * sc + sh;
        }
    }
}

mold_status mold_cpu_layer_norm_modulate(mold_backend *be, float *y, const float *x,
                                         const float *shift, const float *scale, int64_t rows,
                                         int64_t dim, float eps) {
    MOLD_TRY(check_rows("layer_norm_modulate", y, x, rows, dim));
    norm_ctx c = { .y = y, .x = x, .p0 = shift, .p1 = scale, .rows = rows, .dim = dim,
                   .rpt = rows_per_task(dim), .eps = eps };
    mold_cpu_parallel(cpu_of(be), cpu_n_chunks(rows, c.rpt), ln_task, &c);
    return MOLD_OK;
}

/* ---- channel_rms_norm ---- */

typedef struct chan_ctx {
    float *y;
    const float *x;     /* [c, hw] */
    const float *gamma; /* [c] or NULL */
    int64_t c, hw;
} chan_ctx;

/* inv[p] = sqrt(C) / max(||x[:, p0 + p]||, 1e-12) for p < np: sums of
 * squares over channels per pixel (double, in channel order) in ss. */
static void chan_inv(const chan_ctx *c, int64_t p0, int64_t np, double *ss, float *inv) {
    for (int64_t p = 0; p < np; p++)
        ss[p] = 0.0;
    for (int64_t ch = 0; ch < c->c; ch++) {
        const float *x = c->x + ch * c->hw + p0;
        for (int64_t p = 0; p < np; p++)
            ss[p] += (double)x[p] * x[p];
    }
    double root_c = sqrt((double)c->c);
    for (int64_t p = 0; p < np; p++) {
        double nrm = sqrt(ss[p]);
        inv[p] = (float)(root_c / (nrm > 1e-12 ? nrm : 1e-12));
    }
}

/* One band of CHAN_BAND pixels: the per-pixel factors in scratch, then
 * every channel scaled. */
static void chan_task(void *ud, int64_t task, float *scratch) {
    const chan_ctx *c = ud;
    int64_t p0 = task * CHAN_BAND;
    int64_t np = c->hw - p0 < CHAN_BAND ? c->hw - p0 : CHAN_BAND;
    double *ss = (double *)scratch; /* [np] */
    float *inv = (float *)(ss + np); /* [np] */
    chan_inv(c, p0, np, ss, inv);
    for (int64_t ch = 0; ch < c->c; ch++) {
        const float *x = c->x + ch * c->hw + p0;
        float *y = c->y + ch * c->hw + p0;
        float g = c->gamma ? c->gamma[ch] : 1.0f;
        for (int64_t p = 0; p < np; p++)
            y[p] = x[p] * inv[p] * g;
    }
}

mold_status mold_cpu_channel_rms_norm(mold_backend *be, float *y, const float *x,
                                      const float *gamma, int64_t c, int64_t hw) {
    MOLD_TRY(check_rows("channel_rms_norm", y, x, hw, c));
    chan_ctx ctx = { .y = y, .x = x, .gamma = gamma, .c = c, .hw = hw };
    MOLD_ASSERT(CHAN_BAND * 3 <= CPU_SCRATCH_FLOATS);
    mold_cpu_parallel(cpu_of(be), cpu_n_chunks(hw, CHAN_BAND), chan_task, &ctx);
    return MOLD_OK;
}

/* ---- channel_rms_scale ---- */

/* The factors of one band, written straight to the output (c->y, [hw]). */
static void chan_scale_task(void *ud, int64_t task, float *scratch) {
    const chan_ctx *c = ud;
    int64_t p0 = task * CHAN_BAND;
    int64_t np = c->hw - p0 < CHAN_BAND ? c->hw - p0 : CHAN_BAND;
    chan_inv(c, p0, np, (double *)scratch, c->y + p0);
}

mold_status mold_cpu_channel_rms_scale(mold_backend *be, float *s, const float *x, int64_t c,
                                       int64_t hw) {
    MOLD_TRY(check_rows("channel_rms_scale", s, x, hw, c));
    chan_ctx ctx = { .y = s, .x = x, .c = c, .hw = hw };
    MOLD_ASSERT(CHAN_BAND * 2 <= CPU_SCRATCH_FLOATS);
    mold_cpu_parallel(cpu_of(be), cpu_n_chunks(hw, CHAN_BAND), chan_scale_task, &ctx);
    return MOLD_OK;
}
