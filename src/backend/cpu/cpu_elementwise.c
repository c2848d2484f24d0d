/*
 * cpu_elementwise.c — activations, sums, clamps, strided copies, the
 * transpose, CFG combination and the NaN/Inf counter.
 *
 * Every op here is per element (or per row for gated_add / cfg_combine), so
 * any partition gives the same result; large inputs are cut into fixed
 * EW_CHUNK-element tasks. y may alias the inputs: each output element reads
 * only the inputs at its own index (cfg_combine reads a whole row before
 * writing it).
 *
 * gelu_tanh is PyTorch's approximate="tanh" form:
 *   0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
 * cfg_combine is the Qwen-Image "norm-preserving" CFG (diffusers
 * QwenImagePipeline): comb = u + s (c - u); out = comb * ||c|| / ||comb||.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "cpu_internal.h"

enum { EW_CHUNK = 65536, EW_ROW_FLOATS = 32768, TR_TILE = 32, TR_BAND = 64 };

typedef enum ew_kind { EW_SILU, EW_GELU, EW_SWIGLU, EW_ADD, EW_AXPBY, EW_CLAMP } ew_kind;

typedef struct ew_ctx {
    ew_kind kind;
    float *y;
    const float *a, *b; /* a: x / gate / a; b: up / b */
    float p0, p1;       /* alpha, beta | lo, hi */
    int64_t n;
} ew_ctx;

static inline float silu(float x) { return x / (1.0f + expf(-x)); }

static inline float gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

static void ew_task(void *ud, int64_t task, float *scratch) {
    (void)scratch;
    const ew_ctx *c = ud;
    int64_t i0 = task * EW_CHUNK, i1 = i0 + EW_CHUNK < c->n ? i0 + EW_CHUNK : c->n;
    float *y = c->y;
    const float *a = c->a, *b = c->b;
    switch (c->kind) {
    case EW_SILU:
        for (int64_t i = i0; i < i1; i++) y[i] = silu(a[i]);
        break;
    case EW_GELU:
        for (int64_t i = i0; i < i1; i++) y[i] = gelu_tanh(a[i]);
        break;
    case EW_SWIGLU:
        for (int64_t i = i0; i < i1; i++) y[i] = silu(a[i]) * b[i];
        break;
    case EW_ADD:
        for (int64_t i = i0; i < i1; i++) y[i] = a[i] + b[i];
        break;
    case EW_AXPBY:
        for (int64_t i = i0; i < i1; i++) y[i] = a[i] * c->p0 + b[i] * c->p1;
        break;
    case EW_CLAMP:
        for (int64_t i = i0; i < i1; i++) {
            float v = a[i] < c->p0 ? c->p0 : a[i]; /* NaN stays NaN, like torch.clamp */
            y[i] = v > c->p1 ? c->p1 : v;
        }
        break;
    }
}

static mold_status ew_run(mold_backend *be, const char *op, ew_ctx *c, bool two_inputs) {
    if (c->n < 0)
        return MOLD_ERR(MOLD_E_INVALID, "%s: expected n >= 0, got %lld", op, (long long)c->n);
    if (c->n > 0 && (!c->y || !c->a || (two_inputs && !c->b)))
        return MOLD_ERR(MOLD_E_INVALID, "%s: NULL input or output", op);
    mold_cpu_parallel(cpu_of(be), cpu_n_chunks(c->n, EW_CHUNK), ew_task, c);
    return MOLD_OK;
}

mold_status mold_cpu_silu(mold_backend *be, float *y, const float *x, int64_t n) {
    ew_ctx c = { .kind = EW_SILU, .y = y, .a = x, .n = n };
    return ew_run(be, "silu", &c, false);
}

mold_status mold_cpu_gelu_tanh(mold_backend *be, float *y, const float *x, int64_t n) {
    ew_ctx c = { .kind = EW_GELU, .y = y, .a = x, .n = n };
    return ew_run(be, "gelu_tanh", &c, false);
}

mold_status mold_cpu_swiglu(mold_backend *be, float *y, const float *gate, const float *up,
                            int64_t n) {
    ew_ctx c = { .kind = EW_SWIGLU, .y = y, .a = gate, .b = up, .n = n };
    return ew_run(be, "swiglu", &c, true);
}

mold_status mold_cpu_add(mold_backend *be, float *y, const float *a, const float *b, int64_t n) {
    ew_ctx c = { .kind = EW_ADD, .y = y, .a = a, .b = b, .n = n };
    return ew_run(be, "add", &c, true);
}

mold_status mold_cpu_axpby(mold_backend *be, float *y, const float *a, float alpha,
                           const float *b, float beta, int64_t n) {
    ew_ctx c = { .kind = EW_AXPBY, .y = y, .a = a, .b = b, .p0 = alpha, .p1 = beta, .n = n };
    return ew_run(be, "axpby", &c, true);
}

mold_status mold_cpu_clamp(mold_backend *be, float *y, const float *x, float lo, float hi,
                           int64_t n) {
    if (!(lo <= hi))
        return MOLD_ERR(MOLD_E_INVALID, "clamp: expected lo <= hi, got %g > %g", lo, hi);
    ew_ctx c = { .kind = EW_CLAMP, .y = y, .a = x, .p0 = lo, .p1 = hi, .n = n };
    return ew_run(be, "clamp", &c, false);
}

/* ---- row ops ---- */

typedef struct row_ctx {
    float *x;           /* gated_add: x [rows, dim]; cfg: out */
    const float *g;     /* gated_add: gate [dim] or NULL; cfg: cond */
    const float *y;     /* gated_add: y [rows, dim]; cfg: uncond */
    float scale;        /* cfg guidance scale */
    int64_t rows, dim, rpt;
} row_ctx;

static int64_t rows_per_task(int64_t dim) {
    int64_t r = EW_ROW_FLOATS / dim;
    return r < 1 ? 1 : r;
}

static void gated_task(void *ud, int64_t task, float *scratch) {
    (void)scratch;
    const row_ctx *c = ud;
    int64_t r1 = (task + 1) * c->rpt < c->rows ? (task + 1) * c->rpt : c->rows;
    for (int64_t r = task * c->rpt; r < r1; r++) {
        float *x = c->x + r * c->dim;
        const float *y = c->y + r * c->dim;
        if (c->g) {
            for (int64_t j = 0; j < c->dim; j++) x[j] += c->g[j] * y[j];
        } else {
            for (int64_t j = 0; j < c->dim; j++) x[j] += y[j];
        }
    }
}

mold_status mold_cpu_gated_add(mold_backend *be, float *x, const float *gate, const float *y,
                               int64_t rows, int64_t dim) {
    if (rows < 0 || dim <= 0)
        return MOLD_ERR(MOLD_E_INVALID, "gated_add: expected rows >= 0, dim > 0, got %lld x %lld",
                        (long long)rows, (long long)dim);
    if (rows > 0 && (!x || !y))
        return MOLD_ERR(MOLD_E_INVALID, "gated_add: NULL x or y");
    row_ctx c = { .x = x, .g = gate, .y = y, .rows = rows, .dim = dim, .rpt = rows_per_task(dim) };
    mold_cpu_parallel(cpu_of(be), cpu_n_chunks(rows, c.rpt), gated_task, &c);
    return MOLD_OK;
}

/* Norms in double, in index order; the row is fully read before written. */
static void cfg_task(void *ud, int64_t task, float *scratch) {
    (void)scratch;
    const row_ctx *c = ud;
    int64_t r1 = (task + 1) * c->rpt < c->rows ? (task + 1) * c->rpt : c->rows;
    for (int64_t r = task * c->rpt; r < r1; r++) {
        const float *cd = c->g + r * c->dim, *un = c->y + r * c->dim;
        float *out = c->x + r * c->dim;
        double nc = 0.0, nb = 0.0;
        for (int64_t j = 0; j < c->dim; j++) {
            float comb = un[j] + c->scale * (cd[j] - un[j]);
            nc += (double)cd[j] * cd[j];
            nb += (double)comb * comb;
        }
        float f = nb > 0.0 ? (float)(sqrt(nc) / sqrt(nb)) : 1.0f;
        for (int64_t j = 0; j < c->dim; j++) {
            float comb = un[j] + c->scale * (cd[j] - un[j]);
            out[j] = comb * f;
        }
    }
}

mold_status mold_cpu_cfg_combine(mold_backend *be, float *out, const float *cond,
                                 const float *uncond, float scale, int64_t n_tok, int64_t dim) {
    if (n_tok < 0 || dim <= 0)
        return MOLD_ERR(MOLD_E_INVALID, "cfg_combine: expected n_tok >= 0, dim > 0, got %lld x %lld",
                        (long long)n_tok, (long long)dim);
    if (n_tok > 0 && (!out || !cond || !uncond))
        return MOLD_ERR(MOLD_E_INVALID, "cfg_combine: NULL input or output");
    row_ctx c = { .x = out, .g = cond, .y = uncond, .scale = scale, .rows = n_tok, .dim = dim,
                  .rpt = rows_per_task(dim) };
    mold_cpu_parallel(cpu_of(be), cpu_n_chunks(n_tok, c.rpt), cfg_task, &c);
    return MOLD_OK;
}

mold_status mold_cpu_copy_rows(mold_backend *be, float *dst, int64_t dst_stride,
                               const float *src, int64_t src_stride, int64_t rows, int64_t cols) {
    (void)be;
    if (rows < 0 || cols < 0 || dst_stride < cols || src_stride < cols)
        return MOLD_ERR(MOLD_E_INVALID,
                        "copy_rows: expected rows, cols >= 0 and strides >= cols, got rows=%lld "
                        "cols=%lld dst_stride=%lld src_stride=%lld",
                        (long long)rows, (long long)cols, (long long)dst_stride,
                        (long long)src_stride);
    if (rows > 0 && cols > 0 && (!dst || !src))
        return MOLD_ERR(MOLD_E_INVALID, "copy_rows: NULL src or dst");
    for (int64_t r = 0; r < rows && cols > 0; r++) {
        float *d = dst + r * dst_stride;
        const float *s = src + r * src_stride;
        if (cols < 16 && (d + cols <= s || s + cols <= d)) {
            /* narrow rows (e.g. transposes made of one-float copies): a call
             * per row would dominate */
            for (int64_t j = 0; j < cols; j++)
                d[j] = s[j];
        } else {
            memmove(d, s, (size_t)cols * sizeof(float));
        }
    }
    return MOLD_OK;
}

/* ---- transpose ---- */

typedef struct tr_ctx {
    float *dst;       /* [cols, rows] */
    const float *src; /* [rows, cols] */
    int64_t rows, cols;
} tr_ctx;

/* Task = TR_BAND source rows, walked in TR_TILE x TR_TILE tiles so both the
 * reads and the writes of a tile stay within a few cache lines per row. */
static void tr_task(void *ud, int64_t task, float *scratch) {
    (void)scratch;
    const tr_ctx *c = ud;
    int64_t r0 = task * TR_BAND, r1 = r0 + TR_BAND < c->rows ? r0 + TR_BAND : c->rows;
    for (int64_t rt = r0; rt < r1; rt += TR_TILE) {
        int64_t re = rt + TR_TILE < r1 ? rt + TR_TILE : r1;
        for (int64_t ct = 0; ct < c->cols; ct += TR_TILE) {
            int64_t ce = ct + TR_TILE < c->cols ? ct + TR_TILE : c->cols;
            for (int64_t col = ct; col < ce; col++)
                for (int64_t r = rt; r < re; r++)
                    c->dst[col * c->rows + r] = c->src[r * c->cols + col];
        }
    }
}

mold_status mold_cpu_transpose(mold_backend *be, float *dst, const float *src, int64_t rows,
                               int64_t cols) {
    if (rows < 0 || cols < 0)
        return MOLD_ERR(MOLD_E_INVALID, "transpose: expected rows, cols >= 0, got %lld x %lld",
                        (long long)rows, (long long)cols);
    if (rows == 0 || cols == 0)
        return MOLD_OK;
    if (!dst || !src)
        return MOLD_ERR(MOLD_E_INVALID, "transpose: NULL src or dst");
    if (cpu_overlap(dst, rows * cols, src, rows * cols))
        return MOLD_ERR(MOLD_E_INVALID, "transpose: dst overlaps src (in place is not supported)");
    tr_ctx c = { .dst = dst, .src = src, .rows = rows, .cols = cols };
    mold_cpu_parallel(cpu_of(be), cpu_n_chunks(rows, TR_BAND), tr_task, &c);
    return MOLD_OK;
}

/* ---- count_nonfinite ---- */

typedef struct nf_ctx {
    const float *x;
    int64_t n;
    atomic_llong bad; /* integer sum: order-independent */
} nf_ctx;

static void nf_task(void *ud, int64_t task, float *scratch) {
    (void)scratch;
    nf_ctx *c = ud;
    int64_t i0 = task * EW_CHUNK, i1 = i0 + EW_CHUNK < c->n ? i0 + EW_CHUNK : c->n;
    long long bad = 0;
    for (int64_t i = i0; i < i1; i++)
        bad += !isfinite(c->x[i]);
    if (bad)
        atomic_fetch_add(&c->bad, bad);
}

mold_status mold_cpu_count_nonfinite(mold_backend *be, const float *x, int64_t n, int64_t *bad) {
    if (n < 0 || !bad || (n > 0 && !x))
        return MOLD_ERR(MOLD_E_INVALID, "count_nonfinite: expected n >= 0 and non-NULL buffers");
    nf_ctx c = { .x = x, .n = n };
    atomic_init(&c.bad, 0);
    mold_cpu_parallel(cpu_of(be), cpu_n_chunks(n, EW_CHUNK), nf_task, &c);
    *bad = (int64_t)atomic_load(&c.bad);
    return MOLD_OK;
}
