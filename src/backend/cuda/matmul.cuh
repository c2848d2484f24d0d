/*
 * matmul.cuh — GEMMs of the CUDA backend through cuBLASLt: the matmul and
 * embed ops, and the shared GEMM entry used by conv2d and the GEMM path of
 * attention.
 *
 * Precision: bf16 weights (f16 weights become bf16 at upload) and ggml block
 * weights (dequantized into a bf16 scratch per call) multiply bf16-rounded
 * activations with fp32 accumulation and fp32 output; f32 weights run an
 * exact-f32 GEMM (CUBLAS_COMPUTE_32F, no TF32) on the f32 activations.
 */
#ifndef MOLD_BACKEND_CUDA_MATMUL_CUH
#define MOLD_BACKEND_CUDA_MATMUL_CUH

#include "cuda_common.cuh"

extern "C" {

/* Column-major D[m x n] (ldd) = alpha * op(A) * B + (bias[m] per row of D when
 * bias != NULL). op(A) is m x k: A stored k x m (lda) when trans_a, else m x k.
 * B is stored k x n (ldb). A and B are `ab` (CUDA_R_16BF or CUDA_R_32F),
 * D is f32; fp32 accumulation. Queued on cb->stream. */
mold_status mold_cuda_gemm(cuda_backend *cb, int trans_a, int64_t m, int64_t n, int64_t k,
                           float alpha, const void *A, int64_t lda, const void *B, int64_t ldb,
                           cudaDataType_t ab, float *D, int64_t ldd, const float *bias);

/* Op-table entries (ops.h). */
mold_status mold_cuda_op_matmul(mold_backend *be, float *y, const float *x, int64_t m,
                                const mold_weight *w, const float *bias);
mold_status mold_cuda_op_embed(mold_backend *be, float *y, const mold_weight *table,
                               const int32_t *ids_host, int64_t n);

/* Benchmark: median time (ms, device events) of `iters` (<= 64) bf16 "TN"
 * GEMMs of m x n x k on random data, after 3 warm-ups. For peak figures. */
mold_status mold_cuda_bench_gemm(mold_backend *be, int64_t m, int64_t n, int64_t k, int iters,
                                 double *median_ms);
}

#endif
