/*
 * cpu_attention.c — rope and attention (blocked online softmax).
 *
 * attention: a task is one (query head, block of AT_BQ queries). It walks the
 * visible keys in blocks of AT_BK: S = scale * Q K^T (sgemm on the strided
 * head slices), masked entries -> excluded, running max/sum per row (f32),
 * O = O * exp(m_old - m_new) + P V (sgemm). Only one AT_BQ x AT_BK score tile
 * per task exists at a time (never S x S for all heads). A row that sees no
 * key at all (mask or causal offset) outputs zeros.
 *
 * Scratch per task: S tile AT_BQ x AT_BK, O accumulator AT_BQ x d, running
 * max and sum (2 x AT_BQ) floats — 32K floats for d = 128.
 *
 * rope: rotates pairs (2i, 2i+1) (interleaved, diffusers use_real=False) or
 * (i, i + d/2) (half, NeoX / Qwen2.5): (a, b) -> (a cos - b sin, a sin + b cos).
 */
#include <cblas.h> /* defines: cblas_sgemm */
#include <immintrin.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "cpu_internal.h"

enum { AT_BQ = 64, AT_BK = 256, ROPE_TOK = 16 };

/* ---- rope ---- */

typedef struct rope_ctx {
    float *x;
    const float *cos_t, *sin_t; /* [n_tok, head_dim / 2] */
    int64_t n_tok, n_head, head_dim;
    mold_rope_mode mode;
} rope_ctx;

static void rope_task(void *ud, int64_t task, float *scratch) {
    (void)scratch;
    const rope_ctx *c = ud;
    int64_t half = c->head_dim / 2;
    int64_t t1 = (task + 1) * ROPE_TOK < c->n_tok ? (task + 1) * ROPE_TOK : c->n_tok;
    /* element offsets of the pair members within a head */
    int64_t stride = c->mode == MOLD_ROPE_INTERLEAVED ? 2 : 1;
    int64_t second = c->mode == MOLD_ROPE_INTERLEAVED ? 1 : half;
    for (int64_t t = task * ROPE_TOK; t < t1; t++) {
        const float *cs = c->cos_t + t * half, *sn = c->sin_t + t * half;
        for (int64_t h = 0; h < c->n_head; h++) {
            float *x = c->x + (t * c->n_head + h) * c->head_dim;
            for (int64_t i = 0; i < half; i++) {
                float a = x[i * stride], b = x[i * stride + second];
                x[i * stride] = a * cs[i] - b * sn[i];
                x[i * stride + second] = a * sn[i] + b * cs[i];
            }
        }
    }
}

mold_status mold_cpu_rope(mold_backend *be, float *x, int64_t n_tok, int64_t n_head,
                          int64_t head_dim, const float *cos_t, const float *sin_t,
                          mold_rope_mode mode) {
    if (n_tok < 0 || n_head <= 0 || head_dim <= 0 || head_dim % 2 != 0)
        return MOLD_ERR(MOLD_E_INVALID,
                        "rope: expected n_tok >= 0, n_head > 0, even head_dim > 0, got %lld, %lld, %lld",
                        (long long)n_tok, (long long)n_head, (long long)head_dim);
    if (mode != MOLD_ROPE_INTERLEAVED && mode != MOLD_ROPE_HALF)
        return MOLD_ERR(MOLD_E_INVALID, "rope: expected mode 0 or 1, got %d", (int)mode);
    if (n_tok > 0 && (!x || !cos_t || !sin_t))
        return MOLD_ERR(MOLD_E_INVALID, "rope: NULL x or tables");
    rope_ctx c = { .x = x, .cos_t = cos_t, .sin_t = sin_t, .n_tok = n_tok, .n_head = n_head,
                   .head_dim = head_dim, .mode = mode };
    mold_cpu_parallel(cpu_of(be), cpu_n_chunks(n_tok, ROPE_TOK), rope_task, &c);
    return MOLD_OK;
}

/* ---- exp for softmax ---- */

/* exp(x) for x <= 0 (scores minus the running max), -inf -> exactly 0.
 * Cephes expf: n = round(x log2 e), r = x - n ln2 (two-part constant),
 * degree-5 polynomial, times 2^n. Max error ~2 ulp over [-87, 0]. The scalar
 * and AVX2 versions perform the same IEEE operations in the same order (no
 * FMA), so they give bit-identical results. */
#define EXP_LO (-87.0f)
#define EXP_C1 0.693359375f
#define EXP_C2 (-2.12194440e-4f)
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

static inline float exp_neg(float x) {
    if (x == -INFINITY)
        return 0.0f;
    float xc = x < EXP_LO ? EXP_LO : x;
    float n = nearbyintf(xc * 1.44269504088896341f);
    float r = (xc - n * EXP_C1) - n * EXP_C2;
    float p = ((((EXP_P0 * r + EXP_P1) * r + EXP_P2) * r + EXP_P3) * r + EXP_P4) * r + EXP_P5;
    float e = (p * (r * r) + r) + 1.0f;
    union { uint32_t u; float f; } two_n = { (uint32_t)((int32_t)n + 127) << 23 };
    return e * two_n.f;
}

__attribute__((target("avx2"))) static void exp_neg_avx2(float *s, int64_t n, float shift) {
    const __m256 lo = _mm256_set1_ps(EXP_LO), ninf = _mm256_set1_ps(-INFINITY);
    const __m256 sh = _mm256_set1_ps(shift);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 x = _mm256_sub_ps(_mm256_loadu_ps(s + j), sh);
        __m256 masked = _mm256_cmp_ps(x, ninf, _CMP_EQ_OQ);
        __m256 xc = _mm256_max_ps(x, lo); /* x < lo ? lo : x */
        __m256 nn = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256 r = _mm256_sub_ps(_mm256_sub_ps(xc, _mm256_mul_ps(nn, _mm256_set1_ps(EXP_C1))),
                                 _mm256_mul_ps(nn, _mm256_set1_ps(EXP_C2)));
        __m256 p = _mm256_set1_ps(EXP_P0);
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(EXP_P1));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(EXP_P2));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(EXP_P3));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(EXP_P4));
        p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(EXP_P5));
        __m256 e = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, _mm256_mul_ps(r, r)), r),
                                 _mm256_set1_ps(1.0f));
        __m256i bits = _mm256_slli_epi32(
            _mm256_add_epi32(_mm256_cvtps_epi32(nn), _mm256_set1_epi32(127)), 23);
        e = _mm256_mul_ps(e, _mm256_castsi256_ps(bits));
        _mm256_storeu_ps(s + j, _mm256_andnot_ps(masked, e));
    }
    for (; j < n; j++)
        s[j] = exp_neg(s[j] - shift);
}

void mold_cpu_exp_neg(float *s, int64_t n, float shift) {
    if (mold_cpu_use_avx2()) {
        exp_neg_avx2(s, n, shift);
        return;
    }
    for (int64_t j = 0; j < n; j++)
        s[j] = exp_neg(s[j] - shift);
}

/* Largest of s[0 .. n) (-inf when n == 0 or all are -inf). max is exact, so
 * the vector version returns the same value as the scalar loop. */
__attribute__((target("avx2"))) static float row_max_avx2(const float *s, int64_t n) {
    __m256 acc = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        acc = _mm256_max_ps(acc, _mm256_loadu_ps(s + j));
    float lanes[8], mx = -INFINITY;
    _mm256_storeu_ps(lanes, acc);
    for (int i = 0; i < 8; i++)
        mx = lanes[i] > mx ? lanes[i] : mx;
    for (; j < n; j++)
        mx = s[j] > mx ? s[j] : mx;
    return mx;
}

/* Sum of s[0 .. n) in a fixed order: 8 lane sums (lane = j mod 8) combined
 * pairwise. The scalar and AVX2 versions add the same numbers in the same
 * order, so they agree bit for bit; a plain running sum would be a 4-cycle
 * dependency chain per element. */
static float lanes_total(const float *acc) {
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

__attribute__((target("avx2"))) static float row_sum_avx2(const float *s, int64_t n) {
    __m256 v = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        v = _mm256_add_ps(v, _mm256_loadu_ps(s + j));
    float acc[8];
    _mm256_storeu_ps(acc, v);
    for (int64_t t = 0; j + t < n; t++)
        acc[t] += s[j + t];
    return lanes_total(acc);
}

static float row_sum(const float *s, int64_t n) {
    if (mold_cpu_use_avx2())
        return row_sum_avx2(s, n);
    float acc[8] = { 0 };
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int t = 0; t < 8; t++)
            acc[t] += s[j + t];
    for (int64_t t = 0; j + t < n; t++)
        acc[t] += s[j + t];
    return lanes_total(acc);
}

static float row_max(const float *s, int64_t n) {
    if (mold_cpu_use_avx2())
        return row_max_avx2(s, n);
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        mx = s[j] > mx ? s[j] : mx;
    return mx;
}

/* ---- attention ---- */

typedef struct attn_ctx {
    float *out;             /* [sq, hq, d] */
    const float *q;         /* [sq, hq, d] */
    const float *k, *v;     /* [skv, hkv, d] */
    const float *key_valid; /* [skv] or NULL */
    int64_t sq, skv, hq, hkv, d, n_qb;
    float scale;
    bool causal;
} attn_ctx;

/* Masks row `i` of the score tile (keys kb .. kb+nk-1, last visible key
 * `lim`), turns it into probabilities relative to the updated running max and
 * rescales the row's accumulator. Fully masked rows get P = 0 and keep
 * their state. */
static void softmax_row(const attn_ctx *c, float *s, float *o, float *m, float *l, int64_t kb,
                        int64_t nk, int64_t lim) {
    int64_t nv = lim - kb + 1; /* keys kb .. kb+nv-1 pass the causal limit */
    if (nv > nk)
        nv = nk;
    if (nv < 0)
        nv = 0;
    for (int64_t j = nv; j < nk; j++)
        s[j] = -INFINITY;
    if (c->key_valid) {
        for (int64_t j = 0; j < nv; j++)
            if (c->key_valid[kb + j] == 0.0f)
                s[j] = -INFINITY;
    }
    float mx = row_max(s, nv);
    if (mx == -INFINITY) {
        memset(s, 0, (size_t)nk * sizeof(float));
        return;
    }
    float m_new = *m > mx ? *m : mx;
    float alpha = exp_neg(*m - m_new); /* 0 when *m is -inf */
    mold_cpu_exp_neg(s, nk, m_new); /* masked: -inf - m_new = -inf -> p = 0 */
    float sum = row_sum(s, nk);
    *l = *l * alpha + sum;
    *m = m_new;
    if (alpha != 1.0f) {
        for (int64_t e = 0; e < c->d; e++)
            o[e] *= alpha;
    }
}

static void attn_task(void *ud, int64_t task, float *scratch) {
    const attn_ctx *c = ud;
    int64_t h = task / c->n_qb, qb = task % c->n_qb;
    int64_t g = h / (c->hq / c->hkv); /* kv head of query head h */
    int64_t q0 = qb * AT_BQ, nq = c->sq - q0 < AT_BQ ? c->sq - q0 : AT_BQ;
    int64_t off = c->skv - c->sq; /* causal: query i sees keys j <= i + off */
    float *s = scratch;           /* [AT_BQ, AT_BK] */
    float *o = s + AT_BQ * AT_BK; /* [AT_BQ, d] */
    float *m = o + AT_BQ * c->d;  /* [AT_BQ] running max */
    float *l = m + AT_BQ;         /* [AT_BQ] running sum */
    for (int64_t i = 0; i < nq; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    memset(o, 0, (size_t)(nq * c->d) * sizeof(float));
    int64_t k_end = c->causal ? q0 + nq + off : c->skv; /* keys past this are never visible */
    if (k_end > c->skv)
        k_end = c->skv;
    int ldq = (int)(c->hq * c->d), ldk = (int)(c->hkv * c->d);
    const float *qh = c->q + (q0 * c->hq + h) * c->d;
    for (int64_t kb = 0; kb < k_end; kb += AT_BK) {
        int64_t nk = k_end - kb < AT_BK ? k_end - kb : AT_BK;
        const float *kh = c->k + (kb * c->hkv + g) * c->d;
        const float *vh = c->v + (kb * c->hkv + g) * c->d;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)c->d,
                    c->scale, qh, ldq, kh, ldk, 0.0f, s, AT_BK);
        for (int64_t i = 0; i < nq; i++) {
            int64_t lim = c->causal ? q0 + i + off : c->skv - 1;
            softmax_row(c, s + i * AT_BK, o + i * c->d, m + i, l + i, kb, nk, lim);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)c->d, (int)nk, 1.0f,
                    s, AT_BK, vh, ldk, 1.0f, o, (int)c->d);
    }
    for (int64_t i = 0; i < nq; i++) {
        float *dst = c->out + ((q0 + i) * c->hq + h) * c->d;
        float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f; /* no visible key -> zeros */
        for (int64_t e = 0; e < c->d; e++)
            dst[e] = o[i * c->d + e] * inv;
    }
}

mold_status mold_cpu_attention(mold_backend *be, float *out, const float *q, const float *k,
                               const float *v, int64_t sq, int64_t skv, int64_t hq, int64_t hkv,
                               int64_t d, float scale, const float *key_valid, bool causal) {
    if (sq < 0 || skv < 0 || hq <= 0 || hkv <= 0 || d <= 0 || hq % hkv != 0)
        return MOLD_ERR(MOLD_E_INVALID,
                        "attention: expected sq, skv >= 0, hq, hkv, d > 0, hq %% hkv == 0, "
                        "got sq=%lld skv=%lld hq=%lld hkv=%lld d=%lld",
                        (long long)sq, (long long)skv, (long long)hq, (long long)hkv, (long long)d);
    if (AT_BQ * (AT_BK + d + 2) > CPU_SCRATCH_FLOATS || hq * d > INT_MAX)
        return MOLD_ERR(MOLD_E_UNSUPPORTED, "attention: head_dim %lld x %lld heads too large",
                        (long long)d, (long long)hq);
    if (sq == 0)
        return MOLD_OK;
    if (!out || !q || (skv > 0 && (!k || !v)))
        return MOLD_ERR(MOLD_E_INVALID, "attention: NULL q, k, v or out");
    if (cpu_overlap(out, sq * hq * d, k, skv * hkv * d) || cpu_overlap(out, sq * hq * d, v, skv * hkv * d))
        return MOLD_ERR(MOLD_E_INVALID, "attention: out overlaps k or v");
    attn_ctx c = { .out = out, .q = q, .k = k, .v = v, .key_valid = key_valid, .sq = sq,
                   .skv = skv, .hq = hq, .hkv = hkv, .d = d, .n_qb = cpu_n_chunks(sq, AT_BQ),
                   .scale = scale, .causal = causal };
    mold_cpu_parallel(cpu_of(be), hq * c.n_qb, attn_task, &c);
    return MOLD_OK;
}
