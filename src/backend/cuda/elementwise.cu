/*
 * elementwise.cu — pointwise ops, CFG combine, NaN/Inf count (see
 * elementwise.cuh).
 *
 * Pointwise kernels are grid-stride loops with scalar loads: they are memory
 * bound, coalesced, and accept any pointer offset (ops.h allows pointer
 * arithmetic into buffers). GELU uses tanhf (not the fast intrinsic) to stay
 * within f32 rounding of the CPU reference.
 */
#include "elementwise.cuh"

/* ==================================================================== */
/* ---- CUDA kernels ---- */
/* ==================================================================== */

#define GRID_STRIDE(t, n)                                                  \
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < (n); \
         t += (int64_t)gridDim.x * blockDim.x)

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + expf(-x)); }

__global__ void silu_kernel(float *y, const float *x, int64_t n) {
    GRID_STRIDE(t, n) y[t] = silu_f(x[t]);
}

__global__ void gelu_tanh_kernel(float *y, const float *x, int64_t n) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    GRID_STRIDE(t, n) {
        float v = x[t];
        y[t] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
    }
}

__global__ void swiglu_kernel(float *y, const float *gate, const float *up, int64_t n) {
    GRID_STRIDE(t, n) y[t] = silu_f(gate[t]) * up[t];
}

__global__ void axpby_kernel(float *y, const float *a, float alpha, const float *b, float beta,
                             int64_t n) {
    GRID_STRIDE(t, n) y[t] = a[t] * alpha + b[t] * beta;
}

__global__ void gated_add_kernel(float *x, const float *gate, const float *y, int64_t rows,
                                 int64_t dim) {
    GRID_STRIDE(t, rows * dim) {
        float g = gate ? gate[t % dim] : 1.0f;
        x[t] += g * y[t];
    }
}

/* gated_add on rows of dim % 4 == 0 with 16-byte aligned pointers: float4
 * loads and a 2-D grid (no 64-bit modulo per element). The DiT's residual
 * update is 3 x 85 MB per call, so this is purely a bandwidth kernel. */
__global__ void gated_add4_kernel(float4 *x, const float4 *gate, const float4 *y, int64_t rows,
                                  int d4) {
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y)
        for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < d4; c += gridDim.x * blockDim.x) {
            const int64_t i = r * d4 + c;
            const float4 g = gate ? gate[c] : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
            float4 a = x[i];
            const float4 b = y[i];
            a.x += g.x * b.x;
            a.y += g.y * b.y;
            a.z += g.z * b.z;
            a.w += g.w * b.w;
            x[i] = a;
        }
}

__global__ void clamp_kernel(float *y, const float *x, float lo, float hi, int64_t n) {
    GRID_STRIDE(t, n) y[t] = fminf(fmaxf(x[t], lo), hi);
}

__device__ __forceinline__ float warp_sum_f(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* One 256-thread block per token: norms of cond and comb, then the rescaled
 * write. Both passes read cond/uncond, so out may alias either. */
__global__ void cfg_combine_kernel(float *out, const float *cond, const float *uncond,
                                   float scale, int64_t dim) {
    __shared__ float part[2][8];
    const float *c = cond + blockIdx.x * dim, *u = uncond + blockIdx.x * dim;
    float *o = out + blockIdx.x * dim;
    float sc = 0.0f, sm = 0.0f;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
        float comb = u[i] + scale * (c[i] - u[i]);
        sc += c[i] * c[i];
        sm += comb * comb;
    }
    sc = warp_sum_f(sc);
    sm = warp_sum_f(sm);
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) {
        part[0][wid] = sc;
        part[1][wid] = sm;
    }
    __syncthreads();
    sc = 0.0f;
    sm = 0.0f;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) {
        sc += part[0][w];
        sm += part[1][w];
    }
    float f = sm > 0.0f ? sqrtf(sc) / sqrtf(sm) : 1.0f;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
        float comb = u[i] + scale * (c[i] - u[i]);
        o[i] = comb * f;
    }
}

__global__ void count_nonfinite_kernel(const float *x, int64_t n, unsigned long long *count) {
    unsigned long long mine = 0;
    GRID_STRIDE(t, n) mine += isfinite(x[t]) ? 0 : 1;
    for (int o = 16; o > 0; o >>= 1) mine += __shfl_xor_sync(0xffffffffu, mine, o);
    if ((threadIdx.x & 31) == 0 && mine) atomicAdd(count, mine);
}

/* ==================================================================== */
/* ---- kernel launchers ---- */
/* ==================================================================== */

#define LAUNCH_1D(kernel, n, ...)                                                \
    do {                                                                         \
        if ((n) <= 0) return cudaSuccess;                                        \
        kernel<<<cuda_blocks((n), 256), 256, 0, stream>>>(__VA_ARGS__);          \
        return cudaGetLastError();                                               \
    } while (0)

extern "C" cudaError_t mold_cuda_silu(float *y, const float *x, int64_t n, cudaStream_t stream) {
    LAUNCH_1D(silu_kernel, n, y, x, n);
}
extern "C" cudaError_t mold_cuda_gelu_tanh(float *y, const float *x, int64_t n,
                                           cudaStream_t stream) {
    LAUNCH_1D(gelu_tanh_kernel, n, y, x, n);
}
extern "C" cudaError_t mold_cuda_swiglu(float *y, const float *gate, const float *up, int64_t n,
                                        cudaStream_t stream) {
    LAUNCH_1D(swiglu_kernel, n, y, gate, up, n);
}
extern "C" cudaError_t mold_cuda_axpby(float *y, const float *a, float alpha, const float *b,
                                       float beta, int64_t n, cudaStream_t stream) {
    LAUNCH_1D(axpby_kernel, n, y, a, alpha, b, beta, n);
}
extern "C" cudaError_t mold_cuda_gated_add(float *x, const float *gate, const float *y,
                                           int64_t rows, int64_t dim, cudaStream_t stream) {
    if (dim % 4 == 0 && ((uintptr_t)x | (uintptr_t)gate | (uintptr_t)y) % 16 == 0 && rows > 0) {
        const int d4 = (int)(dim / 4), bx = (d4 + 255) / 256;
        dim3 grid((unsigned)bx, (unsigned)(rows < 65535 ? rows : 65535));
        gated_add4_kernel<<<grid, 256, 0, stream>>>((float4 *)x, (const float4 *)gate,
                                                    (const float4 *)y, rows, d4);
        return cudaGetLastError();
    }
    LAUNCH_1D(gated_add_kernel, rows * dim, x, gate, y, rows, dim);
}
extern "C" cudaError_t mold_cuda_clamp(float *y, const float *x, float lo, float hi, int64_t n,
                                       cudaStream_t stream) {
    LAUNCH_1D(clamp_kernel, n, y, x, lo, hi, n);
}
extern "C" cudaError_t mold_cuda_cfg_combine(float *out, const float *cond, const float *uncond,
                                             float scale, int64_t n_tok, int64_t dim,
                                             cudaStream_t stream) {
    if (n_tok <= 0) return cudaSuccess;
    cfg_combine_kernel<<<(unsigned)n_tok, 256, 0, stream>>>(out, cond, uncond, scale, dim);
    return cudaGetLastError();
}
extern "C" cudaError_t mold_cuda_count_nonfinite(const float *x, int64_t n, int64_t *count,
                                                 cudaStream_t stream) {
    LAUNCH_1D(count_nonfinite_kernel, n, x, n, (unsigned long long *)count);
}

/* ==================================================================== */
/* ---- op entries ---- */
/* ==================================================================== */

static mold_status check_n(const char *op, int64_t n) {
    if (n < 0) return MOLD_ERR(MOLD_E_INVALID, "%s: expected n >= 0, got %lld", op, (long long)n);
    return MOLD_OK;
}

#define UNARY_OP(name, call)                                                     \
    do {                                                                         \
        cuda_backend *cb = cuda_of(be);                                          \
        MOLD_TRY(check_n(name, n));                                              \
        CUDA_OP(cb, name, n);                                                    \
        MOLD_CUDA_CHECK(cb, call);                                               \
        return mold_cuda_op_done(cb);                                            \
    } while (0)

extern "C" mold_status mold_cuda_op_silu(mold_backend *be, float *y, const float *x, int64_t n) {
    UNARY_OP("silu", mold_cuda_silu(y, x, n, cb->stream));
}
extern "C" mold_status mold_cuda_op_gelu_tanh(mold_backend *be, float *y, const float *x,
                                              int64_t n) {
    UNARY_OP("gelu_tanh", mold_cuda_gelu_tanh(y, x, n, cb->stream));
}
extern "C" mold_status mold_cuda_op_swiglu(mold_backend *be, float *y, const float *gate,
                                           const float *up, int64_t n) {
    UNARY_OP("swiglu", mold_cuda_swiglu(y, gate, up, n, cb->stream));
}
extern "C" mold_status mold_cuda_op_add(mold_backend *be, float *y, const float *a,
                                        const float *b, int64_t n) {
    UNARY_OP("add", mold_cuda_axpby(y, a, 1.0f, b, 1.0f, n, cb->stream));
}
extern "C" mold_status mold_cuda_op_axpby(mold_backend *be, float *y, const float *a,
                                          float alpha, const float *b, float beta, int64_t n) {
    UNARY_OP("axpby", mold_cuda_axpby(y, a, alpha, b, beta, n, cb->stream));
}
extern "C" mold_status mold_cuda_op_clamp(mold_backend *be, float *y, const float *x, float lo,
                                          float hi, int64_t n) {
    UNARY_OP("clamp", mold_cuda_clamp(y, x, lo, hi, n, cb->stream));
}

extern "C" mold_status mold_cuda_op_gated_add(mold_backend *be, float *x, const float *gate,
                                              const float *y, int64_t rows, int64_t dim) {
    cuda_backend *cb = cuda_of(be);
    if (rows < 0 || dim <= 0)
        return MOLD_ERR(MOLD_E_INVALID, "gated_add: expected rows >= 0, dim > 0, got %lld, %lld",
                        (long long)rows, (long long)dim);
    CUDA_OP(cb, "gated_add", rows, dim);
    MOLD_CUDA_CHECK(cb, mold_cuda_gated_add(x, gate, y, rows, dim, cb->stream));
    return mold_cuda_op_done(cb);
}

extern "C" mold_status mold_cuda_op_copy_rows(mold_backend *be, float *dst, int64_t dst_stride,
                                              const float *src, int64_t src_stride, int64_t rows,
                                              int64_t cols) {
    cuda_backend *cb = cuda_of(be);
    if (rows < 0 || cols < 0 || dst_stride < cols || src_stride < cols)
        return MOLD_ERR(MOLD_E_INVALID,
                        "copy_rows: expected strides >= cols >= 0, got rows %lld cols %lld "
                        "dst_stride %lld src_stride %lld",
                        (long long)rows, (long long)cols, (long long)dst_stride,
                        (long long)src_stride);
    if (rows == 0 || cols == 0) return MOLD_OK;
    CUDA_OP(cb, "copy_rows", rows, cols, dst_stride, src_stride);
    MOLD_CUDA_CHECK(cb, cudaMemcpy2DAsync(dst, (size_t)dst_stride * 4, src,
                                          (size_t)src_stride * 4, (size_t)cols * 4, (size_t)rows,
                                          cudaMemcpyDeviceToDevice, cb->stream));
    return mold_cuda_op_done(cb);
}

extern "C" mold_status mold_cuda_op_cfg_combine(mold_backend *be, float *out, const float *cond,
                                                const float *uncond, float scale, int64_t n_tok,
                                                int64_t dim) {
    cuda_backend *cb = cuda_of(be);
    if (n_tok < 0 || dim <= 0 || n_tok > (int64_t)INT32_MAX)
        return MOLD_ERR(MOLD_E_INVALID, "cfg_combine: expected n_tok >= 0, dim > 0, got %lld, %lld",
                        (long long)n_tok, (long long)dim);
    CUDA_OP(cb, "cfg_combine", n_tok, dim);
    MOLD_CUDA_CHECK(cb, mold_cuda_cfg_combine(out, cond, uncond, scale, n_tok, dim, cb->stream));
    return mold_cuda_op_done(cb);
}

extern "C" mold_status mold_cuda_op_count_nonfinite(mold_backend *be, const float *x, int64_t n,
                                                    int64_t *bad) {
    cuda_backend *cb = cuda_of(be);
    MOLD_TRY(check_n("count_nonfinite", n));
    CUDA_OP(cb, "count_nonfinite", n);
    MOLD_CUDA_CHECK(cb, cudaMemsetAsync(cb->d_count, 0, sizeof(int64_t), cb->stream));
    MOLD_CUDA_CHECK(cb, mold_cuda_count_nonfinite(x, n, cb->d_count, cb->stream));
    MOLD_CUDA_CHECK(cb, cudaMemcpyAsync(bad, cb->d_count, sizeof(int64_t), cudaMemcpyDeviceToHost,
                                        cb->stream));
    MOLD_CUDA_CHECK(cb, cudaStreamSynchronize(cb->stream)); /* *bad is read by the host now */
    return MOLD_OK;
}
