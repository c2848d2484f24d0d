/*
 * rope.cuh — rotary position embedding of the CUDA backend, both pairings:
 * interleaved pairs (2i, 2i+1) for the DiT and half-split pairs (i, i + d/2)
 * for the Qwen2.5 text encoder, alone or after the DiT's per-head QK
 * RMSNorm (one fused pass). f32 throughout.
 */
#ifndef MOLD_BACKEND_CUDA_ROPE_CUH
#define MOLD_BACKEND_CUDA_ROPE_CUH

#include "cuda_common.cuh"

extern "C" {
/* In place on x [n_tok, n_head, head_dim]; cos_t/sin_t [n_tok, head_dim/2]. */
cudaError_t mold_cuda_rope(float *x, int64_t n_tok, int64_t n_head, int64_t head_dim,
                           const float *cos_t, const float *sin_t, mold_rope_mode mode,
                           cudaStream_t stream);

/* y = rope(rms_norm_per_head(x) * gamma) on [n_tok, n_head, head_dim]; y may
 * alias x. */
cudaError_t mold_cuda_rms_norm_rope(float *y, const float *x, const float *gamma, int64_t n_tok,
                                    int64_t n_head, int64_t head_dim, float eps,
                                    const float *cos_t, const float *sin_t, mold_rope_mode mode,
                                    cudaStream_t stream);

mold_status mold_cuda_op_rms_norm_rope(mold_backend *be, float *y, const float *x,
                                       const float *gamma, int64_t n_tok, int64_t n_head,
                                       int64_t head_dim, float eps, const float *cos_t,
                                       const float *sin_t, mold_rope_mode mode);
mold_status mold_cuda_op_rope(mold_backend *be, float *x, int64_t n_tok, int64_t n_head,
                              int64_t head_dim, const float *cos_t, const float *sin_t,
                              mold_rope_mode mode);
}

#endif
