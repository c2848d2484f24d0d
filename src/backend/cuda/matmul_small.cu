/*
 * matmul_small.cu — few-row matmul against a bf16 weight (see
 * matmul_small.cuh).
 *
 * Scheme: x is rounded to bf16 once ([m][k]); a block is 4 warps, each warp
 * owns 8 weight rows (8 outputs) and one k-range of the split, and runs
 * mma.sync m16n8k16 with the few x rows as the A operand (16-row groups,
 * rows past m read as zeros) and the weight as B. Each lane loads 16 bytes
 * of its weight row per 32 k (one coalesced 128-byte segment per 8 lanes),
 * which it splits into two k16 MMAs; since a dot product does not care about
 * the order of k, the k-permutation this implies is applied to the x
 * fragments too (lane t's x values come from the same 8 k as its weights).
 * With several k splits every split writes its partial [m][n] and a second
 * kernel adds them (and the bias) in split order: deterministic.
 */
#include "matmul_small.cuh"

#include "convert.cuh"
#include "device_util.cuh"

#define SMALL_WARPS 4
#define SMALL_COLS (SMALL_WARPS * 8) /* outputs per block */
#define SMALL_MAX_SPLITS 32
#define SMALL_MIN_KSPLIT 256 /* fewest k per split */

/* MT: 16-row groups of x (m <= 16 MT). out: y (one split, bias added) or
 * the split's partial [m][n]. */
template <int MT>
__global__ void __launch_bounds__(SMALL_WARPS * 32)
small_mm_kernel(float *out, const __nv_bfloat16 *xb, int m, const unsigned char *w,
                uint64_t row_bytes, int n, int k, int k_split, const float *bias) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int n0 = blockIdx.x * SMALL_COLS + warp * 8;
    const int kb = blockIdx.y * k_split, ke = min(k, kb + k_split);
    const int wrow = n0 + g;
    const uint4 zero = make_uint4(0, 0, 0, 0);
    const uint4 *wp = (const uint4 *)(w + (uint64_t)min(wrow, n - 1) * row_bytes);
    float acc[MT][4];
#pragma unroll
    for (int i = 0; i < MT; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;

#pragma unroll 4
    for (int kk = kb; kk < ke; kk += 32) {
        const int q = (kk >> 3) + t; /* 16-byte chunk: k = 8q .. 8q + 7 */
        const uint4 wv = wrow < n ? __ldg(wp + q) : zero;
#pragma unroll
        for (int i = 0; i < MT; i++) {
            const int r0 = 16 * i + g, r1 = r0 + 8;
            const uint4 x0 = r0 < m ? __ldg((const uint4 *)(xb + (int64_t)r0 * k) + q) : zero;
            const uint4 x1 = r1 < m ? __ldg((const uint4 *)(xb + (int64_t)r1 * k) + q) : zero;
            const uint32_t a_lo[4] = {x0.x, x1.x, x0.y, x1.y}, a_hi[4] = {x0.z, x1.z, x0.w, x1.w};
            mma_bf16(acc[i], a_lo, wv.x, wv.y);
            mma_bf16(acc[i], a_hi, wv.z, wv.w);
        }
    }
    /* c0, c1: row g, cols 2t, 2t + 1; c2, c3: row g + 8 */
    const int c = n0 + 2 * t;
    float *dst = out + (gridDim.y > 1 ? (int64_t)blockIdx.y * m * n : 0);
    const bool add_bias = gridDim.y == 1 && bias;
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int r = 16 * i + g + 8 * h;
            if (r >= m) continue;
#pragma unroll
            for (int e = 0; e < 2; e++)
                if (c + e < n)
                    dst[(int64_t)r * n + c + e] = acc[i][2 * h + e] + (add_bias ? bias[c + e] : 0.0f);
        }
}

/* y = bias + sum over splits of part[s], in split order. */
__global__ void small_mm_reduce(float *y, const float *part, int splits, int64_t mn, int n,
                                const float *bias) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < mn;
         i += (int64_t)gridDim.x * blockDim.x) {
        float s = bias ? bias[i % n] : 0.0f;
        for (int p = 0; p < splits; p++) s += part[(int64_t)p * mn + i];
        y[i] = s;
    }
}

/* k per split (a multiple of 32) so that about 4 blocks run per SM. */
static int64_t k_per_split(int64_t k, int64_t n, int n_sm) {
    const int64_t blocks_n = (n + SMALL_COLS - 1) / SMALL_COLS;
    int64_t splits = (4 * (int64_t)n_sm + blocks_n - 1) / blocks_n;
    int64_t most = k / SMALL_MIN_KSPLIT;
    if (most > SMALL_MAX_SPLITS) most = SMALL_MAX_SPLITS;
    if (splits > most) splits = most;
    if (splits < 1) splits = 1;
    return ((k + splits - 1) / splits + 31) / 32 * 32;
}

extern "C" bool mold_cuda_matmul_small_fits(int64_t m, int64_t k) {
    return m >= 1 && m <= MOLD_CUDA_SMALL_M && k % 32 == 0;
}

extern "C" size_t mold_cuda_matmul_small_scratch(int64_t m, int64_t k, int64_t n, int n_sm) {
    const int64_t ks = k_per_split(k, n, n_sm), splits = (k + ks - 1) / ks;
    return cuda_align256((size_t)m * k * 2) + (splits > 1 ? (size_t)splits * m * n * 4 : 0);
}

extern "C" cudaError_t mold_cuda_matmul_small(float *y, const float *x, int64_t m, const void *w,
                                              int64_t n, int64_t k, uint64_t row_bytes,
                                              const float *bias, void *scr, int n_sm,
                                              cudaStream_t stream) {
    if (!mold_cuda_matmul_small_fits(m, k) || n <= 0) return cudaErrorInvalidValue;
    const int64_t ks = k_per_split(k, n, n_sm), splits = (k + ks - 1) / ks;
    __nv_bfloat16 *xb = (__nv_bfloat16 *)scr;
    float *part = (float *)((char *)scr + cuda_align256((size_t)m * k * 2));
    cudaError_t e = mold_cuda_f32_to_bf16(xb, x, m * k, stream);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((n + SMALL_COLS - 1) / SMALL_COLS), (unsigned)splits);
    float *out = splits > 1 ? part : y;
#define LAUNCH(MT)                                                                           \
    small_mm_kernel<MT><<<grid, SMALL_WARPS * 32, 0, stream>>>(                              \
        out, xb, (int)m, (const unsigned char *)w, row_bytes, (int)n, (int)k, (int)ks, bias)
    switch ((m + 15) / 16) {
    case 1: LAUNCH(1); break;
    case 2: LAUNCH(2); break;
    case 3: LAUNCH(3); break;
    default: LAUNCH(4); break;
    }
#undef LAUNCH
    e = cudaGetLastError();
    if (e != cudaSuccess || splits == 1) return e;
    small_mm_reduce<<<cuda_blocks(m * n, 256), 256, 0, stream>>>(y, part, (int)splits, m * n,
                                                                 (int)n, bias);
    return cudaGetLastError();
}
