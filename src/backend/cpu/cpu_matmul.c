/*
 * cpu_matmul.c — matmul (y = x W^T + b) and embed for every weight dtype.
 *
 * Weights stay in their stored dtype (a view into the mmap). A task owns a
 * fixed tile of MM_NT output columns (weight rows): it converts MM_NT x KC
 * slices of those rows to f32 in its scratch and accumulates
 * y[:, tile] += x[:, kslice] * slice^T with one single-threaded cblas_sgemm
 * per K slice. Tile and slice boundaries depend only on the shapes, so every
 * output element sees the same sequence of operations for any thread count.
 * f32 weights skip the conversion and are read in place (one sgemm per tile).
 *
 * Scratch per task: MM_NT x KC floats (512 KiB: the converted slice stays in
 * L2 while sgemm reads it).
 */
#include <cblas.h> /* defines: cblas_sgemm */
#include <limits.h>
#include <string.h>

#include "../../base/quant.h" /* defines: mold_dequantize */
#include "cpu_internal.h"

enum {
    MM_NT = 128,  /* output columns per task */
    MM_KC = 1024, /* K slice converted at once (rounded to the block size) */
};

/* ---- weight conversion (shared with conv2d and embed) ---- */

mold_status mold_cpu_weight_check(const mold_weight *w, const char *what) {
    if (!w || !w->data)
        return MOLD_ERR(MOLD_E_INVALID, "%s: weight or its data is NULL", what);
    if (w->n_out <= 0 || w->n_in <= 0)
        return MOLD_ERR(MOLD_E_INVALID, "%s: expected a positive weight shape, got [%lld, %lld]",
                        what, (long long)w->n_out, (long long)w->n_in);
    const mold_dtype_info *info = mold_dtype_get(w->dtype);
    bool plain = w->dtype == MOLD_F32 || w->dtype == MOLD_F16 || w->dtype == MOLD_BF16;
    if (!info || (!plain && !info->is_quant))
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: expected weight dtype f32/f16/bf16/ggml, got %s",
                        what, mold_dtype_name(w->dtype));
    uint64_t row_bytes = 0;
    MOLD_TRY(mold_dtype_row_bytes(w->dtype, (uint64_t)w->n_in, &row_bytes));
    if (row_bytes != w->row_bytes)
        return MOLD_ERR(MOLD_E_INVALID, "%s: expected row_bytes %llu for %lld %s values, got %llu",
                        what, (unsigned long long)row_bytes, (long long)w->n_in,
                        mold_dtype_name(w->dtype), (unsigned long long)w->row_bytes);
    if (info->is_quant) {
        /* Proves the dequantizer exists before any worker relies on it. */
        float block[256];
        if (info->block_elems > 256)
            return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: block of %u values", what, info->block_elems);
        mold_status st = mold_dequantize(w->dtype, w->data, block, info->block_elems);
        if (st != MOLD_OK) {
            mold_error_prefix("%s", what);
            return st;
        }
    }
    return MOLD_OK;
}

int64_t mold_cpu_weight_kc(const mold_weight *w, int64_t cap) {
    const mold_dtype_info *info = mold_dtype_get(w->dtype);
    int64_t be = info ? (int64_t)info->block_elems : 1;
    int64_t kc = cap / be * be;
    if (kc < be)
        kc = be;
    return kc < w->n_in ? kc : w->n_in;
}

void mold_cpu_weight_rows_f32(const mold_weight *w, int64_t row0, int64_t n_rows, int64_t k0,
                              int64_t kc, float *dst) {
    const mold_dtype_info *info = mold_dtype_get(w->dtype);
    const uint8_t *base = (const uint8_t *)w->data + (k0 / info->block_elems) * info->block_bytes;
    for (int64_t r = 0; r < n_rows; r++) {
        const void *src = base + (uint64_t)(row0 + r) * w->row_bytes;
        float *d = dst + r * kc;
        switch (w->dtype) {
        case MOLD_F32: memcpy(d, src, (size_t)kc * sizeof(float)); break;
        case MOLD_BF16: mold_bf16_to_f32_n(src, d, (size_t)kc); break;
        case MOLD_F16: mold_f16_to_f32_n(src, d, (size_t)kc); break;
        default: {
            mold_status st = mold_dequantize(w->dtype, src, d, kc);
            MOLD_ASSERT(st == MOLD_OK); /* mold_cpu_weight_check() proved support */
        }
        }
    }
}

/* ---- matmul ---- */

typedef struct mm_ctx {
    float *y;           /* [m, n] */
    const float *x;     /* [m, k] */
    const float *bias;  /* [n] or NULL */
    const mold_weight *w;
    int64_t m, n, k, kc;
} mm_ctx;

static void mm_task(void *ud, int64_t task, float *scratch) {
    const mm_ctx *c = ud;
    int64_t n0 = task * MM_NT;
    int64_t nt = c->n - n0 < MM_NT ? c->n - n0 : MM_NT;
    float beta0 = 0.0f;
    if (c->bias) {
        for (int64_t i = 0; i < c->m; i++)
            memcpy(c->y + i * c->n + n0, c->bias + n0, (size_t)nt * sizeof(float));
        beta0 = 1.0f;
    }
    if (c->w->dtype == MOLD_F32) {
        const float *b = (const float *)c->w->data + n0 * c->k;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c->m, (int)nt, (int)c->k, 1.0f,
                    c->x, (int)c->k, b, (int)c->k, beta0, c->y + n0, (int)c->n);
        return;
    }
    for (int64_t k0 = 0; k0 < c->k; k0 += c->kc) {
        int64_t kc = c->k - k0 < c->kc ? c->k - k0 : c->kc;
        mold_cpu_weight_rows_f32(c->w, n0, nt, k0, kc, scratch);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c->m, (int)nt, (int)kc, 1.0f,
                    c->x + k0, (int)c->k, scratch, (int)kc, k0 == 0 ? beta0 : 1.0f, c->y + n0,
                    (int)c->n);
    }
}

mold_status mold_cpu_matmul(mold_backend *be, float *y, const float *x, int64_t m,
                            const mold_weight *w, const float *bias) {
    MOLD_TRY(mold_cpu_weight_check(w, "matmul"));
    if (m < 0 || m > INT_MAX || w->n_in > INT_MAX || w->n_out > INT_MAX)
        return MOLD_ERR(MOLD_E_RANGE, "matmul: expected m, n_in, n_out < 2^31, got %lld, %lld, %lld",
                        (long long)m, (long long)w->n_in, (long long)w->n_out);
    if (m == 0)
        return MOLD_OK;
    if (!y || !x)
        return MOLD_ERR(MOLD_E_INVALID, "matmul: NULL x or y");
    mm_ctx c = { .y = y, .x = x, .bias = bias, .w = w, .m = m, .n = w->n_out, .k = w->n_in,
                 .kc = mold_cpu_weight_kc(w, MM_KC) };
    MOLD_ASSERT(MM_NT * c.kc <= CPU_SCRATCH_FLOATS);
    mold_cpu_parallel(cpu_of(be), cpu_n_chunks(c.n, MM_NT), mm_task, &c);
    return MOLD_OK;
}

/* ---- embed ---- */

mold_status mold_cpu_embed(mold_backend *be, float *y, const mold_weight *table,
                           const int32_t *ids_host, int64_t n) {
    (void)be;
    MOLD_TRY(mold_cpu_weight_check(table, "embed"));
    if (n < 0 || (n > 0 && (!y || !ids_host)))
        return MOLD_ERR(MOLD_E_INVALID, "embed: expected n >= 0 and non-NULL buffers, got n=%lld",
                        (long long)n);
    for (int64_t i = 0; i < n; i++) {
        if (ids_host[i] < 0 || ids_host[i] >= table->n_out)
            return MOLD_ERR(MOLD_E_RANGE, "embed: id %d at position %lld outside [0, %lld)",
                            ids_host[i], (long long)i, (long long)table->n_out);
    }
    for (int64_t i = 0; i < n; i++)
        mold_cpu_weight_rows_f32(table, ids_host[i], 1, 0, table->n_in, y + i * table->n_in);
    return MOLD_OK;
}
