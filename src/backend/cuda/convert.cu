/*
 * convert.cu — dtype conversion kernels (see convert.cuh).
 *
 * Dequantization is per element: thread t computes value j of a row from the
 * block holding it (scale bytes are re-read per element and served by L1).
 * This is simple to check against ggml's formulas and costs little next to the
 * GEMM that follows (a 12288 x 3072 Q4_K weight dequantizes in a few tens of
 * microseconds); a fused dequant-GEMM may replace it later.
 *
 * Reference: ggml-quants.c dequantize_row_{q4_0,q4_1,q5_0,q5_1,q8_0,q2_K,
 * q3_K,q4_K,q5_K,q6_K}; block layouts from ggml-common.h (offsets below).
 */
#include "convert.cuh"

#include <cuda_fp16.h>

/* ==================================================================== */
/* ---- CUDA kernels ---- */
/* ==================================================================== */

__device__ __forceinline__ float f16_at(const uint8_t *p) {
    return __half2float(__ushort_as_half(*(const uint16_t *)p)); /* even offsets only */
}

/* Q4_K / Q5_K 6-bit scale and min of sub-block j (ggml get_scale_min_k4). */
__device__ __forceinline__ void scale_min_k4(int j, const uint8_t *q, float *sc, float *mn) {
    if (j < 4) {
        *sc = (float)(q[j] & 63);
        *mn = (float)(q[j + 4] & 63);
    } else {
        *sc = (float)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *mn = (float)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Value j (0 <= j < row length) of a row of dtype T starting at `row`. */
template <mold_dtype T>
__device__ __forceinline__ float dq(const uint8_t *row, int64_t j) {
    if constexpr (T == MOLD_F32) {
        return ((const float *)row)[j];
    } else if constexpr (T == MOLD_BF16) {
        return __bfloat162float(__ushort_as_bfloat16(((const uint16_t *)row)[j]));
    } else if constexpr (T == MOLD_F16) {
        return __half2float(__ushort_as_half(((const uint16_t *)row)[j]));
    } else if constexpr (T == MOLD_Q4_0) { /* {f16 d; u8 qs[16]} 18 B */
        const uint8_t *b = row + (j >> 5) * 18;
        int i = (int)(j & 31);
        int q = i < 16 ? (b[2 + i] & 0xF) : (b[2 + i - 16] >> 4);
        return (float)(q - 8) * f16_at(b);
    } else if constexpr (T == MOLD_Q4_1) { /* {f16 d, m; u8 qs[16]} 20 B */
        const uint8_t *b = row + (j >> 5) * 20;
        int i = (int)(j & 31);
        int q = i < 16 ? (b[4 + i] & 0xF) : (b[4 + i - 16] >> 4);
        return (float)q * f16_at(b) + f16_at(b + 2);
    } else if constexpr (T == MOLD_Q5_0) { /* {f16 d; u8 qh[4]; u8 qs[16]} 22 B */
        const uint8_t *b = row + (j >> 5) * 22;
        int i = (int)(j & 31);
        int hb = (b[2 + (i >> 3)] >> (i & 7)) & 1; /* bit i of little-endian qh */
        int q = (i < 16 ? (b[6 + i] & 0xF) : (b[6 + i - 16] >> 4)) | (hb << 4);
        return (float)(q - 16) * f16_at(b);
    } else if constexpr (T == MOLD_Q5_1) { /* {f16 d, m; u8 qh[4]; u8 qs[16]} 24 B */
        const uint8_t *b = row + (j >> 5) * 24;
        int i = (int)(j & 31);
        int hb = (b[4 + (i >> 3)] >> (i & 7)) & 1;
        int q = (i < 16 ? (b[8 + i] & 0xF) : (b[8 + i - 16] >> 4)) | (hb << 4);
        return (float)q * f16_at(b) + f16_at(b + 2);
    } else if constexpr (T == MOLD_Q8_0) { /* {f16 d; i8 qs[32]} 34 B */
        const uint8_t *b = row + (j >> 5) * 34;
        return (float)(int8_t)b[2 + (j & 31)] * f16_at(b);
    } else if constexpr (T == MOLD_Q2_K) { /* {u8 scales[16]; u8 qs[64]; f16 d, dmin} 84 B */
        const uint8_t *b = row + (j >> 8) * 84;
        int i = (int)(j & 255), n = i >> 7, r = i & 127, p = r >> 5, l = r & 31;
        int sc = b[8 * n + 2 * p + (l >> 4)];
        int q = (b[16 + 32 * n + l] >> (2 * p)) & 3;
        return f16_at(b + 80) * (float)(sc & 0xF) * (float)q - f16_at(b + 82) * (float)(sc >> 4);
    } else if constexpr (T == MOLD_Q3_K) { /* {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d} 110 B */
        const uint8_t *b = row + (j >> 8) * 110;
        const uint8_t *s = b + 96;
        int i = (int)(j & 255), n = i >> 7, r = i & 127, p = r >> 5, l = r & 31;
        int is = 8 * n + 2 * p + (l >> 4);
        int us = is < 4    ? (s[is] & 0xF) | (((s[is + 8] >> 0) & 3) << 4)
                 : is < 8  ? (s[is] & 0xF) | (((s[is + 4] >> 2) & 3) << 4)
                 : is < 12 ? (s[is - 8] >> 4) | (((s[is] >> 4) & 3) << 4)
                           : (s[is - 8] >> 4) | (((s[is - 4] >> 6) & 3) << 4);
        int q = (b[32 + 32 * n + l] >> (2 * p)) & 3;
        int hm = (b[l] >> (4 * n + p)) & 1;
        return f16_at(b + 108) * (float)(us - 32) * (float)(q - (hm ? 0 : 4));
    } else if constexpr (T == MOLD_Q4_K) { /* {f16 d, dmin; u8 scales[12]; u8 qs[128]} 144 B */
        const uint8_t *b = row + (j >> 8) * 144;
        int i = (int)(j & 255), g = i >> 6, hi = (i >> 5) & 1, l = i & 31;
        float sc, mn;
        scale_min_k4(2 * g + hi, b + 4, &sc, &mn);
        int qb = b[16 + 32 * g + l];
        int q = hi ? (qb >> 4) : (qb & 0xF);
        return f16_at(b) * sc * (float)q - f16_at(b + 2) * mn;
    } else if constexpr (T == MOLD_Q5_K) { /* {f16 d, dmin; scales[12]; qh[32]; qs[128]} 176 B */
        const uint8_t *b = row + (j >> 8) * 176;
        int i = (int)(j & 255), g = i >> 6, hi = (i >> 5) & 1, l = i & 31;
        float sc, mn;
        scale_min_k4(2 * g + hi, b + 4, &sc, &mn);
        int qb = b[48 + 32 * g + l];
        int q = (hi ? (qb >> 4) : (qb & 0xF)) + (((b[16 + l] >> (2 * g + hi)) & 1) << 4);
        return f16_at(b) * sc * (float)q - f16_at(b + 2) * mn;
    } else { /* MOLD_Q6_K: {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d} 210 B */
        const uint8_t *b = row + (j >> 8) * 210;
        int i = (int)(j & 255), n = i >> 7, r = i & 127, p = r >> 5, l = r & 31;
        int lo = b[64 * n + l + 32 * (p & 1)];
        int nib = p >= 2 ? (lo >> 4) : (lo & 0xF);
        int h = (b[128 + 32 * n + l] >> (2 * p)) & 3;
        int q = (nib | (h << 4)) - 32;
        int sc = (int8_t)b[192 + 8 * n + (l >> 4) + 2 * p];
        return f16_at(b + 208) * (float)sc * (float)q;
    }
}

/* bf16 output, two values per thread (cols is even: every format's block is). */
template <mold_dtype T>
__global__ void dequant_bf16_kernel(__nv_bfloat162 *dst, const uint8_t *src, int64_t rows,
                                    int64_t cols, uint64_t row_bytes) {
    int64_t half_cols = cols >> 1, n = rows * half_cols;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n;
         t += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = t / half_cols, j = (t - r * half_cols) * 2;
        const uint8_t *row = src + r * row_bytes;
        dst[t] = __floats2bfloat162_rn(dq<T>(row, j), dq<T>(row, j + 1));
    }
}

template <mold_dtype T>
__global__ void rows_f32_kernel(float *dst, const uint8_t *src, uint64_t row_bytes, int64_t cols,
                                const int32_t *ids, int64_t n_rows) {
    int64_t n = n_rows * cols;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n;
         t += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = t / cols, j = t - i * cols;
        int64_t r = ids ? (int64_t)ids[i] : i;
        dst[t] = dq<T>(src + r * row_bytes, j);
    }
}

/* Vector path: 4 floats in, 4 bf16 out (16-byte loads, 8-byte stores). */
__global__ void f32_to_bf16_vec(uint2 *dst, const float4 *src, int64_t n4) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n4;
         t += (int64_t)gridDim.x * blockDim.x) {
        float4 v = src[t];
        __nv_bfloat162 a = __floats2bfloat162_rn(v.x, v.y), b = __floats2bfloat162_rn(v.z, v.w);
        uint2 o;
        o.x = *(uint32_t *)&a;
        o.y = *(uint32_t *)&b;
        dst[t] = o;
    }
}

__global__ void f32_to_bf16_scalar(__nv_bfloat16 *dst, const float *src, int64_t n) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n;
         t += (int64_t)gridDim.x * blockDim.x)
        dst[t] = __float2bfloat16_rn(src[t]);
}

__global__ void f16_to_bf16_kernel(__nv_bfloat16 *dst, const uint16_t *src, int64_t n) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n;
         t += (int64_t)gridDim.x * blockDim.x)
        dst[t] = __float2bfloat16_rn(__half2float(__ushort_as_half(src[t])));
}

/* ==================================================================== */
/* ---- kernel launchers ---- */
/* ==================================================================== */

extern "C" bool mold_cuda_dtype_supported(mold_dtype t) {
    switch (t) {
    case MOLD_F32: case MOLD_F16: case MOLD_BF16:
    case MOLD_Q4_0: case MOLD_Q4_1: case MOLD_Q5_0: case MOLD_Q5_1: case MOLD_Q8_0:
    case MOLD_Q2_K: case MOLD_Q3_K: case MOLD_Q4_K: case MOLD_Q5_K: case MOLD_Q6_K:
        return true;
    default:
        return false;
    }
}

extern "C" cudaError_t mold_cuda_f32_to_bf16(__nv_bfloat16 *dst, const float *src, int64_t n,
                                             cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    int64_t n4 = ((uintptr_t)src % 16 == 0 && (uintptr_t)dst % 8 == 0) ? n / 4 : 0;
    if (n4 > 0)
        f32_to_bf16_vec<<<cuda_blocks(n4, 256), 256, 0, stream>>>((uint2 *)dst,
                                                                  (const float4 *)src, n4);
    if (n - 4 * n4 > 0)
        f32_to_bf16_scalar<<<cuda_blocks(n - 4 * n4, 256), 256, 0, stream>>>(
            dst + 4 * n4, src + 4 * n4, n - 4 * n4);
    return cudaGetLastError();
}

extern "C" cudaError_t mold_cuda_f16_to_bf16(__nv_bfloat16 *dst, const uint16_t *src, int64_t n,
                                             cudaStream_t stream) {
    if (n <= 0) return cudaSuccess;
    f16_to_bf16_kernel<<<cuda_blocks(n, 256), 256, 0, stream>>>(dst, src, n);
    return cudaGetLastError();
}

#define DTYPE_CASES(X)                                                                     \
    X(MOLD_F32) X(MOLD_F16) X(MOLD_BF16) X(MOLD_Q4_0) X(MOLD_Q4_1) X(MOLD_Q5_0) X(MOLD_Q5_1) \
    X(MOLD_Q8_0) X(MOLD_Q2_K) X(MOLD_Q3_K) X(MOLD_Q4_K) X(MOLD_Q5_K) X(MOLD_Q6_K)

extern "C" cudaError_t mold_cuda_dequant_bf16(mold_dtype t, __nv_bfloat16 *dst, const void *src,
                                              int64_t rows, int64_t cols, uint64_t row_bytes,
                                              cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    if (cols % 2 != 0) return cudaErrorInvalidValue; /* every block holds an even count */
    unsigned grid = cuda_blocks(rows * cols / 2, 256);
    const uint8_t *s = (const uint8_t *)src;
    __nv_bfloat162 *d = (__nv_bfloat162 *)dst;
    switch (t) {
#define X(T)                                                                               \
    case T:                                                                                \
        dequant_bf16_kernel<T><<<grid, 256, 0, stream>>>(d, s, rows, cols, row_bytes);      \
        break;
        DTYPE_CASES(X)
#undef X
    default:
        return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t mold_cuda_rows_f32(mold_dtype t, float *dst, const void *src,
                                          uint64_t row_bytes, int64_t cols, const int32_t *ids,
                                          int64_t n_rows, cudaStream_t stream) {
    if (n_rows <= 0 || cols <= 0) return cudaSuccess;
    unsigned grid = cuda_blocks(n_rows * cols, 256);
    const uint8_t *s = (const uint8_t *)src;
    switch (t) {
#define X(T)                                                                               \
    case T:                                                                                \
        rows_f32_kernel<T><<<grid, 256, 0, stream>>>(dst, s, row_bytes, cols, ids, n_rows); \
        break;
        DTYPE_CASES(X)
#undef X
    default:
        return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}
