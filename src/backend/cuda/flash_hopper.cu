/*
 * flash_hopper.cu — FlashAttention forward on Hopper (see flash_hopper.cuh).
 *
 * Why a third design: the mma.sync kernels (attention.cu) top out near 240
 * TFLOP/s on the H100 because every m16n8k16 pulls its B fragments through
 * registers from shared memory, and flash4's first wgmma version (2.8 ms)
 * waited for each GEMM before starting the softmax, so tensor cores and
 * the special-function units never worked at the same time. This kernel
 * follows FA3's structure:
 *
 *   block    = 2 consumer warpgroups x 64 query rows (BQ = 128) of one head;
 *   tiles    = 128 keys; K in 2 stages, V^T in 3 stages, Q once, each loaded
 *              by the tensor memory accelerator (TMA) straight into the
 *              128-byte-swizzled layout wgmma reads, completion signalled on
 *              mbarriers ("full"), reuse signalled back by the consumers'
 *              warps ("empty"); a third warpgroup only issues the copies
 *              (one thread; setmaxnreg hands its registers to the
 *              consumers), so a wait for a free stage never stalls GEMMs;
 *   per tile j (after a prologue that computes S_0 and P_0):
 *              issue S_j = Q K_j^T            (wgmma, A and B from smem)
 *              issue O  += P_{j-1} V_{j-1}   (wgmma, P from registers)
 *              wait for S_j only, release K_j, masked online softmax of S_j
 *              in f32 (runs while P V is still on the tensor cores),
 *              wait for P V, release V_{j-1}, rescale O, P_j = bf16(exp).
 *
 * Shared memory (offsets from a 1024-aligned base; every TMA box is 64
 * bf16 = 128 bytes wide, the swizzle span):
 *   Q      32 KB: d-halves [2][128 rows][64]
 *   K      2 x 32 KB: per stage d-halves [2][128 keys][64]
 *   V^T    3 x 32 KB: per stage key-halves [2][128 d][64 keys]
 *   mbarriers after them.
 * wgmma descriptors: K-major, 128B swizzle, 8-row groups 1024 bytes apart
 * (SBO); a 16-wide k step inside a 64-wide box advances the start address by
 * 32 bytes (the hardware applies the swizzle to the final address).
 *
 * Accumulator layout (m64nNk16, per warp w of the warpgroup, g = lane / 4,
 * t = lane % 4): c[4j + e] is row 16w + g + 8 (e >> 1), column 8j + 2t +
 * (e & 1) — mma.sync's C layout per 8 columns, so two neighbouring 8-column
 * groups of P are exactly one A fragment of the next wgmma.
 */
#include "flash_hopper.cuh"

#include <cuda.h> /* CUtensorMap (the encoder is fetched from the driver at run time) */
#include <math.h>

#include "device_util.cuh"

#define FH_BQ 128
#define FH_BK 128
#define FH_KST 2 /* K stages */
#define FH_VST 3 /* V^T stages */
#define FH_HALF_BYTES (128 * 64 * 2)   /* one TMA box: 128 rows x 64 bf16 */
#define FH_TILE_BYTES (2 * FH_HALF_BYTES)
#define FH_Q_OFF 0
#define FH_K_OFF (FH_Q_OFF + FH_TILE_BYTES)
#define FH_V_OFF (FH_K_OFF + FH_KST * FH_TILE_BYTES)
#define FH_BAR_OFF (FH_V_OFF + FH_VST * FH_TILE_BYTES)
#define FH_N_BARS (1 + 2 * FH_KST + 2 * FH_VST)
#define FH_SMEM_BYTES (FH_BAR_OFF + FH_N_BARS * 8 + 1024) /* + alignment slack */
#define FH_CONSUMER_WARPS 8
#define FH_THREADS 384 /* two consumer warpgroups + a producer warpgroup */

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* ---- mbarrier and TMA (PTX ISA 8.0) ---- */
__device__ __forceinline__ void fh_bar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
__device__ __forceinline__ void fh_bar_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar),
                 "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void fh_bar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void fh_bar_wait(uint32_t bar, uint32_t parity) {
    asm volatile(
        "{\n"
        ".reg .pred done;\n"
        "WAIT_%=:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra WAIT_%=;\n"
        "}\n" ::"r"(bar),
        "r"(parity)
        : "memory");
}
/* One 2-D box (x = inner coordinate in elements, y = row) into shared memory. */
__device__ __forceinline__ void fh_tma_load(uint32_t dst, const CUtensorMap *map, int x, int y,
                                            uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
        " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
        "l"((uint64_t)map), "r"(x), "r"(y), "r"(bar)
        : "memory");
}

/* ---- wgmma ---- */
/* K-major, 128-byte swizzle, 8-row groups 1024 bytes apart. */
__device__ __forceinline__ uint64_t fh_desc(uint32_t saddr) {
    return (uint64_t)((saddr & 0x3FFFF) >> 4) | (uint64_t)1 << 16 | (uint64_t)(1024 >> 4) << 32 |
           (uint64_t)1 << 62;
}
__device__ __forceinline__ void fh_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void fh_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void fh_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* Keeps the compiler from moving register reads/writes across wgmma issue/wait. */
__device__ __forceinline__ void fh_pin(float (&r)[64]) {
#pragma unroll
    for (int i = 0; i < 64; i++) asm volatile("" : "+f"(r[i])::"memory");
}
__device__ __forceinline__ void fh_pin_u(uint32_t (&r)[8][4]) {
#pragma unroll
    for (int i = 0; i < 8; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) asm volatile("" : "+r"(r[i][j])::"memory");
}

#define FH_D64                                                                                 \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
    "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, " \
    "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, " \
    "%56, %57, %58, %59, %60, %61, %62, %63}"
#define FH_OUT64(d)                                                                            \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),        \
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), \
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),          \
        "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]),          \
        "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),          \
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]),          \
        "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]),          \
        "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]),          \
        "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),          \
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]),          \
        "+f"(d[62]), "+f"(d[63])

/* D[64 x 128] (+)= A[64 x 16] (shared) . B[16 x 128] (shared) */
__device__ __forceinline__ void fh_mma_ss(float (&d)[64], uint64_t da, uint64_t db, int acc) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " FH_D64
        ", %64, %65, p, 1, 1, 0, 0;\n}\n"
        : FH_OUT64(d)
        : "l"(da), "l"(db), "r"(acc));
}
/* D[64 x 128] += A[64 x 16] (registers) . B[16 x 128] (shared) */
__device__ __forceinline__ void fh_mma_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " FH_D64
        ", {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
        : FH_OUT64(d)
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}

/* Issue the loads of key tile t (K into stage t % 2, V^T into stage t % 3),
 * after the consumers released what those stages held. */
__device__ __forceinline__ void fh_issue_tile(int t, uint32_t base, const CUtensorMap *mk,
                                              const CUtensorMap *mv, int hk) {
    const uint32_t bars = base + FH_BAR_OFF;
    const int ks = t % FH_KST, vs = t % FH_VST;
    const uint32_t kfull = bars + 8 * (1 + ks), kempty = bars + 8 * (1 + FH_KST + ks);
    const uint32_t vfull = bars + 8 * (1 + 2 * FH_KST + vs);
    const uint32_t vempty = bars + 8 * (1 + 2 * FH_KST + FH_VST + vs);
    if (t >= FH_KST) fh_bar_wait(kempty, (uint32_t)((t / FH_KST - 1) & 1));
    fh_bar_expect_tx(kfull, FH_TILE_BYTES);
    const uint32_t kdst = base + FH_K_OFF + ks * FH_TILE_BYTES;
    for (int h = 0; h < 2; h++)
        fh_tma_load(kdst + h * FH_HALF_BYTES, mk, hk * FH_D + 64 * h, t * FH_BK, kfull);
    if (t >= FH_VST) fh_bar_wait(vempty, (uint32_t)((t / FH_VST - 1) & 1));
    fh_bar_expect_tx(vfull, FH_TILE_BYTES);
    const uint32_t vdst = base + FH_V_OFF + vs * FH_TILE_BYTES;
    for (int h = 0; h < 2; h++)
        fh_tma_load(vdst + h * FH_HALF_BYTES, mv, t * FH_BK + 64 * h, hk * FH_D, vfull);
}

/* Scores of one tile for this warpgroup: S = Q K^T over d = 128 (8 k steps). */
__device__ __forceinline__ void fh_scores(float (&s)[64], uint32_t qbase, uint32_t kbase) {
    fh_pin(s);
    fh_fence();
#pragma unroll
    for (int kk = 0; kk < 8; kk++) {
        const uint32_t off = (kk >> 2) * FH_HALF_BYTES + (kk & 3) * 32;
        fh_mma_ss(s, fh_desc(qbase + off), fh_desc(kbase + off), kk > 0);
    }
    fh_commit();
}

/* O += P V over the 128 keys of one tile (8 k steps of 16 keys). */
__device__ __forceinline__ void fh_pv(float (&o)[64], uint32_t (&p)[8][4], uint32_t vbase) {
    fh_pin(o);
    fh_pin_u(p);
    fh_fence();
#pragma unroll
    for (int kk = 0; kk < 8; kk++)
        fh_mma_rs(o, p[kk], fh_desc(vbase + (kk >> 2) * FH_HALF_BYTES + (kk & 3) * 32));
    fh_commit();
}

/* Masks excluded keys of tile k0 to -inf (only called for tiles with one). */
__device__ __forceinline__ void fh_mask(float (&s)[64], const float *key_valid, int k0, int skv) {
    const int lane = threadIdx.x & 31, t = lane & 3;
    uint32_t bits[4];
#pragma unroll
    for (int w = 0; w < 4; w++)
        bits[w] = __ballot_sync(0xffffffffu, key_ok(key_valid, k0 + 32 * w + lane, skv));
#pragma unroll
    for (int j = 0; j < 16; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int col = 8 * j + 2 * t + (e & 1);
            if (!((bits[col >> 5] >> (col & 31)) & 1)) s[4 * j + e] = -INFINITY;
        }
}

/* Online softmax of one tile in place (s becomes exp2 values relative to the
 * new row maxima); returns per row the factor O and l must be scaled by. */
__device__ __forceinline__ void fh_softmax(float (&s)[64], float (&m)[2], float (&l)[2],
                                           float (&alpha)[2], float scale_log2) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float mx = m[r];
#pragma unroll
        for (int j = 0; j < 16; j++) mx = fmaxf(mx, fmaxf(s[4 * j + 2 * r], s[4 * j + 2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float ref = mx == -INFINITY ? 0.0f : mx;
        alpha[r] = mx > m[r] ? ex2_approx((m[r] - ref) * scale_log2) : 1.0f;
        m[r] = mx;
        const float nref = -ref * scale_log2;
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const float p0 = ex2_approx(fmaf(s[4 * j + 2 * r], scale_log2, nref));
            const float p1 = ex2_approx(fmaf(s[4 * j + 2 * r + 1], scale_log2, nref));
            s[4 * j + 2 * r] = p0;
            s[4 * j + 2 * r + 1] = p1;
            sum += p0 + p1;
        }
        l[r] = l[r] * alpha[r] + sum;
    }
}

__device__ __forceinline__ void fh_to_bf16(uint32_t (&p)[8][4], const float (&s)[64]) {
#pragma unroll
    for (int kk = 0; kk < 8; kk++) {
        p[kk][0] = pack_bf16(s[8 * kk + 0], s[8 * kk + 1]);
        p[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
        p[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
        p[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
    }
}

/* Ping-pong between the two warpgroups (FA3 section 3.1): a warpgroup issues
 * its GEMMs only in its turn and then hands the turn over, so one warpgroup's
 * softmax runs while the other's GEMMs occupy the tensor cores. Named
 * barriers 1 and 2 (0 is __syncthreads), 256 threads each: the 128 waiting
 * plus the 128 of the other warpgroup arriving. */
__device__ __forceinline__ void fh_turn_wait(int wg) {
    asm volatile("bar.sync %0, 256;\n" ::"r"(1 + wg) : "memory");
}
__device__ __forceinline__ void fh_turn_pass(int wg) {
    asm volatile("bar.arrive %0, 256;\n" ::"r"(2 - wg) : "memory");
}

/* true when tile k0 holds a key that must be masked (any thread's answer). */
__device__ __forceinline__ bool fh_tile_has_excluded(const float *key_valid, int k0, int skv) {
    if (k0 + FH_BK > skv) return true;
    if (!key_valid) return false;
    const int lane = threadIdx.x & 31;
    bool bad = false;
#pragma unroll
    for (int w = 0; w < 4; w++) bad |= __ldg(key_valid + k0 + 32 * w + lane) == 0.0f;
    return __any_sync(0xffffffffu, bad);
}
#endif

template <bool PINGPONG>
__global__ void __launch_bounds__(FH_THREADS, 1)
flash_hopper_kernel(const __grid_constant__ CUtensorMap map_q,
                    const __grid_constant__ CUtensorMap map_k,
                    const __grid_constant__ CUtensorMap map_v, float *out, int sq, int skv,
                    int hq, int hkv, float scale_log2, const float *key_valid) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ unsigned char fh_smem_raw[];
    const uint32_t raw = (uint32_t)__cvta_generic_to_shared(fh_smem_raw);
    const uint32_t base = (raw + 1023) & ~1023u;
    const uint32_t bars = base + FH_BAR_OFF;
    const uint32_t qfull = bars;
    const int h = blockIdx.y, hk = h / (hq / hkv), q0 = blockIdx.x * FH_BQ;
    const int wg = threadIdx.x >> 7, warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
    const int n_tiles = (skv + FH_BK - 1) / FH_BK;

    if (threadIdx.x == 0) {
        fh_bar_init(qfull, 1);
        for (int i = 0; i < FH_KST; i++) {
            fh_bar_init(bars + 8 * (1 + i), 1);
            fh_bar_init(bars + 8 * (1 + FH_KST + i), FH_CONSUMER_WARPS);
        }
        for (int i = 0; i < FH_VST; i++) {
            fh_bar_init(bars + 8 * (1 + 2 * FH_KST + i), 1);
            fh_bar_init(bars + 8 * (1 + 2 * FH_KST + FH_VST + i), FH_CONSUMER_WARPS);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    }
    __syncthreads();
    /* Registers: 384 threads get 168 each at launch; the producer warpgroup
     * gives most of its share to the consumers (40 + 2 x 232 per thread-
     * triple = 3 x 168), whose S, O and P take ~200. */
    if (wg == 2) { /* the producer: Q once, then every key tile as stages free up */
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
        if (threadIdx.x == 256) {
            fh_bar_expect_tx(qfull, FH_TILE_BYTES);
            for (int hh = 0; hh < 2; hh++)
                fh_tma_load(base + FH_Q_OFF + hh * FH_HALF_BYTES, &map_q, h * FH_D + 64 * hh, q0,
                            qfull);
            for (int t = 0; t < n_tiles; t++) fh_issue_tile(t, base, &map_k, &map_v, hk);
        }
        return;
    }
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");

    const uint32_t qbase = base + FH_Q_OFF + wg * 64 * 128; /* this warpgroup's 64 rows */
    float s[64], o[64];
    uint32_t p[8][4];
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, alpha[2];
#pragma unroll
    for (int i = 0; i < 64; i++) o[i] = 0.0f;

    /* prologue: S_0, P_0 */
    fh_bar_wait(qfull, 0);
    fh_bar_wait(bars + 8, 0);
    fh_scores(s, qbase, base + FH_K_OFF);
    fh_wait<0>();
    fh_pin(s);
    if (lane == 0) fh_bar_arrive(bars + 8 * (1 + FH_KST));
    if (fh_tile_has_excluded(key_valid, 0, skv)) fh_mask(s, key_valid, 0, skv);
    fh_softmax(s, m, l, alpha, scale_log2);
    fh_to_bf16(p, s);

    /* turns: warpgroup 0 goes first; each warpgroup waits n_tiles - 1 + 1
     * times and is passed the turn as often (the last pass of warpgroup 1 is
     * left out: warpgroup 0 has no turn after its epilogue) */
    if (PINGPONG && wg == 1) fh_turn_pass(wg);
    for (int t = 1; t < n_tiles; t++) {
        const int ks = t % FH_KST, vs = (t - 1) % FH_VST;
        fh_bar_wait(bars + 8 * (1 + ks), (uint32_t)((t / FH_KST) & 1));
        fh_bar_wait(bars + 8 * (1 + 2 * FH_KST + vs), (uint32_t)(((t - 1) / FH_VST) & 1));
        if (PINGPONG) fh_turn_wait(wg);
        fh_scores(s, qbase, base + FH_K_OFF + ks * FH_TILE_BYTES);
        fh_pv(o, p, base + FH_V_OFF + vs * FH_TILE_BYTES);
        if (PINGPONG) fh_turn_pass(wg);
        fh_wait<1>(); /* S_t done; P V may still run */
        fh_pin(s);
        if (lane == 0) fh_bar_arrive(bars + 8 * (1 + FH_KST + ks));
        if (fh_tile_has_excluded(key_valid, t * FH_BK, skv)) fh_mask(s, key_valid, t * FH_BK, skv);
        fh_softmax(s, m, l, alpha, scale_log2);
        fh_wait<0>();
        fh_pin(o);
        fh_pin_u(p);
        if (lane == 0) fh_bar_arrive(bars + 8 * (1 + 2 * FH_KST + FH_VST + vs));
#pragma unroll
        for (int j = 0; j < 16; j++) {
            o[4 * j + 0] *= alpha[0];
            o[4 * j + 1] *= alpha[0];
            o[4 * j + 2] *= alpha[1];
            o[4 * j + 3] *= alpha[1];
        }
        fh_to_bf16(p, s);
    }
    {
        const int t = n_tiles - 1, vs = t % FH_VST;
        fh_bar_wait(bars + 8 * (1 + 2 * FH_KST + vs), (uint32_t)((t / FH_VST) & 1));
        if (PINGPONG) fh_turn_wait(wg);
        fh_pv(o, p, base + FH_V_OFF + vs * FH_TILE_BYTES);
        if (PINGPONG && wg == 0) fh_turn_pass(wg);
        fh_wait<0>();
        fh_pin(o);
    }

    const int g = lane >> 2, tq = lane & 3;
    const int64_t qstride = (int64_t)hq * FH_D;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float lr = l[r];
        lr += __shfl_xor_sync(0xffffffffu, lr, 1);
        lr += __shfl_xor_sync(0xffffffffu, lr, 2);
        const int row = q0 + wg * 64 + warp * 16 + g + 8 * r;
        if (row >= sq) continue;
        const float inv = lr > 0.0f ? 1.0f / lr : 0.0f;
        float *orow = out + (int64_t)row * qstride + (int64_t)h * FH_D + 2 * tq;
#pragma unroll
        for (int j = 0; j < 16; j++)
            *(float2 *)(orow + 8 * j) =
                make_float2(o[4 * j + 2 * r] * inv, o[4 * j + 2 * r + 1] * inv);
    }
#endif
}

/* ==================================================================== */
/* ---- host side: tensor maps and launch ---- */
/* ==================================================================== */

typedef CUresult (*encode_tiled_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *,
                                    const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
                                    const cuuint32_t *, CUtensorMapInterleave,
                                    CUtensorMapSwizzle, CUtensorMapL2promotion,
                                    CUtensorMapFloatOOBfill);

static encode_tiled_fn encoder(void) {
    static encode_tiled_fn fn;
    static int tried;
    if (!tried) {
        tried = 1;
        void *p = NULL;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000,
                                             cudaEnableDefault, &q) == cudaSuccess &&
            q == cudaDriverEntryPointSuccess)
            fn = (encode_tiled_fn)p;
        cudaGetLastError();
    }
    return fn;
}

extern "C" bool mold_cuda_flash_hopper_available(void) {
#if defined(MOLD_CUDA_SM90A)
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    return major == 9 && minor == 0 && encoder() != NULL;
#else
    return false;
#endif
}

/* A 2-D bf16 tensor [rows][cols] with row pitch `pitch` elements, read in
 * boxes of 64 columns x 128 rows with the 128-byte swizzle. Reads past
 * cols / rows return zeros. */
static cudaError_t make_map(CUtensorMap *map, const void *ptr, int64_t cols, int64_t rows,
                            int64_t pitch) {
    encode_tiled_fn fn = encoder();
    if (!fn) return cudaErrorNotSupported;
    cuuint64_t dims[2] = {(cuuint64_t)cols, (cuuint64_t)rows};
    cuuint64_t strides[1] = {(cuuint64_t)pitch * 2};
    cuuint32_t box[2] = {64, 128}, estride[2] = {1, 1};
    CUresult r = fn(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, (void *)ptr, dims, strides, box,
                    estride, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                    CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

extern "C" cudaError_t mold_cuda_flash_hopper(float *out, const __nv_bfloat16 *q,
                                              const __nv_bfloat16 *k, const __nv_bfloat16 *vt,
                                              int64_t sq, int64_t skv, int64_t vt_pitch,
                                              int64_t hq, int64_t hkv, float scale,
                                              const float *key_valid, bool pingpong,
                                              cudaStream_t stream) {
    if (sq <= 0 || skv <= 0) return cudaErrorInvalidValue;
    CUtensorMap mq, mk, mv;
    cudaError_t e = make_map(&mq, q, hq * FH_D, sq, hq * FH_D);
    if (e == cudaSuccess) e = make_map(&mk, k, hkv * FH_D, skv, hkv * FH_D);
    if (e == cudaSuccess) e = make_map(&mv, vt, skv, hkv * FH_D, vt_pitch);
    if (e != cudaSuccess) return e;
    void (*kernel)(CUtensorMap, CUtensorMap, CUtensorMap, float *, int, int, int, int, float,
                   const float *) =
        pingpong ? flash_hopper_kernel<true> : flash_hopper_kernel<false>;
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, FH_SMEM_BYTES);
    if (e != cudaSuccess) return e;
    dim3 grid((unsigned)((sq + FH_BQ - 1) / FH_BQ), (unsigned)hq);
    const float log2e = 1.4426950408889634f;
    kernel<<<grid, FH_THREADS, FH_SMEM_BYTES, stream>>>(mq, mk, mv, out, (int)sq, (int)skv, (int)hq,
                                                 (int)hkv, scale * log2e, key_valid);
    return cudaGetLastError();
}
