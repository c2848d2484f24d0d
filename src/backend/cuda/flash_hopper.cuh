/*
 * flash_hopper.cuh — FlashAttention forward for Hopper (sm_90a): TMA loads
 * into 128-byte-swizzled shared memory, warpgroup MMA (wgmma) with both GEMMs
 * of a tile overlapped with the softmax of the next (FA3 scheme, Shah et al.
 * 2024). Head dim 128, no causal mask, positive scale: the DiT's joint
 * attention. attention.cu chooses it and falls back to the mma.sync kernels
 * for every other case.
 */
#ifndef MOLD_BACKEND_CUDA_FLASH_HOPPER_CUH
#define MOLD_BACKEND_CUDA_FLASH_HOPPER_CUH

#include "cuda_common.cuh"

#define FH_D 128 /* head dim */

extern "C" {
/* true when this build and device run the kernel (sm_90a code, CC 9.0). */
bool mold_cuda_flash_hopper_available(void);

/* out [sq, hq, 128] f32 = softmax(q k^T * scale, keys with key_valid 0 or
 * >= skv excluded) v. q [sq, hq, 128], k [skv, hkv, 128] bf16; vt = V^T
 * [hkv * 128][vt_pitch] bf16 (vt_pitch >= skv, a multiple of 8; values past
 * skv are never read). scale > 0. */
cudaError_t mold_cuda_flash_hopper(float *out, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                                   const __nv_bfloat16 *vt, int64_t sq, int64_t skv,
                                   int64_t vt_pitch, int64_t hq, int64_t hkv, float scale,
                                   const float *key_valid, bool pingpong, cudaStream_t stream);
}

#endif
