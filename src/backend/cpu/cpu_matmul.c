/*
 * cpu_matmul.c — matmul (y = x W^T + b) and embed for every weight dtype.
 *
 * Weights stay in their stored dtype (a view into the mmap). A task owns a
 * fixed tile of MM_NT output columns (weight rows) for a block of up to MM_MB
 * rows of x: it converts MM_NT x KC
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
#include <immintrin.h>
#include <limits.h>
#include <string.h>

#include "../../base/quant.h" /* defines: mold_dequantize */
#include "cpu_internal.h"

/* Tile sizes (macros so a benchmark build can override them). */
#ifndef MM_NT
#define MM_NT 128 /* output columns per task */
#endif
#ifndef MM_KC
#define MM_KC 1024 /* K slice converted at once (rounded to the block size) */
#endif
#ifndef MM_MB
#define MM_MB 512 /* rows of x per task (large m also splits over rows) */
#endif
#ifndef MM_GEMV_M
#define MM_GEMV_M 4 /* up to this many rows of x: sgemv per row (sgemm would pack the tile) */
#endif



/* ---- weight conversion (shared with conv2d and embed) ---- */

/* bf16 -> f32 is a 16-bit shift and f16 -> f32 (F16C) is exact, so these
 * vector versions give bit-identical results to the scalar ones in dtype.c;
 * they are picked at run time when the CPU has AVX2 / F16C (the build targets
 * plain x86-64). */
__attribute__((target("avx2"))) static void bf16_to_f32_avx2(const uint16_t *s, float *d,
                                                             int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(s + i));
        _mm256_storeu_si256((__m256i *)(d + i), _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    for (; i < n; i++)
        d[i] = mold_bf16_to_f32(s[i]);
}

__attribute__((target("avx,f16c"))) static void f16_to_f32_f16c(const uint16_t *s, float *d,
                                                                int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    for (; i < n; i++)
        d[i] = mold_f16_to_f32(s[i]);
}

static void bf16_row(const uint16_t *s, float *d, int64_t n) {
    if (mold_cpu_use_avx2())
        bf16_to_f32_avx2(s, d, n);
    else
        mold_bf16_to_f32_n(s, d, (size_t)n);
}

static void f16_row(const uint16_t *s, float *d, int64_t n) {
    if (mold_cpu_use_f16c())
        f16_to_f32_f16c(s, d, n);
    else
        mold_f16_to_f32_n(s, d, (size_t)n);
}

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
        bool plain = w->dtype == MOLD_F32 || w->dtype == MOLD_F16 || w->dtype == MOLD_BF16;
        if (plain && !mold_cpu_weight_aligned(w)) {
            mold_status st = mold_convert_to_f32(w->dtype, src, d, (size_t)kc); /* byte-wise */
            MOLD_ASSERT(st == MOLD_OK);
            continue;
        }
        switch (w->dtype) {
        case MOLD_F32: memcpy(d, src, (size_t)kc * sizeof(float)); break;
        case MOLD_BF16: bf16_row(src, d, kc); break;
        case MOLD_F16: f16_row(src, d, kc); break;
        default: {
            mold_status st = mold_dequantize(w->dtype, src, d, kc);
            MOLD_ASSERT(st == MOLD_OK); /* mold_cpu_weight_check() proved support */
        }
        }
    }
}

/* ---- matmul ---- */

typedef struct mm_ctx {
    float *y;           /* [m, n]; a task sees its row block only */
    const float *x;     /* [m, k]; likewise */
    const float *bias;  /* [n] or NULL */
    const mold_weight *w;
    int64_t m, n, k, kc;
} mm_ctx;

typedef struct mm_job {
    mm_ctx whole; /* the full problem */
    int64_t n_nt; /* column tiles */
} mm_job;

/* y[:, n0 .. n0+nt] (+)= x[:, k0 .. k0+kc] · b^T for b = [nt, kc] (row stride
 * ldb). Small m uses one sgemv per row of x (no packing of b). */
static void mm_block(const mm_ctx *c, int64_t n0, int64_t nt, int64_t k0, int64_t kc,
                     const float *b, int64_t ldb, float beta) {
    if (c->m <= MM_GEMV_M) {
        for (int64_t i = 0; i < c->m; i++)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)nt, (int)kc, 1.0f, b, (int)ldb,
                        c->x + i * c->k + k0, 1, beta, c->y + i * c->n + n0, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c->m, (int)nt, (int)kc, 1.0f,
                c->x + k0, (int)c->k, b, (int)ldb, beta, c->y + n0, (int)c->n);
}

/* Task = (row block of MM_MB rows, column tile of MM_NT weight rows). */
static void mm_task(void *ud, int64_t task, float *scratch) {
    const mm_job *job = ud;
    int64_t i0 = (task / job->n_nt) * MM_MB;
    mm_ctx rows = job->whole;
    rows.x += i0 * rows.k;
    rows.y += i0 * rows.n;
    rows.m = rows.m - i0 < MM_MB ? rows.m - i0 : MM_MB;
    const mm_ctx *c = &rows;
    int64_t n0 = (task % job->n_nt) * MM_NT;
    int64_t nt = c->n - n0 < MM_NT ? c->n - n0 : MM_NT;
    float beta0 = 0.0f;
    if (c->bias) {
        for (int64_t i = 0; i < c->m; i++)
            memcpy(c->y + i * c->n + n0, c->bias + n0, (size_t)nt * sizeof(float));
        beta0 = 1.0f;
    }
    if (mold_cpu_weight_is_f32(c->w)) {
        mm_block(c, n0, nt, 0, c->k, (const float *)c->w->data + n0 * c->k, c->k, beta0);
        return;
    }
    for (int64_t k0 = 0; k0 < c->k; k0 += c->kc) {
        int64_t kc = c->k - k0 < c->kc ? c->k - k0 : c->kc;
        mold_cpu_weight_rows_f32(c->w, n0, nt, k0, kc, scratch);
        mm_block(c, n0, nt, k0, kc, scratch, kc, k0 == 0 ? beta0 : 1.0f);
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
    if (cpu_overlap(y, m * w->n_out, x, m * w->n_in))
        return MOLD_ERR(MOLD_E_INVALID, "matmul: y [%lld, %lld] overlaps x (in-place is not supported)",
                        (long long)m, (long long)w->n_out);
    mm_job job = { .whole = { .y = y, .x = x, .bias = bias, .w = w, .m = m, .n = w->n_out,
                              .k = w->n_in, .kc = mold_cpu_weight_kc(w, MM_KC) },
                   .n_nt = cpu_n_chunks(w->n_out, MM_NT) };
    MOLD_ASSERT(MM_NT * job.whole.kc <= CPU_SCRATCH_FLOATS);
    mold_cpu_parallel(cpu_of(be), cpu_n_chunks(m, MM_MB) * job.n_nt, mm_task, &job);
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
