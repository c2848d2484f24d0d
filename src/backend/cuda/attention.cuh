/*
 * attention.cuh — scaled dot-product attention of the CUDA backend.
 *
 * Two paths, same contract (ops.h attention):
 *   - flash: head_dim a multiple of 16, at most 128 (the DiT's 128, the text
 *     encoder's 128, the fixtures' 16/32/...): one kernel, bf16 tensor cores
 *     (mma.sync m16n8k16, fp32 accumulate), online softmax with fp32
 *     statistics, key_valid mask, causal, GQA; scores never leave registers;
 *   - gemm: any other head_dim (the VAE mid attention has 384): per head and
 *     query chunk, scores = Q K^T by cuBLASLt into scratch, a masked f32
 *     softmax writing bf16 probabilities, then P V by cuBLASLt. Only one
 *     head's chunk of scores exists at a time.
 * Inputs are rounded to bf16 first (one pass each over q, k, v).
 */
#ifndef MOLD_BACKEND_CUDA_ATTENTION_CUH
#define MOLD_BACKEND_CUDA_ATTENTION_CUH

#include "cuda_common.cuh"

extern "C" {
/* Flash kernel launcher: bf16 q [sq, hq, d], k/v [skv, hkv, d] (16-byte
 * aligned), f32 out [sq, hq, d]; d % 16 == 0 and 16 <= d <= 128. */
cudaError_t mold_cuda_flash_attention(float *out, const __nv_bfloat16 *q,
                                      const __nv_bfloat16 *k, const __nv_bfloat16 *v,
                                      int64_t sq, int64_t skv, int64_t hq, int64_t hkv,
                                      int64_t d, float scale, const float *key_valid,
                                      bool causal, cudaStream_t stream);

mold_status mold_cuda_op_attention(mold_backend *be, float *out, const float *q, const float *k,
                                   const float *v, int64_t sq, int64_t skv, int64_t hq,
                                   int64_t hkv, int64_t d, float scale, const float *key_valid,
                                   bool causal);

/* Forces the GEMM path for every head_dim (tests and benchmarks compare the
 * two paths); 0 restores automatic selection. */
void mold_cuda_attention_force_gemm(int on);
/* Benchmark hook: flash kernel variant (0 = default flash3; 4 = flash2, the
 * previous default; see mold_cuda_flash_attention). Also set from the
 * environment (MOLD_CUDA_ATTN_VARIANT) when a backend is created. */
void mold_cuda_attention_set_variant(int v);
}

#endif
