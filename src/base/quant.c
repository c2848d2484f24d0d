/*
 * quant.c — ggml block formats: dequantization and reference quantization.
 *
 * Owner: the gguf helper. Implements quant.h for F32, F16, BF16 and the ggml
 * block formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (32 values per block) and the
 * K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (256-value super-blocks).
 *
 * Reference: ggml's ggml-common.h (block layouts) and ggml-quants.c
 * (dequantize_row_*, quantize_row_*_ref, make_qx_quants, make_q3_quants,
 * make_qkx2_quants). The code is written from those facts, not copied. The
 * quantizers reproduce ggml's arithmetic in the same order (no FMA
 * contraction: C11 mode), so the blocks they write are bit-identical to
 * `llama-quantize` without an importance matrix.
 *
 * Invariants:
 *  - Blocks are read and written as bytes at fixed offsets (memcpy for the
 *    fp16 / u32 fields): callers may pass any alignment (GGUF allows
 *    general.alignment = 1), so no struct is ever dereferenced.
 *  - Layout tables below give each block's byte offsets; sizes agree with
 *    mold_dtype_get() (checked by the unit tests).
 *  - Quantization rejects non-finite input (MOLD_E_NUMERIC) and never casts an
 *    out-of-range float to an integer (that would be undefined behaviour).
 */
#include "quant.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

/* ---- block layouts (byte offsets; ggml-common.h) ----------------------------
 *
 * | type | bytes | fields                                                  |
 * |------|-------|---------------------------------------------------------|
 * | Q4_0 | 18    | d f16 @0, qs[16] @2 (lo nibble: 0..15, hi: 16..31)       |
 * | Q4_1 | 20    | d f16 @0, m f16 @2, qs[16] @4                            |
 * | Q5_0 | 22    | d f16 @0, qh u32 @2 (bit j = 5th bit of value j), qs @6  |
 * | Q5_1 | 24    | d f16 @0, m f16 @2, qh u32 @4, qs[16] @8                 |
 * | Q8_0 | 34    | d f16 @0, qs int8[32] @2                                 |
 * | Q2_K | 84    | scales[16] @0 (lo: scale, hi: min), qs[64] @16, d @80, dmin @82 |
 * | Q3_K | 110   | hmask[32] @0, qs[64] @32, scales[12] @96 (16 x 6 bit), d @108 |
 * | Q4_K | 144   | d @0, dmin @2, scales[12] @4 (8 x 6-bit scale+min), qs[128] @16 |
 * | Q5_K | 176   | d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48    |
 * | Q6_K | 210   | ql[128] @0, qh[64] @128, scales int8[16] @192, d @208    |
 */
#define QK 32   /* values per legacy block */
#define QKK 256 /* values per K-quant super-block */

/* Smallest |max| treated as a non-zero group (ggml's GROUP_MAX_EPS). */
#define GROUP_MAX_EPS 1e-15f

/* ---- scalar helpers ---------------------------------------------------------- */

static float f16_table[65536]; /* f16 bits -> f32, filled once */
static pthread_once_t f16_once = PTHREAD_ONCE_INIT;

static void f16_table_fill(void) {
    for (uint32_t h = 0; h < 65536; h++) f16_table[h] = mold_f16_to_f32((uint16_t)h);
}

static inline float ld_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return f16_table[h];
}

static inline void st_f16(uint8_t *p, float f) {
    uint16_t h = mold_f32_to_f16(f);
    memcpy(p, &h, 2);
}

/* Round to nearest, ties to even, via the 1.5*2^23 trick ggml uses (it differs
 * from roundf on ties, so the quantizers need this exact one). Valid for
 * |f| <= 4194303; larger inputs give a wrong but defined value. */
static inline int nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* (int)t clamped to [lo, hi] with NaN -> lo: the defined form of ggml's
 * `MIN(hi, (int8_t)t)` for the values where ggml's cast is defined. */
static inline int trunc_clamp(float t, int lo, int hi) {
    if (!(t > (float)lo)) return lo;
    if (t >= (float)hi) return hi;
    return (int)t;
}

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* K-quant 6-bit scale j and min j of the 12-byte packed scales (Q4_K, Q5_K):
 * j < 4 in the low 6 bits of bytes j and j+4; j >= 4 split into a nibble of
 * byte j+4 and the top two bits of bytes j-4 (scale) and j (min). */
static inline void k4_scale_min(int j, const uint8_t *s, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q3_K's 16 signed 6-bit scales: low nibbles in bytes 0..7 (j and j+8 share a
 * byte), high 2-bit pairs in bytes 8..11. */
static inline int q3k_scale(int j, const uint8_t *s) {
    int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* ---- dequantization: one function per format, nb blocks ----------------------
 *
 * Each block is unpacked into a small local array of integer levels, then
 * scaled by a fixed-length loop over `restrict` pointers: that shape lets the
 * compiler vectorize at -O2 (the scale loops are what dominates). The float
 * expressions are ggml's, in ggml's order, so results are bit-identical to
 * dequantize_row_* (tests compare against ggml's own output). */

/* y[0..n) = d * q[0..n) */
static inline void scale_i8(float *restrict y, const int8_t *restrict q, float d, int n) {
    for (int l = 0; l < n; l++) y[l] = (float)q[l] * d;
}

/* y[0..n) = d * q[0..n) + m */
static inline void scale_u8_add(float *restrict y, const uint8_t *restrict q, float d, float m,
                                int n) {
    for (int l = 0; l < n; l++) y[l] = (float)q[l] * d + m;
}

/* y[0..n) = d * q[0..n) - m (K-quant "scale and min" form) */
static inline void scale_u8_sub(float *restrict y, const uint8_t *restrict q, float d, float m,
                                int n) {
    for (int l = 0; l < n; l++) y[l] = d * (float)q[l] - m;
}

static void deq_q4_0(const uint8_t *restrict b, float *restrict y, int64_t nb) {
    int8_t q[QK];
    for (int64_t i = 0; i < nb; i++, b += 18, y += QK) {
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)((b[2 + j] & 0xF) - 8);
            q[j + 16] = (int8_t)((b[2 + j] >> 4) - 8);
        }
        scale_i8(y, q, ld_f16(b), QK);
    }
}

static void deq_q4_1(const uint8_t *restrict b, float *restrict y, int64_t nb) {
    uint8_t q[QK];
    for (int64_t i = 0; i < nb; i++, b += 20, y += QK) {
        for (int j = 0; j < 16; j++) {
            q[j] = b[4 + j] & 0xF;
            q[j + 16] = b[4 + j] >> 4;
        }
        scale_u8_add(y, q, ld_f16(b), ld_f16(b + 2), QK);
    }
}

/* bit5[byte][t] = 16 when bit t of byte is set: expands qh a byte at a time
 * (SSE2 has no per-lane variable shift, so a table beats bit twiddling). */
static uint8_t bit5[256][8];
static pthread_once_t bit5_once = PTHREAD_ONCE_INIT;

static void bit5_fill(void) {
    for (int v = 0; v < 256; v++)
        for (int t = 0; t < 8; t++) bit5[v][t] = (uint8_t)(((v >> t) & 1) << 4);
}

/* 32 five-bit levels: low nibbles from qs, bit j of the LE u32 qh is the 5th
 * bit of value j. */
static inline void unpack5(const uint8_t *restrict qs, const uint8_t *restrict qh,
                           uint8_t *restrict q) {
    uint8_t hi[QK];
    for (int k = 0; k < 4; k++) memcpy(hi + 8 * k, bit5[qh[k]], 8);
    for (int j = 0; j < 16; j++) {
        q[j] = (uint8_t)((qs[j] & 0xF) | hi[j]);
        q[j + 16] = (uint8_t)((qs[j] >> 4) | hi[j + 16]);
    }
}

static void deq_q5_0(const uint8_t *restrict b, float *restrict y, int64_t nb) {
    uint8_t u[QK];
    int8_t q[QK];
    for (int64_t i = 0; i < nb; i++, b += 22, y += QK) {
        unpack5(b + 6, b + 2, u);
        for (int j = 0; j < QK; j++) q[j] = (int8_t)(u[j] - 16);
        scale_i8(y, q, ld_f16(b), QK);
    }
}

static void deq_q5_1(const uint8_t *restrict b, float *restrict y, int64_t nb) {
    uint8_t q[QK];
    for (int64_t i = 0; i < nb; i++, b += 24, y += QK) {
        unpack5(b + 8, b + 4, q);
        scale_u8_add(y, q, ld_f16(b), ld_f16(b + 2), QK);
    }
}

static void deq_q8_0(const uint8_t *restrict b, float *restrict y, int64_t nb) {
    int8_t q[QK];
    for (int64_t i = 0; i < nb; i++, b += 34, y += QK) {
        memcpy(q, b + 2, QK);
        scale_i8(y, q, ld_f16(b), QK);
    }
}

/* Q2_K: 16 groups of 16; per 128-value half, 32 qs bytes each carry four
 * 2-bit values 32 apart (shifts 0, 2, 4, 6); group g uses scales[g] (low
 * nibble: scale, high: min). */
static void deq_q2_k(const uint8_t *restrict b, float *restrict y, int64_t nb) {
    uint8_t q[QKK];
    for (int64_t i = 0; i < nb; i++, b += 84, y += QKK) {
        const uint8_t *sc = b, *qs = b + 16;
        const float d = ld_f16(b + 80), dmin = ld_f16(b + 82);
        for (int half = 0; half < 2; half++)
            for (int s = 0; s < 4; s++)
                for (int l = 0; l < 32; l++)
                    q[128 * half + 32 * s + l] = (qs[32 * half + l] >> (2 * s)) & 3;
        for (int g = 0; g < 16; g++)
            scale_u8_sub(y + 16 * g, q + 16 * g, d * (float)(sc[g] & 0xF),
                         dmin * (float)(sc[g] >> 4), 16);
    }
}

/* Q3_K: Q2_K's packing of the low two bits plus hmask: bit (j / 32) of
 * hmask[j % 32] is value j's high bit; a clear high bit means "minus 4". */
static void deq_q3_k(const uint8_t *restrict b, float *restrict y, int64_t nb) {
    int8_t q[QKK];
    for (int64_t i = 0; i < nb; i++, b += 110, y += QKK) {
        const uint8_t *hm = b, *qs = b + 32, *sc = b + 96;
        const float d = ld_f16(b + 108);
        for (int half = 0; half < 2; half++)
            for (int s = 0; s < 4; s++) {
                const int row = 4 * half + s; /* 32-value row: hmask bit */
                for (int l = 0; l < 32; l++)
                    q[32 * row + l] = (int8_t)((((qs[32 * half + l] >> (2 * s)) & 3) |
                                                (((hm[l] >> row) & 1) << 2)) - 4);
            }
        for (int g = 0; g < 16; g++) scale_i8(y + 16 * g, q + 16 * g, d * (float)q3k_scale(g, sc), 16);
    }
}

static void deq_q4_k(const uint8_t *restrict b, float *restrict y, int64_t nb) {
    uint8_t q[QKK];
    for (int64_t i = 0; i < nb; i++, b += 144, y += QKK) {
        const float d = ld_f16(b), dmin = ld_f16(b + 2);
        const uint8_t *s = b + 4, *qs = b + 16;
        for (int c = 0; c < 4; c++) /* 64-value chunk: low nibbles, then high */
            for (int l = 0; l < 32; l++) {
                q[64 * c + l] = qs[32 * c + l] & 0xF;
                q[64 * c + 32 + l] = qs[32 * c + l] >> 4;
            }
        for (int g = 0; g < 8; g++) {
            int sc, m;
            k4_scale_min(g, s, &sc, &m);
            scale_u8_sub(y + 32 * g, q + 32 * g, d * (float)sc, dmin * (float)m, 32);
        }
    }
}

static void deq_q5_k(const uint8_t *restrict b, float *restrict y, int64_t nb) {
    uint8_t q[QKK];
    for (int64_t i = 0; i < nb; i++, b += 176, y += QKK) {
        const float d = ld_f16(b), dmin = ld_f16(b + 2);
        const uint8_t *s = b + 4, *qh = b + 16, *ql = b + 48;
        for (int c = 0; c < 4; c++) /* chunk c: high bits 2c (low nibbles), 2c+1 (high) */
            for (int l = 0; l < 32; l++) {
                q[64 * c + l] = (uint8_t)((ql[32 * c + l] & 0xF) | (((qh[l] >> (2 * c)) & 1) << 4));
                q[64 * c + 32 + l] =
                    (uint8_t)((ql[32 * c + l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4));
            }
        for (int g = 0; g < 8; g++) {
            int sc, m;
            k4_scale_min(g, s, &sc, &m);
            scale_u8_sub(y + 32 * g, q + 32 * g, d * (float)sc, dmin * (float)m, 32);
        }
    }
}

/* Q6_K: per 128-value half, 64 ql bytes (two nibbles) and 32 qh bytes (four
 * 2-bit pairs) give values l, l+32, l+64, l+96; each 16 values share an int8
 * scale. */
static void deq_q6_k(const uint8_t *restrict b, float *restrict y, int64_t nb) {
    int8_t q[QKK];
    for (int64_t i = 0; i < nb; i++, b += 210, y += QKK) {
        const float d = ld_f16(b + 208);
        const int8_t *sc = (const int8_t *)(b + 192);
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = b + 64 * half, *qh = b + 128 + 32 * half;
            int8_t *o = q + 128 * half;
            for (int l = 0; l < 32; l++) {
                o[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        /* ggml: d * sc * q, i.e. (d * sc) * q */
        for (int g = 0; g < 16; g++) scale_i8(y + 16 * g, q + 16 * g, d * (float)sc[g], 16);
    }
}

/* Converts 2-byte floats in chunks of 64 through aligned local arrays (the
 * source may be unaligned; fixed-length loops vectorize). f16 goes through
 * the exact 64K-entry table (a gather: not vectorized, but faster than the
 * branchy scalar conversion). */
static void f16_chunk(const uint16_t *restrict h, uint32_t *restrict out, int n) {
    for (int l = 0; l < n; l++) memcpy(&out[l], &f16_table[h[l]], 4);
}

static void bf16_chunk(const uint16_t *restrict h, uint32_t *restrict out, int n) {
    for (int l = 0; l < n; l++) out[l] = (uint32_t)h[l] << 16;
}

static void deq_half(const uint8_t *restrict b, float *restrict y, int64_t n, bool is_f16) {
    uint16_t h[64];
    uint32_t out[64];
    for (int64_t i0 = 0; i0 < n; i0 += 64) {
        int c = n - i0 < 64 ? (int)(n - i0) : 64;
        memcpy(h, b + 2 * i0, (size_t)c * 2);
        if (c == 64) { /* the fixed-length calls are the vectorized ones */
            if (is_f16) f16_chunk(h, out, 64);
            else bf16_chunk(h, out, 64);
        } else {
            if (is_f16) f16_chunk(h, out, c);
            else bf16_chunk(h, out, c);
        }
        memcpy(y + i0, out, (size_t)c * 4);
    }
}

/* Checks t and n; returns the number of blocks (values for plain types). */
static mold_status check_count(mold_dtype t, int64_t n, const char *what, int64_t *n_blocks) {
    const mold_dtype_info *info = mold_dtype_get(t);
    if (!info || !(info->is_quant || t == MOLD_F32 || t == MOLD_F16 || t == MOLD_BF16))
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "%s: dtype %s is not a weight format "
                        "(expected f32, f16, bf16 or a ggml block format)", what,
                        mold_dtype_name(t));
    if (n < 0 || n % info->block_elems)
        return MOLD_ERR(MOLD_E_FORMAT, "%s %s: %lld values is not a whole number of "
                        "%u-value blocks", what, info->name, (long long)n, info->block_elems);
    *n_blocks = n / info->block_elems;
    return MOLD_OK;
}

mold_status mold_dequantize(mold_dtype t, const void *src, float *dst, int64_t n) {
    int64_t nb;
    MOLD_TRY(check_count(t, n, "dequantize", &nb));
    pthread_once(&f16_once, f16_table_fill);
    pthread_once(&bit5_once, bit5_fill);
    const uint8_t *b = src;
    switch (t) {
    case MOLD_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case MOLD_F16: deq_half(b, dst, n, true); break;
    case MOLD_BF16: deq_half(b, dst, n, false); break;
    case MOLD_Q4_0: deq_q4_0(b, dst, nb); break;
    case MOLD_Q4_1: deq_q4_1(b, dst, nb); break;
    case MOLD_Q5_0: deq_q5_0(b, dst, nb); break;
    case MOLD_Q5_1: deq_q5_1(b, dst, nb); break;
    case MOLD_Q8_0: deq_q8_0(b, dst, nb); break;
    case MOLD_Q2_K: deq_q2_k(b, dst, nb); break;
    case MOLD_Q3_K: deq_q3_k(b, dst, nb); break;
    case MOLD_Q4_K: deq_q4_k(b, dst, nb); break;
    case MOLD_Q5_K: deq_q5_k(b, dst, nb); break;
    case MOLD_Q6_K: deq_q6_k(b, dst, nb); break;
    default: MOLD_ASSERT(!"check_count let an unknown dtype through");
    }
    return MOLD_OK;
}

/* ---- legacy quantizers (quantize_row_q*_ref) ------------------------------- */

/* Value of largest magnitude (signed), as ggml's "max" for symmetric formats. */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void minmax(const float *x, int n, float *pmin, float *pmax) {
    float mn = FLT_MAX, mx = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < mn) mn = x[j];
        if (x[j] > mx) mx = x[j];
    }
    *pmin = mn;
    *pmax = mx;
}

/* Q4_0: d = max / -8 so the extreme value maps to -8 exactly. */
static void q_q4_0(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK, b += 18) {
        const float d = signed_absmax(x, QK) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        st_f16(b, d);
        for (int j = 0; j < 16; j++) {
            int v0 = trunc_clamp(x[j] * id + 8.5f, 0, 15);
            int v1 = trunc_clamp(x[j + 16] * id + 8.5f, 0, 15);
            b[2 + j] = (uint8_t)(v0 | (v1 << 4));
        }
    }
}

static void q_q4_1(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK, b += 20) {
        float mn, mx;
        minmax(x, QK, &mn, &mx);
        const float d = (mx - mn) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        st_f16(b, d);
        st_f16(b + 2, mn);
        for (int j = 0; j < 16; j++) {
            int v0 = trunc_clamp((x[j] - mn) * id + 0.5f, 0, 15);
            int v1 = trunc_clamp((x[j + 16] - mn) * id + 0.5f, 0, 15);
            b[4 + j] = (uint8_t)(v0 | (v1 << 4));
        }
    }
}

/* Packs 32 five-bit values: nibbles into qs, 5th bits into the u32 qh. */
static void pack5(const int *v, uint8_t *qh_out, uint8_t *qs) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((v[j] & 0xF) | ((v[j + 16] & 0xF) << 4));
        qh |= (uint32_t)((v[j] >> 4) & 1) << j;
        qh |= (uint32_t)((v[j + 16] >> 4) & 1) << (j + 16);
    }
    memcpy(qh_out, &qh, 4);
}

static void q_q5_0(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK, b += 22) {
        const float d = signed_absmax(x, QK) / -16;
        const float id = d ? 1.0f / d : 0.0f;
        int v[QK];
        st_f16(b, d);
        for (int j = 0; j < QK; j++) v[j] = trunc_clamp(x[j] * id + 16.5f, 0, 31);
        pack5(v, b + 2, b + 6);
    }
}

static void q_q5_1(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK, b += 24) {
        float mn, mx;
        minmax(x, QK, &mn, &mx);
        const float d = (mx - mn) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        int v[QK];
        st_f16(b, d);
        st_f16(b + 2, mn);
        for (int j = 0; j < QK; j++) v[j] = trunc_clamp((x[j] - mn) * id + 0.5f, 0, 31);
        pack5(v, b + 4, b + 8);
    }
}

static void q_q8_0(const float *x, uint8_t *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK, b += 34) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        st_f16(b, d);
        for (int j = 0; j < QK; j++) {
            float r = roundf(x[j] * id); /* ggml: roundf, ties away from zero */
            b[2 + j] = (uint8_t)(int8_t)(r >= -128.0f && r <= 127.0f ? (int)r : (r > 0 ? 127 : 0));
        }
    }
}

/* ---- K-quant helpers (make_qx_quants, make_q3_quants, make_qkx2_quants) ---- */

/* Symmetric quantization of n values to [-nmax, nmax-1] (stored + nmax in L),
 * weighting errors by x^2 (ggml rmse_type 1), then trying 18 nearby scales
 * and keeping the least-squares best. Returns the scale. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = signed_absmax(x, n);
    if (fabsf(max) < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's symmetric variant (do_rmse = true): start from the max-scaled
 * rounding, then up to 5 passes of coordinate descent on each value. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = signed_absmax(x, n);
    if (fabsf(max) < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = imax(-nmax, imin(nmax - 1, nearest_int(x[i] * sl2 / slx)));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Asymmetric quantization x ~ scale * L - min, L in [0, nmax], weighted
 * squared (or absolute, use_mad) error: a first guess from the range, then
 * nstep+1 trial scales (rmin + rdelta*is + nmax) / range, each refit by
 * weighted least squares for (scale, min). Returns scale, *the_min = -min. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              int use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)imax(0, imin(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Packs 2-bit values L[0..255] the way Q2_K/Q3_K store them: per 128-value
 * half, byte l holds values l, l+32, l+64, l+96. */
static void pack2(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QKK; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                      (L[j + l + 96] << 6));
}

/* ---- K-quant quantizers (quantize_row_q*_K_ref) ------------------------------ */

static void q_q2_k(const float *x, uint8_t *b, int64_t nb) {
    uint8_t L[QKK], Laux[16];
    float weights[16], mins[16], scales[16];
    for (int64_t i = 0; i < nb; i++, x += QKK, b += 84) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                         -0.5f, 0.1f, 15, 1);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        uint8_t *sc = b;
        if (max_scale > 0) {
            float iscale = 15.f / max_scale;
            for (int j = 0; j < 16; j++) sc[j] = (uint8_t)nearest_int(iscale * scales[j]);
            st_f16(b + 80, max_scale / 15.f);
        } else {
            memset(sc, 0, 16);
            st_f16(b + 80, 0.0f);
        }
        if (max_min > 0) {
            float iscale = 15.f / max_min;
            for (int j = 0; j < 16; j++) sc[j] |= (uint8_t)(nearest_int(iscale * mins[j]) << 4);
            st_f16(b + 82, max_min / 15.f);
        } else {
            st_f16(b + 82, 0.0f);
        }
        for (int j = 0; j < 16; j++) {
            const float d = ld_f16(b + 80) * (float)(sc[j] & 0xF);
            if (!d) continue;
            const float dm = ld_f16(b + 82) * (float)(sc[j] >> 4);
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (uint8_t)imax(0, imin(3, nearest_int((x[16 * j + ii] + dm) / d)));
        }
        pack2(L, b + 16);
    }
}

static void q_q3_k(const float *x, uint8_t *b, int64_t nb) {
    int8_t L[QKK];
    float scales[16];
    for (int64_t i = 0; i < nb; i++, x += QKK, b += 110) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        uint8_t *sc = b + 96;
        memset(sc, 0, 12);
        if (max_scale) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < 16; j++) {
                int l = imax(-32, imin(31, (int8_t)nearest_int(iscale * scales[j]))) + 32;
                if (j < 8) sc[j] = (uint8_t)(l & 0xF);
                else sc[j - 8] |= (uint8_t)((l & 0xF) << 4);
                sc[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            st_f16(b + 108, 1 / iscale);
        } else {
            st_f16(b + 108, 0.0f);
        }
        for (int j = 0; j < 16; j++) {
            const float d = ld_f16(b + 108) * (float)q3k_scale(j, sc);
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (int8_t)(imax(-4, imin(3, nearest_int(x[16 * j + ii] / d))) + 4);
        }
        /* high bit of value j goes to hmask[j % 32], bit j / 32 */
        uint8_t *hm = b, Lu[QKK];
        memset(hm, 0, 32);
        for (int j = 0; j < QKK; j++) {
            int l = L[j];
            if (l > 3) {
                hm[j % 32] |= (uint8_t)(1 << (j / 32));
                l -= 4;
            }
            Lu[j] = (uint8_t)l;
        }
        pack2(Lu, b + 32);
    }
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): 8 groups of 32 with
 * make_qkx2_quants, weights sqrt(mean x^2) + |x|, then 6-bit scales and mins
 * relative to the super-block's largest; returns the final values in L. */
static void kquant_scales_mins(const float *x, uint8_t *b, uint8_t *L, int nmax, float rmin,
                               int nstep) {
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xj = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xj[l] * xj[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(xj[l]);
        scales[j] = make_qkx2_quants(32, nmax, xj, weights, L + 32 * j, &mins[j], Laux, rmin,
                                     0.1f, nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t *s = b + 4;
    memset(s, 0, 12);
    for (int j = 0; j < 8; j++) {
        /* ggml stores nearest_int into uint8_t before MIN(63, .) */
        int ls = imin(63, (uint8_t)nearest_int(inv_scale * scales[j]));
        int lm = imin(63, (uint8_t)nearest_int(inv_min * mins[j]));
        if (j < 4) {
            s[j] = (uint8_t)ls;
            s[j + 4] = (uint8_t)lm;
        } else {
            s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            s[j - 4] |= (uint8_t)((ls >> 4) << 6);
            s[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    st_f16(b, max_scale / 63.f);
    st_f16(b + 2, max_min / 63.f);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k4_scale_min(j, s, &sc, &m);
        const float d = ld_f16(b) * (float)sc;
        if (!d) continue;
        const float dm = ld_f16(b + 2) * (float)m;
        for (int ii = 0; ii < 32; ii++)
            L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, nearest_int((x[32 * j + ii] + dm) / d)));
    }
}

static void q_q4_k(const float *x, uint8_t *b, int64_t nb) {
    uint8_t L[QKK];
    for (int64_t i = 0; i < nb; i++, x += QKK, b += 144) {
        kquant_scales_mins(x, b, L, 15, -1.f, 20);
        uint8_t *q = b + 16;
        for (int j = 0; j < QKK; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

static void q_q5_k(const float *x, uint8_t *b, int64_t nb) {
    uint8_t L[QKK];
    for (int64_t i = 0; i < nb; i++, x += QKK, b += 176) {
        kquant_scales_mins(x, b, L, 31, -0.5f, 15);
        uint8_t *qh = b + 16, *ql = b + 48;
        memset(qh, 0, 32);
        for (int n = 0, sh = 0; n < QKK; n += 64, sh += 2, ql += 32) {
            for (int j = 0; j < 32; j++) {
                int l1 = L[n + j], l2 = L[n + j + 32];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[j] |= (uint8_t)(1 << sh);
                }
                if (l2 > 15) {
                    l2 -= 16;
                    qh[j] |= (uint8_t)(2 << sh);
                }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
        }
    }
}

static void q_q6_k(const float *x, uint8_t *b, int64_t nb) {
    int8_t L[QKK];
    float scales[16];
    for (int64_t i = 0; i < nb; i++, x += QKK, b += 210) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ib++) {
            scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(b, 0, 210);
            continue;
        }
        int8_t *sc = (int8_t *)(b + 192);
        float iscale = -128.f / max_scale;
        st_f16(b + 208, 1 / iscale);
        for (int ib = 0; ib < 16; ib++) sc[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < 16; j++) {
            const float d = ld_f16(b + 208) * (float)sc[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (int8_t)(imax(-32, imin(31, nearest_int(x[16 * j + ii] / d))) + 32);
        }
        uint8_t *ql = b, *qh = b + 128;
        for (int j = 0; j < QKK; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const int a = L[j + l], c = L[j + l + 32], e = L[j + l + 64], g = L[j + l + 96];
                ql[l] = (uint8_t)((a & 0xF) | ((e & 0xF) << 4));
                ql[l + 32] = (uint8_t)((c & 0xF) | ((g & 0xF) << 4));
                qh[l] = (uint8_t)((a >> 4) | ((c >> 4) << 2) | ((e >> 4) << 4) | ((g >> 4) << 6));
            }
        }
    }
}

mold_status mold_quantize(mold_dtype t, const float *src, void *dst, int64_t n) {
    int64_t nb;
    MOLD_TRY(check_count(t, n, "quantize", &nb));
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(src[i]))
            return MOLD_ERR(MOLD_E_NUMERIC, "quantize %s: value %lld is %f (expected finite input)",
                            mold_dtype_name(t), (long long)i, (double)src[i]);
    pthread_once(&f16_once, f16_table_fill);
    uint8_t *b = dst;
    switch (t) {
    case MOLD_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case MOLD_F16:
        for (int64_t i = 0; i < n; i++) st_f16(b + 2 * i, src[i]);
        break;
    case MOLD_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = mold_f32_to_bf16(src[i]);
            memcpy(b + 2 * i, &h, 2);
        }
        break;
    case MOLD_Q4_0: q_q4_0(src, b, nb); break;
    case MOLD_Q4_1: q_q4_1(src, b, nb); break;
    case MOLD_Q5_0: q_q5_0(src, b, nb); break;
    case MOLD_Q5_1: q_q5_1(src, b, nb); break;
    case MOLD_Q8_0: q_q8_0(src, b, nb); break;
    case MOLD_Q2_K: q_q2_k(src, b, nb); break;
    case MOLD_Q3_K: q_q3_k(src, b, nb); break;
    case MOLD_Q4_K: q_q4_k(src, b, nb); break;
    case MOLD_Q5_K: q_q5_k(src, b, nb); break;
    case MOLD_Q6_K: q_q6_k(src, b, nb); break;
    default: MOLD_ASSERT(!"check_count let an unknown dtype through");
    }
    return MOLD_OK;
}
