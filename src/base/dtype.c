/*
 * dtype.c — the dtype table and exact float conversions (see dtype.h).
 *
 * Block sizes and byte counts are ggml's (ggml-common.h): e.g. Q4_K is a
 * 256-value super-block of 144 bytes (fp16 d, fp16 dmin, 12 scale bytes,
 * 128 nibble bytes).
 */
#include "dtype.h"

#include <string.h>
#include <strings.h>

static const mold_dtype_info INFO[MOLD_DTYPE_COUNT] = {
    [MOLD_F32] = {"f32", 1, 4, true, false},
    [MOLD_F16] = {"f16", 1, 2, true, false},
    [MOLD_BF16] = {"bf16", 1, 2, true, false},
    [MOLD_F64] = {"f64", 1, 8, false, false},
    [MOLD_I64] = {"i64", 1, 8, false, false},
    [MOLD_I32] = {"i32", 1, 4, false, false},
    [MOLD_I16] = {"i16", 1, 2, false, false},
    [MOLD_I8] = {"i8", 1, 1, false, false},
    [MOLD_U8] = {"u8", 1, 1, false, false},
    [MOLD_BOOL] = {"bool", 1, 1, false, false},
    [MOLD_Q4_0] = {"q4_0", 32, 18, false, true},
    [MOLD_Q4_1] = {"q4_1", 32, 20, false, true},
    [MOLD_Q5_0] = {"q5_0", 32, 22, false, true},
    [MOLD_Q5_1] = {"q5_1", 32, 24, false, true},
    [MOLD_Q8_0] = {"q8_0", 32, 34, false, true},
    [MOLD_Q2_K] = {"q2_K", 256, 84, false, true},
    [MOLD_Q3_K] = {"q3_K", 256, 110, false, true},
    [MOLD_Q4_K] = {"q4_K", 256, 144, false, true},
    [MOLD_Q5_K] = {"q5_K", 256, 176, false, true},
    [MOLD_Q6_K] = {"q6_K", 256, 210, false, true},
};

const mold_dtype_info *mold_dtype_get(mold_dtype t) {
    if (t <= MOLD_DTYPE_INVALID || t >= MOLD_DTYPE_COUNT) return NULL;
    return &INFO[t];
}

const char *mold_dtype_name(mold_dtype t) {
    const mold_dtype_info *i = mold_dtype_get(t);
    return i ? i->name : "invalid";
}

mold_dtype mold_dtype_from_name(const char *name) {
    if (!name) return MOLD_DTYPE_INVALID;
    for (int t = 1; t < MOLD_DTYPE_COUNT; t++)
        if (!strcasecmp(name, INFO[t].name)) return (mold_dtype)t;
    return MOLD_DTYPE_INVALID;
}

mold_status mold_dtype_row_bytes(mold_dtype t, uint64_t n_elems, uint64_t *out_bytes) {
    const mold_dtype_info *i = mold_dtype_get(t);
    if (!i) return MOLD_ERR(MOLD_E_INVALID, "invalid dtype %d", (int)t);
    if (n_elems % i->block_elems)
        return MOLD_ERR(MOLD_E_FORMAT, "%s: %llu values is not a whole number of %u-value blocks",
                        i->name, (unsigned long long)n_elems, i->block_elems);
    uint64_t blocks = n_elems / i->block_elems;
    if (blocks && i->block_bytes > UINT64_MAX / blocks)
        return MOLD_ERR(MOLD_E_RANGE, "%s: byte size of %llu values overflows", i->name,
                        (unsigned long long)n_elems);
    *out_bytes = blocks * i->block_bytes;
    return MOLD_OK;
}

/* IEEE half -> single, exact (subnormals, inf, NaN included). */
float mold_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal: normalise */
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400u));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    union { uint32_t u; float f; } v = { bits };
    return v.f;
}

/* Single -> half with round to nearest even; overflow -> inf; NaN kept. */
uint16_t mold_f32_to_f16(float f) {
    union { float f; uint32_t u; } v = { f };
    uint32_t x = v.u;
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) { /* result is subnormal or zero */
        if (ax < 0x33000000u) return sign; /* < 2^-25: rounds to zero */
        uint32_t e = ax >> 23;
        uint32_t man = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t base = ax - 0x38000000u; /* rebias exponent 127 -> 15 */
    uint32_t half = base >> 13;
    uint32_t rem = base & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) half++;
    return (uint16_t)(sign | half);
}

void mold_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = mold_bf16_to_f32(src[i]);
}

void mold_f32_to_bf16_n(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = mold_f32_to_bf16(src[i]);
}

void mold_f16_to_f32_n(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = mold_f16_to_f32(src[i]);
}

mold_status mold_convert_to_f32(mold_dtype t, const void *src, float *dst, size_t n) {
    switch (t) {
    case MOLD_F32: memcpy(dst, src, n * sizeof(float)); return MOLD_OK;
    case MOLD_BF16: {
        const uint8_t *p = src; /* may be unaligned inside a file */
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = mold_bf16_to_f32(h);
        }
        return MOLD_OK;
    }
    case MOLD_F16: {
        const uint8_t *p = src;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = mold_f16_to_f32(h);
        }
        return MOLD_OK;
    }
#define CONV_INT(T, CT)                                   \
    case T: {                                             \
        const uint8_t *p = src;                           \
        for (size_t i = 0; i < n; i++) {                  \
            CT v;                                         \
            memcpy(&v, p + sizeof(CT) * i, sizeof(CT));   \
            dst[i] = (float)v;                            \
        }                                                 \
        return MOLD_OK;                                   \
    }
    CONV_INT(MOLD_F64, double)
    CONV_INT(MOLD_I64, int64_t)
    CONV_INT(MOLD_I32, int32_t)
    CONV_INT(MOLD_I16, int16_t)
    CONV_INT(MOLD_I8, int8_t)
    CONV_INT(MOLD_U8, uint8_t)
    CONV_INT(MOLD_BOOL, uint8_t)
#undef CONV_INT
    default:
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "cannot convert %s to f32 here (block formats: "
                        "use mold_dequantize)", mold_dtype_name(t));
    }
}
