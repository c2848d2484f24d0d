/*
 * matmul_small.cuh — matmul for a few rows (m <= 64) against a bf16 weight:
 * the DiT's text stream (13-26 rows), its modulation and timestep linears
 * (1-2 rows) and the text encoder at short prompts (~40 rows).
 *
 * Why: at such m a GEMM only streams the weight once, so its floor is the
 * weight's bytes over memory bandwidth (18.9 MB of a 3072 x 3072 bf16 matrix
 * ~ 6 us on the H100). cuBLASLt's heuristic picks a 128-wide tile grid of
 * n / 128 blocks (24 for n = 3072: a fifth of the SMs) and reaches ~0.5 TB/s
 * (measured: 35 us). This kernel splits k as well so every SM streams, then
 * sums the k-partials in a fixed order (deterministic, no atomics).
 */
#ifndef MOLD_BACKEND_CUDA_MATMUL_SMALL_CUH
#define MOLD_BACKEND_CUDA_MATMUL_SMALL_CUH

#include "cuda_common.cuh"

#define MOLD_CUDA_SMALL_M 64 /* largest m this path takes */

extern "C" {
/* true when mold_cuda_matmul_small takes this shape (m <= 64, k % 32 == 0). */
bool mold_cuda_matmul_small_fits(int64_t m, int64_t k);

/* Scratch bytes mold_cuda_matmul_small needs (x in bf16 + k-partials). */
size_t mold_cuda_matmul_small_scratch(int64_t m, int64_t k, int64_t n, int n_sm);

/* y[m, n] (f32) = x[m, k] (f32) . W^T + bias (nullable); W [n, k] bf16 with
 * rows `row_bytes` apart; scr: mold_cuda_matmul_small_scratch() bytes. */
cudaError_t mold_cuda_matmul_small(float *y, const float *x, int64_t m, const void *w,
                                   int64_t n, int64_t k, uint64_t row_bytes, const float *bias,
                                   void *scr, int n_sm, cudaStream_t stream);
}

#endif
