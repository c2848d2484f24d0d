/*
 * quant_matmul.h — CPU matmul directly on stored weights (f32, f16, bf16 and
 * every ggml block format) without materialising the f32 weight.
 *
 *   y[m, n_out] = x[m, n_in] · W^T (+ bias[n_out])
 *
 * W is n_out rows of n_in values of dtype `wt`, row r at w + r * row_bytes
 * (row_bytes >= the packed size of a row; exactly mold_weight.row_bytes of
 * ops.h). W may live in an mmap'd file: it is only read.
 *
 * Exact path (the default, used for the goldens): rows of W are dequantized
 * with mold_dequantize into caller-provided f32 scratch, a tile at a time,
 * and multiplied in f32, so results equal "dequantize everything, then f32
 * matmul" up to summation order (tested within 1e-5 relative per type).
 *  - m <  MOLD_QMM_GEMV_ROWS: rows are split over the pool; each thread
 *    dequantizes one weight row into its slice of scratch and takes m dot
 *    products (memory bound, no BLAS call overhead);
 *  - m >= MOLD_QMM_GEMV_ROWS: tiles of rows are dequantized in parallel over
 *    the pool, then one cblas_sgemm per tile (OpenBLAS threads) writes
 *    y[:, tile].
 * f32 weights with packed rows go straight to one sgemm.
 *
 * For the CPU backend (src/backend/cpu): reserve
 * mold_quant_matmul_scratch_bytes(n_in_max, n_threads) once per plan (style
 * rule 11: no allocation in forward passes) and call mold_quant_matmul_f32
 * from the matmul op with the mold_weight's fields. Passing scratch == NULL
 * makes the call allocate and free its own (tools and tests only).
 */
#ifndef MOLD_BASE_QUANT_MATMUL_H
#define MOLD_BASE_QUANT_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "status.h"
#include "threadpool.h"

#define MOLD_QMM_GEMV_ROWS 8 /* below this many x rows: fused row-dot path */

/* Scratch bytes needed for weights with n_in columns when run on a pool of
 * n_threads (mold_pool_size; 1 for a NULL pool). Independent of m and n_out. */
size_t mold_quant_matmul_scratch_bytes(int64_t n_in, int n_threads);

/* y[m, n_out] = x[m, n_in] · W^T (+ bias). x, y, bias are f32 host memory; y
 * must not overlap x. `pool` may be NULL (serial dequantization). scratch must
 * be 64-byte aligned and hold scratch_bytes >=
 * mold_quant_matmul_scratch_bytes(n_in, mold_pool_size(pool)), or be NULL.
 * Errors: MOLD_E_UNSUPPORTED for a dtype without a dequantizer,
 * MOLD_E_INVALID for bad sizes (n_in not a whole number of blocks, row_bytes
 * too small, scratch too small). */
mold_status mold_quant_matmul_f32(mold_pool *pool, float *y, const float *x, int64_t m,
                                  mold_dtype wt, const void *w, int64_t n_out, int64_t n_in,
                                  uint64_t row_bytes, const float *bias, void *scratch,
                                  size_t scratch_bytes);

#endif
