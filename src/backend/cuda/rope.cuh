/*
 * rope.cuh — rotary position embedding of the CUDA backend, both pairings:
 * interleaved pairs (2i, 2i+1) for the DiT and half-split pairs (i, i + d/2)
 * for the Qwen2.5 text encoder. f32 throughout.
 */
#ifndef MOLD_BACKEND_CUDA_ROPE_CUH
#define MOLD_BACKEND_CUDA_ROPE_CUH

#include "cuda_common.cuh"

extern "C" {
/* In place on x [n_tok, n_head, head_dim]; cos_t/sin_t [n_tok, head_dim/2]. */
cudaError_t mold_cuda_rope(float *x, int64_t n_tok, int64_t n_head, int64_t head_dim,
                           const float *cos_t, const float *sin_t, mold_rope_mode mode,
                           cudaStream_t stream);

mold_status mold_cuda_op_rope(mold_backend *be, float *x, int64_t n_tok, int64_t n_head,
                              int64_t head_dim, const float *cos_t, const float *sin_t,
                              mold_rope_mode mode);
}

#endif
