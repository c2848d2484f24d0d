/*
 * cpu_conv.c — conv2d (stride 1, zero padding) and nearest upsample2x on
 * [C, H, W] f32 images.
 *
 * conv2d is im2col + sgemm in bounded bands: a task owns CV_P output pixels
 * (a flat range of the H_out x W_out plane) and CV_NT output channels. For each
 * K slice of CV_KC rows of the patch matrix (k = (ci, dy, dx), PyTorch weight
 * order) it builds those patch rows for its pixels in scratch, converts the
 * matching weight slice to f32 (unless it is f32 already) and accumulates
 * y[co tile, pixel band] += Wslice · cols with one single-threaded sgemm.
 * 1x1 convolutions without padding read x directly (no im2col).
 * Band, channel-tile and K-slice boundaries depend only on the shapes, so
 * results are identical for any thread count.
 *
 * Scratch per task: CV_NT x CV_KC weight floats + CV_KC x CV_P patch floats
 * (917,504 floats = 3.5 MiB), whatever the image size.
 */
#include <cblas.h> /* defines: cblas_sgemm */
#include <limits.h>
#include <string.h>

#include "cpu_internal.h"

enum {
    CV_NT = 384,  /* output channels per task (the Wan VAE's widest layer) */
    CV_KC = 1024, /* patch rows per K slice */
    CV_P = 512,   /* output pixels per band */
    UP_ROWS = 64, /* input rows per upsample task */
};

typedef struct conv_ctx {
    float *y;              /* [c_out, oh, ow] */
    const float *x;        /* [c_in, h, w] */
    const float *bias;     /* [c_out] or NULL */
    const mold_weight *wt; /* [c_out, c_in * kh * kw] */
    int64_t c_in, h, w, kh, kw, pad, oh, ow, c_out, k, kc, n_cot;
    bool direct; /* 1x1, no padding: x is already the patch matrix */
} conv_ctx;

/* Writes patch rows k0 .. k0+kc for output pixels p0 .. p0+np into col
 * ([kc, np]): col[kk][p] = x[ci][oy + dy - pad][ox + dx - pad] or 0 outside. */
static void im2col(const conv_ctx *c, int64_t k0, int64_t kc, int64_t p0, int64_t np,
                   float *col) {
    int64_t taps = c->kh * c->kw;
    for (int64_t kk = 0; kk < kc; kk++) {
        int64_t k = k0 + kk, ci = k / taps, dy = (k % taps) / c->kw, dx = k % c->kw;
        const float *xc = c->x + ci * c->h * c->w;
        float *dst = col + kk * np;
        for (int64_t p = p0; p < p0 + np;) {
            int64_t oy = p / c->ow, ox = p % c->ow;
            int64_t seg = c->ow - ox; /* pixels left in this output row */
            if (seg > p0 + np - p)
                seg = p0 + np - p;
            int64_t iy = oy + dy - c->pad, ix0 = ox + dx - c->pad;
            float *d = dst + (p - p0);
            if (iy < 0 || iy >= c->h) {
                memset(d, 0, (size_t)seg * sizeof(float));
            } else {
                /* valid input columns: 0 <= ix0 + j < w */
                int64_t j0 = ix0 < 0 ? -ix0 : 0;
                int64_t j1 = c->w - ix0 < seg ? c->w - ix0 : seg;
                if (j1 < j0)
                    j1 = j0;
                if (j0 > seg)
                    j0 = j1 = seg;
                memset(d, 0, (size_t)j0 * sizeof(float));
                if (j1 > j0)
                    memcpy(d + j0, xc + iy * c->w + ix0 + j0, (size_t)(j1 - j0) * sizeof(float));
                memset(d + j1, 0, (size_t)(seg - j1) * sizeof(float));
            }
            p += seg;
        }
    }
}

static void conv_task(void *ud, int64_t task, float *scratch) {
    const conv_ctx *c = ud;
    int64_t band = task / c->n_cot, cot = task % c->n_cot;
    int64_t ohw = c->oh * c->ow;
    int64_t p0 = band * CV_P, np = ohw - p0 < CV_P ? ohw - p0 : CV_P;
    int64_t co0 = cot * CV_NT, nco = c->c_out - co0 < CV_NT ? c->c_out - co0 : CV_NT;
    float *wbuf = scratch;              /* [nco, kc] converted weights */
    float *col = scratch + CV_NT * CV_KC; /* [kc, np] patch rows */
    float *y = c->y + co0 * ohw + p0;
    float beta0 = 0.0f;
    if (c->bias) {
        for (int64_t co = 0; co < nco; co++)
            for (int64_t p = 0; p < np; p++)
                y[co * ohw + p] = c->bias[co0 + co];
        beta0 = 1.0f;
    }
    for (int64_t k0 = 0; k0 < c->k; k0 += c->kc) {
        int64_t kc = c->k - k0 < c->kc ? c->k - k0 : c->kc;
        const float *b = col;
        int ldb = (int)np;
        if (c->direct) {
            b = c->x + k0 * ohw + p0;
            ldb = (int)ohw;
        } else {
            im2col(c, k0, kc, p0, np, col);
        }
        const float *a = wbuf;
        int lda = (int)kc;
        if (mold_cpu_weight_is_f32(c->wt)) {
            a = (const float *)c->wt->data + co0 * c->k + k0;
            lda = (int)c->k;
        } else {
            mold_cpu_weight_rows_f32(c->wt, co0, nco, k0, kc, wbuf);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nco, (int)np, (int)kc, 1.0f,
                    a, lda, b, ldb, k0 == 0 ? beta0 : 1.0f, y, (int)ohw);
    }
}

mold_status mold_cpu_conv2d(mold_backend *be, float *y, const float *x, int64_t c_in, int64_t h,
                            int64_t w, const mold_weight *wt, int64_t kh, int64_t kw, int64_t pad,
                            const float *bias) {
    MOLD_TRY(mold_cpu_weight_check(wt, "conv2d"));
    if (c_in <= 0 || h <= 0 || w <= 0 || kh <= 0 || kw <= 0 || pad < 0)
        return MOLD_ERR(MOLD_E_INVALID,
                        "conv2d: expected positive c_in, h, w, kh, kw and pad >= 0, got "
                        "c_in=%lld h=%lld w=%lld kh=%lld kw=%lld pad=%lld",
                        (long long)c_in, (long long)h, (long long)w, (long long)kh, (long long)kw,
                        (long long)pad);
    if (wt->n_in != c_in * kh * kw)
        return MOLD_ERR(MOLD_E_INVALID, "conv2d: expected weight n_in = %lld (c_in x kh x kw), got %lld",
                        (long long)(c_in * kh * kw), (long long)wt->n_in);
    int64_t oh = h + 2 * pad - kh + 1, ow = w + 2 * pad - kw + 1;
    if (oh <= 0 || ow <= 0)
        return MOLD_ERR(MOLD_E_INVALID, "conv2d: kernel %lldx%lld larger than padded %lldx%lld input",
                        (long long)kh, (long long)kw, (long long)(h + 2 * pad), (long long)(w + 2 * pad));
    if (oh * ow > INT_MAX || c_in * h * w > INT_MAX || wt->n_out * oh * ow > (int64_t)1 << 40)
        return MOLD_ERR(MOLD_E_RANGE, "conv2d: image %lldx%lld too large", (long long)h, (long long)w);
    if (!y || !x)
        return MOLD_ERR(MOLD_E_INVALID, "conv2d: NULL x or y");
    if (cpu_overlap(y, wt->n_out * oh * ow, x, c_in * h * w))
        return MOLD_ERR(MOLD_E_INVALID, "conv2d: y overlaps x (in-place is not supported)");
    conv_ctx c = { .y = y, .x = x, .bias = bias, .wt = wt, .c_in = c_in, .h = h, .w = w, .kh = kh,
                   .kw = kw, .pad = pad, .oh = oh, .ow = ow, .c_out = wt->n_out, .k = wt->n_in,
                   .kc = mold_cpu_weight_kc(wt, CV_KC), .n_cot = cpu_n_chunks(wt->n_out, CV_NT),
                   .direct = kh == 1 && kw == 1 && pad == 0 };
    MOLD_ASSERT(CV_NT * CV_KC + CV_KC * CV_P <= CPU_SCRATCH_FLOATS && c.kc <= CV_KC);
    mold_cpu_parallel(cpu_of(be), cpu_n_chunks(oh * ow, CV_P) * c.n_cot, conv_task, &c);
    return MOLD_OK;
}

/* ---- upsample2x ---- */

typedef struct up_ctx {
    float *y;       /* [c, 2h, 2w] */
    const float *x; /* [c, h, w] */
    int64_t c, h, w;
} up_ctx;

/* Task = UP_ROWS input rows of the flattened [c * h, w] image. */
static void up_task(void *ud, int64_t task, float *scratch) {
    (void)scratch;
    const up_ctx *c = ud;
    int64_t rows = c->c * c->h;
    int64_t r1 = (task + 1) * UP_ROWS < rows ? (task + 1) * UP_ROWS : rows;
    for (int64_t r = task * UP_ROWS; r < r1; r++) {
        const float *src = c->x + r * c->w;
        float *d0 = c->y + (2 * r) * (2 * c->w); /* row 2i of channel ch == flat row 2r */
        for (int64_t j = 0; j < c->w; j++)
            d0[2 * j] = d0[2 * j + 1] = src[j];
        memcpy(d0 + 2 * c->w, d0, (size_t)(2 * c->w) * sizeof(float));
    }
}

mold_status mold_cpu_upsample2x(mold_backend *be, float *y, const float *x, int64_t c, int64_t h,
                                int64_t w) {
    if (c <= 0 || h <= 0 || w <= 0)
        return MOLD_ERR(MOLD_E_INVALID, "upsample2x: expected positive c, h, w, got %lld, %lld, %lld",
                        (long long)c, (long long)h, (long long)w);
    if (!y || !x || y == x)
        return MOLD_ERR(MOLD_E_INVALID, "upsample2x: NULL or aliased x / y");
    up_ctx ctx = { .y = y, .x = x, .c = c, .h = h, .w = w };
    mold_cpu_parallel(cpu_of(be), cpu_n_chunks(c * h, UP_ROWS), up_task, &ctx);
    return MOLD_OK;
}
