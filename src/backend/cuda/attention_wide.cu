/*
 * attention_wide.cu — key-chunked GEMM attention for wide heads (see
 * attention_wide.cuh).
 *
 * Why not the flash kernels: at d = 384 one warp's O accumulators (16 rows x
 * 384) alone would take 192 registers per thread. Why not attention.cu's
 * GEMM path (query chunks, whole score rows): its P V GEMM is d x chunk =
 * 384 x ~3000 outputs, a few dozen tiles for 132 SMs, and its softmax reads
 * each score three times. Here the keys are cut instead, FlashAttention's
 * online softmax one level up, per head:
 *
 *   for each chunk of kc keys:
 *     S = scale Q K_c^T            cuBLASLt, f32 [sq, kc] (row stride ldS)
 *     per row: m' = max(m, max S), e = exp(S - m'), alpha = exp(m - m'),
 *              l = l alpha + sum e, and e -> bf16 written over the row's
 *              first half (P: the row is in registers by then)
 *     O_c = P V_c                  cuBLASLt, f32 [sq, d] (into out for the
 *                                  first chunk)
 *     out = out alpha + O_c        (and / l after the last chunk)
 *
 * so both GEMMs have all sq rows (hundreds of tiles), each score is written
 * and read once in f32 and once in bf16, and the rescales touch only
 * sq x d values per chunk. P holds values in [0, 1] (exp of a non-positive
 * number), so its bf16 rounding is as relative as the normalised one's.
 *
 * Scratch: the bf16 q, k, v of attention.cu plus at most the score budget
 * its GEMM path would take for the same shape (WIDE_SCORE_BYTES, the same
 * formula), so src/engine/plan.c's attn_scratch holds unchanged. kc is the
 * largest multiple of 64 (<= WIDE_KC_MAX, the row length the softmax holds
 * in registers) that fits, then evened out over the chunks.
 */
#include "attention_wide.cuh"

#include <math.h>

#include "convert.cuh"
#include "matmul.cuh"

#define WIDE_SCORE_BYTES ((size_t)512 << 20) /* = attention.cu ATTN_GEMM_SCRATCH */
#define WIDE_NT 256                           /* softmax threads per row */
#define WIDE_KC_MAX (WIDE_NT * 4 * 8)         /* 8 float4 per thread: 8192 keys */

/* ==================================================================== */
/* ---- CUDA kernels ---- */
/* ==================================================================== */

__device__ __forceinline__ float wide_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float wide_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* One block of WIDE_NT threads per query row of one chunk: the row's kc
 * scores (row stride ld floats; columns kc .. ld-1 are not read as scores)
 * are loaded once into registers (VPT float4 per thread), the running
 * statistics m, l updated, alpha stored, and exp(s - m') written as bf16
 * over the start of the same row. first: the chunk is the head's first. */
template <int VPT>
__global__ void __launch_bounds__(WIDE_NT)
wide_softmax_kernel(float *S, int64_t ld, int kc, float *m, float *l, float *alpha, int first) {
    __shared__ float red[WIDE_NT / 32];
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    float *row = S + (int64_t)blockIdx.x * ld;
    float4 v[VPT];
    float mx = -INFINITY;
#pragma unroll
    for (int i = 0; i < VPT; i++) {
        const int j = (i * WIDE_NT + threadIdx.x) * 4;
        v[i] = j < ld ? *(const float4 *)(row + j) : make_float4(0.f, 0.f, 0.f, 0.f);
        if (j + 0 >= kc) v[i].x = -INFINITY;
        if (j + 1 >= kc) v[i].y = -INFINITY;
        if (j + 2 >= kc) v[i].z = -INFINITY;
        if (j + 3 >= kc) v[i].w = -INFINITY;
        mx = fmaxf(mx, fmaxf(fmaxf(v[i].x, v[i].y), fmaxf(v[i].z, v[i].w)));
    }
    mx = wide_warp_max(mx);
    if (lane == 0) red[wid] = mx;
    __syncthreads(); /* also: every thread has loaded its scores */
    mx = red[0];
#pragma unroll
    for (int w = 1; w < WIDE_NT / 32; w++) mx = fmaxf(mx, red[w]);
    const float m_old = first ? -INFINITY : m[blockIdx.x];
    const float m_new = fmaxf(m_old, mx);
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < VPT; i++) {
        v[i].x = __expf(v[i].x - m_new);
        v[i].y = __expf(v[i].y - m_new);
        v[i].z = __expf(v[i].z - m_new);
        v[i].w = __expf(v[i].w - m_new);
        sum += (v[i].x + v[i].y) + (v[i].z + v[i].w);
    }
    sum = wide_warp_sum(sum);
    __syncthreads(); /* red[] is about to be reused */
    if (lane == 0) red[wid] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = 0.0f;
        for (int w = 0; w < WIDE_NT / 32; w++) total += red[w];
        const float a = first ? 0.0f : __expf(m_old - m_new);
        l[blockIdx.x] = (first ? 0.0f : l[blockIdx.x] * a) + total;
        m[blockIdx.x] = m_new;
        alpha[blockIdx.x] = a;
    }
    /* P over the row's first half: 4 bf16 (8 bytes) per float4 of scores */
    __nv_bfloat16 *p = (__nv_bfloat16 *)row;
#pragma unroll
    for (int i = 0; i < VPT; i++) {
        const int j = (i * WIDE_NT + threadIdx.x) * 4;
        if (j >= ld) continue;
        __nv_bfloat162 lo = __floats2bfloat162_rn(v[i].x, v[i].y);
        __nv_bfloat162 hi = __floats2bfloat162_rn(v[i].z, v[i].w);
        uint2 pk;
        pk.x = *(uint32_t *)&lo;
        pk.y = *(uint32_t *)&hi;
        *(uint2 *)(p + j) = pk;
    }
}

/* out[i, :] = out[i, :] * alpha[i] + oc[i, :] (oc NULL: + 0), then / l[i]
 * when last; out rows have stride ldo, oc rows d. */
__global__ void wide_combine_kernel(float *out, int64_t ldo, const float *oc, const float *alpha,
                                    const float *l, int64_t sq, int64_t d, int last) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < sq * d;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = t / d, c = t - i * d;
        float o = out[i * ldo + c];
        if (oc) o = o * alpha[i] + oc[t];
        if (last) o /= l[i];
        out[i * ldo + c] = o;
    }
}

/* ==================================================================== */
/* ---- chunking ---- */
/* ==================================================================== */

typedef struct wide_geom {
    int64_t kc;      /* keys per chunk (the last may have fewer) */
    int64_t ld;      /* score row stride in floats (multiple of 64) */
    int64_t n_chunk; /* chunks over skv */
    size_t s_bytes, o_bytes, st_bytes; /* scores, O_c (0 with one chunk), one stat */
} wide_geom;

static int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

/* The chunking that fits `budget` bytes (attention.cu's score budget for
 * the shape), or false. */
static bool wide_plan(int64_t sq, int64_t skv, int64_t d, size_t budget, wide_geom *g) {
    g->st_bytes = cuda_align256((size_t)sq * 4);
    const size_t stats = 3 * g->st_bytes;
    g->ld = round_up(skv, 64);
    g->s_bytes = cuda_align256((size_t)(sq * g->ld) * 4);
    if (skv <= WIDE_KC_MAX && g->s_bytes + stats <= budget) { /* one chunk */
        g->kc = skv;
        g->n_chunk = 1;
        g->o_bytes = 0;
        return true;
    }
    g->o_bytes = cuda_align256((size_t)(sq * d) * 4);
    if (g->o_bytes + stats + 256 >= budget) return false;
    int64_t kmax = (int64_t)((budget - g->o_bytes - stats - 256) / ((size_t)sq * 4)) / 64 * 64;
    if (kmax > WIDE_KC_MAX) kmax = WIDE_KC_MAX;
    if (kmax < 64) return false;
    g->n_chunk = (skv + kmax - 1) / kmax;
    g->kc = round_up((skv + g->n_chunk - 1) / g->n_chunk, 8); /* <= kmax: kmax % 64 == 0 */
    g->n_chunk = (skv + g->kc - 1) / g->kc;
    g->ld = round_up(g->kc, 64);
    g->s_bytes = cuda_align256((size_t)(sq * g->ld) * 4);
    return true;
}

/* ==================================================================== */
/* ---- launchers ---- */
/* ==================================================================== */

static cudaError_t launch_softmax(float *S, int64_t ld, int64_t kc, float *m, float *l,
                                  float *alpha, int first, int64_t sq, cudaStream_t stream) {
    const int64_t per4 = (ld + 4 * WIDE_NT - 1) / (4 * WIDE_NT); /* float4 per thread */
    const unsigned grid = (unsigned)sq;
#define WIDE_SM(V) \
    wide_softmax_kernel<V><<<grid, WIDE_NT, 0, stream>>>(S, ld, (int)kc, m, l, alpha, first)
    if (per4 <= 1) WIDE_SM(1);
    else if (per4 <= 2) WIDE_SM(2);
    else if (per4 <= 4) WIDE_SM(4);
    else WIDE_SM(8);
#undef WIDE_SM
    return cudaGetLastError();
}

static cudaError_t launch_combine(float *out, int64_t ldo, const float *oc, const float *alpha,
                                  const float *l, int64_t sq, int64_t d, int last,
                                  cudaStream_t stream) {
    wide_combine_kernel<<<cuda_blocks(sq * d, 256), 256, 0, stream>>>(out, ldo, oc, alpha, l, sq,
                                                                      d, last);
    return cudaGetLastError();
}

/* ==================================================================== */
/* ---- entry ---- */
/* ==================================================================== */

/* One head: the chunk loop of the file header. */
static mold_status wide_head(cuda_backend *cb, float *out, const __nv_bfloat16 *qb,
                             const __nv_bfloat16 *kb, const __nv_bfloat16 *vb, int64_t sq,
                             int64_t skv, int64_t hq, int64_t hkv, int64_t d, float scale,
                             int64_t h, const wide_geom *g, float *S, float *oc, float *m,
                             float *l, float *alpha) {
    const int64_t hk = h / (hq / hkv);
    float *o_h = out + h * d;
    for (int64_t c = 0; c < g->n_chunk; c++) {
        const int64_t k0 = c * g->kc, kc = skv - k0 < g->kc ? skv - k0 : g->kc;
        const __nv_bfloat16 *kc_b = kb + (k0 * hkv + hk) * d, *vc_b = vb + (k0 * hkv + hk) * d;
        /* S^T (col-major kc x sq, ld) = K_c (kc x d) . Q_h^T (d x sq) */
        MOLD_TRY(mold_cuda_gemm(cb, 1, kc, sq, d, scale, kc_b, hkv * d, qb + h * d, hq * d,
                                CUDA_R_16BF, S, g->ld, NULL));
        MOLD_CUDA_CHECK(cb, launch_softmax(S, g->ld, kc, m, l, alpha, c == 0, sq, cb->stream));
        /* O_c^T (col-major d x sq) = V_c^T (d x kc) . P^T (kc x sq, bf16 stride 2 ld) */
        const bool direct = c == 0;
        MOLD_TRY(mold_cuda_gemm(cb, 0, d, sq, kc, 1.0f, vc_b, hkv * d, S, 2 * g->ld,
                                CUDA_R_16BF, direct ? o_h : oc, direct ? hq * d : d, NULL));
        const bool last = c == g->n_chunk - 1;
        if (!direct || last)
            MOLD_CUDA_CHECK(cb, launch_combine(o_h, hq * d, direct ? NULL : oc, alpha, l, sq, d,
                                               last, cb->stream));
    }
    return MOLD_OK;
}

static mold_status wide_run(cuda_backend *cb, float *out, const float *q, const float *k,
                            const float *v, int64_t sq, int64_t skv, int64_t hq, int64_t hkv,
                            int64_t d, float scale, const wide_geom *g) {
    const size_t qb_bytes = cuda_align256((size_t)(sq * hq * d) * 2);
    const size_t kb_bytes = cuda_align256((size_t)(skv * hkv * d) * 2);
    void *scr;
    MOLD_TRY(mold_cuda_scratch(cb, qb_bytes + 2 * kb_bytes + g->s_bytes + g->o_bytes +
                                       3 * g->st_bytes, &scr));
    char *at = (char *)scr;
    __nv_bfloat16 *qb = (__nv_bfloat16 *)at, *kb = (__nv_bfloat16 *)(at + qb_bytes);
    __nv_bfloat16 *vb = (__nv_bfloat16 *)(at + qb_bytes + kb_bytes);
    at += qb_bytes + 2 * kb_bytes;
    float *S = (float *)at, *oc = g->o_bytes ? (float *)(at + g->s_bytes) : NULL;
    at += g->s_bytes + g->o_bytes;
    float *m = (float *)at, *l = (float *)(at + g->st_bytes), *alpha = (float *)(at + 2 * g->st_bytes);
    MOLD_CUDA_CHECK(cb, mold_cuda_f32_to_bf16(qb, q, sq * hq * d, cb->stream));
    MOLD_CUDA_CHECK(cb, mold_cuda_f32_to_bf16(kb, k, skv * hkv * d, cb->stream));
    MOLD_CUDA_CHECK(cb, mold_cuda_f32_to_bf16(vb, v, skv * hkv * d, cb->stream));
    for (int64_t h = 0; h < hq; h++)
        MOLD_TRY(wide_head(cb, out, qb, kb, vb, sq, skv, hq, hkv, d, scale, h, g, S, oc, m, l,
                           alpha));
    return mold_cuda_op_done(cb);
}

extern "C" bool mold_cuda_attention_wide(cuda_backend *cb, float *out, const float *q,
                                         const float *k, const float *v, int64_t sq, int64_t skv,
                                         int64_t hq, int64_t hkv, int64_t d, float scale,
                                         const float *key_valid, bool causal, mold_status *st) {
    if (d <= 128 || d % 16 != 0 || key_valid || causal || sq < 1 || skv < 1) return false;
    /* attention.cu's GEMM-path score budget for this shape (plan.c mirrors it) */
    size_t budget = (size_t)skv * 6 + 1024;
    if (budget < WIDE_SCORE_BYTES) budget = WIDE_SCORE_BYTES;
    if ((size_t)sq * skv * 6 + 1024 < budget) budget = (size_t)sq * skv * 6 + 1024;
    wide_geom g;
    if (!wide_plan(sq, skv, d, budget, &g)) return false;
    *st = wide_run(cb, out, q, k, v, sq, skv, hq, hkv, d, scale, &g);
    return true;
}
