/*
 * conv.cu — conv2d (implicit GEMM for 3x3 pad 1, else im2col + GEMM),
 * conv3x3_fused, nearest upsample (see conv.cuh).
 *
 * 3x3 with padding 1 (every 3x3 conv of the VAE decoder, and conv3x3_fused):
 * the input is first packed (conv_pack_kernel: bf16, 16 channels per 32-byte
 * pixel row, the fused input transform applied on the way), then an
 * implicit-GEMM kernel on tensor cores (conv3x3_packed_kernel, described
 * above it) copies its windows straight into the shared-memory layout of
 * its MMA fragments. Variant 4 is the previous kernel (conv3x3_igemm_kernel:
 * f32 windows converted in shared memory), no packing. Fused: the x2
 * upsample is folded into the window addresses (source pixel = conv pixel
 * / 2) and the residual is added in the epilogue, so the VAE's norm -> SiLU
 * -> conv -> add and upsample -> conv leave no intermediate f32 map.
 * Other shapes (1x1, pad 0) and variants 1 / 2:
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
#include "device_util.cuh"
#include "matmul.cuh"

#define CONV_COL_BYTES ((size_t)256 << 20) /* col chunk budget */

/* benchmark hook: 0 = packed implicit GEMM for 3x3 pad 1 (default), 1 =
 * im2col with K-contiguous columns ("TN" GEMM) for all, 2 = im2col [K, P]
 * ("NN") for all, 3 = packed implicit GEMM with 96 couts per block, 4 = the
 * f32-staging implicit GEMM (the previous default). conv3x3_fused always
 * packs (variant 3 picks its 96-cout tiles). */
static int g_conv_variant;

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

/* ---- 3x3 convolution as an implicit GEMM on tensor cores ----
 *
 * Y[co, p] = sum over (ci, tap) of W[co, ci, tap] X[ci, p + tap]: per tap a
 * GEMM of (pixels x channels) . (channels x couts), mma.sync m16n8k16 with
 * A = input pixels (16 consecutive output pixels of one row, shifted by the
 * tap), B = kernel taps, f32 accumulators. No column buffer: a block stages
 * its input window in shared memory, 16 channels at a time.
 *
 * Block: 8 warps, an output tile of IG_TH rows x IG_TW columns x NB couts;
 * warp w owns output row w (two m16 pixel tiles) and all NB couts.
 * Per 16-channel chunk:
 *   stage   f32 [16][IG_TH+2][IG_TW+2] by 4-byte cp.async, zero-filled
 *           outside the image (the padding) and past c_in;
 *   xin     bf16 [pos][16 ch], pos = window row * (IG_TW+2) + column: a
 *           32-byte row per pixel, so an ldmatrix row is 8 channels of one
 *           pixel (the A fragment layout);
 *   wsm[2]  bf16 [tap][NB][16 ch] (B fragments), double-buffered;
 * with the 16-byte halves of each 32-byte row swapped on rows 4-7 of every
 * 8 (XOR swizzle) so that 8 consecutive rows of an ldmatrix hit 8 distinct
 * bank groups. One chunk's copies run while the previous chunk computes.
 * Weights come re-laid by conv_w_prep_kernel: wr[chunk][tap][cout_pad][16]
 * bf16, zero-padded to whole chunks and whole NB couts. */
#define IG_TH 8
#define IG_TW 32
#define IG_WR (IG_TW + 2)               /* window row length */
#define IG_POS ((IG_TH + 2) * IG_WR)    /* window positions: 340 */
#define IG_NT 256

/* element offset of 16-byte half `half` of 32-byte row `row` (swizzled) */
__device__ __forceinline__ int ig_sw(int row, int half) {
    return row * 16 + ((half ^ ((row >> 2) & 1)) << 3);
}

/* One chunk's kernel taps into shared memory: 9 taps x NB couts x two
 * 16-byte halves of 8 channels, from the re-laid [chunk][tap][cout][16]. */
template <int NB>
__device__ __forceinline__ void ig_load_taps(__nv_bfloat16 *wdst, const __nv_bfloat16 *wr, int ch,
                                             int cout0, int cout_pad) {
    const __nv_bfloat16 *wsrc = wr + ((int64_t)ch * 9 * cout_pad + cout0) * 16;
    for (int i = threadIdx.x; i < 9 * NB * 2; i += IG_NT) {
        const int half = i & 1, row = i >> 1; /* row = tap * NB + co */
        const int tap = row / NB, co = row - tap * NB;
        const __nv_bfloat16 *src = wsrc + ((int64_t)tap * cout_pad + co) * 16 + half * 8;
        uint32_t dst = (uint32_t)__cvta_generic_to_shared(wdst + ig_sw(row, half));
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
    }
}

/* Output row oy of the tile from the C fragments (c0, c1: pixel g, couts 2t,
 * 2t + 1; c2, c3: pixel g + 8), plus the bias. */
template <int NCT>
__device__ __forceinline__ void ig_store(float *y, const float (&acc)[2][NCT][4],
                                         const float *bias, int c_out, int h, int w, int oy,
                                         int x0, int cout0, int lane) {
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int j = 0; j < NCT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int co = cout0 + j * 8 + 2 * t + (e & 1);
            if (co >= c_out) continue;
            const float bv = bias ? bias[co] : 0.0f;
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                const int ox = x0 + mt * 16 + g + (e >> 1) * 8;
                if (ox < w) y[((int64_t)co * h + oy) * w + ox] = acc[mt][j][e] + bv;
            }
        }
}

/* The MMAs of one 16-channel chunk: 9 taps, two 16-pixel row fragments
 * (A, from the swizzled input window) by NCT 8-cout tiles (B, from the
 * chunk's re-laid taps); both implicit-GEMM kernels share it. ldmatrix rows
 * of this lane: A = pixel (lane & 7) + 8 ((lane >> 3) & 1) of an m16 tile,
 * channel half lane >> 4; B = cout (lane & 7) + 8 (lane >> 4) of an n16
 * pair, channel half (lane >> 3) & 1. */
template <int NB, int NCT>
__device__ __forceinline__ void ig_chunk_mma(float (&acc)[2][NCT][4], const __nv_bfloat16 *xbuf,
                                             const __nv_bfloat16 *wbuf, int warp, int lane) {
    const int a_px = (lane & 7) + ((lane >> 3) & 1) * 8, a_half = lane >> 4;
    const int b_co = (lane & 7) + (lane >> 4) * 8, b_half = (lane >> 3) & 1;
#pragma unroll
    for (int tap = 0; tap < 9; tap++) {
        const int ky = tap / 3, kx = tap - ky * 3;
        uint32_t a[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
            ldmatrix_x4(a[mt], xbuf + ig_sw((warp + ky) * IG_WR + mt * 16 + kx + a_px, a_half));
#pragma unroll
        for (int p = 0; p < NCT / 2; p++) {
            uint32_t b[4];
            ldmatrix_x4(b, wbuf + ig_sw(tap * NB + p * 16 + b_co, b_half));
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                mma_bf16(acc[mt][2 * p], a[mt], b[0], b[1]);
                mma_bf16(acc[mt][2 * p + 1], a[mt], b[2], b[3]);
            }
        }
    }
}


/* wr[ch][tap][co][ci16] = bf16(w[co, (16 ch + ci16) * 9 + tap]), zero where
 * co >= c_out or the channel >= c_in. w is f32 (wf) or bf16 (wb). */
__global__ void conv_w_prep_kernel(__nv_bfloat16 *wr, const float *wf, const __nv_bfloat16 *wb,
                                   int c_in, int c_out, int n_ch, int cout_pad) {
    const int64_t n = (int64_t)n_ch * 9 * cout_pad * 16;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int ci16 = (int)(i & 15);
        int64_t r = i >> 4;
        const int co = (int)(r % cout_pad);
        r /= cout_pad;
        const int tap = (int)(r % 9), ch = (int)(r / 9);
        const int ci = ch * 16 + ci16;
        float val = 0.0f;
        if (co < c_out && ci < c_in) {
            const int64_t src = (int64_t)co * c_in * 9 + (int64_t)ci * 9 + tap;
            val = wf ? wf[src] : __bfloat162float(wb[src]);
        }
        wr[i] = __float2bfloat16_rn(val);
    }
}

template <int NB>
__device__ __forceinline__ void ig_load_chunk(float *stage, __nv_bfloat16 *wdst,
                                              const float *x, const __nv_bfloat16 *wr, int ch,
                                              int c_in, int h, int w, int y0, int x0, int cout0,
                                              int cout_pad) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    /* input window: 16 channels x (IG_TH+2) rows of IG_WR floats; one warp per row */
    for (int rr = warp; rr < 16 * (IG_TH + 2); rr += IG_NT / 32) {
        const int c = rr / (IG_TH + 2), r = rr - c * (IG_TH + 2);
        const int ci = ch * 16 + c, gy = y0 - 1 + r;
        const bool row_ok = ci < c_in && gy >= 0 && gy < h;
        const float *src_row = x + ((int64_t)(row_ok ? ci : 0) * h + (row_ok ? gy : 0)) * w;
        for (int col = lane; col < IG_WR; col += 32) {
            const int gx = x0 - 1 + col;
            const bool ok = row_ok && gx >= 0 && gx < w;
            const float *src = ok ? src_row + gx : x;
            uint32_t dst = (uint32_t)__cvta_generic_to_shared(stage + rr * IG_WR + col);
            asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
                         "r"(ok ? 4 : 0));
        }
    }
    ig_load_taps<NB>(wdst, wr, ch, cout0, cout_pad);
    asm volatile("cp.async.commit_group;\n" ::);
}

/* MINB: blocks per SM asked of the register allocator (NB = 96 needs ~200
 * registers: one block of 8 warps per SM; smaller NB fit two). */
template <int NB, int MINB>
__global__ void __launch_bounds__(IG_NT, MINB)
conv3x3_igemm_kernel(float *y, const float *x, const __nv_bfloat16 *wr, const float *bias,
                     int c_in, int c_out, int h, int w, int cout_pad) {
    constexpr int NCT = NB / 8; /* n8 tiles of couts */
    extern __shared__ __align__(16) unsigned char ig_smem[];
    float *stage = (float *)ig_smem;                                  /* [16][IG_POS] */
    __nv_bfloat16 *xin = (__nv_bfloat16 *)(stage + 16 * IG_POS);      /* [IG_POS][16] */
    __nv_bfloat16 *wsm = xin + IG_POS * 16;                           /* [2][9 * NB][16] */

    const int x0 = blockIdx.x * IG_TW, y0 = blockIdx.y * IG_TH, cout0 = blockIdx.z * NB;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int n_ch = (c_in + 15) / 16;

    float acc[2][NCT][4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int j = 0; j < NCT; j++) acc[mt][j][0] = acc[mt][j][1] = acc[mt][j][2] = acc[mt][j][3] = 0.0f;


    ig_load_chunk<NB>(stage, wsm, x, wr, 0, c_in, h, w, y0, x0, cout0, cout_pad);
    for (int ch = 0; ch < n_ch; ch++) {
        asm volatile("cp.async.wait_group 0;\n" ::);
        __syncthreads(); /* chunk ch staged; every warp is done with chunk ch-1 */
        /* f32 [c][pos] -> bf16 [pos][c], 8 channels per 16-byte store */
        for (int i = threadIdx.x; i < IG_POS * 2; i += IG_NT) {
            const int half = i / IG_POS, pos = i - half * IG_POS;
            const float *sp = stage + half * 8 * IG_POS + pos;
            uint4 pk;
            pk.x = pack_bf16(sp[0], sp[IG_POS]);
            pk.y = pack_bf16(sp[2 * IG_POS], sp[3 * IG_POS]);
            pk.z = pack_bf16(sp[4 * IG_POS], sp[5 * IG_POS]);
            pk.w = pack_bf16(sp[6 * IG_POS], sp[7 * IG_POS]);
            *(uint4 *)(xin + ig_sw(pos, half)) = pk;
        }
        __syncthreads(); /* xin ready; stage free */
        if (ch + 1 < n_ch)
            ig_load_chunk<NB>(stage, wsm + ((ch + 1) & 1) * 9 * NB * 16, x, wr, ch + 1, c_in, h, w,
                              y0, x0, cout0, cout_pad);
        const __nv_bfloat16 *wbuf = wsm + (ch & 1) * 9 * NB * 16;
        ig_chunk_mma<NB, NCT>(acc, xin, wbuf, warp, lane);
    }

    /* C fragments: c0, c1 (pixel g, couts 2t, 2t+1), c2, c3 (pixel g + 8) */
    const int oy = y0 + warp;
    if (oy >= h) return;
    ig_store<NCT>(y, acc, bias, c_out, h, w, oy, x0, cout0, lane);
}

template <int NB>
static size_t igemm_smem() {
    return (size_t)16 * IG_POS * 4 + (size_t)IG_POS * 16 * 2 + (size_t)2 * 9 * NB * 16 * 2;
}

template <int NB, int MINB = (NB > 48 ? 1 : 2)>
static cudaError_t launch_igemm(float *y, const float *x, const __nv_bfloat16 *wr,
                                const float *bias, int c_in, int c_out, int h, int w,
                                int cout_pad, cudaStream_t stream) {
    const size_t smem = igemm_smem<NB>();
    cudaError_t e = cudaFuncSetAttribute(conv3x3_igemm_kernel<NB, MINB>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((w + IG_TW - 1) / IG_TW), (unsigned)((h + IG_TH - 1) / IG_TH),
              (unsigned)(cout_pad / NB));
    conv3x3_igemm_kernel<NB, MINB><<<grid, IG_NT, smem, stream>>>(y, x, wr, bias, c_in, c_out, h, w,
                                                           cout_pad);
    return cudaGetLastError();
}


/* ---- 3x3 convolution on a packed input ----
 *
 * conv_pack_kernel writes xp [n_ch][hs][ws][16] bf16: chunk ch of 16
 * channels of pixel p is one 32-byte row, channels >= c_in zero, with the
 * input transform of conv3x3_fused applied (ops.h mold_conv_fusion: x * s[p]
 * * gamma[c], then SiLU, in f32 as channel_rms_norm and silu compute it).
 * One thread per (chunk, pixel): 16 loads strided by the plane (coalesced
 * across threads), two 16-byte stores (consecutive threads, consecutive
 * rows).
 *
 * conv3x3_packed_kernel is conv3x3_igemm_kernel's MMA scheme (8 warps,
 * 8 x 32 output pixels x NB couts, warp w owns output row w) with the
 * window of a chunk arriving by 16-byte cp.async straight into its
 * swizzled [pos][16] layout (zero-filled outside the image), double-
 * buffered like the weights: one barrier per chunk, the next chunk's copies
 * in flight during this chunk's MMAs, no conversion pass. The conv input
 * pixel (gy, gx) reads packed pixel (gy >> up, gx >> up) of the hs x ws
 * source (up = 1: nearest x2). The residual (nullable, may be y) is loaded
 * into the accumulators before any store. */
__global__ void conv_pack_kernel(__nv_bfloat16 *xp, const float *x, int c_in, int64_t hw,
                                 int n_ch, const float *scale, const float *gamma, int silu) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n_ch * hw;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int ch = (int)(t / hw);
        const int64_t p = t - ch * hw;
        const float s = scale ? scale[p] : 1.0f;
        uint32_t pk[8];
#pragma unroll
        for (int k = 0; k < 16; k += 2) {
            float v[2];
#pragma unroll
            for (int u = 0; u < 2; u++) {
                const int c = ch * 16 + k + u;
                float val = c < c_in ? x[c * hw + p] : 0.0f;
                if (scale) val = val * s * (gamma && c < c_in ? gamma[c] : 1.0f);
                if (silu) val = val / (1.0f + expf(-val));
                v[u] = val;
            }
            pk[k / 2] = pack_bf16(v[0], v[1]);
        }
        uint4 *dst = (uint4 *)(xp + t * 16);
        dst[0] = make_uint4(pk[0], pk[1], pk[2], pk[3]);
        dst[1] = make_uint4(pk[4], pk[5], pk[6], pk[7]);
    }
}

/* Chunk ch's window (into xdst) and weights (into wdst), one commit group. */
template <int NB>
__device__ __forceinline__ void pk_load_chunk(__nv_bfloat16 *xdst, __nv_bfloat16 *wdst,
                                              const __nv_bfloat16 *xp, const __nv_bfloat16 *wr,
                                              int ch, int h, int w, int hs, int ws, int up,
                                              int y0, int x0, int cout0, int cout_pad) {
    const __nv_bfloat16 *plane = xp + (int64_t)ch * hs * ws * 16;
    for (int i = threadIdx.x; i < IG_POS * 2; i += IG_NT) {
        const int pos = i >> 1, half = i & 1;
        const int r = pos / IG_WR, col = pos - r * IG_WR;
        const int gy = y0 - 1 + r, gx = x0 - 1 + col;
        const bool ok = gy >= 0 && gy < h && gx >= 0 && gx < w;
        const __nv_bfloat16 *src =
            ok ? plane + ((int64_t)(gy >> up) * ws + (gx >> up)) * 16 + half * 8 : xp;
        uint32_t dst = (uint32_t)__cvta_generic_to_shared(xdst + ig_sw(pos, half));
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                     "r"(ok ? 16 : 0));
    }
    ig_load_taps<NB>(wdst, wr, ch, cout0, cout_pad);
    asm volatile("cp.async.commit_group;\n" ::);
}

template <int NB, int MINB>
__global__ void __launch_bounds__(IG_NT, MINB)
conv3x3_packed_kernel(float *y, const __nv_bfloat16 *xp, const __nv_bfloat16 *wr,
                      const float *bias, const float *res, int n_ch, int c_out, int h, int w,
                      int hs, int ws, int up, int cout_pad) {
    constexpr int NCT = NB / 8; /* n8 tiles of couts */
    extern __shared__ __align__(16) unsigned char pk_smem[];
    __nv_bfloat16 *xin = (__nv_bfloat16 *)pk_smem; /* [2][IG_POS][16] */
    __nv_bfloat16 *wsm = xin + 2 * IG_POS * 16;    /* [2][9 * NB][16] */

    const int x0 = blockIdx.x * IG_TW, y0 = blockIdx.y * IG_TH, cout0 = blockIdx.z * NB;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;

    float acc[2][NCT][4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int j = 0; j < NCT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[mt][j][e] = 0.0f;


    pk_load_chunk<NB>(xin, wsm, xp, wr, 0, h, w, hs, ws, up, y0, x0, cout0, cout_pad);
    for (int ch = 0; ch < n_ch; ch++) {
        asm volatile("cp.async.wait_group 0;\n" ::);
        __syncthreads(); /* chunk ch landed; every warp is done with chunk ch-1's buffers */
        const int nx = (ch + 1) & 1;
        if (ch + 1 < n_ch)
            pk_load_chunk<NB>(xin + nx * IG_POS * 16, wsm + nx * 9 * NB * 16, xp, wr, ch + 1, h, w,
                              hs, ws, up, y0, x0, cout0, cout_pad);
        const __nv_bfloat16 *xbuf = xin + (ch & 1) * IG_POS * 16;
        const __nv_bfloat16 *wbuf = wsm + (ch & 1) * 9 * NB * 16;
        ig_chunk_mma<NB, NCT>(acc, xbuf, wbuf, warp, lane);
    }

    /* C fragments: c0, c1 (pixel g, couts 2t, 2t+1), c2, c3 (pixel g + 8) */
    const int oy = y0 + warp;
    if (oy >= h) return;
    if (res) /* every residual value is read before any output is written (res may be y) */
#pragma unroll
        for (int j = 0; j < NCT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int co = cout0 + j * 8 + 2 * t + (e & 1);
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    const int ox = x0 + mt * 16 + g + (e >> 1) * 8;
                    if (co < c_out && ox < w) acc[mt][j][e] += res[((int64_t)co * h + oy) * w + ox];
                }
            }
    ig_store<NCT>(y, acc, bias, c_out, h, w, oy, x0, cout0, lane);
}

template <int NB>
static size_t packed_smem() {
    return (size_t)2 * IG_POS * 16 * 2 + (size_t)2 * 9 * NB * 16 * 2;
}

template <int NB, int MINB = (NB > 48 ? 1 : 2)>
static cudaError_t launch_packed(float *y, const __nv_bfloat16 *xp, const __nv_bfloat16 *wr,
                                 const float *bias, const float *res, int n_ch, int c_out, int h,
                                 int w, int hs, int ws, int up, int cout_pad,
                                 cudaStream_t stream) {
    const size_t smem = packed_smem<NB>();
    cudaError_t e = cudaFuncSetAttribute(conv3x3_packed_kernel<NB, MINB>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((w + IG_TW - 1) / IG_TW), (unsigned)((h + IG_TH - 1) / IG_TH),
              (unsigned)(cout_pad / NB));
    conv3x3_packed_kernel<NB, MINB><<<grid, IG_NT, smem, stream>>>(y, xp, wr, bias, res, n_ch,
                                                                   c_out, h, w, hs, ws, up,
                                                                   cout_pad);
    return cudaGetLastError();
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

/* The implicit-GEMM path (3x3, pad 1): weights re-laid into scratch (after
 * a dequantization for block formats), then one kernel. */
static mold_status conv3x3_igemm(cuda_backend *cb, float *y, const float *x, int64_t c_in,
                                 int64_t h, int64_t w, const mold_weight *wt,
                                 const float *bias) {
    const int64_t c_out = wt->n_out, K = c_in * 9;
    const int nb = c_out % 96 == 0 ? 96 : c_out % 64 == 0 ? 64 : c_out > 16 ? 32 : 16;
    const int64_t cout_pad = (c_out + nb - 1) / nb * nb, n_ch = (c_in + 15) / 16;
    const size_t wr_bytes = cuda_align256((size_t)n_ch * 9 * cout_pad * 16 * 2);
    const bool plain = wt->dtype == MOLD_F32 || wt->dtype == MOLD_BF16;
    const size_t wb_bytes = plain ? 0 : cuda_align256((size_t)c_out * K * 2);
    void *scr;
    MOLD_TRY(mold_cuda_scratch(cb, wr_bytes + wb_bytes, &scr));
    __nv_bfloat16 *wr = (__nv_bfloat16 *)scr;
    const __nv_bfloat16 *wb = (const __nv_bfloat16 *)wt->data;
    if (!plain) {
        __nv_bfloat16 *tmp = (__nv_bfloat16 *)((char *)scr + wr_bytes);
        MOLD_CUDA_CHECK(cb, mold_cuda_dequant_bf16(wt->dtype, tmp, wt->data, c_out, K,
                                                   wt->row_bytes, cb->stream));
        wb = tmp;
    }
    const float *wf = wt->dtype == MOLD_F32 ? (const float *)wt->data : NULL;
    const int64_t n_wr = n_ch * 9 * cout_pad * 16;
    conv_w_prep_kernel<<<cuda_blocks(n_wr, 256), 256, 0, cb->stream>>>(
        wr, wf, wf ? NULL : wb, (int)c_in, (int)c_out, (int)n_ch, (int)cout_pad);
    MOLD_CUDA_LAUNCH_CHECK(cb);
#define IG_ARGS y, x, wr, bias, (int)c_in, (int)c_out, (int)h, (int)w, (int)cout_pad, cb->stream
    switch (nb) {
    case 96: MOLD_CUDA_CHECK(cb, launch_igemm<96>(IG_ARGS)); break;
    case 64: MOLD_CUDA_CHECK(cb, launch_igemm<64>(IG_ARGS)); break;
    case 48: MOLD_CUDA_CHECK(cb, launch_igemm<48>(IG_ARGS)); break;
    case 32: MOLD_CUDA_CHECK(cb, launch_igemm<32>(IG_ARGS)); break;
    default: MOLD_CUDA_CHECK(cb, launch_igemm<16>(IG_ARGS)); break;
    }
#undef IG_ARGS
    return MOLD_OK;
}

/* The packed path (3x3, pad 1): input packed (and transformed) into
 * scratch, weights re-laid (after a dequantization for block formats),
 * then one kernel. x is [c_in, H >> up, W >> up]; y [c_out, H, W]. f
 * nullable (plain conv). Scratch: conv_packed_scratch(). */
static mold_status conv3x3_packed(cuda_backend *cb, float *y, const float *x, int64_t c_in,
                                  int64_t H, int64_t W, int up, const mold_weight *wt,
                                  const float *bias, const mold_conv_fusion *f) {
    const int64_t c_out = wt->n_out, K = c_in * 9, hs = H >> up, ws = W >> up;
    /* 48 couts per block (2 blocks per SM, 128 registers) beat 96 (one block
     * at 202 registers): 1.35 vs 1.48 ms at 96 -> 96 x 1328^2, 1.07 vs 1.17
     * at 192 x 664^2 (H100, docs/perf/vae.md) */
    int nb = c_out % 48 == 0 ? 48 : c_out % 64 == 0 ? 64 : c_out > 16 ? 32 : 16;
    if (g_conv_variant == 3 && c_out % 96 == 0) nb = 96; /* benchmark: the 96-cout tile */
    const int64_t cout_pad = (c_out + nb - 1) / nb * nb, n_ch = (c_in + 15) / 16;
    const size_t xp_bytes = cuda_align256((size_t)(n_ch * hs * ws) * 32);
    const size_t wr_bytes = cuda_align256((size_t)n_ch * 9 * cout_pad * 16 * 2);
    const bool plain = wt->dtype == MOLD_F32 || wt->dtype == MOLD_BF16;
    const size_t wb_bytes = plain ? 0 : cuda_align256((size_t)c_out * K * 2);
    void *scr;
    MOLD_TRY(mold_cuda_scratch(cb, xp_bytes + wr_bytes + wb_bytes, &scr));
    __nv_bfloat16 *xp = (__nv_bfloat16 *)scr, *wr = (__nv_bfloat16 *)((char *)scr + xp_bytes);
    const __nv_bfloat16 *wb = (const __nv_bfloat16 *)wt->data;
    if (!plain) {
        __nv_bfloat16 *tmp = (__nv_bfloat16 *)((char *)scr + xp_bytes + wr_bytes);
        MOLD_CUDA_CHECK(cb, mold_cuda_dequant_bf16(wt->dtype, tmp, wt->data, c_out, K,
                                                   wt->row_bytes, cb->stream));
        wb = tmp;
    }
    const float *scale = f ? f->in_scale : NULL;
    conv_pack_kernel<<<cuda_blocks(n_ch * hs * ws, 256), 256, 0, cb->stream>>>(
        xp, x, (int)c_in, hs * ws, (int)n_ch, scale, scale ? f->in_gamma : NULL,
        f && f->in_silu ? 1 : 0);
    MOLD_CUDA_LAUNCH_CHECK(cb);
    const float *wf = wt->dtype == MOLD_F32 ? (const float *)wt->data : NULL;
    const int64_t n_wr = n_ch * 9 * cout_pad * 16;
    conv_w_prep_kernel<<<cuda_blocks(n_wr, 256), 256, 0, cb->stream>>>(
        wr, wf, wf ? NULL : wb, (int)c_in, (int)c_out, (int)n_ch, (int)cout_pad);
    MOLD_CUDA_LAUNCH_CHECK(cb);
    const float *res = f ? f->residual : NULL;
#define PK_ARGS y, xp, wr, bias, res, (int)n_ch, (int)c_out, (int)H, (int)W, (int)hs, (int)ws, \
                up, (int)cout_pad, cb->stream
    switch (nb) {
    case 96: MOLD_CUDA_CHECK(cb, launch_packed<96>(PK_ARGS)); break;
    case 64: MOLD_CUDA_CHECK(cb, launch_packed<64>(PK_ARGS)); break;
    case 48: MOLD_CUDA_CHECK(cb, launch_packed<48>(PK_ARGS)); break;
    case 32: MOLD_CUDA_CHECK(cb, launch_packed<32>(PK_ARGS)); break;
    default: MOLD_CUDA_CHECK(cb, launch_packed<16>(PK_ARGS)); break;
    }
#undef PK_ARGS
    return MOLD_OK;
}

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
    const bool k3 = kh == 3 && kw == 3 && pad == 1;
    if (k3 && (g_conv_variant == 0 || g_conv_variant == 3) && w < INT32_MAX / 2 &&
        (h + IG_TH - 1) / IG_TH <= 65535 && c_out <= 65535 * 16) {
        MOLD_TRY(conv3x3_packed(cb, y, x, c_in, h, w, 0, wt, bias, NULL));
        return mold_cuda_op_done(cb);
    }
    if (k3 && g_conv_variant == 4 && c_in * h * w < INT32_MAX && c_out < 65536 * 16) {
        MOLD_TRY(conv3x3_igemm(cb, y, x, c_in, h, w, wt, bias));
        return mold_cuda_op_done(cb);
    }
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

/* Byte ranges [a, a + na) and [b, b + nb) share memory. */
static bool ranges_overlap(const void *a, size_t na, const void *b, size_t nb) {
    const char *pa = (const char *)a, *pb = (const char *)b;
    return na && nb && pa < pb + nb && pb < pa + na;
}

extern "C" mold_status mold_cuda_op_conv3x3_fused(mold_backend *be, float *y, const float *x,
                                                  int64_t c_in, int64_t h, int64_t w,
                                                  const mold_weight *wt, const float *bias,
                                                  const mold_conv_fusion *f) {
    cuda_backend *cb = cuda_of(be);
    if (!wt || !wt->data || !x || !y)
        return MOLD_ERR(MOLD_E_INVALID, "conv3x3_fused: NULL weight, x or y");
    const int up = f && f->upsample2x ? 1 : 0;
    const int64_t H = h << up, W = w << up, c_out = wt->n_out;
    if (c_in <= 0 || h <= 0 || w <= 0 || wt->n_in != c_in * 9)
        return MOLD_ERR(MOLD_E_INVALID, "conv3x3_fused: expected c_in, h, w > 0 and a weight of "
                        "c_in * 9 columns, got c_in %lld h %lld w %lld, %lld columns",
                        (long long)c_in, (long long)h, (long long)w, (long long)wt->n_in);
    if (W >= INT32_MAX / 2 || (H + IG_TH - 1) / IG_TH > 65535 || c_out > 65535 * 16)
        return MOLD_ERR(MOLD_E_RANGE, "conv3x3_fused: output %lld x %lld x %lld exceeds the grid",
                        (long long)c_out, (long long)H, (long long)W);
    if (ranges_overlap(y, (size_t)(c_out * H * W) * 4, x, (size_t)(c_in * h * w) * 4))
        return MOLD_ERR(MOLD_E_INVALID, "conv3x3_fused: y overlaps x");
    const int flags = (f && f->in_scale ? 1 : 0) | (f && f->in_silu ? 2 : 0) | up << 2 |
                      (f && f->residual ? 8 : 0);
    CUDA_OP(cb, "conv3x3_fused", c_in, H, W, c_out, (int64_t)flags);
    MOLD_TRY(conv3x3_packed(cb, y, x, c_in, H, W, up, wt, bias, f));
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
