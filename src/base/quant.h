/*
 * quant.h — ggml block formats: dequantization, quantization, dot products.
 *
 * Block layouts follow ggml's ggml-common.h (Q4_0 ... Q6_K); a row of n values
 * is n / block_elems consecutive blocks. Plain float types (f32, f16, bf16)
 * are accepted everywhere too, so callers can treat every weight dtype alike.
 */
#ifndef MOLD_BASE_QUANT_H
#define MOLD_BASE_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "status.h"

/* Converts n values (a whole number of blocks) of type t at src to f32.
 * MOLD_E_UNSUPPORTED for types without a dequantizer, MOLD_E_FORMAT when n is
 * not a multiple of the block size. */
mold_status mold_dequantize(mold_dtype t, const void *src, float *dst, int64_t n);

/* Quantizes n f32 values (a whole number of blocks) to type t with the
 * reference (ggml) algorithm; dst holds mold_dtype_row_bytes(t, n) bytes. */
mold_status mold_quantize(mold_dtype t, const float *src, void *dst, int64_t n);

#endif
