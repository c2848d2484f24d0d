/*
 * dtype.h — element types, ggml block formats, and exact float conversions.
 *
 * A dtype is either a plain element type (one value per element) or a block
 * format (ggml's Q4_0 ... Q6_K: `block_elems` values packed into
 * `block_bytes`). Row sizes are computed with mold_dtype_row_bytes(), which
 * refuses rows that are not a whole number of blocks.
 *
 * bf16/f16 <-> f32 conversions are exact for widening and round to nearest
 * even for narrowing (NaN stays NaN), bit-identical to PyTorch's.
 */
#ifndef MOLD_BASE_DTYPE_H
#define MOLD_BASE_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef enum mold_dtype {
    MOLD_DTYPE_INVALID = 0,
    /* plain element types */
    MOLD_F32, MOLD_F16, MOLD_BF16, MOLD_F64,
    MOLD_I64, MOLD_I32, MOLD_I16, MOLD_I8, MOLD_U8, MOLD_BOOL,
    /* ggml block formats (values from ggml's block layouts) */
    MOLD_Q4_0, MOLD_Q4_1, MOLD_Q5_0, MOLD_Q5_1, MOLD_Q8_0,
    MOLD_Q2_K, MOLD_Q3_K, MOLD_Q4_K, MOLD_Q5_K, MOLD_Q6_K,
    MOLD_DTYPE_COUNT
} mold_dtype;

typedef struct mold_dtype_info {
    const char *name;        /* "f32", "bf16", "q4_K", ... */
    uint32_t block_elems;    /* 1 for plain types, 32 or 256 for blocks */
    uint32_t block_bytes;    /* bytes of one block (element size for plain types) */
    bool is_float;           /* plain float type usable as a weight */
    bool is_quant;           /* ggml block format */
} mold_dtype_info;

const mold_dtype_info *mold_dtype_get(mold_dtype t); /* NULL for invalid t */
const char *mold_dtype_name(mold_dtype t);           /* "invalid" for invalid t */
/* Parses "f32", "F32", "bf16", "q4_k", "Q4_K" ... ; MOLD_DTYPE_INVALID if unknown. */
mold_dtype mold_dtype_from_name(const char *name);

/* Bytes of `n_elems` elements of type t. Fails (MOLD_E_FORMAT) when n_elems is
 * not a multiple of the block size, or MOLD_E_RANGE on overflow. */
mold_status mold_dtype_row_bytes(mold_dtype t, uint64_t n_elems, uint64_t *out_bytes);

/* ---- exact scalar conversions ---- */
static inline float mold_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}
static inline uint16_t mold_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = { f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep quiet NaN, sign */
        return (uint16_t)((v.u >> 16) | 0x40u);
    uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)((v.u + rounding) >> 16);
}
float mold_f16_to_f32(uint16_t h);
uint16_t mold_f32_to_f16(float f);

/* ---- bulk conversions (plain types only) ---- */
/* Converts n elements of type t at src to f32. Block formats are handled by
 * the quant module (mold_dequantize). Returns MOLD_E_UNSUPPORTED otherwise. */
mold_status mold_convert_to_f32(mold_dtype t, const void *src, float *dst, size_t n);
void mold_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n);
void mold_f32_to_bf16_n(const float *src, uint16_t *dst, size_t n);
void mold_f16_to_f32_n(const uint16_t *src, float *dst, size_t n);

#endif
