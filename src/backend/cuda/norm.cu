/*
 * norm.cu — RMSNorm, LayerNorm + modulation, channel RMS_norm and its
 * per-pixel factor (see norm.cuh).
 *
 * One warp per row for rows of up to 1024 values (per-head QK norms of 128,
 * text hidden 3584 falls to the block path), one 256-thread block per row
 * above. Sums are f32; LayerNorm takes the mean first, then the centred
 * second moment (two passes over the row, the second served by L1/L2), as
 * PyTorch's layer_norm does, to avoid E[x^2] - E[x]^2 cancellation.
 */
#include "norm.cuh"

/* ==================================================================== */
/* ---- CUDA kernels ---- */
/* ==================================================================== */

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); all threads get it. */
__device__ float block_sum(float v) {
    __shared__ float part[32];
    __shared__ float total;
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* part[] may still be read by a previous call */
    if (lane == 0) part[wid] = v;
    __syncthreads();
    if (wid == 0) {
        float s = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.0f;
        s = warp_sum(s);
        if (lane == 0) total = s;
    }
    __syncthreads();
    return total;
}

/* Row sum: the warp variant (one warp per row) or block variant. */
template <bool WARP>
__device__ __forceinline__ float row_sum(float v) {
    if constexpr (WARP) return warp_sum(v);
    else return block_sum(v);
}

template <bool WARP>
__global__ void rms_norm_kernel(float *y, const float *x, const float *gamma, int64_t rows,
                                int64_t dim, float eps) {
    int64_t row = WARP ? (blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5))
                       : (int64_t)blockIdx.x;
    int t = WARP ? (threadIdx.x & 31) : threadIdx.x, nt = WARP ? 32 : blockDim.x;
    if (row >= rows) return; /* whole warps/blocks leave together */
    const float *xr = x + row * dim;
    float *yr = y + row * dim;
    float ss = 0.0f;
    for (int64_t i = t; i < dim; i += nt) ss += xr[i] * xr[i];
    ss = row_sum<WARP>(ss);
    float r = rsqrtf(ss / (float)dim + eps);
    for (int64_t i = t; i < dim; i += nt) yr[i] = xr[i] * r * (gamma ? gamma[i] : 1.0f);
}

template <bool WARP>
__global__ void layer_norm_mod_kernel(float *y, const float *x, const float *shift,
                                      const float *scale, int64_t rows, int64_t dim, float eps) {
    int64_t row = WARP ? (blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5))
                       : (int64_t)blockIdx.x;
    int t = WARP ? (threadIdx.x & 31) : threadIdx.x, nt = WARP ? 32 : blockDim.x;
    if (row >= rows) return;
    const float *xr = x + row * dim;
    float *yr = y + row * dim;
    float s = 0.0f;
    for (int64_t i = t; i < dim; i += nt) s += xr[i];
    float mean = row_sum<WARP>(s) / (float)dim;
    float v = 0.0f;
    for (int64_t i = t; i < dim; i += nt) {
        float d = xr[i] - mean;
        v += d * d;
    }
    float rstd = rsqrtf(row_sum<WARP>(v) / (float)dim + eps);
    for (int64_t i = t; i < dim; i += nt) {
        float n = (xr[i] - mean) * rstd;
        yr[i] = n * (1.0f + (scale ? scale[i] : 0.0f)) + (shift ? shift[i] : 0.0f);
    }
}

/* LayerNorm + modulation with the row held in registers: one 256-thread
 * block per row of dim = 256 * 4 * V4 floats or fewer (float4 loads), so x
 * is read once from memory instead of three times (the DiT's 3072-wide rows:
 * 0.103 ms -> about the 2 x 85 MB / 3 TB/s floor per 6889 rows). Same
 * two-step statistics (mean, then centred second moment) as above. */
template <int V4>
__global__ void __launch_bounds__(256)
layer_norm_mod_reg_kernel(float *y, const float *x, const float *shift, const float *scale,
                          int64_t dim, float eps) {
    const int64_t row = blockIdx.x;
    const float4 *xr = (const float4 *)(x + row * dim);
    float4 *yr = (float4 *)(y + row * dim);
    const int n4 = (int)(dim >> 2);
    float4 v[V4];
    float s = 0.0f;
#pragma unroll
    for (int j = 0; j < V4; j++) {
        const int i = threadIdx.x + 256 * j;
        v[j] = i < n4 ? xr[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        s += (v[j].x + v[j].y) + (v[j].z + v[j].w);
    }
    const float mean = block_sum(s) / (float)dim;
    float q = 0.0f;
#pragma unroll
    for (int j = 0; j < V4; j++) {
        if (threadIdx.x + 256 * j >= n4) continue;
        const float a = v[j].x - mean, b = v[j].y - mean, c = v[j].z - mean, d = v[j].w - mean;
        q += (a * a + b * b) + (c * c + d * d);
    }
    const float rstd = rsqrtf(block_sum(q) / (float)dim + eps);
#pragma unroll
    for (int j = 0; j < V4; j++) {
        const int i = threadIdx.x + 256 * j;
        if (i >= n4) continue;
        const float4 sc = scale ? ((const float4 *)scale)[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        const float4 sh = shift ? ((const float4 *)shift)[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        float4 o;
        o.x = (v[j].x - mean) * rstd * (1.0f + sc.x) + sh.x;
        o.y = (v[j].y - mean) * rstd * (1.0f + sc.y) + sh.y;
        o.z = (v[j].z - mean) * rstd * (1.0f + sc.z) + sh.z;
        o.w = (v[j].w - mean) * rstd * (1.0f + sc.w) + sh.w;
        yr[i] = o;
    }
}

/* One thread per pixel p; loops over channels (coalesced across threads). */
__global__ void channel_rms_kernel(float *y, const float *x, const float *gamma, int64_t c,
                                   int64_t hw) {
    for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < hw;
         p += (int64_t)gridDim.x * blockDim.x) {
        float ss = 0.0f;
        for (int64_t k = 0; k < c; k++) {
            float v = x[k * hw + p];
            ss += v * v;
        }
        /* F.normalize: x / max(||x||, 1e-12), then * sqrt(C) * gamma */
        float f = sqrtf((float)c) / fmaxf(sqrtf(ss), 1e-12f);
        for (int64_t k = 0; k < c; k++) y[k * hw + p] = x[k * hw + p] * f * (gamma ? gamma[k] : 1.0f);
    }
}

/* ==================================================================== */
/* ---- kernel launchers ---- */
/* ==================================================================== */

#define WARP_ROW_MAX 1024 /* rows up to this length use one warp each */

extern "C" cudaError_t mold_cuda_rms_norm(float *y, const float *x, const float *gamma,
                                          int64_t rows, int64_t dim, float eps,
                                          cudaStream_t stream) {
    if (rows <= 0) return cudaSuccess;
    if (dim <= WARP_ROW_MAX)
        rms_norm_kernel<true><<<(unsigned)((rows + 7) / 8), 256, 0, stream>>>(y, x, gamma, rows,
                                                                                dim, eps);
    else
        rms_norm_kernel<false><<<(unsigned)rows, 256, 0, stream>>>(y, x, gamma, rows, dim, eps);
    return cudaGetLastError();
}

extern "C" cudaError_t mold_cuda_layer_norm_modulate(float *y, const float *x, const float *shift,
                                                     const float *scale, int64_t rows,
                                                     int64_t dim, float eps,
                                                     cudaStream_t stream) {
    if (rows <= 0) return cudaSuccess;
    const bool vec = dim % 4 == 0 && dim > WARP_ROW_MAX && dim <= 4 * 256 * 4 &&
                     ((uintptr_t)x | (uintptr_t)y | (uintptr_t)shift | (uintptr_t)scale) % 16 == 0;
    if (vec) {
        const int v4 = (int)((dim / 4 + 255) / 256);
#define LN_REG(V)                                                                                   layer_norm_mod_reg_kernel<V><<<(unsigned)rows, 256, 0, stream>>>(y, x, shift, scale, dim, eps)
        switch (v4) {
        case 1: LN_REG(1); break;
        case 2: LN_REG(2); break;
        case 3: LN_REG(3); break;
        default: LN_REG(4); break;
        }
#undef LN_REG
        return cudaGetLastError();
    }
    if (dim <= WARP_ROW_MAX)
        layer_norm_mod_kernel<true><<<(unsigned)((rows + 7) / 8), 256, 0, stream>>>(
            y, x, shift, scale, rows, dim, eps);
    else
        layer_norm_mod_kernel<false><<<(unsigned)rows, 256, 0, stream>>>(y, x, shift, scale,
                                                                         rows, dim, eps);
    return cudaGetLastError();
}

extern "C" cudaError_t mold_cuda_channel_rms_norm(float *y, const float *x, const float *gamma,
                                                  int64_t c, int64_t hw, cudaStream_t stream) {
    if (hw <= 0) return cudaSuccess;
    channel_rms_kernel<<<cuda_blocks(hw, 256), 256, 0, stream>>>(y, x, gamma, c, hw);
    return cudaGetLastError();
}

/* ==================================================================== */
/* ---- op entries ---- */
/* ==================================================================== */

static mold_status check_rows(const char *op, int64_t rows, int64_t dim) {
    if (rows < 0 || dim <= 0 || rows > (int64_t)INT32_MAX)
        return MOLD_ERR(MOLD_E_INVALID, "%s: expected rows in [0, 2^31) and dim > 0, got %lld x %lld",
                        op, (long long)rows, (long long)dim);
    return MOLD_OK;
}

extern "C" mold_status mold_cuda_op_rms_norm(mold_backend *be, float *y, const float *x,
                                             const float *gamma, int64_t rows, int64_t dim,
                                             float eps) {
    cuda_backend *cb = cuda_of(be);
    MOLD_TRY(check_rows("rms_norm", rows, dim));
    CUDA_OP(cb, "rms_norm", rows, dim);
    MOLD_CUDA_CHECK(cb, mold_cuda_rms_norm(y, x, gamma, rows, dim, eps, cb->stream));
    return mold_cuda_op_done(cb);
}

extern "C" mold_status mold_cuda_op_layer_norm_modulate(mold_backend *be, float *y,
                                                        const float *x, const float *shift,
                                                        const float *scale, int64_t rows,
                                                        int64_t dim, float eps) {
    cuda_backend *cb = cuda_of(be);
    MOLD_TRY(check_rows("layer_norm_modulate", rows, dim));
    CUDA_OP(cb, "layer_norm_modulate", rows, dim);
    MOLD_CUDA_CHECK(cb, mold_cuda_layer_norm_modulate(y, x, shift, scale, rows, dim, eps,
                                                      cb->stream));
    return mold_cuda_op_done(cb);
}

extern "C" mold_status mold_cuda_op_channel_rms_norm(mold_backend *be, float *y, const float *x,
                                                     const float *gamma, int64_t c, int64_t hw) {
    cuda_backend *cb = cuda_of(be);
    if (c <= 0 || hw < 0)
        return MOLD_ERR(MOLD_E_INVALID, "channel_rms_norm: expected c > 0, hw >= 0, got %lld, %lld",
                        (long long)c, (long long)hw);
    CUDA_OP(cb, "channel_rms_norm", c, hw);
    MOLD_CUDA_CHECK(cb, mold_cuda_channel_rms_norm(y, x, gamma, c, hw, cb->stream));
    return mold_cuda_op_done(cb);
}

/* ==================================================================== */
/* ---- channel_rms_scale ---- */
/* ==================================================================== */

/* s[p] = sqrt(C) / max(||x[:, p]||, 1e-12): one thread per pixel, channels
 * unrolled by 8 so each thread keeps 8 independent loads in flight (a
 * single pass over x at close to the memory rate). */
__global__ void channel_rms_scale_kernel(float *s, const float *x, int64_t c, int64_t hw) {
    for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < hw;
         p += (int64_t)gridDim.x * blockDim.x) {
        const float *xp = x + p;
        float ss = 0.0f;
        int64_t k = 0;
        for (; k + 8 <= c; k += 8) {
            float v[8];
#pragma unroll
            for (int u = 0; u < 8; u++) v[u] = xp[(k + u) * hw];
#pragma unroll
            for (int u = 0; u < 8; u++) ss += v[u] * v[u];
        }
        for (; k < c; k++) ss += xp[k * hw] * xp[k * hw];
        s[p] = sqrtf((float)c) / fmaxf(sqrtf(ss), 1e-12f);
    }
}

extern "C" mold_status mold_cuda_op_channel_rms_scale(mold_backend *be, float *s, const float *x,
                                                      int64_t c, int64_t hw) {
    cuda_backend *cb = cuda_of(be);
    if (c <= 0 || hw < 0)
        return MOLD_ERR(MOLD_E_INVALID, "channel_rms_scale: expected c > 0, hw >= 0, got %lld, %lld",
                        (long long)c, (long long)hw);
    if (hw == 0) return MOLD_OK;
    CUDA_OP(cb, "channel_rms_scale", c, hw);
    channel_rms_scale_kernel<<<cuda_blocks(hw, 256), 256, 0, cb->stream>>>(s, x, c, hw);
    MOLD_CUDA_LAUNCH_CHECK(cb);
    return mold_cuda_op_done(cb);
}
