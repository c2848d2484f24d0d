/*
 * elementwise.cuh — pointwise and row-wise helpers of the CUDA backend:
 * activations (SiLU, GELU-tanh, SwiGLU), add, axpby, gated residual add,
 * clamp, strided row copies, CFG combine with norm rescale, and the NaN/Inf
 * counter. All f32; y may alias inputs where ops.h allows it.
 */
#ifndef MOLD_BACKEND_CUDA_ELEMENTWISE_CUH
#define MOLD_BACKEND_CUDA_ELEMENTWISE_CUH

#include "cuda_common.cuh"

extern "C" {
/* Launchers. */
cudaError_t mold_cuda_silu(float *y, const float *x, int64_t n, cudaStream_t stream);
cudaError_t mold_cuda_gelu_tanh(float *y, const float *x, int64_t n, cudaStream_t stream);
cudaError_t mold_cuda_swiglu(float *y, const float *gate, const float *up, int64_t n,
                             cudaStream_t stream);
cudaError_t mold_cuda_axpby(float *y, const float *a, float alpha, const float *b, float beta,
                            int64_t n, cudaStream_t stream);
cudaError_t mold_cuda_gated_add(float *x, const float *gate, const float *y, int64_t rows,
                                int64_t dim, cudaStream_t stream);
cudaError_t mold_cuda_clamp(float *y, const float *x, float lo, float hi, int64_t n,
                            cudaStream_t stream);
cudaError_t mold_cuda_cfg_combine(float *out, const float *cond, const float *uncond,
                                  float scale, int64_t n_tok, int64_t dim, cudaStream_t stream);
/* Adds the count of non-finite values of x[0..n) to *count (device int64). */
cudaError_t mold_cuda_count_nonfinite(const float *x, int64_t n, int64_t *count,
                                      cudaStream_t stream);

/* Op-table entries (ops.h). */
mold_status mold_cuda_op_silu(mold_backend *be, float *y, const float *x, int64_t n);
mold_status mold_cuda_op_gelu_tanh(mold_backend *be, float *y, const float *x, int64_t n);
mold_status mold_cuda_op_swiglu(mold_backend *be, float *y, const float *gate, const float *up,
                                int64_t n);
mold_status mold_cuda_op_add(mold_backend *be, float *y, const float *a, const float *b,
                             int64_t n);
mold_status mold_cuda_op_axpby(mold_backend *be, float *y, const float *a, float alpha,
                               const float *b, float beta, int64_t n);
mold_status mold_cuda_op_gated_add(mold_backend *be, float *x, const float *gate, const float *y,
                                   int64_t rows, int64_t dim);
mold_status mold_cuda_op_clamp(mold_backend *be, float *y, const float *x, float lo, float hi,
                               int64_t n);
mold_status mold_cuda_op_copy_rows(mold_backend *be, float *dst, int64_t dst_stride,
                                   const float *src, int64_t src_stride, int64_t rows,
                                   int64_t cols);
mold_status mold_cuda_op_cfg_combine(mold_backend *be, float *out, const float *cond,
                                     const float *uncond, float scale, int64_t n_tok,
                                     int64_t dim);
mold_status mold_cuda_op_count_nonfinite(mold_backend *be, const float *x, int64_t n,
                                         int64_t *bad);
}

#endif
