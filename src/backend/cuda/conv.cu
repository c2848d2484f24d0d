/*
 * conv.cu — conv2d by im2col + GEMM, nearest upsample (see conv.cuh).
 *
 * conv2d: with K = c_in*kh*kw and P = h_out*w_out output pixels,
 *   Y [c_out, P] = W [c_out, K] * col [K, P].
 * In cuBLAS's column-major terms Y is the P x c_out matrix Y^T = col^T W^T,
 * with col^T read straight from the row-major col buffer and W^T from the
 * row-major weight, so no transposes are materialised. The pixel range is cut
 * into chunks so the bf16 col buffer stays under CONV_COL_BYTES (a 96-channel
 * 3x3 conv at 1328 x 1328 would need 3 GB at once). Weights that are not bf16
 * are converted to bf16 in scratch once per call. The bias is added by a
 * separate pass (cuBLASLt's bias epilogue runs along D's rows, here pixels).
 *
 * Reference: torch.nn.functional.conv2d (stride 1, zero padding), weight
 * [c_out, c_in, kh, kw] flattened to [c_out, c_in*kh*kw].
 */
#include "conv.cuh"

#include "convert.cuh"
#include "matmul.cuh"

#define CONV_COL_BYTES ((size_t)256 << 20) /* col chunk budget */

static int g_conv_variant; /* benchmark hook: 1 = K-contiguous columns, "TN" GEMM */

extern "C" void mold_cuda_conv_set_variant(int v) { g_conv_variant = v; }

/* ==================================================================== */
/* ---- CUDA kernels ---- */
/* ==================================================================== */

/* grid.y walks the K rows (channel, tap), grid.x the pixels of the chunk:
 * consecutive threads read consecutive input pixels of one channel plane and
 * write consecutive columns (both coalesced); the 9 taps of a channel run
 * back to back, so its plane is re-read from L2. 32-bit index math (a plane
 * has < 2^31 pixels, checked by the caller). */
__global__ void im2col_kernel(__nv_bfloat16 *col, const float *x, int c_in, int h, int w,
                              int kh, int kw, int pad, int w_out, int p0, int n_p) {
    const int khw = kh * kw;
    for (int kidx = blockIdx.y; kidx < c_in * khw; kidx += gridDim.y) {
        const int ci = kidx / khw, r = kidx - ci * khw, ky = r / kw, kx = r - ky * kw;
        const float *xc = x + (int64_t)ci * h * w;
        __nv_bfloat16 *dst = col + (int64_t)kidx * n_p;
        for (int pl = blockIdx.x * blockDim.x + threadIdx.x; pl < n_p;
             pl += gridDim.x * blockDim.x) {
            const int p = p0 + pl, oy = p / w_out, ox = p - oy * w_out;
            const int iy = oy + ky - pad, ix = ox + kx - pad;
            float v = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? xc[iy * w + ix] : 0.0f;
            dst[pl] = __float2bfloat16_rn(v);
        }
    }
}

/* Transposed layout colT[p - p0, k] (K contiguous per pixel) for the "TN"
 * GEMM variant: consecutive threads walk k (writes coalesced; the reads of
 * the 9 taps of a channel hit the same few cache lines). */
__global__ void im2col_t_kernel(__nv_bfloat16 *colT, const float *x, int c_in, int h, int w,
                                int kh, int kw, int pad, int w_out, int p0, int n_p) {
    const int khw = kh * kw, K = c_in * khw;
    const int64_t n = (int64_t)n_p * K;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int pl = (int)(t / K), kidx = (int)(t - (int64_t)pl * K);
        const int ci = kidx / khw, r = kidx - ci * khw, ky = r / kw, kx = r - ky * kw;
        const int p = p0 + pl, oy = p / w_out, ox = p - oy * w_out;
        const int iy = oy + ky - pad, ix = ox + kx - pad;
        float v = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? x[((int64_t)ci * h + iy) * w + ix]
                                                            : 0.0f;
        colT[t] = __float2bfloat16_rn(v);
    }
}

__global__ void channel_bias_kernel(float *y, const float *bias, int64_t c, int64_t hw) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < c * hw;
         t += (int64_t)gridDim.x * blockDim.x)
        y[t] += bias[t / hw];
}

__global__ void upsample2x_kernel(float *y, const float *x, int64_t c, int64_t h, int64_t w) {
    int64_t w2 = 2 * w, n = c * 4 * h * w;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n;
         t += (int64_t)gridDim.x * blockDim.x) {
        int64_t xx = t % w2, r = t / w2, yy = r % (2 * h), ch = r / (2 * h);
        y[t] = x[(ch * h + yy / 2) * w + xx / 2];
    }
}

/* ==================================================================== */
/* ---- kernel launchers ---- */
/* ==================================================================== */

extern "C" cudaError_t mold_cuda_im2col_bf16(__nv_bfloat16 *col, const float *x, int64_t c_in,
                                             int64_t h, int64_t w, int64_t kh, int64_t kw,
                                             int64_t pad, int64_t p0, int64_t n_p,
                                             cudaStream_t stream) {
    int64_t K = c_in * kh * kw, w_out = w + 2 * pad - kw + 1;
    if (K <= 0 || n_p <= 0) return cudaSuccess;
    if (h * w >= INT32_MAX || p0 + n_p >= INT32_MAX || kh * kw >= INT32_MAX)
        return cudaErrorInvalidValue; /* 32-bit pixel indices in the kernel */
    int64_t bx = (n_p + 255) / 256;
    dim3 grid((unsigned)(bx < 4096 ? bx : 4096), (unsigned)(K < 65535 ? K : 65535));
    im2col_kernel<<<grid, 256, 0, stream>>>(col, x, (int)c_in, (int)h, (int)w, (int)kh, (int)kw,
                                            (int)pad, (int)w_out, (int)p0, (int)n_p);
    return cudaGetLastError();
}

extern "C" cudaError_t mold_cuda_upsample2x(float *y, const float *x, int64_t c, int64_t h,
                                            int64_t w, cudaStream_t stream) {
    int64_t n = c * 4 * h * w;
    if (n <= 0) return cudaSuccess;
    upsample2x_kernel<<<cuda_blocks(n, 256), 256, 0, stream>>>(y, x, c, h, w);
    return cudaGetLastError();
}

/* ==================================================================== */
/* ---- op entries ---- */
/* ==================================================================== */

extern "C" mold_status mold_cuda_op_conv2d(mold_backend *be, float *y, const float *x,
                                           int64_t c_in, int64_t h, int64_t w,
                                           const mold_weight *wt, int64_t kh, int64_t kw,
                                           int64_t pad, const float *bias) {
    cuda_backend *cb = cuda_of(be);
    if (!wt || !wt->data)
        return MOLD_ERR(MOLD_E_INVALID, "conv2d: weight is NULL");
    if (c_in <= 0 || h <= 0 || w <= 0 || kh <= 0 || kw <= 0 || pad < 0)
        return MOLD_ERR(MOLD_E_INVALID, "conv2d: bad shape c_in %lld h %lld w %lld k %lldx%lld pad %lld",
                        (long long)c_in, (long long)h, (long long)w, (long long)kh, (long long)kw,
                        (long long)pad);
    int64_t K = c_in * kh * kw, c_out = wt->n_out;
    if (wt->n_in != K)
        return MOLD_ERR(MOLD_E_INVALID, "conv2d: expected weight with %lld columns (c_in*kh*kw), got %lld",
                        (long long)K, (long long)wt->n_in);
    int64_t h_out = h + 2 * pad - kh + 1, w_out = w + 2 * pad - kw + 1;
    if (h_out <= 0 || w_out <= 0)
        return MOLD_ERR(MOLD_E_INVALID, "conv2d: kernel %lldx%lld larger than padded input %lldx%lld",
                        (long long)kh, (long long)kw, (long long)(h + 2 * pad), (long long)(w + 2 * pad));
    CUDA_OP(cb, "conv2d", c_in, h, w, c_out, kh, kw);
    int64_t P = h_out * w_out;
    int64_t chunk = (int64_t)(CONV_COL_BYTES / ((size_t)K * 2));
    chunk = chunk < 256 ? 256 : chunk / 256 * 256; /* keeps y + p0 256-byte aligned */
    if (chunk > P) chunk = P;
    size_t wb_bytes = wt->dtype == MOLD_BF16 ? 0 : cuda_align256((size_t)c_out * K * 2);
    size_t col_bytes = cuda_align256((size_t)K * chunk * 2);
    void *scr;
    MOLD_TRY(mold_cuda_scratch(cb, wb_bytes + col_bytes, &scr));
    __nv_bfloat16 *col = (__nv_bfloat16 *)scr;                      /* (K, chunk) bf16 */
    __nv_bfloat16 *wb = (__nv_bfloat16 *)((char *)scr + col_bytes); /* (c_out, K) bf16 */
    const void *wdata = wt->data;
    if (wt->dtype != MOLD_BF16) {
        if (wt->dtype == MOLD_F32)
            MOLD_CUDA_CHECK(cb, mold_cuda_f32_to_bf16(wb, (const float *)wt->data, c_out * K,
                                                      cb->stream));
        else
            MOLD_CUDA_CHECK(cb, mold_cuda_dequant_bf16(wt->dtype, wb, wt->data, c_out, K,
                                                       wt->row_bytes, cb->stream));
        wdata = wb;
    }
    for (int64_t p0 = 0; p0 < P; p0 += chunk) {
        int64_t n_p = P - p0 < chunk ? P - p0 : chunk;
        if (g_conv_variant == 1) {
            int64_t n = n_p * K;
            im2col_t_kernel<<<cuda_blocks(n, 256), 256, 0, cb->stream>>>(
                col, x, (int)c_in, (int)h, (int)w, (int)kh, (int)kw, (int)pad, (int)w_out,
                (int)p0, (int)n_p);
            MOLD_CUDA_LAUNCH_CHECK(cb);
            /* Y^T (P x c_out) = colT (stored K x n_p, transposed) * W^T */
            MOLD_TRY(mold_cuda_gemm(cb, 1, n_p, c_out, K, 1.0f, col, K, wdata, K, CUDA_R_16BF,
                                    y + p0, P, NULL));
            continue;
        }
        MOLD_CUDA_CHECK(cb, mold_cuda_im2col_bf16(col, x, c_in, h, w, kh, kw, pad, p0, n_p,
                                                  cb->stream));
        MOLD_TRY(mold_cuda_gemm(cb, 0, n_p, c_out, K, 1.0f, col, n_p, wdata, K, CUDA_R_16BF,
                                y + p0, P, NULL));
    }
    if (bias) {
        channel_bias_kernel<<<cuda_blocks(c_out * P, 256), 256, 0, cb->stream>>>(y, bias, c_out,
                                                                                 P);
        MOLD_CUDA_LAUNCH_CHECK(cb);
    }
    return mold_cuda_op_done(cb);
}

extern "C" mold_status mold_cuda_op_upsample2x(mold_backend *be, float *y, const float *x,
                                               int64_t c, int64_t h, int64_t w) {
    cuda_backend *cb = cuda_of(be);
    if (c < 0 || h < 0 || w < 0)
        return MOLD_ERR(MOLD_E_INVALID, "upsample2x: negative shape %lld x %lld x %lld",
                        (long long)c, (long long)h, (long long)w);
    CUDA_OP(cb, "upsample2x", c, h, w);
    MOLD_CUDA_CHECK(cb, mold_cuda_upsample2x(y, x, c, h, w, cb->stream));
    return mold_cuda_op_done(cb);
}
