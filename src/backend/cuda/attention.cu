/*
 * attention.cu — flash attention (mma.sync bf16) and the GEMM fallback (see
 * attention.cuh). On Hopper builds (sm_90a) the op entry sends head dim 128
 * without a causal mask (the DiT) to flash_hopper.cu (TMA + wgmma, ~2x
 * flash3); everything else runs the kernels below.
 *
 * Three flash kernels share the scheme below: flash3_kernel (the default:
 * 4 warps x 32 query rows, 64-key tiles with one barrier each, masking only
 * on tiles that need it, the scale folded into one FFMA before ex2.approx,
 * O rescaled only when a row maximum grew), flash2_kernel (the previous
 * default: 32-key tiles, a mask and a rescale per score and tile; taken for
 * a non-positive scale) and flash_attn_kernel (the first version: 4 warps x
 * 16 rows, Q fragments kept in registers), kept as benchmark variants.
 *
 * Flash kernel (FlashAttention-2 scheme, Dao 2023, Algorithm 1):
 *   block = 4 warps = 64 query rows of one head (16 rows per warp);
 *   for each tile of 64 keys: K, V tiles -> shared memory (bf16, rows padded
 *   by 8 values so fragment loads are bank-conflict free), S = Q K^T with
 *   mma.sync.m16n8k16 (Q fragments kept in registers for the whole loop),
 *   mask (key_valid, causal, out-of-range keys) -> -inf, online softmax in
 *   base 2 with fp32 running max m and sum l, P rounded to bf16 and fed back
 *   as the A operand of O += P V (V fragments by ldmatrix.trans).
 *   A row whose keys are all masked keeps m = -inf; its exponentials use 0 as
 *   the reference, so they are exactly 0, l stays 0 and the output is 0.
 *
 * Fragment layouts (PTX ISA, mma.m16n8k16, g = lane / 4, t = lane % 4):
 *   A (16x16): a0 (g, 2t..2t+1)  a1 (g+8, 2t..)  a2 (g, 2t+8..)  a3 (g+8, 2t+8..)
 *   B (16x8):  b0 (k = 2t..2t+1, n = g)          b1 (k = 2t+8.., n = g)
 *   C (16x8):  c0,c1 (g, 2t..2t+1)               c2,c3 (g+8, 2t..2t+1)
 * so the C fragments of two adjacent 8-key tiles are exactly the A fragment of
 * one 16-key step: P never goes through shared memory.
 */
#include "attention.cuh"

#include <math.h>

#include "attention_wide.cuh"
#include "convert.cuh"
#include "device_util.cuh"
#include "flash_hopper.cuh"
#include "matmul.cuh"

#define FA_BK 64   /* keys per tile */
#define FA_PAD 8   /* bf16 values of row padding in shared memory */

static int g_force_gemm;
static int g_fa_variant; /* benchmark hook: kernel variant for d = 128 */

extern "C" void mold_cuda_attention_force_gemm(int on) { g_force_gemm = on; }
extern "C" void mold_cuda_attention_set_variant(int v) { g_fa_variant = v; }

/* ==================================================================== */
/* ---- CUDA kernels: flash ---- */
/* ==================================================================== */

/* ldmatrix variants only the flash kernels use (x4 is in device_util.cuh);
 * with .trans lane l receives (rows 2(l%4), 2(l%4)+1; col l/4). */
__device__ __forceinline__ void ldmatrix_x2(uint32_t r[2], const void *smem_row) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(smem_row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *smem_row) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(smem_row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* Copies `rows` rows of D bf16 (global row r at src + r * stride) into a
 * shared tile [rows][D + FA_PAD]; rows >= n_valid are zeroed. */
template <int D, int NT>
__device__ __forceinline__ void load_tile(__nv_bfloat16 *tile, const __nv_bfloat16 *src,
                                          int64_t stride, int rows, int n_valid) {
    constexpr int CH = D / 8; /* 16-byte chunks per row */
    for (int c = threadIdx.x; c < rows * CH; c += NT) {
        int r = c / CH, cc = c - r * CH;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (r < n_valid) val = *(const uint4 *)(src + r * stride + cc * 8);
        *(uint4 *)(tile + r * (D + FA_PAD) + cc * 8) = val;
    }
}

/* Asynchronous variant (cp.async, 16 bytes per copy, bypassing L1): rows
 * >= n_valid are zero-filled (src-size 0 reads nothing). Completes at the
 * next cp.async.wait_group that covers its commit group. */
template <int D, int NT>
__device__ __forceinline__ void load_tile_async(__nv_bfloat16 *tile, const __nv_bfloat16 *src,
                                                int64_t stride, int rows, int n_valid) {
    constexpr int CH = D / 8;
    for (int c = threadIdx.x; c < rows * CH; c += NT) {
        int r = c / CH, cc = c - r * CH;
        const __nv_bfloat16 *g = src + (r < n_valid ? r : 0) * stride + cc * 8;
        uint32_t dst = (uint32_t)__cvta_generic_to_shared(tile + r * (D + FA_PAD) + cc * 8);
        int bytes = r < n_valid ? 16 : 0;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(g),
                     "r"(bytes));
    }
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* D: head dim; NW: warps per block (16 query rows each); MINB: blocks per SM
 * asked of the register allocator; KLDM: K fragments by ldmatrix (else two
 * 32-bit shared loads per fragment). */
template <int D, int NW, int MINB, bool KLDM>
__global__ void __launch_bounds__(NW * 32, MINB)
flash_attn_kernel(float *out, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                  const __nv_bfloat16 *v, int sq, int skv, int hq, int hkv, float scale_log2,
                  const float *key_valid, int causal) {
    constexpr int NT = NW * 32, BQ = NW * 16, LD = D + FA_PAD;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)fa_smem;    /* [BQ][LD] */
    __nv_bfloat16 *Kbuf = Qs + BQ * LD;              /* [2][FA_BK][LD], double-buffered */
    __nv_bfloat16 *Vbuf = Kbuf + 2 * FA_BK * LD;     /* [2][FA_BK][LD] */
    float *kbias = (float *)(Vbuf + 2 * FA_BK * LD); /* [FA_BK] 0 or -inf */

    const int h = blockIdx.y, hk = h / (hq / hkv);
    const int q0 = blockIdx.x * BQ;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int64_t qstride = (int64_t)hq * D, kstride = (int64_t)hkv * D;

    /* Query row i sees keys j <= i + shift (causal). */
    const int shift = skv - sq;
    int kv_end = skv;
    if (causal) kv_end = max(0, min(skv, q0 + BQ + shift));
    const int n_tiles = (kv_end + FA_BK - 1) / FA_BK;

    /* Tile i+1 is copied (cp.async) while tile i is computed; tile 0 goes
     * first so its copy overlaps the Q load. */
    if (n_tiles > 0) {
        load_tile_async<D, NT>(Kbuf, k + (int64_t)hk * D, kstride, FA_BK, min(FA_BK, skv));
        load_tile_async<D, NT>(Vbuf, v + (int64_t)hk * D, kstride, FA_BK, min(FA_BK, skv));
        cp_async_commit();
    }
    load_tile<D, NT>(Qs, q + (int64_t)q0 * qstride + (int64_t)h * D, qstride, BQ,
                     min(BQ, sq - q0));
    __syncthreads();

    /* Q fragments of this warp's 16 rows, for every 16-wide slice of D. */
    uint32_t qf[D / 16][4];
    const __nv_bfloat16 *qw = Qs + (warp * 16) * LD;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        qf[kk][0] = *(const uint32_t *)(qw + g * LD + kk * 16 + 2 * t);
        qf[kk][1] = *(const uint32_t *)(qw + (g + 8) * LD + kk * 16 + 2 * t);
        qf[kk][2] = *(const uint32_t *)(qw + g * LD + kk * 16 + 8 + 2 * t);
        qf[kk][3] = *(const uint32_t *)(qw + (g + 8) * LD + kk * 16 + 8 + 2 * t);
    }

    float o[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    const int row_q[2] = {q0 + warp * 16 + g, q0 + warp * 16 + g + 8};

    for (int it = 0; it < n_tiles; it++) {
        const int k0 = it * FA_BK, n_valid = min(FA_BK, skv - k0);
        const __nv_bfloat16 *Ks = Kbuf + (it & 1) * FA_BK * LD, *Vs = Vbuf + (it & 1) * FA_BK * LD;
        if (it + 1 < n_tiles) {
            const int k1 = k0 + FA_BK;
            __nv_bfloat16 *Kn = Kbuf + ((it + 1) & 1) * FA_BK * LD;
            __nv_bfloat16 *Vn = Vbuf + ((it + 1) & 1) * FA_BK * LD;
            load_tile_async<D, NT>(Kn, k + (int64_t)k1 * kstride + (int64_t)hk * D, kstride,
                                   FA_BK, min(FA_BK, skv - k1));
            load_tile_async<D, NT>(Vn, v + (int64_t)k1 * kstride + (int64_t)hk * D, kstride,
                                   FA_BK, min(FA_BK, skv - k1));
            cp_async_commit();
            cp_async_wait<1>(); /* this thread's copies of tile it have landed */
        } else {
            cp_async_wait<0>();
        }
        for (int j = threadIdx.x; j < FA_BK; j += NT)
            kbias[j] = (j < n_valid && (!key_valid || key_valid[k0 + j] != 0.0f)) ? 0.0f
                                                                                 : -INFINITY;
        __syncthreads(); /* every thread's copies and kbias are visible */

        /* S = Q K^T for this warp's 16 rows x 64 keys. */
        float s[FA_BK / 8][4];
#pragma unroll
        for (int j = 0; j < FA_BK / 8; j++) {
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
            if constexpr (KLDM) {
                /* matrices (keys 8j.., dims 16kk + 8i): b0, b1 of k-steps kk, kk+1 */
                const __nv_bfloat16 *kr = Ks + (j * 8 + (lane & 7)) * LD + (lane >> 3) * 8;
#pragma unroll
                for (int kk = 0; kk + 1 < D / 16; kk += 2) {
                    uint32_t b[4];
                    ldmatrix_x4(b, kr + kk * 16);
                    mma_bf16(s[j], qf[kk], b[0], b[1]);
                    mma_bf16(s[j], qf[kk + 1], b[2], b[3]);
                }
                if constexpr ((D / 16) % 2 == 1) {
                    uint32_t b[2]; /* lanes 0-15 address (keys 8j.., dims D-16 + 8i) */
                    ldmatrix_x2(b, Ks + (j * 8 + (lane & 7)) * LD + D - 16 + ((lane >> 3) & 1) * 8);
                    mma_bf16(s[j], qf[D / 16 - 1], b[0], b[1]);
                }
            } else {
                const __nv_bfloat16 *kr = Ks + (j * 8 + g) * LD + 2 * t;
#pragma unroll
                for (int kk = 0; kk < D / 16; kk++)
                    mma_bf16(s[j], qf[kk], *(const uint32_t *)(kr + kk * 16),
                             *(const uint32_t *)(kr + kk * 16 + 8));
            }
        }

        /* Scale to base 2, mask, running max per row (rows g and g+8). */
        float mx[2] = {m[0], m[1]};
#pragma unroll
        for (int j = 0; j < FA_BK / 8; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int col = j * 8 + 2 * t + (e & 1), r = e >> 1;
                float val = s[j][e] * scale_log2 + kbias[col];
                if (causal && k0 + col > row_q[r] + shift) val = -INFINITY;
                s[j][e] = val;
                mx[r] = fmaxf(mx[r], val);
            }
        }
        float alpha[2], ref[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            ref[r] = mx[r] == -INFINITY ? 0.0f : mx[r];
            alpha[r] = exp2f(m[r] - ref[r]); /* 0 when m was -inf */
            m[r] = mx[r];
            l[r] *= alpha[r];
        }
#pragma unroll
        for (int j = 0; j < D / 8; j++) {
            o[j][0] *= alpha[0];
            o[j][1] *= alpha[0];
            o[j][2] *= alpha[1];
            o[j][3] *= alpha[1];
        }

        /* P = exp2(S - ref) -> bf16 A fragments; O += P V. */
#pragma unroll
        for (int kk = 0; kk < FA_BK / 16; kk++) {
            float p[2][4];
#pragma unroll
            for (int half = 0; half < 2; half++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float pe = exp2f(s[2 * kk + half][e] - ref[e >> 1]);
                    p[half][e] = pe;
                    l[e >> 1] += pe;
                }
            uint32_t pa[4] = {pack_bf16(p[0][0], p[0][1]), pack_bf16(p[0][2], p[0][3]),
                              pack_bf16(p[1][0], p[1][1]), pack_bf16(p[1][2], p[1][3])};
            const __nv_bfloat16 *vrow =
                Vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
#pragma unroll
            for (int jd = 0; jd < D / 8; jd += 2) {
                uint32_t b[4];
                ldmatrix_x4_trans(b, vrow + jd * 8);
                mma_bf16(o[jd], pa, b[0], b[1]);
                mma_bf16(o[jd + 1], pa, b[2], b[3]);
            }
        }
        __syncthreads(); /* buffer it & 1 and kbias are refilled next */
    }

    /* Row sums are split over the 4 threads of a quad. */
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (row_q[r] >= sq) continue;
        float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        float *orow = out + (int64_t)row_q[r] * qstride + (int64_t)h * D + 2 * t;
#pragma unroll
        for (int j = 0; j < D / 8; j++)
            *(float2 *)(orow + j * 8) = make_float2(o[j][2 * r] * inv, o[j][2 * r + 1] * inv);
    }
}

/* Second generation (the default): each warp owns MT m16 row tiles
 * (MT = 2: 32 query rows), so every K or V fragment read from shared memory
 * feeds MT mma instructions; Q fragments are re-read from shared memory per
 * k-step (ldmatrix) instead of living in registers, which frees the
 * registers for the doubled accumulators. This halves the shared-memory
 * traffic per mma of P V and cuts that of Q K^T by a quarter — the limit of
 * the first kernel (256 bytes per 4096-FLOP mma, twice what the SM's shared
 * memory delivers per clock) — as FlashAttention-2 does. */
template <int D, int NW, int MT, int BK>
__global__ void __launch_bounds__(NW * 32, 1)
flash2_kernel(float *out, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
              const __nv_bfloat16 *v, int sq, int skv, int hq, int hkv, float scale_log2,
              const float *key_valid, int causal) {
    constexpr int NT = NW * 32, BQ = NW * 16 * MT, LD = D + FA_PAD;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)fa_smem;    /* [BQ][LD] */
    __nv_bfloat16 *Kbuf = Qs + BQ * LD;              /* [2][BK][LD], double-buffered */
    __nv_bfloat16 *Vbuf = Kbuf + 2 * BK * LD;     /* [2][BK][LD] */
    float *kbias = (float *)(Vbuf + 2 * BK * LD); /* [BK] 0 or -inf */

    const int h = blockIdx.y, hk = h / (hq / hkv);
    const int q0 = blockIdx.x * BQ;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int64_t qstride = (int64_t)hq * D, kstride = (int64_t)hkv * D;
    const int shift = skv - sq; /* causal: query i sees keys j <= i + shift */
    int kv_end = skv;
    if (causal) kv_end = max(0, min(skv, q0 + BQ + shift));
    const int n_tiles = (kv_end + BK - 1) / BK;

    if (n_tiles > 0) {
        load_tile_async<D, NT>(Kbuf, k + (int64_t)hk * D, kstride, BK, min(BK, skv));
        load_tile_async<D, NT>(Vbuf, v + (int64_t)hk * D, kstride, BK, min(BK, skv));
        cp_async_commit();
    }
    load_tile<D, NT>(Qs, q + (int64_t)q0 * qstride + (int64_t)h * D, qstride, BQ,
                     min(BQ, sq - q0));

    float o[MT][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < D / 8; j++) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.0f;
    float m[MT][2], l[MT][2];
    int row_q[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.0f;
        row_q[mt][0] = q0 + (warp * MT + mt) * 16 + g;
        row_q[mt][1] = row_q[mt][0] + 8;
    }
    /* ldmatrix row addresses: Q (a0..a3 of a 16x16 block), K (b0, b1 of two
     * adjacent 8-key tiles), V (b0, b1 of two adjacent 8-dim tiles, .trans). */
    const __nv_bfloat16 *qa = Qs + (warp * MT * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD +
                              (lane >> 4) * 8;
    const int k_off = ((lane & 7) + (lane >> 4) * 8) * LD + ((lane >> 3) & 1) * 8;
    const int v_off = ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;

    for (int it = 0; it < n_tiles; it++) {
        const int k0 = it * BK, n_valid = min(BK, skv - k0);
        const __nv_bfloat16 *Ks = Kbuf + (it & 1) * BK * LD, *Vs = Vbuf + (it & 1) * BK * LD;
        if (it + 1 < n_tiles) {
            const int k1 = k0 + BK;
            load_tile_async<D, NT>(Kbuf + ((it + 1) & 1) * BK * LD,
                                   k + (int64_t)k1 * kstride + (int64_t)hk * D, kstride, BK,
                                   min(BK, skv - k1));
            load_tile_async<D, NT>(Vbuf + ((it + 1) & 1) * BK * LD,
                                   v + (int64_t)k1 * kstride + (int64_t)hk * D, kstride, BK,
                                   min(BK, skv - k1));
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        for (int j = threadIdx.x; j < BK; j += NT)
            kbias[j] = (j < n_valid && (!key_valid || key_valid[k0 + j] != 0.0f)) ? 0.0f
                                                                                 : -INFINITY;
        __syncthreads(); /* copies, kbias (and, at it == 0, Qs) are visible */

        /* S = Q K^T: MT x 16 rows by 64 keys. */
        float s[MT][BK / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int j = 0; j < BK / 8; j++) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) ldmatrix_x4(a[mt], qa + mt * 16 * LD + kk * 16);
#pragma unroll
            for (int j = 0; j < BK / 8; j += 2) {
                uint32_t b[4];
                ldmatrix_x4(b, Ks + j * 8 * LD + k_off + kk * 16);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_bf16(s[mt][j], a[mt], b[0], b[1]);
                    mma_bf16(s[mt][j + 1], a[mt], b[2], b[3]);
                }
            }
        }

        /* Scale to base 2, mask, online softmax per row. */
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            float mx[2] = {m[mt][0], m[mt][1]};
#pragma unroll
            for (int j = 0; j < BK / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int col = j * 8 + 2 * t + (e & 1), r = e >> 1;
                    float val = s[mt][j][e] * scale_log2 + kbias[col];
                    if (causal && k0 + col > row_q[mt][r] + shift) val = -INFINITY;
                    s[mt][j][e] = val;
                    mx[r] = fmaxf(mx[r], val);
                }
#pragma unroll
            for (int r = 0; r < 2; r++) {
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
                float ref = mx[r] == -INFINITY ? 0.0f : mx[r];
                float alpha = exp2f(m[mt][r] - ref); /* 0 when m was -inf */
                m[mt][r] = mx[r];
                l[mt][r] *= alpha;
#pragma unroll
                for (int j = 0; j < D / 8; j++) {
                    o[mt][j][2 * r] *= alpha;
                    o[mt][j][2 * r + 1] *= alpha;
                }
#pragma unroll
                for (int j = 0; j < BK / 8; j++) { /* s becomes p */
                    float p0 = exp2f(s[mt][j][2 * r] - ref), p1 = exp2f(s[mt][j][2 * r + 1] - ref);
                    s[mt][j][2 * r] = p0;
                    s[mt][j][2 * r + 1] = p1;
                    l[mt][r] += p0 + p1;
                }
            }
        }

        /* O += P V (P as bf16 A fragments straight from the S accumulators). */
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) {
            uint32_t pa[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                pa[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                pa[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                pa[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                pa[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int jd = 0; jd < D / 8; jd += 2) {
                uint32_t b[4];
                ldmatrix_x4_trans(b, Vs + kk * 16 * LD + v_off + jd * 8);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_bf16(o[mt][jd], pa[mt], b[0], b[1]);
                    mma_bf16(o[mt][jd + 1], pa[mt], b[2], b[3]);
                }
            }
        }
        __syncthreads(); /* buffer it & 1 and kbias are refilled next */
    }

#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float lr = l[mt][r];
            lr += __shfl_xor_sync(0xffffffffu, lr, 1);
            lr += __shfl_xor_sync(0xffffffffu, lr, 2);
            if (row_q[mt][r] >= sq) continue;
            float inv = lr > 0.0f ? 1.0f / lr : 0.0f;
            float *orow = out + (int64_t)row_q[mt][r] * qstride + (int64_t)h * D + 2 * t;
#pragma unroll
            for (int j = 0; j < D / 8; j++)
                *(float2 *)(orow + j * 8) =
                    make_float2(o[mt][j][2 * r] * inv, o[mt][j][2 * r + 1] * inv);
        }
}

/* Third generation (the default for a positive scale): FlashAttention-2's
 * work split with less non-matrix work per score, which is what bounded
 * flash2 (its mma issue slots were shared with ~12 scalar instructions per
 * score and two barriers per 32 keys):
 *   - 64-key tiles (half the barriers, max/sum shuffles and rescales per key
 *     of flash2's 32), one barrier per tile: tile i+1 is issued right after
 *     the barrier that ends tile i-1's reads, into the buffer i-1 used;
 *   - no per-score mask work on full tiles: each warp builds a 64-bit valid
 *     mask of the tile's keys with two ballots (loads issued a tile ahead)
 *     and takes the masking path only when a key is excluded or the causal
 *     diagonal crosses the warp's rows;
 *   - the scale folded into one FFMA per score: max over raw scores (scale >
 *     0 preserves order), p = ex2.approx(s * scale_log2 - m * scale_log2);
 *   - O and l are rescaled only when some row of the warp saw its maximum
 *     grow (a warp vote); otherwise alpha is exactly 1 and the 128
 *     multiplies per thread are skipped. The result is the same function.
 * NW warps x 32 query rows per block (MT = 2 m16 tiles per warp), K/V tiles
 * of 64 keys double-buffered with cp.async; Q also arrives by cp.async. */
template <int D, int NW, int SUB>
__global__ void __launch_bounds__(NW * 32, 8 / NW)
flash3_kernel(float *out, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
              const __nv_bfloat16 *v, int sq, int skv, int hq, int hkv, float scale_log2,
              const float *key_valid, int causal) {
    constexpr int MT = 2, BK = 64, NT = NW * 32, BQ = NW * 16 * MT, LD = D + FA_PAD;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)fa_smem; /* [BQ][LD] */
    __nv_bfloat16 *Kbuf = Qs + BQ * LD;           /* [2][BK][LD] */
    __nv_bfloat16 *Vbuf = Kbuf + 2 * BK * LD;     /* [2][BK][LD] */

    const int h = blockIdx.y, hk = h / (hq / hkv);
    const int q0 = blockIdx.x * BQ;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int64_t qstride = (int64_t)hq * D, kstride = (int64_t)hkv * D;
    const int shift = skv - sq; /* causal: query i sees keys j <= i + shift */
    int kv_end = skv;
    if (causal) kv_end = max(0, min(skv, q0 + BQ + shift));
    const int n_tiles = (kv_end + BK - 1) / BK;
    const int warp_row0 = q0 + warp * MT * 16; /* first query row of this warp */

    load_tile_async<D, NT>(Qs, q + (int64_t)q0 * qstride + (int64_t)h * D, qstride, BQ,
                           min(BQ, sq - q0));
    if (n_tiles > 0) {
        load_tile_async<D, NT>(Kbuf, k + (int64_t)hk * D, kstride, BK, min(BK, skv));
        load_tile_async<D, NT>(Vbuf, v + (int64_t)hk * D, kstride, BK, min(BK, skv));
    }
    cp_async_commit();

    float o[MT][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < D / 8; j++) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.0f;
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;
    /* ldmatrix row addresses: Q (a0..a3 of a 16x16 block), K (b0, b1 of two
     * adjacent 8-key tiles), V (b0, b1 of two adjacent 8-dim tiles, .trans) */
    const __nv_bfloat16 *qa = Qs + (warp * MT * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD +
                              (lane >> 4) * 8;
    const int k_off = ((lane & 7) + (lane >> 4) * 8) * LD + ((lane >> 3) & 1) * 8;
    const int v_off = ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;

    for (int it = 0; it < n_tiles; it++) {
        const int k0 = it * BK;
        /* does this tile exclude a key? (the loads overlap the wait below;
         * only the warp-uniform answer stays live over the tile) */
        const bool excl = __any_sync(0xffffffffu, !key_ok(key_valid, k0 + lane, skv) ||
                                                      !key_ok(key_valid, k0 + 32 + lane, skv));
        cp_async_wait<0>();
        __syncthreads(); /* tile it landed for all; tile it-1's buffer is free */
        if (it + 1 < n_tiles) {
            const int k1 = k0 + BK;
            load_tile_async<D, NT>(Kbuf + ((it + 1) & 1) * BK * LD,
                                   k + (int64_t)k1 * kstride + (int64_t)hk * D, kstride, BK,
                                   min(BK, skv - k1));
            load_tile_async<D, NT>(Vbuf + ((it + 1) & 1) * BK * LD,
                                   v + (int64_t)k1 * kstride + (int64_t)hk * D, kstride, BK,
                                   min(BK, skv - k1));
            cp_async_commit();
        }

#pragma unroll
        for (int ko = 0; ko < BK; ko += SUB) { /* SUB keys at a time (registers) */
            const __nv_bfloat16 *Ks = Kbuf + (it & 1) * BK * LD + ko * LD;
            const __nv_bfloat16 *Vs = Vbuf + (it & 1) * BK * LD + ko * LD;

            /* S = Q K^T (raw scores): 32 rows x SUB keys per warp. */
            float s[MT][SUB / 8][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int j = 0; j < SUB / 8; j++)
                    s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                uint32_t a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) ldmatrix_x4(a[mt], qa + mt * 16 * LD + kk * 16);
#pragma unroll
                for (int j = 0; j < SUB / 8; j += 2) {
                    uint32_t b[4];
                    ldmatrix_x4(b, Ks + j * 8 * LD + k_off + kk * 16);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        mma_bf16(s[mt][j], a[mt], b[0], b[1]);
                        mma_bf16(s[mt][j + 1], a[mt], b[2], b[3]);
                    }
                }
            }

            /* Masking only where this warp's keys need it (warp-uniform). */
            const bool diag = causal && k0 + ko + SUB - 1 > warp_row0 + shift;
            if (excl || diag) { /* rare: the valid bits are fetched again here */
                const unsigned bits = __ballot_sync(0xffffffffu, key_ok(key_valid, k0 + ko + lane, skv));
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int j = 0; j < SUB / 8; j++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int col = j * 8 + 2 * t + (e & 1); /* < 32 */
                            const int row = warp_row0 + mt * 16 + g + (e >> 1) * 8;
                            bool vis = SUB == 32 ? (bits >> col) & 1
                                                 : key_ok(key_valid, k0 + ko + col, skv);
                            if (causal && k0 + ko + col > row + shift) vis = false;
                            if (!vis) s[mt][j][e] = -INFINITY;
                        }
            }

            /* Online softmax per row: new maximum; O and l rescaled only when
             * the maximum of some row of the warp grew (a warp vote). */
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    float mx = m[mt][r];
#pragma unroll
                    for (int j = 0; j < SUB / 8; j++)
                        mx = fmaxf(mx, fmaxf(s[mt][j][2 * r], s[mt][j][2 * r + 1]));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                    /* a row with every key masked so far keeps m = -inf: reference 0 */
                    const float ref = mx == -INFINITY ? 0.0f : mx;
                    if (__any_sync(0xffffffffu, mx > m[mt][r])) {
                        /* 0 when m was -inf (nothing accumulated yet); 1 when unchanged */
                        const float alpha = ex2_approx((m[mt][r] - ref) * scale_log2);
                        l[mt][r] *= alpha;
#pragma unroll
                        for (int j = 0; j < D / 8; j++) {
                            o[mt][j][2 * r] *= alpha;
                            o[mt][j][2 * r + 1] *= alpha;
                        }
                    }
                    m[mt][r] = mx;
                    const float nref = -ref * scale_log2;
                    float sum = 0.0f;
#pragma unroll
                    for (int j = 0; j < SUB / 8; j++) { /* s becomes p */
                        const float p0 = ex2_approx(fmaf(s[mt][j][2 * r], scale_log2, nref));
                        const float p1 = ex2_approx(fmaf(s[mt][j][2 * r + 1], scale_log2, nref));
                        s[mt][j][2 * r] = p0;
                        s[mt][j][2 * r + 1] = p1;
                        sum += p0 + p1;
                    }
                    l[mt][r] += sum;
                }

            /* O += P V (P as bf16 A fragments straight from the S accumulators). */
#pragma unroll
            for (int kk = 0; kk < SUB / 16; kk++) {
                uint32_t pa[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    pa[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
                    pa[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
                    pa[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
                    pa[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
                }
#pragma unroll
                for (int jd = 0; jd < D / 8; jd += 2) {
                    uint32_t b[4];
                    ldmatrix_x4_trans(b, Vs + kk * 16 * LD + v_off + jd * 8);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) {
                        mma_bf16(o[mt][jd], pa[mt], b[0], b[1]);
                        mma_bf16(o[mt][jd + 1], pa[mt], b[2], b[3]);
                    }
                }
            }
        }
    }
    cp_async_wait<0>(); /* nothing may be in flight at exit (n_tiles == 0: Q's copy) */

#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float lr = l[mt][r];
            lr += __shfl_xor_sync(0xffffffffu, lr, 1);
            lr += __shfl_xor_sync(0xffffffffu, lr, 2);
            const int row = warp_row0 + mt * 16 + g + r * 8;
            if (row >= sq) continue;
            const float inv = lr > 0.0f ? 1.0f / lr : 0.0f;
            float *orow = out + (int64_t)row * qstride + (int64_t)h * D + 2 * t;
#pragma unroll
            for (int j = 0; j < D / 8; j++)
                *(float2 *)(orow + j * 8) =
                    make_float2(o[mt][j][2 * r] * inv, o[mt][j][2 * r + 1] * inv);
        }
}

/* ==================================================================== */
/* ---- CUDA kernels: flash4 (Hopper wgmma, sm_90a) ---- */
/* ==================================================================== */

/* flash4_kernel: the FlashAttention loop on Hopper's warpgroup MMA (PTX
 * wgmma.mma_async), head dim 128. A block is two warpgroups (256 threads),
 * 128 query rows (64 per warpgroup); keys in tiles of 64, double-buffered
 * by cp.async into the "no swizzle" canonical layouts wgmma reads through
 * matrix descriptors (8 x 16-byte core matrices, K-major):
 *   K tile   [64 keys][128 d]: core matrix (key/8, d/8) at ((key/8) * 16 +
 *            d/8) * 128 bytes; descriptor LBO (next 8 d) 128, SBO (next 8
 *            keys) 2048;
 *   V^T tile [128 d][64 keys] from V^T in global memory (the op entry
 *            transposes V while converting it to bf16): core matrix (d/8,
 *            key/8) at ((d/8) * 8 + key/8) * 128; LBO 128, SBO 1024.
 * Per tile and warpgroup: S[64 x 64] = Q K^T by 8 wgmma m64n64k16 with Q
 * in registers (A fragments loaded once), the online softmax of flash3 on
 * the S accumulators (wgmma's accumulator layout is mma.sync's C layout per
 * 8 columns), then O[64 x 128] += P V by 4 wgmma m64n128k16 with P as the
 * A operand straight from registers. Both are waited for before the
 * registers are touched (warpgroup_fence_operand-style empty asm pins the
 * compiler's ordering). cp.async writes are made visible to the async proxy
 * (fence.proxy.async) before the barrier that publishes a tile. */
#define F4_D 128
#define F4_BK 64
#define F4_BQ 128
#define F4_TILE_BYTES (F4_BK * F4_D * 2) /* one K or V^T tile */

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* D[64 x 64] (+)= A[64 x 16] (registers) . B[16 x 64] (shared, descriptor) */
__device__ __forceinline__ void wgmma_m64n64k16(float d[32], const uint32_t a[4], uint64_t desc_b,
                                               int accumulate) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1, 0;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate));
}

/* D[64 x 128] (+)= A[64 x 16] (registers) . B[16 x 128] (shared, descriptor) */
__device__ __forceinline__ void wgmma_m64n128k16(float d[64], const uint32_t a[4], uint64_t desc_b,
                                               int accumulate) {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "setp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
        "{%64, %65, %66, %67}, %68, p, 1, 1, 0;\n"
        "}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate));
}


__device__ __forceinline__ void wgmma_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_wait0() {
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
/* Pins the compiler's ordering of register reads/writes around wgmma. */
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N>
__device__ __forceinline__ void fence_regs_u(uint32_t (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+r"(r[i])::"memory");
}

/* Shared-memory matrix descriptor, no swizzle (PTX ISA "Matrix Descriptor
 * Format": start address, LBO, SBO, each encoded as (x & 0x3FFFF) >> 4). */
__device__ __forceinline__ uint64_t gmma_desc(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((saddr & 0x3FFFF) >> 4) | (uint64_t)((lbo & 0x3FFFF) >> 4) << 16 |
           (uint64_t)((sbo & 0x3FFFF) >> 4) << 32;
}

/* One tile of K (64 keys x 128 d from kb) and V^T (128 d x 64 keys from vt)
 * into the canonical layouts; keys >= skv of K are zero-filled (V^T is
 * zero-padded to skv_pad in global memory). */
__device__ __forceinline__ void f4_load_tile(unsigned char *ks, unsigned char *vs,
                                             const __nv_bfloat16 *kb, const __nv_bfloat16 *vt,
                                             int k0, int skv, int skv_pad, int64_t kstride,
                                             int hk) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int c = threadIdx.x + 256 * i, key = c >> 4, dc = c & 15;
        const bool ok = k0 + key < skv;
        const __nv_bfloat16 *src = kb + (ok ? (int64_t)(k0 + key) * kstride : 0) +
                                   (int64_t)hk * F4_D + dc * 8;
        uint32_t dst = (uint32_t)__cvta_generic_to_shared(ks + ((key >> 3) * 16 + dc) * 128 +
                                                          (key & 7) * 16);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                     "r"(ok ? 16 : 0));
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int c = threadIdx.x + 256 * i, d = c >> 3, kc = c & 7;
        const __nv_bfloat16 *src = vt + ((int64_t)hk * F4_D + d) * skv_pad + k0 + kc * 8;
        uint32_t dst = (uint32_t)__cvta_generic_to_shared(vs + ((d >> 3) * 8 + kc) * 128 +
                                                          (d & 7) * 16);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
    }
    asm volatile("cp.async.commit_group;\n" ::);
}
#endif

__global__ void __launch_bounds__(256, 1)
flash4_kernel(float *out, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
              const __nv_bfloat16 *vt, int sq, int skv, int skv_pad, int hq, int hkv,
              float scale_log2, const float *key_valid, int causal) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(128) unsigned char f4_smem[];
    unsigned char *Kbuf = f4_smem;                     /* [2][F4_TILE_BYTES] */
    unsigned char *Vbuf = f4_smem + 2 * F4_TILE_BYTES; /* [2][F4_TILE_BYTES] */

    const int h = blockIdx.y, hk = h / (hq / hkv);
    const int q0 = blockIdx.x * F4_BQ;
    const int wg = threadIdx.x >> 7, wq = (threadIdx.x >> 5) & 3;
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int64_t qstride = (int64_t)hq * F4_D, kstride = (int64_t)hkv * F4_D;
    const int shift = skv - sq;
    int kv_end = skv;
    if (causal) kv_end = max(0, min(skv, q0 + F4_BQ + shift));
    const int n_tiles = (kv_end + F4_BK - 1) / F4_BK;
    const int row0 = q0 + wg * 64 + wq * 16 + g; /* this thread's rows: row0, row0 + 8 */
    const int warp_row0 = q0 + wg * 64 + wq * 16;

    if (n_tiles > 0) f4_load_tile(Kbuf, Vbuf, k, vt, 0, skv, skv_pad, kstride, hk);

    /* Q A fragments (rows row0 / row0 + 8), loaded once from global memory */
    uint32_t qf[F4_D / 16][4];
    {
        const uint32_t *qr0 = (const uint32_t *)(q + (int64_t)row0 * qstride + (int64_t)h * F4_D);
        const uint32_t *qr1 = (const uint32_t *)(q + (int64_t)(row0 + 8) * qstride +
                                                 (int64_t)h * F4_D);
        const bool ok0 = row0 < sq, ok1 = row0 + 8 < sq;
#pragma unroll
        for (int kk = 0; kk < F4_D / 16; kk++) {
            qf[kk][0] = ok0 ? qr0[kk * 8 + t] : 0u;
            qf[kk][1] = ok1 ? qr1[kk * 8 + t] : 0u;
            qf[kk][2] = ok0 ? qr0[kk * 8 + 4 + t] : 0u;
            qf[kk][3] = ok1 ? qr1[kk * 8 + 4 + t] : 0u;
        }
    }

    float o[F4_D / 2], s[F4_BK / 2];
#pragma unroll
    for (int i = 0; i < F4_D / 2; i++) o[i] = 0.0f;
#pragma unroll
    for (int i = 0; i < F4_BK / 2; i++) s[i] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    const uint32_t kbase = (uint32_t)__cvta_generic_to_shared(Kbuf);
    const uint32_t vbase = (uint32_t)__cvta_generic_to_shared(Vbuf);

    for (int it = 0; it < n_tiles; it++) {
        const int k0 = it * F4_BK;
        const bool excl = __any_sync(0xffffffffu, !key_ok(key_valid, k0 + lane, skv) ||
                                                      !key_ok(key_valid, k0 + 32 + lane, skv));
        asm volatile("cp.async.wait_group 0;\n" ::);
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        __syncthreads(); /* tile it visible to wgmma; tile it-1's buffers are free */
        if (it + 1 < n_tiles)
            f4_load_tile(Kbuf + ((it + 1) & 1) * F4_TILE_BYTES,
                         Vbuf + ((it + 1) & 1) * F4_TILE_BYTES, k, vt, k0 + F4_BK, skv, skv_pad,
                         kstride, hk);
        const uint32_t ks = kbase + (it & 1) * F4_TILE_BYTES, vs = vbase + (it & 1) * F4_TILE_BYTES;

        /* S = Q K^T */
        fence_regs(s);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < F4_D / 16; kk++)
            wgmma_m64n64k16(s, qf[kk], gmma_desc(ks + kk * 256, 128, 2048), kk > 0);
        wgmma_commit();
        wgmma_wait0();
        fence_regs(s);

        /* masking where needed; s[4j + e]: row row0 + (e >> 1) * 8, key 8j + 2t + (e & 1) */
        const bool diag = causal && k0 + F4_BK - 1 > warp_row0 + shift;
        if (excl || diag) {
            const uint64_t bits =
                (uint64_t)__ballot_sync(0xffffffffu, key_ok(key_valid, k0 + 32 + lane, skv)) << 32 |
                __ballot_sync(0xffffffffu, key_ok(key_valid, k0 + lane, skv));
#pragma unroll
            for (int j = 0; j < F4_BK / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int col = j * 8 + 2 * t + (e & 1);
                    bool vis = (bits >> col) & 1;
                    if (causal && k0 + col > row0 + (e >> 1) * 8 + shift) vis = false;
                    if (!vis) s[4 * j + e] = -INFINITY;
                }
        }
        /* online softmax (as flash3): rescale O only when a row maximum grew */
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float mx = m[r];
#pragma unroll
            for (int j = 0; j < F4_BK / 8; j++)
                mx = fmaxf(mx, fmaxf(s[4 * j + 2 * r], s[4 * j + 2 * r + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float ref = mx == -INFINITY ? 0.0f : mx;
            if (__any_sync(0xffffffffu, mx > m[r])) {
                const float alpha = ex2_approx((m[r] - ref) * scale_log2);
                l[r] *= alpha;
#pragma unroll
                for (int j = 0; j < F4_D / 8; j++) {
                    o[4 * j + 2 * r] *= alpha;
                    o[4 * j + 2 * r + 1] *= alpha;
                }
            }
            m[r] = mx;
            const float nref = -ref * scale_log2;
            float sum = 0.0f;
#pragma unroll
            for (int j = 0; j < F4_BK / 8; j++) {
                const float p0 = ex2_approx(fmaf(s[4 * j + 2 * r], scale_log2, nref));
                const float p1 = ex2_approx(fmaf(s[4 * j + 2 * r + 1], scale_log2, nref));
                s[4 * j + 2 * r] = p0;
                s[4 * j + 2 * r + 1] = p1;
                sum += p0 + p1;
            }
            l[r] += sum;
        }

        /* O += P V: P as the register A operand, 16 keys per wgmma */
        uint32_t pa[F4_BK / 16][4];
#pragma unroll
        for (int kk = 0; kk < F4_BK / 16; kk++) {
            pa[kk][0] = pack_bf16(s[8 * kk + 0], s[8 * kk + 1]);
            pa[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
            pa[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
            pa[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
            fence_regs_u(pa[kk]);
        }
        fence_regs(o);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < F4_BK / 16; kk++)
            wgmma_m64n128k16(o, pa[kk], gmma_desc(vs + kk * 256, 128, 1024), 1);
        wgmma_commit();
        wgmma_wait0();
        fence_regs(o);
    }
    asm volatile("cp.async.wait_group 0;\n" ::);

#pragma unroll
    for (int r = 0; r < 2; r++) {
        float lr = l[r];
        lr += __shfl_xor_sync(0xffffffffu, lr, 1);
        lr += __shfl_xor_sync(0xffffffffu, lr, 2);
        const int row = row0 + r * 8;
        if (row >= sq) continue;
        const float inv = lr > 0.0f ? 1.0f / lr : 0.0f;
        float *orow = out + (int64_t)row * qstride + (int64_t)h * F4_D + 2 * t;
#pragma unroll
        for (int j = 0; j < F4_D / 8; j++)
            *(float2 *)(orow + j * 8) = make_float2(o[4 * j + 2 * r] * inv, o[4 * j + 2 * r + 1] * inv);
    }
#endif
}

/* vt[hk][d][j] = bf16(v[j, hk, d]) for j < skv, 0 for skv <= j < skv_pad: a
 * 32 x 32 tile transpose through shared memory (coalesced both ways). */
__global__ void v_transpose_bf16_kernel(__nv_bfloat16 *vt, const float *v, int skv, int skv_pad,
                                        int hkv, int d) {
    __shared__ float tile[32][33];
    const int j0 = blockIdx.x * 32, d0 = blockIdx.y * 32, hk = blockIdx.z;
    for (int i = threadIdx.y; i < 32; i += 8) {
        const int j = j0 + i;
        tile[i][threadIdx.x] = j < skv ? v[((int64_t)j * hkv + hk) * d + d0 + threadIdx.x] : 0.0f;
    }
    __syncthreads();
    for (int i = threadIdx.y; i < 32; i += 8)
        vt[((int64_t)hk * d + d0 + i) * skv_pad + j0 + threadIdx.x] =
            __float2bfloat16_rn(tile[threadIdx.x][i]);
}

/* ==================================================================== */
/* ---- CUDA kernels: GEMM path softmax ---- */
/* ==================================================================== */

/* One block per query row of the chunk: s [n_rows, skv] f32 (already
 * scaled) -> p [n_rows, skv] bf16, masked, normalised; fully masked rows
 * become zeros. q_first is the absolute index of row 0. */
__global__ void softmax_rows_kernel(__nv_bfloat16 *p, const float *s, int64_t skv,
                                    const float *key_valid, int causal, int64_t q_first,
                                    int64_t shift) {
    __shared__ float red[32];
    const int64_t row = blockIdx.x;
    const float *sr = s + row * skv;
    __nv_bfloat16 *pr = p + row * skv;
    int64_t lim = causal ? row + q_first + shift : skv - 1; /* last visible key */
    if (lim > skv - 1) lim = skv - 1;
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;

    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j <= lim; j += blockDim.x)
        if (!key_valid || key_valid[j] != 0.0f) mx = fmaxf(mx, sr[j]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if (lane == 0) red[wid] = mx;
    __syncthreads();
    mx = -INFINITY;
    for (int w = 0; w < nw; w++) mx = fmaxf(mx, red[w]);
    __syncthreads();

    float sum = 0.0f;
    if (mx != -INFINITY)
        for (int64_t j = threadIdx.x; j <= lim; j += blockDim.x)
            if (!key_valid || key_valid[j] != 0.0f) sum += expf(sr[j] - mx);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) red[wid] = sum;
    __syncthreads();
    sum = 0.0f;
    for (int w = 0; w < nw; w++) sum += red[w];
    float inv = sum > 0.0f ? 1.0f / sum : 0.0f;

    for (int64_t j = threadIdx.x; j < skv; j += blockDim.x) {
        bool vis = j <= lim && (!key_valid || key_valid[j] != 0.0f) && mx != -INFINITY;
        pr[j] = __float2bfloat16_rn(vis ? expf(sr[j] - mx) * inv : 0.0f);
    }
}

/* ==================================================================== */
/* ---- kernel launchers ---- */
/* ==================================================================== */

template <int D, int NW, int MINB, bool KLDM>
static cudaError_t launch_flash(float *out, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                                const __nv_bfloat16 *v, int64_t sq, int64_t skv, int64_t hq,
                                int64_t hkv, float scale, const float *key_valid, bool causal,
                                cudaStream_t stream) {
    constexpr int BQ = NW * 16;
    size_t smem = (size_t)(BQ + 4 * FA_BK) * (D + FA_PAD) * 2 + FA_BK * sizeof(float);
    /* Above 48 KB a block needs the opt-in (per device, so set at each launch). */
    cudaError_t e = cudaFuncSetAttribute(flash_attn_kernel<D, NW, MINB, KLDM>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((sq + BQ - 1) / BQ), (unsigned)hq);
    const float log2e = 1.4426950408889634f;
    flash_attn_kernel<D, NW, MINB, KLDM><<<grid, NW * 32, smem, stream>>>(
        out, q, k, v, (int)sq, (int)skv, (int)hq, (int)hkv, scale * log2e, key_valid,
        causal ? 1 : 0);
    return cudaGetLastError();
}

template <int D, int NW, int MT, int BK = 32>
static cudaError_t launch_flash2(float *out, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                                 const __nv_bfloat16 *v, int64_t sq, int64_t skv, int64_t hq,
                                 int64_t hkv, float scale, const float *key_valid, bool causal,
                                 cudaStream_t stream) {
    constexpr int BQ = NW * 16 * MT;
    size_t smem = (size_t)(BQ + 4 * BK) * (D + FA_PAD) * 2 + BK * sizeof(float);
    cudaError_t e = cudaFuncSetAttribute(flash2_kernel<D, NW, MT, BK>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((sq + BQ - 1) / BQ), (unsigned)hq);
    const float log2e = 1.4426950408889634f;
    flash2_kernel<D, NW, MT, BK><<<grid, NW * 32, smem, stream>>>(
        out, q, k, v, (int)sq, (int)skv, (int)hq, (int)hkv, scale * log2e, key_valid,
        causal ? 1 : 0);
    return cudaGetLastError();
}

template <int D, int NW, int SUB = 32>
static cudaError_t launch_flash3(float *out, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                                 const __nv_bfloat16 *v, int64_t sq, int64_t skv, int64_t hq,
                                 int64_t hkv, float scale, const float *key_valid, bool causal,
                                 cudaStream_t stream) {
    constexpr int BQ = NW * 32;
    size_t smem = (size_t)(BQ + 4 * 64) * (D + FA_PAD) * 2;
    cudaError_t e = cudaFuncSetAttribute(flash3_kernel<D, NW, SUB>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((sq + BQ - 1) / BQ), (unsigned)hq);
    const float log2e = 1.4426950408889634f;
    flash3_kernel<D, NW, SUB><<<grid, NW * 32, smem, stream>>>(out, q, k, v, (int)sq, (int)skv,
                                                         (int)hq, (int)hkv, scale * log2e,
                                                         key_valid, causal ? 1 : 0);
    return cudaGetLastError();
}

/* flash4 (variant 6): V arrives as V^T [hkv][128][skv_pad] bf16. */
static cudaError_t launch_flash4(float *out, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                                 const __nv_bfloat16 *vt, int64_t sq, int64_t skv,
                                 int64_t skv_pad, int64_t hq, int64_t hkv, float scale,
                                 const float *key_valid, bool causal, cudaStream_t stream) {
    const size_t smem = 4 * (size_t)F4_TILE_BYTES;
    cudaError_t e = cudaFuncSetAttribute(flash4_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)smem);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((sq + F4_BQ - 1) / F4_BQ), (unsigned)hq);
    const float log2e = 1.4426950408889634f;
    flash4_kernel<<<grid, 256, smem, stream>>>(out, q, k, vt, (int)sq, (int)skv, (int)skv_pad,
                                               (int)hq, (int)hkv, scale * log2e, key_valid,
                                               causal ? 1 : 0);
    return cudaGetLastError();
}

extern "C" cudaError_t mold_cuda_flash_attention(float *out, const __nv_bfloat16 *q,
                                                 const __nv_bfloat16 *k,
                                                 const __nv_bfloat16 *v, int64_t sq,
                                                 int64_t skv, int64_t hq, int64_t hkv,
                                                 int64_t d, float scale, const float *key_valid,
                                                 bool causal, cudaStream_t stream) {
    if (sq <= 0) return cudaSuccess;
#define ARGS out, q, k, v, sq, skv, hq, hkv, scale, key_valid, causal, stream
    /* Variant 0 (default): flash3, 4 warps x 32 rows, 64-key tiles (needs a
     * positive scale: it takes row maxima of the unscaled scores; any other
     * scale goes to flash2). The others are kept for cuda_check's comparison:
     * 1 = first kernel (4 warps x 16 rows, Q in registers), 2 = flash2 with
     * 8 warps, 3 = flash2 with 16 rows per warp, 4 = flash2 (4 warps x 32
     * rows, 32-key tiles; the default before flash3), 5 = flash3, 8 warps;
     * 6 = flash4 (wgmma, head dim 128, sm_90a builds) is chosen in the op
     * entry, which prepares V^T for it; 7 = the Hopper kernel (flash_hopper.cu,
     * also the default where it applies; 9 = the same without the
     * warpgroup ping-pong) and 8 = flash3 forced are chosen
     * there too (8 reaches the default case below). */
    const bool pos = scale > 0.0f;
    switch (g_fa_variant) {
    case 1:
        switch (d) {
#define CASE(D) \
    case D: return launch_flash<D, 4, 2, true>(ARGS);
            CASE(16) CASE(32) CASE(48) CASE(64) CASE(80) CASE(96) CASE(112) CASE(128)
#undef CASE
        default: return cudaErrorInvalidValue;
        }
    case 2:
        if (d == 128) return launch_flash2<128, 8, 2>(ARGS);
        break;
    case 3:
        if (d == 128) return launch_flash2<128, 4, 1>(ARGS);
        break;
    case 5:
        if (d == 128 && pos) return launch_flash3<128, 8>(ARGS);
        break;
    default:
        break;
    }
    switch (g_fa_variant == 4 || !pos ? 0 : d) {
#define CASE(D) \
    case D: return launch_flash3<D, 4>(ARGS);
        CASE(16) CASE(32) CASE(48) CASE(64) CASE(80) CASE(96) CASE(112) CASE(128)
#undef CASE
    default: break;
    }
    switch (d) {
#define CASE(D) \
    case D: return launch_flash2<D, 4, 2>(ARGS);
        CASE(16) CASE(32) CASE(48) CASE(64) CASE(80) CASE(96) CASE(112) CASE(128)
#undef CASE
    default: return cudaErrorInvalidValue;
    }
#undef ARGS
}

/* ==================================================================== */
/* ---- op entry ---- */
/* ==================================================================== */

/* GEMM path: per head, per chunk of query rows (see the file header). */
static mold_status attention_gemm(cuda_backend *cb, float *out, const __nv_bfloat16 *qb,
                                  const __nv_bfloat16 *kb, const __nv_bfloat16 *vb, int64_t sq,
                                  int64_t skv, int64_t hq, int64_t hkv, int64_t d, float scale,
                                  const float *key_valid, bool causal, void *scr,
                                  size_t scr_bytes) {
    int64_t chunk = (int64_t)((scr_bytes - 512) / ((size_t)skv * 6)); /* 512: alignment slack */
    if (chunk > sq) chunk = sq;
    MOLD_ASSERT(chunk >= 1);
    float *s = (float *)scr;                                                  /* (chunk, skv) f32 */
    __nv_bfloat16 *p = (__nv_bfloat16 *)((char *)scr + cuda_align256((size_t)chunk * skv * 4)); /* (chunk, skv) bf16 */
    for (int64_t h = 0; h < hq; h++) {
        int64_t hk = h / (hq / hkv);
        for (int64_t q0 = 0; q0 < sq; q0 += chunk) {
            int64_t nq = sq - q0 < chunk ? sq - q0 : chunk;
            /* S^T (col-major skv x nq) = K_h (skv x d) * Q_h^T (d x nq) */
            MOLD_TRY(mold_cuda_gemm(cb, 1, skv, nq, d, scale, kb + hk * d, hkv * d,
                                    qb + q0 * hq * d + h * d, hq * d, CUDA_R_16BF, s, skv,
                                    NULL));
            softmax_rows_kernel<<<(unsigned)nq, 256, 0, cb->stream>>>(p, s, skv, key_valid,
                                                                       causal, q0, skv - sq);
            MOLD_CUDA_LAUNCH_CHECK(cb);
            /* O_h^T (col-major d x nq) = V_h^T (d x skv) * P^T (skv x nq) */
            MOLD_TRY(mold_cuda_gemm(cb, 0, d, nq, skv, 1.0f, vb + hk * d, hkv * d, p, skv,
                                    CUDA_R_16BF, out + q0 * hq * d + h * d, hq * d, NULL));
        }
    }
    return MOLD_OK;
}

#define ATTN_GEMM_SCRATCH ((size_t)512 << 20) /* scores + probabilities per chunk */

extern "C" mold_status mold_cuda_op_attention(mold_backend *be, float *out, const float *q,
                                              const float *k, const float *v, int64_t sq,
                                              int64_t skv, int64_t hq, int64_t hkv, int64_t d,
                                              float scale, const float *key_valid, bool causal) {
    cuda_backend *cb = cuda_of(be);
    if (sq < 0 || skv < 0 || hq <= 0 || hkv <= 0 || d <= 0 || hq % hkv != 0 ||
        sq > INT32_MAX || skv > INT32_MAX)
        return MOLD_ERR(MOLD_E_INVALID,
                        "attention: expected sq, skv >= 0 and hq %% hkv == 0, got sq %lld skv %lld "
                        "hq %lld hkv %lld d %lld",
                        (long long)sq, (long long)skv, (long long)hq, (long long)hkv,
                        (long long)d);
    if (sq == 0) return MOLD_OK;
    CUDA_OP(cb, "attention", sq, skv, hq, hkv, d, (int64_t)causal);
    if (skv == 0) { /* no keys: every row outputs zeros */
        MOLD_CUDA_CHECK(cb, cudaMemsetAsync(out, 0, (size_t)sq * hq * d * 4, cb->stream));
        return mold_cuda_op_done(cb);
    }
    mold_status wst; /* heads wider than 128 without a mask: attention_wide.cu */
    if (!g_force_gemm && mold_cuda_attention_wide(cb, out, q, k, v, sq, skv, hq, hkv, d, scale,
                                                  key_valid, causal, &wst)) return wst;
    bool flash = !g_force_gemm && d % 16 == 0 && d <= 128;
#if defined(MOLD_CUDA_SM90A)
    const bool f4 = flash && g_fa_variant == 6 && d == F4_D && scale > 0.0f;
    /* the default for the DiT's shape on Hopper; variant 7 asks for it too */
    const bool fh = flash && (g_fa_variant == 0 || g_fa_variant == 7 || g_fa_variant == 9) &&
                    d == FH_D && !causal &&
                    scale > 0.0f && mold_cuda_flash_hopper_available();
#else
    const bool f4 = false, fh = false; /* built without sm_90a: no wgmma */
#endif
    const int64_t skv_pad = (skv + F4_BK - 1) / F4_BK * F4_BK;
    size_t qb_bytes = cuda_align256((size_t)sq * hq * d * 2);
    size_t kb_bytes = cuda_align256((size_t)(f4 || fh ? skv_pad : skv) * hkv * d * 2);
    size_t extra = 0;
    if (!flash) {
        size_t need = (size_t)skv * 6 + 1024; /* at least one row of scores + probabilities */
        extra = need > ATTN_GEMM_SCRATCH ? need : ATTN_GEMM_SCRATCH;
        size_t all = (size_t)sq * skv * 6 + 1024; /* never more than the whole problem */
        if (all < extra) extra = all;
    }
    void *scr;
    MOLD_TRY(mold_cuda_scratch(cb, qb_bytes + 2 * kb_bytes + extra, &scr));
    __nv_bfloat16 *qb = (__nv_bfloat16 *)scr;                                   /* (sq, hq, d) */
    __nv_bfloat16 *kb = (__nv_bfloat16 *)((char *)scr + qb_bytes);              /* (skv, hkv, d) */
    __nv_bfloat16 *vb = (__nv_bfloat16 *)((char *)scr + qb_bytes + kb_bytes);   /* (skv, hkv, d) */
    MOLD_CUDA_CHECK(cb, mold_cuda_f32_to_bf16(qb, q, sq * hq * d, cb->stream));
    MOLD_CUDA_CHECK(cb, mold_cuda_f32_to_bf16(kb, k, skv * hkv * d, cb->stream));
    if (f4 || fh) { /* vb holds V^T [hkv][d][skv_pad] */
        dim3 tgrid((unsigned)(skv_pad / 32), (unsigned)(d / 32), (unsigned)hkv);
        v_transpose_bf16_kernel<<<tgrid, dim3(32, 8), 0, cb->stream>>>(vb, v, (int)skv,
                                                                       (int)skv_pad, (int)hkv,
                                                                       (int)d);
        MOLD_CUDA_LAUNCH_CHECK(cb);
        if (fh)
            MOLD_CUDA_CHECK(cb, mold_cuda_flash_hopper(out, qb, kb, vb, sq, skv, skv_pad, hq, hkv,
                                                       scale, key_valid, g_fa_variant != 9,
                                                       cb->stream));
        else
            MOLD_CUDA_CHECK(cb, launch_flash4(out, qb, kb, vb, sq, skv, skv_pad, hq, hkv, scale,
                                              key_valid, causal, cb->stream));
        return mold_cuda_op_done(cb);
    }
    MOLD_CUDA_CHECK(cb, mold_cuda_f32_to_bf16(vb, v, skv * hkv * d, cb->stream));
    if (flash) {
        MOLD_CUDA_CHECK(cb, mold_cuda_flash_attention(out, qb, kb, vb, sq, skv, hq, hkv, d, scale,
                                                      key_valid, causal, cb->stream));
    } else {
        MOLD_TRY(attention_gemm(cb, out, qb, kb, vb, sq, skv, hq, hkv, d, scale, key_valid,
                                causal, (char *)scr + qb_bytes + 2 * kb_bytes, extra));
    }
    return mold_cuda_op_done(cb);
}
