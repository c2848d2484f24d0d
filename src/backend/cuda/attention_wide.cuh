/*
 * attention_wide.cuh — attention for head dims above the flash kernels' 128
 * without a mask (the VAE mid-block: one head of d = 384 over every latent
 * pixel), as key-chunked GEMMs with an online softmax between them.
 */
#ifndef MOLD_BACKEND_CUDA_ATTENTION_WIDE_CUH
#define MOLD_BACKEND_CUDA_ATTENTION_WIDE_CUH

#include "cuda_common.cuh"

extern "C" {
/* Runs ops.h attention when this path takes the case (d > 128, d % 16 == 0,
 * no key_valid, not causal, and its chunks fit the scratch the GEMM path of
 * attention.cu would use, so the planner's figure holds for both): returns
 * true with the op's status in *st (the op is then done). Returns false,
 * having queued nothing, for every other case. The caller has validated the
 * shape, set CUDA_OP and handled sq == 0 / skv == 0. */
bool mold_cuda_attention_wide(cuda_backend *cb, float *out, const float *q, const float *k,
                              const float *v, int64_t sq, int64_t skv, int64_t hq, int64_t hkv,
                              int64_t d, float scale, const float *key_valid, bool causal,
                              mold_status *st);
}

#endif
