/*
 * quant_matmul.c — y = x · W^T on stored weights of any weight dtype (see
 * quant_matmul.h for the contract and the two paths).
 *
 * Owner: the gguf helper. Reference for the numerics: the result must equal
 * mold_dequantize(W) followed by an f32 matmul (tests/unit/test_quant_matmul.c).
 *
 * Why tiles + sgemm rather than integer dot products: the exact path must
 * match the f32 goldens, which rules out quantizing activations; with f32
 * activations, dequantizing a tile that stays in cache and handing it to
 * OpenBLAS costs O(n_out * n_in) conversions against O(m * n_out * n_in)
 * FLOPs, so for m >= 8 the conversion is a small overhead on BLAS speed.
 * Threading: the dequantization runs on the mold pool; sgemm uses OpenBLAS's
 * own threads, never both at once (no oversubscription).
 * Scratch layout (64-byte aligned, floats): the GEMV path uses n_threads row
 * slices of n_in; the tile path one tile of tile_rows(n_in) * n_in.
 */
#include "quant_matmul.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

#define TILE_FLOATS (2u << 20) /* ~8 MB tile: big enough for sgemm, bounded */
#define TILE_MIN_ROWS 64
#define TILE_MAX_ROWS 512

/* Rows per dequantized tile: a multiple of 16 in [64, 512] near 8 MB. */
static int64_t tile_rows(int64_t n_in) {
    int64_t r = (int64_t)TILE_FLOATS / (n_in > 0 ? n_in : 1);
    r &= ~(int64_t)15;
    if (r < TILE_MIN_ROWS) r = TILE_MIN_ROWS;
    if (r > TILE_MAX_ROWS) r = TILE_MAX_ROWS;
    return r;
}

size_t mold_quant_matmul_scratch_bytes(int64_t n_in, int n_threads) {
    if (n_threads < 1) n_threads = 1;
    size_t slice = ((size_t)n_in + 15) & ~(size_t)15; /* keeps each slice 64-byte aligned */
    size_t gemv = (size_t)n_threads * slice;
    size_t tile = (size_t)tile_rows(n_in) * (size_t)n_in;
    return (gemv > tile ? gemv : tile) * sizeof(float);
}

/* ---- shared job description ------------------------------------------------- */

typedef struct qmm_job {
    float *y;            /* [m, n_out] */
    const float *x;      /* [m, n_in] */
    int64_t m;
    mold_dtype wt;
    const uint8_t *w;    /* row r at w + r * row_bytes */
    int64_t n_out, n_in;
    uint64_t row_bytes;
    const float *bias;   /* [n_out] or NULL */
    float *scratch;
    int64_t row0, n_rows; /* tile path: rows [row0, row0 + n_rows) into scratch */
    int64_t slice;        /* GEMV path: floats per per-item row buffer */
} qmm_job;

/* Splits [0, n) into `count` nearly equal parts; part `index` is [*a, *b). */
static void split(int64_t n, int index, int count, int64_t *a, int64_t *b) {
    *a = n * index / count;
    *b = n * (index + 1) / count;
}

/* ---- GEMV path: fused row dequantize + dot ------------------------------------ */

/* Dot product with 8 independent partial sums (lets the compiler use SIMD
 * without reassociating a single accumulator). */
static float dot_f32(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[k + j] * b[k + j];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; k < n; k++) s += a[k] * b[k];
    return s;
}

static void gemv_item(void *ud, int index, int count) {
    const qmm_job *j = ud;
    int64_t r0, r1;
    split(j->n_out, index, count, &r0, &r1);
    float *row = j->scratch + (int64_t)index * j->slice;
    for (int64_t r = r0; r < r1; r++) {
        /* sizes were validated by the caller: this cannot fail */
        mold_status st = mold_dequantize(j->wt, j->w + (uint64_t)r * j->row_bytes, row, j->n_in);
        MOLD_ASSERT(st == MOLD_OK);
        for (int64_t i = 0; i < j->m; i++) {
            float v = dot_f32(j->x + i * j->n_in, row, j->n_in);
            j->y[i * j->n_out + r] = j->bias ? v + j->bias[r] : v;
        }
    }
}

/* ---- tile path: parallel dequantize, then sgemm --------------------------------- */

static void tile_item(void *ud, int index, int count) {
    const qmm_job *j = ud;
    int64_t a, b;
    split(j->n_rows, index, count, &a, &b);
    for (int64_t r = a; r < b; r++) {
        mold_status st = mold_dequantize(j->wt, j->w + (uint64_t)(j->row0 + r) * j->row_bytes,
                                         j->scratch + r * j->n_in, j->n_in);
        MOLD_ASSERT(st == MOLD_OK);
    }
}

static void add_bias(float *y, const float *bias, int64_t m, int64_t n_out) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t o = 0; o < n_out; o++) y[i * n_out + o] += bias[o];
}

static void tiled(mold_pool *pool, qmm_job *j) {
    const int64_t T = tile_rows(j->n_in);
    int n_items = pool ? mold_pool_size(pool) : 1;
    for (j->row0 = 0; j->row0 < j->n_out; j->row0 += T) {
        j->n_rows = j->n_out - j->row0 < T ? j->n_out - j->row0 : T;
        mold_pool_run(pool, n_items, tile_item, j);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->m, (int)j->n_rows,
                    (int)j->n_in, 1.0f, j->x, (int)j->n_in, j->scratch, (int)j->n_in, 0.0f,
                    j->y + j->row0, (int)j->n_out);
    }
    if (j->bias) add_bias(j->y, j->bias, j->m, j->n_out);
}

/* ---- entry ------------------------------------------------------------------------ */

static mold_status check_args(mold_dtype wt, int64_t m, int64_t n_out, int64_t n_in,
                              uint64_t row_bytes) {
    const mold_dtype_info *info = mold_dtype_get(wt);
    if (!info || !(info->is_quant || wt == MOLD_F32 || wt == MOLD_F16 || wt == MOLD_BF16))
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "quant matmul: weight dtype %s: expected f32, f16, "
                        "bf16 or a ggml block format", mold_dtype_name(wt));
    if (m < 0 || n_out < 0 || n_in <= 0 || m > INT32_MAX || n_out > INT32_MAX || n_in > INT32_MAX)
        return MOLD_ERR(MOLD_E_INVALID, "quant matmul: sizes m=%lld n_out=%lld n_in=%lld out of "
                        "range", (long long)m, (long long)n_out, (long long)n_in);
    uint64_t need;
    MOLD_TRY(mold_dtype_row_bytes(wt, (uint64_t)n_in, &need));
    if (row_bytes < need)
        return MOLD_ERR(MOLD_E_INVALID, "quant matmul: row_bytes %llu smaller than a %s row of "
                        "%lld values (%llu bytes)", (unsigned long long)row_bytes, info->name,
                        (long long)n_in, (unsigned long long)need);
    return MOLD_OK;
}

mold_status mold_quant_matmul_f32(mold_pool *pool, float *y, const float *x, int64_t m,
                                  mold_dtype wt, const void *w, int64_t n_out, int64_t n_in,
                                  uint64_t row_bytes, const float *bias, void *scratch,
                                  size_t scratch_bytes) {
    MOLD_TRY(check_args(wt, m, n_out, n_in, row_bytes));
    if (!m || !n_out) return MOLD_OK;
    if (wt == MOLD_F32 && row_bytes % sizeof(float) == 0 && (uintptr_t)w % sizeof(float) == 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n_out, (int)n_in, 1.0f,
                    x, (int)n_in, w, (int)(row_bytes / sizeof(float)), 0.0f, y, (int)n_out);
        if (bias) add_bias(y, bias, m, n_out);
        return MOLD_OK;
    }
    int n_threads = pool ? mold_pool_size(pool) : 1;
    size_t need = mold_quant_matmul_scratch_bytes(n_in, n_threads);
    void *owned = NULL;
    if (!scratch) {
        if (!(owned = aligned_alloc(64, (need + 63) & ~(size_t)63)))
            return MOLD_ERR(MOLD_E_NOMEM, "quant matmul: out of memory for %zu bytes of scratch",
                            need);
        scratch = owned;
    } else if (scratch_bytes < need) {
        return MOLD_ERR(MOLD_E_INVALID, "quant matmul: scratch of %zu bytes, expected at least %zu "
                        "for n_in=%lld on %d threads", scratch_bytes, need, (long long)n_in,
                        n_threads);
    }
    qmm_job j = {y, x, m, wt, w, n_out, n_in, row_bytes, bias, scratch, 0, 0,
                 ((int64_t)n_in + 15) & ~(int64_t)15};
    if (m < MOLD_QMM_GEMV_ROWS) mold_pool_run(pool, n_threads, gemv_item, &j);
    else tiled(pool, &j);
    free(owned);
    return MOLD_OK;
}
