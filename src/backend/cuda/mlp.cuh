/*
 * mlp.cuh — the fused two-layer GELU MLP of the CUDA backend (ops.h
 * mlp_gelu): bf16 hidden activation in the caller's tmp, GELU in place on
 * it, no f32 round trip between the two GEMMs.
 */
#ifndef MOLD_BACKEND_CUDA_MLP_CUH
#define MOLD_BACKEND_CUDA_MLP_CUH

#include "cuda_common.cuh"

extern "C" {
/* In place on h[rows, cols] (bf16): h = bf16(gelu_tanh(h + bias[col])),
 * bias nullable; f32 math inside. */
cudaError_t mold_cuda_gelu_bf16(__nv_bfloat16 *h, const float *bias, int64_t rows, int64_t cols,
                                cudaStream_t stream);

/* Op-table entry (ops.h). */
mold_status mold_cuda_op_mlp_gelu(mold_backend *be, float *y, const float *x, int64_t m,
                                  const mold_weight *w1, const float *b1, const mold_weight *w2,
                                  const float *b2, float *tmp);
}

#endif
