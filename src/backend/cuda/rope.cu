/*
 * rope.cu — rotary position embedding (see rope.cuh).
 *
 * One thread per rotated pair: (a, b) -> (a cos - b sin, a sin + b cos) with
 * the angle of (token, pair index). Interleaved pairs are (2i, 2i+1)
 * (diffusers apply_rotary_emb_qwen, use_real=False: complex multiply); half
 * pairs are (i, i + d/2) (transformers rotate_half).
 *
 * rms_norm_rope fuses the DiT's per-head QK RMSNorm with the RoPE that
 * follows it: one read and one write of q or k instead of two of each.
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

/* One warp per (token, head) row: the sum of squares over the row, then
 * each lane normalizes and rotates its pairs (p = lane, lane + 32, ...).
 * A pair is read twice (the second read hits L1) and written once by the
 * lane that read it, so y may alias x. Same f32 formulas, in the same
 * order, as rms_norm followed by rope. */
__global__ void rms_norm_rope_kernel(float *y, const float *x, const float *gamma, int64_t rows,
                                     int64_t n_head, int64_t head_dim, float eps,
                                     const float *cos_t, const float *sin_t, int half_mode) {
    const int64_t row = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return; /* whole warps leave together */
    const int64_t half = head_dim / 2, tok = row / n_head;
    const float *xr = x + row * head_dim;
    float *yr = y + row * head_dim;
    float ss = 0.0f;
    for (int64_t i = lane; i < head_dim; i += 32) ss += xr[i] * xr[i];
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    const float r = rsqrtf(ss / (float)head_dim + eps);
    const float *ct = cos_t + tok * half, *st = sin_t + tok * half;
    for (int64_t p = lane; p < half; p += 32) {
        int64_t ia = half_mode ? p : 2 * p, ib = half_mode ? p + half : 2 * p + 1;
        float a = xr[ia] * r * (gamma ? gamma[ia] : 1.0f);
        float b = xr[ib] * r * (gamma ? gamma[ib] : 1.0f);
        float c = ct[p], s = st[p];
        yr[ia] = a * c - b * s;
        yr[ib] = a * s + b * c;
    }
}

/* The DiT's case, head_dim 128 interleaved with 16-byte aligned rows: lane l
 * holds values 4l..4l+3 (pairs 2l and 2l+1) in registers, one 16-byte load
 * and store each. Same formulas as rms_norm_rope_kernel. */
__global__ void rms_norm_rope128_kernel(float *y, const float *x, const float *gamma,
                                        int64_t rows, int64_t n_head, float eps,
                                        const float *cos_t, const float *sin_t) {
    const int64_t row = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float4 v = ((const float4 *)(x + row * 128))[lane];
    float ss = v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    const float r = rsqrtf(ss / 128.0f + eps);
    float4 g = gamma ? ((const float4 *)gamma)[lane] : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
    const int64_t t = (row / n_head) * 64 + 2 * lane; /* pairs 2l, 2l+1 of the token */
    const float c0 = cos_t[t], c1 = cos_t[t + 1], s0 = sin_t[t], s1 = sin_t[t + 1];
    const float a0 = v.x * r * g.x, b0 = v.y * r * g.y, a1 = v.z * r * g.z, b1 = v.w * r * g.w;
    ((float4 *)(y + row * 128))[lane] =
        make_float4(a0 * c0 - b0 * s0, a0 * s0 + b0 * c0, a1 * c1 - b1 * s1, a1 * s1 + b1 * c1);
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

extern "C" cudaError_t mold_cuda_rms_norm_rope(float *y, const float *x, const float *gamma,
                                               int64_t n_tok, int64_t n_head, int64_t head_dim,
                                               float eps, const float *cos_t, const float *sin_t,
                                               mold_rope_mode mode, cudaStream_t stream) {
    int64_t rows = n_tok * n_head;
    if (rows <= 0) return cudaSuccess;
    const bool a16 = (uintptr_t)x % 16 == 0 && (uintptr_t)y % 16 == 0 &&
                     (uintptr_t)gamma % 16 == 0; /* NULL gamma counts as aligned */
    if (head_dim == 128 && mode == MOLD_ROPE_INTERLEAVED && a16)
        rms_norm_rope128_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, stream>>>(
            y, x, gamma, rows, n_head, eps, cos_t, sin_t);
    else
        rms_norm_rope_kernel<<<(unsigned)((rows + 7) / 8), 256, 0, stream>>>(
            y, x, gamma, rows, n_head, head_dim, eps, cos_t, sin_t, mode == MOLD_ROPE_HALF);
    return cudaGetLastError();
}

/* ==================================================================== */
/* ---- op entries ---- */
/* ==================================================================== */

static mold_status check_rope(const char *op, int64_t n_tok, int64_t n_head, int64_t head_dim,
                              mold_rope_mode mode) {
    if (n_tok < 0 || n_head <= 0 || head_dim <= 0 || head_dim % 2 != 0)
        return MOLD_ERR(MOLD_E_INVALID,
                        "%s: expected n_tok >= 0, n_head > 0, even head_dim, got %lld, %lld, %lld",
                        op, (long long)n_tok, (long long)n_head, (long long)head_dim);
    if (mode != MOLD_ROPE_INTERLEAVED && mode != MOLD_ROPE_HALF)
        return MOLD_ERR(MOLD_E_INVALID, "%s: unknown mode %d", op, (int)mode);
    return MOLD_OK;
}

extern "C" mold_status mold_cuda_op_rope(mold_backend *be, float *x, int64_t n_tok,
                                         int64_t n_head, int64_t head_dim, const float *cos_t,
                                         const float *sin_t, mold_rope_mode mode) {
    cuda_backend *cb = cuda_of(be);
    MOLD_TRY(check_rope("rope", n_tok, n_head, head_dim, mode));
    CUDA_OP(cb, "rope", n_tok, n_head, head_dim, (int64_t)mode);
    MOLD_CUDA_CHECK(cb, mold_cuda_rope(x, n_tok, n_head, head_dim, cos_t, sin_t, mode,
                                       cb->stream));
    return mold_cuda_op_done(cb);
}

extern "C" mold_status mold_cuda_op_rms_norm_rope(mold_backend *be, float *y, const float *x,
                                                  const float *gamma, int64_t n_tok,
                                                  int64_t n_head, int64_t head_dim, float eps,
                                                  const float *cos_t, const float *sin_t,
                                                  mold_rope_mode mode) {
    cuda_backend *cb = cuda_of(be);
    MOLD_TRY(check_rope("rms_norm_rope", n_tok, n_head, head_dim, mode));
    if (n_tok * n_head > (int64_t)INT32_MAX * 8)
        return MOLD_ERR(MOLD_E_INVALID, "rms_norm_rope: %lld rows exceed the grid",
                        (long long)(n_tok * n_head));
    CUDA_OP(cb, "rms_norm_rope", n_tok, n_head, head_dim, (int64_t)mode);
    MOLD_CUDA_CHECK(cb, mold_cuda_rms_norm_rope(y, x, gamma, n_tok, n_head, head_dim, eps, cos_t,
                                                sin_t, mode, cb->stream));
    return mold_cuda_op_done(cb);
}
