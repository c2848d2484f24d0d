/*
 * rope.cu — rotary position embedding (see rope.cuh).
 *
 * One thread per rotated pair: (a, b) -> (a cos - b sin, a sin + b cos) with
 * the angle of (token, pair index). Interleaved pairs are (2i, 2i+1)
 * (diffusers apply_rotary_emb_qwen, use_real=False: complex multiply); half
 * pairs are (i, i + d/2) (transformers rotate_half).
 */
#include "rope.cuh"

/* ==================================================================== */
/* ---- CUDA kernels ---- */
/* ==================================================================== */

__global__ void rope_kernel(float *x, int64_t n_tok, int64_t n_head, int64_t head_dim,
                            const float *cos_t, const float *sin_t, int half_mode) {
    int64_t half = head_dim / 2, n = n_tok * n_head * half;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n;
         t += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = t % half, th = t / half, tok = th / n_head;
        float *v = x + th * head_dim;
        float c = cos_t[tok * half + i], s = sin_t[tok * half + i];
        int64_t ia = half_mode ? i : 2 * i, ib = half_mode ? i + half : 2 * i + 1;
        float a = v[ia], b = v[ib];
        v[ia] = a * c - b * s;
        v[ib] = a * s + b * c;
    }
}

/* ==================================================================== */
/* ---- kernel launchers ---- */
/* ==================================================================== */

extern "C" cudaError_t mold_cuda_rope(float *x, int64_t n_tok, int64_t n_head, int64_t head_dim,
                                      const float *cos_t, const float *sin_t,
                                      mold_rope_mode mode, cudaStream_t stream) {
    int64_t n = n_tok * n_head * (head_dim / 2);
    if (n <= 0) return cudaSuccess;
    rope_kernel<<<cuda_blocks(n, 256), 256, 0, stream>>>(x, n_tok, n_head, head_dim, cos_t,
                                                         sin_t, mode == MOLD_ROPE_HALF);
    return cudaGetLastError();
}

/* ==================================================================== */
/* ---- op entries ---- */
/* ==================================================================== */

extern "C" mold_status mold_cuda_op_rope(mold_backend *be, float *x, int64_t n_tok,
                                         int64_t n_head, int64_t head_dim, const float *cos_t,
                                         const float *sin_t, mold_rope_mode mode) {
    cuda_backend *cb = cuda_of(be);
    if (n_tok < 0 || n_head <= 0 || head_dim <= 0 || head_dim % 2 != 0)
        return MOLD_ERR(MOLD_E_INVALID,
                        "rope: expected n_tok >= 0, n_head > 0, even head_dim, got %lld, %lld, %lld",
                        (long long)n_tok, (long long)n_head, (long long)head_dim);
    if (mode != MOLD_ROPE_INTERLEAVED && mode != MOLD_ROPE_HALF)
        return MOLD_ERR(MOLD_E_INVALID, "rope: unknown mode %d", (int)mode);
    CUDA_OP(cb, "rope", n_tok, n_head, head_dim, (int64_t)mode);
    MOLD_CUDA_CHECK(cb, mold_cuda_rope(x, n_tok, n_head, head_dim, cos_t, sin_t, mode,
                                       cb->stream));
    return mold_cuda_op_done(cb);
}
