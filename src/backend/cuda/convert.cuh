/*
 * convert.cuh — dtype conversion kernels of the CUDA backend: f32 -> bf16
 * (matmul/conv inputs), f16 -> bf16 (f16 weights at upload), ggml block
 * formats -> bf16 (per-call weight dequantization before the GEMM) and any
 * weight row -> f32 (embed, upload_f32).
 *
 * Block layouts are ggml's (ggml-common.h), dequantization formulas those of
 * ggml-quants.c dequantize_row_*; they must agree bit for bit (up to the final
 * bf16 rounding) with the CPU backend's mold_dequantize().
 *
 * Launchers return cudaGetLastError() after their launch; callers wrap them
 * in MOLD_CUDA_CHECK so failures name the op and shape.
 */
#ifndef MOLD_BACKEND_CUDA_CONVERT_CUH
#define MOLD_BACKEND_CUDA_CONVERT_CUH

#include "cuda_common.cuh"

extern "C" {

/* True when the device can convert weights of dtype t (f32, f16, bf16 and the
 * ggml block formats Q4_0 ... Q6_K). */
bool mold_cuda_dtype_supported(mold_dtype t);

/* dst[i] = bf16(src[i]) (round to nearest even), n values. */
cudaError_t mold_cuda_f32_to_bf16(__nv_bfloat16 *dst, const float *src, int64_t n,
                                  cudaStream_t stream);
/* dst[i] = bf16(f16 src[i]), n values (weights; rounds 11 to 8 mantissa bits). */
cudaError_t mold_cuda_f16_to_bf16(__nv_bfloat16 *dst, const uint16_t *src, int64_t n,
                                  cudaStream_t stream);
/* dst[r, j] (row-major, rows x cols) = bf16(dequant(src row r, value j)) for a
 * weight of dtype t whose rows are row_bytes apart. cols is a whole number of
 * blocks. Any supported dtype (plain types are converted). */
cudaError_t mold_cuda_dequant_bf16(mold_dtype t, __nv_bfloat16 *dst, const void *src,
                                   int64_t rows, int64_t cols, uint64_t row_bytes,
                                   cudaStream_t stream);
/* dst[i, j] (f32, n_rows x cols) = dequant(src row ids[i], value j); ids is
 * device memory, NULL for the identity (row i). Ids are assumed in range
 * (checked on the host by the caller). */
cudaError_t mold_cuda_rows_f32(mold_dtype t, float *dst, const void *src, uint64_t row_bytes,
                               int64_t cols, const int32_t *ids, int64_t n_rows,
                               cudaStream_t stream);
}

#endif
