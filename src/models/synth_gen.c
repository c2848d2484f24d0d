/*
 * synth_gen.c — the random values of `mold synth`: fast, deterministic,
 * independent of how the work is split.
 *
 * Why pools: drawing every element with mold_philox_normal (double-precision
 * Box-Muller, ~40-70 ns/element) and quantizing it with the reference ggml
 * algorithm (Q4_K ~275 ns/element) would take minutes of 16 cores for the
 * 20 B-parameter transformer; benchmarks need only the shapes and a sane
 * value distribution. So, per run (per seed):
 *   - a pool of POOL_RUNS runs of RUN = 256 N(0,1) samples, from
 *     mold_philox_normal(seed');
 *   - per block dtype, the same pool quantized by mold_quantize (the
 *     reference quantizers), block by block, made on first use.
 * A tensor is a sequence of 256-element runs (flat element order); run r is
 * pool run k(r) = Philox4x32-10(key = tensor seed, counter = r / 4)[r % 4]
 * mod POOL_RUNS, scaled to the tensor's std. Float dtypes round the scaled
 * samples; block dtypes copy the quantized blocks of run k and multiply
 * their fp16 super-scales (d, and the min scale where the format has one) by
 * the std, which scales every value of the block.
 * Consequences: element i depends only on (seed, tensor seed, i), so any
 * thread count or slab size gives the same bytes and another seed changes
 * everything; and a GGUF variant holds the same weights as the bf16 variant
 * of the same seed up to quantization error (tests compare their outputs).
 */
#include <stdlib.h>
#include <string.h>

#include "../base/philox.h"     // defines: mold_philox4x32, mold_philox_normal
#include "../base/quant.h"      // defines: mold_quantize
#include "../base/threadpool.h" // defines: mold_pool_*
#include "synth_impl.h"

#define RUN 256                         /* elements per run */
#define POOL_RUNS 4096                  /* runs in the pool (power of two) */
#define POOL_ELEMS (POOL_RUNS * RUN)    /* 2^20 samples, 4 MiB */

struct synth_gen {
    uint64_t seed;
    mold_pool *pool;                    /* owned */
    float *normals;                     /* (POOL_RUNS, RUN) f32 N(0,1), owned */
    uint8_t *blocks[MOLD_DTYPE_COUNT];  /* (POOL_ELEMS / block_elems, block_bytes): the pool
                                           quantized, per block dtype, made on first use */
};

/* ---- helpers ---- */

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Four 32-bit draws for group `g` of a tensor's stream. */
static void draw4(uint64_t tensor_seed, uint64_t g, uint32_t out[4]) {
    const uint32_t key[2] = {(uint32_t)tensor_seed, (uint32_t)(tensor_seed >> 32)};
    const uint32_t ctr[4] = {(uint32_t)g, (uint32_t)(g >> 32), 0x53594e54u /* "SYNT" */, 0};
    mold_philox4x32(ctr, key, out);
}

/* Byte offsets of the fp16 scales that multiply every value of a block:
 * d, and the min scale (dmin / m) where the format has one; -1 = none.
 * Layouts from ggml-common.h. */
static void scale_offsets(mold_dtype t, int *d, int *m) {
    *d = 0;
    *m = -1;
    switch (t) {
    case MOLD_Q4_0: case MOLD_Q5_0: case MOLD_Q8_0: break;
    case MOLD_Q4_1: case MOLD_Q5_1: case MOLD_Q4_K: case MOLD_Q5_K: *m = 2; break;
    case MOLD_Q2_K: *d = 80; *m = 82; break; /* scales[16] qs[64] d dmin */
    case MOLD_Q3_K: *d = 108; break;         /* hmask[32] qs[64] scales[12] d */
    case MOLD_Q6_K: *d = 208; break;         /* ql[128] qh[64] scales[16] d */
    default: MOLD_ASSERT(!"not a block dtype");
    }
}

static void scale_f16_at(uint8_t *p, float s) {
    uint16_t h = (uint16_t)(p[0] | (p[1] << 8));
    h = mold_f32_to_f16(mold_f16_to_f32(h) * s);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* ---- pools ---- */

typedef struct qpool_job {
    const float *src;
    uint8_t *dst;
    mold_dtype t;
    uint32_t be, bb;  /* block elements, block bytes */
    mold_status st[64];
} qpool_job;

static void qpool_item(void *ud, int i, int count) {
    qpool_job *j = ud;
    size_t per = POOL_ELEMS / (size_t)count; /* elements, a multiple of 256 */
    j->st[i] = mold_quantize(j->t, j->src + (size_t)i * per,
                             j->dst + (size_t)i * per / j->be * j->bb, (int64_t)per);
}

/* Quantized pool for block dtype t, made on first use (called from the
 * generating thread only, before any parallel fill). */
static mold_status block_pool(synth_gen *g, mold_dtype t, const uint8_t **out) {
    if (!g->blocks[t]) {
        const mold_dtype_info *info = mold_dtype_get(t);
        uint8_t *b = malloc((size_t)POOL_ELEMS / info->block_elems * info->block_bytes);
        if (!b) return MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory for the %s pool", info->name);
        qpool_job j = {.src = g->normals, .dst = b, .t = t, .be = info->block_elems,
                       .bb = info->block_bytes};
        MOLD_ASSERT(RUN % info->block_elems == 0);
        mold_pool_run(g->pool, 64, qpool_item, &j);
        for (int i = 0; i < 64; i++)
            if (j.st[i]) {
                free(b);
                return j.st[i];
            }
        g->blocks[t] = b;
    }
    *out = g->blocks[t];
    return MOLD_OK;
}

mold_status mold_synth_gen_create(uint64_t seed, int n_threads, synth_gen **out) {
    *out = NULL;
    synth_gen *g = calloc(1, sizeof *g);
    if (!g || !(g->normals = malloc(POOL_ELEMS * sizeof(float)))) {
        free(g);
        return MOLD_ERR(MOLD_E_NOMEM, "synth: out of memory for the value pool");
    }
    g->seed = seed;
    mold_status st = mold_pool_create(n_threads, &g->pool);
    if (st) {
        mold_synth_gen_free(g);
        return st;
    }
    mold_philox_normal(splitmix64(seed ^ 0x706f6f6c /* "pool" */), g->normals, POOL_ELEMS);
    *out = g;
    return MOLD_OK;
}

void mold_synth_gen_free(synth_gen *g) {
    if (!g) return;
    mold_pool_free(g->pool);
    free(g->normals);
    for (int t = 0; t < MOLD_DTYPE_COUNT; t++) free(g->blocks[t]);
    free(g);
}

/* ---- filling ---- */

typedef struct fill_job {
    const synth_gen *g;
    const synth_tensor *t;
    const uint8_t *blocks;   /* block dtypes: the pool */
    uint64_t e0, n;          /* element range of the call */
    uint8_t *dst;            /* bytes of that range */
} fill_job;

/* Pool run of tensor run r; *g caches the group of four draws in r4. */
static uint32_t run_index(uint64_t tensor_seed, uint64_t r, uint64_t *g, uint32_t r4[4]) {
    if (*g != r / 4) {
        *g = r / 4;
        draw4(tensor_seed, *g, r4);
    }
    return r4[r % 4] & (POOL_RUNS - 1);
}

/* Elements [a, b) (absolute, a a multiple of RUN) of a float-typed tensor. */
static void fill_float(const fill_job *j, uint64_t a, uint64_t b) {
    const synth_tensor *t = j->t;
    float tmp[RUN];
    uint32_t r4[4];
    uint64_t g = UINT64_MAX;
    size_t eb = mold_dtype_get(t->dtype)->block_bytes;
    for (uint64_t e = a; e < b; e += RUN) {
        size_t len = (size_t)(b - e < RUN ? b - e : RUN);
        if (t->init == SYNTH_ONES) {
            for (size_t k = 0; k < len; k++) tmp[k] = 1.0f;
        } else {
            const float *src = j->g->normals + (size_t)run_index(t->seed, e / RUN, &g, r4) * RUN;
            for (size_t k = 0; k < len; k++) tmp[k] = src[k] * t->std;
        }
        uint8_t *d = j->dst + (e - j->e0) * eb;
        switch (t->dtype) {
        case MOLD_F32: memcpy(d, tmp, len * sizeof(float)); break;
        case MOLD_BF16: mold_f32_to_bf16_n(tmp, (uint16_t *)(void *)d, len); break;
        case MOLD_F16:
            for (size_t k = 0; k < len; k++) {
                uint16_t h = mold_f32_to_f16(tmp[k]);
                memcpy(d + 2 * k, &h, 2);
            }
            break;
        default: MOLD_ASSERT(!"float dtype expected");
        }
    }
}

/* Blocks covering elements [a, b) of a block-typed tensor. */
static void fill_blocks(const fill_job *j, uint64_t a, uint64_t b) {
    const synth_tensor *t = j->t;
    const mold_dtype_info *info = mold_dtype_get(t->dtype);
    const size_t be = info->block_elems, bb = info->block_bytes;
    int od, om;
    scale_offsets(t->dtype, &od, &om);
    uint32_t r4[4];
    uint64_t g = UINT64_MAX;
    for (uint64_t e = a; e < b; e += be) {
        size_t k = run_index(t->seed, e / RUN, &g, r4);
        size_t src = k * (RUN / be) + (size_t)(e % RUN) / be; /* block in the pool */
        uint8_t *d = j->dst + (e - j->e0) / be * bb;
        memcpy(d, j->blocks + src * bb, bb);
        scale_f16_at(d + od, t->std);
        if (om >= 0) scale_f16_at(d + om, t->std);
    }
}

static void fill_item(void *ud, int i, int count) {
    (void)count;
    const fill_job *j = ud;
    uint64_t a = j->e0 + (uint64_t)i * SYNTH_SLAB_ALIGN;
    uint64_t b = a + SYNTH_SLAB_ALIGN < j->e0 + j->n ? a + SYNTH_SLAB_ALIGN : j->e0 + j->n;
    if (j->blocks)
        fill_blocks(j, a, b);
    else
        fill_float(j, a, b);
}

mold_status mold_synth_gen_fill(synth_gen *g, const synth_tensor *t, uint64_t e0, uint64_t n,
                                void *dst) {
    const mold_dtype_info *info = mold_dtype_get(t->dtype);
    MOLD_ASSERT(info && e0 % SYNTH_SLAB_ALIGN == 0 && n % info->block_elems == 0);
    fill_job j = {.g = g, .t = t, .e0 = e0, .n = n, .dst = dst};
    if (info->is_quant) {
        MOLD_ASSERT(t->init == SYNTH_NORMAL); /* gammas are 1-D, hence never quantized */
        MOLD_TRY(block_pool(g, t->dtype, &j.blocks));
    }
    uint64_t items = (n + SYNTH_SLAB_ALIGN - 1) / SYNTH_SLAB_ALIGN;
    MOLD_ASSERT(items <= (uint64_t)INT32_MAX);
    mold_pool_run(g->pool, (int)items, fill_item, &j);
    return MOLD_OK;
}
