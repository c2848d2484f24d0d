/*
 * matmul.cuh — GEMMs of the CUDA backend through cuBLASLt: the matmul and
 * embed ops, and the shared GEMM entry used by conv2d and the GEMM path of
 * attention.
 *
 * Precision: bf16 weights (f16 weights become bf16 at upload) and ggml block
 * weights (dequantized into a bf16 scratch per call) multiply bf16-rounded
 * activations with fp32 accumulation and fp32 output. f32 weights run an
 * exact-f32 GEMM (CUBLAS_COMPUTE_32F, no TF32) on the f32 activations below
 * CUDA_F32_BF16_MIN_M (128) rows, and from there the bf16 path too (the weight
 * rounded into scratch per call, like a block format).
 */
#ifndef MOLD_BACKEND_CUDA_MATMUL_CUH
#define MOLD_BACKEND_CUDA_MATMUL_CUH

#include "cuda_common.cuh"

/* f32 weights with at least this many activation rows take the bf16 tensor
 * core GEMM; below it the exact f32 GEMM is kept (the small-m matmuls:
 * modulation, timestep MLP, norm_out at m = batch). Measured on the H100
 * (cuda_check --fuse, a 3072 x 3072 f32 weight, docs/perf/cuda.md): exact
 * 0.017 / 0.041 / 0.069 / 0.119 ms at m = 2 / 64 / 128 / 256, bf16 path
 * (x and W rounded per call) 0.037 / 0.038 / 0.040 / 0.042 ms: the exact
 * GEMM wins below ~64 rows (weight-read bound, one launch instead of three),
 * ties at 64 and loses 1.7x at 128, 2.8x at 256, 11x at 13842. 128 keeps
 * the tie region exact. src/engine/plan.c mirrors it. */
#define CUDA_F32_BF16_MIN_M 128

extern "C" {

/* Column-major D[m x n] (ldd) = alpha * op(A) * B + (bias[m] per row of D when
 * bias != NULL). op(A) is m x k: A stored k x m (lda) when trans_a, else m x k.
 * B is stored k x n (ldb). A and B are `ab` (CUDA_R_16BF or CUDA_R_32F),
 * D is f32; fp32 accumulation. Queued on cb->stream. */
mold_status mold_cuda_gemm(cuda_backend *cb, int trans_a, int64_t m, int64_t n, int64_t k,
                           float alpha, const void *A, int64_t lda, const void *B, int64_t ldb,
                           cudaDataType_t ab, float *D, int64_t ldd, const float *bias);

/* As mold_cuda_gemm with A and B bf16, a bf16 D (the fused MLP's hidden
 * activation, rounded once from the f32 accumulator) and no bias: cuBLASLt
 * (13.0, H100) offers no bf16-output GEMM with an f32 bias epilogue, so the
 * caller adds the bias (the GELU kernel does, in f32). */
mold_status mold_cuda_gemm_bf16_out(cuda_backend *cb, int trans_a, int64_t m, int64_t n, int64_t k,
                                    const void *A, int64_t lda, const void *B, int64_t ldb,
                                    __nv_bfloat16 *D, int64_t ldd);

/* A bf16 view of weight w in *out: w->data for bf16 weights, else w
 * dequantized / rounded into `region` (n_out x n_in bf16, queued on the
 * stream). */
mold_status mold_cuda_weight_bf16(cuda_backend *cb, const mold_weight *w, __nv_bfloat16 *region,
                                  const void **out);
/* True when matmul(x[m, :], w) runs the exact f32 GEMM (no bf16 rounding). */
bool mold_cuda_matmul_exact(const mold_weight *w, int64_t m);
/* The matmul op's work without its op bookkeeping, for ops built from it. */
mold_status mold_cuda_matmul_run(cuda_backend *cb, float *y, const float *x, int64_t m,
                                 const mold_weight *w, const float *bias);
/* MOLD_OK when w is a usable CUDA weight; `what` names the op in errors. */
mold_status mold_cuda_check_weight(const mold_weight *w, const char *what);

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
